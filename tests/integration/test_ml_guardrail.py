"""The ML lifecycle guardrail end to end: Azurite + the local HTTPS emulator (Azure ML model
versions, online endpoints and deployments) + the real SDK clients, through the trigger function.
Assertions are on the emulator's resulting state and its request log."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.mgmt.resource.resources import ResourceManagementClient

from guardrails import bootstrap
from guardrails.checks.models import ModelPromotionRequest
from guardrails.checks.service import Caller
from guardrails.local.credential import LocalTokenCredential
from guardrails.local.ml_emulator import model_version, online_deployment, online_endpoint
from guardrails.policy.model_rules import RULE_REQUIRED_TAGS, RULE_EXPLICIT_VERSION, RULE_SERVING_ENDPOINTS
from guardrails.simulate import to_function_event
from guardrails.triggers.resource_events import resource_events
from tests import builders as b

WS = b.rid("Microsoft.MachineLearningServices", "workspaces", "mlw-prod")
REG = b.rid("Microsoft.MachineLearningServices", "registries", "mlreg-shared")
EP = f"{WS}/onlineEndpoints/fraud-scoring"
TAGS = {"data_version": "2026-11-01", "git_sha": "3f2a9c1", "metric_summary": "auc=0.93", "owner": "ds_team@contoso.com"}
API = "2025-09-01"
PROD = {"environment": "prod", "owner": "ml-platform@contoso.com"}


def ml_event(kind: str, data: dict, *, event_id: str | None = None, topic: str = WS) -> dict:
    return {"id": event_id or str(uuid.uuid4()), "topic": topic, "subject": "x",
            "eventType": f"Microsoft.MachineLearningServices.{kind}", "eventTime": "2026-11-24T09:00:00Z",
            "data": data, "dataVersion": "", "metadataVersion": "1"}


def registered(name: str, version) -> dict:
    return ml_event("ModelRegistered", {"ModelName": name, "ModelVersion": version, "ModelTags": {}})


def policy_dir(tmp_path, **changes):
    """The shipped model-registry policy with ``changes`` (same id: replaces it)."""
    from guardrails.checks.policies import ModelRegistryPolicy
    from guardrails.policy.loader import load_documents
    import yaml
    shipped = yaml.safe_load(open("metadata/jobs/model-registry.yaml"))
    (policy,) = load_documents([("shipped", shipped)])
    assert isinstance(policy, ModelRegistryPolicy)
    doc = {**policy.to_document(), **changes}
    d = tmp_path / "meta"
    d.mkdir(exist_ok=True)
    (d / "model-registry.yaml").write_text(json.dumps(doc))
    return d


def puts(h, path_part: str = "") -> list[dict]:
    return [q for q in h.arm_requests("PUT") if path_part.lower() in q["path"].lower()]


def user_client(h) -> ResourceManagementClient:
    return ResourceManagementClient(LocalTokenCredential(object_id=b.ALICE, upn="alice@contoso.com"), b.SUB,
                                    base_url=h.emu.base_url, connection_verify=h.emu.ca_path, retry_total=0,
                                    polling_interval=0)


# ---------------------------------------------------------------- model versions
def test_untagged_model_version_is_archived_by_a_full_put_with_its_etag(harness):
    v = model_version(WS, "fraud-clf", 7, tags={"owner": "ds_team@contoso.com"})
    h = harness([v])
    etag = h.resource(v["id"])["etag"]
    row = h.deliver(b.write_event(v["id"]))
    assert row.verdict == "remediated" and row.notify
    assert {r.rule for r in row.violations} == {RULE_REQUIRED_TAGS} and len(row.violations) == 3
    assert row.policies == ["model-registry@1"]
    after = h.resource(v["id"])
    assert after["properties"]["isArchived"] is True
    assert after["properties"]["tags"] == {"owner": "ds_team@contoso.com"}    # nothing else changed
    (put,) = h.writes()
    assert put["method"] == "PUT" and put["body"]["properties"]["modelUri"] == v["properties"]["modelUri"]
    assert not h.arm_requests("PATCH")
    # the guardrail's own write comes back: ignored, zero ARM calls
    h.emu.clear_requests()
    (own,) = h.deliver_emitted()
    assert (own.verdict, own.reason) == ("ignored", "own_write") and h.emu.requests == []
    assert etag != after["etag"]


def test_audit_mode_leaves_an_untagged_version_alone(harness, tmp_path):
    v = model_version(WS, "fraud-clf", 7)
    h = harness([v], extra_metadata=[policy_dir(tmp_path, mode="audit")])
    row = h.deliver(b.write_event(v["id"]))
    assert row.verdict == "dry_run" and row.notify
    assert h.resource(v["id"])["properties"]["isArchived"] is False and h.writes() == []


def test_fully_tagged_version_is_compliant(harness):
    v = model_version(REG, "fraud-clf", 3, tags=TAGS)
    h = harness([v])
    row = h.deliver(b.write_event(v["id"]))
    assert row.verdict == "compliant" and h.writes() == []
    assert len(h.arm_requests("GET")) == 1


@pytest.mark.parametrize("first", ["event", "arm"])
def test_registration_arriving_twice_is_archived_once(harness, first):
    v = model_version(WS, "fraud-clf", 8)
    h = harness([v])
    deliveries = {"event": registered("fraud-clf", 8), "arm": b.write_event(v["id"])}
    order = [first, "arm" if first == "event" else "event"]
    rows = [h.deliver(deliveries[k]) for k in order]
    assert [r.verdict for r in rows] == ["remediated", "compliant"] and rows[1].reason == "already_archived"
    assert len(puts(h, "/versions/8")) == 1
    assert rows[0].resource_id.lower() == rows[1].resource_id.lower() == v["id"].lower()


def test_a_user_registration_through_arm_emits_both_events_and_one_archive(harness):
    h = harness([])
    with user_client(h) as c:
        c.resources.begin_create_or_update_by_id(
            f"{WS}/models/churn/versions/1".lstrip("/"),
            {"properties": {"tags": {"owner": "bob@contoso.com"}, "modelType": "custom_model"}}, api_version=API).result()
    rows = h.deliver_emitted()
    assert sorted(r.event_type.rsplit(".", 1)[-1] for r in rows) == ["ModelRegistered", "ResourceWriteSuccess"]
    assert sorted(r.verdict for r in rows) == ["compliant", "remediated"]
    assert h.resource(f"{WS}/models/churn/versions/1")["properties"]["isArchived"] is True
    assert len(puts(h, "/models/churn/versions/1")) == 2       # the user's and the guardrail's, no more
    assert [r.reason for r in h.deliver_emitted()] == ["own_write"]


def test_duplicate_delivery_acts_once(harness):
    v = model_version(WS, "fraud-clf", 9)
    h = harness([v])
    event = registered("fraud-clf", "9")
    assert h.deliver(event).verdict == "remediated"
    assert h.deliver(event).verdict == "duplicate"
    assert len(h.writes()) == 1


# ---------------------------------------------------------------- deployments and traffic
def endpoint_world(model_green: str, *, traffic=None, green_stage="production", tags=PROD, extra=()):
    good = model_version(WS, "fraud-clf", 7, tags=TAGS, stage="production")
    other = model_version(WS, "fraud-clf", 8, tags=TAGS, stage=green_stage)
    ep = online_endpoint(WS, "fraud-scoring", traffic=traffic or {"blue": 80, "green": 20}, tags=tags)
    blue = online_deployment(EP, "blue", model="azureml:fraud-clf:7")
    green = online_deployment(EP, "green", model=model_green)
    return [good, other, ep, blue, green, *extra], green


def test_latest_on_a_production_endpoint_gets_no_traffic_and_the_rest_still_sums_to_100(harness):
    world, green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 80, "green": 20})
    h = harness(world)
    deployments = {d: h.resource(f"{EP}/deployments/{d}") for d in ("blue", "green")}
    row = h.deliver(b.write_event(green["id"]))
    assert row.verdict == "remediated" and row.notify
    assert [v.rule for v in row.violations] == [RULE_EXPLICIT_VERSION]
    traffic = h.resource(EP)["properties"]["traffic"]
    assert traffic == {"blue": 100, "green": 0} and sum(traffic.values()) == 100
    assert {d: h.resource(f"{EP}/deployments/{d}") for d in ("blue", "green")} == deployments   # untouched
    (put,) = h.writes()
    assert put["path"].endswith("/onlineEndpoints/fraud-scoring") and put["body"]["properties"]["authMode"] == "AADToken"


def test_the_only_deployment_of_a_bad_version_leaves_the_endpoint_serving_nothing(harness):
    world, green = endpoint_world("azureml:fraud-clf@champion", traffic={"green": 100})
    h = harness(world)
    assert h.deliver(b.write_event(green["id"])).verdict == "remediated"
    assert h.resource(EP)["properties"]["traffic"] == {"green": 0}


def test_explicit_compliant_version_is_compliant(harness):
    world, green = endpoint_world("azureml:fraud-clf:8")
    h = harness(world)
    assert h.deliver(b.write_event(green["id"])).verdict == "compliant" and h.writes() == []


@pytest.mark.parametrize("stages, verdict", [(["production"], "remediated"), (["production", "validated"], "compliant")])
def test_validated_versions_serve_production_only_when_metadata_allows(harness, tmp_path, stages, verdict):
    world, green = endpoint_world("azureml:fraud-clf:8", green_stage="validated")
    h = harness(world, extra_metadata=[policy_dir(tmp_path, production_stages=stages)])
    row = h.deliver(b.write_event(green["id"]))
    assert row.verdict == verdict
    assert h.resource(EP)["properties"]["traffic"]["green"] == (0 if verdict == "remediated" else 20)


def test_an_untagged_or_missing_version_is_not_served_in_production(harness):
    bare = model_version(WS, "fraud-clf", 9, stage="production")
    world, green = endpoint_world("azureml:fraud-clf:9", extra=[bare])
    h = harness(world)
    row = h.deliver(b.write_event(green["id"]))
    assert row.verdict == "remediated" and {v.rule for v in row.violations} == {RULE_REQUIRED_TAGS}
    world, green = endpoint_world("azureml:fraud-clf:42")
    h2 = harness(world)
    assert [v.rule for v in h2.deliver(b.write_event(green["id"])).violations] == ["version-readable"]


@pytest.mark.parametrize("tags, verdict", [(TAGS, "compliant"), ({"owner": "ds_team@contoso.com"}, "remediated")])
def test_a_version_served_from_a_listed_registry_is_read_there_and_judged(harness, tmp_path, tags, verdict):
    shared = model_version(REG, "fraud-clf", 3, tags=tags, stage="production")
    world, green = endpoint_world("azureml://registries/mlreg-shared/models/fraud-clf/versions/3", extra=[shared])
    h = harness(world, extra_metadata=[policy_dir(tmp_path, registries={"mlreg-shared": REG})])
    row = h.deliver(b.write_event(green["id"]))
    assert row.verdict == verdict
    assert any(q["path"].lower().endswith("/registries/mlreg-shared/models/fraud-clf/versions/3")
               for q in h.arm_requests("GET"))                       # read in the registry, not the workspace
    assert h.resource(EP)["properties"]["traffic"]["green"] == (20 if verdict == "compliant" else 0)
    if verdict == "remediated":
        assert {v.rule for v in row.violations} == {RULE_REQUIRED_TAGS}


def test_a_version_in_a_registry_the_policy_does_not_list_is_not_served(harness):
    shared = model_version(REG, "fraud-clf", 3, tags=TAGS, stage="production")
    world, green = endpoint_world("azureml://registries/mlreg-shared/models/fraud-clf/versions/3", extra=[shared])
    h = harness(world)
    row = h.deliver(b.write_event(green["id"]))
    assert row.verdict == "remediated" and [v.rule for v in row.violations] == ["version-readable"]
    assert "registry 'mlreg-shared'" in row.violations[0].message and "registries" in row.violations[0].message
    assert h.resource(EP)["properties"]["traffic"]["green"] == 0


def test_non_production_endpoints_are_left_alone(harness):
    world, green = endpoint_world("azureml:fraud-clf:latest", tags={"environment": "dev"})
    h = harness(world)
    assert h.deliver(b.write_event(green["id"])).verdict == "compliant" and h.writes() == []


def test_audit_mode_reports_the_deployment_and_keeps_traffic(harness, tmp_path):
    world, green = endpoint_world("azureml:fraud-clf:latest")
    h = harness(world, extra_metadata=[policy_dir(tmp_path, mode="audit")])
    assert h.deliver(b.write_event(green["id"])).verdict == "dry_run"
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 80, "green": 20} and h.writes() == []


def test_an_endpoint_write_routing_traffic_to_a_bad_deployment_is_reverted(harness):
    world, _green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 100, "green": 0})
    h = harness(world)
    with user_client(h) as c:
        body = h.resource(EP)
        body["properties"]["traffic"] = {"blue": 50, "green": 50}
        c.resources.begin_create_or_update_by_id(EP.lstrip("/"), {k: body[k] for k in (
            "location", "tags", "identity", "kind", "properties")}, api_version=API).result()
    (row,) = h.deliver_emitted()
    assert row.verdict == "remediated" and h.resource(EP)["properties"]["traffic"] == {"blue": 100, "green": 0}


def test_model_deployed_converges_with_the_deployment_write(harness):
    h = harness(endpoint_world("azureml:fraud-clf:7", traffic={"blue": 100})[0][:4])
    with user_client(h) as c:
        c.resources.begin_create_or_update_by_id(
            f"{EP}/deployments/canary".lstrip("/"),
            {"location": "eastus", "properties": {"model": "azureml:fraud-clf:latest", "endpointComputeType": "Managed"}},
            api_version=API).result()
    rows = h.deliver_emitted()
    kinds = {r.event_type.rsplit(".", 1)[-1]: r for r in rows}
    assert set(kinds) == {"ResourceWriteSuccess", "ModelDeployed"}
    # created with no traffic: reported once, the endpoint check finds nothing serving it
    assert kinds["ResourceWriteSuccess"].verdict == "violation" and kinds["ModelDeployed"].verdict == "compliant"
    assert len(puts(h, "/onlineEndpoints/fraud-scoring")) == 1 and h.resource(EP)["properties"]["traffic"] == {"blue": 100}


# ---------------------------------------------------------------- endpoints
def test_key_auth_and_public_sensitive_endpoint_are_reported_by_default(harness):
    ep = online_endpoint(WS, "fraud-scoring", auth_mode="Key", public_network_access="Enabled",
                         tags={"data_classification": "sensitive", "owner": "ml-platform@contoso.com"})
    h = harness([ep])
    row = h.deliver(b.write_event(ep["id"]))
    assert row.verdict == "violation" and row.notify and h.writes() == []
    assert {v.rule: v.before for v in row.violations} == {"endpoint-auth-mode": "Key", "endpoint-public-access": "Enabled"}


def test_endpoint_rules_are_enforced_when_opted_in_by_put_never_patch(harness, tmp_path):
    ep = online_endpoint(WS, "fraud-scoring", auth_mode="Key", public_network_access="Enabled",
                         tags={"data_classification": "sensitive"})
    h = harness([ep], extra_metadata=[policy_dir(tmp_path, endpoint_action="enforce")])
    assert h.deliver(b.write_event(ep["id"])).verdict == "remediated"
    props = h.resource(EP)["properties"]
    assert (props["authMode"], props["publicNetworkAccess"]) == ("AADToken", "Disabled")
    assert [w["method"] for w in h.writes()] == ["PUT"]


# ---------------------------------------------------------------- drift and runs (no ARM calls)
def drift(monitor: str, coefficient) -> dict:
    return ml_event("DatasetDriftDetected", {"DataDriftId": "01d29aa4", "DataDriftName": monitor,
                                             "RunId": "run_1", "DriftCoefficient": coefficient})


def test_drift_above_and_below_the_monitors_threshold(harness, tmp_path):
    monitors = [{"monitor": "fraud-features", "threshold": 0.3, "owner": "ds_team@contoso.com"}]
    h = harness([], extra_metadata=[policy_dir(tmp_path, drift_monitors=monitors)])
    above = h.deliver(drift("fraud-features", 0.8350349068479208))
    assert above.verdict == "violation" and above.notify and above.violations[0].after == 0.3
    assert h.deliver(drift("FRAUD-features", 0.12)).verdict == "compliant"
    assert (h.deliver(drift("other-monitor", 0.99)).reason) == "no_threshold"
    assert h.emu.requests == []


def test_drift_above_a_threshold_without_an_owner_tells_the_policy_contact(harness, tmp_path, caplog):
    # a monitor entry need not name an owner: the policy's contact is told (this raised NameError)
    monitors = [{"monitor": "fraud-features", "threshold": 0.3}]
    h = harness([], extra_metadata=[policy_dir(tmp_path, drift_monitors=monitors)])
    with caplog.at_level("WARNING", logger="guardrails"):
        row = h.deliver(drift("fraud-features", 0.9))
    assert (row.verdict, row.notify) == ("violation", True)
    told = [r for r in caplog.records if "guardrail_violation_notify" in r.getMessage()]
    assert told and "drift monitor owner" not in told[-1].getMessage()


def run_event(kind: str, tags: dict, status: str | None = None) -> dict:
    data = {"experimentId": "0fa9", "experimentName": "fraud", "runId": f"run_{uuid.uuid4().hex[:6]}",
            "runType": None, "runTags": tags, "runProperties": {"model_name": "fraud-clf"}}
    if status is not None:
        data["runStatus"] = status
    return ml_event(kind, data)


def test_candidate_runs_below_the_accuracy_threshold_are_recorded(harness):
    h = harness([])
    cand = {"promotion_candidate": "true", "owner": "ds_team@contoso.com"}
    low = h.deliver(run_event("RunCompleted", {**cand, "accuracy": "0.83"}))
    assert low.verdict == "violation" and low.notify and "0.83" in low.violations[0].message
    assert h.deliver(run_event("RunStatusChanged", {**cand, "accuracy": "91%"}, "Completed")).verdict == "compliant"
    assert h.deliver(run_event("RunStatusChanged", {**cand, "accuracy": "0.1"}, "Running")).reason == "run_not_completed"
    assert h.deliver(run_event("RunCompleted", {"accuracy": "0.1"})).reason == "not_a_candidate"
    assert h.emu.requests == []


def test_a_malformed_ml_event_is_audited_invalid_with_no_arm_call(harness):
    h = harness([])
    row = h.deliver(ml_event("ModelRegistered", {"ModelName": "fraud-clf"}))
    assert (row.verdict, row.reason) == ("invalid", "missing_field") and "ModelVersion" in row.message
    row = h.deliver(registered("fraud-clf", 3) | {"topic": b.rg_id()})
    assert (row.verdict, row.reason) == ("invalid", "invalid_resource_id")
    assert h.emu.requests == []


# ---------------------------------------------------------------- one rule table, two entry points
CASES = [
    ({}, "7"), (TAGS, "7"), ({**TAGS, "git_sha": " "}, "7"), (TAGS, "latest"), ({"owner": "x"}, "current"),
    ({k: v for k, v in TAGS.items() if k != "owner"}, "12"),
]


@pytest.mark.parametrize("tags, version", CASES)
def test_the_promotion_check_and_the_guardrail_agree_on_every_rule(harness, tmp_path, tags, version):
    """Same table (customised, so a stale copy of the defaults would disagree): the HTTP check's
    findings for promoting the version to production are exactly the guardrail's for the same
    version registered (required tags) and deployed to a production endpoint (explicit version)."""
    d = policy_dir(tmp_path, required_tags=["git_sha", "owner"], floating_versions=["latest", "current"])
    v = model_version(WS, "fraud-clf", version if version.isdigit() else "99", tags=tags, stage="production")
    world, green = endpoint_world(f"azureml:fraud-clf:{version}", extra=[v])
    h = harness(world, extra_metadata=[d])
    answer = bootstrap.get_checks().check_model_promotion(
        ModelPromotionRequest(model="fraud-clf", version=version, from_stage="validated", to_stage="production",
                              tags=tags), Caller(trusted=True), "d-" + uuid.uuid4().hex).response
    http = sorted((r.rule, r.message) for r in answer.reasons)
    # the version's own row (a served version made unfit also has its endpoint decided again, in
    # that endpoint's row: ml_serving)
    event = b.write_event(v["id"])
    resource_events(to_function_event(event))
    (own,) = [r for r in h.recorder.rows if r.event_id == event["id"]]
    guard = list(own.violations)
    guard += [r for r in h.deliver(b.write_event(green["id"])).violations if r.rule == RULE_EXPLICIT_VERSION]
    assert sorted(r.rule for r in guard) == [rule for rule, _m in http]
    for rule, message in http:
        assert any(r.rule == rule and message in r.message for r in guard), (rule, message)
    assert answer.allowed is (not guard)


# ---------------------------------------------------------------- the emulator holds the product to the platform's rules
def raw_call(h, client, method: str, rid: str, body=None, headers=None):
    from azure.core.rest import HttpRequest
    req = HttpRequest(method, f"{h.emu.base_url}{rid}?api-version={API}", json=body, headers=headers or {})
    resp = client.send_request(req)
    return resp.status_code, (resp.json() if resp.content else None)


def test_emulator_refuses_what_azure_ml_refuses(harness):
    world, _green = endpoint_world("azureml:fraud-clf:7")
    h = harness(world)
    v = f"{WS}/models/fraud-clf/versions/7"
    with user_client(h) as c:
        status, body = raw_call(h, c, "PATCH", EP, {"properties": {"authMode": "AADToken"}})
        assert status == 400 and body["error"]["code"] == "InvalidRequestContent" and "tags" in body["error"]["message"]
        assert raw_call(h, c, "PATCH", EP, {"tags": {"team": "risk"}})[0] == 200
        assert raw_call(h, c, "PATCH", v, {"properties": {"isArchived": True}})[0] == 405
        ep = h.resource(EP)
        for traffic, code in (({"blue": 60, "green": 30}, 400), ({"blue": 50, "ghost": 50}, 400),
                              ({"blue": 0, "green": 0}, 200), ({"blue": 30, "green": 70}, 200)):
            body = {"location": "eastus", "properties": {**ep["properties"], "traffic": traffic}}
            assert raw_call(h, c, "PUT", EP, body)[0] == code, traffic
        stale = {"properties": h.resource(v)["properties"]}
        assert raw_call(h, c, "PUT", v, stale, {"If-Match": 'W/"stale"'})[0] == 412
        assert raw_call(h, c, "PUT", f"{WS}/onlineEndpoints/none/deployments/x", {"properties": {"model": "m"}})[0] == 404


def test_the_breaker_holds_archiving_like_every_fix(harness, tmp_path):
    versions = [model_version(WS, "fraud-clf", n) for n in (1, 2)]
    h = harness(versions, extra_metadata=[policy_dir(tmp_path, breaker={"max_actions": 1, "window_seconds": 3600})])
    first, second = (h.deliver(b.write_event(v["id"])) for v in versions)
    assert first.verdict == "remediated"
    assert (second.verdict, second.reason) == ("dry_run", "circuit_open")
    assert [h.resource(v["id"])["properties"]["isArchived"] for v in versions] == [True, False]


def test_an_on_demand_check_of_an_ml_resource_decides_without_acting(harness):
    world, green = endpoint_world("azureml:fraud-clf:latest")
    h = harness(world)
    row = bootstrap.get_service().check_resource(green["id"], remediate=False)
    assert row.verdict == "dry_run" and [v.rule for v in row.violations] == [RULE_EXPLICIT_VERSION]
    assert h.writes() == [] and h.resource(EP)["properties"]["traffic"] == {"blue": 80, "green": 20}


# ---------------------------------------------------------------- safety rails and delivery
def test_a_pipeline_fighting_the_traffic_fix_is_escalated_after_three_reverts(harness):
    # GIVEN a deployment pipeline that keeps routing traffic back to the `latest` deployment
    world, _green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 100, "green": 0})
    h = harness(world)
    verdicts = []
    for _ in range(4):
        with user_client(h) as c:
            body = h.resource(EP)
            body["properties"]["traffic"] = {"blue": 50, "green": 50}
            c.resources.begin_create_or_update_by_id(EP.lstrip("/"), {k: body[k] for k in (
                "location", "tags", "identity", "kind", "properties")}, api_version=API).result()
        rows = [r for r in h.deliver_emitted() if r.reason != "own_write"]
        verdicts += [r.verdict for r in rows]
    # THEN the default flip-flop budget (3 reverts in 60 min) holds: the 4th change stays, escalated
    assert verdicts == ["remediated", "remediated", "remediated", "escalated"]
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 50, "green": 50}
    last = next(r for r in reversed(h.recorder.rows) if r.verdict == "escalated")
    assert last.reason == "flip_flop" and "alice@contoso.com" in last.violations[0].message


def test_a_long_running_archive_is_confirmed_by_its_own_write_event(harness):
    import time
    v = model_version(WS, "fraud-clf", 11, tags={"owner": "ds_team@contoso.com"})
    h = harness([v], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"}, lro_seconds=2.5)
    row = h.deliver(b.write_event(v["id"]))
    assert {r.outcome for r in row.violations if r.rule == RULE_REQUIRED_TAGS} == {"requested"}
    assert h.resource(v["id"])["properties"].get("isArchived") is not True
    # the budget went on the archive: the endpoints that may serve the version are left to the
    # sweep, and the row says so (ml_serving)
    assert [r.outcome for r in row.violations if r.rule == RULE_SERVING_ENDPOINTS] == ["violation"]
    time.sleep(1.5)
    (confirm,) = h.deliver_emitted()            # the PUT finished: its own write event confirms it
    assert confirm.verdict == "remediated" and "confirmed" in confirm.violations[0].message
    assert h.resource(v["id"])["properties"]["isArchived"] is True


def test_an_endpoint_routing_to_a_deployment_being_deleted_is_retried_not_taken_for_gone(harness):
    # a 404 on a deployment the traffic names is not the endpoint gone: a retry judges it later
    world, _green = endpoint_world("azureml:fraud-clf:7", traffic={"blue": 80, "green": 20})
    h = harness([r for r in world if not r["id"].endswith("/deployments/green")])
    row = h.deliver(b.write_event(EP))
    assert (row.verdict, row.reason) == ("failed", "deployment_not_found") and "green" in row.message
    assert h.writes() == []
