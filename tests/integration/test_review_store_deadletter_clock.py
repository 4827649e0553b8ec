"""Dead-letter replay's give-up clock on Azurite (``<prefix>TimerState``, partition ``deadletter``)
for a blob with many failing events: each failing event's clock (tries, first failure) is stored
without its error text and never degrades to a value that reads back empty, so the blob is given up
after 24 h and at least 3 tries (Event Grid's rule) instead of being replayed for ever; beyond
``MAX_FAILING_TRACKED`` failing events the blob's own clock (``failing_since``, ``failing_runs``)
carries the rest."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import settings as S
from guardrails.adapters.deadletters import BlobInfo
from guardrails.adapters.sweep_tables import TableTimerState
from guardrails.adapters.tables import Tables
from guardrails.errors import ArmError
from guardrails.replay import MAX_FAILING_TRACKED, DeadLetterReplayer

pytestmark = pytest.mark.integration

BLOB = "TOPIC/GUARDRAILS-RESOURCE-EVENTS/2026/11/25/3/g.json"     # a deployed subscription's prefix
T0 = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)


class Container:
    name = "eventgrid-deadletter"

    def __init__(self, n: int) -> None:
        self.data = json.dumps([{"id": uuid.uuid4().hex, "eventType": "Microsoft.Resources.ResourceWriteSuccess",
                                 "subject": "/subscriptions/x", "data": {}} for _ in range(n)]).encode()

    def list(self):
        return [BlobInfo(BLOB, len(self.data), "2026-11-25T03:00:00Z")]

    def read(self, name):
        return self.data


class Store:
    def write(self, summary):
        pass


class ForbiddenService:
    """Every event fails as a missing role assignment does: a long error text each time."""

    def __init__(self) -> None:
        self.calls = 0

    def handle_event(self, raw, **_):
        self.calls += 1
        raise ArmError("ARM GET /subscriptions/... failed: 403 AuthorizationFailed: the client does not have "
                       "authorization to perform action Microsoft.Storage/storageAccounts/read over scope "
                       "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x")


def _replay(azurite, n: int, runs: int):
    settings = S.Settings.from_env({S.TABLES_CONNECTION: azurite.connection_string,
                                    S.TABLE_PREFIX: "T" + uuid.uuid4().hex[:12]})
    tables = Tables.from_settings(settings)
    state = TableTimerState(tables)
    wall = [T0]
    svc = ForbiddenService()
    replayer = DeadLetterReplayer(svc, Container(n), state, Store(), wall_clock=lambda: wall[0])
    seen, stored = [], []
    for _ in range(runs):                       # a run every 8 hours
        replayer.run()
        seen.append(state.deadletter_states()[BLOB])
        stored.append(tables.table(state.name).get_entity("deadletter", state._blob_key(BLOB))["failing"])
        wall[0] += timedelta(hours=8)
    return seen, svc, stored


@pytest.mark.parametrize("n", [150, MAX_FAILING_TRACKED + 200])
def test_a_blob_with_many_failing_events_is_given_up_after_a_day_and_three_tries(azurite, n):
    # WHEN every one of n events fails on every run, a run every 8 h
    seen, svc, stored = _replay(azurite, n, runs=6)
    # THEN the first three runs (0 h, 8 h, 16 h: under 24 h) keep retrying, every event counted
    for st in seen[:3]:
        assert st["outcome"] == "retrying" and st["abandoned"] == ""
    assert len(seen[2]["failing"]) == min(n, MAX_FAILING_TRACKED)
    assert all(f["attempts"] == 3 and f["first"].startswith("2026-11-25T03:00") for f in seen[2]["failing"].values())
    assert (seen[2]["failing_since"][:16], seen[2]["failing_runs"]) == ("2026-11-25T03:00", 3)
    assert seen[2]["failing_untracked"] is (n > MAX_FAILING_TRACKED)
    # AND at 24 h (4th try) every event is given up: the blob is settled, no event is tried again
    assert seen[3]["outcome"] == "gave_up"
    assert seen[3]["abandoned"] == f"0-{n - 1}" and seen[3]["failing"] == {}
    assert (seen[3]["failing_since"], seen[3]["failing_runs"], seen[3]["failing_untracked"]) == ("", 0, False)
    assert svc.calls == 4 * n
    # AND what is stored parses and fits one property (no error text per event)
    assert all(len(text) <= 30_000 and isinstance(json.loads(text), dict) for text in stored)
    assert len(json.loads(stored[2])) == min(n, MAX_FAILING_TRACKED)
    assert "AuthorizationFailed" not in json.dumps(seen[2]["failing"])


def test_a_state_row_written_by_the_previous_version_keeps_its_clocks(azurite):
    # GIVEN a row as the previous version wrote it: per-event {attempts, first, error}, 2 tries since T0
    settings = S.Settings.from_env({S.TABLES_CONNECTION: azurite.connection_string,
                                    S.TABLE_PREFIX: "T" + uuid.uuid4().hex[:12]})
    state = TableTimerState(Tables.from_settings(settings))
    first = "2026-11-25T03:00:00.000000Z"
    state._t.table(state.name).upsert_entity({
        "PartitionKey": "deadletter", "RowKey": state._blob_key(BLOB), "blob": BLOB, "outcome": "retrying",
        "attempts": 2, "at": first, "detail": "", "events": "[]", "done": "", "abandoned": "",
        "failing": json.dumps({str(i): {"attempts": 2, "first": first, "error": "ARM GET failed: 403"} for i in range(3)})})
    wall = [T0 + timedelta(hours=24)]
    replayer = DeadLetterReplayer(ForbiddenService(), Container(3), state, Store(), wall_clock=lambda: wall[0])
    # WHEN the third try comes 24 h after the first failure
    replayer.run()
    # THEN the events are given up on the clocks the old row kept
    st = state.deadletter_states()[BLOB]
    assert (st["outcome"], st["abandoned"], st["failing"]) == ("gave_up", "0-2", {})
