"""HTTP handling of the check API, free of any web framework: ``HttpIn`` → ``HttpOut``. The
Functions blueprint (``guardrails/triggers/http_checks.py``) converts ``func.HttpRequest`` to
``HttpIn`` and ``HttpOut`` to ``func.HttpResponse``; the fuzz test and the bench call it the same way.

Every check answer is an audit row named by ``decision_id`` (also ``X-Decision-Id`` and, for
errors, ``error.correlation_id``):

- 200 — the decision (``CheckResponse``), allowed or not; 403 — remediation asked by a caller
  policy does not allow (a ``CheckResponse`` saying so, audited ``invalid``: no decision on the
  resource);
- 400 — bad input, ``error.code`` machine-readable: ``malformed_json``, ``wrong_type``,
  ``unknown_field``, ``missing_field``, ``invalid_value``, ``body_too_large``,
  ``unsupported_media_type``, ``invalid_resource_id``, ``invalid_principal_header``,
  ``invalid_query``; audited ``invalid``. A key sent twice in one JSON object is ``malformed_json``
  (naming it), never "last one wins". Every rejection's message and details go through
  ``redact`` before they are answered or recorded: a credential-looking value is never echoed;
- 503 — a dependency (Table Storage, ARM, Graph) could not answer, ``Retry-After`` set;
  500 — anything else. Both carry only a correlation id: no stack trace, no library versions.
  Both are one ``failed`` row (``record_failure``), under the check's subject once the body
  validated.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ValidationError

from guardrails.checks.models import (
    ErrorBody, ErrorDetail, ErrorResponse, HealthResponse, JobCheckRequest, ModelPromotionRequest, ResourceCheckRequest,
    credential_fields,
)
from guardrails.checks.openapi import MAX_BODY_BYTES, openapi_bytes
from guardrails.checks.principal import HEADER, ID_HEADER, InvalidPrincipal, decode_principal
from guardrails.checks.service import Caller, CheckService, CheckUnavailable, Outcome
from guardrails.errors import ArmError, GuardrailsError, InvalidArmId, StoreError
from guardrails.logs import bound, emit
from guardrails.secrets.credentials import looks_like_credential, redact

log = logging.getLogger("guardrails.checks")

JSON = "application/json"
_CORRELATION_HEADERS = ("x-correlation-id", "x-ms-client-request-id", "traceparent")
_UNION_TAGS = frozenset({"constrained-int", "constrained-str", "int", "str", "[key]"})
_CODES = {"json_invalid": "malformed_json", "json_type": "malformed_json", "extra_forbidden": "unknown_field",
          "missing": "missing_field", "model_type": "wrong_type", "model_attributes_type": "wrong_type",
          "dict_type": "wrong_type", "list_type": "wrong_type", "int_type": "wrong_type",
          "string_type": "wrong_type", "bool_type": "wrong_type", "none_required": "wrong_type"}


@dataclass(frozen=True)
class HttpIn:
    method: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)     # keys lower-case
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpOut:
    status: int
    body: bytes
    headers: Mapping[str, str]


class BadRequest(Exception):
    def __init__(self, code: str, message: str, details: list[ErrorDetail] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.details, self.status = code, message, details or [], status


def _json_out(status: int, model: BaseModel, decision_id: str | None = None, **headers: str) -> HttpOut:
    h = {"Content-Type": JSON, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **headers}
    if decision_id:
        h["X-Decision-Id"] = decision_id
    return HttpOut(status, model.model_dump_json().encode(), h)


def _error(status: int, code: str, message: str, correlation_id: str, details=(), **headers: str) -> HttpOut:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, correlation_id=correlation_id,
                                         details=list(details)))
    return _json_out(status, body, correlation_id, **headers)


def _field(loc: tuple[Any, ...]) -> str:
    # a location names the field, or the key sent (an unknown field, a tag key): never print a key
    # that looks like a credential or holds characters that do not print (CR/LF would forge lines
    # in the answer and the audit row, a bidi override would disguise it)
    parts = [str(p) if isinstance(p, int) else shown_key(str(p)) for p in loc if str(p) not in _UNION_TAGS]
    return ".".join(parts) or "$"


def validation_error(exc: ValidationError) -> BadRequest:
    details: dict[tuple[str, str], ErrorDetail] = {}
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        code = _CODES.get(err["type"], "invalid_value")
        where = _field(tuple(err.get("loc", ())))
        if code == "malformed_json":
            return BadRequest("malformed_json", "the body is not valid JSON",
                              [ErrorDetail(field="$", code="malformed_json", message=str(err["msg"])[:200])])
        details.setdefault((where[:200], code), ErrorDetail(field=where[:200], code=code, message=str(err["msg"])[:200]))
    # a union (``job_id``, ``version``): the branch whose type the input has says what is wrong
    typed = {d.field for d in details.values() if d.code != "wrong_type"}
    listed = [d for d in details.values() if d.code != "wrong_type" or d.field not in typed][:20]
    first = listed[0] if listed else ErrorDetail(field="$", code="invalid_value", message="invalid request")
    return BadRequest(first.code, f"{first.field}: {first.message}", listed)


class CheckApi:
    """The routes. ``checks`` builds the ``CheckService`` on first use (cold start stays short)."""

    def __init__(self, checks: Callable[[], CheckService]) -> None:
        self._checks = checks

    # ---------------------------------------------------------------- routes
    def health(self, req: HttpIn) -> HttpOut:
        return _json_out(200, HealthResponse(status="ok"))

    def openapi(self, req: HttpIn) -> HttpOut:
        return HttpOut(200, openapi_bytes(), {"Content-Type": JSON, "Cache-Control": "no-store"})

    def job(self, req: HttpIn) -> HttpOut:
        return self._check("job", req, JobCheckRequest,
                           lambda svc, body, caller, did: svc.check_job(body, caller, did))

    def model_promotion(self, req: HttpIn) -> HttpOut:
        return self._check("model-promotion", req, ModelPromotionRequest,
                           lambda svc, body, caller, did: svc.check_model_promotion(body, caller, did))

    def resource(self, req: HttpIn) -> HttpOut:
        def run(svc: CheckService, body: ResourceCheckRequest, caller: Caller, did: str) -> Outcome:
            remediate = _flag(req.params.get("remediate"))
            try:
                return svc.check_resource(body.resource_id, remediate=remediate, caller=caller, decision_id=did)
            except InvalidArmId as exc:
                raise BadRequest("invalid_resource_id", str(exc)[:300],
                                 [ErrorDetail(field="resource_id", code="invalid_resource_id",
                                              message=str(exc)[:200])]) from None

        return self._check("resource", req, ResourceCheckRequest, run)

    # ---------------------------------------------------------------- the pipeline
    def _check(self, check: str, req: HttpIn, model: type[BaseModel], run) -> HttpOut:
        decision_id = uuid.uuid4().hex
        caller = Caller(correlation_id=_correlation(req.headers))
        body = None                 # what a failure row is about, once validated
        with bound(decision_id=decision_id, check=check):
            try:
                caller = _caller(req, caller, trusted=self._checks().trust_principal_header)
                body = _body(req, model)
                outcome = run(self._checks(), body, caller, decision_id)
                return _json_out(outcome.status, outcome.response, decision_id)
            except BadRequest as bad:
                return self._rejected(check, decision_id, caller, bad)
            except CheckUnavailable as exc:        # audited ``failed`` by the service already
                return _error(503, "unavailable", f"a dependency did not answer ({exc.reason}); retry",
                              decision_id, **{"Retry-After": "5"})
            except (StoreError, ArmError) as exc:
                emit(log, logging.ERROR, "check_unavailable", error=type(exc).__name__, reason=exc.reason)
                record_failure(self._checks, check, decision_id, caller, exc.reason, body)
                return _error(503, "unavailable", f"a dependency did not answer ({exc.reason}); retry",
                              decision_id, **{"Retry-After": "5"})
            except Exception:    # the HTTP boundary: log with stack, answer with the id only
                log.exception("check_internal_error decision_id=%s", decision_id)
                record_failure(self._checks, check, decision_id, caller, "internal_error", body)
                return _error(500, "internal_error", "internal error", decision_id)

    def _rejected(self, check: str, decision_id: str, caller: Caller, bad: BadRequest) -> HttpOut:
        bad = _redacted(bad)      # what is answered and what is recorded: never a credential-looking value
        try:
            self._checks().record(check, decision_id, caller, verdict="invalid", reason=bad.code, message=bad.message)
        except GuardrailsError as exc:
            emit(log, logging.ERROR, "check_audit_failed", error=type(exc).__name__, reason=exc.reason)
            return _error(503, "unavailable", "the audit store did not answer; retry", decision_id,
                          **{"Retry-After": "5"})
        return _error(bad.status, bad.code, bad.message, decision_id, bad.details)


def record_failure(checks: Callable[[], CheckService], check: str, decision_id: str, caller: Caller, reason: str,
                   request: BaseModel | None = None) -> bool:
    """The ``failed`` row of a check that could not be answered (``CheckService.record_failure``:
    under ``request``'s subject when it validated), for the HTTP API and the CLI. Never raises:
    the audit store may be what failed, and the answer is already an error. False (logged) when
    the row could not be written."""
    try:
        checks().record_failure(check, decision_id, caller, reason=reason, request=request)
    except Exception:        # the audit store may be what failed; the answer is already an error
        emit(log, logging.ERROR, "check_audit_failed", decision_id=decision_id, reason=reason)
        return False
    return True


def _safe_text(text: str, fallback: str) -> str:
    """``text`` with every quoted credential-looking value replaced (``redact``); ``fallback`` when
    something credential-looking is left outside quotes."""
    text = redact(text)
    return fallback if looks_like_credential(text) else text


def _redacted(bad: BadRequest) -> BadRequest:
    """The rejection as it may be answered and audited: its message, its details' messages and
    fields passed through ``redact`` (a bad ARM id, a validation message may quote what was sent)."""
    hidden = "a value in the request looks like a credential (not shown)"
    details = [ErrorDetail(field=_safe_text(d.field, "<field not shown>"), code=d.code,
                           message=_safe_text(d.message, hidden)) for d in bad.details]
    return BadRequest(bad.code, _safe_text(bad.message, f"{bad.code}: {hidden}"), details, bad.status)


def _caller(req: HttpIn, anonymous: Caller, *, trusted: bool) -> Caller:
    if req.method.upper() != "POST":
        raise BadRequest("method_not_allowed", f"{req.method[:10]!r} is not allowed here; use POST", status=405)
    if not trusted and (req.headers.get(HEADER) is not None or req.headers.get(ID_HEADER) is not None):
        raise BadRequest("invalid_principal_header", "X-MS-CLIENT-PRINCIPAL is only trusted behind App Service"
                         " authentication, which is not enabled for this app (WEBSITE_AUTH_ENABLED)")
    try:
        principal = decode_principal(req.headers.get(HEADER), principal_id=req.headers.get(ID_HEADER))
    except InvalidPrincipal as exc:
        raise BadRequest("invalid_principal_header", str(exc)) from None
    return Caller(principal=principal, correlation_id=anonymous.correlation_id)


def _body(req: HttpIn, model: type[BaseModel]) -> BaseModel:
    if len(req.body) > MAX_BODY_BYTES:
        raise BadRequest("body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != JSON and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise BadRequest("unsupported_media_type", "send the body as application/json")
    _no_duplicate_keys(req.body)
    try:
        body = model.model_validate_json(req.body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    leaked = credential_fields(body)
    if leaked:       # a value where a name belongs: refused by path only, never decided on or audited
        where = ", ".join(leaked[:5])[:200]
        raise BadRequest("invalid_value", f"{where}: looks like a credential; send names (a Key Vault"
                         " secret's, a permission's), never secret values", [
                             ErrorDetail(field=f, code="invalid_value", message="looks like a credential (not shown)")
                             for f in leaked[:20]])
    return body


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook``: an object naming a key twice is refused (the JSON
    parsers behind the API would keep the last one, so what is checked could differ from what a
    reader of the body sees)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(k)
        out[k] = v
    return out


def shown_key(key: str) -> str:
    """A key sent, as an answer or a row may name it: never one that looks like a credential or
    holds characters that do not print."""
    if looks_like_credential(key) or not key.isprintable():
        return "<key not shown>"
    return key[:64]


def _no_duplicate_keys(raw: bytes) -> None:
    try:
        json.loads(raw, object_pairs_hook=reject_duplicates)
    except DuplicateKey as dup:
        key = shown_key(dup.key)
        raise BadRequest("malformed_json", f"duplicate key '{key}' in the body: send each field once", [
            ErrorDetail(field="$", code="malformed_json", message=f"duplicate key '{key}'")]) from None
    except (ValueError, RecursionError):      # not JSON: the model's parser says how (one message)
        return


def _flag(raw: str | None) -> bool:
    """A query boolean as the document declares it: absent, ``true`` or ``false``, nothing else."""
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise BadRequest("invalid_query", "remediate must be true or false",
                         [ErrorDetail(field="remediate", code="invalid_query", message="expected true or false")])
    return raw == "true"


def _correlation(headers: Mapping[str, str]) -> str:
    for name in _CORRELATION_HEADERS:
        value = headers.get(name)
        if value and len(value) <= 128 and value.isprintable():
            return value
    return ""


def http_in(method: str, body: bytes | None, headers: Mapping[str, str], params: Mapping[str, str]) -> HttpIn:
    return HttpIn(method=method or "", body=body or b"", headers={k.lower(): v for k, v in headers.items()},
                  params=dict(params))
