"""The ML lifecycle part of the model-registry rule table (pure): serving, endpoints, drift, runs,
traffic arithmetic, model references, and the metadata that carries it."""

import json

import pytest
import yaml
from hypothesis import given, strategies as st

from guardrails.errors import MetadataValidationError
from guardrails.ml_guardrail import parse_model_reference
from guardrails.policy.loader import load_documents
from guardrails.policy.model_rules import (
    DEFAULT_RULES, DriftMonitor, EndpointSelector, ModelRegistryRules, evaluate_drift, evaluate_endpoint,
    evaluate_run, evaluate_serving, parse_metric, rebalance_traffic,
)

TAGS = {"data_version": "2026-11-01", "git_sha": "3f2a9c1", "metric_summary": "auc=0.93", "owner": "ds_team"}
WS = ("/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg/providers/"
      "Microsoft.MachineLearningServices/workspaces/mlw")


def rules_of(found):
    return [f.rule for f in found]


# ---------------------------------------------------------------- traffic arithmetic
names = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


@st.composite
def traffic_maps(draw):
    keys = draw(st.lists(names, min_size=1, max_size=6, unique_by=str.lower))
    total = draw(st.sampled_from([0, 100]))
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=len(keys) - 1, max_size=len(keys) - 1)))
    bounds = [0, *cuts, total]
    return {k: bounds[i + 1] - bounds[i] for i, k in enumerate(keys)}


@given(traffic_maps(), st.data())
def test_rebalanced_traffic_zeroes_the_bad_keeps_the_total_and_the_proportions(traffic, data):
    bad = data.draw(st.lists(st.sampled_from(sorted(traffic)), min_size=1, unique=True))
    out = rebalance_traffic(traffic, bad)
    assert set(out) == set(traffic) and all(isinstance(v, int) and v >= 0 for v in out.values())
    assert all(out[k] == 0 for k in bad)
    others = {k: v for k, v in traffic.items() if k not in bad}
    if sum(others.values()) == 0:
        assert sum(out.values()) == 0               # it was the only one serving: the endpoint stops
    else:
        assert sum(out.values()) == sum(traffic.values())
        base = sum(others.values())
        for k, v in others.items():                 # largest remainder: within 1 of the exact share
            assert abs(out[k] - v * sum(traffic.values()) / base) < 1
            assert v == 0 or out[k] >= v            # nobody loses traffic
            assert v > 0 or out[k] == 0             # a deployment at 0 stays at 0


@pytest.mark.parametrize("traffic, bad, expected", [
    ({"blue": 80, "green": 20}, ["green"], {"blue": 100, "green": 0}),
    ({"blue": 70, "green": 20, "red": 10}, ["blue"], {"blue": 0, "green": 67, "red": 33}),
    ({"a": 50, "b": 25, "c": 25}, ["A"], {"a": 0, "b": 50, "c": 50}),
    ({"only": 100}, ["only"], {"only": 0}),
    ({"a": 100, "b": 0}, ["a"], {"a": 0, "b": 0}),
    ({"a": 34, "b": 33, "c": 33}, ["a"], {"a": 0, "b": 50, "c": 50}),
])
def test_rebalance_examples(traffic, bad, expected):
    assert rebalance_traffic(traffic, bad) == expected


# ---------------------------------------------------------------- serving production
def test_a_serving_version_is_explicit_in_a_production_stage_not_archived_and_tagged():
    assert evaluate_serving(DEFAULT_RULES, version="7", stage="Production", tags=TAGS, archived=False) == []
    found = evaluate_serving(DEFAULT_RULES, version="latest", stage="validated", tags={}, archived=True)
    assert rules_of(found) == ["explicit-version", "production-stage", "not-archived"] + ["required-tags"] * 4
    lenient = ModelRegistryRules(production_stages=("production", "validated"))
    assert evaluate_serving(lenient, version="7", stage="validated", tags=TAGS, archived=False) == []
    assert rules_of(evaluate_serving(lenient, version="7", stage=None, tags=TAGS, archived=False)) == ["production-stage"]


@pytest.mark.parametrize("ref, version, readable", [
    ("azureml:fraud-clf:7", "7", f"{WS}/models/fraud-clf/versions/7"),
    ("fraud-clf:7", "7", f"{WS}/models/fraud-clf/versions/7"),
    ("azureml:fraud-clf:latest", "latest", f"{WS}/models/fraud-clf/versions/latest"),
    ("azureml:fraud-clf@champion", "@champion", None),
    ("azureml:fraud-clf", None, None),
    ("azureml://registries/reg/models/fraud-clf/versions/3", "3", None),
    ("azureml://registries/reg/models/fraud-clf/labels/latest", "@latest", None),
    (f"{WS}/models/fraud-clf/versions/4", "4", f"{WS}/models/fraud-clf/versions/4"),
    ("azureml:../../vaults/kv:1", "1", None), ("azureml:fraud-clf:1/../x", "1/../x", None),
    (f"{WS}/computes/c1", None, None), ("/subscriptions/not-an-id", None, None), (None, None, None), (7, None, None),
])
def test_model_references(ref, version, readable):
    r = parse_model_reference(ref, WS)
    assert (r.version, r.version_id) == (version, readable)


REGISTRY = "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg-shared/providers/" \
           "Microsoft.MachineLearningServices/registries/mlreg-shared"


@pytest.mark.parametrize("ref, readable", [
    ("azureml://registries/mlreg-shared/models/fraud-clf/versions/3", f"{REGISTRY}/models/fraud-clf/versions/3"),
    ("azureml://registries/MLREG-SHARED/models/fraud-clf/versions/3", f"{REGISTRY}/models/fraud-clf/versions/3"),
    ("azureml://registries/other-reg/models/fraud-clf/versions/3", None),              # not listed
    ("azureml://registries/mlreg-shared/models/fraud-clf/labels/latest", None),        # a label: not explicit
    ("azureml://registries/mlreg-shared/models/../versions/3", None),                  # never shapes a path
    ("azureml://registries/mlreg-shared/models/fraud-clf/versions/3/extra", None),
    ("azureml://registries/mlreg-shared/datastores/fraud-clf/versions/3", None),
])
def test_registry_references_resolve_through_the_policys_registries(ref, readable):
    rules = ModelRegistryRules(registries=(("mlreg-shared", REGISTRY),))
    assert parse_model_reference(ref, WS, rules.registry_id).version_id == readable


# ---------------------------------------------------------------- endpoints, drift, runs
def test_endpoint_rules():
    assert evaluate_endpoint(DEFAULT_RULES, auth_mode="AADToken", public_network_access=None, sensitive=False) == []
    assert rules_of(evaluate_endpoint(DEFAULT_RULES, auth_mode="Key", public_network_access="Disabled",
                                      sensitive=True)) == ["endpoint-auth-mode"]
    assert rules_of(evaluate_endpoint(DEFAULT_RULES, auth_mode="aadtoken", public_network_access=None,
                                      sensitive=True)) == ["endpoint-public-access"]     # absent = Enabled
    assert rules_of(evaluate_endpoint(DEFAULT_RULES, auth_mode=None, public_network_access="Enabled",
                                      sensitive=False)) == ["endpoint-auth-mode"]


def test_endpoint_selectors_match_by_name_or_any_tag():
    sel = EndpointSelector(tags=(("environment", "prod"), ("tier", "gold")), names=("Fraud-Scoring",))
    assert sel.matches("fraud-scoring", {}) and sel.matches("x", {"Environment": " PROD "})
    assert sel.matches("x", {"tier": "gold"}) and not sel.matches("x", {"environment": "dev", "tier": 1})
    assert not EndpointSelector().matches("anything", {"environment": "prod"})


def test_drift_thresholds_per_monitor_with_a_default():
    rules = ModelRegistryRules(drift_monitors=(DriftMonitor("m1", 0.3, "ds"),), drift_default_threshold=0.5)
    assert rules_of(evaluate_drift(rules, monitor="M1", coefficient=0.31)[0]) == ["drift-threshold"]
    assert evaluate_drift(rules, monitor="m1", coefficient=0.3) == ([], 0.3)
    assert evaluate_drift(rules, monitor="other", coefficient=0.4) == ([], 0.5)
    assert evaluate_drift(DEFAULT_RULES, monitor="m1", coefficient=9.0) == ([], None)


@pytest.mark.parametrize("tags, props, expected", [
    ({"promotion_candidate": "true", "accuracy": "0.85"}, {}, []),
    ({"promotion_candidate": "True", "accuracy": "0.849"}, {}, ["run-metric"]),
    ({"promotion_candidate": "true"}, {"accuracy": "84%"}, ["run-metric"]),
    ({"promotion_candidate": "true"}, {"accuracy": 0.9}, []),
    ({"promotion_candidate": "true"}, {}, ["run-metric"]),
    ({"promotion_candidate": "true", "accuracy": "high"}, {}, ["run-metric"]),
    ({"accuracy": "0.1"}, {}, None), ({"promotion_candidate": "false"}, {}, None), ({}, {}, None),
])
def test_candidate_runs(tags, props, expected):
    found = evaluate_run(DEFAULT_RULES, tags=tags, properties=props)
    assert (None if found is None else rules_of(found)) == expected


@pytest.mark.parametrize("raw, value", [("0.83", 0.83), ("83%", 0.83), (1, 1.0), (True, None), ("nan", None),
                                         ("", None), (None, None), ("inf", None), ({"a": 1}, None)])
def test_metrics(raw, value):
    assert parse_metric(raw) == (pytest.approx(value) if value is not None else None)


# ---------------------------------------------------------------- metadata
def shipped() -> dict:
    return yaml.safe_load(open("metadata/jobs/model-registry.yaml"))


def test_the_shipped_policy_is_the_seed_table_and_round_trips():
    (p,) = load_documents([("shipped", shipped())])
    assert p.rules == DEFAULT_RULES and p.breaker.max_actions == 50
    (again,) = load_documents([("again", json.loads(json.dumps(p.to_document())))])
    assert again == p


def test_new_fields_are_loaded():
    doc = {**shipped(), "production_endpoints": {"names": ["fraud-scoring"]}, "production_stages": ["validated", "production"],
           "endpoint_action": "enforce", "drift_monitors": [{"monitor": "m1", "threshold": 0.4, "owner": "ds"}],
           "drift_default_threshold": 0.7, "candidate_tag": {"key": "candidate", "value": "yes"},
           "run_metrics": [{"metric": "f1", "minimum": 0.8}], "notify_tag": "team", "breaker": {"max_actions": 5, "window_seconds": 60}}
    (p,) = load_documents([("x", doc)])
    r = p.rules
    assert r.production_endpoints == EndpointSelector(names=("fraud-scoring",)) and r.production_stages == ("validated", "production")
    assert (r.endpoint_action, r.drift_default_threshold, r.candidate_tag, r.notify_tag) == ("enforce", 0.7, ("candidate", "yes"), "team")
    assert r.drift_monitors == (DriftMonitor("m1", 0.4, "ds"),) and r.run_metrics[0].name == "f1"
    assert (p.breaker.max_actions, p.breaker.window_seconds) == (5, 60)


@pytest.mark.parametrize("change, path", [
    ({"production_stages": ["prod"]}, "$.production_stages[0]: 'prod' is not one of the stages"),
    ({"endpoint_auth_modes": ["Password"]}, "$.endpoint_auth_modes[0]"),
    ({"endpoint_action": "delete"}, "$.endpoint_action"),
    ({"drift_monitors": [{"monitor": "m", "threshold": 0.1}, {"monitor": "M", "threshold": 0.2}]}, "$.drift_monitors[1]"),
    ({"drift_monitors": [{"monitor": "m", "threshold": -1}]}, "$.drift_monitors[0].threshold"),
    ({"run_metrics": [{"metric": "acc"}]}, "$.run_metrics[0]"),
    ({"production_endpoints": {"labels": ["x"]}}, "$.production_endpoints"),
])
def test_bad_ml_fields_are_refused_naming_the_path(change, path):
    with pytest.raises(MetadataValidationError) as err:
        load_documents([("bad.yaml", {**shipped(), **change})])
    assert path in str(err.value) and "model-registry" in str(err.value)


def test_the_auth_mode_a_fix_writes_is_one_every_policy_allows():
    from types import SimpleNamespace as NS

    from guardrails.ml_fixes import auth_mode_choice

    def pol(*modes):
        return NS(rules=NS(endpoint_auth_modes=modes))
    assert auth_mode_choice([pol("AADToken")]) == "AADToken"
    assert auth_mode_choice([pol("AMLToken", "AADToken"), pol("aadtoken")]) == "AADToken"   # as the first writes it
    assert auth_mode_choice([pol("Key", "AMLToken"), pol("AMLToken", "Key")]) == "Key"      # policy order decides
    assert auth_mode_choice([pol("AADToken"), pol("AMLToken")]) is None
