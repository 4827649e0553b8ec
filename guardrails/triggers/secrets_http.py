"""``POST /api/secrets/exposed`` — a secret scanner or an incident responder reports a leak.

Body: ``{"vault": "<vault name>", "name": "<secret name>", "version": "<optional>", "source": "<who found it>",
"report_id": "<optional>"}``. The guardrail rotates at once and disables the exposed version (and
every older enabled one). ``report_id`` (a UUID the reporter makes once per finding) makes a retry
the same report: HTTP has no redelivery, so a report answered 503 after its rotation (older
versions left enabled, the audit unreachable) and sent again without a version would otherwise be
newer than the rotated version and rotate it again, revoking the value just handed out; with the
same ``report_id`` the retry finishes what is left instead. Without one each report is a finding
of its own (a second rotation errs towards the secret).
Answers: 200 with the decision; 400 with a reason for bad input; 404 for an unknown secret
(``unknown_secret``) or a version the secret does not have (``unknown_version``); 422 when the
exposed secret was NOT rotated, the decision audited and the owner told (rotate it by hand):
``not_governed`` (no secrets policy governs the vault), ``not_enforced`` (only an ``audit``-mode
policy governs the secret), ``certificate_managed`` (a certificate's backing secret: re-issue the
certificate), ``circuit_open`` (the vault's breaker is open), ``not_rotated`` (no secret reference,
or a ``notify-only`` one); 503 with a correlation id when a dependency is down (a decision that
ended ``failed``, Key Vault refusing or not answering: its ``decision_id`` and the row's reason,
``forbidden``, ``throttled`` …). Never a 2xx a scanner would take as handled unless the secret
was rotated (or already was). Never echoes a secret value.

Every answer is one audit row (event type ``Guardrails.SecretExposed``) named by ``decision_id``
(and, for errors, ``error.correlation_id``): a refused report is an ``invalid`` row with its
reason code and the caller when known, never the body's values; a report for a vault no policy
governs is an ``ignored`` row with ``notify`` set, logged at ERROR.

A credential sent as ``vault``, ``name`` or ``version`` (a known credential format: ``classify``;
these are names with a grammar, so ``StorageAccountConnectionStringForProduction2024`` is a
secret's name, reported and rotated like any other), or a credential-looking field name
(``looks_like_free_text_credential``: any key but the four), is refused (400 ``invalid_value``)
naming the field, never the value, before anything else is looked at. A key sent twice is
``malformed_json``.

The caller is recorded on the audit row when App Service authentication vouches for it
(``X-MS-CLIENT-PRINCIPAL``, trusted only with ``WEBSITE_AUTH_ENABLED``, as the check API does);
``source`` is in the row's message, unless it looks like a credential (a scanner's finding pasted
into it; ``looks_like_free_text_credential``: the keys without a prefix too, an Azure OpenAI key's
32 hexadecimal digits, a Service Bus key's base64): then it is replaced, and the report still acted
on. A report naming a version that is no longer current, after the guardrail already rotated for
an exposure, is answered ``compliant`` without a second rotation.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import azure.functions as func

from ..bootstrap import get_service
from ..errors import GuardrailsError, IdempotencyError, StoreError
from ..logs import emit
from ..model.decision import Actor, AuditRow
from ..model.keyvault_events import SECRET_EXPOSED, has_unprintable
from ..service import DeliveryFailed
from ..secrets.credentials import classify, looks_like_credential, looks_like_free_text_credential

bp = func.Blueprint()
log = logging.getLogger("guardrails")
MAX_BODY = 4096
# ``\Z``, not ``$``: ``$`` also matches before a final line break (``"kv-ml-prod\n"``)
_VAULT = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]\Z")
_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}\Z")
_VERSION = re.compile(r"^[A-Za-z0-9]{1,64}\Z")
# a UUID, in any letter case, with or without braces: random per finding, so no two reporters'
# reports share one by accident (a report taken for another would not rotate)
_REPORT_ID = re.compile(r"^(?:(?:[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12})"
                        r"|\{(?:[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12})\})\Z")
_FIELDS = {"vault", "name", "version", "source", "report_id"}
SOURCE_HIDDEN = "<source not shown: it looks like a credential>"
KEY_HIDDEN = "<key not shown>"
NOT_GOVERNED = ("no_policy", "not_covered")       # the row's reasons when nothing governs the vault


@dataclass(frozen=True)
class Rejection:
    """A report refused before it reaches the guardrail: ``status`` (400, 413), a stable ``reason``
    code and a message that names fields, never their values."""

    status: int
    reason: str
    message: str


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__("duplicate key")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:           # json.loads would keep the last: what is acted on must be unambiguous
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _shown(key: str) -> str:
    """A key as an answer or a row may name it: never one that looks like a credential or that
    holds characters that do not print."""
    hidden = looks_like_free_text_credential(key) or has_unprintable(key) or not key.isprintable()
    return KEY_HIDDEN if hidden else key[:30]


def _answer(status: int, body: dict) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _bad(reason: str, message: str) -> Rejection:
    return Rejection(400, reason, message)


def _parse(req: func.HttpRequest) -> dict | Rejection:
    body = req.get_body() or b""
    if len(body) > MAX_BODY:
        return Rejection(413, "body_too_large", f"body over {MAX_BODY} bytes")
    try:
        data = json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKey as dup:
        return _bad("malformed_json", f"duplicate key {_shown(dup.key)!r}: send each field once")
    except (ValueError, RecursionError):
        return _bad("malformed_json", "body is not JSON (or nested too deeply)")
    if not isinstance(data, dict):
        return _bad("wrong_type", "body must be a JSON object")
    # before anything else: a credential sent where a name belongs is refused by field, never echoed
    if any(looks_like_free_text_credential(k) for k in data):
        return _bad("invalid_value", "a field's name looks like a credential (not shown); send only vault, name,"
                    " version, source and report_id, never a secret value")
    for key in ("vault", "name", "version"):      # names: a known credential format only (not a long name)
        v = data.get(key)
        if isinstance(v, str) and classify(v) is not None:
            return _bad("invalid_value", f"'{key}' looks like a credential (not shown): send the secret's {key},"
                        " never a secret value")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        return _bad("unknown_field", f"unknown field(s): {', '.join(_shown(k) for k in unknown)}")
    for key, rx, required in (("vault", _VAULT, True), ("name", _NAME, True), ("version", _VERSION, False)):
        v = data.get(key)
        if v is None and not required:
            continue
        if not isinstance(v, str):
            return _bad("wrong_type" if v is not None else "missing_field", f"'{key}' must be a string")
        if not rx.match(v):
            return _bad("invalid_value", f"'{key}' is not a valid Key Vault {key}")
    report_id = data.get("report_id")
    if report_id is not None and (not isinstance(report_id, str) or not _REPORT_ID.match(report_id)):
        return _bad("invalid_value", "'report_id' must be a UUID (made once per finding; send the same one when "
                    "retrying that report)")
    source = data.get("source", "unspecified")
    if (not isinstance(source, str) or not 1 <= len(source.strip()) <= 200 or has_unprintable(source)
            or any("\ud800" <= c <= "\udfff" for c in source)):        # a lone surrogate cannot be stored
        return _bad("invalid_value", "'source' must be 1-200 printable characters (no control, format or"
                    " line separator characters)")
    source = source.strip()
    if looks_like_free_text_credential(source):
        # a scanner's finding pasted into ``source``: the report is still acted on (refusing it would
        # leave the leak open), but the text is never recorded nor echoed
        source = SOURCE_HIDDEN
    return {"vault": data["vault"], "name": data["name"], "version": data.get("version"), "source": source,
            "report_id": report_id.strip("{}").replace("-", "").lower() if report_id else None}


def parse_exposure(req: func.HttpRequest) -> dict | func.HttpResponse:
    """The report's fields, or the answer refusing it (not audited: ``secrets_exposed`` audits)."""
    parsed = _parse(req)
    if isinstance(parsed, Rejection):
        return _answer(parsed.status, {"error": {"reason": parsed.reason, "message": parsed.message}})
    return parsed


def _caller(req: func.HttpRequest) -> Actor | Rejection:
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


def caller_actor(req: func.HttpRequest) -> Actor | func.HttpResponse:
    """The verified caller, as the check API reads it: ``X-MS-CLIENT-PRINCIPAL`` only behind App
    Service authentication; an empty ``Actor`` when there is none; 400 for a header that cannot be
    trusted or read."""
    actor = _caller(req)
    if isinstance(actor, Rejection):
        return _answer(actor.status, {"error": {"reason": actor.reason, "message": actor.message}})
    return actor


def _object_id(vault: str, name: str) -> str:
    """The audit's resource id of a secret, as the event path writes it (``service.kv_object_id``)."""
    return f"https://{vault.lower()}.vault.azure.net/secrets/{name}"


def _write(svc, row: AuditRow, started: float) -> None:
    """Audit a row this function decided itself (a refusal, an ungoverned vault). Raises
    ``GuardrailsError`` (``StoreError``) when the audit table cannot take it."""
    row.time = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    row.duration_ms = round((time.perf_counter() - started) * 1000.0, 3)
    svc.audit.write(row)
    publisher = getattr(svc, "publisher", None)
    if publisher is not None:          # never raises; ``invalid`` and ``ignored`` are not published
        publisher.publish(row)


def _unavailable(did: str, exc: GuardrailsError, event: str) -> func.HttpResponse:
    emit(log, logging.ERROR, event, correlation_id=did, error=type(exc).__name__, reason=exc.reason)
    return _answer(503, {"error": {"reason": "unavailable", "correlation_id": did}})


def _refuse(did: str, started: float, actor: Actor, rej: Rejection) -> func.HttpResponse:
    """One ``invalid`` row per refused report (no value of the body in it), then the answer."""
    row = AuditRow(event_id=f"exposure-{did}", event_type=SECRET_EXPOSED, resource_id="", verdict="invalid",
                   reason=rej.reason, message=f"exposure report refused: {rej.message}"[:2000], actor=actor,
                   delivery_id=did)
    try:
        _write(get_service(), row, started)
    except GuardrailsError as exc:
        return _unavailable(did, exc, "exposure_report_audit_failed")
    emit(log, logging.WARNING, "exposure_report_refused", correlation_id=did, reason=rej.reason)
    return _answer(rej.status, {"error": {"reason": rej.reason, "message": rej.message, "correlation_id": did},
                                "decision_id": did})


def _ungoverned(svc, vault: str) -> tuple[str, str] | None:
    """(reason, why) when nothing would act on an exposure in ``vault``, as the event path decides
    it (``service._handle_keyvault_event``); None otherwise, or when the policies cannot be read
    (the report then takes the event path, which audits that failure)."""
    if getattr(svc, "secrets", None) is None:
        return "not_covered", "secret guardrail not configured"
    try:
        policies = getattr(svc.policies.get(), "secret_policies", ())
    except GuardrailsError:
        return None
    if any(p.mode != "off" and p.governs(vault) for p in policies):
        return None
    return "no_policy", f"no secrets policy governs vault {vault}"


def _failed(did: str, exc: DeliveryFailed) -> func.HttpResponse:
    """A report the service audited ``failed`` (``DeliveryFailed``, under ``did``): 503 naming that
    row and its reason (``forbidden``: the guardrails' identity lacks a role on the vault;
    ``network_forbidden``, ``throttled``, ``transient`` …), and how to retry it as the same report."""
    emit(log, logging.ERROR, "exposure_report_failed", correlation_id=did, reason=exc.reason)
    return _answer(503, {"error": {"reason": exc.reason, "correlation_id": did,
                                   "message": "not finished; send the same report again, with the same report_id "
                                              "(or naming the exposed version), so it finishes without a second "
                                              "rotation"}, "decision_id": did})


def _first_decision(svc, duplicate: AuditRow) -> AuditRow | None:
    """The row that decided the report ``duplicate`` repeats (its event id: the same report_id), the
    latest if several did (a ``failed`` attempt and the retry that finished it); None when no such
    row can be read (the audit index unreadable, or the row gone past retention)."""
    try:
        rows = svc.audit.rows_of_event(duplicate.resource_id, duplicate.event_id)
    except GuardrailsError:
        return None
    decided = [r for r in rows if r.event_id == duplicate.event_id and r.verdict != "duplicate"]
    return decided[-1] if decided else None


def _not_rotated_answer(row: AuditRow) -> func.HttpResponse:
    """An exposure the guardrail decided and audited without rotating anything (its row is a
    notifying ``violation``: audit mode, a certificate's secret, the breaker, no reference, a
    ``notify-only`` one): 422 naming why, never a 2xx a scanner would take as handled."""
    did = row.delivery_id
    return _answer(422, {"error": {"reason": row.reason or "not_rotated", "message": row.message,
                                   "correlation_id": did}, "decision_id": did, "verdict": row.verdict,
                         "actions": [{"rule": v.rule, "outcome": v.outcome} for v in row.violations]})


def _not_governed_answer(did: str, parsed: dict, why: str) -> func.HttpResponse:
    message = (f"{why}: {parsed['vault']}/{parsed['name']} was NOT rotated; rotate it by hand (and add a secret "
               f"reference for it to a secrets policy)")
    return _answer(422, {"error": {"reason": "not_governed", "message": message, "correlation_id": did},
                         "decision_id": did})


def _not_governed(svc, did: str, started: float, actor: Actor, parsed: dict, reason: str,
                  why: str) -> func.HttpResponse:
    """An exposure nothing will act on: never a 2xx (a scanner would take it as handled); the row
    notifies and the log line is an ERROR."""
    reported = f" (reported by {parsed['source']})"
    row = AuditRow(event_id=f"exposure-{did}", event_type=SECRET_EXPOSED,
                   resource_id=_object_id(parsed["vault"], parsed["name"]), verdict="ignored", reason=reason,
                   message=f"{why}: the exposed secret was NOT rotated; rotate it by hand{reported}"[:2000],
                   notify=True, actor=actor, delivery_id=did)
    try:
        _write(svc, row, started)
    except GuardrailsError as exc:
        return _unavailable(did, exc, "exposure_report_audit_failed")
    emit(log, logging.ERROR, "exposure_not_governed", correlation_id=did, reason=reason, vault=parsed["vault"],
         object=parsed["name"])
    return _not_governed_answer(did, parsed, why)


@bp.function_name("secrets_exposed")
@bp.route(route="secrets/exposed", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def secrets_exposed(req: func.HttpRequest) -> func.HttpResponse:
    started = time.perf_counter()
    correlation = uuid.uuid4().hex
    actor = _caller(req)
    if isinstance(actor, Rejection):
        return _refuse(correlation, started, Actor(), actor)
    parsed = _parse(req)
    if isinstance(parsed, Rejection):
        return _refuse(correlation, started, actor, parsed)
    try:
        svc = get_service()
    except GuardrailsError as exc:
        return _unavailable(correlation, exc, "exposure_report_unavailable")
    ungoverned = _ungoverned(svc, parsed["vault"])
    if ungoverned is not None:
        return _not_governed(svc, correlation, started, actor, parsed, *ungoverned)
    try:
        # the service decides under this id: every answer below, an error's too, names the row
        row = svc.report_exposure(**parsed, actor=actor, delivery_id=correlation)
    except (StoreError, IdempotencyError) as exc:
        emit(log, logging.ERROR, "exposure_report_unavailable", correlation_id=correlation, error=type(exc).__name__)
        return _answer(503, {"error": {"reason": "unavailable", "correlation_id": correlation}})
    except DeliveryFailed as exc:                # audited ``failed`` under ``correlation``; may be retried
        return _failed(correlation, exc)
    except GuardrailsError as exc:
        emit(log, logging.ERROR, "exposure_report_failed", correlation_id=correlation, reason=exc.reason)
        return _answer(503, {"error": {"reason": exc.reason, "correlation_id": correlation}})
    if row.verdict == "duplicate":
        # a report sent again with its report_id after its first attempt was decided (that answer
        # lost): answered as that decision was, never a 2xx for an exposure left unrotated
        first = _first_decision(svc, row)
        if first is None:
            return _answer(422, {"error": {"reason": "already_decided", "message":
                                           f"this report was decided before ({row.message}), and that decision's "
                                           "row cannot be read now: see the audit table", "correlation_id":
                                           row.delivery_id}, "decision_id": row.delivery_id})
        row = first
    did = row.delivery_id
    if row.verdict == "invalid":       # the report passed the checks above but not the event's own: never a 200
        return _answer(400, {"error": {"reason": row.reason or "invalid_value", "message": row.message,
                                       "correlation_id": did}, "decision_id": did})
    if row.verdict == "ignored" and row.reason in NOT_GOVERNED:
        # the policies changed between the check above and the decision: still never a 2xx (the
        # service's row already notifies and logged the ERROR; its message's advice is ours too)
        return _not_governed_answer(did, parsed, row.message.removesuffix(": rotate it by hand"))
    if row.reason == "secret_not_found":
        return _answer(404, {"error": {"reason": "unknown_secret", "message":
                                       f"no secret {parsed['name']} in vault {parsed['vault']}",
                                       "correlation_id": did}, "decision_id": did})
    if row.reason == "version_not_found":
        named = "<not shown: it looks like a credential>" if looks_like_credential(parsed["version"] or "") \
            else parsed["version"]                  # as the row says it (``secret_guardrail``)
        return _answer(404, {"error": {"reason": "unknown_version", "message":
                                       f"secret {parsed['name']} in vault {parsed['vault']} has no version "
                                       f"{named}: nothing rotated; report the exposed version, or none "
                                       f"for the current one", "correlation_id": did}, "decision_id": did})
    if row.verdict == "violation" and not any(v.outcome == "remediated" for v in row.violations):
        return _not_rotated_answer(row)           # nothing rotated: the owner must act
    return _answer(200, {"verdict": row.verdict, "reason": row.reason, "decision_id": did,
                         "message": row.message,
                         "actions": [{"rule": v.rule, "outcome": v.outcome} for v in row.violations]})
