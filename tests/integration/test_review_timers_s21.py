"""The timers that re-decide resources, on Azurite (timer state, audit and summary rows) + the
HTTPS emulator (ARM) through the real SDK clients:

- exemption expiry: a scope that is gone (ARM 404) is done; a scope whose list is refused is
  listed again by the next runs (capped), and neither holds the window back; a run stops at the
  time budget and moves the window only up to what it handled in full.
- the sweep's event-coverage check: it runs on its own reserve when the resource sweep used the
  time budget; a source it cannot reach in time is a sweep error, not a silent pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from guardrails import bootstrap, expiry
from guardrails import settings as S
from guardrails.adapters.sweep_tables import TableSweepStore, TableTimerState
from guardrails.expiry import TIMER, ExpiryReEnforcer
from guardrails.local.eventgrid_world import subscription_wiring
from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_expiry import _enforcer, _iso, exempt_many
from tests.integration.test_sweep import _this_month, rbac_with_break_glass

pytestmark = pytest.mark.integration

SCOPE_TIMER = "exemption-expiry.scopes"     # ``expiry.SCOPE_TIMER``: the row of the scopes listed again

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _pna(h, res) -> str:
    return h.resource(res["id"])["properties"]["publicNetworkAccess"]


def _lists(h) -> list[str]:
    """The storage-account lists sent to ARM (lower-cased paths)."""
    return [q["path"].lower() for q in h.arm_requests("GET") if q["path"].lower().endswith("/storageaccounts")]


def _expiry_rows(h) -> list:
    return [r for r in h.stored_rows() if r.event_type == "Guardrails.ExemptionExpired"]


# ---- 1. a scope that is gone, or whose list keeps failing, does not hold the window back --------
def test_a_deleted_resource_group_is_done_and_does_not_hold_back_the_window(harness, tmp_path, caplog):
    # GIVEN two exemptions that ran out: rg-gone was deleted since (ARM: 404 on its lists), rg-live holds
    # an account that is open again
    live = b.storage("stlive", blob=False, rg="rg-live")
    h = harness([live], extra_metadata=[exempt_many(
        tmp_path, (b.rg_id("rg-gone"), NOW - timedelta(minutes=3)), (b.rg_id("rg-live"), NOW - timedelta(minutes=2)))])
    h.emu.add_fault(method="GET", path_regex=r"/resourceGroups/rg-gone/providers/Microsoft\.Storage/storageAccounts$",
                    status=404)
    state = TableTimerState(h.tables)
    # WHEN the expiry timer runs
    first = _enforcer(h).run(NOW)
    # THEN rg-live is enforced, rg-gone is no error (nothing is left there) and the window moves on
    assert _pna(h, live) == "Disabled" and (first.seen, first.remediated) == (1, 1)
    assert (first.failed, first.errors, first.truncated) == (0, [], False)
    assert state.last_run(TIMER) == NOW and state.retry(SCOPE_TIMER) == []
    assert "guardrail_expiry_scope_gone" in caplog.text and "rg-gone" in caplog.text
    # AND the next run does not repeat either scope: no list, no second row
    h.emu.clear_requests()
    second = _enforcer(h).run(NOW + timedelta(minutes=5))
    assert second.seen == 0 and h.arm_requests() == []
    assert [(r.resource_id, r.verdict) for r in _expiry_rows(h)] == [(live["id"], "remediated")]


def test_a_role_exemption_on_a_deleted_resource_group_is_done(harness, tmp_path, caplog):
    # GIVEN a role exemption at a resource group deleted since (ARM: 404 on its assignment list)
    d = rbac_with_break_glass(tmp_path, exemption=(b.rg_id("rg-gone"), _iso(NOW - timedelta(minutes=2))))
    h = harness([], extra_metadata=[d], world={"roleAssignments": [b.role_assignment("Owner", b.BREAK_GLASS)]})
    h.emu.add_fault(method="GET", path_regex=r"/resourceGroups/rg-gone/providers/Microsoft\.Authorization/roleAssignments$",
                    status=404)
    # WHEN the expiry timer runs
    summary = _enforcer(h).run(NOW)
    # THEN it is no error and the window moves on: the next run does not list it again
    assert (summary.failed, summary.errors) == (0, [])
    assert TableTimerState(h.tables).last_run(TIMER) == NOW and "guardrail_expiry_scope_gone" in caplog.text
    h.emu.clear_requests()
    assert _enforcer(h).run(NOW + timedelta(minutes=5)).seen == 0 and h.arm_requests() == []


def test_a_refused_list_is_retried_by_the_next_run_without_repeating_the_window(harness, tmp_path):
    # GIVEN two exemptions that ran out; ARM refuses the first list of rg-locked (403, once)
    locked = [b.storage(f"stlocked{i}", blob=False, rg="rg-locked") for i in range(2)]
    live = b.storage("stlive", blob=False, rg="rg-live")
    h = harness([*locked, live], extra_metadata=[exempt_many(
        tmp_path, (b.rg_id("rg-locked"), NOW - timedelta(minutes=3)), (b.rg_id("rg-live"), NOW - timedelta(minutes=2)))])
    h.emu.add_fault(method="GET", path_regex=r"/resourceGroups/rg-locked/providers/Microsoft\.Storage/storageAccounts$",
                    status=403, times=1)
    state = TableTimerState(h.tables)
    # WHEN the timer runs: the refused list is an error, kept to be listed again; the window moves on
    first = _enforcer(h).run(NOW)
    assert first.failed == 1 and "rg-locked" in first.errors[0] and "403" in first.errors[0]
    assert _pna(h, live) == "Disabled" and all(_pna(h, r) == "Enabled" for r in locked)
    assert state.last_run(TIMER) == NOW
    assert [(e["scope"], e["attempts"]) for e in state.retry(SCOPE_TIMER)] == [(b.rg_id("rg-locked"), 1)]
    # AND the next run lists rg-locked again (only it) and enforces it
    h.emu.clear_requests()
    second = _enforcer(h).run(NOW + timedelta(minutes=5))
    assert _lists(h) == [f"{b.rg_id('rg-locked')}/providers/Microsoft.Storage/storageAccounts".lower()]
    assert all(_pna(h, r) == "Disabled" for r in locked)
    assert (second.remediated, second.failed, second.errors) == (2, 0, [])
    assert state.retry(SCOPE_TIMER) == [] and state.last_run(TIMER) == NOW + timedelta(minutes=5)
    # AND a third run has nothing left to do
    h.emu.clear_requests()
    assert _enforcer(h).run(NOW + timedelta(minutes=10)).seen == 0 and h.arm_requests() == []
    assert sorted(r.resource_id for r in _expiry_rows(h)) == sorted(r["id"] for r in [*locked, live])


def test_a_list_refused_for_good_is_given_up_after_its_attempts(harness, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(expiry, "MAX_ATTEMPTS", 3)
    locked = b.storage("stlocked", blob=False, rg="rg-locked")
    h = harness([locked], extra_metadata=[exempt_many(tmp_path, (b.rg_id("rg-locked"), NOW - timedelta(minutes=2)))])
    h.emu.add_fault(method="GET", path_regex=r"/resourceGroups/rg-locked/providers/Microsoft\.Storage/storageAccounts$",
                    status=403)                                  # every time
    state = TableTimerState(h.tables)
    for i, attempts in enumerate((1, 2)):
        summary = _enforcer(h).run(NOW + timedelta(minutes=5 * i))
        assert summary.failed == 1 and state.last_run(TIMER) == NOW + timedelta(minutes=5 * i)
        assert [e["attempts"] for e in state.retry(SCOPE_TIMER)] == [attempts]
    # the third failure is the last attempt: dropped, logged, left to the reconciling sweep
    assert _enforcer(h).run(NOW + timedelta(minutes=10)).failed == 1
    assert state.retry(SCOPE_TIMER) == [] and "guardrail_expiry_scope_retry_abandoned" in caplog.text
    h.emu.clear_requests()
    assert _enforcer(h).run(NOW + timedelta(minutes=15)).seen == 0 and h.arm_requests() == []
    assert _pna(h, locked) == "Enabled"


# ---- 4. the expiry run stops at the time budget --------------------------------------------------
PACED = {S.ARM_READS_PER_SECOND: "1", S.ARM_READ_BURST: "1", S.SWEEP_MAX_SECONDS: "6"}   # 1 read = 1 s


def _paced(h) -> ExpiryReEnforcer:
    clock = FakeClock()           # moves only while a read waits for its token: 1 s a read
    return ExpiryReEnforcer(bootstrap.build_sweeper(h.settings, clock=clock, sleep=clock.sleep))


def test_a_huge_expired_scope_stops_at_the_time_budget_and_the_next_runs_go_on(harness, tmp_path):
    # GIVEN a resource-group exemption that ran out over 12 open accounts, and a budget of 6 reads
    accounts = [b.storage(f"stbig{i:02d}", blob=False, rg="rg-big") for i in range(12)]
    h = harness(accounts, extra_metadata=[exempt_many(tmp_path, (b.rg_id("rg-big"), NOW - timedelta(minutes=2)))],
                env=PACED)
    state = TableTimerState(h.tables)
    # WHEN the timer runs: it stops at its budget, says so, and keeps the window
    first = _paced(h).run(NOW)
    fixed = [r for r in accounts if _pna(h, r) == "Disabled"]
    assert first.truncated and 0 < first.remediated == len(fixed) < len(accounts)
    assert first.duration_s <= 6 + 2 * 2              # at most the decision under way when the budget ran out
    assert state.last_run(TIMER) is None
    stored = [s for s in TableSweepStore(h.tables).read_month(*_this_month()) if s["sweep_id"] == first.sweep_id]
    assert stored and stored[0]["truncated"] is True
    # AND the next runs go on where it stopped (what it fixed is compliant on the listed body: no read)
    runs = [first]
    for i in range(1, 10):
        runs.append(_paced(h).run(NOW + timedelta(minutes=i)))
        if not runs[-1].truncated:
            break
    assert all(_pna(h, r) == "Disabled" for r in accounts)
    assert sum(r.remediated for r in runs) == len(accounts) and not runs[-1].truncated
    assert state.last_run(TIMER) == NOW + timedelta(minutes=len(runs) - 1)
    rows = _expiry_rows(h)
    assert sorted(r.resource_id for r in rows) == sorted(r["id"] for r in accounts)     # each fixed once


def test_a_truncated_run_moves_the_window_up_to_the_last_exemption_handled_in_full(harness, tmp_path):
    # GIVEN an early exemption on one account and a later one on a large resource group
    early = b.storage("stearly", blob=False)
    accounts = [b.storage(f"stbig{i:02d}", blob=False, rg="rg-big") for i in range(12)]
    early_expiry = NOW - timedelta(minutes=10)
    h = harness([early, *accounts], env=PACED, extra_metadata=[exempt_many(
        tmp_path, (early["id"], early_expiry), (b.rg_id("rg-big"), NOW - timedelta(minutes=2)))])
    state = TableTimerState(h.tables)
    state.set_last_run(TIMER, NOW - timedelta(minutes=30))
    # WHEN the run stops inside the large group
    first = _paced(h).run(NOW)
    assert first.truncated and _pna(h, early) == "Disabled"
    # THEN the window moved to the early expiry, not further, and the next run does not read it again
    assert state.last_run(TIMER) == early_expiry
    h.emu.clear_requests()
    _paced(h).run(NOW + timedelta(minutes=5))
    assert not [q for q in h.arm_requests() if "stearly" in q["path"].lower()]
    assert [r.resource_id for r in _expiry_rows(h)].count(early["id"]) == 1


# ---- 2. the coverage check runs on its own reserve ---------------------------------------------
SUB2 = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"     # added after the deployment: no system topic
APP = f"/subscriptions/{b.SUB}/resourceGroups/rg-guardrails/providers/Microsoft.Web/sites/func-guardrails-t1"


def _coverage_estate(h_factory, retry_after: int | None):
    """``b.SUB`` wired, ``SUB2`` not; the sweep's storage list of ``b.SUB`` is throttled once for
    ``retry_after`` seconds (of a FakeClock): the resource sweep uses its 50 s budget and more."""
    st2 = b.storage("stnew", pna="Disabled", blob=False)
    st2["id"] = st2["id"].replace(b.SUB, SUB2)
    h = h_factory([b.storage("stok", pna="Disabled", blob=False), *subscription_wiring(b.SUB, APP), st2],
                  env={S.FUNCTION_APP_ID: APP, S.SWEEP_SUBSCRIPTIONS: f"{b.SUB},{SUB2}", S.SWEEP_MAX_SECONDS: "50",
                       S.SWEEP_CONCURRENCY: "1"})
    if retry_after is not None:
        h.emu.add_fault(method="GET", path_regex=rf"/subscriptions/{b.SUB}/providers/Microsoft\.Storage/storageAccounts$",
                        status=429, retry_after=retry_after, times=1)
    clock = FakeClock()
    return h, bootstrap.build_sweeper(h.settings, clock=clock, sleep=clock.sleep)


def _coverage_rows(h, sweep_id: str) -> dict:
    return {r.resource_id: r for r in h.stored_rows() if r.correlation_id == sweep_id and r.reason == "event_coverage"}


def test_coverage_is_checked_when_the_resource_sweep_used_its_time_budget(harness):
    # GIVEN a sweep whose resource lists ran past its 50 s deadline (52 s), within the check's 5 s reserve
    h, sweeper = _coverage_estate(harness, retry_after=47)
    # WHEN it runs
    summary = sweeper.run()
    # THEN the resource sweep says it stopped, and the coverage check still ran: SUB2's gap is recorded
    assert summary.truncated
    assert {c["source"]: c["covered"] for c in summary.coverage} == {f"/subscriptions/{b.SUB}": True,
                                                                      f"/subscriptions/{SUB2}": False}
    assert (summary.uncovered, summary.failed) == (1, 0)
    rows = _coverage_rows(h, summary.sweep_id)
    assert list(rows) == [f"/subscriptions/{SUB2}"] and rows[f"/subscriptions/{SUB2}"].verdict == "violation"
    assert [v.rule for v in rows[f"/subscriptions/{SUB2}"].violations] == ["no_system_topic"]
    assert TableTimerState(h.tables).coverage_state(f"/subscriptions/{SUB2}")["covered"] is False


def test_a_source_the_reserve_cannot_reach_is_a_sweep_error_not_a_silent_pass(harness, caplog):
    # GIVEN a sweep whose resource lists ran past its deadline and the check's reserve (58 s > 50 + 5):
    # a Retry-After is no longer waited out past the deadline, but a page already in flight (ARM
    # slow to answer, up to the read timeout) cannot be interrupted
    h, sweeper = _coverage_estate(harness, retry_after=None)
    clock = sweeper._clock
    get_page = sweeper.lister._get_page

    def slow_storage_page(url, key, until=None):
        page = get_page(url, key, until)
        if "Microsoft.Storage/storageAccounts" in url and b.SUB in url:
            clock.sleep(58)
        return page

    sweeper.lister._get_page = slow_storage_page
    summary = sweeper.run()
    # THEN each source not checked is an error of the run, with no verdict, no row and no state
    assert summary.truncated and summary.uncovered == 0
    assert summary.failed == 2 and all("not checked" in e for e in summary.errors)
    assert [(c["source"], c["covered"], [g["code"] for g in c["gaps"]]) for c in summary.coverage] == [
        (f"/subscriptions/{b.SUB}", None, ["unchecked"]), (f"/subscriptions/{SUB2}", None, ["unchecked"])]
    assert _coverage_rows(h, summary.sweep_id) == {}
    assert TableTimerState(h.tables).coverage_state(f"/subscriptions/{SUB2}") is None
    assert "guardrail_coverage_unchecked" in caplog.text
    assert not [q for q in h.arm_requests("GET") if "Microsoft.EventGrid" in q["path"]]
    stored = [s for s in TableSweepStore(h.tables).read_month(*_this_month()) if s["sweep_id"] == summary.sweep_id]
    assert stored[0]["failed"] == 2
