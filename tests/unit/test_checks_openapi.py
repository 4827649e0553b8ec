"""The OpenAPI document is built from the same pydantic models that validate requests."""

import json

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from guardrails.checks import models as m
from guardrails.checks.openapi import MAX_BODY_BYTES, ROUTES, openapi_bytes, openapi_document

DOC = openapi_document()


def validator(name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<name>`` with the document's refs resolvable."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": DOC["components"]})


def test_it_is_an_openapi_3_1_document_with_the_routes():
    assert DOC["openapi"] == "3.1.0" and DOC["servers"] == [{"url": "/api"}]
    assert set(DOC["paths"]) == set(ROUTES) == {"/checks/job", "/checks/resource", "/checks/model-promotion",
                                                "/health", "/openapi.json"}
    assert json.loads(openapi_bytes()) == DOC and "pydantic" not in openapi_bytes().decode().lower()
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("model", m.REQUEST_MODELS)
def test_components_are_the_models_schemas(model):
    expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
    expected.pop("$defs", None)
    assert DOC["components"]["schemas"][model.__name__] == expected
    (path,) = [p for p, (_, _, req, _, _) in ROUTES.items() if req is model]
    op = DOC["paths"][path]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(model.__name__)
    assert {"200", "400", "500", "503"} <= set(op["responses"])
    assert op["parameters"][0]["name"] == "X-MS-CLIENT-PRINCIPAL"


def test_health_is_the_only_unauthenticated_operation():
    assert DOC["paths"]["/health"]["get"]["security"] == []
    assert all("security" not in op for p, ops in DOC["paths"].items() if p != "/health" for op in ops.values())
    assert DOC["security"] == [{"functionKey": []}, {"functionKeyQuery": []}]


@pytest.mark.parametrize("model, body", [
    (m.JobCheckRequest, {"job_id": 201, "network_zone": "pe-databricks-eastus", "permissions": ["execute_inference"],
                         "secret_references": [{"vault": "ml-vault", "secret": "databricks-token"}],
                         "identity": {"object_id": "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"}, "role": "DataScientist"}),
    (m.JobCheckRequest, {"job_id": "nightly-201", "network_zone": "z", "permissions": ["a"]}),
    (m.ResourceCheckRequest, {"resource_id": "/subscriptions/x"}),
    (m.ModelPromotionRequest, {"model": "fraud", "version": 7, "to_stage": "candidate", "tags": {"owner": "x"}}),
])
def test_what_the_document_accepts_the_model_accepts(model, body):
    validator(model.__name__).validate(body)
    model.model_validate_json(json.dumps(body))


@pytest.mark.parametrize("model, body", [
    (m.JobCheckRequest, {"job_id": True, "network_zone": "z", "permissions": ["a"]}),
    (m.JobCheckRequest, {"job_id": 1, "network_zone": "z", "permissions": ["a"], "extra": 1}),
    (m.JobCheckRequest, {"job_id": 1, "network_zone": "z", "permissions": []}),
    (m.JobCheckRequest, {"job_id": 1.5, "network_zone": "z", "permissions": ["a"]}),
    (m.JobCheckRequest, {"job_id": 1, "network_zone": "z", "permissions": ["a"],
                         "secret_references": [{"vault": "ml-vault", "secret": "t", "value": "v"}]}),
    (m.ResourceCheckRequest, {"resource_id": "subscriptions/x"}),
    (m.ModelPromotionRequest, {"model": "m", "version": "1", "to_stage": "p", "tags": {"bad\nkey": "v"}}),
    (m.ModelPromotionRequest, {"model": "m", "version": "1", "to_stage": "p", "tags": {"k": 1}}),
])
def test_what_the_document_rejects_the_model_rejects(model, body):
    assert not validator(model.__name__).is_valid(body)
    with pytest.raises(ValidationError):
        model.model_validate_json(json.dumps(body))


def test_responses_the_code_builds_match_the_document():
    ok = m.CheckResponse(allowed=False, reasons=[m.Reason(rule="network-zone", message="m")], policy_version=None,
                         decision_id="d", verdict="violation", subject="job:201")
    validator("CheckResponse").validate(json.loads(ok.model_dump_json()))
    err = m.ErrorResponse(error=m.ErrorBody(code="malformed_json", message="m", correlation_id="c"))
    validator("ErrorResponse").validate(json.loads(err.model_dump_json()))
    assert not validator("CheckResponse").is_valid({**json.loads(ok.model_dump_json()), "stack": "..."})
    assert str(MAX_BODY_BYTES) in DOC["paths"]["/checks/job"]["post"]["requestBody"]["description"]


@pytest.mark.parametrize("model", m.REQUEST_MODELS)
def test_the_documented_examples_are_valid_requests(model):
    (example,) = DOC["components"]["schemas"][model.__name__]["examples"]
    validator(model.__name__).validate(example)
    model.model_validate_json(json.dumps(example))
