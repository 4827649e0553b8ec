"""DecisionPublisher over in-memory fakes of its ports: the outbox drain goes on past ``limit``
while the topic takes the events (a backlog left by an outage drains in one run), stops at the
first refused batch and at its time budget, and is not held back by intents it cannot recover;
``republish`` never raises, whatever the history raises. The same drain on Azurite:
tests/integration/test_review_store_outbox_backlog.py."""

from __future__ import annotations

import json

from guardrails.errors import StoreError
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.outbox import DecisionPublisher, OutboxItem, PublishError, to_event

RID = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"


class Topic:
    """Takes events; refuses the send number ``refuse_at`` (1-based) and every later one."""

    def __init__(self, refuse_at: int | None = None, clock=None) -> None:
        self.sent: list[dict] = []
        self.sends, self.refuse_at, self.clock = 0, refuse_at, clock

    def send(self, events: list[dict]) -> None:
        self.sends += 1
        if self.clock is not None:
            self.clock[0] += 1.0                     # each send takes a second
        if self.refuse_at is not None and self.sends >= self.refuse_at:
            raise PublishError("topic answered 503")
        self.sent.extend(events)


class KeyedOutbox:
    """Like the table: items in key order, ``list`` returns at most ``limit`` due ones after ``after``."""

    def __init__(self) -> None:
        self.items: dict[str, dict] = {}
        self.reads: list[tuple[int, str | None, int]] = []

    def add(self, event, *, error, hold_seconds=0.0, intent=False):
        self.items[event["id"]] = {"event": event, "intent": intent, "due": hold_seconds <= 0}

    def list(self, limit, *, after=None):
        keys = sorted(k for k, v in self.items.items() if v["due"] and (after is None or k > after))[:limit]
        self.reads.append((limit, after, len(keys)))
        return [OutboxItem(k, self.items[k]["event"], 0, self.items[k]["intent"]) for k in keys]

    def remove(self, key):
        self.items.pop(key, None)

    def discard(self, event_id):
        self.items.pop(event_id, None)

    def failed(self, item, *, error):
        pass


class History:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def rows_of_delivery(self, resource_id, delivery_id):
        if self.error is not None:
            raise self.error
        return []

    def write(self, row):
        pass


def _row(delivery_id: str) -> AuditRow:
    return AuditRow(event_id="e-" + delivery_id, event_type="Microsoft.Resources.ResourceWriteSuccess", resource_id=RID,
                    verdict="violation", delivery_id=delivery_id, time="2026-11-24T10:00:00.000000Z",
                    violations=[ViolationRecord("storage-private@1", "r", "p", "Enabled", None, "violation")])


def _backlog(n: int, box: KeyedOutbox | None = None) -> KeyedOutbox:
    box = box or KeyedOutbox()
    for i in range(n):
        box.add(to_event(_row(f"d{i:05d}"), source="/s"), error="unavailable")
    return box


def test_one_run_drains_a_backlog_larger_than_one_read_while_the_topic_takes_it():
    # GIVEN 2,500 events left by an outage and a healthy topic
    box, topic = _backlog(2500), Topic()
    # WHEN the outbox timer drains, 1,000 read at a time
    result = DecisionPublisher(topic, box, source="/s").drain(limit=1000)
    # THEN everything goes out in one run, each read going on after the last one's final key
    assert (result.delivered, result.failed, result.remaining, result.truncated) == (2500, 0, 0, False)
    assert box.items == {} and len(topic.sent) == 2500
    assert [(lim, n) for lim, _after, n in box.reads] == [(1000, 1000), (1000, 1000), (1000, 500)]
    assert box.reads[1][1] == "d00999" and box.reads[2][1] == "d01999"


def test_the_drain_stops_at_the_first_batch_the_topic_refuses():
    box, topic = _backlog(2500), Topic(refuse_at=12)          # 10 batches of 100 per read: 2nd read, 2nd batch
    result = DecisionPublisher(topic, box, source="/s").drain(limit=1000)
    assert (result.delivered, result.failed, result.remaining, result.truncated) == (1100, 100, 900, True)
    assert len(box.items) == 1400 and len(box.reads) == 2


def test_the_drain_stops_itself_at_its_time_budget():
    clock = [0.0]
    box, topic = _backlog(2500), Topic(clock=clock)
    pub = DecisionPublisher(topic, box, source="/s", clock=lambda: clock[0])
    result = pub.drain(limit=1000, max_seconds=14.5)          # a send takes 1 s: 15 batches, then it stops
    assert (result.delivered, result.failed, result.truncated) == (1500, 0, True)
    assert result.remaining == 500 and len(box.items) == 1000


def test_intents_that_cannot_be_recovered_now_do_not_hold_back_the_events_after_them():
    # GIVEN a full read of stale intents whose history is unreadable, then ordinary events
    box = KeyedOutbox()
    for i in range(10):
        box.add(to_event(_row(f"a{i}"), source="/s"), error="intent", intent=True)
    _backlog(5, box)
    topic = Topic()
    pub = DecisionPublisher(topic, box, source="/s", history=History(StoreError("Table Storage unavailable")))
    # WHEN the drain reads 10 at a time
    result = pub.drain(limit=10)
    # THEN the intents wait and the events behind them go out in the same run
    assert (result.delivered, result.remaining) == (5, 10)
    assert sorted(e["id"] for e in topic.sent) == [f"d{i:05d}" for i in range(5)]
    assert sorted(box.items) == [f"a{i}" for i in range(10)]


def test_republish_never_raises_whatever_reading_the_history_raises():
    for error in (json.JSONDecodeError("Unterminated string", "[{", 2), TypeError("bad row"), KeyError("verdict"),
                  StoreError("Table Storage unavailable")):
        topic = Topic()
        pub = DecisionPublisher(topic, KeyedOutbox(), source="/s", history=History(error))
        assert pub.republish(RID, "d1") == 0
        assert topic.sent == []
