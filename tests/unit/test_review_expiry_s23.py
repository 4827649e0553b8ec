"""The expiry timer, review s23: one run at a time (the run lease), a run whose lease ran out saves
nothing over the run that took over, and ``done`` marks are never lost silently (compact, and
when even so they cannot all be kept: logged, and the scopes left are listed again, nothing skipped).
GIVEN / WHEN / THEN; the fake estate of ``test_review_expiry_s21b`` (a fake clock, one second per
decision), no network."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import timedelta

from guardrails.adapters.sweep_tables import bounded_json
from guardrails.expiry import SCOPE_TIMER, TIMER
from tests.unit.test_review_expiry_s21b import SUB, SUB2, T0, _compiled, _Estate, _ex, _id, _State


class _LeasedState(_State):
    """Timer state with the run lease, timed by the estate's fake clock."""

    def __init__(self, clock, last) -> None:
        super().__init__(last)
        self.clock, self.lease, self.writes = clock, None, []

    def take_run_lease(self, name, holder, seconds):
        now = self.clock()
        if self.lease is not None and self.lease[0] != holder and self.lease[1] > now:
            return False
        self.lease = (holder, now + seconds)
        return True

    def renew_run_lease(self, name, holder, seconds):
        if self.lease is None or self.lease[0] != holder:
            return False
        self.lease = (holder, self.clock() + seconds)
        return True

    def release_run_lease(self, name, holder):
        if self.lease is not None and self.lease[0] == holder:
            self.lease = None

    def set_last_run(self, t, w):
        self.writes.append(("last_run", t))
        super().set_last_run(t, w)

    def set_retry(self, t, items):
        self.writes.append(("retry", t))
        super().set_retry(t, items)


class _Overlapped(_Estate):
    """Starts a second run (another instance: the singleton lock lost) inside the first decision."""

    def __init__(self, resources, *, compiled, stall: float = 0.0, **kw) -> None:
        super().__init__(resources, **kw)
        self.state = _LeasedState(self, T0)
        self.compiled, self.stall, self.second = compiled, stall, None

    def decide_listed(self, tally, compiled, rtype, body, run_id, dry, et):
        if self.second is None:
            self.t += self.stall                   # the first run stalls (past its lease, if ``stall``)
            self.second = "running"
            self.second = self.enforcer(self.compiled).run(now=T0 + timedelta(minutes=6))
        super().decide_listed(tally, compiled, rtype, body, run_id, dry, et)


def test_a_run_that_finds_another_holding_the_lease_decides_nothing_and_saves_nothing(caplog):
    # GIVEN an expired resource-group exemption over 5 accounts
    ids = [_id(SUB, "rg-a", i) for i in range(5)]
    compiled = _compiled(_ex(f"/subscriptions/{SUB}/resourceGroups/rg-a", 1))
    estate = _Overlapped({(SUB, "rg-a"): ids}, compiled=compiled, budget=100.0)
    # WHEN a second run starts while the first is deciding
    with caplog.at_level(logging.WARNING, logger="guardrails"):
        first = estate.enforcer(compiled).run(now=T0 + timedelta(minutes=5))
    # THEN the second decided nothing and said so; each account was decided (and its owner told) once
    second = estate.second
    assert Counter(estate.decided) == Counter(ids)
    assert second.seen == 0 and any("another exemption-expiry run" in e for e in second.errors)
    assert "guardrail_expiry_run_skipped" in caplog.text
    # AND only the first run saved the state (and gave the lease back)
    assert not first.errors and estate.state.last[TIMER] == T0 + timedelta(minutes=5)
    assert estate.state.lease is None


def test_a_run_whose_lease_ran_out_does_not_save_its_window_or_cursor_over_the_run_that_took_over(caplog):
    # GIVEN a resource-group exemption over 30 accounts, a budget of 20 decisions, and a first run
    # that stalls past its lease (budget + margin) in its first decision
    ids = [_id(SUB, "rg-a", i) for i in range(30)]
    compiled = _compiled(_ex(f"/subscriptions/{SUB}/resourceGroups/rg-a", 1))
    estate = _Overlapped({(SUB, "rg-a"): ids}, compiled=compiled, budget=20.0, stall=500.0)
    # WHEN a second run takes the expired lease over, runs and saves (its cursor: 21 decided)
    with caplog.at_level(logging.ERROR, logger="guardrails"):
        first = estate.enforcer(compiled).run(now=T0 + timedelta(minutes=5))
    second = estate.second
    assert second.truncated and not second.errors
    cursor = estate.state.retries[SCOPE_TIMER]
    # THEN the first run (cut short at once, its cursor at the start) saved nothing over it
    assert first.truncated and any("lease ran out" in e for e in first.errors)
    assert "guardrail_expiry_lease_lost" in caplog.text
    assert estate.state.retries[SCOPE_TIMER] == cursor and cursor[0]["resume"]["after"]
    assert estate.state.writes.count(("retry", SCOPE_TIMER)) == 1
    # AND the next run goes on from the second run's cursor: no account is decided a second time
    estate.decided.clear()
    estate.enforcer(compiled).run(now=T0 + timedelta(minutes=15))
    assert estate.decided == ids[21:]


class _OnePropertyState(_State):
    """Timer state that keeps each row as one JSON text of at most ``limit`` characters, as the table
    adapter did (``bounded_json``: the tail of a longer list becomes ``"… N more"``, dropped on read)."""

    def __init__(self, last, limit: int | None = None) -> None:
        super().__init__(last)
        self.text: dict[str, str] = {}
        self.limit = limit
        if limit is not None:
            self.retry_chars = limit         # says what it holds in full

    def set_retry(self, t, items):
        self.text[t] = bounded_json(list(items), self.limit or 30000)

    def retry(self, t):
        return [i for i in json.loads(self.text.get(t, "[]")) if isinstance(i, dict)]


def _many_sharing_one_expiry(state_limit: int | None):
    """150 one-account resource groups and one subscription of 300 accounts, all expiring at once:
    the subscription outlasts a run (200 decisions), so the 150 finished groups must be marked done."""
    resources = {(SUB, f"rg-{i:03d}"): [_id(SUB, f"rg-{i:03d}", 0)] for i in range(150)}
    resources[(SUB2, "rg-big")] = [_id(SUB2, "rg-big", i) for i in range(300)]
    compiled = _compiled(*[_ex(f"/subscriptions/{SUB}/resourceGroups/rg-{i:03d}", 1) for i in range(150)],
                         _ex(f"/subscriptions/{SUB2}", 1))
    estate = _Estate(resources, budget=200.0)
    estate.state = _OnePropertyState(T0, state_limit)
    return estate, compiled, [rid for ids in resources.values() for rid in ids]


def _run_until_done(estate, compiled, n=8):
    runs = []
    for k in range(n):
        runs.append(estate.enforcer(compiled, subs=(SUB, SUB2)).run(now=T0 + timedelta(minutes=5 + 5 * k)))
        if not runs[-1].truncated:
            break
    return runs


def test_done_marks_of_many_scopes_sharing_an_expiry_fit_the_row_and_no_scope_is_decided_twice():
    # GIVEN 150 resource-group exemptions and a subscription larger than a run, one expiry, and a
    # state that keeps one property (30,000 characters) per row
    estate, compiled, every = _many_sharing_one_expiry(None)
    # WHEN the timer runs until a run is no longer cut short
    runs = _run_until_done(estate, compiled)
    # THEN every account was decided (and its owner told) exactly once, and the window moved on
    assert len(runs) > 1 and not runs[-1].truncated
    assert Counter(estate.decided) == Counter(every)
    assert estate.state.last[TIMER] == T0 + timedelta(minutes=5 * len(runs))
    assert estate.state.retry(SCOPE_TIMER) == [] and not any(e for r in runs for e in r.errors)


def test_done_marks_that_cannot_all_be_kept_are_logged_and_their_scopes_listed_again_not_skipped(caplog):
    # GIVEN the same estate, and a state that holds only 1,000 characters of the scope row in full
    estate, compiled, every = _many_sharing_one_expiry(1000)
    # WHEN the timer runs until a run is no longer cut short
    with caplog.at_level(logging.ERROR, logger="guardrails"):
        runs = _run_until_done(estate, compiled)
    # THEN the marks that did not fit were never lost silently: an ERROR and an error of the run
    assert "guardrail_expiry_done_marks_dropped" in caplog.text
    assert any("could not be marked done" in e for e in runs[0].errors)
    # AND what was kept fitted and read back whole (never a "… N more" tail)
    assert all(len(t) <= 1000 and "more" not in t for t in estate.state.text.values())
    # AND nothing was skipped: every account was decided, the big subscription once, and the window
    # stayed before the shared expiry until the run that finished it all
    assert set(estate.decided) == set(every) and not runs[-1].truncated
    big = [r for r in estate.decided if f"/subscriptions/{SUB2}/" in r]
    assert len(big) == len(set(big)) == 300
    assert estate.state.last[TIMER] == T0 + timedelta(minutes=5 * len(runs))
