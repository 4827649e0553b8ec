"""Deleted resources in the compliance report, when the delete event arrives late (dead-letter
review, session 22): a resource group deleted at T0, re-created with a storage account audited
after; the replay of T0's dead-lettered ResourceDeleteSuccess, days later, wrote a row stamped
now, and the report took the account for deleted. A delete counts from its own event time."""

from __future__ import annotations

from datetime import datetime, timezone

from guardrails.model.decision import AuditRow
from guardrails.report import build_report

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
RG = f"/subscriptions/{SUB}/resourceGroups/rg1"
SA = f"{RG}/providers/Microsoft.Storage/storageAccounts/sa1"
SINCE, UNTIL = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 10, tzinfo=timezone.utc)


def _decision(time: str, verdict: str) -> AuditRow:
    return AuditRow(event_id=f"ev-{time}", event_type="Microsoft.Resources.ResourceWriteSuccess", resource_id=SA,
                    verdict=verdict, time=time, event_time=time, delivery_id=f"d-{time}", duration_ms=40.0)


def _deleted(time: str, event_time: str) -> AuditRow:
    return AuditRow(event_id=f"del-{time}", event_type="Microsoft.Resources.ResourceDeleteSuccess", resource_id=RG,
                    verdict="ignored", reason="event_type_not_evaluated", time=time, event_time=event_time,
                    delivery_id=f"x-{time}")


def test_a_late_replayed_delete_does_not_end_a_resource_re_created_since():
    rows = [_decision("2026-11-03T10:00:00.000000Z", "violation"),                 # re-created, audited
            _deleted("2026-11-05T08:00:00.000000Z", "2026-11-02T09:00:00.0000000Z")]   # the replay, days later
    report = build_report(rows, since=SINCE, until=UNTIL)
    assert (report.covered, report.deleted) == (1, 0)
    assert [o.resource_id for o in report.open_violations] == [SA]


def test_a_delete_after_the_decision_still_ends_it():
    rows = [_decision("2026-11-03T10:00:00.000000Z", "violation"),
            _deleted("2026-11-03T11:00:01.000000Z", "2026-11-03T11:00:00.0000000Z")]
    report = build_report(rows, since=SINCE, until=UNTIL)
    assert (report.covered, report.deleted, report.open_violations) == (0, 1, [])


def test_a_404_row_ends_it_from_its_own_time():
    gone = AuditRow(event_id="ev-404", event_type="Microsoft.Resources.ResourceWriteSuccess", resource_id=SA,
                    verdict="ignored", reason="resource_not_found", time="2026-11-04T00:00:00.000000Z",
                    event_time="2026-11-01T00:00:00.000000Z", delivery_id="d-404")
    report = build_report([_decision("2026-11-03T10:00:00.000000Z", "violation"), gone], since=SINCE, until=UNTIL)
    assert (report.covered, report.deleted) == (0, 1)
