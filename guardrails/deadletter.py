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
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

DELIVERY_FIELDS = frozenset(f.lower() for f in (
    "deadLetterReason", "deliveryAttempts", "lastDeliveryOutcome", "publishTime", "lastDeliveryAttemptTime",
    "lastHttpStatusCode"))
MAX_BLOB_BYTES = 16 * 1024 * 1024      # Event Grid events are <= 1 MB each; a blob is one delivery batch
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
        v = self.envelope.get("eventType", self.envelope.get("type")) if isinstance(self.envelope, dict) else None
        return v if isinstance(v, str) else ""


@dataclass
class ParsedBlob:
    blob: str
    events: list[DeadLetter] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)    # items that are not events, by position; no content
    unreadable: str = ""                                  # the whole blob could not be used: why

    @property
    def subscription(self) -> str:
        """The event subscription the blob's events were meant for (lower case), or ""."""
        m = _HOUR_PATH.match(self.blob)
        return m.group("subscription").lower() if m else ""


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


__all__ = ["DELIVERY_FIELDS", "MAX_BLOB_BYTES", "DeadLetter", "ParsedBlob", "blob_name", "from_ranges", "parse_blob",
           "split_delivery", "to_ranges"]
