"""The exemption-expiry timer's lists keep the run's deadline, as the sweep's do: a list page a 429
holds past it is not waited for (the run is cut short there, not failed), and a list the deadline
stops between pages ends the run (its scope kept with where it stopped) instead of passing for
the whole list. Azurite (timer state, audit rows) + the HTTPS emulator (ARM) through the real SDK
clients, a fake clock (1 read = 1 s)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.adapters.sweep_tables import TableTimerState
from guardrails.expiry import TIMER, ExpiryReEnforcer
from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_expiry import exempt_many

pytestmark = pytest.mark.integration

SCOPE_TIMER = "exemption-expiry.scopes"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _enforcer(h) -> tuple[ExpiryReEnforcer, FakeClock]:
    clock = FakeClock()           # moves only while something waits: 1 s a read
    return ExpiryReEnforcer(bootstrap.build_sweeper(h.settings, clock=clock, sleep=clock.sleep)), clock


def _decided(h) -> Counter:
    return Counter(r.resource_id for r in h.stored_rows() if r.event_type == "Guardrails.ExemptionExpired")


def _list_pages(h) -> int:
    return sum(1 for q in h.arm_requests("GET") if q["path"].lower().endswith("/storageaccounts"))


def _harness(harness, tmp_path, accounts, *, seconds: str):
    h = harness(accounts, env={S.ARM_READS_PER_SECOND: "1", S.ARM_READ_BURST: "1", S.SWEEP_MAX_SECONDS: seconds},
                extra_metadata=[exempt_many(tmp_path, (b.rg_id("rg-big"), NOW - timedelta(minutes=3)),
                                            notify_only=True)])
    TableTimerState(h.tables).set_last_run(TIMER, NOW - timedelta(minutes=30))
    return h


def test_a_list_page_throttled_past_the_runs_deadline_cuts_the_run_short_without_waiting(harness, tmp_path):
    # GIVEN an expired exemption over a group of 2 open accounts, and ARM answering the group's
    # storage list with a 429 whose Retry-After (55 s) is past the run's 20 s budget
    accounts = [b.storage(f"stthr{i}", blob=False, rg="rg-big") for i in range(2)]
    h = _harness(harness, tmp_path, accounts, seconds="20")
    h.emu.add_fault(method="GET", path_regex=r"/resourceGroups/rg-big/providers/Microsoft\.Storage/storageAccounts$",
                    status=429, retry_after=55, times=1)
    enforcer, clock = _enforcer(h)
    t0 = clock()
    # WHEN the timer runs
    first = enforcer.run(NOW)
    # THEN it did not sleep the Retry-After past its budget: cut short, not an error of the run,
    # and the scope is kept as cut short (one attempt) for the next run
    assert clock() - t0 <= 20
    assert first.truncated and first.errors == []
    kept = TableTimerState(h.tables).retry(SCOPE_TIMER)
    assert [(e["scope"], e["attempts"], e["reason"]) for e in kept] == [(b.rg_id("rg-big"), 1, "truncated")]
    assert _decided(h) == Counter()
    # AND the next run lists the scope and decides both accounts, once each
    second, _ = _enforcer(h)
    assert not second.run(NOW + timedelta(minutes=5)).truncated
    assert _decided(h) == Counter({a["id"]: 1 for a in accounts})


def test_a_list_the_deadline_stops_between_pages_is_not_taken_for_the_whole_list(harness, tmp_path):
    # GIVEN an expired exemption over a group of 6 open accounts, listed 2 to a page, and runs of
    # 4 s (a page read and each decision's fresh read take 1 s)
    accounts = [b.storage(f"stpage{i}", blob=False, rg="rg-big") for i in range(6)]
    h = _harness(harness, tmp_path, accounts, seconds="4")
    h.emu.page_size = 2
    # WHEN the timer runs every 5 minutes until a run is no longer cut short
    runs = []
    for i in range(8):
        enforcer, clock = _enforcer(h)
        h.emu.clear_requests()
        deadline = clock() + 4
        runs.append(enforcer.run(NOW + timedelta(minutes=5 * i)))
        # no list page is asked for once a run's deadline has passed
        assert clock() <= deadline + 1, f"run {i} read past its deadline"
        if not runs[-1].truncated:
            break
    # THEN the first run was cut short and every account of the group was decided, once
    assert runs[0].truncated and len(runs) > 1 and not runs[-1].truncated
    assert _decided(h) == Counter({a["id"]: 1 for a in accounts})
    assert TableTimerState(h.tables).retry(SCOPE_TIMER) == []
