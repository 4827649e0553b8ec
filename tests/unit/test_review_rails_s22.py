"""Pure parts of the session-22 rail fixes: the breaker's permit window (``admit``) and the
flip-flop count given back when the breaker refuses a revert (``flipflop.withdraw``)."""

from __future__ import annotations

from guardrails.adapters.remediation_tables import MAX_PERMIT_KEYS, TIME_BUCKETS, admit
from guardrails.model.policy import FlipFlop
from guardrails.policy.flipflop import FlipFlopState, step, withdraw


def test_a_key_inside_the_window_is_allowed_again_without_counting():
    ok, counted, times, keys = admit([], [], now=100.0, window_seconds=60, max_actions=1, key="e1")
    assert (ok, counted) == (True, True)
    again = admit(times, keys, now=110.0, window_seconds=60, max_actions=1, key="e1")
    assert again[:2] == (True, False) and again[2] == times
    assert admit(times, keys, now=110.0, window_seconds=60, max_actions=1, key="e2")[:2] == (False, False)
    assert admit(times, keys, now=161.0, window_seconds=60, max_actions=1, key="e1")[:2] == (True, True)  # window moved
    assert admit(times, keys, now=110.0, window_seconds=60, max_actions=1, key=None)[:2] == (False, False)


def test_buckets_bound_the_state_and_leave_the_window_with_their_last_permit():
    times, keys = [], []
    for i in range(5000):
        ok, counted, times, keys = admit(times, keys, now=1000.0 + i * 0.01, window_seconds=600,
                                         max_actions=100_000, key=f"k{i}")
        assert ok and counted
    assert len(times) <= TIME_BUCKETS + 1 and sum(c for _f, _l, c in times) == 5000
    assert len(keys) == MAX_PERMIT_KEYS
    first, last, _n = times[0]
    # the first bucket counts until its last permit leaves the window (errs towards the breaker)
    kept = admit(times, keys, now=last + 600 - 0.001, window_seconds=600, max_actions=100_000, key=None)[2]
    assert kept[0][0] == first
    assert admit(times, keys, now=last + 600 + 0.001, window_seconds=600, max_actions=100_000, key=None)[2][0][0] != first


def test_bare_times_of_the_earlier_release_count_one_each():
    assert admit([10.0, 20.0], [], now=30.0, window_seconds=60, max_actions=2, key="x")[:2] == (False, False)
    assert admit([10.0, 20.0], [], now=30.0, window_seconds=60, max_actions=3, key="x")[:2] == (True, True)


def test_withdraw_gives_back_one_events_count_only():
    rule = FlipFlop(max_reverts=2, window_minutes=60)
    s, _ = step(None, now=1.0, actor=None, rule=rule, event="a", intent='{"x": 1}')
    s, _ = step(s, now=2.0, actor=None, rule=rule, event="b")
    back = withdraw(s, "b")
    assert back.times == (1.0,) and [k for k, _t in back.events] == ["a"] and back.intents == s.intents
    assert withdraw(s, "zzz") == s
    _s3, d = step(back, now=3.0, actor=None, rule=rule, event="c")
    assert d.allowed, "the withdrawn revert no longer counts towards escalation"
    escalated = FlipFlopState(times=(1.0, 2.0), events=(("a", 1.0),), escalated=True)
    assert withdraw(escalated, "a") == escalated
