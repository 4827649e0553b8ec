"""``POST /api/secrets/exposed`` — a secret scanner or an incident responder reports a leak.

Body: ``{"vault": "<vault name>", "name": "<secret name>", "version": "<optional>", "source": "<who found it>"}``.
The guardrail rotates at once and disables the exposed version (and every older enabled one).
Answers: 200 with the decision, 400 with a reason for bad input, 404 for an unknown secret,
503 with a correlation id when a dependency is down. Never echoes a secret value.

The caller is recorded on the audit row when App Service authentication vouches for it
(``X-MS-CLIENT-PRINCIPAL``, trusted only with ``WEBSITE_AUTH_ENABLED``, as the check API does);
``source`` is in the row's message, unless it looks like a credential (a scanner's finding pasted
into it): then it is replaced, and the report still acted on. A report naming a version that is no longer current, after
the guardrail already rotated for an exposure, is answered ``compliant`` without a second rotation.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid

import azure.functions as func

from ..bootstrap import get_service
from ..errors import GuardrailsError, IdempotencyError, StoreError
from ..logs import emit
from ..model.decision import Actor
from ..model.keyvault_events import has_unprintable
from ..secrets.credentials import looks_like_credential

bp = func.Blueprint()
log = logging.getLogger("guardrails")
MAX_BODY = 4096
_VAULT = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9]{1,64}$")
_FIELDS = {"vault", "name", "version", "source"}
SOURCE_HIDDEN = "<source not shown: it looks like a credential>"


def _answer(status: int, body: dict) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _bad(reason: str, message: str) -> func.HttpResponse:
    return _answer(400, {"error": {"reason": reason, "message": message}})


def parse_exposure(req: func.HttpRequest) -> dict | func.HttpResponse:
    body = req.get_body() or b""
    if len(body) > MAX_BODY:
        return _answer(413, {"error": {"reason": "body_too_large", "message": f"body over {MAX_BODY} bytes"}})
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _bad("malformed_json", "body is not JSON (or nested too deeply)")
    if not isinstance(data, dict):
        return _bad("wrong_type", "body must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        return _bad("unknown_field", f"unknown field(s): {', '.join(k[:30] for k in unknown)}")
    for key, rx, required in (("vault", _VAULT, True), ("name", _NAME, True), ("version", _VERSION, False)):
        v = data.get(key)
        if v is None and not required:
            continue
        if not isinstance(v, str):
            return _bad("wrong_type" if v is not None else "missing_field", f"'{key}' must be a string")
        if not rx.match(v):
            return _bad("invalid_value", f"'{key}' is not a valid Key Vault {key}")
    source = data.get("source", "unspecified")
    if not isinstance(source, str) or not 1 <= len(source.strip()) <= 200 or has_unprintable(source):
        return _bad("invalid_value", "'source' must be 1-200 printable characters (no control, format or"
                    " line separator characters)")
    source = source.strip()
    if looks_like_credential(source):
        # a scanner's finding pasted into ``source``: the report is still acted on (refusing it would
        # leave the leak open), but the text is never recorded nor echoed
        source = SOURCE_HIDDEN
    return {"vault": data["vault"], "name": data["name"], "version": data.get("version"), "source": source}


def caller_actor(req: func.HttpRequest) -> Actor | func.HttpResponse:
    """The verified caller, as the check API reads it: ``X-MS-CLIENT-PRINCIPAL`` only behind App
    Service authentication; an empty ``Actor`` when there is none; 400 for a header that cannot be
    trusted or read."""
    from ..checks.principal import (HEADER, ID_HEADER, InvalidPrincipal, decode_principal,
                                    platform_auth_enabled)

    header, pid = req.headers.get(HEADER), req.headers.get(ID_HEADER)
    if header is None and pid is None:
        return Actor()
    if not platform_auth_enabled(os.environ):
        return _bad("invalid_principal_header", "X-MS-CLIENT-PRINCIPAL is only trusted behind App Service "
                    "authentication, which is not enabled for this app (WEBSITE_AUTH_ENABLED)")
    try:
        principal = decode_principal(header, principal_id=pid)
    except InvalidPrincipal as exc:
        return _bad("invalid_principal_header", str(exc))
    if principal is None:
        return Actor()
    return Actor(object_id=principal.object_id, app_id=principal.app_id, upn=principal.upn)


@bp.function_name("secrets_exposed")
@bp.route(route="secrets/exposed", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def secrets_exposed(req: func.HttpRequest) -> func.HttpResponse:
    parsed = parse_exposure(req)
    if isinstance(parsed, func.HttpResponse):
        return parsed
    actor = caller_actor(req)
    if isinstance(actor, func.HttpResponse):
        return actor
    correlation = uuid.uuid4().hex
    try:
        row = get_service().report_exposure(**parsed, actor=actor)
    except (StoreError, IdempotencyError) as exc:
        emit(log, logging.ERROR, "exposure_report_unavailable", correlation_id=correlation, error=type(exc).__name__)
        return _answer(503, {"error": {"reason": "unavailable", "correlation_id": correlation}})
    except GuardrailsError as exc:
        # DeliveryFailed: the row was audited as failed; the caller may retry
        emit(log, logging.ERROR, "exposure_report_failed", correlation_id=correlation, reason=exc.reason)
        return _answer(503, {"error": {"reason": exc.reason, "correlation_id": correlation}})
    if row.verdict == "invalid":       # the report passed the checks above but not the event's own: never a 200
        return _answer(400, {"error": {"reason": row.reason or "invalid_value", "message": row.message},
                             "decision_id": row.delivery_id})
    if row.reason == "secret_not_found":
        return _answer(404, {"error": {"reason": "unknown_secret", "message":
                                       f"no secret {parsed['name']} in vault {parsed['vault']}"},
                             "decision_id": row.delivery_id})
    return _answer(200, {"verdict": row.verdict, "reason": row.reason, "decision_id": row.delivery_id,
                         "message": row.message,
                         "actions": [{"rule": v.rule, "outcome": v.outcome} for v in row.violations]})
