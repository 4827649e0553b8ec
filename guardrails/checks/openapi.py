"""The OpenAPI 3.1 document of the check API, built from the pydantic models (``models.py``) —
the same classes that validate requests — so the document cannot drift from the code. Served at
``GET /api/openapi.json``; ``tests/unit/test_checks_openapi.py`` keeps the routes in sync with
the function app, and the fuzz test drives the API from this document.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

from pydantic.json_schema import models_json_schema

from guardrails.checks import models as m
from guardrails.checks.principal import MAX_HEADER_CHARS

API_VERSION = "1.0"
MAX_BODY_BYTES = 32 * 1024
REF = "#/components/schemas/{model}"

# route (under /api) -> (method, operation id, request model or None, summary, extra responses)
ROUTES: dict[str, tuple[str, str, type | None, str, tuple[int, ...]]] = {
    "/checks/job": ("post", "check_job", m.JobCheckRequest,
                    "May this job start? (job policy: identities, access group, secrets, network)", ()),
    "/checks/resource": ("post", "check_resource", m.ResourceCheckRequest,
                         "The guardrail's decision on the live resource; ?remediate=true applies it", (403,)),
    "/checks/model-promotion": ("post", "check_model_promotion", m.ModelPromotionRequest,
                                "May this model version move to the stage? (model registry rules)", ()),
    "/health": ("get", "health", None, "Liveness (anonymous; no secrets, no versions)", ()),
    "/openapi.json": ("get", "openapi", None, "This document", ()),
}

_PRINCIPAL_PARAM = {
    "name": "X-MS-CLIENT-PRINCIPAL", "in": "header", "required": False,
    "description": "Set by App Service authentication (base64 JSON of the caller's claims); callers"
                   " cannot set it. The identity checked is this caller unless policy lets it check"
                   " on another identity's behalf.",
    "schema": {"type": "string", "maxLength": MAX_HEADER_CHARS},
}
_REMEDIATE_PARAM = {
    "name": "remediate", "in": "query", "required": False,
    "description": "apply the fixes (only for callers a check-access policy allows at the resource's scope)",
    "schema": {"type": "boolean", "default": False},
}
_ERRORS = {400: "Bad input (machine-readable error.code)", 403: "Remediation not allowed for this caller",
           500: "Internal failure (correlation id, no details)", 503: "A dependency is unavailable; retry"}


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=schema_name)}}}}


def _operation(path: str) -> dict[str, Any]:
    method, op_id, model, summary, extra = ROUTES[path]
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": {}}
    if path == "/health":
        op["security"] = []
        op["responses"]["200"] = _json("HealthResponse", "alive")
        return op
    if path == "/openapi.json":
        op["responses"]["200"] = {"description": "OpenAPI 3.1 document",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}
        return op
    assert model is not None
    op["parameters"] = [_PRINCIPAL_PARAM] + ([_REMEDIATE_PARAM] if path == "/checks/resource" else [])
    op["requestBody"] = {"required": True, "description": f"JSON, at most {MAX_BODY_BYTES} bytes",
                         "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}}
    op["responses"]["200"] = _json("CheckResponse", "the decision (allowed or not), audited")
    for status in (400, *extra, 500, 503):
        op["responses"][str(status)] = _json("CheckResponse" if status == 403 else "ErrorResponse", _ERRORS[status])
    return op


@lru_cache(maxsize=1)
def _document() -> str:
    pairs = [(model, "validation") for model in m.REQUEST_MODELS] + [(model, "serialization") for model in m.RESPONSE_MODELS]
    _, defs = models_json_schema(pairs, ref_template=REF)
    return json.dumps({
        "openapi": "3.1.0",
        "info": {"title": "guardrails pre-flight checks", "version": API_VERSION,
                 "description": "Policy checks a pipeline calls before it runs. Every answer is an audit"
                                " row named by decision_id. Auth: function key (x-functions-key header or"
                                " ?code=), caller identity from App Service authentication."},
        "servers": [{"url": "/api"}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
        "paths": {path: {ROUTES[path][0]: _operation(path)} for path in ROUTES},
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }, sort_keys=True)


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may mutate it)."""
    return copy.deepcopy(json.loads(_document()))


def openapi_bytes() -> bytes:
    return _document().encode()
