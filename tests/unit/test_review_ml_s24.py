"""Review s24 of the ML lifecycle guardrail, the pure parts: each test failed before its fix.

1. a model reference is resolved per policy: one policy's ``registries`` never makes a registry
   version readable for another;
2. the traffic plan is made of permitted findings only: an audit-mode finding's deployment may
   take the moved share, a refused one's keeps its own and takes none, and when the only valid
   traffic would zero it, no traffic is written;
3. ``ModelIds`` is context: never refused for its length.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from guardrails.errors import InvalidEvent
from guardrails.ml_fixes import Found, endpoint_plan, traffic_notes
from guardrails.ml_refs import serving_findings
from guardrails.model.decision import ViolationRecord
from guardrails.model.events import parse_envelope
from guardrails.model.ml_events import parse_ml_event
from guardrails.policy.model_rules import EndpointSelector, ModelRegistryRules, rebalance_traffic

SUB = "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
WS = f"{SUB}/workspaces/mlw"
REGISTRY = f"{SUB}/registries/shared"
TAGS = {"data_version": "2026-11-01", "git_sha": "3f2a9c1", "metric_summary": "auc=0.93", "owner": "ds_team"}


# ---------------------------------------------------------------- 1. registries per policy
def policy(ref: str, **rules) -> SimpleNamespace:
    return SimpleNamespace(ref=ref, mode="enforce", rules=ModelRegistryRules(**rules))


def test_a_registry_listed_by_one_policy_is_not_readable_for_another():
    # GIVEN policy A listing the registry, policy B listing none, a tagged production version there
    a = policy("a@1", registries=(("shared", REGISTRY),))
    b = policy("b@1", production_endpoints=EndpointSelector(names=("fraud",)))
    version = SimpleNamespace(body={"properties": {"stage": "production", "tags": TAGS}})
    reads: list[str] = []

    def read(vid):
        reads.append(vid)
        return version, True

    # WHEN the deployment's reference is judged under both
    found = serving_findings("azureml://registries/shared/models/fraud/versions/7", WS, "green", [a, b],
                             "traffic", read)
    # THEN B finds it unreadable, as it would alone; A reads it where A says it is and finds it fit
    assert [(f.policy.ref, f.rec.rule) for f in found] == [("b@1", "version-readable")]
    assert "registry 'shared'" in found[0].rec.message
    assert reads == [f"{REGISTRY}/models/fraud/versions/7"]
    alone = serving_findings("azureml://registries/shared/models/fraud/versions/7", WS, "green", [b], "traffic",
                             read)
    assert [(f.policy.ref, f.rec.rule) for f in alone] == [("b@1", "version-readable")]


def test_each_distinct_version_is_read_once_across_policies_and_deployments():
    a = policy("a@1", registries=(("shared", REGISTRY),))
    c = policy("c@1", registries=(("SHARED", REGISTRY.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")),))
    version = SimpleNamespace(body={"properties": {"stage": "production", "tags": TAGS}})
    reads: list[str] = []
    cache: dict = {}

    def read(vid):
        reads.append(vid)
        return version, True

    for dep in ("blue", "green"):
        assert serving_findings("azureml://registries/shared/models/fraud/versions/7", WS, dep, [a, c], "traffic",
                                read, cache) == []
    assert len(reads) == 1


# ---------------------------------------------------------------- 2. the traffic plan: permitted findings only
def test_rebalance_never_zeroes_a_held_deployment_it_does_not_fix():
    # the only valid write would take the held deployment out of traffic too: nothing to write
    assert rebalance_traffic({"blue": 50, "green": 50}, ["blue"], ["green"]) is None
    # a held deployment with no traffic loses nothing: all 0 is still the plan
    assert rebalance_traffic({"blue": 100, "green": 0}, ["blue"], ["green"]) == {"blue": 0, "green": 0}
    # another deployment may take the share: the held one keeps its own
    assert rebalance_traffic({"blue": 40, "green": 40, "red": 20}, ["blue"], ["green"]) == {
        "blue": 0, "green": 40, "red": 60}


def found(dep: str, ref: str = "p@1", mode: str = "enforce") -> Found:
    return Found(SimpleNamespace(ref=ref, mode=mode), ViolationRecord(
        policy=ref, rule="production-stage", property=f"properties.traffic.{dep}", before="x", after=0,
        outcome="violation", message=f"deployment {dep}: bad"), deployment=dep)


def test_a_deployment_only_an_audit_mode_finding_faults_takes_the_moved_share():
    # GIVEN P1 (enforce, permitted) faults blue; audit-mode P2 faults only green: P2 is never held
    plan = endpoint_plan({"blue": 50, "green": 50}, [found("blue")], unfit=())
    body = {"properties": {"traffic": {"blue": 50, "green": 50}}}
    plan.apply(body)
    assert body["properties"]["traffic"] == {"blue": 0, "green": 100} and plan.holds(body)
    assert plan.moves == {("traffic", "blue"): (50, 0), ("traffic", "green"): (50, 100)}
    # AND green's dry_run record says what happened to its traffic
    audit = found("green", "p2@1", "audit")
    traffic_notes([audit], plan, "remediated")
    assert "traffic 50 -> 100" in audit.rec.message


def test_a_refused_findings_deployment_makes_the_traffic_unwritable_when_it_is_the_only_receiver():
    plan = endpoint_plan({"blue": 50, "green": 50}, [found("blue")], unfit={"green"})
    assert plan.unfixed == {"blue"} and not plan.writes and "green" in plan.why
    body = {"properties": {"traffic": {"blue": 50, "green": 50}}}
    plan.apply(body)
    assert body["properties"]["traffic"] == {"blue": 50, "green": 50}


def test_with_a_setting_to_fix_the_setting_is_still_written_but_no_traffic():
    auth = Found(SimpleNamespace(ref="p@1", mode="enforce"), ViolationRecord(
        policy="p@1", rule="endpoint-auth-mode", property="properties.authMode", before="Key", after="AADToken",
        outcome="violation", message="key"), setting=("authMode", "AADToken"))
    plan = endpoint_plan({"blue": 50, "green": 50}, [found("blue"), auth], {"blue": 10}, unfit={"green"})
    body = {"properties": {"traffic": {"blue": 50, "green": 50}, "mirrorTraffic": {"blue": 10}, "authMode": "Key"}}
    plan.apply(body)
    assert plan.writes and plan.unfixed == {"blue"}
    assert body["properties"] == {"traffic": {"blue": 50, "green": 50}, "mirrorTraffic": {"blue": 10},
                                  "authMode": "AADToken"}
    assert plan.holds(body)


# ---------------------------------------------------------------- 3. ModelIds is context, whatever its length
def deployed(ids) -> object:
    raw = {"id": "e1", "topic": WS, "subject": "x", "eventType": "Microsoft.MachineLearningServices.ModelDeployed",
           "eventTime": "2026-11-24T09:00:00Z", "dataVersion": "", "metadataVersion": "1",
           "data": {"ServiceName": "legacy-aks", "ModelIds": ids}}
    return parse_ml_event(parse_envelope(raw))


def test_model_ids_of_a_legacy_service_of_seven_models_are_kept():
    ids = ",".join(f"credit_risk_gradient_boosting_model_{i}:1" for i in range(7))
    assert len(ids) == 279
    ev = deployed(ids)
    assert ev.model_ids == tuple((f"credit_risk_gradient_boosting_model_{i}", "1") for i in range(7))
    assert ev.model_ids_omitted == 0


def test_model_ids_past_the_caps_are_counted_not_refused():
    ev = deployed(",".join(f"m{i}:1" for i in range(100)))
    assert len(ev.model_ids) == 32 and ev.model_ids_omitted == 68
    ev = deployed(",".join(f"{'m' * 200}{i}:1" for i in range(60)))      # 8 KiB: about 40 of these
    assert len(ev.model_ids) + ev.model_ids_omitted == 60 and sum(len(n) + 2 for n, _v in ev.model_ids) <= 8192 + 32


@pytest.mark.parametrize("ids, reason", [(["a:1"], "wrong_type"), ("a:1,\nb:2", "invalid_value"),
                                         ({"a": 1}, "wrong_type")])
def test_model_ids_are_still_refused_for_their_type_or_a_control_character(ids, reason):
    with pytest.raises(InvalidEvent) as err:
        deployed(ids)
    assert err.value.reason == reason and "ModelIds" in str(err.value)
