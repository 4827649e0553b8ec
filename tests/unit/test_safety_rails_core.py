"""Safety rails, pure parts: flip-flop counting, the policy fields of shadow mode, flip-flop and
private-endpoint-first (loader and round trip), approved-connection counting, shadow compilation."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from guardrails.errors import MetadataValidationError
from guardrails.model.policy import FlipFlop, Policy, PrivateEndpointFirst
from guardrails.model.resource import ResourceSnapshot
from guardrails.policy.evaluate import compile_policies
from guardrails.policy.flipflop import FlipFlopState, describe_actors, step, strictest
from guardrails.policy.loader import load_documents
from guardrails.resource_guardrail import approved_private_endpoints
from tests.unit.test_policy_loader import storage_doc

PIPE = {"object_id": "11111111-2222-3333-4444-555555555555", "app_id": "aaaa", "upn": None}
BOB = {"object_id": "99999999-2222-3333-4444-555555555555", "app_id": None, "upn": "bob@contoso.com"}
RULE = FlipFlop(max_reverts=3, window_minutes=10)


def run(times_and_actors, rule=RULE, state=None):
    decisions = []
    for t, actor in times_and_actors:
        state, d = step(state, now=t, actor=actor, rule=rule)
        decisions.append(d)
    return state, decisions


# ---- flip-flop ----------------------------------------------------------------------------------
def test_n_reverts_are_made_and_the_next_one_escalates():
    state, ds = run([(0, PIPE), (60, PIPE), (120, PIPE), (180, PIPE)])
    assert [d.allowed for d in ds] == [True, True, True, False]
    assert ds[3].escalated_now and ds[3].reverts == 3
    assert state.escalated and state.escalated_at == 180
    assert [a["object_id"] for a in ds[3].actors] == [PIPE["object_id"]]   # deduplicated


def test_once_escalated_it_holds_and_keeps_naming_new_actors():
    state, ds = run([(0, PIPE), (1, PIPE), (2, PIPE), (3, PIPE), (4000, BOB)])
    assert ds[-1].allowed is False and ds[-1].escalated_now is False
    assert describe_actors(ds[-1].actors) == f"{PIPE['object_id']}, bob@contoso.com"


def test_reverts_outside_the_window_do_not_count():
    _state, ds = run([(0, PIPE), (60, PIPE), (120, PIPE), (601, PIPE), (700, PIPE), (710, PIPE)])
    # at 601 the revert at 0 left the 600 s window (2 inside: allowed); at 700 the one at 60 left
    # too (2 inside: allowed); at 710 three are inside (120, 601, 700): escalate
    assert [d.allowed for d in ds] == [True, True, True, True, True, False]


def test_hold_minutes_ends_an_escalation_after_a_quiet_period():
    rule = FlipFlop(max_reverts=1, window_minutes=10, hold_minutes=5)
    _state, ds = run([(0, PIPE), (10, PIPE), (200, PIPE), (200 + 301, PIPE)], rule=rule)
    assert [d.allowed for d in ds] == [True, False, False, True]


def test_without_hold_an_escalation_never_ends_by_itself():
    _state, ds = run([(0, PIPE), (1, PIPE), (10 ** 7, PIPE)], rule=FlipFlop(max_reverts=1, window_minutes=1))
    assert [d.allowed for d in ds] == [True, False, False]


def test_strictest_of_several_policies():
    s = strictest([FlipFlop(5, 10, 5), FlipFlop(2, 5, 30), FlipFlop(3, 60, 10)])
    assert (s.max_reverts, s.window_minutes, s.hold_minutes) == (2, 60, 30)
    assert strictest([FlipFlop(5, 10, 30), FlipFlop(3, 10)]).hold_minutes is None   # any "until reset" wins
    assert strictest([]) == FlipFlop()


def test_an_anonymous_actor_is_not_recorded():
    _state, ds = run([(0, {}), (1, None)])
    assert ds[-1].actors == () and describe_actors(()) == "unknown actor"


# ---- policy fields --------------------------------------------------------------------------------
def test_flip_flop_private_endpoint_and_contact_load_and_round_trip():
    doc = storage_doc(flip_flop={"max_reverts": 2, "window_minutes": 15, "hold_minutes": 60}, contact="ml-platform@contoso.com")
    doc["rules"][0]["private_endpoint"] = {"required": True, "when_missing": "enforce"}
    doc["rules"][1]["private_endpoint"] = {"required": False}
    (p,) = load_documents([("t", doc)])
    assert p.flip_flop == FlipFlop(2, 15, 60)
    assert p.rules[0].private_endpoint == PrivateEndpointFirst("enforce")
    assert p.rules[1].private_endpoint is None
    assert p.contact == "ml-platform@contoso.com"
    assert Policy.from_document(p.to_document()) == p


def test_private_endpoint_defaults_to_notify():
    doc = storage_doc()
    doc["rules"][0]["private_endpoint"] = {"required": True}
    (p,) = load_documents([("t", doc)])
    assert p.rules[0].private_endpoint.when_missing == "notify"


@pytest.mark.parametrize("field, value, expect", [
    ("flip_flop", {"max_reverts": 0, "window_minutes": 5}, "$.flip_flop.max_reverts"),
    ("flip_flop", {"max_reverts": 2}, "$.flip_flop"),
    ("flip_flop", {"max_reverts": 2, "window_minutes": 5, "after": 1}, "$.flip_flop"),
])
def test_bad_flip_flop_is_reported_with_its_path(field, value, expect):
    with pytest.raises(MetadataValidationError) as info:
        load_documents([("t", storage_doc(**{field: value}))])
    assert any(expect in f for f in info.value.findings), info.value.findings


def test_bad_private_endpoint_choice_is_reported():
    doc = storage_doc()
    doc["rules"][0]["private_endpoint"] = {"required": True, "when_missing": "sometimes"}
    with pytest.raises(MetadataValidationError) as info:
        load_documents([("t", doc)])
    assert any("$.rules[0].private_endpoint.when_missing" in f for f in info.value.findings)


# ---- shadow mode ------------------------------------------------------------------------------------
def shadow_pair():
    enforced = storage_doc(version=1)
    shadow = storage_doc(version=2, mode="shadow")
    shadow["rules"].append({"id": "tls-1-2", "property": "properties.minimumTlsVersion",
                            "expect": {"equals": "TLS1_2"}, "action": {"type": "set-property", "value": "TLS1_2"}})
    return enforced, shadow


def test_a_shadow_version_may_sit_beside_the_enforced_one():
    enforced, shadow = shadow_pair()
    policies = load_documents([("a", enforced), ("b", shadow)])
    assert [(p.id, p.version, p.mode) for p in policies] == [("storage-private", 1, "enforce"),
                                                               ("storage-private", 2, "shadow")]
    assert [p.row_key for p in policies] == ["storage-private", "storage-private@shadow"]


def test_two_shadow_versions_of_one_id_are_a_duplicate():
    _enforced, shadow = shadow_pair()
    other = copy.deepcopy(shadow)
    other["version"] = 3
    with pytest.raises(MetadataValidationError) as info:
        load_documents([("a", shadow), ("b", other)])
    assert any("a second shadow version of 'storage-private': also defined in a" in f for f in info.value.findings)


def test_shadow_is_a_resource_policy_mode_only():
    from guardrails.policy.loader import load_directory
    from pathlib import Path
    import yaml
    role = yaml.safe_load((Path(__file__).resolve().parents[2] / "metadata/policies/rbac-least-privilege.yaml").read_text())
    role["mode"] = "shadow"
    with pytest.raises(MetadataValidationError) as info:
        load_documents([("r", role)])
    assert any("$.mode" in f for f in info.value.findings)
    assert load_directory  # imported for symmetry with the file-based tests


def test_shadow_policies_are_compiled_apart_and_judged_as_if_enforced():
    enforced, shadow = shadow_pair()
    compiled = compile_policies(load_documents([("a", enforced), ("b", shadow)]))
    body = {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
            "type": "Microsoft.Storage/storageAccounts",
            "properties": {"publicNetworkAccess": "Disabled", "allowBlobPublicAccess": False,
                           "minimumTlsVersion": "TLS1_0"}}
    snap = ResourceSnapshot(body["id"], body["type"], body)
    now = datetime.now(timezone.utc)
    assert compiled.evaluate(snap, now=now) == []                    # the enforced version is satisfied
    assert [p.ref for p in compiled.candidates(body["type"])] == ["storage-private@1"]
    found = compiled.shadow.evaluate(snap, now=now)
    assert [(r.policy.ref, r.rule.id, r.change.after) for r in found] == [("storage-private@2", "tls-1-2", "TLS1_2")]
    assert compiled.shadow.shadow is None
    assert compile_policies(load_documents([("a", enforced)])).shadow is None


# ---- approved private endpoint connections ---------------------------------------------------------
def _snap(conns):
    body = {"id": "x", "type": "t", "properties": {"privateEndpointConnections": conns}}
    return ResourceSnapshot("x", "t", body)


def _conn(status, prov="Succeeded"):
    return {"name": "pe", "properties": {"privateLinkServiceConnectionState": {"status": status},
                                         "provisioningState": prov}}


@pytest.mark.parametrize("conns, expected", [
    (None, 0), ([], 0), ("junk", 0), ([1, None, {"properties": "x"}], 0),
    ([_conn("Pending")], 0), ([_conn("Rejected"), _conn("Disconnected")], 0),
    ([_conn("Approved")], 1), ([_conn("approved"), _conn("Approved", "Deleting"), _conn("Approved", "Failed")], 1),
    ([_conn("Approved"), _conn("Approved", "Updating")], 2),
])
def test_approved_private_endpoint_connections_are_counted(conns, expected):
    assert approved_private_endpoints(_snap(conns)) == expected


def test_initial_state_is_empty():
    assert FlipFlopState() == FlipFlopState((), (), False, None, None)


def test_a_redelivered_event_is_counted_once_and_distinct_events_still_escalate():
    from guardrails.model.policy import FlipFlop as _FF
    from guardrails.policy.flipflop import MAX_EVENTS, step as _step

    rule = _FF(max_reverts=2, window_minutes=30)
    state, d = _step(None, now=0.0, actor=None, rule=rule, event="e1")
    assert d.allowed
    for t in (10.0, 20.0, 30.0):                 # e1 again: its revert failed, Event Grid retries
        state, d = _step(state, now=t, actor=None, rule=rule, event="e1")
        assert d.allowed and not d.escalated_now and len(state.times) == 1
    state, d = _step(state, now=40.0, actor=None, rule=rule, event="e2")
    assert d.allowed and len(state.times) == 2
    state, d = _step(state, now=50.0, actor=None, rule=rule, event="e3")
    assert not d.allowed and d.escalated_now
    state, d = _step(state, now=60.0, actor=None, rule=rule, event="e1")   # escalated: nothing passes
    assert not d.allowed
    # keys leave with the window, and at most MAX_EVENTS are kept
    state, _ = _step(None, now=0.0, actor=None, rule=rule, event="old")
    state, d = _step(state, now=31 * 60.0, actor=None, rule=rule, event="old")
    assert d.allowed and len(state.times) == 1 and state.events == (("old", 31 * 60.0),)
    big = _FF(max_reverts=1000, window_minutes=60)
    state = None
    for i in range(MAX_EVENTS + 5):
        state, _ = _step(state, now=float(i), actor=None, rule=big, event=f"e{i}")
    assert len(state.events) == MAX_EVENTS and len(state.times) == MAX_EVENTS + 5


def test_a_counted_revert_keeps_what_it_set_out_to_change_bounded_and_only_inside_the_window():
    from guardrails.policy.flipflop import MAX_INTENT_CHARS, MAX_INTENTS

    rule = FlipFlop(max_reverts=100, window_minutes=10)
    state, _ = step(None, now=0.0, actor=PIPE, rule=rule, event="e1", intent='[{"after": "Disabled"}]')
    assert state.intents == (("e1", '[{"after": "Disabled"}]'),)
    # a redelivery of e1 replaces its intent; no event, no intent kept
    state, _ = step(state, now=1.0, actor=PIPE, rule=rule, event="e1", intent='[{"after": false}]')
    state, _ = step(state, now=2.0, actor=PIPE, rule=rule, event=None, intent='[{"x": 1}]')
    assert state.intents == (("e1", '[{"after": false}]'),)
    # only the latest MAX_INTENTS, none larger than MAX_INTENT_CHARS (its event still counts)
    for i in range(MAX_INTENTS + 3):
        state, _ = step(state, now=3.0 + i, actor=PIPE, rule=rule, event=f"n{i}", intent=f'["{i}"]')
    assert [k for k, _i in state.intents] == [f"n{i}" for i in range(3, MAX_INTENTS + 3)]
    state, d = step(state, now=20.0, actor=PIPE, rule=rule, event="huge", intent="x" * (MAX_INTENT_CHARS + 1))
    assert d.allowed and "huge" not in dict(state.intents) and "huge" in dict(state.events)
    # an intent leaves with its event, when the window passes
    state, _ = step(state, now=20.0 + 601, actor=PIPE, rule=rule, event="late", intent='["late"]')
    assert state.intents == (("late", '["late"]'),)
    # an escalated resource makes no revert: the blocked attempt keeps no intent
    esc = FlipFlop(max_reverts=1, window_minutes=10)
    state, _ = step(None, now=0.0, actor=PIPE, rule=esc, event="a", intent='["a"]')
    state, d = step(state, now=1.0, actor=PIPE, rule=esc, event="b", intent='["b"]')
    assert not d.allowed and dict(state.intents) == {"a": '["a"]'}


def test_escalation_state_columns_always_parse_back_however_long():
    from guardrails.adapters.escalations import _from_entity, _to_entity

    long_actor = {"object_id": "o" * 5000, "upn": "u" * 5000, "app_id": None, "at": 1.0}
    state = FlipFlopState(times=(1.0,), actors=(long_actor,) * 10, events=tuple((f"e{i}" * 40, 1.0) for i in range(50)))
    back = _from_entity(_to_entity("/subscriptions/s/resourceGroups/g/providers/p/t/n", state))
    assert 0 < len(back.actors) < 10 and back.actors[-1] == long_actor      # oldest dropped, none cut
    assert back.events == state.events
