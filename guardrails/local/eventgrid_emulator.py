"""Event Grid custom topics (basic tier) on the local Azure emulator's server: host label
``eventgrid`` in the request log. Publishers reach a topic the way they reach a real one,
``https://<topic>.<region>-1.eventgrid.azure.net/api/events``, here
``emu.topic_endpoint(name)`` = ``{emu.base_url}/topics/<name>/api/events``::

    POST /topics/<name>/api/events?api-version=2018-01-01
    aeg-sas-key: <topic key>                     (or Authorization: Bearer <token>)
    Content-Type: application/cloudevents-batch+json; charset=utf-8   (CloudEvents 1.0 batch)
               or application/cloudevents+json (one CloudEvent)
               or application/json (Event Grid schema batch)
    -> 200, empty body

What the real topic checks, checked here: the api-version; auth (``aeg-sas-key`` equal to one
of the topic's keys, or a bearer token whose principal may send — a topic made with
``senders`` lists them; an ``aeg-sas-token`` is not emulated and is refused); the body is a
JSON array (an object for ``cloudevents+json``) of well-formed events of the schema the
content type names, every required attribute a non-empty string; at most 1 MB per request.
Failures: 400 BadRequest, 401 Unauthorized, 404 NotFound (no such topic), 413
RequestEntityTooLarge, shaped ``{"error": {"code", "message", "details": [{"code", "message"}]}}``.
Accepted events are kept in arrival order: ``emu.published_events(name)``. Faults apply
as to any route (``path_regex="/topics/<name>/"``); the request log never holds headers, so the
key is not recorded.
"""

from __future__ import annotations

import copy
import hmac
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from guardrails.local.arm_emulator_http import EmuRequest, EmuResponse

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

API_VERSION = "2018-01-01"
MAX_REQUEST_BYTES = 1_048_576
_CLOUD_REQUIRED = ("id", "source", "type", "specversion")
_EVENTGRID_REQUIRED = ("id", "subject", "eventType", "eventTime", "dataVersion")


@dataclass
class Topic:
    name: str
    keys: tuple[str, ...]
    senders: frozenset[str] | None       # object / app ids allowed with a token; None: any token
    events: list[dict] = field(default_factory=list)


class TopicStore:
    """Thread-safety left to the caller (the emulator's lock)."""

    def __init__(self) -> None:
        self._topics: dict[str, Topic] = {}

    def add(self, name: str, *, keys: Iterable[str] | None = None, senders: Iterable[str] | None = None) -> Topic:
        """A topic with two access keys (generated unless given), like a real one."""
        keys = tuple(keys) if keys is not None else (secrets.token_urlsafe(32), secrets.token_urlsafe(32))
        topic = Topic(name.lower(), keys, frozenset(s.lower() for s in senders) if senders is not None else None)
        self._topics[topic.name] = topic
        return topic

    def get(self, name: str) -> Topic | None:
        return self._topics.get(name.lower())

    def events(self, name: str) -> list[dict]:
        topic = self.get(name)
        return copy.deepcopy(topic.events) if topic else []


def _error(status: int, code: str, message: str, detail_code: str | None = None) -> EmuResponse:
    return EmuResponse(status, {"error": {"code": code, "message": message,
                                          "details": [{"code": detail_code or code, "message": message}]}})


def _auth(topic: Topic, req: EmuRequest) -> EmuResponse | None:
    key = req.header("aeg-sas-key")
    if key is not None:
        if any(hmac.compare_digest(key.encode(), k.encode()) for k in topic.keys):
            return None
        return _error(401, "Unauthorized", f"The request authorization key is not authorized for "
                      f"{topic.name.upper()}. This is due to the reason: The specified key is invalid.")
    if req.header("aeg-sas-token") is not None:
        return _error(401, "Unauthorized", "SAS tokens are not emulated: use aeg-sas-key or a bearer token.")
    if req.header("Authorization") is None:
        return _error(401, "Unauthorized", "Request must contain one of the following authorization "
                      "signature: aeg-sas-token, aeg-sas-key or Authorization bearer token.")
    principal = req.claims and (req.claims.get("oid") or req.claims.get("appid"))
    if not principal:
        return _error(401, "Unauthorized", "The access token is invalid.")
    ids = {str(req.claims.get(k)).lower() for k in ("oid", "appid") if req.claims.get(k)}
    if topic.senders is not None and not ids & topic.senders:
        return _error(401, "Unauthorized", "The principal associated with the access token presented with the "
                      f"incoming request does not have permission to send data to {topic.name.upper()}.")
    return None


def _validate(events: list, required: tuple[str, ...], schema: str) -> str | None:
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            return f"Event at index {i} is not a JSON object."
        for attr in required:
            if not isinstance(e.get(attr), str) or not e[attr].strip():
                return f"Required property '{attr}' was not set or is not a non-empty string (event {i}, {schema})."
        if schema == "cloudevents" and e["specversion"] != "1.0":
            return f"Unsupported CloudEvents specversion '{e['specversion']}' (event {i}); 1.0 is supported."
        if schema == "eventgrid" and "data" not in e:
            return f"Required property 'data' was not set (event {i}, eventgridschema)."
    return None


class EventGridTopicRoute:
    host = "eventgrid"

    def claims(self, req: EmuRequest) -> bool:
        return bool(req.segments) and req.segments[0].lower() == "topics"

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        seg = req.segments
        with emu.store.lock:
            topic = emu.topics.get(seg[1]) if len(seg) == 4 else None
        if topic is None or [s.lower() for s in seg[2:]] != ["api", "events"]:
            return _error(404, "NotFound", f"The topic endpoint '{req.path}' was not found.")
        if req.method != "POST":
            return _error(405, "MethodNotAllowed", f"'{req.method}' is not supported; events are POSTed.")
        if req.query.get("api-version") != API_VERSION:
            return _error(400, "BadRequest", f"The api-version '{req.query.get('api-version', '')}' is invalid; "
                          f"basic topics take {API_VERSION}.", "InvalidApiVersion")
        denied = _auth(topic, req)
        if denied is not None:
            return denied
        if len(req.body_bytes) > MAX_REQUEST_BYTES:
            return _error(413, "RequestEntityTooLarge", f"The maximum size ({MAX_REQUEST_BYTES}) has been exceeded.")
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if not req.body_bytes or not req.body_is_json:
            return _error(400, "BadRequest", "The request body is not valid JSON.", "InputJsonInvalid")
        body: Any = req.body
        if ctype == "application/cloudevents+json":
            body, schema = [body], "cloudevents"
        elif ctype == "application/cloudevents-batch+json":
            schema = "cloudevents"
        elif ctype == "application/json":
            schema = "eventgrid"
        else:
            return _error(400, "BadRequest", f"Content-Type '{ctype}' is not supported for this topic.",
                          "UnsupportedContentType")
        if not isinstance(body, list) or not body:
            return _error(400, "BadRequest", "The request body must be a non-empty JSON array of events.",
                          "InputJsonInvalid")
        problem = _validate(body, _CLOUD_REQUIRED if schema == "cloudevents" else _EVENTGRID_REQUIRED, schema)
        if problem is not None:
            return _error(400, "BadRequest", problem, "InputJsonInvalid")
        with emu.store.lock:
            topic.events.extend(copy.deepcopy(body))
        return EmuResponse(200, None)
