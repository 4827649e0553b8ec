"""Event coverage: does each event source the guardrails govern still deliver its events to us?

The guardrails act on what Event Grid delivers. A source whose system topic was never made (a
subscription added to the estate after the deployment), whose event subscription someone deleted,
narrowed (an event-type, subject or ``data.operationName`` filter that drops a covered event), let
expire, or pointed elsewhere sends nothing, and nothing on the event path can notice silence. Three
kinds of source are wired by ``infra/`` and checked here (``Expectation``):

    subscription   topic Microsoft.Resources.Subscriptions           -> resource_events
                   ResourceWriteSuccess of every covered operation (``permissions.covered_operations``)
                   and, by a second event subscription, ResourceDeleteSuccess of every covered
                   deletion (``permissions.covered_delete_operations``)
    vault          topic Microsoft.KeyVault.vaults (governed vaults) -> keyvault_events
                   every Key Vault event type the secret guardrail acts on
    workspace      topic Microsoft.MachineLearningServices.Workspaces (governed workspaces) -> resource_events
                   every Azure ML event type the ML lifecycle guardrail acts on

The reconciling sweep asks ARM, once per subscription involved:

    GET /subscriptions/{sub}/providers/Microsoft.EventGrid/systemTopics              (list by subscription)
    GET {system topic id}/eventSubscriptions                                         (list by system topic)

and this module decides, with no I/O, whether one event subscription on the source's own topic
delivers every expected event to this deployment's function (the topic and the event subscription
both provisioned: ``Succeeded``). Event Grid's filter semantics are followed: ``includedEventTypes``
empty, absent or ``["All"]`` means every type; subject and advanced filters are ANDed; string
operators compare case-insensitively, and so do the subject filters unless
``isSubjectCaseSensitive`` is true (then ``subjectBeginsWith`` must match the lower-case
``/subscriptions/<id>/`` ARM puts in every subject, as written). A filter on a key this check
cannot evaluate without the event (``data.resourceProvider``, ``subject`` …) counts as a gap: the
security stance is that an unverified filter may drop writes.

A gap is reported, never "fixed": creating event subscriptions would need Event Grid write
permissions on every subscription, far beyond what the guardrail's identity holds
(``guardrails.permissions``). The sweep writes a ``violation`` row (reason ``event_coverage``)
for the subscription while the gap lasts, notifies when the gap appears or changes, and writes a
``compliant`` row when it is closed (``transition``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

WRITE_EVENT = "Microsoft.Resources.ResourceWriteSuccess"
DELETE_EVENT = "Microsoft.Resources.ResourceDeleteSuccess"
# what infra/'s writes subscription lists (a write; the failure or cancellation of one ends a fix
# left ``requested``): an event subscription listing only these is the writes' own
WRITE_FAMILY = frozenset({WRITE_EVENT.lower(), "microsoft.resources.resourcewritefailure",
                          "microsoft.resources.resourcewritecancel"})
TOPIC_TYPE = "Microsoft.Resources.Subscriptions"
VAULT_TOPIC_TYPE = "Microsoft.KeyVault.vaults"
WORKSPACE_TOPIC_TYPE = "Microsoft.MachineLearningServices.Workspaces"
FUNCTION_NAME = "resource_events"
KEYVAULT_FUNCTION = "keyvault_events"
SYSTEM_TOPICS_API_VERSION = "2022-06-15"
REASON = "event_coverage"
CHECK_ID = "event-coverage@1"       # the ``policy`` of the rows' violation records (a built-in check)

# gap codes, in the order a reader should fix them
GAP_CODES = ("unreadable", "unchecked", "no_system_topic", "no_event_subscription", "not_provisioned", "expired",
             "event_type_filtered", "subject_filtered", "operations_filtered", "unverified_filter",
             "deletions_not_delivered")
# a subscription whose writes are covered but whose deletions are not: no drift goes unseen, but a
# deleted resource stays in the compliance report (as compliant or violating) until a decision on
# it reads a 404 (the sweep decides only resources it lists: possibly never)

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
class Expectation:
    """What one governed event source must deliver: its own system topic (``topic_type``, source
    ``source``) with an event subscription to ``function`` of this app that lets every one of
    ``event_types`` through and, for a subscription's topic, every one of ``operations``."""

    kind: str                          # subscription | vault | workspace
    source: str                        # ARM id of the topic's source (``/subscriptions/{id}`` …)
    topic_type: str
    function: str
    event_types: tuple[str, ...]
    operations: tuple[str, ...] = ()   # ``data.operationName`` values that must pass (subscription topics)
    # ``data.operationName`` values of the deletions that must reach ``function`` too, as
    # ``DELETE_EVENT`` (subscription topics; any event subscription, in practice a second one)
    delete_operations: tuple[str, ...] = ()

    def deletions(self) -> "Expectation":
        """The deletions part as an expectation of its own (judged like the writes)."""
        return Expectation(self.kind, self.source, self.topic_type, self.function, (DELETE_EVENT,),
                           self.delete_operations)

    @property
    def subscription_id(self) -> str:
        return self.source.split("/")[2]

    @property
    def subject_prefix(self) -> str | None:
        """What every subject of the source's events starts with (a subscription's events: its
        resource ids); None when subjects name objects inside the source (a vault's secrets, a
        workspace's models): any subject filter there may drop events."""
        return f"{self.source.rstrip('/')}/".lower() if self.kind == "subscription" else None


def subscription_expectation(subscription_id: str, operations: Sequence[str],
                             delete_operations: Sequence[str] = ()) -> Expectation:
    return Expectation("subscription", f"/subscriptions/{subscription_id}", TOPIC_TYPE, FUNCTION_NAME,
                       (WRITE_EVENT,), tuple(operations), tuple(delete_operations))


def vault_expectation(vault_id: str, event_types: Sequence[str]) -> Expectation:
    return Expectation("vault", vault_id.rstrip("/"), VAULT_TOPIC_TYPE, KEYVAULT_FUNCTION, tuple(event_types))


def workspace_expectation(workspace_id: str, event_types: Sequence[str]) -> Expectation:
    return Expectation("workspace", workspace_id.rstrip("/"), WORKSPACE_TOPIC_TYPE, FUNCTION_NAME, tuple(event_types))


@dataclass(frozen=True)
class Coverage:
    """One source's verdict. ``event_subscription_id``: the one judged (the closest to covering
    when none covers); ``missing_operations`` / ``missing_event_types``: what its filters drop;
    ``missing_deletions``: the covered deletions no event subscription delivers (all of them when
    the deletions' event subscription is missing or broken)."""

    expectation: Expectation
    gaps: tuple[Gap, ...] = ()
    topic_id: str | None = None
    event_subscription_id: str | None = None
    missing_operations: tuple[str, ...] = ()
    missing_event_types: tuple[str, ...] = ()
    missing_deletions: tuple[str, ...] = ()

    @property
    def covered(self) -> bool:
        return not self.gaps

    @property
    def resource_id(self) -> str:
        return self.expectation.source

    @property
    def subscription_id(self) -> str:
        return self.expectation.subscription_id

    def signature(self) -> str:
        """What changed means notify again: the gap codes and the dropped operations and types."""
        sig = [sorted({g.code for g in self.gaps}), sorted(o.lower() for o in self.missing_operations),
               sorted(t.lower() for t in self.missing_event_types)]
        if self.missing_deletions:      # absent otherwise: signatures kept by earlier releases still match
            sig.append(sorted(o.lower() for o in self.missing_deletions))
        return json.dumps(sig)

    def message(self) -> str:
        what = {"subscription": f"resource writes of subscription {self.subscription_id}",
                "vault": f"Key Vault events of {self.resource_id}",
                "workspace": f"Azure ML events of {self.resource_id}"}.get(self.expectation.kind, self.resource_id)
        if self.covered:
            return f"{what} reach the guardrails again (event subscription {self.event_subscription_id})"
        parts = "; ".join(f"{g.code}: {g.detail}" for g in self.gaps)
        if {g.code for g in self.gaps} == {"deletions_not_delivered"}:
            return (f"deletions in subscription {self.subscription_id} do not all reach the guardrails, so a "
                    f"deleted resource stays in the compliance report until a decision on it reads its 404, "
                    f"which may never come (the sweep decides only what it lists; its writes are covered): "
                    f"{parts}")
        found_by = "only found by the sweep" if self.expectation.kind == "subscription" else "not seen"
        return f"{what} do not all reach the guardrails, so what happens there is {found_by}: {parts}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.expectation.kind, "source": self.resource_id, "subscription_id": self.subscription_id,
                "covered": self.covered, "gaps": [g.to_dict() for g in self.gaps], "topic_id": self.topic_id,
                "event_subscription_id": self.event_subscription_id,
                "missing_operations": list(self.missing_operations),
                "missing_event_types": list(self.missing_event_types),
                "missing_deletions": list(self.missing_deletions)}


def destination_for(function_app_id: str, function: str = FUNCTION_NAME) -> str:
    """The AzureFunction destination id the deployment's event subscriptions point at."""
    return f"{function_app_id.rstrip('/')}/functions/{function}"


def _lower(x: Any) -> str:
    return x.lower() if isinstance(x, str) else ""


def _props(item: Mapping[str, Any]) -> Mapping[str, Any]:
    p = item.get("properties")
    return p if isinstance(p, Mapping) else {}


def own_topics(expected: Expectation, topics: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The listed system topics of the expected type whose source is the expected source."""
    source = expected.source.lower().rstrip("/")
    return [t for t in topics if isinstance(t, Mapping) and isinstance(t.get("id"), str)
            and _lower(_props(t).get("topicType")) == expected.topic_type.lower()
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


# date and time, then an optional fraction and an optional offset: ARM writes up to 7 fractional
# digits (``.1234567``) and ``Z`` or ``±hh:mm``; ``fromisoformat`` takes at most 6 and, before
# Python 3.11, no ``Z``. Only the fraction's own digits are trimmed: the offset is kept whole.
_TIME = re.compile(r"(?P<head>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2})?)(?:\.(?P<fraction>\d+))?"
                   r"(?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?")


def _parse_time(text: Any) -> datetime | None:
    """An ARM timestamp (``expirationTimeUtc``) as an aware datetime; no offset means UTC; None
    when it is not one."""
    if not isinstance(text, str):
        return None
    t = text.strip()
    m = _TIME.fullmatch(t)
    if m is not None:
        fraction, offset = m.group("fraction"), m.group("offset") or ""
        if offset.upper() == "Z":
            offset = "+00:00"
        elif offset and ":" not in offset:
            offset = f"{offset[:3]}:{offset[3:] or '00'}"
        t = m.group("head") + (f".{fraction[:6].ljust(6, '0')}" if fraction else "") + offset
    try:                             # anything else ISO 8601 as ``fromisoformat`` reads it (a date)
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


def _dropped(values: Sequence[str], f: Mapping[str, Any]) -> list[str] | None:
    """The values one filter drops; None when it cannot be evaluated."""
    results = [(v, _passes(v, f)) for v in values]
    if any(r is None for _, r in results):
        return None
    return [v for v, r in results if r is False]


def judge(expected: Expectation, topic_id: str, event_subscription: Mapping[str, Any], *,
          now: datetime, topic_state: str | None = None) -> Coverage:
    """How one event subscription (known to deliver to us) covers the expected events.
    ``topic_state``: its system topic's ``provisioningState`` (None: not judged). A topic not
    ``Succeeded`` (a create or an update that failed, one being deleted) publishes nothing, so
    its event subscriptions deliver nothing, whatever their own state says."""
    props = _props(event_subscription)
    es_id = str(event_subscription.get("id") or "")
    gaps: list[Gap] = []
    if topic_state is not None and topic_state.lower() != "succeeded":
        gaps.append(Gap("not_provisioned", f"system topic provisioningState {topic_state[:40] or 'absent'}"))
    state = str(props.get("provisioningState") or "")
    if state.lower() != "succeeded":
        gaps.append(Gap("not_provisioned", f"provisioningState {state[:40] or 'absent'}"))
    expires = _parse_time(props.get("expirationTimeUtc"))
    if expires is not None and expires <= now:
        gaps.append(Gap("expired", f"expired {props.get('expirationTimeUtc')}"))
    filt = props.get("filter") if isinstance(props.get("filter"), Mapping) else {}
    missing_types: list[str] = []
    listed = _included(event_subscription)
    if listed is not None:
        missing_types += [t for t in expected.event_types if t.lower() not in listed]
    prefix = expected.subject_prefix
    begins, ends = filt.get("subjectBeginsWith"), filt.get("subjectEndsWith")
    begins = begins if isinstance(begins, str) else ""
    if filt.get("isSubjectCaseSensitive") is not True:
        begins = begins.lower()
    # case-sensitive: compared as written with the subjects ARM sends (``/subscriptions/<id>/...``,
    # lower case up to the id's slash); a filter longer than that prefix is a gap either way
    if (begins and not (prefix is not None and prefix.startswith(begins))) or _lower(ends):
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
            dropped = _dropped(expected.event_types, f)
            if dropped is not None:
                missing_types += [t for t in dropped if t not in missing_types]
                continue
        elif key.lower() == "data.operationname" and expected.operations:
            dropped = _dropped(expected.operations, f)
            if dropped is not None:
                missing += [op for op in dropped if op not in missing]
                continue
        unverified.append(f"{str(f.get('operatorType'))[:40]} on {key[:80] or '(no key)'}")
    if missing_types:
        gaps.append(Gap("event_type_filtered", f"filters drop {len(missing_types)} expected event type(s): "
                                               f"{', '.join(missing_types)}"[:600]))
    if missing:
        gaps.append(Gap("operations_filtered", f"data.operationName filters drop {len(missing)} covered "
                                               f"operation(s): {', '.join(missing)}"[:600]))
    if unverified:
        gaps.append(Gap("unverified_filter", "filters this check cannot evaluate may drop events: "
                                             + "; ".join(unverified)[:400]))
    order = {c: i for i, c in enumerate(GAP_CODES)}
    gaps.sort(key=lambda g: order.get(g.code, len(order)))
    return Coverage(expected, tuple(gaps), topic_id, es_id or None, tuple(missing), tuple(missing_types))


def _included(event_subscription: Mapping[str, Any]) -> set[str] | None:
    """The lower-cased ``includedEventTypes`` of an event subscription; None when it means every
    type: absent, null, empty, or listing ``All`` (Event Grid's own spelling of every type, in
    its Resource Manager template samples and earlier API versions' default)."""
    filt = _props(event_subscription).get("filter")
    inc = filt.get("includedEventTypes") if isinstance(filt, Mapping) else None
    listed = {_lower(t) for t in inc} if isinstance(inc, list) else set()
    return listed if listed and "all" not in listed else None


def assess(expected: Expectation, topics: Iterable[Mapping[str, Any]],
           event_subscriptions: Mapping[str, Sequence[Mapping[str, Any]]], *, function_app_id: str,
           now: datetime | None = None, _other_part: frozenset[str] = frozenset()) -> Coverage:
    """The source's coverage from the listed system topics of its subscription and, per topic id
    (lower-cased), their listed event subscriptions. Covered when ANY event subscription to this
    app's ``expected.function`` on the source's own topic lets every expected event through; else
    the closest one's gaps. A subscription's writes and its deletions (``delete_operations``) are
    judged apart, each against the event subscriptions that are not the other's own (listing only
    the other part's event type), the deletions' gaps as one ``deletions_not_delivered`` gap."""
    now = now or datetime.now(timezone.utc)
    destination = destination_for(function_app_id, expected.function)
    own = own_topics(expected, topics)
    if not own:
        return Coverage(expected, (Gap("no_system_topic", f"no {expected.topic_type} system topic has source "
                                                          f"{expected.source}"),))
    other_part = _other_part or (frozenset({DELETE_EVENT.lower()}) if expected.delete_operations else frozenset())
    judged: list[Coverage] = []
    others = theirs = 0
    for t in own:
        tid = str(t["id"])
        for es in event_subscriptions.get(tid.lower(), ()):
            if not isinstance(es, Mapping):
                continue
            if not delivers_to(es, destination):
                others += 1
                continue
            inc = _included(es)
            if other_part and inc is not None and inc <= other_part:
                theirs += 1               # the other part's own (the deletions' subscription, for the writes)
                continue
            judged.append(judge(expected, tid, es, now=now,
                                topic_state=str(_props(t).get("provisioningState") or "")))
    if not judged:
        also = f", {theirs} deliver only the {'deletions' if expected.delete_operations else 'writes'}" if theirs else ""
        best = Coverage(expected, (Gap("no_event_subscription", f"no event subscription on {own[0]['id']} delivers "
                                                                f"to {destination} ({others} deliver elsewhere{also})"),),
                        topic_id=str(own[0]["id"]))
    else:
        best = min(judged, key=lambda c: (len(c.gaps), len(c.missing_operations) + len(c.missing_event_types)))
    if not expected.delete_operations:
        return best
    deletions = assess(expected.deletions(), own, event_subscriptions, function_app_id=function_app_id, now=now,
                       _other_part=frozenset(t.lower() for t in expected.event_types) | WRITE_FAMILY)
    if deletions.covered:
        return best
    missing = tuple(deletions.missing_operations)
    if not missing or any(g.code != "operations_filtered" for g in deletions.gaps):
        missing = tuple(expected.delete_operations)      # no subscription delivers them as expected
    inner = "; ".join(f"{g.code}: {g.detail}" for g in deletions.gaps)
    gap = Gap("deletions_not_delivered", f"ResourceDeleteSuccess: {inner}"[:600])
    return replace(best, gaps=best.gaps + (gap,), missing_deletions=missing)


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


__all__ = ["Coverage", "Expectation", "Gap", "Transition", "assess", "judge", "delivers_to", "destination_for",
           "own_topics", "subscription_expectation", "vault_expectation",
           "workspace_expectation", "transition", "GAP_CODES", "REASON", "CHECK_ID", "WRITE_EVENT",
           "TOPIC_TYPE", "SYSTEM_TOPICS_API_VERSION", "DELETE_EVENT"]
