"""The expiry timer and a scope larger than one time budget: a scope the budget cuts short is kept
with where it stopped and goes on from there, each resource is decided once, later exemptions are
reached, and the window moves past it once it is finished (or given up at the attempt cap).
GIVEN / WHEN / THEN; a fake sweeper with a fake clock (one second per decision), no network.
(The cursor's pieces are imported inside the tests: each proves its own piece.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace as NS

import pytest

from guardrails import expiry
from guardrails.errors import ArmError
from guardrails.expiry import SCOPE_TIMER, TIMER, ExpiryReEnforcer
from guardrails.model.policy import Exemption

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
SUB2 = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
ST = "Microsoft.Storage/storageAccounts"


def _id(sub: str, rg: str, i: int) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{ST}/st{rg.replace('-', '')}{i:03d}"


class _State:
    def __init__(self, last=None) -> None:
        self.last = {TIMER: last} if last else {}
        self.retries: dict[str, list] = {}

    def last_run(self, t):
        return self.last.get(t)

    def set_last_run(self, t, w):
        self.last[t] = w

    def retry(self, t):
        return [dict(e) for e in self.retries.get(t, [])]

    def set_retry(self, t, items):
        self.retries[t] = [dict(e) for e in items]


class _Estate:
    """``resources[(sub, rg)]``: the ids ARM lists there (a subscription list: every group of it)."""

    def __init__(self, resources: dict[tuple[str, str], list[str]], *, budget: float = 10.0,
                 fail_list: set[str] | None = None) -> None:
        self.resources, self.t, self.decided, self.lists = resources, 0.0, [], []
        self.fail_list = fail_list or set()
        self.state = _State(T0)
        self.budget = budget

    def __call__(self) -> float:           # the clock
        return self.t

    def list_type(self, sub, rtype, resource_group=None, deadline=None, on_cut=None):
        """As ``ArmLister``: no item (a page of one) is read once ``deadline`` has passed
        (``on_cut`` called first, when items were left)."""
        self.lists.append((sub, resource_group))
        if (sub, resource_group) in self.fail_list or sub in self.fail_list:
            raise ArmError("list refused", status=403, reason="forbidden")
        for (s, rg), ids in self.resources.items():
            if s == sub and (resource_group is None or rg == resource_group):
                for rid in ids:
                    if deadline is not None and self.t > deadline:
                        if on_cut is not None:
                            on_cut()
                        return
                    yield {"id": rid, "type": ST}

    def decide_listed(self, tally, compiled, rtype, body, run_id, dry, et):
        self.t += 1.0                   # one second (one read) per decision
        self.decided.append(body["id"])
        tally.decided("violation")

    def enforcer(self, compiled, subs=(SUB,)) -> ExpiryReEnforcer:
        sw = NS(_clock=self, _wall=lambda: T0, state=self.state, reads=NS(taken=0), max_seconds=self.budget,
                service=NS(policies=NS(get=lambda: compiled), settings=NS(expiry_lookback_minutes=60)),
                _finish=lambda s, start: s, decide_listed=self.decide_listed, lister=self, subscriptions=subs)
        return ExpiryReEnforcer(sw)


def _compiled(*exemptions: Exemption):
    pol = NS(mode="enforce", exemptions=exemptions, ref="storage-private@1", selector=NS(resource_types=(ST,)))
    return NS(policies=[pol], role_policies=[])


def _ex(scope: str, minutes: int) -> Exemption:
    return Exemption(scope, "r", "o", T0 + timedelta(minutes=minutes))


def _runs(estate: _Estate, compiled, n: int, subs=(SUB,)):
    out = []
    for i in range(n):
        out.append(estate.enforcer(compiled, subs).run(now=T0 + timedelta(minutes=10 + 5 * i)))
    return out


# ---- a window scope cut short goes on where it stopped -------------------------------------------
def test_a_scope_larger_than_a_budget_completes_over_several_runs_each_resource_once():
    # GIVEN a subscription exemption over 25 violating accounts (10 decisions fit a run) and a later
    # resource-group exemption over one more
    big = [_id(SUB, "rg-a", i) for i in range(25)]
    late = [_id(SUB, "rg-late", 0)]
    estate = _Estate({(SUB, "rg-a"): big, (SUB, "rg-late"): late})
    compiled = _compiled(_ex(f"/subscriptions/{SUB}", 1), _ex(f"/subscriptions/{SUB}/resourceGroups/rg-late", 2))
    # WHEN the timer runs every 5 minutes
    first = estate.enforcer(compiled).run(now=T0 + timedelta(minutes=10))
    # THEN the first run stops, keeps the scope with where it stopped, and keeps the window
    assert first.truncated
    kept = estate.state.retries.get(SCOPE_TIMER, [])
    assert [(e["scope"], e["attempts"], e["reason"]) for e in kept] == [(f"/subscriptions/{SUB}", 1, "truncated")]
    assert isinstance(kept[0].get("resume"), dict)
    assert estate.state.last[TIMER] == T0
    runs = [first]
    for i in range(1, 6):
        runs.append(estate.enforcer(compiled).run(now=T0 + timedelta(minutes=10 + 5 * i)))
        if not runs[-1].truncated:
            break
    # AND every resource is decided exactly once, the later exemption is reached, the window moves on
    assert sorted(estate.decided) == sorted(big + late) and len(estate.decided) == len(set(estate.decided))
    assert not runs[-1].truncated and len(runs) == 3
    assert estate.state.last[TIMER] == T0 + timedelta(minutes=10 + 5 * (len(runs) - 1))
    assert estate.state.retries.get(SCOPE_TIMER, []) == []
    # AND the next run has nothing left to do
    estate.decided.clear()
    estate.enforcer(compiled).run(now=T0 + timedelta(minutes=40))
    assert estate.decided == []


def test_a_window_scope_cut_short_counts_attempts_and_is_given_up_then_the_window_moves_past_it(monkeypatch):
    # GIVEN an attempt cap of 2 and a scope of 50 accounts: more than 2 budgets of 10 decisions
    monkeypatch.setattr(expiry, "MAX_ATTEMPTS", 2)
    big = [_id(SUB, "rg-a", i) for i in range(50)]
    late = [_id(SUB, "rg-late", 0)]
    estate = _Estate({(SUB, "rg-a"): big, (SUB, "rg-late"): late})
    compiled = _compiled(_ex(f"/subscriptions/{SUB}/resourceGroups/rg-a", 1),
                         _ex(f"/subscriptions/{SUB}/resourceGroups/rg-late", 2))
    s1, s2 = _runs(estate, compiled, 2)
    # THEN the second cut is its last attempt: given up, and the window moves past its expiry
    assert s1.truncated and s2.truncated
    assert estate.state.retries.get(SCOPE_TIMER, []) == []
    assert estate.state.last[TIMER] == T0 + timedelta(minutes=1)
    assert len(estate.decided) == len(set(estate.decided))        # the second attempt went on, no repeat
    # AND the next run does not start it again from its first resource: it reaches the later exemption
    estate.decided.clear()
    s3 = estate.enforcer(compiled).run(now=T0 + timedelta(minutes=20))
    assert estate.decided == late and not s3.truncated
    assert estate.state.last[TIMER] == T0 + timedelta(minutes=20)


def test_a_large_scope_sharing_its_expiry_with_a_later_one_is_not_started_again_once_finished():
    # GIVEN two exemptions with the same expiry: 22 accounts (just over two runs of 11 decisions:
    # the run that finishes them has no time left for the other one) and one account
    big = [_id(SUB, "rg-a", i) for i in range(22)]
    other = [_id(SUB, "rg-b", 0)]
    estate = _Estate({(SUB, "rg-a"): big, (SUB, "rg-b"): other})
    compiled = _compiled(_ex(f"/subscriptions/{SUB}/resourceGroups/rg-a", 1),
                         _ex(f"/subscriptions/{SUB}/resourceGroups/rg-b", 1))
    # WHEN the timer runs every 5 minutes
    s1, s2 = _runs(estate, compiled, 2)
    # THEN the run that finished rg-a could not move the window past the shared expiry: rg-a is marked done
    assert s1.truncated and s2.truncated and estate.state.last[TIMER] == T0
    from guardrails.expiry_scopes import _done_of, _h      # marks are compact: a hash of the key per scope
    rg_a = _h(f"resource|storage-private@1|/subscriptions/{SUB}/resourceGroups/rg-a")
    assert _done_of(estate.state.retries[SCOPE_TIMER]) == {(rg_a, (T0 + timedelta(minutes=1)).isoformat())}
    # AND the next run does not list rg-a again: it reaches rg-b, the window moves on, the mark goes
    estate.lists.clear()
    s3 = estate.enforcer(compiled).run(now=T0 + timedelta(minutes=20))
    assert not s3.truncated and estate.lists == [(SUB, "rg-b")]
    assert sorted(estate.decided) == sorted(big + other) and len(estate.decided) == len(set(estate.decided))
    assert estate.state.last[TIMER] == T0 + timedelta(minutes=20) and estate.state.retries[SCOPE_TIMER] == []


def test_a_management_group_resumes_in_the_subscription_it_stopped_in_without_listing_the_first_again():
    # GIVEN a management-group exemption over two swept subscriptions of 8 accounts each
    one = [_id(SUB, "rg-a", i) for i in range(8)]
    two = [_id(SUB2, "rg-b", i) for i in range(8)]
    estate = _Estate({(SUB, "rg-a"): one, (SUB2, "rg-b"): two})
    compiled = _compiled(_ex("/providers/Microsoft.Management/managementGroups/mg-ml", 1))
    # WHEN the first run stops in the second subscription and the next one goes on
    s1 = estate.enforcer(compiled, subs=(SUB, SUB2)).run(now=T0 + timedelta(minutes=10))
    assert s1.truncated and estate.decided[:8] == one
    estate.lists.clear()
    s2 = estate.enforcer(compiled, subs=(SUB, SUB2)).run(now=T0 + timedelta(minutes=15))
    # THEN the first subscription is not listed again, and each account is decided once
    assert not s2.truncated and estate.lists == [(SUB2, None)]
    assert sorted(estate.decided) == sorted(one + two) and len(estate.decided) == 16


def test_a_failed_list_freezes_the_cursor_before_it():
    # GIVEN a management group: the first subscription lists, the second refuses its list
    one = [_id(SUB, "rg-a", i) for i in range(3)]
    two = [_id(SUB2, "rg-b", i) for i in range(3)]
    estate = _Estate({(SUB, "rg-a"): one, (SUB2, "rg-b"): two}, budget=100.0, fail_list={SUB2})
    compiled = _compiled(_ex("/providers/Microsoft.Management/managementGroups/mg-ml", 1))
    s1 = estate.enforcer(compiled, subs=(SUB, SUB2)).run(now=T0 + timedelta(minutes=10))
    assert s1.failed == 1 and estate.decided == one
    # WHEN the list works again
    estate.fail_list.clear()
    estate.decided.clear()
    estate.lists.clear()
    estate.enforcer(compiled, subs=(SUB, SUB2)).run(now=T0 + timedelta(minutes=15))
    # THEN the retry goes on with the refused list only: the first subscription is not re-decided
    assert estate.decided == two and estate.lists == [(SUB2, None)]
    assert estate.state.retries.get(SCOPE_TIMER, []) == []


# ---- the cursor ----------------------------------------------------------------------------------
def _walk(p, lists: dict[str, list[str]], stop_after: int | None = None) -> list[str]:
    """Decide the items ``p`` gives out of ``lists`` in order; stop (as the budget would) once
    ``stop_after`` items were decided, before the next one."""
    out: list[str] = []

    class Stop(Exception):
        pass
    try:
        for key, ids in lists.items():
            for body in p.items(key, ({"id": i} for i in ids)):
                if stop_after is not None and len(out) == stop_after:
                    raise Stop
                out.append(body["id"])
    except Stop:
        pass
    return out


def test_the_cursor_skips_finished_lists_and_decided_items():
    from guardrails.expiry_scopes import _Progress, resume_of

    lists = {"l0": ["a", "b"], "l1": ["c", "d", "e"], "l2": ["f"]}
    p = _Progress(None)
    assert _walk(p, lists, stop_after=3) == ["a", "b", "c"]
    q = _Progress(resume_of({"resume": p.at}))
    assert _walk(q, lists) == ["d", "e", "f"]


def test_the_cursor_errs_towards_deciding_again():
    from guardrails.expiry_scopes import _Progress

    lists = {"l0": ["a", "b"], "l1": ["c", "d", "e"]}
    p = _Progress(None)
    _walk(p, lists, stop_after=3)
    # the last id decided is no longer listed (deleted since): that list is decided whole
    assert _walk(_Progress(p.at), {"l0": ["a", "b"], "l1": ["d", "e"]}) == ["d", "e"]
    # another list at that ordinal (the order changed): decided whole
    assert _walk(_Progress(p.at), {"l0": ["a", "b"], "lX": ["c", "d", "e"]}) == ["c", "d", "e"]
    # a cut while still skipping (the budget ran out reading the list) keeps the cursor where it was
    q = _Progress(p.at)

    def cut_short():
        yield {"id": "b"}
        raise TimeoutError
    assert list(q.items("l0", iter([]))) == []
    with pytest.raises(TimeoutError):
        list(q.items("l1", cut_short()))
    assert q.at == p.at


def test_a_finished_list_moves_the_cursor_to_the_next_one():
    from guardrails.expiry_scopes import _Progress

    p = _Progress(None)
    _walk(p, {"l0": ["a", "b"]})
    assert p.at == {"list": 1, "in": "", "after": ""}
    q = _Progress(p.at)
    assert _walk(q, {"l0": ["a", "b"], "l1": ["c"]}) == ["c"]


def test_the_cursor_is_case_insensitive_and_a_frozen_one_no_longer_moves():
    from guardrails.expiry_scopes import _h, _Progress

    p = _Progress(None)
    _walk(p, {"L0": ["/A/B", "/A/C"]}, stop_after=1)
    assert _walk(_Progress(p.at), {"l0": ["/a/b", "/a/c"]}) == ["/a/c"]
    f = _Progress(None)
    it = f.items("l0", iter([{"id": "x"}, {"id": "y"}]))
    next(it)
    next(it)          # x handled
    f.freeze()
    list(it)          # y handled after the freeze, and the list's end: not recorded
    assert f.at == {"list": 0, "in": _h("l0"), "after": _h("x")}


@pytest.mark.parametrize("entry", [
    None, {}, {"resume": None}, {"resume": "x"}, {"resume": {"list": -1, "in": "a", "after": "b"}},
    {"resume": {"list": True, "in": "a", "after": "b"}}, {"resume": {"list": 0, "in": 1, "after": "b"}},
    {"resume": {"list": 0, "in": "a"}}])
def test_a_malformed_cursor_starts_the_scope_again(entry):
    from guardrails.expiry_scopes import resume_of

    assert resume_of(entry) is None
