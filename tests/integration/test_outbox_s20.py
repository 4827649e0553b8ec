"""Review fix (sweep 20): an event the decision topic rejects no longer blocks the outbox. On Azurite
and the emulator's topic (real ``azure-eventgrid`` client), through the ``decision_outbox`` timer:
a batch the topic answers 400 is split down to the event it rejects, every other event goes out,
the rejected one is retried on later runs and, rejected alone 5 times, parked: kept in the table,
never listed again, logged at ERROR with its id only, and counted in each run's result."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from azure.functions.timer import TimerRequest

from guardrails.adapters.outbox_tables import TableOutbox
from guardrails.triggers.decision_events import decision_outbox

pytestmark = pytest.mark.integration

SECRET = "do-not-log-this-payload"


def _event(i: int, *, bad: bool = False) -> dict:
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "/guardrails/local",
            # the topic answers 400 InputJsonInvalid for a batch holding an event without a type
            "type": "" if bad else "Guardrails.Decision.Violation", "subject": f"/subscriptions/x/r{i}",
            "time": "2026-11-24T10:00:00Z", "datacontenttype": "application/json",
            "data": {"verdict": "violation", "message": SECRET if bad else "x"}}


def _runs(caplog) -> list[dict]:
    out = []
    for rec in caplog.records:
        try:
            d = json.loads(rec.getMessage())
        except ValueError:
            continue
        if d.get("event") == "decision_outbox_run":
            out.append(d)
    return out


def _run():
    decision_outbox(TimerRequest(past_due=False, schedule_status={}, schedule={}))


def test_a_rejected_event_does_not_block_the_others_and_is_parked_after_five_runs(harness, caplog):
    # GIVEN 250 outboxed events, one of which the topic rejects (400 for any batch holding it)
    h = harness([], decision_topic=True)
    box = TableOutbox(h.tables)
    events = [_event(i, bad=(i == 123)) for i in range(250)]
    bad = events[123]["id"]
    for e in events:
        box.add(e, error="unavailable")
    caplog.set_level(logging.INFO, logger="guardrails")
    # WHEN the outbox timer runs once
    _run()
    # THEN every other event went out with its id; the rejected one waits, counted
    published = [e["id"] for e in h.emu.published_events("decisions")]
    assert sorted(published) == sorted(e["id"] for e in events if e["id"] != bad)
    [item] = box.list(1000)
    assert (item.event["id"], item.attempts, item.rejections) == (bad, 1, 1)
    first = _runs(caplog)[-1]
    assert (first["delivered"], first["failed"], first["rejected"], first["parked"], first["parked_total"]) == \
        (249, 1, 1, 0, 0)
    # WHEN four more runs find it rejected alone
    for _ in range(4):
        _run()
    # THEN it is parked: kept in the table, no longer listed or sent, counted in every run after
    assert box.list(1000) == [] and box.parked_count() == 1
    entity = box._table().get_entity(TableOutbox.PARTITION, box._key(bad))
    assert entity["parked"] is True and entity["rejections"] == 5 and entity["event_id"] == bad
    runs = _runs(caplog)
    assert [r["parked"] for r in runs[-4:]] == [0, 0, 0, 1] and runs[-1]["parked_total"] == 1
    _run()
    assert (_runs(caplog)[-1]["failed"], _runs(caplog)[-1]["parked_total"]) == (0, 1)
    assert len(h.emu.published_events("decisions")) == 249
    # AND the park is an ERROR naming the event's id, never its data
    parked = [r for r in caplog.records if "decision_event_parked" in r.getMessage()]
    assert len(parked) == 1 and parked[0].levelno == logging.ERROR
    assert bad in parked[0].getMessage()
    assert not any(SECRET in r.getMessage() for r in caplog.records)


def test_an_event_added_again_after_being_parked_is_tried_afresh(harness):
    h = harness([], decision_topic=True)
    box = TableOutbox(h.tables)
    event = _event(1, bad=True)
    box.add(event, error="rejected")
    [item] = box.list(10)
    box.rejected(item, park=True)
    assert box.list(10) == [] and box.parked_count() == 1
    box.add(event, error="rejected")          # the same id outboxed again (a republish)
    [again] = box.list(10)
    assert (again.attempts, again.rejections) == (0, 0) and box.parked_count() == 0


def test_a_topic_outage_still_stops_the_drain_at_the_first_refused_batch(harness):
    # GIVEN a topic that answers 503: not the events' fault, nothing is split or parked
    h = harness([], decision_topic=True)
    box = TableOutbox(h.tables)
    for i in range(150):
        box.add(_event(i), error="unavailable")
    h.emu.add_fault(path_regex="/topics/decisions/", status=503)
    result = h.service.publisher.drain()
    assert (result.delivered, result.failed, result.rejected, result.parked) == (0, 100, 0, 0)
    assert result.remaining == 150 and all(i.rejections == 0 for i in box.list(1000))


# ---- the same drain over in-memory fakes of the ports: how a rejected batch is split -------------
from guardrails.model.decision import AuditRow  # noqa: E402
from guardrails.outbox import DecisionPublisher, OutboxItem, PublishError, to_event  # noqa: E402


class PoisonTopic:
    """Rejects (400) any batch holding a poisoned id; answers 503 from send number ``down_at`` on."""

    def __init__(self, poison: set[str], down_at: int | None = None) -> None:
        self.poison, self.down_at, self.sends, self.sent = poison, down_at, 0, []

    def send(self, events):
        self.sends += 1
        if self.down_at is not None and self.sends >= self.down_at:
            raise PublishError("decision topic answered 503", reason="unavailable")
        if any(e["id"] in self.poison for e in events):
            raise PublishError("decision topic answered 400 BadRequest", reason="rejected")
        self.sent += [e["id"] for e in events]


class MemoryOutbox:
    def __init__(self) -> None:
        self.items: dict[str, dict] = {}

    def add(self, event, *, error, hold_seconds=0.0, intent=False):
        self.items[event["id"]] = {"event": event, "attempts": 0, "rejections": 0, "parked": False}

    def list(self, limit, *, after=None):
        keys = sorted(k for k, v in self.items.items() if not v["parked"] and (after is None or k > after))[:limit]
        return [OutboxItem(k, self.items[k]["event"], self.items[k]["attempts"], False, self.items[k]["rejections"])
                for k in keys]

    def remove(self, key):
        self.items.pop(key, None)

    def discard(self, event_id):
        self.items.pop(event_id, None)

    def failed(self, item, *, error):
        self.items[item.key]["attempts"] += 1

    def rejected(self, item, *, park):
        it = self.items[item.key]
        it["attempts"], it["rejections"], it["parked"] = it["attempts"] + 1, it["rejections"] + 1, park


def _box(n: int) -> MemoryOutbox:
    box = MemoryOutbox()
    for i in range(n):
        box.add({"id": f"e{i:03d}", "data": {}}, error="unavailable")
    return box


def test_a_rejected_batch_is_split_down_to_the_events_it_rejects():
    box, topic = _box(100), PoisonTopic({"e010", "e077"})
    result = DecisionPublisher(topic, box, source="/s").drain()
    assert sorted(topic.sent) == [f"e{i:03d}" for i in range(100) if i not in (10, 77)]
    assert (result.delivered, result.failed, result.rejected, result.remaining) == (98, 2, 2, 2)
    assert result.parked_total is None                   # this store does not count its parked events
    assert topic.sends <= 2 * 2 * 7 + 1                  # halves: about 2 log2(100) sends per poisoned event
    assert sorted(box.items) == ["e010", "e077"] and {v["rejections"] for v in box.items.values()} == {1}


def test_an_outage_while_splitting_stops_the_drain_as_before():
    box, topic = _box(300), PoisonTopic({"e000"}, down_at=3)      # 1st batch rejected, then the topic is down
    result = DecisionPublisher(topic, box, source="/s").drain()
    assert result.delivered == 0 and result.rejected == 0 and result.remaining == 300
    assert len(box.items) == 300 and not any(v["parked"] for v in box.items.values())


def test_park_after_is_counted_per_event_rejected_alone():
    box, topic = _box(3), PoisonTopic({"e001"})
    pub = DecisionPublisher(topic, box, source="/s", park_after=2)
    assert (pub.drain().parked, pub.drain().parked) == (0, 1)
    assert box.items["e001"]["parked"] and pub.drain().failed == 0 and sorted(topic.sent) == ["e000", "e002"]


def test_a_rejected_event_does_not_pause_direct_publishing():
    rid = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/x/y/z"
    rows = [AuditRow(event_id=f"ev{i}", event_type="t", resource_id=rid, verdict="violation", delivery_id=f"d{i}",
                     time="2026-11-24T10:00:00Z") for i in range(2)]
    box, topic = MemoryOutbox(), PoisonTopic({"d0"})
    pub = DecisionPublisher(topic, box, source="/s", clock=lambda: 0.0)
    assert [pub.publish(r) for r in rows] == ["outboxed", "published"]
    assert topic.sent == ["d1"] and list(box.items) == ["d0"] and to_event(rows[0], source="/s")["id"] == "d0"
