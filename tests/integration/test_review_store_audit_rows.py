"""Audit rows whose ``violations`` do not fit one Table Storage property (30,000 characters), on
Azurite: a secret exposure writes one record per older enabled version (~330 characters each).
The row stays JSON that parses: the whole records that fit, then an ``omitted`` record saying how
many were left out; a row an older version cut mid-JSON reads back flagged instead of raising, so
``report``, ``republish`` and the outbox drain keep working. Also: pending-fix records and parked
decisions of that size."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from azure.functions.timer import TimerRequest

from guardrails import settings as S
from guardrails.adapters.audit_tables import OMITTED_RULE, UNREADABLE_RULE, TableAuditSink, audit_partition
from guardrails.adapters.idempotency_tables import TableIdempotencyStore
from guardrails.adapters.remediation_tables import TablePendingFixes
from guardrails.adapters.tables import Tables, resource_partition
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.triggers.decision_events import decision_outbox

pytestmark = pytest.mark.integration

RID = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1"


def _tables(azurite) -> Tables:
    settings = S.Settings.from_env({S.TABLES_CONNECTION: azurite.connection_string,
                                    S.TABLE_PREFIX: "T" + uuid.uuid4().hex[:12]})
    tables = Tables.from_settings(settings)
    tables.ensure()
    return tables


def _row(n: int) -> AuditRow:
    """A secret exposure: one record per older enabled version, each ~330 characters as JSON."""
    records = [ViolationRecord(policy="secrets@1", rule="disable-exposed-versions", property="secret",
                               before={"version": uuid.uuid4().hex, "enabled": True, "created_on": "2026-01-01T00:00:00Z"},
                               after={"enabled": False}, outcome="remediated" if i % 10 else "failed",
                               message="older version disabled after exposure") for i in range(n)]
    return AuditRow(event_id=uuid.uuid4().hex, event_type="Microsoft.KeyVault.SecretNewVersionCreated", resource_id=RID,
                    verdict="failed", violations=records, delivery_id=uuid.uuid4().hex, policies=["secrets@1"],
                    time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def _day(row: AuditRow):
    return datetime.strptime(row.time[:10], "%Y-%m-%d").date()


def test_a_row_with_many_violations_reads_back_with_the_records_that_fit_and_an_omitted_record(azurite):
    # GIVEN a row whose violations are ~66,000 characters of JSON
    tables = _tables(azurite)
    sink = TableAuditSink(tables)
    row = _row(200)
    assert len(json.dumps([v.to_dict() for v in row.violations])) > 60_000
    # WHEN it is audited and read back every way the product reads it
    sink.write(row)
    by_day = sink.read_day(_day(row))
    by_resource = sink.read_resource(RID)
    by_delivery = sink.rows_of_delivery(RID, row.delivery_id)
    # THEN each read has the row: whole records in their order, then one ``omitted`` record
    for rows in (by_day, by_resource, by_delivery):
        (back,) = rows
        *kept, marker = back.violations
        assert 50 < len(kept) < 200
        assert [v.to_dict() for v in kept] == [v.to_dict() for v in row.violations[:len(kept)]]
        assert (marker.rule, marker.outcome, marker.before, marker.after) == (OMITTED_RULE, "omitted", 200, len(kept))
        assert f"{200 - len(kept)} of 200" in marker.message and "remediated" in marker.message
        assert back.policies == ["secrets@1"] and back.verdict == "failed"
    # AND the stored property parses, holds at most 30,000 characters, and the count has a column
    entity = tables.table(tables.audit_name).get_entity(audit_partition(row.time, row.delivery_id, 16), _row_key(row))
    assert len(entity["violations"]) <= 30_000
    assert len(json.loads(entity["violations"])) == len(by_day[0].violations)
    assert entity["violations_omitted"] == 200 - (len(by_day[0].violations) - 1)


def _row_key(row: AuditRow) -> str:
    return f"{row.time.replace('-', '').replace(':', '').replace('.', '')}-{row.delivery_id}"


def test_a_row_within_the_limit_is_stored_exactly_as_before(azurite):
    tables = _tables(azurite)
    sink = TableAuditSink(tables)
    row = _row(20)
    sink.write(row)
    (back,) = sink.rows_of_delivery(RID, row.delivery_id)
    assert back.to_dict() == row.to_dict()
    entity = tables.table(tables.audit_name).get_entity(audit_partition(row.time, row.delivery_id, 16), _row_key(row))
    assert "violations_omitted" not in entity
    assert entity["violations"] == json.dumps([v.to_dict() for v in row.violations], sort_keys=True)


def test_a_row_an_older_version_cut_mid_json_reads_back_flagged_instead_of_raising(azurite):
    # GIVEN a row stored as the previous version stored it: violations JSON sliced at 30,000
    tables = _tables(azurite)
    sink = TableAuditSink(tables)
    row = _row(200)
    entity = row.to_dict()
    for f in ("violations", "actor", "policies"):
        entity[f] = json.dumps(entity[f], sort_keys=True, default=str)[:30_000]
    with pytest.raises(ValueError):
        json.loads(entity["violations"])
    rk = _row_key(row)
    tables.table(tables.audit_name).upsert_entity(
        {"PartitionKey": audit_partition(row.time, row.delivery_id, 16), "RowKey": rk, **entity})
    tables.table(tables.audit_index_name).upsert_entity({"PartitionKey": resource_partition(RID), "RowKey": rk, **entity})
    # WHEN it is read (report, republish, drain)
    for rows in (sink.read_day(_day(row)), sink.read_resource(RID), sink.rows_of_delivery(RID, row.delivery_id)):
        # THEN the whole records before the cut come back, and a record says the rest is lost
        (back,) = rows
        *kept, flag = back.violations
        assert 50 < len(kept) < 200
        assert [v.to_dict() for v in kept] == [v.to_dict() for v in row.violations[:len(kept)]]
        assert (flag.rule, flag.property, flag.outcome, flag.after) == (UNREADABLE_RULE, "violations", "omitted", len(kept))
        assert back.delivery_id == row.delivery_id and back.verdict == "failed"


def test_a_redelivery_republishes_a_row_with_many_violations(harness):
    h = harness([], decision_topic=True)
    row = _row(200)
    TableAuditSink(h.tables).write(row)
    assert h.service.publisher.republish(RID, row.delivery_id) == 1
    (event,) = h.emu.published_events("decisions")
    assert event["id"] == row.delivery_id
    assert event["data"]["violations"][-1]["rule"] == OMITTED_RULE


def test_a_stale_intent_of_a_row_with_many_violations_is_published_by_the_outbox_timer(harness):
    h = harness([], decision_topic=True, env={S.DECISION_INTENT_HOLD_SECONDS: "1"})
    row = _row(200)
    assert h.service.publisher.intend(row)
    TableAuditSink(h.tables).write(row)          # the worker audited, then died before publishing
    time.sleep(1.3)
    decision_outbox(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    assert [e["id"] for e in h.emu.published_events("decisions")] == [row.delivery_id]


def test_a_long_pending_fix_record_reads_back_whole(azurite):
    tables = _tables(azurite)
    pending = TablePendingFixes(tables)
    rules = [{"action": "Allow", "value": f"10.{i // 250}.{i % 250}.0/24"} for i in range(1500)]
    record = {"event_id": "e1", "api_version": "2023-05-01",
              "changes": [{"policy": "storage@1", "rule": "firewall", "property": "properties.networkAcls",
                           "before": {"defaultAction": "Allow", "ipRules": rules},
                           "after": {"defaultAction": "Deny", "ipRules": rules}}]}
    assert len(json.dumps(record)) > 60_000
    pending.add(RID, "e1", record)
    pending.add(RID, "e2", {"event_id": "e2", "changes": []})
    assert {r["event_id"]: r for _k, r in pending.list(RID)} == {"e1": record, "e2": {"event_id": "e2", "changes": []}}


def test_a_decision_with_many_violations_can_be_parked_and_taken_over(azurite):
    tables = _tables(azurite)
    store = TableIdempotencyStore(tables, completed_ttl=timedelta(hours=24), in_progress_ttl=timedelta(seconds=120))
    row = _row(200)
    claim = store.acquire("event-1", holder="w1")
    store.park("event-1", claim, row.to_dict())                   # the audit write failed after the fix
    taken = store.acquire("event-1", holder="w2")
    assert taken.parked is not None
    back = AuditRow.from_dict(taken.parked)
    *kept, marker = back.violations
    assert [v.to_dict() for v in kept] == [v.to_dict() for v in row.violations[:len(kept)]]
    assert (marker.rule, marker.before, marker.after) == (OMITTED_RULE, 200, len(kept))
