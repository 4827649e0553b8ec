"""guardrails.replay over in-memory fakes of its ports (container, state, summary store, service):
per-event progress, giving up like Event Grid, unreadable blobs audited, Table Storage failures end
the run without losing progress. The same flow on Azurite + the emulator is in
tests/integration/test_deadletter_replay.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from guardrails.adapters.deadletters import BlobInfo
from guardrails.deadletter import MAX_BLOB_BYTES
from guardrails.errors import ArmError, IdempotencyError, StoreError
from guardrails.replay import RETRY_MAX, GIVE_UP_AFTER, MIN_ATTEMPTS, DeadLetterReplayer

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
S = "A/GUARDRAILS-RESOURCE-EVENTS"       # blobs of the deployed resource event subscription (replay rejects others)


class Container:
    name = "eventgrid-deadletter"

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs, self.reads = dict(blobs), []

    def list(self):
        return [BlobInfo(n, len(d), f"2026-11-25T0{i}:00:00Z") for i, (n, d) in enumerate(self.blobs.items())]

    def read(self, name):
        self.reads.append(name)
        return self.blobs.get(name)


class State:
    def __init__(self) -> None:
        self.d: dict[str, dict] = {}
        self.fail_reads = False

    def deadletter_states(self):
        if self.fail_reads:
            raise StoreError("table storage read dead-letter state failed (ServiceRequestError, status None)")
        return {k: json.loads(json.dumps(v)) for k, v in self.d.items()}

    def deadletter_outcomes(self):
        return {k: v["outcome"] for k, v in self.deadletter_states().items()}

    def deadletter_state(self, blob):
        return self.deadletter_states().get(blob)

    def delete_deadletter_states(self, blobs):
        for b in blobs:
            self.d.pop(b, None)

    def set_deadletter_state(self, blob, state):
        self.d[blob] = json.loads(json.dumps(state))

    def delete_deadletter_state(self, blob):
        self.d.pop(blob, None)


class Store:
    def __init__(self) -> None:
        self.rows = []

    def write(self, summary):
        self.rows.append(summary)


class Row:
    def __init__(self, eid, verdict="compliant") -> None:
        self.event_id, self.event_type, self.verdict, self.reason, self.delivery_id = eid, "t", verdict, "", "d-" + eid


class Service:
    def __init__(self, failing=(), table_down_at=None) -> None:
        self.handled, self.unreadable = [], []
        self.failing, self.table_down_at = set(failing), table_down_at

    def handle_event(self, raw, *, said_by=None):
        self.said_by = said_by
        eid = raw["id"] if isinstance(raw, dict) else "?"
        if eid == self.table_down_at:
            raise StoreError("table storage write audit failed (ServiceRequestError, status None)")
        if eid in self.failing:
            raise ArmError("ARM GET failed: 503")
        if eid == "busy":
            raise IdempotencyError("claim held by another delivery")
        self.handled.append(eid)
        return Row(eid)

    def record_unreadable_dead_letter(self, container, blob, why, *, run_id):
        self.unreadable.append((blob, why))
        return Row("deadletter:" + blob, "invalid")


class Clock:
    def __init__(self) -> None:
        self.t, self.wall = 0.0, T0

    def __call__(self) -> float:
        return self.t


def _events(*ids):
    return json.dumps([{"id": i, "eventType": "Microsoft.Resources.ResourceWriteSuccess"} for i in ids]).encode()


def _replayer(blobs, service, *, max_seconds=540.0, state=None, tick=None):
    clock = Clock()
    if tick is not None:
        original = service.handle_event

        def timed(raw, **kw):
            clock.t += tick
            return original(raw, **kw)
        service.handle_event = timed
    r = DeadLetterReplayer(service, Container(blobs), state or State(), Store(), max_seconds=max_seconds,
                           clock=clock, wall_clock=lambda: clock.wall)
    return r, clock


def test_one_failing_event_does_not_hold_back_the_rest_and_is_given_up_like_event_grid():
    svc = Service(failing={"bad"})
    r, clock = _replayer({f"{S}/2026/11/25/3/g.json": _events("bad", "good1", "good2")}, svc)
    first = r.run()
    assert svc.handled == ["good1", "good2"] and first.seen == 2 and first.failed == 1
    st = r.state.d[f"{S}/2026/11/25/3/g.json"]
    assert (st["outcome"], st["done"], list(st["failing"])) == ("retrying", "1-2", ["0"])
    for _ in range(MIN_ATTEMPTS + 2):          # retried every run, the done ones never again
        clock.wall += timedelta(hours=2)
        assert r.run().seen == 0
    assert svc.handled == ["good1", "good2"] and r.state.d[f"{S}/2026/11/25/3/g.json"]["outcome"] == "retrying"
    clock.wall = T0 + GIVE_UP_AFTER            # a day of failing, as Event Grid retries
    last = r.run()
    st = r.state.d[f"{S}/2026/11/25/3/g.json"]
    assert st["outcome"] == "gave_up" and st["abandoned"] == "0" and st["failing"] == {}
    assert any("gave up" in e for e in last.errors)
    assert [e["verdict"] for e in st["events"]] == ["compliant", "compliant", "gave_up"]
    assert r.run().seen == 0 and r.container.reads.count(f"{S}/2026/11/25/3/g.json") == MIN_ATTEMPTS + 4


def test_a_short_outage_gives_up_nothing():
    svc = Service(failing={"e1"})
    r, clock = _replayer({f"{S}/2026/11/25/3/g.json": _events("e1")}, svc)
    for _ in range(20):                        # many runs inside 24 h
        clock.wall += timedelta(minutes=15)
        r.run()
    assert r.state.d[f"{S}/2026/11/25/3/g.json"]["outcome"] == "retrying"
    svc.failing.clear()
    r.run()                                    # backing off: not tried yet (replay.next_try)
    assert r.state.d[f"{S}/2026/11/25/3/g.json"]["outcome"] == "retrying"
    clock.wall += RETRY_MAX
    r.run()
    assert r.state.d[f"{S}/2026/11/25/3/g.json"]["outcome"] == "replayed" and svc.handled == ["e1"]


def test_blobs_the_parser_cannot_use_are_audited_invalid_and_block_nothing():
    svc = Service()
    blobs = {f"{S}/2026/11/25/0/deep.json": b"[" * 100000 + b"]" * 100000,
             f"{S}/2026/11/25/1/digits.json": json.dumps([{"id": "x1", "eventType": "Microsoft.Resources.ResourceWriteSuccess",
                                                           "deliveryAttempts": "\u00b2"}]).encode(),
             f"{S}/2026/11/25/2/long.json": b"[" + b"9" * 5000 + b"]",
             f"{S}/2026/11/25/3/ok.json": _events("after")}
    r, _ = _replayer(blobs, svc)
    summary = r.run()
    assert svc.handled == ["x1", "after"]                  # a strange number is no reason to drop the event
    assert [b for b, _ in svc.unreadable] == [f"{S}/2026/11/25/0/deep.json", f"{S}/2026/11/25/2/long.json"]
    assert r.state.d[f"{S}/2026/11/25/0/deep.json"]["outcome"] == "unreadable"
    assert summary.verdicts.get("invalid") == 2
    assert r.run().failed == 0 and len(svc.unreadable) == 2           # reported and audited once


def test_an_oversize_blob_is_not_downloaded():
    class Big(Container):
        def list(self):
            return [BlobInfo(f"{S}/2026/1/1/0/big.json", MAX_BLOB_BYTES + 1, "2026-01-01T00:00:00Z")]
    svc = Service()
    r = DeadLetterReplayer(svc, Big({}), State(), Store(), clock=Clock(), wall_clock=lambda: T0)
    r.run()
    assert r.container.reads == [] and svc.unreadable[0][1].startswith(f"{MAX_BLOB_BYTES + 1} bytes")


def test_table_storage_down_ends_the_run_and_the_next_run_resumes_where_it_stopped():
    svc = Service(table_down_at="e3")
    blobs = {f"{S}/2026/11/25/0/a.json": _events("e1", "e2", "e3", "e4"), f"{S}/2026/11/25/1/b.json": _events("f1")}
    r, _ = _replayer(blobs, svc)
    run = r.run()
    assert svc.handled == ["e1", "e2"] and run.failed == 1           # b.json not even read
    assert r.container.reads == [f"{S}/2026/11/25/0/a.json"]
    assert r.state.d[f"{S}/2026/11/25/0/a.json"]["done"] == "0-1"
    svc.table_down_at = None
    r.run()
    assert svc.handled == ["e1", "e2", "e3", "e4", "f1"]              # nothing handled twice


def test_another_delivery_holding_the_event_is_retried_not_a_run_stopper():
    svc = Service()
    r, _ = _replayer({f"{S}/2026/11/25/0/a.json": _events("busy", "e2")}, svc)
    r.run()
    assert svc.handled == ["e2"] and r.state.d[f"{S}/2026/11/25/0/a.json"]["outcome"] == "retrying"


def test_the_time_budget_keeps_progress_inside_a_blob():
    svc = Service()
    r, clock = _replayer({f"{S}/2026/11/25/0/a.json": _events(*(f"e{i}" for i in range(10)))}, svc,
                         max_seconds=3.5, tick=1.0)
    first = r.run()
    assert first.truncated and svc.handled == ["e0", "e1", "e2", "e3"]
    assert r.state.d[f"{S}/2026/11/25/0/a.json"]["outcome"] == "retrying"
    while r.state.d[f"{S}/2026/11/25/0/a.json"]["outcome"] != "replayed":
        r.run()
    assert svc.handled == [f"e{i}" for i in range(10)]


def test_limit_dry_run_and_a_state_store_failure():
    svc = Service()
    blobs = {f"{S}/2026/11/25/{i}/x.json": _events(f"e{i}") for i in range(3)}
    r, _ = _replayer(blobs, svc)
    dry = r.run(dry_run=True)
    assert (dry.seen, svc.handled, r.state.d) == (3, [], {})
    assert r.run(limit=2).seen == 2 and svc.handled == ["e0", "e1"]
    r.state.fail_reads = True
    broken = r.run()
    assert broken.failed == 1 and "dead-letter state" in broken.errors[0] and r.store.rows[-1] is not None
    r.state.fail_reads = False
    r.run()
    assert svc.handled == ["e0", "e1", "e2"]
