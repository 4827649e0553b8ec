"""Review s20 of the secret guardrail, end to end on the emulator and Azurite:

* the sweep and an event's delivery never rotate the same secret at once (a shared lease per
  secret in the idempotency table, held around read-then-rotate);
* a rotation whose delivery stopped before its audit row is audited by the next delivery of the
  event (the version's ``ORIGIN_TAG``), once;
* a secret with a full tag set is still rotated (Key Vault's 15-tag limit, which the emulator
  enforces)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.errors import IdempotencyError
from guardrails.ratelimit import FakeClock
from guardrails.secrets.values import MARKER_TAG, ORIGIN_TAG
from guardrails.simulate import to_function_event
from guardrails.triggers.keyvault_events import keyvault_events
from tests import builders as b
from tests.integration.test_secret_exposure_and_hygiene import _exposure, _keys, _valid
from tests.integration.test_secret_guardrail import (ACCOUNT, VAULT, _bundle, _event, _harness,  # noqa: F401
                                                     _no_leak, planted)

pytestmark = pytest.mark.integration


class Killed(BaseException):
    """The worker process dies here."""


def _v1(h, name="storage-connection") -> str:
    return h.emu.secret_versions(VAULT, name)[-1]["id"].rsplit("/", 1)[-1]


def _sweeper(h):
    return bootstrap.build_sweeper(S.Settings.from_env(h.env), clock=FakeClock(), sleep=lambda s: None)


def _rows(h, event_id):
    return [r for r in h.stored_rows() if r.event_id == event_id]


def _all_valid(h, name="storage-connection"):
    keys = _keys(h)
    return [_valid(v["value"], keys) for v in h.emu.secret_versions(VAULT, name)]


def _later(store, seconds: float) -> None:
    """The idempotency table's clock moves on (a dead holder's claims go stale)."""
    store._clock = lambda: datetime.now(timezone.utc) + timedelta(seconds=seconds)


# -- 1. sweep and event: one rotation ------------------------------------------------------------
def test_a_sweep_during_an_events_rotation_skips_the_secret_and_every_version_stays_valid(harness, tmp_path,
                                                                                            planted):
    h = _harness(harness, tmp_path, planted)
    ev = _event(h, "SecretNearExpiry", "storage-connection", _v1(h))
    store = h.service.secrets.store
    real, in_rotation, swept = store.set_secret, threading.Event(), threading.Event()

    def slow_set(*a, **kw):                 # the event has read V1 and regenerated key2: the sweep runs now
        in_rotation.set()
        swept.wait(30)
        return real(*a, **kw)
    store.set_secret = slow_set
    rows = []
    t = threading.Thread(target=lambda: rows.append(h.deliver(ev)))
    t.start()
    assert in_rotation.wait(30)
    summary = _sweeper(h).run(subscriptions=[b.SUB])
    swept.set()
    t.join(30)
    assert rows and rows[0].verdict == "remediated", rows
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 2, "rotated twice for one warning"
    assert _all_valid(h) == [True, True]
    assert summary.verdicts.get("duplicate") == 1 and summary.skipped >= 1, summary.verdicts
    assert not [r for r in h.stored_rows() if r.event_type == "Guardrails.Sweep"
                and r.resource_id.endswith("/secrets/storage-connection")], "the skipped secret got a sweep row"
    assert h.service.idempotency.acquire("rotate:kv-ml-prod/storage-connection", holder="x").state == "acquired"


def test_an_event_during_the_sweeps_rotation_is_retried_and_then_finds_it_already_rotated(harness, tmp_path,
                                                                                          planted):
    h = _harness(harness, tmp_path, planted)
    v1 = _v1(h)
    ev = _event(h, "SecretNearExpiry", "storage-connection", v1)
    sweeper = _sweeper(h)
    sw_store = sweeper.service.secrets.store
    real, raised = sw_store.set_secret, []

    def set_while_the_event_arrives(vault, name, *a, **kw):
        if name == "storage-connection":
            try:
                keyvault_events(to_function_event(ev))
            except IdempotencyError as exc:          # the function fails: Event Grid redelivers it
                raised.append(exc)
        return real(vault, name, *a, **kw)
    sw_store.set_secret = set_while_the_event_arrives
    sweeper.run(subscriptions=[b.SUB])
    (swept,) = [r for r in h.stored_rows() if r.event_type == "Guardrails.Sweep"
                and r.resource_id.endswith("/secrets/storage-connection")]
    assert swept.verdict == "remediated", swept.message
    assert len(raised) == 1 and not _rows(h, ev["id"]), "the delivery held off by the lease was not retried"
    row = h.deliver(ev)                                  # the redelivery
    assert row.verdict == "compliant" and "already rotated" in row.message, row.message
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 2
    assert _all_valid(h) == [True, True]


def test_a_lease_whose_holder_died_is_taken_over_once_stale(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    idem = h.service.idempotency
    idem.acquire("rotate:kv-ml-prod/storage-connection", holder="dead-worker")   # died holding it
    ev = _event(h, "SecretNearExpiry", "storage-connection", _v1(h))
    with pytest.raises(IdempotencyError):
        keyvault_events(to_function_event(ev))
    assert not _rows(h, ev["id"]) and len(h.emu.secret_versions(VAULT, "storage-connection")) == 1
    _later(idem, 600)
    row = h.deliver(ev)
    assert row.verdict == "remediated", row.message
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 2


# -- 2. a rotation whose delivery stopped before its audit row -----------------------------------
def test_a_rotation_whose_delivery_raised_after_the_write_is_audited_by_the_redelivery(harness, tmp_path, planted,
                                                                                      caplog):
    h = _harness(harness, tmp_path, planted)
    store = h.service.secrets.store
    real = store.set_secret

    def set_then_die(*a, **kw):
        real(*a, **kw)
        raise Killed()
    store.set_secret = set_then_die
    v1 = _v1(h)
    ev = _event(h, "SecretNearExpiry", "storage-connection", v1)
    with pytest.raises(Killed):
        keyvault_events(to_function_event(ev))
    store.set_secret = real
    assert not _rows(h, ev["id"])
    row = h.deliver(ev)
    assert row.verdict == "remediated", row.message
    (rec,) = row.violations
    assert rec.rule == "expiring-secret" and rec.outcome == "remediated"
    assert rec.before["version"] == v1 and rec.after["version"] == _v1(h)
    assert "earlier delivery" in rec.message and "key2" in rec.message
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 2, "rotated again"
    again = h.deliver({**ev, "id": "another-warning"})        # another event for V1: nothing to recover
    assert again.verdict == "compliant", again.message
    _no_leak(h, planted, caplog)


def test_a_worker_killed_before_its_row_is_audited_by_the_delivery_that_takes_the_event_over(harness, tmp_path,
                                                                                            planted):
    h = _harness(harness, tmp_path, planted)
    store, idem = h.service.secrets.store, h.service.idempotency
    real_set, real_release = store.set_secret, idem.release

    def set_then_die(*a, **kw):
        real_set(*a, **kw)
        raise Killed()

    def nothing_released(*a, **kw):          # a dead process releases nothing: claim and lease stay
        raise Killed()
    store.set_secret, idem.release = set_then_die, nothing_released
    ev = _event(h, "SecretNearExpiry", "storage-connection", _v1(h))
    with pytest.raises(Killed):
        keyvault_events(to_function_event(ev))
    store.set_secret, idem.release = real_set, real_release
    with pytest.raises(IdempotencyError):    # the event (and the lease) are still held: retried later
        keyvault_events(to_function_event(ev))
    _later(idem, 600)
    row = h.deliver(ev)
    assert row.verdict == "remediated" and "earlier delivery" in row.violations[0].message, row.message
    assert [r.verdict for r in _rows(h, ev["id"])] == ["remediated"]
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 2


def test_a_delivery_that_audited_and_died_before_completing_is_not_audited_twice(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    idem = h.service.idempotency
    real_complete, real_release = idem.complete, idem.release

    def die(*a, **kw):
        raise Killed()
    ev = _event(h, "SecretNearExpiry", "storage-connection", _v1(h))
    idem.complete = die
    try:
        with pytest.raises(Killed):
            keyvault_events(to_function_event(ev))   # rotated, audited, then died (the lease was released)
    finally:
        idem.complete, idem.release = real_complete, real_release
    _later(idem, 600)
    row = h.deliver(ev)
    assert row.verdict == "compliant" and "already rotated" in row.message, row.message
    assert [r.verdict for r in _rows(h, ev["id"])] == ["remediated", "compliant"]


def test_an_exposure_whose_delivery_died_after_the_rotation_is_audited_and_finished(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    store = h.service.secrets.store
    real = store.set_secret

    def set_then_die(*a, **kw):
        new = real(*a, **kw)
        raise Killed(new)
    store.set_secret = set_then_die
    event = _exposure("api-token", "exp-s20")
    with pytest.raises(Killed):
        h.deliver(event)
    store.set_secret = real
    row = h.deliver(event)
    assert row.verdict == "remediated", row.message
    rules = [(v.rule, v.outcome) for v in row.violations]
    assert rules == [("exposed-secret", "remediated"), ("disable-exposed-versions", "remediated")], rules
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert len(versions) == 2 and [v["attributes"]["enabled"] for v in versions] == [False, True]


def test_the_origin_tag_names_the_delivery_and_event_never_a_value(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    ev = _event(h, "SecretNearExpiry", "api-token", _v1(h, "api-token"))
    row = h.deliver(ev)
    new = h.emu.secret_versions(VAULT, "api-token")[-1]
    assert new["tags"][ORIGIN_TAG] == f"{row.delivery_id} {ev['id']}" and new["tags"][MARKER_TAG] == "true"


# -- 3. Key Vault's 15-tag limit -----------------------------------------------------------------
def _tagged_harness(harness, tmp_path, planted, tags):
    """``_harness``'s world, the referenced storage-connection secret carrying ``tags``."""
    import textwrap
    from tests.integration.test_secret_guardrail import POLICY
    d = tmp_path / "secrets"
    d.mkdir(exist_ok=True)
    (d / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY.format(mode="enforce")))
    world = {"keyvault_private_access": True, "secrets": [_bundle("storage-connection", planted["conn"], tags=tags)],
             "storageKeys": {ACCOUNT: [{"keyName": k, "value": planted[k], "creationTime": "2026-01-01T00:00:00Z"}
                                       for k in ("key1", "key2")]}}
    return harness([b.storage(pna="Disabled", blob=False), b.key_vault(pna="Disabled", rbac=True)], world=world,
                   extra_metadata=[d])


def test_a_secret_with_a_full_tag_set_is_still_rotated_and_the_row_says_how_many_tags_stayed_behind(
        harness, tmp_path, planted, caplog):
    # 13 of the owner's tags: an exposure's answer adds 6 of the guardrail's (marker, reason, live
    # key, exposure, revoke-pending, origin), past Key Vault's 15, which the emulator enforces
    user = {f"team-tag-{i:02d}": f"tagvalue{i:02d}" for i in range(13)}
    h = _tagged_harness(harness, tmp_path, planted, user)
    row = h.deliver(_exposure("storage-connection", "exp-tags"))
    assert row.verdict == "remediated", row.message
    versions = h.emu.secret_versions(VAULT, "storage-connection")
    assert len(versions) == 2 and versions[0]["tags"] == user          # the old version keeps them all
    new = versions[-1]
    assert new["tags"][MARKER_TAG] == "true" and new["tags"]["guardrails-exposure"] == "exp-tags"
    assert new["tags"]["guardrails-live-key"] in ("key1", "key2")
    kept = [k for k in new["tags"] if k.startswith("team-tag-")]
    assert kept == sorted(user)[:len(kept)] and 10 <= len(kept) < 13
    text = json.dumps([v.to_dict() if hasattr(v, "to_dict") else v.message for v in row.violations], default=str)
    assert f"{13 - len(kept)} of the secret's own tags not carried to the new version" in text
    assert "tagvalue" not in text and "tagvalue" not in row.message
    assert _valid(new["value"], _keys(h)) and not _valid(versions[0]["value"], _keys(h))
    _no_leak(h, planted, caplog)


def test_an_exposure_reported_during_another_rotation_waits_for_the_lease_and_answers(harness, tmp_path, planted):
    # the sweep's routine rotation holds the lease for about a second: the exposure waits for it
    # and rotates (revoking every key), instead of failing with nobody bound to retry
    from guardrails.secrets.lease import lease_key

    h = _harness(harness, tmp_path, planted)
    store, key = h.service.idempotency, lease_key(VAULT, "storage-connection")
    held = store.acquire(key, holder="sweep-routine-rotation")
    releaser = threading.Timer(1.0, lambda: store.release(key, held))
    releaser.start()
    try:
        row = h.deliver(_exposure("storage-connection", "exp-during-rotation"))
    finally:
        releaser.join(5)
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)
    assert _all_valid(h)[-1] is True
