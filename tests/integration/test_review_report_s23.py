"""Review fix (sweep 23): a day of audit is read whatever the shard count it was written with — a
``guardrails report`` (or any ``read_day``) whose ``GUARDRAILS_AUDIT_SHARDS`` differs from the
function app's, or a deployment that changed it, reads every row, in ``(time, delivery_id)``
order, past Table Storage's 1,000-entity pages, and nothing of the days around it."""

from __future__ import annotations

import json
import uuid
from datetime import date

import pytest

from guardrails import settings as S
from guardrails.adapters.audit_tables import TableAuditSink, _entity, _row_key, audit_partition
from guardrails.adapters.tables import Tables
from guardrails.cli import main as cli_main
from guardrails.model.decision import AuditRow

pytestmark = pytest.mark.integration
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"


def _row(i: int, time: str) -> AuditRow:
    rid = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st{i:04d}"
    return AuditRow(event_id=f"ev-{i}", event_type="Microsoft.Resources.ResourceWriteSuccess", resource_id=rid,
                    verdict="violation", time=time, delivery_id=uuid.uuid4().hex)


@pytest.fixture
def tables(azurite, monkeypatch):
    monkeypatch.setenv(S.TABLES_CONNECTION, azurite.connection_string)
    monkeypatch.setenv(S.TABLE_PREFIX, "R" + uuid.uuid4().hex[:12])
    t = Tables.from_settings(S.Settings.from_env())
    t.ensure()
    return t


def test_report_reads_the_rows_of_every_shard_count(tables, monkeypatch, capsys):
    # GIVEN a day written by an app at 32 shards, then (a redeployment) at 4, and the days around it
    written = [_row(i, f"2026-11-02T10:{i % 60:02d}:00.000000Z") for i in range(48)]
    for i, r in enumerate(written):
        TableAuditSink(tables, shards=32 if i < 32 else 4).write(r)
    for r in (_row(900, "2026-11-01T23:59:59.999999Z"), _row(901, "2026-11-03T00:00:00.000000Z")):
        TableAuditSink(tables, shards=32).write(r)
    # WHEN the operator reports that day with the default shard count (16)
    monkeypatch.delenv(S.AUDIT_SHARDS, raising=False)
    assert cli_main(["report", "--since", "2026-11-02", "--until", "2026-11-02", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # THEN every row of the day is read, and none of the days around it
    assert (out["rows"], out["covered"]) == (48, 48), out["rows"]
    day = TableAuditSink(tables, shards=2).read_day(date(2026, 11, 2))
    assert [(r.time, r.delivery_id) for r in day] == sorted((r.time, r.delivery_id) for r in written)


def test_read_day_pages_past_a_thousand_rows(tables):
    # GIVEN 1,050 rows of one day over 64 partitions (stored in batches: the real entity mapping)
    rows = [_row(i, f"2026-11-02T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000Z") for i in range(1050)]
    by_pk: dict[str, list[dict]] = {}
    for r in rows:
        pk = audit_partition(r.time, r.delivery_id, 64)
        by_pk.setdefault(pk, []).append({"PartitionKey": pk, "RowKey": _row_key(r), **_entity(r)})
    client = tables.table(tables.audit_name)
    for entities in by_pk.values():
        for k in range(0, len(entities), 100):
            client.submit_transaction([("upsert", e) for e in entities[k:k + 100]])
    # WHEN one day is read by a sink of another shard count
    day = TableAuditSink(tables, shards=16).read_day(date(2026, 11, 2))
    # THEN all of them, in order
    assert [(r.time, r.delivery_id) for r in day] == sorted((r.time, r.delivery_id) for r in rows)
