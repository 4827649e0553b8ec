"""Dead-lettered Event Grid deliveries, as Event Grid writes them (pure: no I/O).

Event Grid gives up on a delivery after 30 attempts or 24 h (at once on some 4xx, e.g. 400 or 413) and, as
``infra/`` configures every event subscription, writes it to the dead-letter container with its own
identity: one blob per batch, named ``[<TOPIC>/]<EVENT SUBSCRIPTION>/<y>/<m>/<d>/<h>/<guid>.json``
(upper-cased names, hour not zero-padded), holding a JSON array of the events, each with Event
Grid's delivery fields added at the top level:

    Event Grid schema   deadLetterReason, deliveryAttempts, lastDeliveryOutcome, publishTime,
                        lastDeliveryAttemptTime, lastHttpStatusCode
    CloudEvents 1.0     the same names in lower case

``parse_blob`` turns a blob into the events exactly as they were delivered (those fields removed),
each with its delivery record, and names what it could not use; ``guardrails.replay`` hands each
event to the same ``handle_event`` the trigger functions call.

Event Grid is not the only writer of the container (the storage account's owners, any identity with
a blob data role on it), so a blob is trusted only as far as Event Grid could have written it:
under one of the event subscriptions ``infra/modules/topic.bicep`` deploys (``DEAD_LETTER_SUBSCRIPTIONS``,
matched on the subscription segment: topic names vary per deployment), holding only events of a type
that subscription delivers (``deliverable_types``). ``not_deliverable`` / ``undeliverable_events``
say why a blob is not (the replay audits it ``invalid``, ``not_deliverable_here``, and acts on
nothing in it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from .model.events import type_field

DELIVERY_FIELDS = frozenset(f.lower() for f in (
    "deadLetterReason", "deliveryAttempts", "lastDeliveryOutcome", "publishTime", "lastDeliveryAttemptTime",
    "lastHttpStatusCode"))
MAX_BLOB_BYTES = 16 * 1024 * 1024      # Event Grid events are <= 1 MB each; a blob is one delivery batch
# the event subscriptions infra/modules/topic.bicep deploys: 'guardrails-' + the function's name with
# '_' as '-' (Event Grid allows letters, digits and hyphens), the deletions' twin '-deletes'; an ML
# workspace's topic delivers to ``resource_events`` too, under the same name
RESOURCE_SUBSCRIPTION = "guardrails-resource-events"
DELETES_SUBSCRIPTION = "guardrails-resource-events-deletes"
KEYVAULT_SUBSCRIPTION = "guardrails-keyvault-events"
DEAD_LETTER_SUBSCRIPTIONS = (RESOURCE_SUBSCRIPTION, DELETES_SUBSCRIPTION, KEYVAULT_SUBSCRIPTION)
_HOUR_PATH = re.compile(r"^(?:(?P<topic>[^/]+)/)?(?P<subscription>[^/]+)/(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})/"
                        r"(?P<h>\d{1,2})/[^/]+\.json$")


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event: ``envelope`` as it was delivered, and why Event Grid gave up."""

    blob: str
    index: int
    envelope: Any                    # the delivered event: a dict, or whatever the item was (audited invalid)
    reason: str = ""                 # deadLetterReason, e.g. MaxDeliveryAttemptsExceeded, TimeToLiveExceeded
    attempts: int | None = None
    last_outcome: str = ""           # lastDeliveryOutcome, e.g. Probation, NotFound, TimedOut
    last_status: int | None = None   # lastHttpStatusCode
    publish_time: str = ""

    @property
    def event_id(self) -> str:
        v = self.envelope.get("id") if isinstance(self.envelope, dict) else None
        return v if isinstance(v, str) else ""

    @property
    def event_type(self) -> str:
        """The type ``handle_event`` handles it as: read from the field ``model.events.parse_envelope``
        reads (``type`` for CloudEvents, else ``eventType``), so the gate judges what is acted on."""
        v = self.envelope.get(type_field(self.envelope)) if isinstance(self.envelope, dict) else None
        return v if isinstance(v, str) else ""

    @property
    def two_types(self) -> bool:
        """Both ``eventType`` and ``type``, with different values: Event Grid writes one of them (its
        schema's), so the item is not what Event Grid delivered."""
        env = self.envelope
        return isinstance(env, dict) and "eventType" in env and "type" in env and env["eventType"] != env["type"]


@dataclass
class ParsedBlob:
    blob: str
    events: list[DeadLetter] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)    # items that are not events, by position; no content
    unreadable: str = ""                                  # the whole blob could not be used: why

    @property
    def subscription(self) -> str:
        """The event subscription the blob's events were meant for (lower case), or ""."""
        return subscription_of(self.blob)


@lru_cache(maxsize=1)
def deliverable_types() -> dict[str, frozenset[str]]:
    """Each deployed event subscription (lower case) and the event types (lower case) its filter's
    ``includedEventTypes`` lets through, from the lists ``infra/`` is generated from
    (``guardrails.permissions``): never a ``Guardrails.*`` type, which only the guardrails write."""
    from .permissions import DELETE_EVENT_TYPE, RESOURCE_EVENT_TYPES_DELIVERED, keyvault_event_types, ml_event_types

    def low(types: Iterable[str]) -> frozenset[str]:
        return frozenset(t.lower() for t in types)
    return {RESOURCE_SUBSCRIPTION: low([*RESOURCE_EVENT_TYPES_DELIVERED, *ml_event_types()]),
            DELETES_SUBSCRIPTION: low([DELETE_EVENT_TYPE]),
            KEYVAULT_SUBSCRIPTION: low(keyvault_event_types())}


def subscription_of(blob: str) -> str:
    """The event subscription segment of a dead-letter blob's name (lower case), or "" when the name
    is not ``[<TOPIC>/]<EVENT SUBSCRIPTION>/<y>/<m>/<d>/<h>/<name>.json``."""
    m = _HOUR_PATH.match(blob)
    return m.group("subscription").lower() if m else ""


def not_deliverable(blob: str) -> str:
    """Why Event Grid cannot have written ``blob`` for a guardrails event subscription, judged by its
    name alone (before it is downloaded); "" when it can. Names no content."""
    sub = subscription_of(blob)
    if not sub:
        return "its name is not <TOPIC>/<EVENT SUBSCRIPTION>/<y>/<m>/<d>/<h>/<guid>.json"
    if sub not in deliverable_types():
        return (f"it is not under a guardrails event subscription ({', '.join(s.upper() for s in DEAD_LETTER_SUBSCRIPTIONS)}"
                ")")
    return ""


def undeliverable_events(parsed: "ParsedBlob") -> str:
    """Why ``parsed`` holds an event its subscription never delivers (the first one, by position and
    subscription: its type is content and is not named); "" when every event object is one it
    delivers. An event's type is the one ``handle_event`` reads (``DeadLetter.event_type``); an
    item with two different types (``eventType`` and ``type``) is never Event Grid's. Items that are
    not objects pass: ``handle_event`` audits them ``invalid`` and acts on nothing."""
    types = deliverable_types().get(parsed.subscription)
    if types is None:
        return not_deliverable(parsed.blob) or "its event subscription delivers nothing"
    for dl in parsed.events:
        if dl.two_types:
            return f"item {dl.index} has both 'eventType' and 'type', different: Event Grid writes one"
        if isinstance(dl.envelope, dict) and dl.event_type.lower() not in types:
            return f"item {dl.index} is an event of a type {parsed.subscription.upper()} does not deliver"
    return ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii() and text.isdecimal() and len(text) <= 18:     # "²" is a digit, not a number
        return int(text)
    return None


def _text(value: Any, limit: int = 200) -> str:
    return value[:limit] if isinstance(value, str) else ""


def split_delivery(item: dict[str, Any], blob: str, index: int) -> DeadLetter:
    """The delivered event and Event Grid's delivery record of it."""
    envelope: dict[str, Any] = {}
    record: dict[str, Any] = {}
    for k, v in item.items():
        (record if k.lower() in DELIVERY_FIELDS else envelope)[k] = v
    low = {k.lower(): v for k, v in record.items()}
    return DeadLetter(blob=blob, index=index, envelope=envelope, reason=_text(low.get("deadletterreason")),
                      attempts=_int(low.get("deliveryattempts")), last_outcome=_text(low.get("lastdeliveryoutcome")),
                      last_status=_int(low.get("lasthttpstatuscode")), publish_time=_text(low.get("publishtime"), 40))


def parse_blob(blob: str, data: bytes) -> ParsedBlob:
    """A dead-letter blob's events. Never raises: a blob that is not a JSON array (or a single
    event object) is ``unreadable``; an item that is not an object is kept (the service audits it
    ``invalid``) and named in ``problems``. Messages name positions and types only, never content
    (an event may carry anything)."""
    out = ParsedBlob(blob=blob)
    if len(data) > MAX_BLOB_BYTES:
        out.unreadable = f"{len(data)} bytes, more than the {MAX_BLOB_BYTES} a dead-letter blob can hold"
        return out
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        out.unreadable = "not UTF-8 text"
        return out
    except ValueError as exc:       # includes an integer literal longer than Python converts
        out.unreadable = f"not JSON (line {getattr(exc, 'lineno', '?')}, column {getattr(exc, 'colno', '?')})"
        return out
    except RecursionError:
        out.unreadable = "JSON nested too deeply to read"
        return out
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        out.unreadable = f"a JSON {type(doc).__name__}, not an array of events"
        return out
    if not doc:                     # no usable content either: one audited rejection, never a silent pass
        out.unreadable = "an empty array: no event"
        return out
    for i, item in enumerate(doc):
        if isinstance(item, dict):
            out.events.append(split_delivery(item, blob, i))
        else:       # still handed to handle_event: audited ``invalid`` (not_an_object) like any bad delivery
            out.events.append(DeadLetter(blob=blob, index=i, envelope=item))
            out.problems.append(f"item {i} is a JSON {type(item).__name__}, not an event object")
    return out


def to_ranges(indexes: Iterable[int]) -> str:
    """``{0, 1, 2, 5, 7, 8}`` as ``"0-2,5,7-8"``: a blob's replay progress in one table property."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def from_ranges(text: str) -> set[int]:
    """The inverse of ``to_ranges``; anything it cannot read counts as no progress."""
    out: set[int] = set()
    for part in (text or "").split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdecimal() and (not hi or hi.isdecimal()) and len(lo) < 10 and len(hi) < 10:
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def blob_name(topic: str | None, subscription: str, year: int, month: int, day: int, hour: int, guid: str) -> str:
    """The name Event Grid gives a dead-letter blob (names upper-cased, date parts not padded)."""
    head = f"{topic.upper()}/" if topic else ""
    return f"{head}{subscription.upper()}/{year}/{month}/{day}/{hour}/{guid}.json"


__all__ = ["DEAD_LETTER_SUBSCRIPTIONS", "DELETES_SUBSCRIPTION", "DELIVERY_FIELDS", "KEYVAULT_SUBSCRIPTION",
           "MAX_BLOB_BYTES", "RESOURCE_SUBSCRIPTION", "DeadLetter", "ParsedBlob", "blob_name", "deliverable_types",
           "from_ranges", "not_deliverable", "parse_blob", "split_delivery", "subscription_of", "to_ranges",
           "undeliverable_events"]
