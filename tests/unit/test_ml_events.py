"""Azure ML workspace events: typed views over real-shaped payloads (both schemas)."""

import copy
import json
from pathlib import Path

import pytest

from guardrails.errors import InvalidEvent
from guardrails.model.events import parse_envelope
from guardrails.model.ml_events import (
    ML_EVENT_TYPES, DriftDetected, ModelDeployed, ModelRegistered, RunEvent, parse_ml_event,
)

EVENTS = Path(__file__).resolve().parents[1] / "events"
WS = ("/subscriptions/3f2b8c1d-6a4e-4b7f-9c0d-2e5a1b7c8d90/resourceGroups/rg-ml-demo/providers/"
      "Microsoft.MachineLearningServices/workspaces/mlw-guardrails-demo")


def sample(kind: str, schema: str = "eventgrid") -> dict:
    return json.loads((EVENTS / f"Microsoft.MachineLearningServices.{kind}.{schema}.json").read_text())


def parse(raw: dict):
    return parse_ml_event(parse_envelope(raw))


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_every_sample_parses_into_its_view(schema):
    reg = parse(sample("ModelRegistered", schema))
    assert isinstance(reg, ModelRegistered) and (reg.model_name, reg.model_version) == ("sklearn_regression_model", "20")
    assert reg.tags == {"area": "diabetes", "type": "regression"} and str(reg.workspace_id).lower() == WS.lower()
    assert reg.subject_id == f"{reg.workspace_id}/models/sklearn_regression_model/versions/20"
    dep = parse(sample("ModelDeployed", schema))
    assert isinstance(dep, ModelDeployed) and dep.service_name == "my-sklearn-service"
    assert dep.model_ids == (("sklearn_regression_model", "1"), ("sklearn_regression_model", "2"))
    drift = parse(sample("DatasetDriftDetected", schema))
    assert isinstance(drift, DriftDetected) and drift.monitor_name == "myDriftMonitor"
    assert drift.coefficient == pytest.approx(0.8350349068479208)
    done = parse(sample("RunCompleted", schema))
    assert isinstance(done, RunEvent) and done.completed and done.tags == {}
    assert done.properties["run_algorithm"] == "LassoLars"
    changed = parse(sample("RunStatusChanged", schema))
    assert changed.status == "failed" and not changed.completed
    assert {type(parse(sample(k, schema))).__name__ for k in
            ("ModelRegistered", "ModelDeployed", "DatasetDriftDetected", "RunCompleted", "RunStatusChanged")} == {
        "ModelRegistered", "ModelDeployed", "DriftDetected", "RunEvent"}
    assert len(ML_EVENT_TYPES) == 5


def with_data(raw: dict, **data) -> dict:
    e = copy.deepcopy(raw)
    for k, v in data.items():
        if v is None:
            e["data"].pop(k, None)
        else:
            e["data"][k] = v
    return e


def test_optional_fields_may_be_missing_or_null_and_versions_may_be_strings():
    reg = parse(with_data(sample("ModelRegistered"), ModelVersion="3", ModelTags=None, ModelProperties=None))
    assert reg.model_version == "3" and reg.tags == {}
    dep = parse(with_data(sample("ModelDeployed"), ModelIds=None, ServiceTags=None))
    assert dep.model_ids == () and dep.tags == {}
    drift = parse(with_data(sample("DatasetDriftDetected"), DriftCoefficient="0.5", RunId=None, DataDriftId=None))
    assert drift.coefficient == 0.5 and drift.run_id is None
    run = parse(with_data(sample("RunCompleted"), runTags=None, runProperties=None, experimentName=None))
    assert run.tags == {} and run.properties == {}
    raw = sample("ModelRegistered")
    raw["data"] = {k.lower(): v for k, v in raw["data"].items()}      # key case varies between deliveries
    assert parse(raw).model_name == "sklearn_regression_model"


@pytest.mark.parametrize("kind, change, reason, named", [
    ("ModelRegistered", {"ModelVersion": None}, "missing_field", "ModelVersion"),
    ("ModelRegistered", {"ModelName": None}, "missing_field", "ModelName"),
    ("ModelRegistered", {"ModelName": "a/b"}, "invalid_value", "ModelName"),
    ("ModelRegistered", {"ModelVersion": 1.5}, "wrong_type", "ModelVersion"),
    ("ModelRegistered", {"ModelVersion": True}, "wrong_type", "ModelVersion"),
    ("ModelRegistered", {"ModelTags": ["a"]}, "wrong_type", "ModelTags"),
    ("ModelDeployed", {"ModelIds": ["a:1"]}, "wrong_type", "ModelIds"),    # "no-version" is context now (s20)
    ("ModelDeployed", {"ServiceName": None}, "missing_field", "ServiceName"),
    ("DatasetDriftDetected", {"DriftCoefficient": None}, "missing_field", "DriftCoefficient"),
    ("DatasetDriftDetected", {"DriftCoefficient": "high"}, "invalid_value", "DriftCoefficient"),
    ("DatasetDriftDetected", {"DriftCoefficient": float("nan")}, "invalid_value", "DriftCoefficient"),
    ("DatasetDriftDetected", {"DriftCoefficient": -0.1}, "invalid_value", "DriftCoefficient"),
    ("RunCompleted", {"runId": None}, "missing_field", "runId"),
    ("RunStatusChanged", {"runStatus": None}, "missing_field", "runStatus"),
])
def test_bad_payloads_are_refused_with_a_specific_reason(kind, change, reason, named):
    with pytest.raises(InvalidEvent) as err:
        parse(with_data(sample(kind), **change))
    assert err.value.reason == reason and named in str(err.value)


@pytest.mark.parametrize("topic, reason", [
    (None, "missing_field"), ("/subscriptions/x", "invalid_resource_id"),
    ("/subscriptions/3f2b8c1d-6a4e-4b7f-9c0d-2e5a1b7c8d90/resourceGroups/rg", "invalid_resource_id"),
    (WS.replace("workspaces", "registries"), "invalid_resource_id"),
])
def test_the_workspace_is_the_source(topic, reason):
    raw = sample("ModelRegistered")
    if topic is None:
        raw.pop("topic")
    else:
        raw["topic"] = topic
    with pytest.raises(InvalidEvent) as err:
        parse(raw)
    assert err.value.reason == reason


def test_data_must_be_an_object():
    for data, reason in ((None, "missing_data"), ([1], "wrong_type"), ({"x": "y" * 70000}, "oversized")):
        raw = sample("RunCompleted")
        raw["data"] = data
        with pytest.raises(InvalidEvent) as err:
            parse(raw)
        assert err.value.reason == reason
