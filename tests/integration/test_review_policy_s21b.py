"""Review s21b of policy rows, on Azurite through the real Table Storage client and the trigger.

1. A row an earlier release synced (one subscription GUID in two cases, a rule id ending in a
   line break) keeps a worker with a cold cache deciding: it is not refused again on read
   (``PolicyUnreadable``, every event ``failed``); ``sync`` still refuses those files.
2. A first load into an empty policy partition is not held to one transaction: 150 policies land
   in one sync (``simulate --metadata DIR`` with 150 extra policies works); while such a load is
   under way, or stopped half-way, workers decide nothing on the partial set, and the next sync
   finishes it. A table that holds a policy set still refuses a sync of more than 100 changes,
   writing nothing.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import uuid
from pathlib import Path

import pytest
from azure.data.tables import UpdateMode

from guardrails import settings as S
from guardrails.adapters.policy_tables import TablePolicyRepository
from guardrails.adapters.tables import Tables
from guardrails.errors import MetadataValidationError, PolicyUnreadable, StoreError
from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_documents
from guardrails.simulate import run_simulation
from guardrails.sync import metadata_dirs, sync_metadata
from tests import builders as b

pytestmark = pytest.mark.integration

LOADING = "!loading"      # TablePolicyRepository.LOADING_KEY: no policy id spells it


def _rows(tables: Tables) -> dict[str, dict]:
    table = tables.table(tables.policies_name)
    return {e["RowKey"]: dict(e) for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": "policy"})}


def _storage_doc(pid: str, version: int = 1) -> dict:
    return {"id": pid, "version": version, "description": f"storage accounts stay private ({pid})",
            "mode": "audit", "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
            "rules": [{"id": "public-network-access-disabled", "property": "properties.publicNetworkAccess",
                       "expect": {"equals": "Disabled"}, "action": {"type": "notify"}}]}


def _bulk(n: int, *, start: int = 0) -> list[tuple[str, dict]]:
    return [(f"t/bulk-{i:03d}", _storage_doc(f"bulk-{i:03d}")) for i in range(start, start + n)]


@pytest.fixture
def empty_tables(azurite):
    """A deployment's tables before the first ``metadata sync``: created, no policy row."""
    settings = S.Settings.from_env({S.TABLES_CONNECTION: azurite.connection_string,
                                    S.TABLE_PREFIX: "T" + uuid.uuid4().hex[:12]})
    tables = Tables.from_settings(settings)
    tables.ensure()
    return tables


# ---------------------------------------------------------------- 1. rows an earlier release synced

def _write_row_as_an_earlier_sync_did(tables: Tables, doc: dict) -> None:
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    tables.table(tables.policies_name).upsert_entity({
        "PartitionKey": "policy", "RowKey": doc["id"], "document": body,
        "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(), "version": doc["version"],
        "source": f"metadata/policies/{doc['id']}.yaml"}, mode=UpdateMode.REPLACE)


def test_a_row_an_earlier_release_synced_keeps_a_cold_worker_deciding(harness):
    # GIVEN a public storage account, and the storage-private row as an earlier release synced it:
    # its subscription listed twice (two cases) and its rule ids ending in a line break
    res = b.storage()
    h = harness([res])
    doc = json.loads(_rows(h.tables)["storage-private"]["document"])
    doc["selector"]["subscriptions"] = [b.SUB, b.SUB.upper()]
    for rule in doc["rules"]:
        rule["id"] += "\n"
    _write_row_as_an_earlier_sync_did(h.tables, doc)
    h.service.policies.invalidate()
    # WHEN the worker, with no policy set loaded yet, gets a write event of the account
    row = h.deliver(b.write_event(res["id"]))
    # THEN it decides on the row (it was `failed`, policy_unreadable, on every event)
    assert (row.verdict, row.reason) != ("failed", "policy_unreadable"), row.message
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    # AND the audit row names the rule as the earlier release did
    assert "public-network-access-disabled\n" in {v.rule for v in row.violations}


def test_sync_still_refuses_a_subscription_listed_twice_and_changes_nothing(harness, tmp_path):
    h = harness([])
    before = _rows(h.tables)
    d = tmp_path / "site"
    d.mkdir()
    (d / "storage.yaml").write_text(textwrap.dedent(f"""
        id: storage-twice
        version: 1
        description: one subscription listed twice
        mode: audit
        selector:
          resource_types: [Microsoft.Storage/storageAccounts]
          subscriptions: [{b.SUB}, {b.SUB.upper()}]
        rules:
          - id: public-network-access-disabled
            property: properties.publicNetworkAccess
            expect: {{equals: Disabled}}
            action: {{type: notify}}
        """).lstrip(), encoding="utf-8")
    with pytest.raises(MetadataValidationError, match="listed twice"):
        sync_metadata(h.repo, metadata_dirs([d]))
    assert {k: r["document"] for k, r in _rows(h.tables).items()} == {k: r["document"] for k, r in before.items()}


# ---------------------------------------------------------------- 2. a first load of any size

def test_an_empty_table_takes_150_policies_in_one_sync(empty_tables):
    repo = TablePolicyRepository(empty_tables)
    counts = repo.replace_all(_bulk(150))
    assert counts == {"added": 150, "updated": 0, "unchanged": 0, "removed": 0}
    rows = _rows(empty_tables)
    assert len(rows) == 150 and LOADING not in rows
    docs = repo.list_documents()
    assert [p.id for p in load_documents(docs, check_paths=False)] == [f"bulk-{i:03d}" for i in range(150)]
    # AND the next sync of the same set changes nothing
    assert repo.replace_all(_bulk(150))["unchanged"] == 150


def test_a_populated_table_still_refuses_a_101_change_sync_and_writes_nothing(empty_tables):
    repo = TablePolicyRepository(empty_tables)
    repo.replace_all(_bulk(150))
    before = {k: r["document"] for k, r in _rows(empty_tables).items()}
    # narrow one policy and add 100 (101 changes): two transactions
    narrowed = [(src, {**d, "mode": "off"}) if d["id"] == "bulk-000" else (src, d) for src, d in _bulk(150)]
    with pytest.raises(StoreError, match=r"would change 101 policy rows .*nothing was written"):
        repo.replace_all(narrowed + _bulk(100, start=150))
    # 101 additions to a set in force are refused too
    with pytest.raises(StoreError, match=r"would change 101 policy rows \(101 added"):
        repo.replace_all(_bulk(150) + _bulk(101, start=150))
    # removing 101 of them as well
    with pytest.raises(StoreError, match=r"would change 101 policy rows .*101 removed"):
        repo.replace_all(_bulk(49))
    after = _rows(empty_tables)
    assert {k: r["document"] for k, r in after.items()} == before and LOADING not in after


def test_a_first_load_that_stops_half_way_is_never_decided_on_and_the_next_sync_finishes_it(harness):
    # GIVEN a deployment whose policy partition is empty, and a public storage account
    res = b.storage()
    h = harness([res])
    h.repo.replace_all([])
    assert _rows(h.tables) == {}
    shipped = [(p.source, p.to_document()) for p in _shipped()]
    # WHEN a first load of the shipped set and 150 more fails in its second transaction (Table
    # Storage refuses a row key with '#'): the shipped set landed in the first one
    broken = shipped + _bulk(120) + [("t/bad", _storage_doc("bulk#bad"))] + _bulk(29, start=120)
    with pytest.raises(StoreError, match="run the sync again"):
        h.repo.replace_all(broken)
    rows = _rows(h.tables)
    assert LOADING in rows and "storage-private" in rows and len(rows) == 101
    # THEN no worker decides on the partial set: the event fails (redelivered), the account untouched
    with pytest.raises(PolicyUnreadable, match="still loading"):
        h.repo.list_documents()
    h.service.policies.invalidate()
    row = h.deliver(b.write_event(res["id"]))
    assert (row.verdict, row.reason) == ("failed", "policy_unreadable"), row.message
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    # WHEN the sync runs again with the corrected set
    counts = h.repo.replace_all(shipped + _bulk(149))
    # THEN it finishes the load (what the first transaction wrote is unchanged) and the mark is gone
    assert (counts["added"], counts["unchanged"]) == (len(shipped) + 149 - 100, 100)
    rows = _rows(h.tables)
    assert LOADING not in rows and len(rows) == len(shipped) + 149
    # AND the redelivered event is decided on the complete set
    h.service.policies.invalidate()
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)


def test_a_stopped_first_load_is_finished_even_when_more_than_100_rows_are_left(empty_tables):
    repo = TablePolicyRepository(empty_tables)
    with pytest.raises(StoreError):
        repo.replace_all(_bulk(100) + [("t/bad", _storage_doc("bulk#bad"))] + _bulk(150, start=100))
    assert len(_rows(empty_tables)) == 101          # the mark and the first transaction
    cache = PolicyCache(repo, ttl_seconds=0)
    with pytest.raises(PolicyUnreadable):
        cache.get()
    counts = repo.replace_all(_bulk(250))            # 150 still to add: more than one transaction
    assert (counts["added"], counts["unchanged"]) == (150, 100)
    assert LOADING not in _rows(empty_tables)
    assert len(cache.get().all_policies) == 250


def test_simulate_with_150_extra_policies_syncs_and_decides(azurite, tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(150):
        (d / f"bulk-{i:03d}.yaml").write_text(json.dumps(_storage_doc(f"bulk-{i:03d}")), encoding="utf-8")
    res = b.storage()
    env = {S.TABLES_CONNECTION: azurite.connection_string, S.TABLE_PREFIX: "T" + uuid.uuid4().hex[:12]}
    result = run_simulation({"resources": [res]}, [b.write_event(res["id"])], extra_metadata=[d], env=env)
    assert result.failed_deliveries == 0, result.errors
    assert result.decisions[0]["verdict"] == "remediated", result.decisions[0]


def _shipped():
    from guardrails.policy.loader import load_directory
    return load_directory(*metadata_dirs())
