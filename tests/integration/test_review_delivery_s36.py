"""Review s36: the "never a lost record" machinery (decision outbox, idempotency claims, parked
decisions, audit write, dead-letter replay).

Real Azurite + the local HTTPS emulator through the real SDK clients. Tests named
``test_control_*`` pass on the current code and show the boundary; the others fail on it and say
what is wrong and what is expected.
"""

from __future__ import annotations

import time

import pytest

from guardrails import settings as S
from guardrails.adapters.outbox_tables import TableOutbox
from tests import builders as b

pytestmark = pytest.mark.integration

HOLD = "1"


def _sweep_rows(h, sweep_id: str):
    return [r for r in h.stored_rows() if r.correlation_id == sweep_id]


def _published(h) -> list[dict]:
    return h.emu.published_events("decisions")


# ---- (1) a timer intent whose decision ended unpublished is audited a second time ---------------
def test_a_sweep_fix_of_a_resource_deleted_meanwhile_is_not_audited_again_as_requested_by_the_outbox(harness):
    """DEFECT. A sweep's fix keeps its intent in the outbox before the PATCH (``intend_before_act``:
    a ``requested`` row, held ``GUARDRAILS_DECISION_INTENT_HOLD_SECONDS``). Here the resource is
    deleted while the PATCH travels (ARM answers 404): the decision ends ``ignored`` /
    ``resource_not_found``, is audited, and since ``ignored`` is never published ``_finish`` neither
    replaces nor discards the intent (``DecisionPublisher.intend``/``publish`` both return early on
    ``should_publish`` false). When the hold passes, the outbox timer (``DecisionPublisher._recover``)
    looks for *publishable* rows of that delivery, finds none (the audited row is ``ignored``), and
    takes the decision for one that was never audited: it writes the stale intent as a second
    audit row (``requested``: "fix sent; the worker stopped before confirming and auditing it") for
    the same delivery and publishes ``Guardrails.Decision.Requested`` to the SOC — a fix in
    flight that was never made, for a resource that no longer exists, contradicting the row the
    same delivery already wrote. Expected: the delivery's audit table keeps its one ``ignored``
    row and no decision event goes out (an intent whose delivery audited any row is dropped, or
    ``_finish`` discards the intent when the final row is not published)."""
    res = b.storage()
    h = harness([res], decision_topic=True, env={S.DECISION_INTENT_HOLD_SECONDS: HOLD})
    h.emu.add_fault(method="PATCH", path_regex="stmlprod", status=404, code="ResourceNotFound", times=1)
    row = h.service.reconcile(res["id"], None, sweep_id="sweep-gone")
    assert (row.verdict, row.reason) == ("ignored", "resource_not_found")
    assert [q["method"] for q in h.writes()] == ["PATCH"]
    time.sleep(float(HOLD) + 0.3)
    h.service.publisher.drain()
    rows = _sweep_rows(h, "sweep-gone")
    published = [e["type"] for e in _published(h)]
    assert [(r.verdict, r.reason) for r in rows] == [("ignored", "resource_not_found")] and published == [], (
        f"the outbox audited a stale intent over a finished decision: rows "
        f"{[(r.verdict, r.reason, r.message[:60]) for r in rows]}, published {published}")


# ---- (2) a parked own-write confirmation leaves its pending records for a second audit ----------
class _AuditFailsOnce:
    """The audit port whose next write of a row matching ``when`` fails as Table Storage does
    (``StoreError``: the service's own error for a failed upsert), once; every other write goes
    through to the real table sink."""

    def __init__(self, inner, when) -> None:
        self.inner, self.when, self.failed = inner, when, []

    def write(self, row):
        if not self.failed and self.when(row):
            from guardrails.errors import StoreError
            self.failed.append(row.delivery_id)
            raise StoreError("audit write failed (ServiceResponseError, status None)")
        return self.inner.write(row)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_confirmation_audited_late_from_its_parked_row_does_not_leave_its_fix_for_a_second_audit(harness):
    """DEFECT. A long-running fix is left ``requested`` (pending record). Its own
    ``ResourceWriteSuccess`` arrives; the confirmation (``_own_write`` -> ``_once``) reads it back,
    judges it ``remediated`` and its audit write fails: the decision is parked with the event's
    claim (README, Table Storage down) and the per-record claims are released (``_Claims.release``).
    Event Grid's redelivery writes the parked row (``_audit_parked``) — but ``decide`` never runs
    on that path, so ``settled`` is empty and ``claims.settle`` removes no pending record. The
    record stays, claimable, and the reconciling sweep's ``confirm_pending`` (an hour later)
    confirms the same fix again: a second ``remediated`` row (and decision event) for one fix.
    Expected: once the parked confirmation is audited its pending records are gone (or completed),
    so nothing confirms that fix again."""
    res = b.workspace()
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"}, lro_seconds=2.5)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "requested"
    time.sleep(1.5)
    (own_event,) = h.emu.drain_events()          # the fix's own write event
    real = h.service.audit
    h.service.audit = _AuditFailsOnce(real, lambda r: r.verdict == "remediated")
    from guardrails.errors import StoreError
    with pytest.raises(StoreError):
        h.service.handle_event(own_event)        # confirmed, audit write failed: parked
    h.service.audit = real
    late = h.service.handle_event(own_event)     # Event Grid's redelivery writes the parked row
    assert late.verdict == "remediated" and "audited by a later delivery" in late.message
    left = h.service.pending.list(res["id"])
    again = h.service.confirm_pending(res["id"], left, sweep_id="sweep-later") if left else None
    remediated = [r for r in h.stored_rows() if r.verdict == "remediated"]
    assert not left and again is None and len(remediated) == 1, (
        f"the fix is confirmed twice: pending records left {len(left)}, sweep row "
        f"{again and (again.verdict, again.message[:80])}, remediated rows {len(remediated)}")


# ---- (3) a timer decision half-audited (index row only) is never written to the day table -------
def test_a_sweep_fix_whose_day_row_failed_is_written_to_the_day_table_by_the_outbox_recovery(harness):
    """DEFECT. ``TableAuditSink.write`` stores each row twice, the day shard and the resource index,
    and raises when either failed. A sweep's fix (a timer: no redelivery) whose day-shard write
    fails while its index write succeeds raises ``StoreError``; its decision stays in the outbox as
    an intent (``_finish(timer=True)`` kept it before the audit write) for the outbox timer to
    audit. But ``DecisionPublisher._recover`` decides "audited" by ``rows_of_delivery``, which reads
    the *resource index* only: it finds the half-written row, publishes it and drops the intent.
    The day table — what ``read_day`` and the compliance report read — never gets the row: the
    sweep's revert of a public storage account is missing from the day's audit for good. (Fault:
    the day table is really gone on Azurite for the one write, then recreated; no mock.)
    Expected: after the outbox timer ran, the sweep's ``remediated`` row is in the day table (the
    recovery writes the row it publishes under its keys — an upsert, idempotent — or checks both
    tables)."""
    res = b.storage()
    h = harness([res], decision_topic=True, env={S.DECISION_INTENT_HOLD_SECONDS: HOLD})
    svc = h.tables.service
    svc.delete_table(h.tables.audit_name)            # the day shard's table refuses the one write
    from guardrails.errors import StoreError
    try:
        with pytest.raises(StoreError):
            h.service.reconcile(res["id"], None, sweep_id="sweep-half")
    finally:
        for _ in range(50):                           # back as it was (Azurite may need a moment)
            try:
                svc.create_table(h.tables.audit_name)
                break
            except Exception:                         # noqa: BLE001 - still being deleted
                time.sleep(0.1)
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"      # the fix was made
    index = h.service.publisher.history.read_resource(res["id"])
    assert [r.verdict for r in index if r.correlation_id == "sweep-half"] == ["remediated"]  # half written
    time.sleep(float(HOLD) + 0.3)
    h.service.publisher.drain()
    published = [e["type"] for e in _published(h)]
    day = _sweep_rows(h, "sweep-half")
    assert published == ["Guardrails.Decision.Remediated"]
    assert [r.verdict for r in day] == ["remediated"], (
        f"the sweep's revert is missing from the day's audit table: day rows {[r.verdict for r in day]}, "
        f"published {published}")


# ---- controls ----------------------------------------------------------------------------------
def test_control_a_sweep_fix_that_lands_leaves_no_intent_and_is_audited_and_published_once(harness):
    """CONTROL (passes). The boundary of (1): when the sweep's fix lands, the final row replaces
    the intent, is published, and the intent is dropped: the outbox timer has nothing to audit."""
    res = b.storage()
    h = harness([res], decision_topic=True, env={S.DECISION_INTENT_HOLD_SECONDS: HOLD})
    row = h.service.reconcile(res["id"], None, sweep_id="sweep-ok")
    assert row.verdict == "remediated"
    time.sleep(float(HOLD) + 0.3)
    h.service.publisher.drain()
    assert [r.verdict for r in _sweep_rows(h, "sweep-ok")] == ["remediated"]
    assert [e["type"] for e in _published(h)] == ["Guardrails.Decision.Remediated"]
    assert TableOutbox(h.tables).list(10) == []


def test_control_an_event_fix_whose_day_row_failed_is_parked_and_rewritten_in_both_tables(harness):
    """CONTROL (passes). The boundary of (3): on the event path the same half-written audit (the
    day table refusing the write, the index row stored) parks the decision with the event's claim,
    and Event Grid's redelivery writes it under its first keys to both tables, no second PATCH."""
    from tests.integration.test_delivery import _deliver_raw

    res = b.storage()
    h = harness([res])
    svc = h.tables.service
    event = b.write_event(res["id"])
    svc.delete_table(h.tables.audit_name)
    try:
        assert _deliver_raw(event) is not None          # raised: Event Grid redelivers
    finally:
        for _ in range(50):
            try:
                svc.create_table(h.tables.audit_name)
                break
            except Exception:                           # noqa: BLE001 - still being deleted
                time.sleep(0.1)
    assert _deliver_raw(event) is None
    day = [r for r in h.stored_rows() if r.event_id == event["id"]]
    assert [r.verdict for r in day] == ["remediated"] and "audited by a later delivery" in day[0].message
    assert [q["method"] for q in h.writes()] == ["PATCH"]
