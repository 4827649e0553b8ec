"""Review s25: a breaker permit spent on a fix that is then not made is given back — the pure
window arithmetic (``give_back``) and the rails' bookkeeping of what one call took (``grant`` /
``give_back``): only a permit the call itself counted, once, keyed by its event."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from guardrails.adapters.remediation_tables import admit, give_back
from guardrails.errors import StoreError
from guardrails.model.arm_id import parse_arm_id
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.model.policy import Breaker
from guardrails.safety_rails import SafetyRails

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
RID = parse_arm_id(f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/"
                   "workspaces/w/onlineEndpoints/e")


# ---------------------------------------------------------------- the window (pure)
def take(times, keys, key, now, *, window=600, most=10):
    allowed, counted, times, keys = admit(times, keys, now=now, window_seconds=window, max_actions=most, key=key)
    assert allowed and counted
    return times, keys


def test_giving_back_a_permit_frees_its_place_in_the_window():
    # GIVEN two permits in one bucket and one in a later bucket
    times, keys = take([], [], "E1", 1000.0)
    times, keys = take(times, keys, "E2", 1000.5)
    times, keys = take(times, keys, "E3", 1300.0)
    assert [b[2] for b in times] == [2, 1]
    # WHEN E2's is given back
    left = give_back(times, keys, "E2")
    # THEN its bucket counts one less and its key is gone: a redelivery of E2 counts again
    assert left is not None
    times2, keys2 = left
    assert [b[2] for b in times2] == [1, 1] and [k for k, _t in keys2] == ["E1", "E3"]
    allowed, counted, _t, _k = admit(times2, keys2, now=1301.0, window_seconds=600, max_actions=3, key="E2")
    assert allowed and counted


def test_a_bucket_left_empty_goes_and_a_second_give_back_does_nothing():
    times, keys = take([], [], "E1", 1000.0)
    times, keys = take(times, keys, "E2", 1300.0)
    times, keys = give_back(times, keys, "E2")
    assert times == [[1000.0, 1000.0, 1]] and [k for k, _t in keys] == ["E1"]
    assert give_back(times, keys, "E2") is None          # once
    assert give_back(times, keys, "never") is None       # a key with no permit takes nothing back


def test_a_permit_outside_every_bucket_leaves_the_nearest():
    """Workers' clocks differ: a permit's time may fall outside its bucket's [first, last]."""
    times = [[1000.0, 1001.0, 2], [1400.0, 1402.0, 1]]
    keys = [["E1", 1000.0], ["E2", 990.0], ["E3", 1402.0]]
    times, keys = give_back(times, keys, "E2")
    assert times == [[1000.0, 1001.0, 1], [1400.0, 1402.0, 1]]


def test_a_window_stored_as_bare_times_by_an_earlier_release_is_given_back_too():
    times, keys = give_back([1000.0, 1100.0], [["E1", 1000.0], ["E2", 1100.0]], "E1")
    assert times == [[1100.0, 1100.0, 1]] and keys == [["E2", 1100.0]]


# ---------------------------------------------------------------- the rails' bookkeeping
class Breakers:
    """A store that says whether each permit was counted by the call (``acquire``)."""

    def __init__(self, answers: dict[str, tuple[bool, bool]], fail_release: bool = False) -> None:
        self.answers, self.released, self.fail_release = answers, [], fail_release

    def acquire(self, policy_id, subscription_id, *, max_actions, window_seconds, key=None):
        return self.answers[policy_id]

    def try_acquire(self, policy_id, subscription_id, **kw):
        return self.acquire(policy_id, subscription_id, **kw)[0]

    def release(self, policy_id, subscription_id, key):
        if self.fail_release:
            raise StoreError("breaker release: table unavailable")
        self.released.append((policy_id, subscription_id, key))
        return True


def fixes(*policy_ids):
    return [(SimpleNamespace(policy=SimpleNamespace(id=p, breaker=Breaker(5, 600))),
             ViolationRecord(policy=f"{p}@1", rule="r", property="properties.traffic.blue", before=1, after=0,
                             outcome="violation")) for p in policy_ids]


def row(event_id="E1"):
    return AuditRow(event_id=event_id, event_type="Microsoft.Resources.ResourceWriteSuccess",
                    resource_id=str(RID), verdict="ignored")


def test_only_the_permits_the_call_counted_are_given_back_once():
    # GIVEN P1's permit counted by this call, P2's reused from an earlier delivery of the event
    store = Breakers({"p1": (True, True), "p2": (True, False)})
    rails = SafetyRails(SimpleNamespace(escalations=None, breakers=store))
    r = row()
    grant = rails.grant(r, RID, fixes("p1", "p2"), [])
    assert len(grant.kept) == 2 and grant.permits == ["p1"]
    # WHEN the fix is not made
    rails.give_back(r, RID, grant)
    rails.give_back(r, RID, grant)
    # THEN P1's goes back, keyed by the event, once; P2's (maybe an earlier fix that was made) stays
    assert store.released == [("p1", SUB, "E1")]


def test_give_back_can_be_limited_to_some_policies():
    store = Breakers({"p1": (True, True), "p2": (True, True)})
    rails = SafetyRails(SimpleNamespace(escalations=None, breakers=store))
    r = row()
    grant = rails.grant(r, RID, fixes("p1", "p2"), [])
    rails.give_back(r, RID, grant, policies={"p2"})
    assert store.released == [("p2", SUB, "E1")] and grant.permits == ["p1"]


def test_a_refused_permit_is_not_given_back_and_an_unkeyed_one_cannot_be():
    store = Breakers({"p1": (False, False)})
    rails = SafetyRails(SimpleNamespace(escalations=None, breakers=store))
    r = row()
    grant = rails.grant(r, RID, fixes("p1"), [])
    assert grant.kept == [] and r.reason == "circuit_open"
    rails.give_back(r, RID, grant)
    unkeyed = row(event_id="")
    store.answers["p1"] = (True, True)
    grant = rails.grant(unkeyed, RID, fixes("p1"), [])
    rails.give_back(unkeyed, RID, grant)
    assert store.released == []


def test_a_store_without_acquire_gives_nothing_back():
    """A ``BreakerStore`` with only ``try_acquire`` cannot say a permit was this call's."""
    store = SimpleNamespace(try_acquire=lambda *a, **k: True)
    rails = SafetyRails(SimpleNamespace(escalations=None, breakers=store))
    grant = rails.grant(row(), RID, fixes("p1"), [])
    assert grant.kept and grant.permits == []
    rails.give_back(row(), RID, grant)          # nothing to call


def test_a_give_back_the_store_refuses_is_logged_not_raised(caplog):
    store = Breakers({"p1": (True, True)}, fail_release=True)
    rails = SafetyRails(SimpleNamespace(escalations=None, breakers=store))
    r = row()
    grant = rails.grant(r, RID, fixes("p1"), [])
    with caplog.at_level(logging.WARNING, logger="guardrails"):
        rails.give_back(r, RID, grant)
    assert "guardrail_permit_not_given_back" in caplog.text


class Escalations:
    def __init__(self, counted: bool) -> None:
        self.counted, self.withdrawn = counted, []

    def attempt(self, rid, actor, *, rule, event, intent):
        return SimpleNamespace(allowed=True, counted=self.counted)

    def withdraw(self, rid, event):
        self.withdrawn.append((rid, event))


@pytest.mark.parametrize("counted", [True, False])
def test_the_flip_flop_count_goes_back_only_when_this_call_counted_it(counted):
    esc = Escalations(counted)
    rails = SafetyRails(SimpleNamespace(escalations=esc, breakers=Breakers({"p1": (True, True)})))
    r = row()
    grant = rails.grant(r, RID, fixes("p1"), [])
    rails.give_back(r, RID, grant, flip_flop=False)
    assert esc.withdrawn == []
    rails.give_back(r, RID, grant)
    assert esc.withdrawn == ([(str(RID), "E1")] if counted else [])


# ---------------------------------------------------------------- an etag-less read, again before its PUT
def test_two_reads_differing_only_in_what_arm_keeps_itself_are_the_same_decision():
    from guardrails.ml_fixes import as_decided
    first = {"id": "x", "properties": {"traffic": {"blue": 50}, "provisioningState": "Updating"},
             "systemData": {"lastModifiedAt": "2026-11-24T09:00:00Z"}}
    again = {"id": "x", "etag": '"7"', "properties": {"traffic": {"blue": 50}, "provisioningState": "Succeeded"},
             "systemData": {"lastModifiedAt": "2026-11-24T09:00:05Z"}}
    assert as_decided(first) == as_decided(again)
    moved = {**again, "properties": {"traffic": {"blue": 0}, "provisioningState": "Succeeded"}}
    assert as_decided(first) != as_decided(moved)
    tagged = {**first, "tags": {"owner": "x"}}
    assert as_decided(first) != as_decided(tagged)
