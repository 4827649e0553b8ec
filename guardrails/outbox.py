"""Decision events: every non-compliant decision, also published to an Event Grid custom topic
(CloudEvents 1.0) so Sentinel, Logic Apps, Teams or a ticketing system can subscribe.

What is published — one event per audit row, decided by the row's verdict:

    remediated, requested, violation, dry_run, escalated    always
    failed                                                  when the row carries violations (a fix
                                                            that failed); a failed *read* is no
                                                            finding about the resource
    compliant, ignored, duplicate, invalid, shadow          never

The event: ``id`` = the row's ``delivery_id`` (receivers dedupe on it), ``source`` =
``/guardrails/<function app>``, ``type`` = ``Guardrails.Decision.<Verdict>`` (PascalCase: ``DryRun``),
``subject`` = the resource id, ``time`` = the row's time, ``data`` = ``AuditRow.to_dict()``,
``datacontenttype`` ``application/json``.

Publishing failure never loses the audit row: the service writes the row first and only then
hands it here. One attempt, short timeout, no retry in the delivery's path; on failure the event
goes to the outbox table and the outbox timer delivers it later with the same id (at-least-once,
exactly as audited). After a failure direct publishing pauses for ``pause_seconds`` — events go
straight to the outbox — so a topic outage does not add a timeout to every delivery (not after
``rejected``: the topic is up, it refused that one event).

An event the topic rejects (400, 413: ``rejected``) must not hold back the others: the drain
splits a rejected batch in halves, down to single events, and sends the rest. An event rejected
on its own is counted (``rejections``) and waits for the next run; rejected alone ``park_after``
times (5) it is *parked*: kept in the outbox, marked, no longer sent, logged at ERROR with its id
(never its data) and counted in every drain result (``parked_total``) until someone looks at it.

A worker that dies between its audit write and its publish:

- an Event Grid delivery is redelivered; the redelivery takes over the dead attempt's
  idempotency record and publishes again what it audited (``republish``; when it cannot read
  those rows it leaves a marker in the outbox, due at once, and the drain publishes them);
- a timer's decision (sweep, exemption expiry) is never redelivered, so its event is first kept
  in the outbox as an *intent*, held ``intent_hold_seconds`` (``intend``), then audited, then
  published, and the intent dropped once the topic took it. An intent the outbox timer finds past
  its hold belongs to a worker that died, or to a decision whose verdict is not published (a fix
  that found the resource gone: nothing replaced the intent). The drain writes again the rows
  audited under its id (an audit write may have stored one of its two rows; an upsert) and
  publishes the published one, or drops the intent when none is; when no row was audited (the
  worker died after the fix, before its audit write), it audits the intended row first. Two more
  outbox writes per published timer decision; nothing on the event path.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .errors import GuardrailsError, StoreError
from .logs import emit
from .model.decision import AuditRow, ViolationRecord, combine_verdict

log = logging.getLogger("guardrails")

ALWAYS_PUBLISHED = frozenset({"remediated", "requested", "violation", "dry_run", "escalated"})
EVENT_TYPE_PREFIX = "Guardrails.Decision."
# Event Grid basic topics: an event and a batch are at most 1 MB
MAX_BATCH_BYTES = 1_000_000
MAX_BATCH_EVENTS = 100


class PublishError(GuardrailsError):
    """The topic did not accept the events. ``reason``: unauthorized, rejected, throttled,
    unavailable. The message names the status, never the credential."""

    reason = "publish_failed"


class AuditHistory(Protocol):
    def rows_of_delivery(self, resource_id: str, delivery_id: str) -> list[AuditRow]:
        """The audit rows one delivery wrote for one resource. Raises StoreError."""

    def write(self, row: AuditRow) -> None:
        """Audit one row (a stale intent's, never audited), or again one found under its id (an
        upsert under the row's own keys). Raises StoreError."""


class TopicSender(Protocol):
    def send(self, events: list[dict[str, Any]]) -> None:
        """Publish CloudEvents (dicts in the CloudEvents JSON form) in one request. Raises PublishError."""


@dataclass(frozen=True)
class OutboxItem:
    key: str
    event: dict[str, Any]
    attempts: int
    intent: bool = False      # kept before its decision was audited (``DecisionPublisher.intend``)
    rejections: int = 0       # times the topic rejected this event sent on its own


class OutboxStore(Protocol):
    def add(self, event: dict[str, Any], *, error: str, hold_seconds: float = 0.0, intent: bool = False) -> None:
        """Keep an event that could not be published, or (``intent``) is about to be; not due
        before ``hold_seconds`` from now. One item per event id: adding again replaces it.
        Raises StoreError."""

    def list(self, limit: int, *, after: str | None = None) -> list[OutboxItem]:
        """At most ``limit`` waiting events that are due, in the store's key order; ``after``: only
        keys after this one (a store that never returns ``limit`` events need not take it)."""

    def remove(self, key: str) -> None: ...

    def discard(self, event_id: str) -> None:
        """Remove the item of this event id, if there is one. Raises StoreError."""

    def failed(self, item: OutboxItem, *, error: str) -> None:
        """Record one more failed attempt."""

    def rejected(self, item: OutboxItem, *, park: bool) -> None:
        """Record that the topic rejected this event sent on its own (one more attempt and
        rejection); ``park``: keep it but never list it again (``parked_count`` counts it).
        Raises StoreError."""

    # optional: ``parked_count() -> int``, how many parked events the store keeps (StoreError);
    # a store without it reports ``parked_total`` None


def intend_before_act(publisher, ctx, row: AuditRow, sending: list[ViolationRecord], *, sent_message: str,
                      line: Callable[[ViolationRecord], str], records: list[ViolationRecord] | None = None) -> None:
    """A timer's act (a sweep's fix or removal, a custom role's change re-judging its assignments)
    is never redelivered: should its worker die between the act and the audit write, nothing
    would record it (the next look finds the resource compliant, the assignment gone). Before the
    act, keep in the outbox, as the decision's intent, the row it would leave then: ``sending``
    (records of ``row.violations``, or of ``records`` when given) ``requested`` with ``sent_message``. ``_finish`` replaces it with
    the final row (same id) when that is published; an intent the drain finds past its hold is
    dropped when a row audited under its id is not, and audited as it stands when none was
    (module doc). One outbox write per timer act; nothing on the event
    path (a redelivery recovers there) nor without a decision topic."""
    if publisher is None or not getattr(ctx, "timer", False) or getattr(ctx, "dry_run", False):
        return
    planned = AuditRow.from_dict(row.to_dict())
    if records is not None:           # the row's records as they will be reported (not yet on it)
        planned.violations = [ViolationRecord(**v.to_dict()) for v in records]
    sent = {(v.policy, v.rule, v.property) for v in sending}
    for v in planned.violations:
        if (v.policy, v.rule, v.property) in sent:
            v.outcome, v.message = "requested", sent_message
    planned.verdict = combine_verdict([v.outcome for v in planned.violations])
    planned.reason = ""
    planned.message = "; ".join(line(v) for v in planned.violations)[:2000]
    planned.time = ctx.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    publisher.intend(planned)


def should_publish(row: AuditRow) -> bool:
    return row.verdict in ALWAYS_PUBLISHED or (row.verdict == "failed" and bool(row.violations))


def event_type(verdict: str) -> str:
    """``dry_run`` -> ``Guardrails.Decision.DryRun``."""
    return EVENT_TYPE_PREFIX + "".join(part.capitalize() for part in verdict.split("_"))


def to_event(row: AuditRow, *, source: str) -> dict[str, Any]:
    """The CloudEvent (JSON form) for one audit row."""
    return {"specversion": "1.0", "id": row.delivery_id, "source": source, "type": event_type(row.verdict),
            "subject": row.resource_id, "time": row.time, "datacontenttype": "application/json",
            "data": row.to_dict()}


def batches(events: list[dict[str, Any]], *, size_of: Callable[[dict[str, Any]], int]) -> list[list[dict[str, Any]]]:
    """Split into requests of at most MAX_BATCH_EVENTS events and MAX_BATCH_BYTES bytes."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    used = 2
    for e in events:
        n = size_of(e) + 1
        if current and (len(current) >= MAX_BATCH_EVENTS or used + n > MAX_BATCH_BYTES):
            out.append(current)
            current, used = [], 2
        current.append(e)
        used += n
    if current:
        out.append(current)
    return out


@dataclass
class DrainResult:
    delivered: int = 0
    failed: int = 0          # events whose send failed this run (rejected ones included)
    remaining: int = 0       # of the events read, still in the outbox after this run
    truncated: bool = False  # the run stopped (time budget, topic refused) after a full read: more may wait
    rejected: int = 0        # of ``failed``: events the topic rejected on their own (kept, retried next run)
    parked: int = 0          # of ``rejected``: parked by this run (rejected alone ``park_after`` times)
    parked_total: int | None = None   # parked events the outbox keeps, never sent (None: the store cannot tell)

    def to_dict(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed, "remaining": self.remaining,
                "truncated": self.truncated, "rejected": self.rejected, "parked": self.parked,
                "parked_total": self.parked_total}


class DecisionPublisher:
    """Publish a decision now, or keep it in the outbox; deliver the outbox later."""

    # seconds; longer than an audit write plus a publish can take (both are bounded by their timeouts)
    INTENT_HOLD_SECONDS = 900.0
    # an event the topic rejected on its own this many times (one per drain run) is parked
    PARK_AFTER = 5

    def __init__(self, topic: TopicSender, outbox: OutboxStore, *, source: str, pause_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, history: AuditHistory | None = None,
                 intent_hold_seconds: float = INTENT_HOLD_SECONDS, park_after: int = PARK_AFTER) -> None:
        self.topic = topic
        self.park_after = max(1, park_after)
        self.outbox = outbox
        self.history = history
        self.source = source
        self.pause_seconds = pause_seconds
        self.intent_hold_seconds = intent_hold_seconds
        self._clock = clock
        self._paused_until = float("-inf")

    def intend(self, row: AuditRow) -> bool:
        """Before a timer's decision is audited: keep its event in the outbox as an intent, held
        ``intent_hold_seconds``, so a worker dying before it is published cannot lose it (module
        doc). Returns whether one was kept: False for a verdict that is not published, or when
        the outbox failed (logged; the decision goes on, as without an intent). Never raises."""
        if not should_publish(row):
            return False
        try:
            self.outbox.add(to_event(row, source=self.source), error="intent",
                            hold_seconds=self.intent_hold_seconds, intent=True)
        except StoreError as exc:
            emit(log, logging.WARNING, "decision_event_intent_failed", delivery_id=row.delivery_id, error=str(exc))
            return False
        return True

    def publish(self, row: AuditRow, *, intended: bool = False) -> str:
        """``skipped`` (not a published verdict), ``published``, ``outboxed`` or ``lost`` (the
        outbox itself failed: logged at ERROR). Never raises: the row is already audited.
        ``intended``: ``intend`` kept its event; it is dropped once the topic took it (kept, and
        due now, when it did not)."""
        if not should_publish(row):
            return "skipped"
        event = to_event(row, source=self.source)
        if self._clock() < self._paused_until:
            return self._keep(event, "paused")
        try:
            self.topic.send([event])
        except PublishError as exc:
            if exc.reason != "rejected":      # the topic is failing; a rejected event is this event's own
                self._paused_until = self._clock() + self.pause_seconds
            return self._keep(event, exc.reason, str(exc))
        if intended:
            try:
                self.outbox.discard(row.delivery_id)
            except StoreError as exc:      # the drain publishes it once more: same id, consumers dedupe
                emit(log, logging.WARNING, "decision_event_intent_kept", delivery_id=row.delivery_id, error=str(exc))
        return "published"

    def republish(self, resource_id: str, delivery_id: str) -> int:
        """Publish again what a delivery that died after its audit write, and maybe before its
        publish, decided: found when Event Grid's redelivery takes its event over. Same event ids,
        so a consumer that already has one drops it (at least once, as Event Grid itself delivers).
        Never raises: the redelivery decides anyway. Returns how many decisions went out again."""
        if self.history is None:
            return 0
        try:
            rows = self.history.rows_of_delivery(resource_id, delivery_id)
        except StoreError as exc:
            # the redelivery completes the event: nothing would ask again. A marker in the outbox,
            # due now, has the drain read those rows and publish them (``_recover``)
            try:
                self.outbox.add({"id": delivery_id, "subject": resource_id}, error="republish", intent=True)
                kept = True
            except StoreError:
                kept = False
            emit(log, logging.WARNING if kept else logging.ERROR, "decision_event_republish_deferred" if kept
                 else "decision_event_republish_skipped", delivery_id=delivery_id, error=str(exc))
            return 0
        except (KeyError, TypeError, ValueError) as exc:     # a row that does not read back
            emit(log, logging.WARNING, "decision_event_republish_skipped", delivery_id=delivery_id,
                 error=type(exc).__name__)
            return 0
        again = [row for row in rows if should_publish(row)]
        for row in again:
            self.publish(row)
        if again:
            emit(log, logging.INFO, "decision_event_republished", delivery_id=delivery_id, events=len(again))
        return len(again)

    def _keep(self, event: dict[str, Any], reason: str, detail: str = "") -> str:
        try:
            self.outbox.add(event, error=reason)
        except StoreError as exc:
            emit(log, logging.ERROR, "decision_event_lost", delivery_id=event["id"], reason=reason, error=str(exc))
            return "lost"
        # the failure itself is a WARNING; events kept while paused after it are INFO (no flood)
        emit(log, logging.INFO if reason == "paused" else logging.WARNING, "decision_event_outboxed",
             delivery_id=event["id"], reason=reason, detail=detail or None)
        return "outboxed"

    def _recover(self, item: OutboxItem) -> OutboxItem | None:
        """An intent past its hold: its worker died after deciding, or its decision ended in a
        verdict that is never published (which neither replaces nor drops the intent). Any row
        audited under its id is the decision: written again first (an intent's: no redelivery would
        complete an audit write that stored one of its two rows), then the published one is what is
        published, and None (the intent goes) when none is; a decision never audited (the worker
        died after its fix, before the audit write) is audited now, as intended. A ``republish``
        marker (no ``data``: a takeover that could not read the dead attempt's rows) is only ever
        its audited row: None when there is none to publish. Raises StoreError (it waits for the
        next run), or KeyError/TypeError/ValueError for an intent that is not a decision event."""
        event = item.event
        if self.history is None:
            return item
        rows = [r for r in self.history.rows_of_delivery(str(event.get("subject", "")), str(event["id"]))
                if r.delivery_id == event["id"]]
        if rows and "data" in event:
            # a timer's audit write may have stored the index row read here and not the day shard's
            # (the compliance report's): written again under the same keys (an upsert), it is whole
            for row in rows:
                self.history.write(row)
        published = [r for r in rows if should_publish(r)]
        if published:
            event = to_event(published[0], source=self.source)
        elif rows or "data" not in event:
            # any row under its id: the decision was audited, and its verdict is never published (a
            # fix that found the resource gone, a write refused as stale): the intent was not it
            emit(log, logging.INFO, "decision_event_recovery_empty", delivery_id=event["id"], audited=len(rows))
            return None
        else:
            self.history.write(AuditRow.from_dict(event["data"]))
        emit(log, logging.WARNING, "decision_event_recovered", delivery_id=event["id"], audited_now=not rows)
        return OutboxItem(item.key, event, item.attempts, intent=False, rejections=item.rejections)

    def drain(self, *, limit: int = 1000, max_seconds: float | None = None) -> DrainResult:
        """Deliver waiting events in batches, ``limit`` read at a time in the store's order (the
        table's: by hashed event id, not by age), and go on to the next ``limit`` while the topic
        takes them, until none are left or ``max_seconds`` ran out (checked between batches). Stop
        at the first batch the topic refuses (it is still down: the rest waits for the next run),
        but a batch it *rejects* is split down to the events it rejects, and the drain goes on
        (module doc: rejected events are parked after ``park_after`` runs). Stale intents are recovered first (``_recover``; one that cannot be, for now, waits and
        is passed over). Raises StoreError."""
        deadline = None if max_seconds is None else self._clock() + max_seconds
        result = DrainResult()
        after: str | None = None
        while True:
            page = self.outbox.list(limit) if after is None else self.outbox.list(limit, after=after)
            if page:
                after = page[-1].key              # the next read goes on after this one's last row
            go_on = self._drain_page(page, result, deadline)
            if len(page) < limit:                 # the outbox had no more due events
                break
            if not go_on:
                result.truncated = True           # time ran out or the topic refused: more may wait
                break
        if result.delivered and result.failed == result.rejected:
            self._paused_until = float("-inf")
        count = getattr(self.outbox, "parked_count", None)      # optional (OutboxStore)
        if count is not None:
            try:
                result.parked_total = count()
            except StoreError as exc:
                emit(log, logging.WARNING, "decision_outbox_parked_count_failed", error=str(exc))
        return result

    def _drain_page(self, page: list[OutboxItem], result: DrainResult, deadline: float | None) -> bool:
        """Send one read of the outbox; whether to go on (every batch went out in time)."""
        items: list[OutboxItem] = []
        for item in page:
            if item.intent:
                try:
                    recovered = self._recover(item)
                    if recovered is None:              # nothing audited to publish: the marker goes
                        self.outbox.remove(item.key)
                        continue
                    item = recovered
                except (StoreError, KeyError, TypeError, ValueError) as exc:   # it waits; the rest goes out
                    result.remaining += 1
                    emit(log, logging.WARNING, "decision_event_recovery_failed", delivery_id=item.event.get("id"),
                         error=str(exc))
                    continue
            items.append(item)
        by_id = {i.event["id"]: i for i in items}
        done = 0
        for batch in batches([i.event for i in items], size_of=lambda e: len(json.dumps(e, default=str))):
            if deadline is not None and self._clock() > deadline:
                result.remaining += len(items) - done
                return False
            chunk = [by_id[e["id"]] for e in batch]
            stop = self._deliver(chunk, result, deadline)
            done += len(chunk)
            if stop:
                result.remaining += len(items) - done
                return False
        return True

    def _deliver(self, chunk: list[OutboxItem], result: DrainResult, deadline: float | None) -> bool:
        """Send one batch and account for each of its events; a batch the topic rejects is split in
        halves, down to the events it rejects on their own (``_rejected``). Whether to stop the
        drain: the topic refused for another reason (down, throttling, auth), or time ran out."""
        try:
            self.topic.send([i.event for i in chunk])
        except PublishError as exc:
            if exc.reason != "rejected":
                for item in chunk:
                    self.outbox.failed(item, error=exc.reason)
                result.failed += len(chunk)
                result.remaining += len(chunk)
                emit(log, logging.WARNING, "decision_outbox_send_failed", reason=exc.reason, events=len(chunk),
                     detail=str(exc))
                return True
            if len(chunk) == 1:
                self._rejected(chunk[0], result, str(exc))
                return False
            emit(log, logging.WARNING, "decision_outbox_batch_rejected", events=len(chunk), detail=str(exc))
            half = len(chunk) // 2
            if self._deliver(chunk[:half], result, deadline):
                result.remaining += len(chunk) - half
                return True
            if deadline is not None and self._clock() > deadline:
                result.remaining += len(chunk) - half
                return True
            return self._deliver(chunk[half:], result, deadline)
        for item in chunk:
            self.outbox.remove(item.key)
        result.delivered += len(chunk)
        return False

    def _rejected(self, item: OutboxItem, result: DrainResult, detail: str) -> None:
        """The topic rejected this event on its own: it waits for the next run, or, rejected
        ``park_after`` times, is parked (kept, never sent again). Logged with its id, never its data."""
        times = item.rejections + 1
        park = times >= self.park_after
        self.outbox.rejected(item, park=park)
        result.failed += 1
        result.rejected += 1
        result.remaining += 1
        if park:
            result.parked += 1
        emit(log, logging.ERROR if park else logging.WARNING,
             "decision_event_parked" if park else "decision_event_rejected", delivery_id=item.event.get("id"),
             rejections=times, park_after=self.park_after, detail=detail)
