"""Dead-letter review (session 25), over the in-memory fakes of tests/unit/test_replay.py:

1. the replay acted on any blob in the container, whoever wrote it: only blobs under the deployed
   event subscriptions' dead-letter prefixes, holding only the event types each subscription
   delivers, are replayed; anything else is one audited ``invalid`` row (``not_deliverable_here``),
   never acted on, never retried; in the report a delete event's time in the future is not trusted
   over its row's time;
2. a run's clean-up of gone blobs' states ignored its time budget, one delete at a time: batched and
   bounded now, after the replay; a run reads each blob's outcome alone, not every whole state row;
3. a run killed half way through a blob kept no progress: saved every ``SAVE_EVERY_EVENTS`` events
   or ``SAVE_EVERY_SECONDS``;
4. ``deadletter retry BLOB`` forgot the events already handled: only the given-up ones are retried.
"""

from __future__ import annotations

import json
from argparse import Namespace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from guardrails.deadletter import from_ranges, parse_blob, to_ranges
from guardrails.model.decision import AuditRow
from guardrails.replay import GIVE_UP_AFTER, MIN_ATTEMPTS, DeadLetterReplayer
from guardrails.report import build_report
from tests.unit.test_replay import T0, Clock, Container, Service, State, Store

WRITE = "Microsoft.Resources.ResourceWriteSuccess"
DELETE = "Microsoft.Resources.ResourceDeleteSuccess"
SECRET = "Microsoft.KeyVault.SecretNewVersionCreated"
RES = "EVGT-GUARDRAILS-0000/GUARDRAILS-RESOURCE-EVENTS"
KV = "EVGT-GUARDRAILS-KVPROD/GUARDRAILS-KEYVAULT-EVENTS"
DEL = "EVGT-GUARDRAILS-0000/GUARDRAILS-RESOURCE-EVENTS-DELETES"
REJECTED_REASON = "not_deliverable_here"        # replay.REJECTED_REASON
TRANSACTION_ROWS = 100                          # an entity-group transaction's limit


class AuditingService(Service):
    """The fake service, with what ``record_rejected_dead_letter`` uses of the real one."""

    settings = SimpleNamespace(time_budget_seconds=20.0)

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.rows: list[AuditRow] = []

    def _clock(self) -> float:
        return 0.0

    def _wall(self) -> datetime:
        return T0

    def _finish(self, ctx, row, verdict, reason, message, *, timer=False):
        row.verdict, row.reason, row.message = verdict, reason, message
        assert timer
        self.rows.append(row)
        return row

    def record_unreadable_dead_letter(self, container, blob, why, *, run_id, **rejected):
        """A rejected blob's: the real service's (it builds the row and calls ``_finish`` above)."""
        if not rejected:
            return super().record_unreadable_dead_letter(container, blob, why, run_id=run_id)
        from guardrails.timer_decisions import TimerDecisions
        return TimerDecisions.record_unreadable_dead_letter(self, container, blob, why, run_id=run_id, **rejected)


def _blob(*events) -> bytes:
    return json.dumps(list(events)).encode()


def _ev(eid: str, etype: str = WRITE) -> dict:
    return {"id": eid, "eventType": etype, "subject": "/subscriptions/x", "data": {}}


def _replayer(blobs: dict[str, bytes], svc=None, *, state=None, clock=None, max_seconds=540.0):
    svc = svc or AuditingService()
    clock = clock or Clock()
    return DeadLetterReplayer(svc, Container(blobs), state or State(), Store(), max_seconds=max_seconds, clock=clock,
                              wall_clock=lambda: clock.wall), svc, clock


# ---- 1. only what Event Grid can have written for a guardrails event subscription ----------------------
def test_a_blob_outside_the_deployed_event_subscriptions_is_rejected_unread_and_audited_once():
    # GIVEN a blob no guardrails event subscription has, holding an event no subscription delivers
    forged = "ANYTHING/NOT-OURS/2026/11/25/3/0b5c6a1e.json"
    exposure = _ev("forged-1", "Guardrails.SecretExposed")
    r, svc, _ = _replayer({forged: _blob(exposure), f"{RES}/2026/11/25/4/ok.json": _blob(_ev("real-1"))})
    # WHEN the replay runs
    first = r.run()
    # THEN it is not downloaded, nothing in it is handed on, the real blob next to it is replayed
    assert r.container.reads == [f"{RES}/2026/11/25/4/ok.json"] and svc.handled == ["real-1"]
    # AND one invalid row names the blob, with its own reason
    [row] = svc.rows
    assert (row.verdict, row.reason, row.event_id, row.event_type) == (
        "invalid", REJECTED_REASON, f"deadletter:{forged}", "Guardrails.DeadLetter")
    assert row.resource_id == f"/deadletter/eventgrid-deadletter/{forged}" and "not replayed" in row.message
    assert r.state.d[forged]["outcome"] == "rejected" and first.verdicts.get("invalid") == 1
    assert any(forged in e and "not written by Event Grid" in e for e in first.errors)
    # AND it is settled: no second row, no second error, never retried
    again = r.run()
    assert (len(svc.rows), again.failed, svc.handled) == (1, 0, ["real-1"])


@pytest.mark.parametrize("name, events", [
    (f"{KV}/2026/11/25/3/a.json", [_ev("kv-1", SECRET), _ev("forged-2", "Guardrails.SecretExposed")]),
    (f"{RES}/2026/11/25/3/b.json", [_ev("w-1"), _ev("kv-2", SECRET)]),          # a vault event, resource path
    (f"{DEL}/2026/11/25/3/c.json", [_ev("w-2")]),                                # a write, the deletions' path
    (f"{KV}/2026/11/25/3/d.json", [_ev("d-1", DELETE)]),
    (f"{RES}/2026/11/25/3/e.json", [{"id": "no-type", "data": {}}]),
])
def test_an_event_its_subscription_never_delivers_rejects_the_whole_blob(name, events):
    r, svc, _ = _replayer({name: _blob(*events)})
    r.run()
    assert svc.handled == [] and [row.reason for row in svc.rows] == [REJECTED_REASON]
    assert r.state.d[name]["outcome"] == "rejected" and "does not deliver" in r.state.d[name]["detail"]
    assert "Guardrails.SecretExposed" not in r.state.d[name]["detail"]           # position, never content


def test_what_each_deployed_subscription_delivers_is_replayed_whatever_the_topic_or_case():
    blobs = {f"{RES}/2026/11/25/0/w.json": _blob(_ev("w"), _ev("f", "Microsoft.Resources.ResourceWriteFailure")),
             "evgt-guardrails-ws/guardrails-resource-events/2026/11/25/1/m.json":
                 _blob(_ev("m", "Microsoft.MachineLearningServices.ModelRegistered")),
             f"{DEL}/2026/11/25/2/d.json": _blob(_ev("d", DELETE)),
             f"{KV}/2026/11/25/3/k.json": _blob(_ev("k", SECRET), "not-an-event"),   # a non-object: invalid as ever
             f"{RES}/2026/11/25/4/c.json": _blob({"specversion": "1.0", "id": "ce", "type": WRITE, "source": "/s"})}
    r, svc, _ = _replayer(blobs)
    summary = r.run()
    assert svc.handled == ["w", "f", "m", "d", "k", "?", "ce"] and svc.rows == [] and summary.failed == 0


def test_the_accepted_names_and_types_are_what_infra_deploys():
    """``infra/modules/topic.bicep`` names a subscription 'guardrails-' + its function ('_' as '-'),
    the deletions' twin '-deletes'; each delivers its filter's types, and ``deliverable_types``
    allows exactly those (never a ``Guardrails.*`` type)."""
    from pathlib import Path

    from guardrails.deadletter import (DEAD_LETTER_SUBSCRIPTIONS, DELETES_SUBSCRIPTION, KEYVAULT_SUBSCRIPTION,
                                       RESOURCE_SUBSCRIPTION, deliverable_types)
    from tests.unit.test_infra import module_env
    topic = (Path(__file__).resolve().parents[2] / "infra" / "modules" / "topic.bicep").read_text(encoding="utf-8")
    assert "var subscriptionName = 'guardrails-${replace(functionName, '_', '-')}'" in topic
    assert "name: '${subscriptionName}-deletes'" in topic
    allowed = deliverable_types()
    assert set(allowed) == set(DEAD_LETTER_SUBSCRIPTIONS)
    sub = module_env("modules/subscription.bicep", "topic", module_env("main.bicep", "subscriptions"))
    vault = module_env("modules/vault.bicep", "topic", module_env("main.bicep", "vaults"))
    ml = module_env("modules/ml-workspace.bicep", "topic", module_env("main.bicep", "mlWorkspaces"))
    delivered: dict[str, set[str]] = {}
    for env in (sub, vault, ml):
        name = "guardrails-" + env["functionName"].replace("_", "-")
        delivered.setdefault(name, set()).update(t.lower() for t in env["includedEventTypes"])
    assert sub["deleteOperations"]                             # the twin: ResourceDeleteSuccess only
    delivered["guardrails-" + sub["functionName"].replace("_", "-") + "-deletes"] = {DELETE.lower()}
    assert delivered == {k: set(v) for k, v in allowed.items()}
    assert not any(t.startswith("guardrails.") for types in allowed.values() for t in types)
    assert (RESOURCE_SUBSCRIPTION, DELETES_SUBSCRIPTION, KEYVAULT_SUBSCRIPTION) == DEAD_LETTER_SUBSCRIPTIONS


def test_names_event_grid_never_writes():
    from guardrails.deadletter import not_deliverable, undeliverable_events
    for name in ("ANYTHING/NOT-OURS/2026/1/1/0/x.json", "x.json", f"{RES}/x.json", f"A/{RES}/2026/1/1/0/x.json",
                 f"{RES}/2026/1/1/0/x.txt", "GUARDRAILS-RESOURCE-EVENTS-X/2026/1/1/0/x.json"):
        assert not_deliverable(name), name
    for name in (f"{RES}/2026/1/1/0/x.json", f"{KV}/2026/11/05/07/x.json", f"{DEL}/2026/1/1/0/x.json"):
        assert not_deliverable(name) == "" and undeliverable_events(parse_blob(name, b"[]")) == ""


def test_a_future_delete_event_time_is_not_trusted_over_its_row():
    """A forged ResourceDeleteSuccess with eventTime 2099 ended the resource, and every decision of
    it after the forgery, until 2099: a deletion is as of the earlier of its event time and its row's."""
    rid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stopen"
    t0 = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)

    def row(verdict, hours, **kw):
        return AuditRow(event_id=f"e{hours}", event_type=kw.pop("event_type", WRITE), resource_id=kw.pop("rid", rid),
                        verdict=verdict, delivery_id=f"d{hours}", time=(t0 + timedelta(hours=hours)).isoformat(), **kw)
    rows = [row("violation", 0),
            row("ignored", 1, event_type=DELETE, rid="/subscriptions/s/resourceGroups/rg", event_time="2099-01-01T00:00:00Z",
                reason="event_type_not_evaluated"),
            row("violation", 2)]                               # decided again after it: still there, still open
    rep = build_report(rows, since=t0 - timedelta(days=1), until=t0 + timedelta(days=1))
    assert [v.resource_id for v in rep.open_violations] == [rid] and rep.deleted == 0
    # a real deletion replayed late still counts as of its own (earlier) time
    late = [row("violation", 0), row("ignored", 5, event_type=DELETE, event_time=(t0 + timedelta(hours=1)).isoformat(),
                                     reason="event_type_not_evaluated")]
    assert build_report(late, since=t0 - timedelta(days=1), until=t0 + timedelta(days=1)).deleted == 1


# ---- 2. bounded, batched clean-up; outcomes only ---------------------------------------------------------
class SlowState(State):
    """A state store whose every delete call costs ``cost`` seconds of the run's clock."""

    def __init__(self, clock: Clock, cost: float = 0.2) -> None:
        super().__init__()
        self.clock, self.cost, self.batches, self.full_reads = clock, cost, [], 0

    def delete_deadletter_state(self, blob):
        self.clock.t += self.cost
        super().delete_deadletter_state(blob)

    def delete_deadletter_states(self, blobs):
        blobs = list(blobs)
        assert len(blobs) <= TRANSACTION_ROWS
        self.clock.t += self.cost
        self.batches.append(len(blobs))
        super().delete_deadletter_states(blobs)

    def deadletter_states(self):             # every whole row: what a run must not need
        self.full_reads += 1
        return super().deadletter_states()

    def deadletter_outcomes(self):
        return {k: v["outcome"] for k, v in self.d.items()}

    def deadletter_state(self, blob):
        return json.loads(json.dumps(self.d[blob])) if blob in self.d else None


def test_cleaning_up_thousands_of_gone_states_stays_inside_the_budget_and_after_the_replay():
    # GIVEN 5,000 states of blobs the lifecycle rule deleted, and one new dead letter
    clock = Clock()
    state = SlowState(clock)
    for i in range(5000):
        state.d[f"{RES}/2026/8/1/0/{i}.json"] = {"outcome": "replayed"}
    r, svc, _ = _replayer({f"{RES}/2026/11/25/3/new.json": _blob(_ev("new-1"))}, state=state, clock=clock)
    # WHEN the replay runs
    summary = r.run()
    # THEN the new dead letter is handled, the states go 100 to a transaction, well inside 540 s
    assert svc.handled == ["new-1"] and state.batches == [TRANSACTION_ROWS] * 50 and clock.t <= 540
    assert list(state.d) == [f"{RES}/2026/11/25/3/new.json"] and not summary.truncated
    assert r.store.rows and r.store.rows[-1]["sweep_id"] == summary.sweep_id


def test_the_clean_up_stops_at_the_deadline_and_the_next_run_goes_on():
    clock = Clock()
    state = SlowState(clock, cost=1.0)
    for i in range(1000):
        state.d[f"{RES}/2026/8/1/0/{i}.json"] = {"outcome": "replayed"}
    r, _, _ = _replayer({}, state=state, clock=clock, max_seconds=3.5)
    first = r.run()
    assert first.truncated and len(state.batches) == 4 and len(state.d) == 600      # 4 s: the last one started in time
    assert r.store.rows[-1]["sweep_id"] == first.sweep_id                            # the summary row is written
    clock.t = 0.0
    r.run()
    assert len(state.d) == 200


def test_a_run_with_limit_zero_replays_nothing_and_deletes_no_listed_blob_state():
    name = f"{RES}/2026/11/25/3/kept.json"
    state = State()
    state.d[name] = {"outcome": "replayed"}
    state.d[f"{RES}/2026/8/1/0/gone.json"] = {"outcome": "replayed"}
    r, svc, _ = _replayer({name: _blob(_ev("k")), f"{RES}/2026/11/25/4/new.json": _blob(_ev("n"))}, state=state)
    r.run(limit=0)
    assert svc.handled == [] and list(state.d) == [name]
    r.run(limit=1)
    assert svc.handled == ["n"]


def test_a_run_reads_outcomes_and_only_the_state_of_a_blob_it_replays():
    """Settled states (the container's whole history) are not loaded as whole rows: a run reads
    each blob's outcome, and the full state of an unsettled blob when it comes to it."""
    clock = Clock()
    state = SlowState(clock)
    for i in range(300):
        name = f"{RES}/2026/11/1/0/{i}.json"
        state.d[name] = {"outcome": "replayed", "events": [{"index": 0, "verdict": "compliant"}], "done": "0"}
    point_reads = []
    original = state.deadletter_state
    state.deadletter_state = lambda blob: point_reads.append(blob) or original(blob)
    half = f"{RES}/2026/11/25/3/half.json"
    state.d[half] = {"outcome": "retrying", "done": "0", "events": []}
    blobs = {f"{RES}/2026/11/1/0/{i}.json": _blob(_ev(f"old-{i}")) for i in range(300)}
    blobs[half] = _blob(_ev("h0"), _ev("h1"))
    blobs[f"{RES}/2026/11/25/4/new.json"] = _blob(_ev("n0"))
    r, svc, _ = _replayer(blobs, state=state, clock=clock)
    r.run()
    assert state.full_reads == 0 and point_reads == [half] and svc.handled == ["h1", "n0"]
    assert r.container.reads == [half, f"{RES}/2026/11/25/4/new.json"]


# ---- 3. progress kept while a blob is replayed ----------------------------------------------------------
class Killed(BaseException):
    """The host ending the worker (functionTimeout, scale-in): nothing after it runs."""


def _killing(svc: Service, at: str, tick: float = 0.0, clock: Clock | None = None) -> None:
    original = svc.handle_event

    def handle(raw, **kw):
        if raw["id"] == at:
            raise Killed()
        if clock is not None:
            clock.t += tick
        return original(raw, **kw)
    svc.handle_event = handle


def test_a_run_killed_half_way_through_a_big_blob_keeps_what_it_did():
    name = f"{RES}/2026/11/25/3/big.json"
    svc = AuditingService()
    _killing(svc, "e55")
    r, _, _ = _replayer({name: _blob(*(_ev(f"e{i}") for i in range(60)))}, svc)
    with pytest.raises(Killed):
        r.run()
    assert r.state.d[name]["done"] == "0-49" and r.state.d[name]["outcome"] == "retrying"      # every 25 events
    # the next run goes on from there (events 50-54 were handled but not yet saved: handled again)
    svc2 = AuditingService()
    r2, _, _ = _replayer({name: _blob(*(_ev(f"e{i}") for i in range(60)))}, svc2, state=r.state)
    r2.run()
    assert svc2.handled == [f"e{i}" for i in range(50, 60)] and r.state.d[name]["outcome"] == "replayed"


def test_slow_events_are_saved_every_thirty_seconds():
    name = f"{RES}/2026/11/25/3/slow.json"
    clock = Clock()
    svc = AuditingService()
    _killing(svc, "e5", tick=10.0, clock=clock)
    r, _, _ = _replayer({name: _blob(*(_ev(f"e{i}") for i in range(8)))}, svc, clock=clock)
    with pytest.raises(Killed):
        r.run()
    assert from_ranges(r.state.d[name]["done"]) == {0, 1, 2}


# ---- 4. retry forgets only what was given up ------------------------------------------------------------
def _cli(replayer, monkeypatch, *argv) -> int:
    from guardrails import bootstrap, replay
    monkeypatch.setattr(bootstrap, "build_replayer", lambda settings: replayer)
    return replay.cli_main(Namespace(action=argv[0], blob=argv[1] if len(argv) > 1 else None, limit=None,
                                     dry_run=False, json=False))


def test_retry_keeps_the_events_already_handled(monkeypatch, capsys):
    # GIVEN a blob whose second event was given up after a day, the first and third handled
    name = f"{RES}/2026/11/25/3/g.json"
    svc = AuditingService(failing={"bad"})
    r, _, clock = _replayer({name: _blob(_ev("good1"), _ev("bad"), _ev("good2"))}, svc)
    r.run()
    for _ in range(MIN_ATTEMPTS):
        clock.wall += GIVE_UP_AFTER / 2
        r.run()
    assert r.state.d[name]["outcome"] == "gave_up" and r.state.d[name]["abandoned"] == "1"
    # WHEN the cause is fixed and the operator asks for a retry
    svc.failing.clear()
    assert _cli(r, monkeypatch, "retry", name) == 0
    after_retry = json.loads(json.dumps(r.state.d.get(name)))
    # THEN the next run handles the given-up event only, at once, and keeps the others' records
    r.run()
    assert svc.handled == ["good1", "good2", "bad"]                                 # not good1, good2 again
    assert "1 given-up" in capsys.readouterr().out
    assert (after_retry["outcome"], after_retry["done"], after_retry["abandoned"]) == ("retrying", "0,2", "")
    assert [e["event_id"] for e in after_retry["events"]] == ["good1", "good2"]     # the given-up record dropped
    st = r.state.d[name]
    assert st["outcome"] == "replayed" and st["done"] == "0-2"
    assert [(e["event_id"], e["verdict"]) for e in st["events"]] == [("good1", "compliant"), ("good2", "compliant"),
                                                                     ("bad", "compliant")]


def test_retry_of_an_unreadable_or_rejected_blob_clears_it_and_of_a_settled_one_changes_nothing(monkeypatch, capsys):
    bad, forged, fine = f"{RES}/2026/11/25/0/junk.json", "X/Y/2026/11/25/1/f.json", f"{RES}/2026/11/25/2/ok.json"
    r, svc, _ = _replayer({bad: b"not json", forged: _blob(_ev("f")), fine: _blob(_ev("ok"))})
    r.run()
    assert {n: s["outcome"] for n, s in r.state.d.items()} == {bad: "unreadable", forged: "rejected", fine: "replayed"}
    before = json.loads(json.dumps(r.state.d[fine]))
    for name in (bad, forged, fine):
        assert _cli(r, monkeypatch, "retry", name) == 0
    assert list(r.state.d) == [fine] and r.state.d[fine] == before
    assert "nothing to retry" in capsys.readouterr().out
    r.run()                                         # judged afresh: audited again, still never acted on
    assert [row.reason for row in svc.rows] == [REJECTED_REASON, REJECTED_REASON] and svc.handled == ["ok"]


# ---- the kept ranges never name an event not handled ---------------------------------------------------
def test_progress_cut_to_one_property_never_marks_an_unhandled_event():
    """``done`` is kept in one property: cut inside a number (``10001`` -> ``1000``) it named an
    event never handled as done, which no run would then hand on."""
    from guardrails.adapters.sweep_tables import MAX_PROPERTY_CHARS, TableTimerState

    class Table:
        def upsert_entity(self, entity):
            self.entity = entity
    table = Table()
    state = TableTimerState.__new__(TableTimerState)
    state._t, state.name = SimpleNamespace(table=lambda name: table), "TTimerState"
    done = {0} | set(range(10001, 90000, 10))           # "0,10001,10011,…": the cut falls inside a number
    text = to_ranges(done)
    assert len(text) > MAX_PROPERTY_CHARS and text[MAX_PROPERTY_CHARS - 1] != ","
    state.set_deadletter_state("b", {"outcome": "retrying", "done": text, "abandoned": text})
    for prop in ("done", "abandoned"):
        kept = table.entity[prop]
        assert len(kept) <= MAX_PROPERTY_CHARS and from_ranges(kept) <= done and len(from_ranges(kept)) > 4000
