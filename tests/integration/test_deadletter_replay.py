"""Dead-letter replay end to end: blobs written to Azurite's Blob service exactly as Event Grid
dead-letters them, read back through azure-storage-blob, every event handed to the guardrails with
the sweep's paced SDK clients against the emulator; assertions on the emulator's resources, the audit
table, the replay state and the run's summary row."""

from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.adapters.sweep_tables import TableSweepStore, TableTimerState
from guardrails.local.deadletters import container_client, write_dead_letters
from guardrails.ratelimit import FakeClock
from guardrails.replay import GIVE_UP_AFTER, KIND, MIN_ATTEMPTS
from tests import builders as b
from tests.integration.test_sweep import _this_month, host_timer

pytestmark = pytest.mark.integration
MALLORY = "7e6d5c4b-3a29-4e18-8f07-a1b2c3d4e5f6"


@pytest.fixture
def dead(harness, azurite_blob):
    """A harness whose deployment reads dead letters from its own container on Azurite."""
    container = "deadletters-" + uuid.uuid4().hex[:12]

    def make(resources, **kw):
        h = harness(resources, env={S.DEAD_LETTER_CONNECTION: azurite_blob.connection_string,
                                    S.DEAD_LETTER_CONTAINER: container, **kw.pop("env", {})}, **kw)
        h.blobs = container_client(azurite_blob.connection_string, container)
        return h
    return make


def _replayer(h, *, later=None, **env):
    settings = S.Settings.from_env({**h.env, **env})
    sweeper = bootstrap.build_sweeper(settings, clock=FakeClock(), sleep=lambda s: None)
    replayer = bootstrap.build_replayer(settings, sweeper=sweeper)
    if later is not None:                       # the replay's wall clock that much later
        replayer._wall = lambda: datetime.now(timezone.utc) + later
    return replayer


def _states(h) -> dict:
    return TableTimerState(h.tables).deadletter_states()


def test_dead_lettered_events_are_decided_with_their_actor_and_never_twice(dead, caplog):
    caplog.set_level(logging.DEBUG)
    public, other = b.storage("stmlpublic", pna="Enabled"), b.storage("stmlshared", pna="Enabled")
    h = dead([public, other, b.storage("stmlfine", pna="Disabled", blob=False)])
    lost = b.write_event(public["id"], actor=b.claims(MALLORY, app_id=None, upn="mallory@contoso.com"))
    handled = b.write_event(other["id"])
    assert h.deliver(handled).verdict == "remediated"          # delivered once, then dead-lettered anyway
    fine = b.write_event(b.storage("stmlfine")["id"])
    as_cloudevent = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": fine["eventType"],
                     "source": fine["topic"], "subject": fine["subject"], "time": fine["eventTime"], "data": fine["data"]}
    first = write_dead_letters(h.blobs, [lost, handled, "AccountKey=not-an-event"], last_status=503)
    second = write_dead_letters(h.blobs, [as_cloudevent], reason="TimeToLiveExceeded", last_outcome="Probation")
    before = {n: h.blobs.download_blob(n).readall() for n in (first, second)}
    h.emu.clear_requests()

    summary = _replayer(h).run()

    # the lost write is fixed, and its row names who made it
    assert h.resource(public["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    rows = {r.event_id: r for r in h.stored_rows()}
    assert rows[lost["id"]].verdict == "remediated" and rows[lost["id"]].actor.object_id == MALLORY
    assert rows[lost["id"]].actor.upn == "mallory@contoso.com"
    # the one already handled is a duplicate: no second fix, no ARM call for it
    replayed_rows = [r for r in h.stored_rows() if r.event_id == handled["id"]]
    assert sorted(r.verdict for r in replayed_rows) == ["duplicate", "remediated"]
    assert rows[as_cloudevent["id"]].verdict == "compliant"
    invalid = [r for r in h.stored_rows() if r.verdict == "invalid"]
    assert [r.reason for r in invalid] == ["not_an_object"]
    # ARM: the lost event's read + fix + confirm, the CloudEvent's read; nothing for the duplicate
    assert [q["method"] for q in h.arm_requests()].count("GET") == 3 and len(h.writes()) == 1
    assert (summary.kind, summary.seen, summary.remediated, summary.compliant, summary.skipped, summary.failed) == (
        KIND, 4, 1, 1, 2, 0)
    states = _states(h)
    assert {n: s["outcome"] for n, s in states.items()} == {first: "replayed", second: "replayed"}
    assert [(e["event_id"], e["verdict"], e["dead_letter_reason"]) for e in states[first]["events"]][:2] == [
        (lost["id"], "remediated", "MaxDeliveryAttemptsExceeded"), (handled["id"], "duplicate", "MaxDeliveryAttemptsExceeded")]
    assert states[first]["detail"] == "item 2 is a JSON str, not an event object"
    assert states[second]["events"][0]["dead_letter_reason"] == "TimeToLiveExceeded"
    # Event Grid's record is left as it was written; the run has its summary row
    assert {n: h.blobs.download_blob(n).readall() for n in (first, second)} == before
    runs = [r for r in TableSweepStore(h.tables).read_month(*_this_month()) if r["sweep_id"] == summary.sweep_id]
    assert runs and runs[0]["kind"] == KIND and runs[0]["verdicts"] == {"compliant": 1, "remediated": 1, "duplicate": 1,
                                                                         "invalid": 1}
    assert not any("not-an-event" in m.getMessage() for m in caplog.records)

    # settled: the next run reads no blob and decides nothing
    h.emu.clear_requests()
    rows_before = len(h.stored_rows())
    again = _replayer(h).run()
    assert (again.seen, again.failed) == (0, 0) and h.arm_requests() == [] and len(h.stored_rows()) == rows_before


def test_unreadable_blobs_are_audited_once_and_an_event_that_keeps_failing_is_given_up_after_a_day(dead):
    res, ok = b.storage("stmlflaky", pna="Enabled"), b.storage("stmlsteady", pna="Enabled")
    h = dead([res, ok], env={S.TIME_BUDGET_SECONDS: "1"})
    junk = write_dead_letters(h.blobs, [], raw=b"AccountKey=leaked-" + b"x" * 20)
    ev, steady = b.write_event(res["id"]), b.write_event(ok["id"])
    flaky = write_dead_letters(h.blobs, [ev, steady])
    h.emu.add_fault(method="GET", path_regex="stmlflaky", status=503)

    first = _replayer(h).run()
    assert any(junk in e and "not JSON" in e for e in first.errors)
    assert all("leaked" not in e for e in first.errors)
    assert any(flaky in e and "event 0" in e and "retrying, attempt 1" in e for e in first.errors)
    # the unreadable blob is an audited rejection; the failing event does not hold back the next one
    [bad] = [r for r in h.stored_rows() if r.event_type == "Guardrails.DeadLetter"]
    assert (bad.verdict, bad.reason, bad.event_id) == ("invalid", "unreadable_dead_letter", f"deadletter:{junk}")
    assert "leaked" not in json.dumps(bad.to_dict())
    assert h.resource(ok["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    st = _states(h)
    assert st[junk]["outcome"] == "unreadable" and (st[flaky]["outcome"], st[flaky]["done"]) == ("retrying", "1")
    for attempt in range(2, MIN_ATTEMPTS + 1):                       # a day later, the third try gives up
        run = _replayer(h, later=GIVE_UP_AFTER + timedelta(hours=7) * (attempt - 2)).run()   # past each back-off
        assert not any(junk in e for e in run.errors)                  # reported once
        assert any(f"attempt {attempt}" in e for e in run.errors)
    assert _states(h)[flaky]["outcome"] == "gave_up" and _states(h)[flaky]["abandoned"] == "0"
    assert [r.verdict for r in h.stored_rows() if r.event_id == ev["id"]] == ["failed"] * MIN_ATTEMPTS
    assert [r.verdict for r in h.stored_rows() if r.event_id == steady["id"]] == ["remediated"]
    h.emu.clear_requests()
    last = _replayer(h).run()
    assert (last.seen, last.failed) == (0, 0) and h.arm_requests() == []
    # the fault gone, the operator has it replayed again
    from guardrails.cli import main
    for k, v in h.env.items():
        os.environ[k] = v
    try:
        assert main(["deadletter", "retry", flaky]) == 0
        assert main(["deadletter", "retry", "NO/SUCH/blob.json"]) == 2
    finally:
        for k in h.env:
            os.environ.pop(k, None)
    h.emu._faults.clear()
    again = _replayer(h).run()
    # only the given-up event is handed on again: the one handled stays handled (no duplicate row)
    assert again.remediated == 1 and again.verdicts == {"remediated": 1}
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_a_blob_gone_from_the_container_takes_its_state_with_it_and_dry_run_changes_nothing(dead):
    res = b.storage("stmldry", pna="Enabled")
    h = dead([res])
    name = write_dead_letters(h.blobs, [b.write_event(res["id"])])
    dry = _replayer(h).run(dry_run=True)
    assert (dry.seen, dry.dry_run) == (1, True) and _states(h) == {} and h.writes() == []
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    assert _replayer(h).run().remediated == 1 and name in _states(h)
    h.blobs.delete_blob(name)
    _replayer(h).run()
    assert _states(h) == {}


def test_timer_and_cli(dead, monkeypatch, capsys):
    from guardrails.cli import main
    from guardrails.triggers.timers import deadletter_replay

    res = b.storage("stmltimer", pna="Enabled")
    h = dead([res])
    for k, v in h.env.items():
        monkeypatch.setenv(k, v)
    name = write_dead_letters(h.blobs, [b.write_event(res["id"])])
    assert main(["deadletter", "list", "--json"]) == 1                  # one waits
    listed = json.loads(capsys.readouterr().out)
    assert [(r["blob"], r["state"]) for r in listed["blobs"]] == [(name, "pending")]
    bootstrap._sweeper = bootstrap._replayer = None
    deadletter_replay(host_timer())                                     # the host's timer object
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert main(["deadletter", "list"]) == 0
    assert "replayed" in capsys.readouterr().out
    assert main(["deadletter", "replay", "--json"]) == 0 and json.loads(capsys.readouterr().out)["seen"] == 0
    monkeypatch.delenv(S.DEAD_LETTER_CONNECTION)
    assert main(["deadletter", "list"]) == 2                            # not configured: usage
    bootstrap._sweeper = bootstrap._replayer = None
    deadletter_replay(host_timer())                                     # off: returns quietly, every run
    deadletter_replay(host_timer())
    assert bootstrap._sweeper is None                                   # and builds nothing


def test_a_blob_holding_an_empty_array_is_one_audited_rejection_not_a_silent_pass(dead):
    h = dead([])
    empty = write_dead_letters(h.blobs, [], raw=b"[]")
    _replayer(h).run()
    [row] = [r for r in h.stored_rows() if r.event_type == "Guardrails.DeadLetter"]
    assert (row.verdict, row.reason, row.event_id) == ("invalid", "unreadable_dead_letter", f"deadletter:{empty}")
    assert _states(h)[empty]["outcome"] == "unreadable"


def test_a_failing_replayed_event_backs_off_and_a_newer_blob_is_not_held_up(dead):
    """Dead-letter review (session 22): a failing event was tried on every 15-minute run, ~97 times
    before it was given up (each an ARM write, an audit row, a decision event), and old failing blobs
    took every run's budget from newer ones. It backs off now: 15 min, 30, 1 h, 2 h, 4 h, then every
    6 h, ~9 tries in the day; a run in between does not touch it."""
    from guardrails.replay import next_try
    res, later_res = b.storage("stmlbackoff", pna="Enabled"), b.storage("stmllater", pna="Enabled")
    h = dead([res, later_res], env={S.TIME_BUDGET_SECONDS: "1"})
    ev = b.write_event(res["id"])
    write_dead_letters(h.blobs, [ev])
    h.emu.add_fault(method="GET", path_regex="stmlbackoff", status=503)
    minute = timedelta(0)
    while minute <= GIVE_UP_AFTER + timedelta(hours=7):          # one run every 15 minutes
        _replayer(h, later=minute).run()
        if minute == timedelta(hours=2):                         # a newer blob arrives meanwhile
            write_dead_letters(h.blobs, [b.write_event(later_res["id"])])
        minute += timedelta(minutes=15)
    attempts = [r for r in h.stored_rows() if r.event_id == ev["id"]]
    assert 7 <= len(attempts) <= 11, len(attempts)             # not ~100
    assert all(r.verdict == "failed" for r in attempts)
    states = _states(h)
    assert [st["outcome"] for st in states.values()].count("gave_up") == 1
    assert h.resource(later_res["id"])["properties"]["publicNetworkAccess"] == "Disabled"   # not held up
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    assert [next_try(now, n) - now for n in (1, 2, 3, 6, 9)] == [
        timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=6), timedelta(hours=6)]


def test_two_replays_at_once_one_does_nothing(dead):
    """Dead-letter review: the CLI's `deadletter replay` beside the timer saved each blob's progress
    over the other's and handled its events twice. One run at a time, by a lease in TimerState."""
    res = b.storage("stmllease", pna="Enabled")
    h = dead([res])
    write_dead_letters(h.blobs, [b.write_event(res["id"])])
    state = TableTimerState(h.tables)
    assert state.take_run_lease("deadletter_replay", "the-timer-elsewhere", 600)
    busy = _replayer(h).run()
    assert busy.seen == 0 and any("another dead-letter replay is running" in e for e in busy.errors)
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    assert not state.take_run_lease("deadletter_replay", "a-third-run", 600)
    state.release_run_lease("deadletter_replay", "the-timer-elsewhere")
    done = _replayer(h).run()
    assert done.seen == 1 and h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert state.take_run_lease("deadletter_replay", "next", 600)     # given back by the finished run
    state.release_run_lease("deadletter_replay", "next")
    assert state.take_run_lease("x", "a", 0.001) and (__import__("time").sleep(1.1) or True)
    assert state.take_run_lease("x", "b", 600)                        # an expired lease is taken over
