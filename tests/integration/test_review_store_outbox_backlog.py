"""The decision outbox on Azurite with a backlog larger than one read: ``TableOutbox.list`` asks the
service for due rows only and reads pages of ``limit`` rows, stopping at ``limit`` (never the
whole outbox), and one run of the ``decision_outbox`` timer delivers the whole backlog while the
emulator's topic takes it, within a budget below host.json's ``functionTimeout``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from azure.functions.timer import TimerRequest

from guardrails.adapters.outbox_tables import TableOutbox
from guardrails.triggers.decision_events import decision_outbox

pytestmark = pytest.mark.integration

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"


def _event(i: int) -> dict:
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "/guardrails/local",
            "type": "Guardrails.Decision.Violation", "subject": f"/subscriptions/x/r{i}",
            "time": "2026-11-24T10:00:00Z", "datacontenttype": "application/json",
            "data": {"verdict": "violation", "message": "x" * 300}}


class CountingTable:
    """The real TableClient; counts the rows each query hands out (lazily, as they are taken)."""

    def __init__(self, inner) -> None:
        self.inner, self.queries = inner, []

    def query_entities(self, *args, **kwargs):
        seen = {"filter": args[0] if args else kwargs.get("query_filter"), "page": kwargs.get("results_per_page"),
                "rows": 0}
        self.queries.append(seen)
        for e in self.inner.query_entities(*args, **kwargs):
            seen["rows"] += 1
            yield e

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_list_reads_due_rows_only_in_pages_and_stops_at_its_limit(harness):
    # GIVEN 1,200 due events and 30 intents still held
    h = harness([], decision_topic=True)
    box = TableOutbox(h.tables)
    for i in range(1200):
        box.add(_event(i), error="unavailable")
    for i in range(30):
        box.add(_event(i), error="intent", hold_seconds=900, intent=True)
    counting = CountingTable(box._table())
    box._table = lambda create=False: counting
    # WHEN the outbox is listed with a small and a large limit
    assert len(box.list(1)) == 1
    everything = box.list(10_000)
    # THEN each read takes no more rows than it returns: the service filtered on due_at, and the
    # pages (at most 1,000 rows) stop at the limit
    assert [(q["page"], q["rows"]) for q in counting.queries] == [(1, 1), (1000, 1200)]
    assert all("due_at le" in q["filter"] for q in counting.queries)
    assert len(everything) == 1200 and not any(i.intent for i in everything)
    # AND reads go on after a key, in key order, without overlap
    keys = [i.key for i in everything]
    assert keys == sorted(keys) and [i.key for i in box.list(50)] == keys[:50]
    assert [i.key for i in box.list(100, after=keys[49])] == keys[50:150]


def test_one_timer_run_delivers_a_backlog_larger_than_one_read(harness):
    # GIVEN 1,200 events left in the outbox by an outage, and the topic healthy again
    h = harness([], decision_topic=True)
    box = TableOutbox(h.tables)
    ids = set()
    for i in range(1200):
        event = _event(i)
        ids.add(event["id"])
        box.add(event, error="unavailable")
    publisher = h.service.publisher
    drain, budgets = publisher.drain, []

    def recording_drain(**kwargs):
        budgets.append(kwargs.get("max_seconds"))
        return drain(**kwargs)
    publisher.drain = recording_drain
    # WHEN the outbox timer runs once
    decision_outbox(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    # THEN every event went out with its id and the outbox is empty
    assert {e["id"] for e in h.emu.published_events("decisions")} == ids
    assert box.list(10_000) == []
    # AND the run had a time budget that ends before the host's functionTimeout
    hours, minutes, seconds = (int(x) for x in json.loads(HOST_JSON.read_text())["functionTimeout"].split(":"))
    assert budgets == [h.settings.sweep_max_seconds] and budgets[0] < hours * 3600 + minutes * 60 + seconds
