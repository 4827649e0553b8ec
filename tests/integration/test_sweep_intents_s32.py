"""A sweep's Key Vault writes (a key's ``rotate_key``, a new version's expiry) keep their intent in
the outbox before the write, as a rotation does (tests/integration/test_review_outbox_s32.py): a
worker dying between the write and its audit row leaves that row for the outbox timer, which
audits it (``requested``) and publishes it. The sweep is never redelivered: nothing else would."""

from __future__ import annotations

import time

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.triggers.decision_events import decision_outbox
from tests.integration.test_secret_guardrail import VAULT, _bundle, _harness, _val, planted  # noqa: F401

pytestmark = pytest.mark.integration

HOLD = "2"


def _timer() -> func.TimerRequest:
    return TimerRequest(past_due=False, schedule_status={"Last": "2026-11-24T10:00:00Z"}, schedule={"AdjustForDST": True})


def _with_topic(h):
    keys = h.emu.add_topic("decisions")
    settings = S.Settings.from_env({**h.env, S.DECISION_TOPIC_ENDPOINT: h.emu.topic_endpoint("decisions"),
                                    S.DECISION_TOPIC_KEY: keys[0], S.DECISION_INTENT_HOLD_SECONDS: HOLD})
    h.service.publisher = bootstrap.decision_publisher(settings, h.tables, credential=None)


def _dies_after(store, method: str):
    """The store's ``method`` does its write, then the worker is recycled before anything else."""
    real = getattr(store, method)

    def write_then_die(*a, **k):
        real(*a, **k)
        raise SystemExit("worker recycled after the write")

    setattr(store, method, write_then_die)
    return lambda: setattr(store, method, real)


def _recovered(h, sweep_id: str):
    time.sleep(float(HOLD) + 0.2)
    decision_outbox(_timer())
    rows = [r for r in h.stored_rows() if r.correlation_id == sweep_id]
    published = [e["id"] for e in h.emu.published_events("decisions")]
    return rows, published


def test_a_sweeps_key_rotation_whose_worker_died_before_its_audit_is_audited_by_the_outbox_timer(
        harness, tmp_path, planted):  # noqa: F811
    h = _harness(harness, tmp_path, planted)
    _with_topic(h)
    before = h.emu.key_versions(VAULT, "cmk-storage")
    restore = _dies_after(h.service.secrets.store, "rotate_key")
    with pytest.raises(SystemExit):
        h.service.reconcile_secret(VAULT, "cmk-storage", None, kind="NearExpiry", sweep_id="sweep-key",
                                   object_type="Key")
    restore()
    assert len(h.emu.key_versions(VAULT, "cmk-storage")) == len(before) + 1           # rotated
    assert [r for r in h.stored_rows() if r.correlation_id == "sweep-key"] == []   # ... unaudited
    rows, published = _recovered(h, "sweep-key")
    assert len(rows) == 1 and rows[0].verdict == "requested", [(r.verdict, r.message) for r in rows]
    assert rows[0].violations[0].rule == "expiring-key" and rows[0].violations[0].outcome == "requested"
    assert published == [rows[0].delivery_id]


def test_a_sweeps_expiry_fix_whose_worker_died_before_its_audit_is_audited_by_the_outbox_timer(
        harness, tmp_path, planted):  # noqa: F811
    h = _harness(harness, tmp_path, planted, extra_secrets=[_bundle("no-expiry", _val(), exp_days=None)])
    _with_topic(h)
    version = h.emu.secret_versions(VAULT, "no-expiry")[-1]["id"].rsplit("/", 1)[-1]
    restore = _dies_after(h.service.secrets.store, "update_version")
    with pytest.raises(SystemExit):
        h.service.reconcile_secret(VAULT, "no-expiry", version, kind="NewVersionCreated", sweep_id="sweep-exp")
    restore()
    assert h.emu.secret_versions(VAULT, "no-expiry")[-1]["attributes"].get("exp")        # the expiry was set
    assert [r for r in h.stored_rows() if r.correlation_id == "sweep-exp"] == []
    rows, published = _recovered(h, "sweep-exp")
    assert len(rows) == 1 and rows[0].verdict == "requested", [(r.verdict, r.message) for r in rows]
    assert rows[0].violations[-1].rule == "expiry-required" and rows[0].violations[-1].outcome == "requested"
    assert published == [rows[0].delivery_id]


def test_a_sweeps_rotation_that_completes_leaves_no_intent_behind(harness, tmp_path, planted):  # noqa: F811
    """Control: the intent is replaced by the audited row and dropped once published."""
    h = _harness(harness, tmp_path, planted)
    _with_topic(h)
    old = h.emu.secret_versions(VAULT, "api-token")[-1]["id"].rsplit("/", 1)[-1]
    row = h.service.reconcile_secret(VAULT, "api-token", old, kind="NearExpiry", sweep_id="sweep-ok")
    assert row.verdict == "remediated"
    rows, published = _recovered(h, "sweep-ok")
    assert [r.verdict for r in rows] == ["remediated"] and published == [row.delivery_id]
