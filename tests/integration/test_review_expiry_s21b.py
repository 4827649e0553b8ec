"""An expired exemption whose scope holds more violating resources than one run can decide within
its time budget: the runs go on where the last one stopped (each resource decided, and its owner
told, once), a later exemption is reached, and the window moves on. Azurite (timer state, audit
rows) + the HTTPS emulator (ARM) through the real SDK clients, a fake clock (1 read = 1 s)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import bootstrap, expiry
from guardrails import settings as S
from guardrails.adapters.sweep_tables import TableTimerState
from guardrails.expiry import TIMER, ExpiryReEnforcer
from guardrails.expiry_scopes import _done_of, _h
from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_expiry import exempt_many

pytestmark = pytest.mark.integration

SCOPE_TIMER = "exemption-expiry.scopes"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
PACED = {S.ARM_READS_PER_SECOND: "1", S.ARM_READ_BURST: "1", S.SWEEP_MAX_SECONDS: "6"}   # 1 read = 1 s


def _notify_only(tmp_path, *exemptions: tuple[str, datetime]):
    """``storage-private`` whose rule only notifies: a re-decided account is still violating, so
    every decision costs a read and tells its owner again (nothing gets cheaper by being fixed)."""
    return exempt_many(tmp_path, *exemptions, notify_only=True)


def _paced(h) -> ExpiryReEnforcer:
    clock = FakeClock()           # moves only while a read waits for its token: 1 s a read
    return ExpiryReEnforcer(bootstrap.build_sweeper(h.settings, clock=clock, sleep=clock.sleep))


def _expiry_rows(h) -> list:
    return [r for r in h.stored_rows() if r.event_type == "Guardrails.ExemptionExpired"]


def _lists(h) -> list[str]:
    return [q["path"].lower() for q in h.arm_requests("GET") if q["path"].lower().endswith("/storageaccounts")]


def test_a_scope_larger_than_a_budget_goes_on_where_it_stopped_and_reaches_the_later_exemption(harness, tmp_path):
    # GIVEN a resource-group exemption that ran out over 14 open accounts (a run of 6 reads decides
    # about 5), and a later exemption over another group
    accounts = [b.storage(f"stbig{i:02d}", blob=False, rg="rg-big") for i in range(14)]
    late = b.storage("stlate", blob=False, rg="rg-late")
    h = harness([*accounts, late], env=PACED, extra_metadata=[_notify_only(
        tmp_path, (b.rg_id("rg-big"), NOW - timedelta(minutes=3)), (b.rg_id("rg-late"), NOW - timedelta(minutes=2)))])
    state = TableTimerState(h.tables)
    state.set_last_run(TIMER, NOW - timedelta(minutes=30))
    # WHEN the timer runs every 5 minutes until a run is no longer cut short
    runs, kept_after_first, window_after_first = [], None, None
    for i in range(12):
        runs.append(_paced(h).run(NOW + timedelta(minutes=5 * i)))
        if i == 0:
            kept_after_first, window_after_first = state.retry(SCOPE_TIMER), state.last_run(TIMER)
        if not runs[-1].truncated:
            break
    # THEN every account of both exemptions was decided, and its owner told, exactly once
    rows = _expiry_rows(h)
    decided = Counter(r.resource_id for r in rows)
    assert [rid for rid, n in decided.items() if n > 1] == [], "re-decided (and re-notified)"
    assert sorted(decided) == sorted(r["id"] for r in [*accounts, late])
    told = Counter(r.resource_id for r in rows if r.notify)
    assert sorted(told) == sorted(decided) and set(told.values()) == {1}
    assert all(r.verdict == "violation" for r in rows)
    assert not runs[-1].truncated and 2 < len(runs) < 12 and all(r.seen > 0 for r in runs)
    # AND the first run, cut short in rg-big, kept it with where it stopped and held the window
    assert runs[0].truncated and 0 < runs[0].seen < len(accounts)
    assert [(e["scope"], e["attempts"], e["reason"]) for e in kept_after_first] == [
        (b.rg_id("rg-big"), 1, "truncated")]
    assert kept_after_first[0].get("resume")
    assert window_after_first == NOW - timedelta(minutes=30)
    # AND the window moved on, nothing is kept, and the next run has nothing left to do
    assert state.last_run(TIMER) == NOW + timedelta(minutes=5 * (len(runs) - 1))
    assert state.retry(SCOPE_TIMER) == []
    h.emu.clear_requests()
    assert _paced(h).run(NOW + timedelta(minutes=5 * len(runs))).seen == 0 and h.arm_requests() == []
    assert len(_expiry_rows(h)) == len(rows)


def test_a_scope_that_outlasts_its_attempts_is_given_up_and_the_window_moves_past_it(harness, tmp_path, monkeypatch,
                                                                                   caplog):
    # GIVEN an attempt cap of 2 and a group no two runs can finish
    monkeypatch.setattr(expiry, "MAX_ATTEMPTS", 2)
    accounts = [b.storage(f"stbig{i:02d}", blob=False, rg="rg-big") for i in range(16)]
    late = b.storage("stlate", blob=False, rg="rg-late")
    big_expiry = NOW - timedelta(minutes=3)
    h = harness([*accounts, late], env=PACED, extra_metadata=[_notify_only(
        tmp_path, (b.rg_id("rg-big"), big_expiry), (b.rg_id("rg-late"), NOW - timedelta(minutes=2)))])
    state = TableTimerState(h.tables)
    state.set_last_run(TIMER, NOW - timedelta(minutes=30))
    # WHEN two runs stop inside rg-big: the second was its last attempt
    assert _paced(h).run(NOW).truncated and _paced(h).run(NOW + timedelta(minutes=5)).truncated
    # THEN it is given up (logged), the window moves past its expiry, and no account was decided twice
    assert [rid for rid, n in Counter(r.resource_id for r in _expiry_rows(h)).items() if n > 1] == []
    assert state.retry(SCOPE_TIMER) == [] and "guardrail_expiry_scope_retry_abandoned" in caplog.text
    assert state.last_run(TIMER) == big_expiry
    # AND the next run does not start rg-big again: it reaches the later exemption
    h.emu.clear_requests()
    third = _paced(h).run(NOW + timedelta(minutes=10))
    assert not third.truncated
    assert _lists(h) == [f"{b.rg_id('rg-late')}/providers/Microsoft.Storage/storageAccounts".lower()]
    assert [r.resource_id for r in _expiry_rows(h)].count(late["id"]) == 1
    assert state.last_run(TIMER) == NOW + timedelta(minutes=10)



def test_a_large_scope_sharing_its_expiry_with_another_is_finished_once_not_started_again(harness, tmp_path):
    # GIVEN two exemptions with one expiry (a quarter's end): 14 open accounts in rg-big, where the
    # run that finishes rg-big has no time left for rg-other, so the window cannot move past it
    accounts = [b.storage(f"stbig{i:02d}", blob=False, rg="rg-big") for i in range(14)]
    other = b.storage("stother", blob=False, rg="rg-other")
    when = NOW - timedelta(minutes=3)
    h = harness([*accounts, other], env=PACED, extra_metadata=[_notify_only(
        tmp_path, (b.rg_id("rg-big"), when), (b.rg_id("rg-other"), when))])
    state = TableTimerState(h.tables)
    state.set_last_run(TIMER, NOW - timedelta(minutes=30))
    # WHEN the timer runs every 5 minutes until a run is no longer cut short
    runs, marked = [], []
    for i in range(10):
        runs.append(_paced(h).run(NOW + timedelta(minutes=5 * i)))
        marked += [k for k, _ in _done_of(state.retry(SCOPE_TIMER))]      # compact marks: a hash of the key
        if not runs[-1].truncated:
            break
    # THEN rg-big was not started again once finished (marked done while the window held its expiry):
    # every account of both exemptions was decided, and its owner told, once
    rows = _expiry_rows(h)
    assert [rid for rid, n in Counter(r.resource_id for r in rows).items() if n > 1] == []
    assert sorted({r.resource_id for r in rows}) == sorted(r["id"] for r in [*accounts, other])
    assert _h(f"resource|storage-private@8|{b.rg_id('rg-big')}") in marked and not runs[-1].truncated
    # AND the window moved on and the scope row is empty again
    assert state.last_run(TIMER) == NOW + timedelta(minutes=5 * (len(runs) - 1))
    assert state.retry(SCOPE_TIMER) == []
