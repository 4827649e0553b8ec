"""Review s21 of policy sync, on Azurite through the real Table Storage client: a subscription
written as a YAML block scalar is synced normalised and the policy acts there; a sync that would
not fit one all-or-nothing transaction, or whose version does not fit the table's Int32 column,
is refused before any write and leaves the table as it was (also through the CLI); a rule on an
array path is refused by ``sync``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from guardrails import settings as S
from guardrails.cli import main as cli_main
from guardrails.errors import MetadataValidationError, StoreError
from guardrails.sync import metadata_dirs, sync_metadata
from tests import builders as b

pytestmark = pytest.mark.integration


def _dir(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    d = tmp_path / name
    d.mkdir()
    for fname, text in files.items():
        (d / fname).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return d


def _rows(h) -> dict[str, dict]:
    table = h.tables.table(h.tables.policies_name)
    return {e["RowKey"]: dict(e) for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": "policy"})}


def _documents(rows: dict[str, dict]) -> dict[str, str]:
    return {k: r["document"] for k, r in rows.items()}


def _storage_policy(pid: str, version: int = 1) -> str:
    return f"""
        id: {pid}
        version: {version}
        description: storage accounts stay private ({pid})
        mode: audit
        selector: {{resource_types: [Microsoft.Storage/storageAccounts]}}
        rules:
          - id: public-network-access-disabled
            property: properties.publicNetworkAccess
            expect: {{equals: Disabled}}
            action: {{type: notify}}
        """


def _storage_doc(pid: str, version: int = 1) -> dict:
    return {"id": pid, "version": version, "description": f"storage accounts stay private ({pid})",
            "mode": "audit", "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
            "rules": [{"id": "public-network-access-disabled", "property": "properties.publicNetworkAccess",
                       "expect": {"equals": "Disabled"}, "action": {"type": "notify"}}]}


# ---------------------------------------------------------------- 1. subscription as a block scalar

def test_a_subscription_written_as_a_block_scalar_is_synced_normalised_and_the_policy_acts(harness, tmp_path):
    extra = _dir(tmp_path, "site", {"storage-private.yaml": f"""
        id: storage-private
        version: 4
        description: storage accounts of the ML subscription stay private
        mode: enforce
        selector:
          resource_types: [Microsoft.Storage/storageAccounts]
          subscriptions:
            - |
              {b.SUB}
        rules:
          - id: public-network-access-disabled
            property: properties.publicNetworkAccess
            expect: {{equals: Disabled}}
            action: {{type: set-property, value: Disabled}}
        """})
    res = b.storage(blob=False)
    h = harness([res], extra_metadata=[extra])
    # the synced row holds the bare GUID
    doc = json.loads(_rows(h)["storage-private"]["document"])
    assert doc["selector"]["subscriptions"] == [b.SUB]
    # and the policy selects the account in that subscription and fixes it
    row = h.deliver(b.write_event(res["id"]))
    assert (row.verdict, row.policies) == ("remediated", ["storage-private@4"])
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


# ---------------------------------------------------------------- 3. one transaction or nothing

def test_a_sync_that_needs_more_than_one_transaction_is_refused_and_writes_nothing(harness):
    # GIVEN the shipped policies synced
    h = harness([])
    before = _documents(_rows(h))
    shipped = [(f"t/{k}", json.loads(v)) for k, v in before.items()]
    # WHEN a sync would narrow one policy and add 100 more (101 row changes: two transactions)
    narrowed = [(src, {**d, "mode": "audit"}) if d["id"] == "acr-private" else (src, d) for src, d in shipped]
    docs = narrowed + [(f"t/bulk-{i:03d}", _storage_doc(f"bulk-{i:03d}")) for i in range(100)]
    # THEN it is refused before the first write, saying how to split it
    with pytest.raises(StoreError, match=r"would change 101 policy rows .*nothing was written.*in steps of at most 100"):
        h.repo.replace_all(docs)
    # AND the table is exactly as it was: no batch landed, acr-private not narrowed
    assert _documents(_rows(h)) == before


def test_a_sync_of_exactly_one_full_transaction_lands_whole(harness):
    h = harness([])
    shipped = [(f"t/{k}", json.loads(v)) for k, v in _documents(_rows(h)).items()]
    keep = [(src, d) for src, d in shipped if d["id"] != "keyvault-private"]     # 1 removal
    docs = keep + [(f"t/bulk-{i:03d}", _storage_doc(f"bulk-{i:03d}")) for i in range(99)]   # + 99 added
    counts = h.repo.replace_all(docs)
    assert (counts["added"], counts["removed"]) == (99, 1)
    rows = _rows(h)
    assert "keyvault-private" not in rows and sum(k.startswith("bulk-") for k in rows) == 99


def test_the_cli_sync_refuses_more_than_one_transaction_with_a_clear_error(harness, tmp_path, monkeypatch, capsys):
    h = harness([])
    before = _documents(_rows(h))
    extra = _dir(tmp_path, "many", {f"bulk-{i:03d}.yaml": _storage_policy(f"bulk-{i:03d}") for i in range(101)})
    monkeypatch.setenv(S.TABLES_CONNECTION, h.env[S.TABLES_CONNECTION])
    monkeypatch.setenv(S.TABLE_PREFIX, h.env[S.TABLE_PREFIX])
    assert cli_main(["metadata", "sync", "--metadata", str(extra)]) == 2
    err = capsys.readouterr().err
    assert "error: this sync would change 101 policy rows (101 added" in err and "nothing was written" in err
    assert "Traceback" not in err
    assert _documents(_rows(h)) == before


# ---------------------------------------------------------------- 4. version in Edm.Int32

def test_a_version_past_int32_is_refused_before_any_write(harness):
    # GIVEN documents that skipped validation: one narrowed policy, one version past Int32
    h = harness([])
    before = _documents(_rows(h))
    docs = []
    for k, v in before.items():
        d = json.loads(v)
        if d["id"] == "acr-private":
            d["mode"] = "audit"
        if d["id"] == "storage-private":
            d["version"] = 2**31
        docs.append((f"t/{k}", d))
    # WHEN they are synced THEN a StoreError (no TypeError) says which policy, and nothing changed
    with pytest.raises(StoreError, match=r"policy 'storage-private': version 2147483648 .*nothing was written"):
        h.repo.replace_all(docs)
    assert _documents(_rows(h)) == before


def test_the_cli_sync_refuses_a_version_past_int32_as_invalid_metadata(harness, tmp_path, monkeypatch, capsys):
    h = harness([])
    before = _documents(_rows(h))
    extra = _dir(tmp_path, "site", {"big.yaml": _storage_policy("big-version", 2**31)})
    monkeypatch.setenv(S.TABLES_CONNECTION, h.env[S.TABLES_CONNECTION])
    monkeypatch.setenv(S.TABLE_PREFIX, h.env[S.TABLE_PREFIX])
    assert cli_main(["metadata", "sync", "--metadata", str(extra)]) == 1
    err = capsys.readouterr().err
    assert "invalid metadata, nothing changed" in err and "$.version: 2147483648 is greater than the maximum" in err
    assert _documents(_rows(h)) == before
    # the largest version that fits is synced
    ok = _dir(tmp_path, "ok", {"big.yaml": _storage_policy("big-version", 2**31 - 1)})
    assert cli_main(["metadata", "sync", "--metadata", str(ok)]) == 0
    assert _rows(h)["big-version"]["version"] == 2**31 - 1


# ---------------------------------------------------------------- 2. array paths

def test_sync_refuses_a_rule_on_an_array_path_and_changes_nothing(harness, tmp_path):
    h = harness([])
    before = _documents(_rows(h))
    extra = _dir(tmp_path, "site", {"storage-firewall.yaml": """
        id: storage-firewall
        version: 1
        description: no storage firewall rule opens the account to the internet
        mode: enforce
        selector: {resource_types: [Microsoft.Storage/storageAccounts]}
        rules:
          - id: no-open-ip-rule
            property: properties.networkAcls.ipRules
            expect: {not_in: [0.0.0.0/0, "*"]}
            action: {type: notify}
        """})
    with pytest.raises(MetadataValidationError) as info:
        sync_metadata(h.repo, metadata_dirs([extra]))
    (f,) = info.value.findings
    assert "policy 'storage-firewall': $.rules[0].property: 'properties.networkAcls.ipRules' is an array" in f
    assert _documents(_rows(h)) == before
