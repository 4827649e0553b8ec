"""Table-store review (session 22), on Azurite: the SDK retries a create whose answer was lost
(a 500, a timeout) and meets its own entity as a conflict; the store must recognise its own
write instead of treating it as another worker's."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from azure.data.tables import TableServiceClient

from guardrails.adapters.idempotency_tables import TableIdempotencyStore
from guardrails.adapters.remediation_tables import TableBreakerStore
from guardrails.adapters.tables import Tables
from guardrails.errors import IdempotencyError

pytestmark = pytest.mark.integration


def _tables(azurite) -> Tables:
    t = Tables(TableServiceClient.from_connection_string(azurite.connection_string), "Tidm" + uuid.uuid4().hex[:8])
    t.ensure()
    return t


def test_a_claim_whose_create_answer_was_lost_is_still_ours(azurite):
    tables = _tables(azurite)
    store = TableIdempotencyStore(tables, completed_ttl=timedelta(hours=24), in_progress_ttl=timedelta(seconds=120))
    # what the lost answer left behind: our IN_PROGRESS entity, committed
    pk, rk = TableIdempotencyStore._keys("evt-1")
    tables.table(tables.idempotency_name).create_entity({
        "PartitionKey": pk, "RowKey": rk, "status": "IN_PROGRESS", "holder": "delivery-a",
        "expires_at": datetime.now(timezone.utc) + timedelta(seconds=120), "verdict": ""})
    claim = store.acquire("evt-1", holder="delivery-a")
    assert claim.state == "acquired" and claim.token
    store.complete("evt-1", claim, verdict="remediated")           # the etag is the live one
    assert store.acquire("evt-1", holder="delivery-b").state == "completed"


def test_another_deliverys_live_claim_still_refuses(azurite):
    tables = _tables(azurite)
    store = TableIdempotencyStore(tables, completed_ttl=timedelta(hours=24), in_progress_ttl=timedelta(seconds=120))
    assert store.acquire("evt-2", holder="delivery-a").state == "acquired"
    with pytest.raises(IdempotencyError, match="another delivery"):
        TableIdempotencyStore(tables, completed_ttl=timedelta(hours=24), in_progress_ttl=timedelta(seconds=120)).acquire("evt-2", holder="delivery-b")


def test_a_breaker_permit_whose_create_answer_was_lost_counts_once(azurite):
    tables = _tables(azurite)
    first = TableBreakerStore(tables)
    assert first.try_acquire("p", "sub", max_actions=2, window_seconds=600, key="evt-1")
    retry = TableBreakerStore(tables)                 # the retried create meets the entity: read, same key
    assert retry.try_acquire("p", "sub", max_actions=2, window_seconds=600, key="evt-1")
    assert retry.try_acquire("p", "sub", max_actions=2, window_seconds=600, key="evt-2")
    assert not retry.try_acquire("p", "sub", max_actions=2, window_seconds=600, key="evt-3")


def test_metadata_sync_waits_for_a_role_that_is_not_applied_yet(azurite, monkeypatch, capsys):
    """azd's postprovision hook syncs right after the deployment assigned the deployer's table role,
    which takes minutes to apply: ``--wait-for-access`` retries the 403 (here: a wrong key,
    Azurite's 403) every 15 s for that long, then fails with Table Storage's answer."""
    from guardrails import cli
    conn = azurite.connection_string
    key = next(p.split("=", 1)[1] for p in conn.split(";") if p.startswith("AccountKey="))
    monkeypatch.setenv("GUARDRAILS_TABLES_CONNECTION", conn.replace(key, "d3Jvbmcta2V5LXdyb25nLWtleQ=="))
    monkeypatch.setenv("GUARDRAILS_TABLE_PREFIX", "Tsync" + uuid.uuid4().hex[:8])
    clock = [0.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(cli.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    assert cli.main(["metadata", "sync", "--wait-for-access", "60"]) == 2
    err = capsys.readouterr().err
    assert err.count("refused access (403), retrying") == 4 and "status 403" in err
    clock[0] = 0.0
    assert cli.main(["metadata", "sync"]) == 2                       # default: no wait
    assert "retrying" not in capsys.readouterr().err


def test_breaker_commands_reach_a_vaults_and_the_tenants_breakers(azurite, monkeypatch, capsys):
    """Doc review: secret rotations take their permits per vault (``keyvault:<vault>``) and role
    removals above a subscription under no subscription; ``breaker reset`` took a subscription id
    only, so neither could be reset from the CLI (an open breaker never closes by itself)."""
    from guardrails import cli
    monkeypatch.setenv("GUARDRAILS_TABLES_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("GUARDRAILS_TABLE_PREFIX", "Tbrk" + uuid.uuid4().hex[:8])
    tables = cli._tables(__import__("guardrails.settings", fromlist=["Settings"]).Settings.from_env())
    tables.ensure()
    store = TableBreakerStore(tables)
    for scope in ("keyvault:kv-ml-prod", ""):
        assert store.try_acquire("p", scope, max_actions=1, window_seconds=600, key="a")
        assert not store.try_acquire("p", scope, max_actions=1, window_seconds=600, key="b")
    for arg, scope in (("keyvault:KV-ml-prod", "keyvault:kv-ml-prod"), ("tenant", "")):
        assert cli.main(["breaker", "status", "p", arg]) == 0
        assert json.loads(capsys.readouterr().out)["open"] is True
        assert cli.main(["breaker", "reset", "p", arg]) == 0
        assert json.loads(capsys.readouterr().out)["had_state"] is True
        assert not store.is_open("p", scope)
    assert cli.main(["breaker", "reset", "p", "keyvault:not--a-vault"]) == 2
    assert cli.main(["breaker", "reset", "p", "nonsense"]) == 2
