"""Two ``metadata sync`` runs at once (an azd hook and a pipeline, two operators): each read the
table and wrote its own changes, and the table ended up holding neither set: a policy one of them
removed stayed live. A sync now holds a lease row (another partition of the policy table, never
read by workers) from its read to its last write, and every change it writes is conditional on
the row as it read it."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from azure.data.tables import UpdateMode

from guardrails.adapters.policy_tables import TablePolicyRepository
from guardrails.errors import StoreError


pytestmark = pytest.mark.integration


def _docs(h) -> dict[str, dict]:
    table = h.tables.table(h.tables.policies_name)
    return {e["RowKey"]: json.loads(e["document"]) for e in table.query_entities(
        "PartitionKey eq @pk", parameters={"pk": "policy"})}


def _set(docs: dict[str, dict], *, drop: str, audit: str) -> list[tuple[str, dict]]:
    return [(f"t/{k}", {**d, "mode": "audit"} if k == audit else d) for k, d in docs.items() if k != drop]


def _lease(h):
    table = h.tables.table(h.tables.policies_name)
    return list(table.query_entities("PartitionKey eq @pk", parameters={"pk": "sync"}))


class _PausedRepo(TablePolicyRepository):
    """A sync stopped between its read and its write (a slow pipeline agent)."""

    def __init__(self, tables, read: threading.Event, go: threading.Event) -> None:
        super().__init__(tables)
        self.read, self.go = read, go

    def _submit(self, table, ops, written):
        self.read.set()
        assert self.go.wait(20)
        return super()._submit(table, ops, written)


def test_two_syncs_at_once_leave_the_later_ones_set_not_a_union(harness):
    h = harness([])
    base = _docs(h)
    set_a = _set(base, drop="keyvault-private", audit="acr-private")
    set_b = _set(base, drop="acr-private", audit="storage-private")
    read, go = threading.Event(), threading.Event()
    out: dict[str, object] = {}

    def sync(name, repo, docs):
        try:
            out[name] = repo.replace_all(docs)
        except Exception as exc:           # noqa: BLE001 - the test reports it
            out[name] = exc

    a = threading.Thread(target=sync, args=("a", _PausedRepo(h.tables, read, go), set_a))
    a.start()
    assert read.wait(20)                    # A has read the table and is about to write
    b = threading.Thread(target=sync, args=("b", TablePolicyRepository(h.tables, sync_wait_seconds=20), set_b))
    b.start()
    b.join(1.0)
    assert b.is_alive()                     # B waits for A's lease instead of writing beside it
    go.set()
    a.join(20)
    b.join(20)
    assert isinstance(out["a"], dict) and isinstance(out["b"], dict), out
    after = _docs(h)
    assert after == dict((d["id"], d) for _, d in set_b)            # exactly B's set
    assert "acr-private" not in after and "keyvault-private" in after
    assert after["storage-private"]["mode"] == "audit" and after["keyvault-private"] == base["keyvault-private"]
    assert _lease(h) == []                                       # given back


def test_a_sync_waits_only_so_long_for_another_and_then_writes_nothing(harness):
    h = harness([])
    base = _docs(h)
    now = datetime.now(timezone.utc)
    h.tables.table(h.tables.policies_name).create_entity({
        "PartitionKey": "sync", "RowKey": "lease", "holder": "x", "host": "agent-7 pid 42",
        "taken_at": now, "expires_at": now + timedelta(minutes=5)})
    repo = TablePolicyRepository(h.tables, sync_wait_seconds=0.6)
    with pytest.raises(StoreError, match="another metadata sync is writing the policy table") as err:
        repo.replace_all(_set(base, drop="keyvault-private", audit="acr-private"))
    assert "agent-7 pid 42" in str(err.value) and "nothing was written" in str(err.value)
    assert _docs(h) == base
    assert [e["holder"] for e in _lease(h)] == ["x"]            # the other sync's lease is left alone


def test_a_lease_left_by_a_sync_that_died_is_taken_over_once_it_has_run_out(harness, caplog):
    h = harness([])
    base = _docs(h)
    past = datetime.now(timezone.utc) - timedelta(minutes=10)
    h.tables.table(h.tables.policies_name).create_entity({
        "PartitionKey": "sync", "RowKey": "lease", "holder": "x", "host": "agent-7 pid 42",
        "taken_at": past, "expires_at": past + timedelta(minutes=5)})
    caplog.set_level("WARNING", logger="guardrails")
    counts = TablePolicyRepository(h.tables, sync_wait_seconds=0).replace_all(
        _set(base, drop="keyvault-private", audit="acr-private"))
    assert (counts["updated"], counts["removed"]) == (1, 1)
    assert "keyvault-private" not in _docs(h) and _lease(h) == []
    assert any("policy_sync_lease_taken_over" in r.getMessage() and "agent-7" in r.getMessage()
               for r in caplog.records)


def test_a_row_changed_between_the_syncs_read_and_its_write_fails_the_sync_whole(harness):
    """An earlier release's sync (no lease) or an edit by hand lands while this sync runs: nothing
    of this sync is written over it."""
    h = harness([])
    base = _docs(h)
    table = h.tables.table(h.tables.policies_name)

    class _Interleaved(TablePolicyRepository):
        def _submit(self, tbl, ops, written):
            row = table.get_entity("policy", "acr-private")          # someone rewrites the row now
            row["synced_at"] = datetime.now(timezone.utc)
            table.update_entity(row, mode=UpdateMode.REPLACE)
            return super()._submit(tbl, ops, written)

    with pytest.raises(StoreError, match="'acr-private' changed after this sync read the table") as err:
        _Interleaved(h.tables).replace_all(_set(base, drop="keyvault-private", audit="acr-private"))
    assert "nothing was written" in str(err.value)
    after = _docs(h)
    assert after == base                                   # keyvault-private not removed either
    assert _lease(h) == []


def test_workers_read_the_policy_set_while_a_sync_holds_its_lease(harness):
    h = harness([])
    now = datetime.now(timezone.utc)
    h.tables.table(h.tables.policies_name).create_entity({
        "PartitionKey": "sync", "RowKey": "lease", "holder": "x", "host": "h",
        "taken_at": now, "expires_at": now + timedelta(minutes=5)})
    rows = h.repo.list_documents()
    assert {d["id"] for _, d in rows} == set(_docs(h)) and all("__corrupt__" not in d for _, d in rows)
