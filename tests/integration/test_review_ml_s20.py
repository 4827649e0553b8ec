"""Review s20 of the ML lifecycle guardrail, end to end (Azurite + the HTTPS emulator + real SDK
clients, through the trigger function): each test failed before its fix.

- a number too large for a float in an ML event is an audit row, never a crash;
- the traffic fix never hands a bad deployment's share to another bad deployment;
- a fix ARM accepted whose read-back failed is ``requested``, not ``failed``;
- ``mirrorTraffic`` (production requests copied to a deployment) is judged and fixed;
- a model referenced by ARM id is held to the same allow-list as ``azureml://``;
- ModelDeployed for a label or unversioned model is judged, not refused as invalid.
"""

from __future__ import annotations

import pytest

from guardrails.local.ml_emulator import model_version, online_deployment, online_endpoint
from tests import builders as b
from tests.integration.test_ml_guardrail import (API, EP, PROD, REG, TAGS, WS, endpoint_world, ml_event, policy_dir,
                                                 puts, user_client)


# ---------------------------------------------------------------- 1. numbers too large for a float
@pytest.mark.parametrize("coefficient", [10 ** 400, "1e400", "nan", "inf"], ids=lambda v: repr(v)[:12])
def test_a_drift_coefficient_no_float_holds_is_audited_invalid(harness, tmp_path, coefficient):
    h = harness([], extra_metadata=[policy_dir(tmp_path, drift_monitors=[{"monitor": "fraud-features",
                                                                          "threshold": 0.3}])])
    row = h.deliver(ml_event("DatasetDriftDetected", {"DataDriftName": "fraud-features",
                                                      "DriftCoefficient": coefficient}))
    assert (row.verdict, row.reason) == ("invalid", "invalid_value") and "DriftCoefficient" in row.message
    assert h.emu.requests == []


@pytest.mark.parametrize("accuracy", [10 ** 400, -10 ** 400, "1e400", "NaN"], ids=lambda v: repr(v)[:12])
def test_a_run_metric_no_float_holds_is_an_unparseable_metric(harness, accuracy):
    h = harness([])
    row = h.deliver(ml_event("RunCompleted", {"runId": "r1", "runTags": {"promotion_candidate": "true",
                                                                          "accuracy": accuracy}}))
    assert row.verdict == "violation" and [v.rule for v in row.violations] == ["run-metric"]
    assert "missing or not a number" in row.violations[0].message


# ---------------------------------------------------------------- 2. traffic never moved onto another bad deployment
def test_the_deployment_fix_does_not_hand_its_share_to_another_bad_deployment(harness):
    good = model_version(WS, "fraud-clf", 7, tags=TAGS, stage="production")
    ep = online_endpoint(WS, "fraud-scoring", traffic={"blue": 50, "green": 50}, tags=PROD)
    blue = online_deployment(EP, "blue", model="azureml:fraud-clf@champion")     # a label: not explicit
    green = online_deployment(EP, "green", model="azureml:fraud-clf:latest")
    h = harness([good, ep, blue, green])
    row = h.deliver(b.write_event(green["id"]))
    # as an endpoint write would: every deployment serving badly is out of traffic, none is left to serve
    assert row.verdict == "remediated"
    assert sorted(v.property for v in row.violations) == ["properties.traffic.blue", "properties.traffic.green"]
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 0, "green": 0}
    assert [r.reason for r in h.deliver_emitted()] == ["own_write"]


def test_the_share_goes_only_to_the_deployments_judged_fit(harness):
    good = model_version(WS, "fraud-clf", 7, tags=TAGS, stage="production")
    ep = online_endpoint(WS, "fraud-scoring", traffic={"blue": 40, "green": 40, "red": 20}, tags=PROD)
    blue = online_deployment(EP, "blue", model="azureml:fraud-clf@champion")
    green = online_deployment(EP, "green", model="azureml:fraud-clf:latest")
    red = online_deployment(EP, "red", model="azureml:fraud-clf:7")
    h = harness([good, ep, blue, green, red])
    row = h.deliver(b.write_event(green["id"]))
    assert row.verdict == "remediated"
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 0, "green": 0, "red": 100}
    assert len(puts(h, "/onlineEndpoints/fraud-scoring")) == 1


# ---------------------------------------------------------------- 3. a fix whose read-back failed
@pytest.mark.parametrize("status", [403, 503])
def test_an_archive_accepted_but_not_read_back_is_requested_and_never_redone(harness, status):
    v = model_version(WS, "fraud-clf", 7, tags={"owner": "ds_team@contoso.com"})
    h = harness([v])
    arm = h.service.arm
    real_put = arm.put_resource

    def put_then_reads_fail(*a, **kw):
        out = real_put(*a, **kw)
        h.emu.add_fault("GET", r"/versions/7$", status=status, times=20)
        return out
    arm.put_resource = put_then_reads_fail
    event = b.write_event(v["id"])
    first = h.deliver(event)
    arm.put_resource = real_put
    h.emu._faults.clear()
    assert first.verdict == "requested" and {x.outcome for x in first.violations} == {"requested"}
    assert all("read-back failed" in x.message for x in first.violations)
    assert h.resource(v["id"])["properties"]["isArchived"] is True and len(h.writes()) == 1
    second = h.deliver(event)                # Event Grid's redelivery: the claim was completed
    assert second.verdict == "duplicate" and len(h.writes()) == 1


def test_a_traffic_fix_accepted_but_not_read_back_is_requested(harness):
    world, green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 80, "green": 20})
    h = harness(world)
    arm = h.service.arm
    real_put = arm.put_resource

    def put_then_reads_fail(*a, **kw):
        out = real_put(*a, **kw)
        h.emu.add_fault("GET", r"/onlineEndpoints/fraud-scoring$", status=403, times=20)
        return out
    arm.put_resource = put_then_reads_fail
    row = h.deliver(b.write_event(green["id"]))
    arm.put_resource = real_put
    h.emu._faults.clear()
    assert row.verdict == "requested" and h.resource(EP)["properties"]["traffic"] == {"blue": 100, "green": 0}


def test_a_refused_write_is_still_failed(harness):
    v = model_version(WS, "fraud-clf", 7, tags={"owner": "ds_team@contoso.com"})
    h = harness([v])
    h.emu.add_fault("PUT", r"/versions/7$", status=403, times=20)
    row = h.deliver(b.write_event(v["id"]))
    assert row.verdict == "failed" and {x.outcome for x in row.violations} == {"failed"}
    assert h.resource(v["id"])["properties"].get("isArchived") is not True


# ---------------------------------------------------------------- 4. mirrorTraffic
def test_an_endpoint_mirroring_production_to_a_bad_deployment_is_fixed(harness):
    world, green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 100, "green": 0})
    world[2]["properties"]["mirrorTraffic"] = {"green": 50}
    h = harness(world)
    row = h.deliver(b.write_event(EP))
    assert row.verdict == "remediated"
    assert [v.property for v in row.violations] == ["properties.mirrorTraffic.green"]
    props = h.resource(EP)["properties"]
    assert props["mirrorTraffic"] == {"green": 0} and props["traffic"] == {"blue": 100, "green": 0}


def test_a_mirrored_deployment_write_is_judged_as_serving(harness):
    world, green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 100, "green": 0})
    world[2]["properties"]["mirrorTraffic"] = {"green": 30}
    h = harness(world)
    row = h.deliver(b.write_event(green["id"]))
    assert row.verdict == "remediated" and "no traffic" not in row.message
    assert [v.property for v in row.violations] == ["properties.mirrorTraffic.green"]
    assert h.resource(EP)["properties"]["mirrorTraffic"] == {"green": 0}
    again = h.deliver(b.write_event(green["id"]))     # now really without traffic: said so
    assert again.verdict == "violation" and "receives no traffic (live or mirrored)" in again.message


def test_a_compliant_mirrored_deployment_is_left_alone(harness):
    world, green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 100, "green": 0})
    world[2]["properties"]["mirrorTraffic"] = {"green": 30}
    h = harness(world)
    assert h.deliver(b.write_event(EP)).verdict == "compliant" and h.writes() == []


# ---------------------------------------------------------------- 5. ARM-id references and the allow-list
def test_an_arm_id_into_an_unlisted_registry_is_refused_like_the_azureml_form(harness):
    rogue = b.rid("Microsoft.MachineLearningServices", "registries", "rogue-reg")
    shared = model_version(rogue, "fraud-clf", 3, tags=TAGS, stage="production")
    world, green = endpoint_world(f"{rogue}/models/fraud-clf/versions/3", extra=[shared])
    h = harness(world)
    row = h.deliver(b.write_event(green["id"]))
    assert row.verdict == "remediated" and [v.rule for v in row.violations] == ["version-readable"]
    assert "registry 'rogue-reg'" in row.violations[0].message
    assert not any("rogue-reg" in q["path"] for q in h.arm_requests("GET"))     # never read
    assert h.resource(EP)["properties"]["traffic"]["green"] == 0


def test_an_arm_id_into_a_listed_registry_is_read_and_judged(harness, tmp_path):
    shared = model_version(REG, "fraud-clf", 3, tags=TAGS, stage="production")
    world, green = endpoint_world(f"{REG}/models/fraud-clf/versions/3", extra=[shared])
    h = harness(world, extra_metadata=[policy_dir(tmp_path, registries={"mlreg-shared": REG})])
    assert h.deliver(b.write_event(green["id"])).verdict == "compliant"


def test_an_arm_id_of_a_listed_registry_name_in_another_resource_group_is_refused(harness, tmp_path):
    elsewhere = REG.replace("/resourceGroups/", "/resourceGroups/other-")
    shared = model_version(elsewhere, "fraud-clf", 3, tags=TAGS, stage="production")
    world, green = endpoint_world(f"{elsewhere}/models/fraud-clf/versions/3", extra=[shared])
    h = harness(world, extra_metadata=[policy_dir(tmp_path, registries={"mlreg-shared": REG})])
    row = h.deliver(b.write_event(green["id"]))
    assert [v.rule for v in row.violations] == ["version-readable"]


def test_an_arm_id_into_another_workspace_is_refused(harness):
    other_ws = b.rid("Microsoft.MachineLearningServices", "workspaces", "mlw-sandbox")
    theirs = model_version(other_ws, "fraud-clf", 3, tags=TAGS, stage="production")
    world, green = endpoint_world(f"{other_ws}/models/fraud-clf/versions/3", extra=[theirs])
    h = harness(world)
    row = h.deliver(b.write_event(green["id"]))
    assert row.verdict == "remediated" and [v.rule for v in row.violations] == ["version-readable"]
    assert "workspace 'mlw-sandbox'" in row.violations[0].message


def test_an_arm_id_in_the_own_workspace_is_still_read(harness):
    world, green = endpoint_world(f"{WS}/models/fraud-clf/versions/8")
    h = harness(world)
    assert h.deliver(b.write_event(green["id"])).verdict == "compliant"


# ---------------------------------------------------------------- 6. ModelDeployed for a label or unversioned model
@pytest.mark.parametrize("model", ["azureml:fraud-clf@champion", "azureml:fraud-clf"])
def test_model_deployed_of_a_label_or_unversioned_model_judges_the_endpoint(harness, model):
    ep = online_endpoint(WS, "fraud-scoring", traffic={}, auth_mode="Key", tags=PROD)
    h = harness([ep])
    with user_client(h) as c:
        c.resources.begin_create_or_update_by_id(
            f"{EP}/deployments/canary".lstrip("/"),
            {"location": "eastus", "properties": {"model": model, "endpointComputeType": "Managed"}},
            api_version=API).result()
    rows = {r.event_type.rsplit(".", 1)[-1]: r for r in h.deliver_emitted()}
    md = rows["ModelDeployed"]
    assert md.verdict == "violation" and [v.rule for v in md.violations] == ["endpoint-auth-mode"]


@pytest.mark.parametrize("ids, rule", [("fraud-clf@champion", "explicit-version"), ("fraud-clf", "explicit-version"),
                                       ("fraud-clf:latest", "explicit-version")])
def test_model_deployed_of_a_legacy_service_reports_an_unversioned_model(harness, ids, rule):
    h = harness([])
    row = h.deliver(ml_event("ModelDeployed", {"ServiceName": "legacy-aks", "ModelIds": ids, "ServiceTags": PROD}))
    assert row.verdict == "violation" and [v.rule for v in row.violations] == [rule]
