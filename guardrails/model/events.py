"""Events: the delivery envelope first, then the ARM resource-event payload.

``parse_envelope`` accepts one event as a mapping in the Event Grid schema or CloudEvents 1.0
(``specVersion`` with a capital V is tolerated, as in a published sample) and leaves ``data``
untouched. ``parse_resource_event`` turns the ``data`` of a ``Microsoft.Resources.*`` event into
a typed, read-only view. Every rejection is an ``InvalidEvent`` whose ``reason`` is one of:

    not_an_object            the event is not a JSON object
    missing_field            a required field is absent, null or empty
    wrong_type               a field has the wrong JSON type (or id/type longer than 256)
    invalid_value            a field has the right type but an unusable value (time, specversion,
                             control characters in id/type)
    missing_data             ``data`` is absent or null
    oversized                ``data`` serialises to more than MAX_DATA_BYTES
    invalid_resource_id      ``data.resourceUri`` is not a legal ARM id (``InvalidArmId``)
    unsupported_event_type   not a ``Microsoft.Resources.Resource*`` event

Decisions use ``resource_id`` (from ``data.resourceUri``) and ``event_type`` only: ``subject``
and ``status`` are kept for the record but published samples get them wrong.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from guardrails.errors import InvalidArmId, InvalidEvent
from guardrails.model.arm_id import ArmId, parse_arm_id
from guardrails.model.decision import Actor

RESOURCE_EVENT_TYPES = frozenset({
    "Microsoft.Resources.ResourceWriteSuccess",
    "Microsoft.Resources.ResourceWriteFailure",
    "Microsoft.Resources.ResourceWriteCancel",
    "Microsoft.Resources.ResourceDeleteSuccess",
    "Microsoft.Resources.ResourceDeleteFailure",
    "Microsoft.Resources.ResourceDeleteCancel",
    "Microsoft.Resources.ResourceActionSuccess",
    "Microsoft.Resources.ResourceActionFailure",
    "Microsoft.Resources.ResourceActionCancel",
})
WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
MAX_DATA_BYTES = 64 * 1024
MAX_ID_LENGTH = 256
_MAX_TIME_LENGTH = 64
_MAX_CLAIM_LENGTH = 256

CLAIM_OBJECT_ID = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
CLAIM_APP_ID = ("appid", "azp")
CLAIM_UPN = ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn")
CLAIM_NAME = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"

_GUID_DASHED = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GUID_PLAIN = re.compile(r"[0-9a-fA-F]{32}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _show(value: str, limit: int = 80) -> str:
    """A refused value as an error message (an audit row, an HTTP 400, a log line) shows it: cut,
    and never when it is shaped like a credential (a token pasted where an id belongs)."""
    from guardrails.secrets.credentials import looks_like_credential

    if looks_like_credential(value):
        return f"<{len(value)} characters not shown: they look like a credential>"
    return repr(value[:limit] + "…") if len(value) > limit else repr(value)


def normalize_guid(value: str | None) -> str | None:
    """Dashed or dashless GUID (any case) → lower-case dashed; anything else unchanged."""
    if not isinstance(value, str):
        return value
    if _GUID_DASHED.fullmatch(value):
        return value.lower()
    if _GUID_PLAIN.fullmatch(value):
        v = value.lower()
        return f"{v[:8]}-{v[8:12]}-{v[12:16]}-{v[16:20]}-{v[20:]}"
    return value


# -- envelope ---------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class Envelope:
    schema: Literal["eventgrid", "cloudevents"]
    id: str
    event_type: str
    subject: str | None
    source: str | None          # Event Grid ``topic`` or CloudEvents ``source``
    time: datetime | None       # tz-aware
    data: Any                   # raw, not yet validated

    def __repr__(self) -> str:
        return (f"Envelope(schema={self.schema!r}, id={_show(self.id)}, "
                f"event_type={_show(self.event_type)}, data=<redacted>)")

    __str__ = __repr__


def has_control(value: str) -> bool:
    """Whether ``value`` holds a character of Unicode category C (control, format, surrogate,
    private use, unassigned). ``isprintable`` is False for every one of them (and for separators
    other than the space), so a printable string is answered without a loop over its characters."""
    return not value.isprintable() and any(unicodedata.category(c)[0] == "C" for c in value)


def _required_str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if value is None or value == "":
        raise InvalidEvent(f"event field {key!r} is missing or empty", reason="missing_field")
    if not isinstance(value, str):
        raise InvalidEvent(f"event field {key!r} must be a string, got {type(value).__name__}",
                           reason="wrong_type")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(f"event field {key!r} is longer than {MAX_ID_LENGTH} characters",
                           reason="wrong_type")
    if has_control(value):
        raise InvalidEvent(f"event field {key!r} contains control characters: {_show(value)}",
                           reason="invalid_value")
    return value


def _optional_str(raw: Mapping[str, Any], key: str, where: str = "event field") -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{where} {key!r} must be a string, got {type(value).__name__}",
                           reason="wrong_type")
    return value


def _parse_time(raw: Mapping[str, Any], key: str) -> datetime | None:
    text = _optional_str(raw, key)
    if text is None:
        return None
    try:
        if len(text) > _MAX_TIME_LENGTH:
            raise ValueError
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEvent(f"event field {key!r} is not an ISO 8601 time: {_show(text)}",
                           reason="invalid_value") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def type_field(raw: Mapping[str, Any]) -> str:
    """The field ``parse_envelope`` reads a delivered event's type from: ``type`` (CloudEvents:
    ``specversion`` / ``specVersion`` present, or ``type`` without ``eventType``), else ``eventType``."""
    cloud = "specversion" in raw or "specVersion" in raw or ("type" in raw and "eventType" not in raw)
    return "type" if cloud else "eventType"


def parse_envelope(raw: Any) -> Envelope:
    """Validate one delivered event (a mapping) in either schema; ``data`` is left raw."""
    if not isinstance(raw, Mapping):
        raise InvalidEvent(f"an event must be a JSON object, got {type(raw).__name__}",
                           reason="not_an_object")
    spec_key = next((k for k in ("specversion", "specVersion") if k in raw), None)
    if type_field(raw) == "type":
        if spec_key is None:
            raise InvalidEvent("CloudEvents field 'specversion' is missing", reason="missing_field")
        spec = raw[spec_key]
        if not isinstance(spec, str):
            raise InvalidEvent(f"CloudEvents field {spec_key!r} must be a string, got "
                               f"{type(spec).__name__}", reason="wrong_type")
        if spec != "1.0":
            raise InvalidEvent(f"CloudEvents {spec_key!r} {_show(spec)} is not supported (only '1.0')",
                               reason="invalid_value")
        return Envelope(
            schema="cloudevents",
            id=_required_str(raw, "id"),
            event_type=_required_str(raw, "type"),
            subject=_optional_str(raw, "subject"),
            source=_optional_str(raw, "source"),
            time=_parse_time(raw, "time"),
            data=raw.get("data"),
        )
    if "eventType" not in raw:
        raise InvalidEvent("event has neither 'eventType' (Event Grid) nor 'type' (CloudEvents)",
                           reason="missing_field")
    return Envelope(
        schema="eventgrid",
        id=_required_str(raw, "id"),
        event_type=_required_str(raw, "eventType"),
        subject=_optional_str(raw, "subject"),
        source=_optional_str(raw, "topic"),
        time=_parse_time(raw, "eventTime"),
        data=raw.get("data"),
    )


# -- ARM resource events ----------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class ResourceEvent:
    """Typed, read-only view of a ``Microsoft.Resources.Resource*`` event."""

    envelope: Envelope
    event_id: str
    event_type: str
    resource_id: ArmId          # from data.resourceUri: the only id trusted
    operation_name: str | None
    status: str | None          # kept for the record, never used to decide
    subscription_id: str | None
    tenant_id: str | None
    correlation_id: str | None
    actor: Actor
    authorization_action: str | None

    @property
    def is_write_success(self) -> bool:
        return self.event_type == WRITE_SUCCESS

    def __repr__(self) -> str:
        return (f"ResourceEvent(id={_show(self.event_id)}, type={self.event_type!r}, "
                f"resource_id={_show(str(self.resource_id), 300)})")

    __str__ = __repr__


def _mapping_field(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"data.{key} must be an object, got {type(value).__name__}",
                           reason="wrong_type")
    return value


def _get_ci(mapping: Mapping[str, Any], key: str) -> Any:
    """``mapping[key]``, else the first key equal to ``key`` ignoring case (PascalCase deliveries)."""
    if key in mapping:
        return mapping[key]
    folded = key.casefold()
    for k, v in mapping.items():
        if isinstance(k, str) and k.casefold() == folded:
            return v
    return None


def _claim(claims: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """First usable claim among ``keys``; unusable values (non-string, empty, huge, control
    characters) count as absent: identity is recorded, never decided on."""
    for key in keys:
        value = claims.get(key)
        if (isinstance(value, str) and value.strip() and len(value) <= _MAX_CLAIM_LENGTH
                and not has_control(value)):
            return value.strip()
    return None


def _actor(claims: Mapping[str, Any]) -> Actor:
    upn = _claim(claims, CLAIM_UPN)
    if upn is None:
        name = _claim(claims, (CLAIM_NAME,))
        upn = name if name is not None and _EMAIL.fullmatch(name) else None
    return Actor(
        object_id=normalize_guid(_claim(claims, CLAIM_OBJECT_ID)),
        app_id=normalize_guid(_claim(claims, CLAIM_APP_ID)),
        upn=upn,
    )


def _data_size(data: Mapping[str, Any]) -> int:
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        raise InvalidEvent("data is not JSON-serialisable", reason="wrong_type") from None
    return len(text.encode("utf-8", "surrogatepass"))


def data_object(env: Envelope, types: Any, family: str) -> Mapping[str, Any]:
    """The checks every event family starts with: a type of ``types``, then ``data`` present, an
    object, at most ``MAX_DATA_BYTES`` serialised. Returns the data."""
    if env.event_type not in types:
        raise InvalidEvent(f"event type {_show(env.event_type)} is not {family}", reason="unsupported_event_type")
    data = env.data
    if data is None:
        raise InvalidEvent("event has no data", reason="missing_data")
    if not isinstance(data, Mapping):
        raise InvalidEvent(f"data must be an object, got {type(data).__name__}", reason="wrong_type")
    size = _data_size(data)
    if size > MAX_DATA_BYTES:
        raise InvalidEvent(f"data is {size} bytes, more than {MAX_DATA_BYTES}", reason="oversized")
    return data


def parse_resource_event(env: Envelope) -> ResourceEvent:
    """Validate the data of an ARM resource event and wrap it in a ``ResourceEvent``."""
    data = data_object(env, RESOURCE_EVENT_TYPES, "an ARM resource event")

    uri = data.get("resourceUri")
    if uri is None:
        raise InvalidEvent("data.resourceUri is missing", reason="missing_field")
    if not isinstance(uri, str):
        raise InvalidEvent(f"data.resourceUri must be a string, got {type(uri).__name__}",
                           reason="wrong_type")
    try:
        resource_id = parse_arm_id(uri)
    except InvalidArmId as exc:
        raise InvalidArmId(f"data.resourceUri: {exc}") from None

    claims = _mapping_field(data, "claims")
    authorization = _mapping_field(data, "authorization")
    action = _get_ci(authorization, "action")
    if action is not None and not isinstance(action, str):
        raise InvalidEvent(f"data.authorization.action must be a string, got {type(action).__name__}",
                           reason="wrong_type")
    fields = {k: _optional_str(data, k, "data field")
              for k in ("operationName", "status", "correlationId", "subscriptionId", "tenantId")}

    return ResourceEvent(
        envelope=env,
        event_id=env.id,
        event_type=env.event_type,
        resource_id=resource_id,
        operation_name=fields["operationName"],
        status=fields["status"],
        subscription_id=normalize_guid(fields["subscriptionId"]),
        tenant_id=normalize_guid(fields["tenantId"]),
        correlation_id=fields["correlationId"],
        actor=_actor(claims),
        authorization_action=action,
    )
