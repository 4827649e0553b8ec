"""DecisionPublisher.republish: what a dead delivery audited goes out again (pure, with fakes)."""

from guardrails.errors import StoreError
from guardrails.model.decision import AuditRow
from guardrails.outbox import DecisionPublisher

RID = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"


class Topic:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, events: list[dict]) -> None:
        self.sent.extend(events)


class Outbox:
    def add(self, event, *, error):
        raise AssertionError("nothing should be kept")


class History:
    def __init__(self, rows=None, fail: bool = False) -> None:
        self.rows, self.fail, self.asked = rows or [], fail, []

    def rows_of_delivery(self, resource_id: str, delivery_id: str):
        self.asked.append((resource_id, delivery_id))
        if self.fail:
            raise StoreError("Table Storage unavailable")
        return self.rows


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
    assert DecisionPublisher(topic, Outbox(), source="/s", history=History(fail=True)).republish(RID, "d1") == 0
    assert DecisionPublisher(topic, Outbox(), source="/s").republish(RID, "d1") == 0
    assert topic.sent == []
