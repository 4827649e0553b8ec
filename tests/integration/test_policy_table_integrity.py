"""The policy table on Azurite: a row edited in place is put back by the next sync and is not
trusted meanwhile; a sync that cannot write everything writes nothing; a missing table is an
error, never "no policy"."""

from __future__ import annotations

import json
import logging

import pytest
from azure.data.tables import UpdateMode

from guardrails.errors import StoreError
from guardrails.sync import metadata_dirs, sync_metadata
from tests import builders as b


pytestmark = pytest.mark.integration


def _row(h, pid: str) -> dict:
    return h.tables.table(h.tables.policies_name).get_entity("policy", pid)


def _tamper(h, pid: str, **changes) -> None:
    """Someone with table access switches a policy off, leaving the sha256 column as it was."""
    row = _row(h, pid)
    doc = {**json.loads(row["document"]), **changes}
    row["document"] = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    h.tables.table(h.tables.policies_name).upsert_entity(dict(row), mode=UpdateMode.REPLACE)


def test_a_row_edited_in_place_is_not_trusted_and_the_next_sync_puts_it_back(harness, caplog):
    res = b.storage(blob=False)
    h = harness([res])
    _tamper(h, "storage-private", mode="off")
    caplog.set_level(logging.ERROR, logger="guardrails")
    h.service.policies.invalidate()
    # a worker that never loaded the row's good version decides nothing: the edited row is not
    # used, and its policy is not dropped either (that would switch it off: "no_policy")
    row = h.deliver(b.write_event(res["id"]))            # the trigger raised: Event Grid redelivers
    assert (row.verdict, row.reason) == ("failed", "policy_unreadable") and "metadata sync" in row.message
    assert any("policy_row_tampered" in r.getMessage() for r in caplog.records)   # … and it is said
    assert h.writes() == []
    counts = sync_metadata(h.repo, metadata_dirs())
    assert counts["updated"] == 1, counts                                 # the sync notices and repairs
    assert json.loads(_row(h, "storage-private")["document"])["mode"] == "enforce"
    h.service.policies.invalidate()
    assert h.deliver(b.write_event(res["id"])).verdict == "remediated"


def test_a_sync_that_cannot_write_every_row_writes_none(harness):
    """``validate`` refuses a policy too large for one row (test_policy_loader); the repository
    checks again before its first write, so even documents that skipped validation change
    nothing: no row updated, none removed."""
    h = harness([])
    table = h.tables.table(h.tables.policies_name)
    before = {e["RowKey"]: e["document"] for e in table.query_entities("PartitionKey eq @pk",
                                                                        parameters={"pk": "policy"})}
    docs = [(f"table/{k}", json.loads(v)) for k, v in before.items() if k != "keyvault-private"]
    docs = [(src, {**d, "mode": "audit"}) if d["id"] == "acr-private" else (src, d) for src, d in docs]
    huge = {**json.loads(before["storage-private"]), "description": "x" * 40_000}
    docs = [(src, huge) if d["id"] == "storage-private" else (src, d) for src, d in docs]
    with pytest.raises(StoreError, match="nothing was written"):
        h.repo.replace_all(docs)
    after = {e["RowKey"]: e["document"] for e in table.query_entities("PartitionKey eq @pk",
                                                                       parameters={"pk": "policy"})}
    assert after == before                  # acr-private not switched, keyvault-private not removed


def test_a_sync_is_one_transaction(harness):
    """Every change of one sync lands together: an update and a removal in one call."""
    h = harness([])
    table = h.tables.table(h.tables.policies_name)
    rows = {e["RowKey"]: json.loads(e["document"]) for e in table.query_entities(
        "PartitionKey eq @pk", parameters={"pk": "policy"})}
    docs = [(f"t/{k}", {**d, "mode": "audit"} if k == "acr-private" else d)
            for k, d in rows.items() if k != "keyvault-private"]
    counts = h.repo.replace_all(docs)
    assert (counts["updated"], counts["removed"]) == (1, 1)
    after = {e["RowKey"]: json.loads(e["document"]) for e in table.query_entities(
        "PartitionKey eq @pk", parameters={"pk": "policy"})}
    assert after["acr-private"]["mode"] == "audit" and "keyvault-private" not in after


def test_a_missing_policy_table_is_an_error_not_an_empty_policy_set(harness):
    h = harness([])
    h.tables.service.delete_table(h.tables.policies_name)
    with pytest.raises(StoreError, match="does not exist"):
        h.repo.list_documents()
