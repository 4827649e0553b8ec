"""Fuzz the check API from its own OpenAPI document (schemathesis), in process.

The document is fetched from the app itself (``GET /api/openapi.json``); schemathesis generates
valid and invalid requests from it (positive and negative modes) and sends them through a small
WSGI bridge that builds a real ``azure.functions.HttpRequest``, calls the app's own function for
the route (indexed from ``function_app.py`` as the host does), and turns the
``func.HttpResponse`` into the bytes and headers the Functions worker would send
(``HttpResponseConverter.encode``). Stores are the functional tier's in-memory fakes.

Checked on every response: no 5xx; the status code is documented for the operation; the
content type and the body match the documented response schema; invalid input is rejected
with a 4xx. Each generated request is also replayed with a valid App Service principal, so the
decision paths (not only the 400s) are fuzzed too.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from urllib.parse import parse_qsl

import azure.functions as func
import pytest
import schemathesis
from azure.functions.http import HttpResponseConverter
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, negative_data_rejection, response_schema_conformance, status_code_conformance,
)

from guardrails import bootstrap
from guardrails.checks.principal import encode_principal
from tests import builders as b
from tests.functional.test_http_checks import ACCESS, ORCHESTRATOR, app_functions, make_world
from tests.fuzz._config import examples, fuzz_settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
VALID_PRINCIPALS = (encode_principal(b.ALICE, tenant_id=b.TENANT, upn="alice@contoso.com"),
                    encode_principal(ORCHESTRATOR))


def _routes() -> dict[tuple[str, str], func.FunctionBuilder]:
    out = {}
    for f in app_functions():
        binding = json.loads(f.get_function_json())["bindings"][0]
        if binding["type"] == "httpTrigger":
            for method in binding["methods"]:
                out[(method.upper(), "/api/" + binding["route"])] = f.get_user_function()
    return out


ROUTES = _routes()


def wsgi_app(environ, start_response):
    """WSGI -> func.HttpRequest -> the app's function -> what the worker would send."""
    method, path = environ["REQUEST_METHOD"].upper(), environ.get("PATH_INFO", "")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    query = environ.get("QUERY_STRING", "")
    fn = ROUTES.get((method, path))
    if fn is None:      # the host answers these itself; the document never sends them
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": {"code": "not_found", "message": "no such route", "correlation_id": "", "details": []}}']
    req = func.HttpRequest(method=method, url=f"http://localhost{path}" + (f"?{query}" if query else ""),
                           headers=headers, params=dict(parse_qsl(query, keep_blank_values=True)), body=body)
    resp = fn(req)
    datum = HttpResponseConverter.encode(resp, expected_type=None).value
    status = int(datum["status_code"].value)
    start_response(f"{status} {HTTPStatus(status).phrase}", [(k, v.value) for k, v in datum["headers"].items()])
    return [datum["body"].value]


@pytest.fixture(scope="module", autouse=True)
def fake_world():
    world = make_world([b.storage(), b.workspace(), b.storage(name="stok", pna="Disabled", blob=False)],
                       docs=[ACCESS]).install()
    yield world
    bootstrap.reset_service()
    bootstrap._checks = None


schema = schemathesis.openapi.from_wsgi("/api/openapi.json", wsgi_app)


@schema.parametrize()
@fuzz_settings(examples(0.02, minimum=100))
def test_api_conforms_to_its_own_document(case):
    case.call_and_validate(checks=CHECKS)
    if case.operation.method.upper() == "POST":
        for principal in VALID_PRINCIPALS:          # the same request from an authenticated caller
            case.headers = {**(case.headers or {}), "X-MS-CLIENT-PRINCIPAL": principal}
            response = case.call()
            case.validate_response(response, checks=CHECKS[:-1])    # valid header: no negative-data claim


def test_every_decision_and_rejection_was_audited(fake_world):
    rows = fake_world.audit.rows
    assert rows, "the fuzz test above sent requests"
    assert {r.verdict for r in rows} <= {"compliant", "violation", "dry_run", "invalid", "remediated", "ignored"}
    assert len({r.delivery_id for r in rows}) == len(rows)
