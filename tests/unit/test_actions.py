"""The action registry: schema fragments beside the code, semantic validation, pure planning."""

from __future__ import annotations

import re

import pytest
import yaml

from guardrails.errors import PolicyError
from guardrails.model.decision import Change
from guardrails.model.policy import Rule, freeze
from guardrails.model.resource import ResourceSnapshot
from guardrails.policy.loader import load_documents
from guardrails.policy.schema import build_schema
from guardrails.remediation.actions import Action, ActionRegistry, Notify, SetProperty, actions, type_schema

STORAGE = "Microsoft.Storage/storageAccounts"
COMPUTE = "Microsoft.MachineLearningServices/workspaces/computes"


def rule(prop="properties.publicNetworkAccess", expect=None, action=None) -> Rule:
    return Rule("r", prop, freeze(expect or {"equals": "Disabled"}),
                freeze(action or {"type": "set-property", "value": "Disabled"}))


def snapshot(props: dict) -> ResourceSnapshot:
    return ResourceSnapshot("/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa",
                            STORAGE, {"properties": props})


# ---------------------------------------------------------------- registry

def test_builtin_actions_are_registered_with_closed_fragments():
    assert {"set-property", "notify"} <= set(actions.names())
    for name in actions.names():
        fragment = actions.get(name).schema
        assert fragment["additionalProperties"] is False
        assert fragment["properties"]["type"] == {"const": name}


def test_build_makes_an_action_per_rule_mapping():
    action = actions.build({"type": "set-property", "value": False})
    assert isinstance(action, SetProperty) and action.value is False and not action.notify
    assert isinstance(actions.build(freeze({"type": "notify"})), Notify)
    with pytest.raises(PolicyError, match="unknown action type 'nope'"):
        actions.build({"type": "nope"})


def test_registering_an_action_adds_its_fragment_to_the_policy_schema():
    # GIVEN a registry with one more action, registered the way later issues will
    registry = ActionRegistry()

    @registry.register("rotate-secret")
    class RotateSecret(Action):
        """Rotate the exposed secret. ``{type: rotate-secret, grace_days: 1}``"""
        schema = type_schema("rotate-secret", grace_days={"type": "integer", "minimum": 0})

    # WHEN the policy schema is built from it THEN the action is one branch of the oneOf
    branches = build_schema(registry)["properties"]["rules"]["items"]["properties"]["action"]["oneOf"]
    assert branches == [RotateSecret.schema]
    assert RotateSecret.type == "rotate-secret" and registry.generation == 1


def test_registration_rejects_duplicates_and_open_fragments():
    registry = ActionRegistry()
    registry.register("a")(type("A", (Action,), {"schema": type_schema("a")}))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(type("A2", (Action,), {"schema": type_schema("a")}))
    with pytest.raises(ValueError, match="must be closed"):
        registry.register("b")(type("B", (Action,), {"schema": {"type": "object", "properties": {"type": {"const": "b"}}}}))
    with pytest.raises(ValueError, match="must be closed"):
        registry.register("c")(type("C", (Action,), {"schema": type_schema("not-c")}))


@pytest.mark.parametrize("name", ["set-property", "notify"])
def test_docstring_metadata_example_is_a_valid_rule(name):
    # GIVEN the YAML example in the action's docstring
    doc = actions.get(name).__doc__
    example = re.search(r"```yaml\n(.*?)```", doc, re.S).group(1)
    (rule_doc,) = yaml.safe_load(re.sub(r"^    ", "", example, flags=re.M))
    types = [COMPUTE] if "enableNodePublicIp" in rule_doc["property"] else [STORAGE]
    # WHEN it is used in a policy THEN it loads
    policy_doc = {"id": "example", "version": 1, "description": "d", "mode": "enforce",
                  "selector": {"resource_types": types}, "rules": [rule_doc]}
    (policy,) = load_documents([("doc", policy_doc)])
    assert policy.rules[0].action_type == name


# ---------------------------------------------------------------- set-property

def test_set_property_validate_accepts_a_value_that_satisfies_expect():
    assert actions.build({"type": "set-property", "value": "disabled"}).validate(rule(), [STORAGE]) == []


def test_set_property_validate_rejects_a_value_that_would_loop():
    r = rule(expect={"not_in": ["Enabled", "SecuredByPerimeter"]}, action={"type": "set-property", "value": "enabled"})
    (msg,) = actions.build(r.action).validate(r, [STORAGE])
    assert "value 'enabled' does not satisfy expect not_in ['Enabled', 'SecuredByPerimeter']" in msg


def test_set_property_validate_rejects_immutable_properties_of_any_selected_type():
    r = rule("properties.properties.enableNodePublicIp", {"equals": False}, {"type": "set-property", "value": False})
    (msg,) = actions.build(r.action).validate(r, [STORAGE, COMPUTE])
    assert msg.startswith(f"property 'properties.properties.enableNodePublicIp' is immutable on {COMPUTE}")
    assert actions.build({"type": "notify"}).validate(r, [COMPUTE]) == []


def test_set_property_plans_the_change_from_the_current_value():
    r = rule()
    change = actions.build(r.action).plan(r, snapshot({"publicNetworkAccess": "Enabled"}), "Enabled")
    assert change == Change("properties.publicNetworkAccess", before="Enabled", after="Disabled")


def test_set_property_plans_nothing_when_already_equal_ignoring_case():
    r = rule()
    assert actions.build(r.action).plan(r, snapshot({"publicNetworkAccess": "disabled"}), "disabled") is None


def test_set_property_plans_an_object_value_as_plain_data():
    r = rule("properties.networkAcls", {"not_equals": "x"},
             {"type": "set-property", "value": {"defaultAction": "Deny", "bypass": "None"}})
    change = actions.build(r.action).plan(r, snapshot({}), None)
    assert change.after == {"defaultAction": "Deny", "bypass": "None"} and type(change.after) is dict


def test_set_property_value_from_a_string_boolean_resource():
    r = rule("properties.allowBlobPublicAccess", {"equals": False}, {"type": "set-property", "value": False})
    action = actions.build(r.action)
    assert action.plan(r, snapshot({}), "True") == Change("properties.allowBlobPublicAccess", "True", False)
    assert action.plan(r, snapshot({}), "false") is None


# ---------------------------------------------------------------- notify

def test_notify_plans_nothing_and_flags_notification():
    r = rule(action={"type": "notify"})
    action = actions.build(r.action)
    assert action.notify is True
    assert action.plan(r, snapshot({"publicNetworkAccess": "Enabled"}), "Enabled") is None
