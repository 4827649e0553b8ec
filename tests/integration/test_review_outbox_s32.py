"""Review (s32) of the decision outbox and decision-event publisher: defects shown on Azurite, the
local emulator's Key Vault and its Event Grid topic, through the product's real clients."""

from __future__ import annotations

import time

import azure.functions as func
import pytest
from azure.core.exceptions import ServiceResponseError
from azure.data.tables import TableClient
from azure.functions.timer import TimerRequest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.adapters.outbox_tables import TableOutbox
from guardrails.triggers.decision_events import decision_outbox
from tests.integration.test_delivery import _deliver_raw, _died_publishing
from tests.integration.test_secret_guardrail import VAULT, _harness, planted  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

HOLD = "2"


def _timer() -> func.TimerRequest:
    return TimerRequest(past_due=False, schedule_status={"Last": "2026-11-24T10:00:00Z"}, schedule={"AdjustForDST": True})


class _DiesReleasingTheLease:
    """The idempotency store of a worker recycled right after its rotation: the release of the
    rotation lease (the first thing after the new version is written) never returns."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def release(self, key, claim):
        if str(key).startswith("rotate:"):
            raise SystemExit("worker recycled after the rotation")
        return self.inner.release(key, claim)


def test_a_sweep_rotation_whose_worker_died_before_its_audit_is_audited_by_the_outbox_timer(
        harness, tmp_path, planted):  # noqa: F811
    # GIVEN a sweep that rotated a secret near expiry and whose worker was then recycled before its
    # audit row (README, Decision events: "A timer's fix keeps its intent before the write too ...
    # so a worker that dies between the write and the audit ... leaves that row for the outbox
    # timer to audit"); the sweep is never redelivered
    h = _harness(harness, tmp_path, planted)
    # a decision topic for this deployment, with a short intent hold
    keys = h.emu.add_topic("decisions")
    settings = S.Settings.from_env({**h.env, S.DECISION_TOPIC_ENDPOINT: h.emu.topic_endpoint("decisions"),
                                    S.DECISION_TOPIC_KEY: keys[0], S.DECISION_INTENT_HOLD_SECONDS: HOLD})
    h.service.publisher = bootstrap.decision_publisher(settings, h.tables, credential=None)
    old = h.emu.secret_versions(VAULT, "api-token")[-1]["id"].rsplit("/", 1)[-1]
    real = h.service.idempotency
    h.service.idempotency = _DiesReleasingTheLease(real)
    with pytest.raises(SystemExit):
        h.service.reconcile_secret(VAULT, "api-token", old, kind="NearExpiry", sweep_id="sweep-died")
    h.service.idempotency = real
    assert h.emu.secret_versions(VAULT, "api-token")[-1]["id"].rsplit("/", 1)[-1] != old   # rotated
    assert h.stored_rows() == []                                                           # ... unaudited
    # WHEN the outbox timer runs after the intent's hold
    time.sleep(float(HOLD) + 0.2)
    decision_outbox(_timer())
    # THEN the rotation is on the audit table (sent, at least) and its decision event published
    rows = [r for r in h.stored_rows() if r.correlation_id == "sweep-died"]
    assert rows and {v.outcome for r in rows for v in r.violations} & {"requested", "remediated"}, \
        "a sweep's rotation whose worker died before its audit row is never audited"
    assert [e["id"] for e in h.emu.published_events("decisions")] == [rows[0].delivery_id]


def test_a_takeover_whose_republish_read_fails_once_still_gets_the_dead_attempts_decision_out(
        harness, tmp_path, monkeypatch):
    # GIVEN a worker that fixed a resource and audited it, then died while its decision event was in
    # flight (README, Decision events: "Event Grid's redelivery then takes the record over and
    # first publishes again what the dead attempt audited")
    h, event, first = _died_publishing(harness, tmp_path)
    # WHEN Event Grid redelivers after the in-progress record expired, and the one read of the dead
    # attempt's rows meets a transient Table Storage error (the SDK's own error, once)
    real = TableClient.query_entities
    failed = []

    def flaky(self, query_filter, *a, **k):
        if "delivery_id eq @d" in str(query_filter) and not failed:
            failed.append(1)
            raise ServiceResponseError("connection reset by peer")
        return real(self, query_filter, *a, **k)

    monkeypatch.setattr(TableClient, "query_entities", flaky)
    time.sleep(2.2)
    assert _deliver_raw(event) is None           # the retry completes the event: no redelivery follows
    assert failed, "the republish read was not made"
    assert _deliver_raw(event) is None           # any later delivery is a duplicate
    monkeypatch.setattr(TableClient, "query_entities", real)
    decision_outbox(_timer())                    # and the outbox timer runs
    # THEN the dead attempt's audited decision still reaches the topic (or waits in the outbox):
    # nothing else will ever publish it
    ids = [e["id"] for e in h.emu.published_events("decisions")] + \
        [i.event["id"] for i in TableOutbox(h.tables).list(100)]
    assert first.delivery_id in ids, \
        "the dead attempt's decision event is lost for good after one failed read (WARNING only)"
