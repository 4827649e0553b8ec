"""DecisionPublisher's recovery from a worker that died around its publish (pure, with fakes of
the project's own ports): ``republish`` for a redelivered event, intents for timer decisions.
The same paths run end to end on Azurite and the emulator's topic in
tests/integration/test_decision_events.py and test_delivery.py."""

from guardrails.errors import StoreError
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.outbox import DecisionPublisher, OutboxItem, PublishError, to_event

RID = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"


class Topic:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, events: list[dict]) -> None:
        self.sent.extend(events)


class Outbox:
    def add(self, event, *, error, hold_seconds=0.0, intent=False):
        raise AssertionError("nothing should be kept")


class MemoryOutbox:
    """Items by event id, with their hold; ``list`` shows the due ones (``now`` set by the test)."""

    def __init__(self, fail: bool = False) -> None:
        self.items: dict[str, dict] = {}
        self.now, self.fail, self.failures = 0.0, fail, []

    def add(self, event, *, error, hold_seconds=0.0, intent=False):
        if self.fail:
            raise StoreError("Table Storage unavailable")
        self.items[event["id"]] = {"event": event, "due": self.now + hold_seconds, "intent": intent, "error": error}

    def list(self, limit):
        return [OutboxItem(k, v["event"], 0, v["intent"]) for k, v in self.items.items() if v["due"] <= self.now][:limit]

    def remove(self, key):
        self.items.pop(key, None)

    def discard(self, event_id):
        if self.fail:
            raise StoreError("Table Storage unavailable")
        self.items.pop(event_id, None)

    def failed(self, item, *, error):
        self.failures.append(item)


class History:
    def __init__(self, rows=None, fail: bool = False) -> None:
        self.rows, self.fail, self.asked, self.written = rows or [], fail, [], []

    def rows_of_delivery(self, resource_id: str, delivery_id: str):
        self.asked.append((resource_id, delivery_id))
        if self.fail:
            raise StoreError("Table Storage unavailable")
        return self.rows

    def write(self, row):
        self.written.append(row)
        self.rows.append(row)


class DownTopic:
    def send(self, events):
        raise PublishError("topic answered 503")


def _row(verdict: str, delivery_id: str) -> AuditRow:
    return AuditRow(event_id="e1", event_type="Microsoft.Resources.ResourceWriteSuccess", resource_id=RID,
                    verdict=verdict, delivery_id=delivery_id, time="2026-11-24T10:00:00.000000Z")


def test_the_dead_deliverys_published_verdicts_go_out_again_under_their_own_ids():
    topic = Topic()
    history = History([_row("remediated", "d1"), _row("shadow", "d1-shadow")])
    pub = DecisionPublisher(topic, Outbox(), source="/guardrails/test", history=history)
    assert pub.republish(RID, "d1") == 1
    assert [e["id"] for e in topic.sent] == ["d1"] and history.asked == [(RID, "d1")]


def test_an_unreadable_history_or_none_configured_republishes_nothing_and_never_raises():
    topic = Topic()
    assert DecisionPublisher(topic, MemoryOutbox(), source="/s", history=History(fail=True)).republish(RID, "d1") == 0
    assert DecisionPublisher(topic, MemoryOutbox(fail=True), source="/s",
                             history=History(fail=True)).republish(RID, "d1") == 0
    assert DecisionPublisher(topic, Outbox(), source="/s").republish(RID, "d1") == 0
    assert topic.sent == []


def test_a_takeover_that_cannot_read_the_dead_attempts_rows_leaves_a_marker_the_drain_publishes_from():
    """The redelivery completes the event, so nothing would ask again: a marker (the dead attempt's
    id and resource, no data), due now, has the drain publish what that attempt audited."""
    topic, box, history = Topic(), MemoryOutbox(), History(fail=True)
    pub = DecisionPublisher(topic, box, source="/s", history=history)
    assert pub.republish(RID, "d1") == 0
    assert box.items["d1"]["event"] == {"id": "d1", "subject": RID} and box.items["d1"]["intent"]
    assert box.items["d1"]["due"] <= box.now
    history.fail, history.rows = False, [_row("remediated", "d1")]
    result = pub.drain()
    assert [e["id"] for e in topic.sent] == ["d1"] and topic.sent[0]["type"] == "Guardrails.Decision.Remediated"
    assert box.items == {} and result.delivered == 1 and history.written == []


def test_a_marker_whose_dead_attempt_audited_nothing_published_is_dropped_never_audited():
    topic, box, history = Topic(), MemoryOutbox(), History(fail=True)
    pub = DecisionPublisher(topic, box, source="/s", history=history)
    pub.republish(RID, "d1")
    history.fail, history.rows = False, [_row("compliant", "d1")]
    result = pub.drain()
    assert topic.sent == [] and box.items == {} and history.written == []
    assert result.delivered == 0 and result.remaining == 0


def test_a_marker_the_history_still_cannot_read_waits_for_the_next_run():
    topic, box, history = Topic(), MemoryOutbox(), History(fail=True)
    pub = DecisionPublisher(topic, box, source="/s", history=history)
    pub.republish(RID, "d1")
    result = pub.drain()
    assert topic.sent == [] and "d1" in box.items and result.remaining == 1


# ---- intents: timer decisions -----------------------------------------------------------------------
def _fixed(delivery_id: str = "t1") -> AuditRow:
    row = _row("remediated", delivery_id)
    row.violations = [ViolationRecord("storage-private@1", "public-network-access-disabled",
                                      "properties.publicNetworkAccess", "Enabled", "Disabled", "remediated")]
    return row


def test_an_intent_is_kept_held_before_the_audit_and_dropped_once_published():
    topic, box = Topic(), MemoryOutbox()
    pub = DecisionPublisher(topic, box, source="/s", history=History(), intent_hold_seconds=900)
    assert pub.intend(_row("compliant", "c1")) is False and box.items == {}      # never published: no intent
    row = _fixed()
    assert pub.intend(row) is True
    assert box.items["t1"]["intent"] and box.items["t1"]["due"] == 900 and box.list(10) == []   # held
    assert pub.publish(row, intended=True) == "published"
    assert [e["id"] for e in topic.sent] == ["t1"] and box.items == {}


def test_a_failed_publish_turns_the_intent_into_an_outboxed_event_due_now():
    box = MemoryOutbox()
    pub = DecisionPublisher(DownTopic(), box, source="/s", history=History())
    row = _fixed()
    pub.intend(row)
    assert pub.publish(row, intended=True) == "outboxed"
    (item,) = box.list(10)
    assert item.intent is False and box.items["t1"]["error"] != "intent"


def test_an_outbox_that_fails_costs_the_intent_but_never_the_decision():
    topic = Topic()
    pub = DecisionPublisher(topic, MemoryOutbox(fail=True), source="/s", history=History())
    row = _fixed()
    assert pub.intend(row) is False
    assert pub.publish(row, intended=True) == "published"          # the discard failing is logged only
    assert [e["id"] for e in topic.sent] == ["t1"]


def test_a_stale_intent_publishes_the_row_audited_under_its_id():
    topic, box = Topic(), MemoryOutbox()
    audited = _fixed()
    history = History([audited])
    pub = DecisionPublisher(topic, box, source="/s", history=history, intent_hold_seconds=60)
    intended = _fixed()
    intended.message = "as intended"            # the audited row is the truth
    pub.intend(intended)
    assert pub.drain().delivered == 0           # held: its worker may still publish it
    box.now = 61
    assert pub.drain().delivered == 1
    assert topic.sent == [to_event(audited, source="/s")] and history.written == [audited] and box.items == {}


def test_a_stale_intent_never_audited_is_audited_as_intended_then_published():
    topic, box, history = Topic(), MemoryOutbox(), History()
    pub = DecisionPublisher(topic, box, source="/s", history=history, intent_hold_seconds=60)
    row = _fixed()
    pub.intend(row)
    box.now = 61
    assert pub.drain().delivered == 1
    (written,) = history.written
    assert written.to_dict() == row.to_dict() and topic.sent == [to_event(row, source="/s")]


def test_a_recovered_intent_the_topic_refuses_stays_as_an_ordinary_outboxed_event():
    box, history = MemoryOutbox(), History()
    pub = DecisionPublisher(DownTopic(), box, source="/s", history=history, intent_hold_seconds=60)
    pub.intend(_fixed())
    box.now = 61
    result = pub.drain()
    assert (result.delivered, result.failed) == (0, 1)
    (failed,) = box.failures
    assert failed.intent is False and len(history.written) == 1    # audited once; the next run only sends


def test_an_intent_that_cannot_be_recovered_now_waits_and_the_rest_still_goes_out():
    topic, box = Topic(), MemoryOutbox()
    pub = DecisionPublisher(topic, box, source="/s", history=History(fail=True), intent_hold_seconds=60)
    pub.intend(_fixed("t1"))
    box.add(to_event(_fixed("t2"), source="/s"), error="unavailable")       # an ordinary outboxed event
    box.now = 61
    result = pub.drain()
    assert (result.delivered, result.remaining) == (1, 1)
    assert [e["id"] for e in topic.sent] == ["t2"] and box.items["t1"]["intent"]
