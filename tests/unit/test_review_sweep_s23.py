"""The reconciling sweep within its budget, one run at a time, and round its whole estate (review s23).

GIVEN the real ``Sweeper`` and the shipped baseline's compiled policies over a fake lister whose
every page costs 0.5 s of a fake clock (no waiting), WHEN runs follow one another, THEN:

- A: nothing (a list, a page, a secret decision) is begun past the deadline, so a run ends
  within its budget and still writes its summary;
- C: a run that finds the run lease held does nothing but say so;
- D: successive runs go round the estate (a cursor in the timer state): every subscription's
  resources and role assignments and every vault are reached, none starved behind the rest.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

import guardrails.sweep_roles as SR
from guardrails.policy.evaluate import compile_policies
from guardrails.policy.loader import load_directory
from guardrails.ratelimit import FakeClock
from guardrails.sweep import SWEEP_TIMER, Sweeper

SWEEP_CURSOR = "reconciling_sweep.cursor"   # the TimerState row the sweep keeps its cursor in

BASELINE = Path(__file__).resolve().parents[2] / "metadata"
PAGE = 0.5
BUDGET = 60.0
NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)


class Lister:
    """A lister that honours no deadline itself (what the sweep begins is what is checked):
    every page 0.5 s, two resources a page; records when each list began."""

    def __init__(self, clock):
        self.clock, self.pages, self.began, self.roles = clock, 0, [], []

    def _page(self, what):
        self.began.append((self.clock(), what))
        self.clock.sleep(PAGE)
        self.pages += 1

    def list_type(self, sub, rtype, resource_group=None, deadline=None):
        self._page((sub, rtype.name))
        for i in range(2):
            yield {"id": f"/subscriptions/{sub}/resourceGroups/rg/providers/{rtype.name}/r{i}", "properties": {}}

    def list_children(self, parent_id, rtype, deadline=None):
        self._page((parent_id, rtype.name))
        return iter(())

    def list_role_assignments(self, scope, at_scope=True, deadline=None):
        self._page((scope, "roleAssignments"))
        self.roles.append(scope)
        yield {"id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/a1", "properties": {"scope": scope}}


class Compiled:
    """The baseline's compiled policies, recording the subscriptions whose bodies were judged."""

    def __init__(self, secret_policies=None):
        self.inner = compile_policies(load_directory(BASELINE))
        self.judged = set()
        self._secrets = secret_policies

    def __getattr__(self, name):
        if name == "secret_policies" and self._secrets is not None:
            return self._secrets
        return getattr(self.inner, name)

    def violations(self, body, *a, **k):
        self.judged.add(body["id"].split("/")[2])
        return []


class State:
    """TimerState as the sweep uses it: run lease, last run, the cursor row, finding states."""

    def __init__(self):
        self.rows, self.last, self.lease, self.leases_asked = {}, None, None, []

    def take_run_lease(self, name, holder, seconds):
        self.leases_asked.append((name, seconds))
        if self.lease is not None and self.lease != holder:
            return False
        self.lease = holder
        return True

    def release_run_lease(self, name, holder):
        if self.lease == holder:
            self.lease = None

    def last_run(self, timer):
        return self.last

    def set_last_run(self, timer, when):
        self.last = when

    def retry(self, timer):
        return list(self.rows.get(timer, []))

    def set_retry(self, timer, items):
        self.rows[timer] = list(items)

    def finding_states(self):
        return []


def _sweeper(subs, *, compiled=None, state=None, vaults=0):
    clock = FakeClock(0.0)
    compiled = compiled or Compiled()
    service = NS(policies=NS(get=lambda: compiled), roles=None, secrets=None, ml=None, audit=None,
                 pending=NS(stale=lambda t: []))
    store = NS(rows=[])
    store.write = store.rows.append
    sw = Sweeper(service, Lister(clock), store, state if state is not None else State(),
                 reads=NS(taken=0, waited=0.0), concurrency=1, max_seconds=BUDGET, subscriptions=subs, clock=clock,
                 wall_clock=lambda: NOW)
    return sw, clock, compiled


@pytest.fixture
def judged_roles(monkeypatch):
    judged = []
    monkeypatch.setattr(SR, "_judge", lambda sw, tally, roles, policies, body, *a: judged.append(body["id"]))
    return judged


# ---- A: within the budget -----------------------------------------------------------------------
def test_no_list_is_begun_past_the_deadline_and_the_summary_is_written_within_the_budget(judged_roles):
    subs = [f"sub-{i:03d}" for i in range(40)]
    sw, clock, _ = _sweeper(subs)
    sw.service.roles = NS(authz=NS())

    summary = sw.run(dry_run=True)

    assert summary.truncated
    assert [t for t, _ in sw.lister.began if t > BUDGET] == []          # no page requested past the deadline
    assert clock() <= BUDGET + PAGE                                     # only the page under way finishes
    assert sw.store.rows and sw.store.rows[-1]["sweep_id"] == summary.sweep_id


def test_no_secret_decision_is_begun_past_the_deadline():
    """A vault listed just before the deadline: its violating secrets are not decided after it."""
    decided = []
    policy = NS(mode="enforce", vaults=("kv-00",), secrets=(), keys=(), governs=lambda v: True,
                require_expiry=True, max_validity_days=90)
    sw, clock, _ = _sweeper(["sub-000"], compiled=Compiled(secret_policies=[policy]))
    sw.lister.list_type = lambda *a, **k: iter(())                    # no resources: the vault is the run

    def list_secrets(vault, deadline=None, go_on=None):
        clock.sleep(BUDGET + 1)                                         # the list outlasts the budget
        return [NS(name=f"s{i}", enabled=True, expires_on=None) for i in range(5)]

    sw.service.secrets = NS(store=NS(list_secrets=list_secrets, get_secret=lambda v, n, deadline=None: NS(version="1")))
    sw.service.reconcile_secret = lambda vault, name, *a, **k: (decided.append(clock()), NS(verdict="remediated"))[1]

    summary = sw.run(dry_run=True)

    assert decided == [] and summary.truncated


# ---- C: one run at a time ----------------------------------------------------------------------
def test_a_run_that_finds_the_run_lease_held_does_nothing_and_says_so():
    state = State()
    state.lease = "sweep-of-another-instance"
    sw, _, compiled = _sweeper(["sub-000"], state=state)

    summary = sw.run()

    assert sw.lister.pages == 0 and compiled.judged == set()
    assert summary.failed == 1 and "another sweep is running" in summary.errors[0]
    assert sw.store.rows[-1]["sweep_id"] == summary.sweep_id            # the skipped run still has its row
    assert state.lease == "sweep-of-another-instance" and state.last is None


def test_a_run_holds_the_lease_for_its_budget_and_gives_it_back():
    state = State()
    sw, _, _ = _sweeper(["sub-000"], state=state)

    sw.run()

    assert state.leases_asked == [(SWEEP_TIMER, BUDGET + 60.0)] and state.lease is None
    sw.run(dry_run=True)                                                # a dry run changes nothing: no lease
    assert len(state.leases_asked) == 1


def test_a_run_whose_lease_was_taken_over_keeps_neither_its_cursor_nor_its_start():
    state = State()
    state.renew_run_lease = lambda name, holder, seconds: False         # ran out; another run has it now
    sw, _, _ = _sweeper(["sub-000", "sub-001"], state=state)

    summary = sw.run()

    assert SWEEP_CURSOR not in state.rows and state.last is None
    assert any("took it over" in e for e in summary.errors)


# ---- D: round the estate -----------------------------------------------------------------------
def test_successive_runs_cover_every_subscription_its_role_assignments_and_every_vault(judged_roles):
    subs = [f"sub-{i:03d}" for i in range(40)]
    listed_vaults = []
    policy = NS(mode="enforce", vaults=tuple(f"kv-{i:02d}" for i in range(8)), secrets=(), keys=(),
                governs=lambda v: True, require_expiry=True, max_validity_days=90)
    compiled = Compiled(secret_policies=[policy])
    state = State()
    sw, clock, _ = _sweeper(subs, compiled=compiled, state=state)
    sw.service.roles = NS(authz=NS())

    def list_secrets(vault, deadline=None, go_on=None):
        clock.sleep(4 * PAGE)
        listed_vaults.append(vault)
        return []

    sw.service.secrets = NS(store=NS(list_secrets=list_secrets))
    judged, began, summaries = set(), [], []
    for _ in range(12):
        compiled.judged.clear()
        s = sw.run()
        summaries.append(s)
        judged |= compiled.judged
        began.append(s.began_with)
    role_subs = {r.split("/")[2] for r in judged_roles if r.startswith("/subscriptions/")}

    assert all(s.truncated and 0 < s.units_done < s.units for s in summaries)
    # each run begins where the previous one stopped (never the same place twice in a row); with the
    # unfinished units resumed (s32), the ring goes round in whole runs, so the starts repeat per round
    assert all(a != b for a, b in zip(began, began[1:]))
    assert judged == set(subs)                                          # every subscription's resources
    assert role_subs == set(subs)                                       # and its role assignments
    assert set(listed_vaults) == {f"kv-{i:02d}" for i in range(8)}      # every vault, not kv-00 only
    assert state.rows[SWEEP_CURSOR][0]["next"] == summaries[-1].next_begins_with


def test_a_dry_run_and_a_run_given_its_subscriptions_leave_the_cursor_alone():
    state = State()
    sw, _, _ = _sweeper([f"sub-{i:03d}" for i in range(40)], state=state)
    sw.run(dry_run=True)
    assert SWEEP_CURSOR not in state.rows
    sw.run(subscriptions=["sub-039"])
    assert SWEEP_CURSOR not in state.rows


def test_the_ring_spreads_the_other_units_among_the_subscriptions_and_a_too_large_first_unit_is_passed():
    from guardrails.sweep_ring import _interleave, _next_start

    assert _interleave(list("abcdef"), [1, 2]) == ["a", "b", 1, "c", "d", "e", 2, "f"]
    assert _interleave([], [1]) == [1]
    # the first unfinished unit is where the next run begins ...
    assert _next_start([True, True, True, False], [True, False, False, False]) == 1
    # ... unless that is the first unit itself (larger than a budget): the first one never begun
    assert _next_start([True, True, False], [False, False, False]) == 2
    assert _next_start([True, True], [False, False]) == 1
    assert _next_start([True, True], [True, True]) == 0
