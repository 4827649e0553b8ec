"""Review s20 of the ML lifecycle guardrail, the pure parts: each test failed before its fix."""

import copy

import pytest

from guardrails.errors import InvalidEvent
from guardrails.ml_fixes import Found, endpoint_plan, mirror_of, serving
from guardrails.ml_guardrail import parse_model_reference
from guardrails.model.decision import ViolationRecord
from guardrails.model.events import parse_envelope
from guardrails.model.ml_events import parse_ml_event
from guardrails.policy.model_rules import ModelRegistryRules, evaluate_run, parse_metric, rebalance_traffic

SUB = "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
WS = f"{SUB}/workspaces/mlw"
REGISTRY = f"{SUB}/registries/mlreg-shared"


def event(kind: str, data: dict) -> dict:
    return {"id": "e1", "topic": WS, "subject": "x", "eventType": f"Microsoft.MachineLearningServices.{kind}",
            "eventTime": "2026-11-24T09:00:00Z", "data": data, "dataVersion": "", "metadataVersion": "1"}


def parse(kind: str, data: dict):
    return parse_ml_event(parse_envelope(event(kind, data)))


# ---------------------------------------------------------------- 1. numbers no float holds
@pytest.mark.parametrize("value", [10 ** 400, -10 ** 400, "1e400", "-1e400", "nan", "inf", float("inf"),
                                   float("nan"), "1e400%", [1], {"a": 1}], ids=lambda v: repr(v)[:12])
def test_a_drift_coefficient_no_float_holds_is_invalid_never_an_error(value):
    with pytest.raises(InvalidEvent) as err:
        parse("DatasetDriftDetected", {"DataDriftName": "m", "DriftCoefficient": value})
    assert err.value.reason in ("invalid_value", "wrong_type") and "DriftCoefficient" in str(err.value)


@pytest.mark.parametrize("value, expected", [(0.5, 0.5), ("0.5", 0.5), ("83%", 0.83), (10 ** 400, None),
                                             (-10 ** 400, None), ("1e400", None), ("nan", None), ("inf", None),
                                             (float("nan"), None), ("-inf%", None), (True, None)],
                         ids=lambda v: repr(v)[:12])
def test_parse_metric_never_raises(value, expected):
    assert parse_metric(value) == (pytest.approx(expected) if expected is not None else None)


def test_a_huge_run_metric_is_a_finding_not_a_crash():
    ev = parse("RunCompleted", {"runId": "r", "runTags": {"promotion_candidate": "true", "accuracy": 10 ** 400}})
    (finding,) = evaluate_run(ModelRegistryRules(), tags=ev.tags, properties=ev.properties)
    assert "not a number" in finding.message


# ---------------------------------------------------------------- 2. traffic never onto a bad deployment
@pytest.mark.parametrize("traffic, zero, unfit, expected", [
    # s24: ``unfit`` holds a refused finding's deployment, which no permitted fix may zero: nothing to write
    ({"blue": 50, "green": 50}, ["green"], ["blue"], None),
    ({"a": 40, "b": 40, "c": 20}, ["b"], ["a"], {"a": 40, "b": 0, "c": 60}),            # unfit keeps its own
    ({"a": 40, "b": 40, "c": 20}, ["a", "b"], ["a", "b"], {"a": 0, "b": 0, "c": 100}),
    ({"a": 100, "b": 0}, ["b"], ["a"], {"a": 100, "b": 0}),                             # nothing moves
    ({"a": 80, "b": 20}, ["B"], [], {"a": 100, "b": 0}),                                # as before
])
def test_rebalance_hands_the_share_only_to_fit_deployments(traffic, zero, unfit, expected):
    out = rebalance_traffic(traffic, zero, unfit)
    assert out == expected and (out is None or sum(out.values()) in (0, sum(traffic.values())))


def found(dep: str, policy="p") -> Found:
    return Found(policy, ViolationRecord(policy="p@1", rule="explicit-version", property=f"properties.traffic.{dep}",
                                         before="x", after=0, outcome="violation", message="m"), deployment=dep)


def test_the_endpoint_plan_keeps_the_share_off_a_bad_deployment_it_does_not_fix():
    plan = endpoint_plan({"a": 40, "b": 40, "c": 20}, [found("b")], unfit={"a", "b"})
    body = {"properties": {"traffic": {"a": 40, "b": 40, "c": 20}}}
    plan.apply(body)
    assert body["properties"]["traffic"] == {"a": 40, "b": 0, "c": 60}


# ---------------------------------------------------------------- 4. mirrorTraffic
def test_mirrored_deployments_are_serving_and_the_plan_stops_the_mirror():
    ep = {"properties": {"traffic": {"blue": 100, "green": 0}, "mirrorTraffic": {"green": 50}}}
    assert mirror_of(ep) == {"green": 50} and serving({"blue": 100, "green": 0}, {"green": 50}) == ["blue", "green"]
    plan = endpoint_plan({"blue": 100, "green": 0}, [found("green")], {"green": 50}, {"green"})
    body = copy.deepcopy(ep)
    assert not plan.holds(body)
    plan.apply(body)
    assert body["properties"] == {"traffic": {"blue": 100, "green": 0}, "mirrorTraffic": {"green": 0}}
    assert plan.holds(body)


def test_a_plan_without_a_mirrored_bad_deployment_writes_no_mirror():
    plan = endpoint_plan({"blue": 80, "green": 20}, [found("green")], {"blue": 10}, {"green"})
    body = {"properties": {"traffic": {"blue": 80, "green": 20}, "mirrorTraffic": {"blue": 10}}}
    plan.apply(body)
    assert body["properties"]["mirrorTraffic"] == {"blue": 10} and body["properties"]["traffic"] == {"blue": 100,
                                                                                                   "green": 0}


# ---------------------------------------------------------------- 5. ARM-id references and the allow-list
RULES = ModelRegistryRules(registries=(("mlreg-shared", REGISTRY),))


@pytest.mark.parametrize("ref, readable", [
    (f"{REGISTRY}/models/fraud-clf/versions/3", f"{REGISTRY}/models/fraud-clf/versions/3"),
    (f"{REGISTRY.upper()}/models/fraud-clf/versions/3".replace("/SUBSCRIPTIONS/", "/subscriptions/"), True),
    (f"{SUB}/registries/rogue-reg/models/fraud-clf/versions/3", None),                  # not listed
    (f"{SUB.replace('/rg/', '/rg2/')}/registries/mlreg-shared/models/fraud-clf/versions/3", None),   # elsewhere
    (f"{WS}/models/fraud-clf/versions/4", f"{WS}/models/fraud-clf/versions/4"),         # own workspace
    (f"{SUB}/workspaces/MLW/models/fraud-clf/versions/4", True),                        # case-insensitive
    (f"{SUB}/workspaces/mlw-other/models/fraud-clf/versions/4", None),                  # another workspace
])
def test_an_arm_id_reference_is_held_to_the_allow_list(ref, readable):
    got = parse_model_reference(ref, WS, RULES.registry_id)
    assert got.version is not None
    assert (got.version_id is not None) if readable is True else got.version_id == readable


def test_without_a_registries_list_no_registry_arm_id_is_readable():
    assert parse_model_reference(f"{REGISTRY}/models/fraud-clf/versions/3", WS).version_id is None


# ---------------------------------------------------------------- 6. ModelIds is context
@pytest.mark.parametrize("ids, expected", [
    ("a:1,b:2", (("a", "1"), ("b", "2"))),
    ("fraud-clf@champion", (("fraud-clf", "@champion"),)),
    ("fraud-clf", (("fraud-clf", None),)),
    ("fraud-clf:latest", (("fraud-clf", "latest"),)),
    ("a:1, ,b/c", (("a", "1"), ("b/c", None))),
])
def test_model_ids_never_refuse_the_event(ids, expected):
    assert parse("ModelDeployed", {"ServiceName": "svc", "ModelIds": ids}).model_ids == expected
