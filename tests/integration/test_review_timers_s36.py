"""Review (session 36) of the timer-driven paths and the pending-confirmation machinery: the
reconciling sweep's confirmation of fixes left ``requested`` (``pending_confirm``,
``timer_decisions.confirm_pending``), the timers' wiring and the compliance report.

Integration tests: Azurite + the local HTTPS emulator through the real SDK clients (fixtures
``harness``); pure tests of ``guardrails.report`` at the end. Each test that fails on the current
code says in its docstring what is wrong and what is expected; "control" tests pass and show the
boundary."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import bootstrap, pending_confirm
from guardrails.ratelimit import FakeClock
from guardrails.settings import Settings
from tests import builders as b

pytestmark = pytest.mark.integration


def _sweeper(h):
    return bootstrap.build_sweeper(Settings.from_env(h.env), clock=FakeClock(), sleep=lambda s: None)


def _long_running_fix(h, res):
    """The storage account drifts; its fix outlasts the delivery's budget (``requested``, a pending
    record); the fix then ends and its own ``ResourceWriteSuccess`` is emitted (returned, not yet
    delivered)."""
    h.emu.lro_seconds = 2.5
    first = h.deliver(b.write_event(res["id"]))
    assert first.verdict == "requested"
    assert len(h.service.pending.list(res["id"])) == 1
    time.sleep(2.0)
    (own_success,) = h.emu.drain_events()
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    return first, own_success


def _confirm_rows(h, rid):
    """Audit rows that confirm a long-running fix of ``rid`` (event path or sweep)."""
    return [r for r in h.stored_rows() if r.resource_id == rid and r.verdict != "requested" and any(
        "long-running fix" in v.message or "confirmed by" in v.message for v in r.violations)]


# --------------------------------------------------------------------------------------------------
# 1. a pending fix confirmed twice: by its own (late) write event and by the sweep
def test_a_fix_its_own_late_event_confirmed_is_not_confirmed_again_by_the_sweep(harness, monkeypatch):
    """DEFECT. The sweep reads the stale pending records (``TablePendingFixes.stale``: every record
    of up to 200 resources, up front) and only then confirms them one resource after the other
    (``confirm_stale_fixes`` -> ``confirm_pending``). ``confirm_pending`` neither re-reads the records
    under its lock nor claims them: it judges the list it was handed
    (guardrails/timer_decisions.py ``confirm_pending``, guardrails/pending_confirm.py
    ``_confirm_pending``). So the fix's own ``ResourceWriteSuccess`` (Event Grid retries for 24 h: a
    late delivery is ordinary) confirming it meanwhile does not stop the sweep: the one fix is
    audited ``remediated`` twice (two decision events, two remediations in the report, two
    time-to-remediate samples). It happens in one worker, whose sweeper shares the event service's
    lock stripes (``bootstrap.get_sweeper`` -> ``share_coordination``, as here), and all the more
    across scale-out instances, which share nothing but the tables.
    Expected: a record settled since the sweep listed it is not confirmed again (re-read the records
    under the lock and judge only those still there, or claim each record before auditing);
    exactly one confirmation row."""
    res = b.storage(name="stdouble", blob=False)
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"})
    _first, own_success = _long_running_fix(h, res)

    monkeypatch.setattr(pending_confirm, "PENDING_STALE_SECONDS", -5.0)
    sweeper = _sweeper(h)
    sweeper.service.share_coordination(h.service)       # one worker, as ``bootstrap.get_sweeper`` wires it
    # the sweep lists the stale records (as ``confirm_stale_fixes`` does at the start of a run) ...
    stale = sweeper.service.pending.stale(datetime.now(timezone.utc) + timedelta(seconds=5))
    ((rid, pending, _oldest),) = [s for s in stale if s[0].lower() == res["id"].lower()]
    assert len(pending) == 1
    # ... meanwhile the fix's own write event arrives (late) and confirms it, on the event path
    confirm = h.deliver(own_success)
    assert confirm.verdict == "remediated"
    assert h.service.pending.list(res["id"]) == []
    # ... then the sweep reaches the resource with the list it read
    again = sweeper.service.confirm_pending(rid, pending, sweep_id="sweep-s36-double")
    rows = _confirm_rows(h, res["id"])
    assert again is None and len(rows) == 1, (
        f"one fix confirmed {len(rows)} times: {[(r.event_type, r.verdict, r.correlation_id) for r in rows]}")


# --------------------------------------------------------------------------------------------------
# 2. a pending fix whose resource never leaves ``Updating`` is never confirmed nor forgotten
def test_a_fix_whose_resource_stays_updating_past_the_give_up_age_is_settled_once(harness, monkeypatch):
    """DEFECT (low). ``_judge_pending`` raises ``_StillRunning`` for a timer that reads a
    ``provisioningState`` in ``STILL_RUNNING`` before it looks at ``give_up``
    (guardrails/pending_confirm.py ``_judge_pending``): a resource stuck ``Updating`` (an ML online
    deployment or a registry whose update hung) keeps its pending record for ever: never audited,
    read again by every sweep, and, since ``stale`` takes the 200 oldest resources first, 200 such
    records shut every later one out of confirmation. The README's two-day give-up ("one it still
    cannot read after two days is audited ``failed`` once and forgotten") covers only an unreadable
    resource; a readable one stuck in a running state falls between it and "waits".
    Expected: past ``PENDING_GIVE_UP_SECONDS`` a fix still running is audited ``failed`` (never
    confirmed, forgotten) once and its record removed."""
    res = b.storage(name="ststuck", blob=False)
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"})
    _long_running_fix(h, res)
    live = h.resource(res["id"])
    live["properties"]["provisioningState"] = "Updating"          # stuck: it never ends
    h.emu.put(live)
    monkeypatch.setattr(pending_confirm, "PENDING_STALE_SECONDS", -5.0)
    monkeypatch.setattr(pending_confirm, "PENDING_GIVE_UP_SECONDS", -5.0)   # two days have passed
    summary = _sweeper(h).run()
    settled = [r for r in h.stored_rows() if r.correlation_id == summary.sweep_id and r.resource_id == res["id"]
               and r.verdict == "failed"]
    assert h.service.pending.list(res["id"]) == [] and len(settled) == 1, (
        f"record kept: {len(h.service.pending.list(res['id']))}, failed rows: {len(settled)}")


def test_control_a_fix_still_updating_before_the_give_up_age_waits(harness, monkeypatch):
    """CONTROL (passes): before the give-up age a fix still running waits, unaudited (README)."""
    res = b.storage(name="stwaits", blob=False)
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"})
    _long_running_fix(h, res)
    live = h.resource(res["id"])
    live["properties"]["provisioningState"] = "Updating"
    h.emu.put(live)
    monkeypatch.setattr(pending_confirm, "PENDING_STALE_SECONDS", -5.0)
    summary = _sweeper(h).run()
    assert len(h.service.pending.list(res["id"])) == 1
    assert not [r for r in h.stored_rows() if r.correlation_id == summary.sweep_id and r.resource_id == res["id"]
                and r.verdict == "failed"]


# --------------------------------------------------------------------------------------------------
# 3. the confirmation of stale fixes has no budget of its own: it can starve the sweep, run after run
def test_stale_fixes_that_cannot_be_read_do_not_starve_the_reconciling_sweep(harness, monkeypatch):
    """DEFECT (medium). ``confirm_stale_fixes`` (guardrails/pending_confirm.py) runs before the
    ring of the sweep, one resource after the other, bounded only by the sweep's own deadline; each
    ``confirm_pending`` gets a whole decision budget (``GUARDRAILS_TIME_BUDGET_SECONDS``, 20 s) for
    its read, which ARM 5xx answers spend in retries. ``stale`` returns the same oldest records first
    on every run, and a record is only given up after two days: some 25 stale fixes on resources
    whose reads fail slowly (a workspace or region answering 503) use the whole 540 s of every run
    for two days, and the sweep's ring never starts: drift whose event was lost is not found, the
    cursor never moves. Here 4 such records and a 4 s sweep budget (1.5 s decisions).
    Expected: the confirmation of stale fixes takes a bounded share of the run (for example half
    of the budget, like the Resource Graph listing's ``GRAPH_SHARE``), so every run also sweeps: the
    drifted storage account is fixed."""
    stuck = [b.storage(name=f"stslow{i}", blob=False) for i in range(4)]
    drifted = b.storage(name="stlostevent", blob=False)          # its write event was lost
    h = harness([*stuck, drifted], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5",
                                       "GUARDRAILS_SWEEP_MAX_SECONDS": "4"})
    for res in stuck:                                              # fixes left requested, never confirmed
        h.service.pending.add(res["id"], f"evt-{res['name']}", {
            "event_id": f"evt-{res['name']}", "correlation_id": "c" * 36, "event_time": "2026-01-01T00:00:00Z",
            "changes": [{"policy": "storage-private@1", "rule": "public-network-access-disabled",
                         "property": "properties.publicNetworkAccess", "before": "Enabled", "after": "Disabled"}]})
        h.emu.add_fault(method="GET", path_regex=re.escape(res["name"]) + "$", status=503, retry_after=1)
    monkeypatch.setattr(pending_confirm, "PENDING_STALE_SECONDS", -5.0)
    sweeper = bootstrap.build_sweeper(Settings.from_env(h.env))   # real clock: the budget is spent for real
    summary = sweeper.run()
    assert h.resource(drifted["id"])["properties"]["publicNetworkAccess"] == "Disabled", (
        f"the sweep never reached its ring: seen={summary.seen} truncated={summary.truncated} "
        f"failed={summary.failed} units_done={summary.units_done}")


# --------------------------------------------------------------------------------------------------
# 4. the sweep finds a resource compliant again, the compliance report keeps it open
def test_a_finding_the_sweep_sees_closed_leaves_the_reports_open_violations(harness):
    """DEFECT (medium). The sweep audits only what its pure filter finds violating; a listed
    resource it finds compliant is only counted (guardrails/sweep.py ``decide_listed``:
    ``tally.seen(compliant=1)``, no row). The compliance report's state of a resource is its latest
    audited decision (guardrails/report.py ``build_report``). So a resource whose last row is open
    (here: the sweep's own fix, refused by an Azure Policy deny, ``failed``) and that its owner then
    fixed by hand, the write event lost (what the sweep exists for), stays an "open violation" in
    the report for good, although every sweep since has found it compliant (its summary says so).
    The README's report counts a resource by "its latest decision in the period"; the sweep's
    compliant decision is made but never reaches the audit the report reads.
    Expected: a compliant finding by the sweep on a resource whose last audited decision was open
    is audited, once (a ``compliant`` ``Guardrails.Sweep`` row), so the report shows the resource
    compliant; the other compliant resources stay only counted."""
    from guardrails.report import build_report

    res = b.storage(name="stfixedbyhand", blob=False)
    h = harness([res])
    h.emu.add_fault(method="PATCH", path_regex="stfixedbyhand$", status=403, code="RequestDisallowedByPolicy",
                    times=1)
    first = _sweeper(h).run()
    (refused,) = [r for r in h.stored_rows() if r.correlation_id == first.sweep_id and r.resource_id == res["id"]]
    assert refused.verdict == "failed"
    live = h.resource(res["id"])
    live["properties"]["publicNetworkAccess"] = "Disabled"       # the owner fixes it; the event is lost
    h.emu.put(live)
    second = _sweeper(h).run()
    assert second.compliant == 1                                  # the sweep knows it is compliant
    now = datetime.now(timezone.utc)
    report = build_report(h.stored_rows(), since=now - timedelta(days=1), until=now + timedelta(minutes=1))
    assert [v.resource_id for v in report.open_violations] == [] and report.compliance == 1.0, (
        f"open: {[(v.resource_id.rsplit('/', 1)[-1], v.verdict, v.reason) for v in report.open_violations]}, "
        f"compliance {report.compliance}")


def test_control_without_stale_fixes_the_same_budget_fixes_the_lost_drift(harness):
    """CONTROL (passes) for the starvation test: the same 4 s budget, with the slow resources but
    no stale fixes to confirm, reaches the ring and fixes the drifted storage account."""
    slow = [b.storage(name=f"stslowc{i}", blob=False, pna="Disabled") for i in range(4)]
    drifted = b.storage(name="stlostevc", blob=False)
    h = harness([*slow, drifted], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5", "GUARDRAILS_SWEEP_MAX_SECONDS": "4"})
    for res in slow:
        h.emu.add_fault(method="GET", path_regex=re.escape(res["name"]) + "$", status=503, retry_after=1)
    bootstrap.build_sweeper(Settings.from_env(h.env)).run()
    assert h.resource(drifted["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_a_closed_finding_is_audited_once_and_other_compliant_resources_only_counted(harness):
    """Follow-up (the fix): the compliant row that closes a sweep's open finding is written once
    (the finding state goes with it); a compliant resource that had no open finding gets no row."""
    res = b.storage(name="stclosedonce", blob=False)
    clean = b.storage(name="stalwaysclean", blob=False, pna="Disabled")
    h = harness([res, clean])
    h.emu.add_fault(method="PATCH", path_regex="stclosedonce$", status=403, code="RequestDisallowedByPolicy",
                    times=1)
    sweeper = _sweeper(h)
    sweeper.run()
    assert sweeper.state.finding_state(res["id"]) is not None          # the failed fix is kept open
    live = h.resource(res["id"])
    live["properties"]["publicNetworkAccess"] = "Disabled"
    h.emu.put(live)
    second, third = _sweeper(h).run(), _sweeper(h).run()
    rows = {s.sweep_id: [(r.resource_id, r.verdict, r.event_type) for r in h.stored_rows()
                         if r.correlation_id == s.sweep_id] for s in (second, third)}
    assert rows[second.sweep_id] == [(res["id"], "compliant", "Guardrails.Sweep")] and rows[third.sweep_id] == []
    assert (second.compliant, third.compliant) == (2, 2) and sweeper.state.finding_state(res["id"]) is None


# --------------------------------------------------------------------------------------------------
# 1b. across instances (nothing shared but the tables): each record is claimed before it is audited
def _on_first_read(svc, then):
    """Run ``then`` once, when ``svc`` first reads a resource back (the confirmation holds the
    records' claims by then)."""
    real = svc.arm.get_resource

    def get_resource(rid, **kw):
        if not getattr(get_resource, "done", False):
            get_resource.done = True
            then()
        return real(rid, **kw)
    svc.arm.get_resource = get_resource


def test_the_fixs_own_event_on_another_instance_does_not_confirm_what_the_sweep_is_confirming(harness,
                                                                                               monkeypatch):
    """The sweep (its own instance: no lock shared) confirms a stale fix; while it reads the
    resource back, the fix's own late write event reaches the event path of another instance. The
    record is the sweep's (claimed): the event is ``ignored`` and the fix is confirmed once."""
    res = b.storage(name="stclaimsw", blob=False)
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"})
    _first, own_success = _long_running_fix(h, res)
    monkeypatch.setattr(pending_confirm, "PENDING_STALE_SECONDS", -5.0)
    sweeper = _sweeper(h)                                # no ``share_coordination``: another instance
    seen = []
    _on_first_read(sweeper.service, lambda: seen.append(h.deliver(own_success)))
    summary = sweeper.run()
    assert [(r.verdict, r.reason) for r in seen] == [("ignored", "own_write")]
    rows = _confirm_rows(h, res["id"])
    assert [r.correlation_id for r in rows] == [summary.sweep_id]
    assert h.service.pending.list(res["id"]) == []


def test_the_sweep_on_another_instance_does_not_confirm_what_the_fixs_own_event_is_confirming(harness, monkeypatch):
    """The reverse: the fix's own write event is confirming the record (claimed) when the sweep of
    another instance, with the records it listed, reaches the resource: no decision, one row."""
    res = b.storage(name="stclaimev", blob=False)
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"})
    _first, own_success = _long_running_fix(h, res)
    monkeypatch.setattr(pending_confirm, "PENDING_STALE_SECONDS", -5.0)
    sweeper = _sweeper(h)
    ((rid, pending, _oldest),) = [s for s in sweeper.service.pending.stale(datetime.now(timezone.utc) + timedelta(
        seconds=5)) if s[0].lower() == res["id"].lower()]
    swept = []
    _on_first_read(h.service, lambda: swept.append(
        sweeper.service.confirm_pending(rid, pending, sweep_id="sweep-s36-claim")))
    confirm = h.deliver(own_success)
    assert confirm.verdict == "remediated" and swept == [None]
    assert len(_confirm_rows(h, res["id"])) == 1 and h.service.pending.list(res["id"]) == []
