"""Review s24 of the ML lifecycle guardrail, end to end (Azurite + the HTTPS emulator + the real
SDK clients, through the trigger function): each test failed before its fix. Assertions are on
the endpoint the emulator holds afterwards and on the audit row.

1. one policy's ``registries`` never makes a registry version readable for another policy;
2. an audit-mode finding (or one whose breaker permit was refused) never takes its deployment
   out of traffic because another policy's fix is written: a deployment only an audit-mode
   finding faults may take the moved share; one a refused finding faults keeps its own, and when
   it is the only one that could take the share no traffic is written and the records say why;
3. a ``ModelDeployed`` event naming many models (``ModelIds`` over 256 characters) is judged.
"""

from __future__ import annotations

import json

import pytest
import yaml

from guardrails.local.ml_emulator import model_version, online_deployment, online_endpoint
from guardrails.policy.loader import load_documents
from tests import builders as b
from tests.integration.test_ml_guardrail import EP, PROD, REG, TAGS, WS, ml_event

pytestmark = pytest.mark.integration

SHARED_REF = "azureml://registries/mlreg-shared/models/fraud-clf/versions/3"


def policies(tmp_path, *docs: dict):
    """The shipped model-registry policy once per ``docs`` entry, each with its changes (an
    ``id`` other than the shipped one adds a policy)."""
    shipped = yaml.safe_load(open("metadata/jobs/model-registry.yaml"))
    d = tmp_path / "meta"
    d.mkdir(exist_ok=True)
    for i, changes in enumerate(docs):
        (policy,) = load_documents([(f"p{i}.yaml", {**shipped, **changes})])
        (d / f"p{i}.yaml").write_text(json.dumps(policy.to_document()))
    return d


def records(row) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(policy id, rule, deployment) -> (outcome, message) of the row's deployment records."""
    return {(v.policy.split("@")[0], v.rule, v.property.rsplit(".", 1)[-1]): (v.outcome, v.message)
            for v in row.violations}


# ---------------------------------------------------------------- 1. registries are per policy
def registry_world():
    good = model_version(WS, "fraud-clf", 7, tags=TAGS, stage="production")
    shared = model_version(REG, "fraud-clf", 3, tags=TAGS, stage="production")     # fit, where A says it is
    ep = online_endpoint(WS, "fraud-scoring", traffic={"blue": 80, "green": 20}, tags=PROD)
    return [good, shared, ep, online_deployment(EP, "blue", model="azureml:fraud-clf:7"),
            online_deployment(EP, "green", model=SHARED_REF)]


def test_a_registry_another_policy_lists_does_not_make_the_version_readable(harness, tmp_path):
    # GIVEN policy A listing the registry, and policy B listing none that selects the endpoint by name
    meta = policies(tmp_path, {"registries": {"mlreg-shared": REG}},
                    {"id": "model-registry-names", "production_endpoints": {"names": ["fraud-scoring"]}})
    h = harness(registry_world(), extra_metadata=[meta])
    # WHEN the deployment serving the registry version is written
    row = h.deliver(b.write_event(f"{EP}/deployments/green"))
    # THEN B finds the version unreadable, as it would alone, and green serves no production traffic
    got = records(row)
    assert list(got) == [("model-registry-names", "version-readable", "green")]
    assert got[("model-registry-names", "version-readable", "green")][0] == "remediated"
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 100, "green": 0}
    # AND A read the version where it lives, once
    reads = [q for q in h.arm_requests("GET") if q["path"].lower().endswith("/registries/mlreg-shared/models/"
                                                                           "fraud-clf/versions/3")]
    assert len(reads) == 1


def test_two_policies_listing_the_registry_read_the_version_once_and_find_it_fit(harness, tmp_path):
    meta = policies(tmp_path, {"registries": {"mlreg-shared": REG}},
                    {"id": "model-registry-names", "production_endpoints": {"names": ["fraud-scoring"]},
                     "registries": {"MLREG-SHARED": REG}})
    h = harness(registry_world(), extra_metadata=[meta])
    row = h.deliver(b.write_event(EP))
    assert row.verdict == "compliant" and h.writes() == []
    assert len([q for q in h.arm_requests("GET") if "/registries/mlreg-shared/" in q["path"].lower()]) == 1


# ---------------------------------------------------------------- 2. traffic: permitted findings only
def traffic_world(traffic: dict, extra=()):
    """blue serves a validated version (only P1, which serves production stage only, faults it);
    green a production version without ``approved_by`` (only P2, which requires it, faults it)."""
    blue_v = model_version(WS, "fraud-clf", 7, tags={**TAGS, "approved_by": "cab"}, stage="validated")
    green_v = model_version(WS, "fraud-clf", 8, tags=TAGS, stage="production")
    ep = online_endpoint(WS, "fraud-scoring", traffic=traffic, tags=PROD)
    deps = [online_deployment(EP, "blue", model="azureml:fraud-clf:7"),
            online_deployment(EP, "green", model="azureml:fraud-clf:8")]
    deps += [online_deployment(EP, name, model="azureml:fraud-clf:9") for name in extra]
    fit = [model_version(WS, "fraud-clf", 9, tags={**TAGS, "approved_by": "cab"}, stage="production")] if extra else []
    return [blue_v, green_v, *fit, ep, *deps]


def p1_p2(tmp_path, p2: dict):
    return policies(tmp_path, {"id": "model-registry-p1"},
                    {"production_stages": ["production", "validated"],
                     "required_tags": ["data_version", "git_sha", "metric_summary", "owner", "approved_by"], **p2})


def test_an_audit_mode_finding_does_not_take_its_deployment_out_of_traffic(harness, tmp_path):
    # GIVEN enforcing P1 faults blue, audit-mode P2 faults only green, traffic 50/50
    h = harness(traffic_world({"blue": 50, "green": 50}), extra_metadata=[p1_p2(tmp_path, {"mode": "audit"})])
    # WHEN the endpoint is written
    row = h.deliver(b.write_event(EP))
    # THEN P1's fix goes in as it would alone: blue out of traffic, its share to green
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 0, "green": 100}
    (put,) = h.writes()
    assert put["body"]["properties"]["traffic"] == {"blue": 0, "green": 100}
    # AND each record says what really happened to its deployment's traffic
    got = records(row)
    assert got[("model-registry-p1", "production-stage", "blue")][0] == "remediated"
    outcome, message = got[("model-registry", "required-tags", "green")]
    assert outcome == "dry_run" and "traffic 50 -> 100" in message
    stored = next(r for r in h.stored_rows() if r.resource_id.lower() == EP.lower())
    assert records(stored) == got


def spend_breaker(h) -> None:
    """P2's breaker allows one fix per hour: an untagged registration spends it."""
    assert h.deliver(b.write_event(f"{WS}/models/scratch/versions/1")).verdict == "remediated"
    h.emu.clear_requests()


def test_a_refused_finding_keeps_its_deployment_in_traffic_and_nothing_is_zeroed(harness, tmp_path):
    # GIVEN enforcing P1 faults blue; enforcing P2 faults green, but its breaker is spent
    scratch = model_version(WS, "scratch", 1, tags={"owner": "ds_team@contoso.com"})
    meta = p1_p2(tmp_path, {"breaker": {"max_actions": 1, "window_seconds": 3600}})
    h = harness([*traffic_world({"blue": 50, "green": 50}), scratch], extra_metadata=[meta])
    spend_breaker(h)
    # WHEN the endpoint is written
    row = h.deliver(b.write_event(EP))
    # THEN no traffic is written: blue's share could only go to green, which P1 may not take out
    # of traffic and P2 may not fix now; the endpoint keeps serving as it was
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 50, "green": 50}
    assert h.writes() == []
    got = records(row)
    outcome, message = got[("model-registry-p1", "production-stage", "blue")]
    assert outcome == "violation" and "not taken out of traffic" in message and "green" in message
    outcome, message = got[("model-registry", "required-tags", "green")]
    assert outcome == "dry_run" and "circuit open" in message and "left as it is" in message
    assert row.verdict == "violation" and row.reason == "circuit_open"
    # AND no revert was made, so none is counted against the endpoint's flip-flop budget
    status = h.service.escalations.status(EP)
    assert status is None or status["times"] == []


def test_a_refused_findings_deployment_keeps_its_share_while_a_fit_one_takes_the_rest(harness, tmp_path):
    scratch = model_version(WS, "scratch", 1, tags={"owner": "ds_team@contoso.com"})
    meta = p1_p2(tmp_path, {"breaker": {"max_actions": 1, "window_seconds": 3600}})
    h = harness([*traffic_world({"blue": 40, "green": 40, "red": 20}, extra=["red"]), scratch],
                extra_metadata=[meta])
    spend_breaker(h)
    row = h.deliver(b.write_event(EP))
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 0, "green": 40, "red": 60}
    got = records(row)
    assert got[("model-registry-p1", "production-stage", "blue")][0] == "remediated"
    outcome, message = got[("model-registry", "required-tags", "green")]
    assert outcome == "dry_run" and "left as it is" in message


# ---------------------------------------------------------------- 3. ModelIds over 256 characters
def test_a_legacy_service_of_seven_models_is_judged_not_refused(harness):
    names = [f"credit_risk_gradient_boosting_model_{i}" for i in range(7)]
    ids = ",".join(f"{n}:1" for n in names)
    assert len(ids) == 279
    versions = [model_version(WS, n, 1, tags=TAGS, stage="production") for n in names[:6]]
    versions.append(model_version(WS, names[6], 1, tags={"owner": "ds_team@contoso.com"}, stage="production"))
    h = harness(versions)
    row = h.deliver(ml_event("ModelDeployed", {"ServiceName": "legacy-aks", "ModelIds": ids, "ServiceTags": PROD}))
    assert row.verdict == "violation" and {v.rule for v in row.violations} == {"required-tags"}
    assert all(v.before == f"azureml:{names[6]}:1" for v in row.violations)
    assert h.writes() == []                      # a legacy service is reported, never changed
