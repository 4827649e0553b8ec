"""Dead-letter replay fixes (session 32) over the in-memory fakes of tests/unit/test_replay.py: the
gate reads an event's type as ``handle_event`` does, a run Table Storage stops is never a clean run,
an event Table Storage keeps refusing holds nothing up for ever, ``deadletter replay BLOB`` is a
usage error, a replayed event's row says where it came from."""

from __future__ import annotations

import json
from argparse import Namespace
from datetime import timedelta

import pytest

from guardrails.deadletter import parse_blob, undeliverable_events
from guardrails.errors import InvalidEvent, StoreError
from guardrails.model.events import parse_envelope
from guardrails.replay import GIVE_UP_AFTER, MIN_ATTEMPTS, cli_main, replayed_from
from guardrails.simulate import UsageError
from tests.unit.test_replay import S, Service, State, _events, _replayer

KV = "EVGT-KV/GUARDRAILS-KEYVAULT-EVENTS/2026/11/25/9/6c1b.json"
WRITE = "Microsoft.Resources.ResourceWriteSuccess"
NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"


# ---- 1. the gate judges the type handle_event handles --------------------------------------------------
@pytest.mark.parametrize("item", [
    {"id": "a", "eventType": NEW_VERSION},                                            # Event Grid schema
    {"id": "a", "specversion": "1.0", "type": NEW_VERSION},                           # CloudEvents
    {"id": "a", "specVersion": "1.0", "type": NEW_VERSION},
    {"id": "a", "specversion": "1.0", "type": NEW_VERSION, "eventType": NEW_VERSION},  # both, the same
    {"id": "a", "specversion": "1.0", "type": "Guardrails.SecretExposed", "eventType": NEW_VERSION},
    {"id": "a", "type": "Guardrails.SecretExposed", "eventType": NEW_VERSION},        # no specversion: eventType
])
def test_an_events_type_is_the_one_parse_envelope_reads(item):
    # GIVEN an item in any shape parse_envelope accepts
    [dl] = parse_blob(KV, json.dumps([item]).encode()).events
    # THEN the dead letter's type is the one handle_event will handle it as
    assert dl.event_type == parse_envelope(dl.envelope).event_type


def test_an_item_parse_envelope_refuses_keeps_its_type_for_the_gate():
    # GIVEN a CloudEvents item without its id: handle_event audits it invalid
    [dl] = parse_blob(KV, json.dumps([{"specversion": "1.0", "type": "Guardrails.SecretExposed"}]).encode()).events
    with pytest.raises(InvalidEvent):
        parse_envelope(dl.envelope)
    # THEN the gate still reads its type, and no guardrails subscription delivers it
    assert dl.event_type == "Guardrails.SecretExposed"
    assert undeliverable_events(parse_blob(KV, json.dumps([dl.envelope]).encode()))


@pytest.mark.parametrize("extra", [{"specversion": "1.0", "type": NEAR_EXPIRY}, {"type": NEAR_EXPIRY}])
def test_two_different_type_fields_reject_the_blob_even_when_both_are_delivered(extra):
    # GIVEN an item with two deliverable but different types (Event Grid writes one field, never both)
    parsed = parse_blob(KV, json.dumps([{"id": "ok", "eventType": NEW_VERSION},
                                        {"id": "a", "eventType": NEW_VERSION, **extra}]).encode())
    # THEN the blob is not Event Grid's: the reason names the item and the fields, not their values
    why = undeliverable_events(parsed)
    assert why == "item 1 has both 'eventType' and 'type', different: Event Grid writes one"
    assert NEAR_EXPIRY not in why and NEW_VERSION not in why


def test_both_type_fields_with_the_same_value_and_either_schema_alone_pass():
    items = [{"id": "a", "eventType": NEW_VERSION, "type": NEW_VERSION},
             {"id": "b", "specversion": "1.0", "type": NEAR_EXPIRY}, {"id": "c", "eventType": NEAR_EXPIRY}]
    assert undeliverable_events(parse_blob(KV, json.dumps(items).encode())) == ""


# ---- 2. a run stopped by a failed state write is an error ----------------------------------------------
class SaveFails(State):
    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.writes, self.fail_at = 0, fail_at

    def set_deadletter_state(self, blob, state):
        self.writes += 1
        if self.writes == self.fail_at:
            raise StoreError("table storage write timer state failed (ServiceRequestError, status None)")
        super().set_deadletter_state(blob, state)


def test_a_failed_state_save_stops_the_run_with_an_error_naming_the_blob():
    # GIVEN two blobs, the first one's replay state cannot be saved
    a, b = f"{S}/2026/11/25/0/a.json", f"{S}/2026/11/25/1/b.json"
    svc = Service()
    r, _ = _replayer({a: _events("e1"), b: _events("f1")}, svc, state=SaveFails(fail_at=1))
    # WHEN the replay runs
    run = r.run()
    # THEN it stops there (b not replayed) and says so: failed, the error names the blob and its state
    assert svc.handled == ["e1"] and run.failed == 1
    assert run.errors == [f"dead-letter blob {a}: its replay state could not be written, the run stopped: "
                          "table storage write timer state failed (ServiceRequestError, status None)"]
    assert r.store.rows[-1]["failed"] == 1


# ---- 3. an event Table Storage keeps refusing ------------------------------------------------------------
class Refused(Service):
    """Table Storage refuses one event's rows (a property too large) and takes everything else."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused, self.tries = refused, 0

    def handle_event(self, raw, *, said_by=None):
        if raw["id"] == self.refused:
            self.tries += 1
            raise StoreError("table storage audit write failed (HttpResponseError, status 400)")
        return super().handle_event(raw, said_by=said_by)


def test_an_event_table_storage_keeps_refusing_is_given_up_and_holds_up_one_run_at_most():
    old, new = f"{S}/2026/11/25/0/old.json", f"{S}/2026/11/25/1/new.json"
    svc = Refused("poison")
    r, clock = _replayer({old: _events("poison", "e2"), new: _events("f1")}, svc)
    # WHEN it first fails: the run stops (Table Storage may be down), the try counted, retried at once
    first = r.run()
    assert svc.handled == [] and first.failed == 1 and "run stopped" in first.errors[0]
    st = r.state.d[old]
    assert st["failing"]["0"]["attempts"] == 1 and "next" not in st["failing"]["0"]
    # WHEN it fails again while Table Storage takes its state: it is its own failure, the rest go on
    second = r.run()
    assert svc.handled == ["e2", "f1"] and second.failed == 1
    assert r.state.d[old]["failing"]["0"]["attempts"] == 2 and r.state.d[old]["failing"]["0"]["next"]
    assert r.state.d[new]["outcome"] == "replayed"
    r.run()                                   # backing off: not tried
    assert svc.tries == 2
    # THEN after a day of failing and at least MIN_ATTEMPTS tries it is given up like any failing event
    clock.wall += GIVE_UP_AFTER
    last = r.run()
    assert svc.tries == MIN_ATTEMPTS and r.state.d[old]["outcome"] == "gave_up" and r.state.d[old]["abandoned"] == "0"
    assert any("gave up" in e for e in last.errors)


def test_table_storage_down_for_the_state_too_stops_the_run_and_counts_no_try():
    # GIVEN Table Storage failing both the event and its blob's state save
    a = f"{S}/2026/11/25/0/a.json"
    svc = Refused("e1")
    state = SaveFails(fail_at=1)
    r, _ = _replayer({a: _events("e1", "e2"), f"{S}/2026/11/25/1/b.json": _events("f1")}, svc, state=state)
    run = r.run()
    # THEN the run stops at once, both failures reported, nothing saved: the next run starts from e1
    assert svc.handled == [] and run.failed == 2 and a not in state.d
    assert "its replay state could not be written" in run.errors[-1]


def test_two_store_failures_in_a_row_of_different_events_each_stop_a_run_once():
    a = f"{S}/2026/11/25/0/a.json"
    svc = Refused("e1")
    r, clock = _replayer({a: _events("e1", "e2", "e3")}, svc)
    r.run()                                   # e1: first failure, stop
    svc.refused = "e2"
    svc.handled.clear()
    r.run()                                   # e1 handled now; e2's first failure stops the run
    assert svc.handled == ["e1"] and r.state.d[a]["failing"]["1"]["attempts"] == 1
    svc.refused = ""
    r.run()
    assert svc.handled == ["e1", "e2", "e3"] and r.state.d[a]["outcome"] == "replayed"


# ---- 4. deadletter replay BLOB -----------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["replay", "list"])
def test_a_blob_name_is_a_usage_error_except_for_retry(action, monkeypatch):
    import guardrails.bootstrap as bootstrap

    def never(settings):
        raise AssertionError("nothing is built, listed or replayed")
    monkeypatch.setattr(bootstrap, "build_replayer", never)
    args = Namespace(action=action, blob=f"{S}/2026/1/1/0/x.json", limit=None, dry_run=False, json=False)
    with pytest.raises(UsageError, match=f"deadletter {action} takes no blob name; use 'deadletter retry BLOB'"):
        cli_main(args)


# ---- 5. a replayed event's row says where it came from -----------------------------------------------------
def test_the_replay_tells_handle_event_which_blob_it_replays():
    a = f"{S}/2026/11/25/0/a.json"
    svc = Service()
    r, _ = _replayer({a: _events("e1")}, svc)
    r.run()
    assert svc.said_by == f"replayed from dead-letter blob {a}"


@pytest.mark.parametrize("name", [
    "EVGT-X/GUARDRAILS-RESOURCE-EVENTS/2026/1/1/0/a b\nc.json",                     # not Event Grid's characters
    "EVGT-X/GUARDRAILS-RESOURCE-EVENTS/2026/1/1/0/" + "a" * 300 + ".json",          # too long
    "EVGT-X/GUARDRAILS-RESOURCE-EVENTS/2026/1/1/0/AccountKey=abc.json",
    "EVGT-X/GUARDRAILS-RESOURCE-EVENTS/2026/1/1/0/" + "aB3" * 20 + ".json",         # shaped like a key
])
def test_a_blob_name_not_shaped_like_event_grids_is_not_written_into_the_row(name):
    said = replayed_from(name)
    assert said == "replayed from a dead-letter blob under GUARDRAILS-RESOURCE-EVENTS (its name not shown)"


def test_event_grids_own_names_are_shown():
    name = "EVGT-GUARDRAILS-0000/GUARDRAILS-KEYVAULT-EVENTS/2026/11/25/9/6c1b2f5e-3a4b-4c5d-8e9f-0a1b2c3d4e5f.json"
    assert replayed_from(name) == f"replayed from dead-letter blob {name}"


def test_the_back_off_clock_of_a_store_refused_event_is_the_usual_one():
    # an event refused twice backs off like any failing event (30 min after its 2nd try: replay.next_try)
    a = f"{S}/2026/11/25/0/a.json"
    svc = Refused("e1")
    r, clock = _replayer({a: _events("e1")}, svc)
    r.run()
    r.run()
    clock.wall += timedelta(minutes=29)
    r.run()
    assert svc.tries == 2
    clock.wall += timedelta(minutes=2)
    r.run()
    assert svc.tries == 3
