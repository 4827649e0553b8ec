"""The expiry timer, review s23, through the real SDK clients against Azurite and the emulator: two
runs at once (the singleton lock lost) decide and tell each owner once (the run lease); a lease
is renewed only by its holder; a timer's ``retry`` longer than one table property is kept whole,
so ``done`` marks of many scopes sharing one expiry survive the table row."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from guardrails import bootstrap
from guardrails.adapters.sweep_tables import MAX_PROPERTY_CHARS, TableTimerState
from guardrails.expiry import SCOPE_TIMER, TIMER, ExpiryReEnforcer
from tests import builders as b
from tests.integration.conftest import *  # noqa: F401,F403
from tests.integration.test_expiry import NOW, exempt_many
from tests.unit.test_review_expiry_s23 import _many_sharing_one_expiry, _run_until_done
from tests.unit.test_review_expiry_s21b import T0

pytestmark = pytest.mark.integration


def test_two_expiry_runs_at_once_decide_and_tell_each_owner_once(harness, tmp_path):
    # GIVEN a notify-only policy whose resource-group exemption over 20 open accounts just expired
    accounts = [b.storage(f"stp{i:02d}", blob=False, rg="rg-partner") for i in range(20)]
    h = harness(accounts, extra_metadata=[exempt_many(
        tmp_path, (b.rg_id("rg-partner"), NOW - timedelta(minutes=2)), notify_only=True)])
    runs = []
    for _ in range(2):                                   # two hosts, each its own sweeper
        sw = bootstrap.build_sweeper(h.settings)
        sw.service.audit = h.recorder
        runs.append(ExpiryReEnforcer(sw))
    gate, out = threading.Barrier(2), []

    def go(r):
        gate.wait()
        out.append(r.run())

    # WHEN both start at the same moment
    ts = [threading.Thread(target=go, args=(r,)) for r in runs]
    [t.start() for t in ts]
    [t.join() for t in ts]
    # THEN each account was decided and its owner told once, by the run that held the lease
    told = Counter(r.resource_id.lower() for r in h.recorder.rows
                   if r.event_type == "Guardrails.ExemptionExpired" and r.notify)
    assert sorted(told) == sorted(a["id"].lower() for a in accounts) and set(told.values()) == {1}
    skipped = [s for s in out if any("another exemption-expiry run" in e for e in s.errors)]
    assert len(skipped) == 1 and skipped[0].seen == 0
    # AND the window moved once, and the lease was given back (the next run takes it)
    state = TableTimerState(h.tables)
    assert state.last_run(TIMER) is not None
    assert state.take_run_lease(TIMER, "the-next-run", 600)
    state.release_run_lease(TIMER, "the-next-run")


def test_a_run_lease_is_renewed_only_by_the_run_that_still_holds_it(harness):
    state = TableTimerState(harness([]).tables)
    # GIVEN a lease this run holds: renewing it keeps it
    assert state.take_run_lease("expiry-test", "run-a", 600)
    assert state.renew_run_lease("expiry-test", "run-a", 60)
    assert not state.take_run_lease("expiry-test", "run-b", 600)
    # WHEN it runs out and another run takes it over, THEN the first can no longer renew it
    assert state.take_run_lease("expiry-test", "run-a", 0.001) and (__import__("time").sleep(1.1) or True)
    assert state.take_run_lease("expiry-test", "run-b", 600)
    assert not state.renew_run_lease("expiry-test", "run-a", 60)
    # AND once given back, nobody renews it
    state.release_run_lease("expiry-test", "run-b")
    assert not state.renew_run_lease("expiry-test", "run-b", 60)


def test_a_retry_list_longer_than_one_property_is_kept_whole_and_a_shorter_one_replaces_it(harness):
    state = TableTimerState(harness([]).tables)
    # GIVEN 3,000 entries (about 100,000 characters of JSON, over three properties)
    items = [{"id": f"/subscriptions/s/resourceGroups/rg/providers/x/y/name-{i:05d}", "attempts": 1}
             for i in range(3000)]
    state.set_last_run("expiry-test", NOW)
    state.set_retry("expiry-test", items)
    # THEN all are read back, and ``last_run`` is kept
    assert state.retry("expiry-test") == items and state.last_run("expiry-test") is not None
    assert len(state.retry("expiry-test")) * 30 > MAX_PROPERTY_CHARS
    # AND a shorter list written over it leaves nothing of the longer one behind
    state.set_retry("expiry-test", items[:2])
    assert state.retry("expiry-test") == items[:2]


def test_done_marks_of_many_scopes_sharing_an_expiry_survive_the_table_row(harness):
    # GIVEN 150 resource-group exemptions and a subscription larger than a run, one expiry, and the
    # timer state in Table Storage
    estate, compiled, every = _many_sharing_one_expiry(None)
    estate.state = TableTimerState(harness([]).tables)
    estate.state.set_last_run(TIMER, T0)
    # WHEN the timer runs until a run is no longer cut short
    runs = _run_until_done(estate, compiled)
    # THEN every account was decided (and its owner told) exactly once, and the window moved on
    assert len(runs) > 1 and not runs[-1].truncated
    assert Counter(estate.decided) == Counter(every)
    assert estate.state.last_run(TIMER) == T0 + timedelta(minutes=5 * len(runs))
    assert estate.state.retry(SCOPE_TIMER) == []
