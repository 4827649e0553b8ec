"""Event coverage: does each governed subscription still deliver its resource writes to us?

The guardrails act on what Event Grid delivers. A subscription whose system topic was never made
(added to the estate after the deployment), whose event subscription someone deleted, narrowed
(an event-type, subject or ``data.operationName`` filter that drops a covered write), let expire,
or pointed elsewhere sends nothing, and nothing on the event path can notice silence. The
reconciling sweep asks ARM for each swept subscription:

    GET /subscriptions/{sub}/providers/Microsoft.EventGrid/systemTopics              (list by subscription)
    GET {system topic id}/eventSubscriptions                                         (list by system topic)

and this module decides, with no I/O, whether one event subscription on the subscription's
``Microsoft.Resources.Subscriptions`` topic delivers every covered operation's
``ResourceWriteSuccess`` to this deployment's ``resource_events`` function. Event Grid's filter
semantics are followed: ``includedEventTypes`` empty or absent means every type; subject and
advanced filters are ANDed; string operators compare case-insensitively. A filter on a key this
check cannot evaluate without the event (``data.resourceProvider``, ``subject`` …) counts as a
gap: the security stance is that an unverified filter may drop writes.

A gap is reported, never "fixed": creating event subscriptions would need Event Grid write
permissions on every subscription, far beyond what the guardrail's identity holds
(``guardrails.permissions``). The sweep writes a ``violation`` row (reason ``event_coverage``)
for the subscription while the gap lasts, notifies when the gap appears or changes, and writes a
``compliant`` row when it is closed (``transition``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

WRITE_EVENT = "Microsoft.Resources.ResourceWriteSuccess"
TOPIC_TYPE = "Microsoft.Resources.Subscriptions"
FUNCTION_NAME = "resource_events"
SYSTEM_TOPICS_API_VERSION = "2022-06-15"
REASON = "event_coverage"
CHECK_ID = "event-coverage@1"       # the ``policy`` of the rows' violation records (a built-in check)

# gap codes, in the order a reader should fix them
GAP_CODES = ("unreadable", "no_system_topic", "no_event_subscription", "not_provisioned", "expired",
             "event_type_filtered", "subject_filtered", "operations_filtered", "unverified_filter")

_STRING_OPS = {
    "stringin": lambda v, vals: v in vals,
    "stringnotin": lambda v, vals: v not in vals,
    "stringbeginswith": lambda v, vals: any(v.startswith(x) for x in vals),
    "stringnotbeginswith": lambda v, vals: not any(v.startswith(x) for x in vals),
    "stringendswith": lambda v, vals: any(v.endswith(x) for x in vals),
    "stringnotendswith": lambda v, vals: not any(v.endswith(x) for x in vals),
    "stringcontains": lambda v, vals: any(x in v for x in vals),
    "stringnotcontains": lambda v, vals: not any(x in v for x in vals),
}


@dataclass(frozen=True)
class Gap:
    code: str          # one of GAP_CODES
    detail: str        # what ARM showed, for the operator (no secrets: ids, states, filter keys)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


@dataclass(frozen=True)
class Coverage:
    """One subscription's verdict. ``event_subscription_id``: the one judged (the closest to
    covering when none covers); ``missing_operations``: covered operations its filters drop."""

    subscription_id: str
    gaps: tuple[Gap, ...] = ()
    topic_id: str | None = None
    event_subscription_id: str | None = None
    missing_operations: tuple[str, ...] = ()

    @property
    def covered(self) -> bool:
        return not self.gaps

    @property
    def resource_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}"

    def signature(self) -> str:
        """What changed means notify again: the gap codes and the dropped operations."""
        return json.dumps([sorted({g.code for g in self.gaps}), sorted(o.lower() for o in self.missing_operations)])

    def message(self) -> str:
        if self.covered:
            return (f"resource writes of subscription {self.subscription_id} reach the guardrails again "
                    f"(event subscription {self.event_subscription_id})")
        parts = "; ".join(f"{g.code}: {g.detail}" for g in self.gaps)
        return (f"resource writes of subscription {self.subscription_id} do not all reach the guardrails, "
                f"so drift there is only found by the sweep: {parts}")

    def to_dict(self) -> dict[str, Any]:
        return {"subscription_id": self.subscription_id, "covered": self.covered,
                "gaps": [g.to_dict() for g in self.gaps], "topic_id": self.topic_id,
                "event_subscription_id": self.event_subscription_id,
                "missing_operations": list(self.missing_operations)}


def destination_for(function_app_id: str) -> str:
    """The AzureFunction destination id the deployment's event subscriptions point at."""
    return f"{function_app_id.rstrip('/')}/functions/{FUNCTION_NAME}"


def _lower(x: Any) -> str:
    return x.lower() if isinstance(x, str) else ""


def _props(item: Mapping[str, Any]) -> Mapping[str, Any]:
    p = item.get("properties")
    return p if isinstance(p, Mapping) else {}


def subscription_topics(subscription_id: str, topics: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The system topics whose source is the subscription itself (type ``Microsoft.Resources.Subscriptions``)."""
    source = f"/subscriptions/{subscription_id}".lower()
    return [t for t in topics if isinstance(t, Mapping) and isinstance(t.get("id"), str)
            and _lower(_props(t).get("topicType")) == TOPIC_TYPE.lower()
            and _lower(_props(t).get("source")).rstrip("/") == source]


def _destination(props: Mapping[str, Any]) -> Mapping[str, Any]:
    dest = props.get("destination")
    if not isinstance(dest, Mapping):       # delivery with the topic's managed identity
        via = props.get("deliveryWithResourceIdentity")
        dest = via.get("destination") if isinstance(via, Mapping) else None
    return dest if isinstance(dest, Mapping) else {}


def delivers_to(event_subscription: Mapping[str, Any], destination: str) -> bool:
    dest = _destination(_props(event_subscription))
    rid = (dest.get("properties") or {}).get("resourceId") if isinstance(dest.get("properties"), Mapping) else None
    return _lower(dest.get("endpointType")) == "azurefunction" and _lower(rid) == destination.lower()


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text.strip():
        return None
    t = text.strip().replace("Z", "+00:00")
    if "." in t:                     # ARM writes up to 7 fractional digits; fromisoformat takes 6
        head, _, rest = t.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        t = f"{head}.{digits[:6]}{rest[len(digits):]}"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _passes(value: str, f: Mapping[str, Any]) -> bool | None:
    """Whether one advanced filter lets ``value`` (a string key's value) through; None: unknown operator."""
    op = _lower(f.get("operatorType"))
    if op == "isnotnull":
        return True
    if op == "isnullorundefined":
        return False
    if op in _STRING_OPS:
        vals = f.get("values")
        vals = [v.lower() for v in vals if isinstance(v, str)] if isinstance(vals, list) else []
        return _STRING_OPS[op](value.lower(), vals)
    if op.startswith(("number", "bool")):
        return False                 # a number/bool operator never matches a string value
    return None


def judge(subscription_id: str, topic_id: str, event_subscription: Mapping[str, Any], *,
          operations: Sequence[str], now: datetime) -> Coverage:
    """How one event subscription (known to deliver to us) covers the subscription's writes."""
    props = _props(event_subscription)
    es_id = str(event_subscription.get("id") or "")
    gaps: list[Gap] = []
    state = str(props.get("provisioningState") or "")
    if state.lower() != "succeeded":
        gaps.append(Gap("not_provisioned", f"provisioningState {state[:40] or 'absent'}"))
    expires = _parse_time(props.get("expirationTimeUtc"))
    if expires is not None and expires <= now:
        gaps.append(Gap("expired", f"expired {props.get('expirationTimeUtc')}"))
    filt = props.get("filter") if isinstance(props.get("filter"), Mapping) else {}
    types = filt.get("includedEventTypes")
    if isinstance(types, list) and types and WRITE_EVENT.lower() not in {_lower(t) for t in types}:
        gaps.append(Gap("event_type_filtered", f"includedEventTypes {', '.join(str(t) for t in types)[:300]} "
                                               f"leave out {WRITE_EVENT}"))
    prefix = f"/subscriptions/{subscription_id}/".lower()
    begins, ends = _lower(filt.get("subjectBeginsWith")), _lower(filt.get("subjectEndsWith"))
    if (begins and not prefix.startswith(begins)) or ends:
        gaps.append(Gap("subject_filtered", f"subjectBeginsWith {filt.get('subjectBeginsWith')!r}, "
                                            f"subjectEndsWith {filt.get('subjectEndsWith')!r}"[:300]))
    missing: list[str] = []
    unverified: list[str] = []
    advanced = filt.get("advancedFilters") if isinstance(filt.get("advancedFilters"), list) else []
    for f in advanced:
        if not isinstance(f, Mapping):
            continue
        key = str(f.get("key") or "")
        if key.lower() == "eventtype":
            verdict = _passes(WRITE_EVENT, f)
            if verdict is False:
                gaps.append(Gap("event_type_filtered", f"advanced filter {f.get('operatorType')} on eventType "
                                                       f"drops {WRITE_EVENT}"))
                continue
            if verdict is True:
                continue
        elif key.lower() == "data.operationname":
            results = [(op, _passes(op, f)) for op in operations]
            if all(r is not None for _, r in results):
                missing.extend(op for op, r in results if r is False and op not in missing)
                continue
        unverified.append(f"{str(f.get('operatorType'))[:40]} on {key[:80] or '(no key)'}")
    if missing:
        gaps.append(Gap("operations_filtered", f"data.operationName filters drop {len(missing)} covered "
                                               f"operation(s): {', '.join(missing)}"[:600]))
    if unverified:
        gaps.append(Gap("unverified_filter", "filters this check cannot evaluate may drop writes: "
                                             + "; ".join(unverified)[:400]))
    return Coverage(subscription_id, tuple(gaps), topic_id, es_id or None, tuple(missing))


def assess(subscription_id: str, topics: Iterable[Mapping[str, Any]],
           event_subscriptions: Mapping[str, Sequence[Mapping[str, Any]]], *, destination: str,
           operations: Sequence[str], now: datetime | None = None) -> Coverage:
    """The subscription's coverage from its listed system topics and, per topic id (lower-cased),
    their listed event subscriptions. Covered when ANY event subscription to ``destination`` on
    the subscription's own topic delivers every covered operation; else the closest one's gaps."""
    now = now or datetime.now(timezone.utc)
    own = subscription_topics(subscription_id, topics)
    if not own:
        return Coverage(subscription_id, (Gap("no_system_topic", f"no {TOPIC_TYPE} system topic has source "
                                                                 f"/subscriptions/{subscription_id}"),))
    judged: list[Coverage] = []
    others = 0
    for t in own:
        tid = str(t["id"])
        for es in event_subscriptions.get(tid.lower(), ()):
            if not isinstance(es, Mapping):
                continue
            if delivers_to(es, destination):
                judged.append(judge(subscription_id, tid, es, operations=operations, now=now))
            else:
                others += 1
    if not judged:
        return Coverage(subscription_id, (Gap("no_event_subscription", f"no event subscription on "
                                                                       f"{own[0]['id']} delivers to {destination} "
                                                                       f"({others} deliver elsewhere)"),),
                        topic_id=str(own[0]["id"]))
    best = min(judged, key=lambda c: (len(c.gaps), len(c.missing_operations)))
    return best


@dataclass
class Transition:
    """What the sweep records for one subscription this run."""

    write_row: bool
    verdict: str = "violation"
    notify: bool = False
    state: dict[str, Any] = field(default_factory=dict)   # the new state to keep


def transition(previous: Mapping[str, Any] | None, cov: Coverage, now_iso: str) -> Transition:
    """A gap: a ``violation`` row every run while it lasts, notify when it appears or changes.
    Covered: a ``compliant`` row only when closing a gap recorded before; otherwise nothing."""
    sig = cov.signature()
    was_gap = bool(previous) and previous.get("covered") is False
    if cov.covered:
        state = {"covered": True, "signature": sig, "since": now_iso if was_gap or not previous
                 else previous.get("since", now_iso)}
        return Transition(write_row=was_gap, verdict="compliant", notify=False, state=state)
    changed = not was_gap or previous.get("signature") != sig
    state = {"covered": False, "signature": sig,
             "since": now_iso if not was_gap else previous.get("since", now_iso)}
    return Transition(write_row=True, verdict="violation", notify=changed, state=state)


__all__ = ["Coverage", "Gap", "Transition", "assess", "judge", "delivers_to", "destination_for",
           "subscription_topics", "transition", "GAP_CODES", "REASON", "CHECK_ID", "WRITE_EVENT",
           "TOPIC_TYPE", "SYSTEM_TOPICS_API_VERSION"]
