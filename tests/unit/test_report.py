"""The compliance report on a fixed audit table whose numbers were worked out by hand
(``EXPECTED``; the same table is written to Azurite by tests/integration/test_report_cli.py)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.report import build_report, render_html, render_text

SINCE = datetime(2026, 11, 1, tzinfo=timezone.utc)
UNTIL = datetime(2026, 11, 4, tzinfo=timezone.utc)      # exclusive
RG = "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg-ml"
ST = f"{RG}/providers/Microsoft.Storage/storageAccounts/"
A, B, E, G, H, J = (ST + n for n in ("sta", "stb", "ste", "stg", "sth", "stj"))
C = f"{RG}/providers/Microsoft.KeyVault/vaults/kvc"
D = f"{RG}/providers/Microsoft.MachineLearningServices/workspaces/mlwd"
F = f"{RG}/providers/Microsoft.ContainerRegistry/registries/acrf"
I = f"{RG}/providers/Microsoft.MachineLearningServices/registries/mlregi"   # noqa: E741


def v(policy: str, outcome: str) -> ViolationRecord:
    return ViolationRecord(policy, "public-network-access-disabled", "properties.publicNetworkAccess",
                           "Enabled", "Disabled", outcome)


def row(n: int, time: str, resource: str, verdict: str, *, reason: str = "", event_time: str = "",
        violations=(), event_id: str | None = None, policies=()) -> AuditRow:
    return AuditRow(event_id=event_id or f"ev-{n}", event_type="Microsoft.Resources.ResourceWriteSuccess",
                    resource_id=resource, verdict=verdict, reason=reason, violations=list(violations),
                    time=time, event_time=event_time, delivery_id=f"d{n:02d}", policies=list(policies))


FIXED_ROWS = [
    row(1, "2026-10-31T23:59:59.000000Z", A, "remediated", event_time="2026-10-31T23:59:00.000000Z",
        violations=[v("storage-private@7", "remediated")]),                                  # before the period
    row(2, "2026-11-01T10:00:00.000000Z", A, "remediated", event_time="2026-11-01T09:59:30.000000Z", event_id="ev-a",
        violations=[v("storage-private@7", "remediated"), v("storage-private@7", "remediated")]),   # 30 s
    row(3, "2026-11-01T12:00:00.000000Z", B, "violation", reason="notify", violations=[v("storage-private@7", "violation")]),
    row(4, "2026-11-02T08:00:00.000000Z", C, "remediated", event_time="2026-11-02T07:58:00.000000Z",
        violations=[v("keyvault-private@1", "remediated")]),                                 # 120 s
    row(5, "2026-11-02T09:00:00.000000Z", C, "compliant", event_id="ev-c"),
    row(6, "2026-11-02T10:00:00.000000Z", D, "dry_run", event_id="ev-d", violations=[v("ml-private@2", "dry_run")]),
    row(7, "2026-11-03T01:00:00.000000Z", E, "remediated", violations=[v("storage-private@7", "remediated")]),  # sweep: no event time
    row(8, "2026-11-03T02:00:00.000000Z", E, "escalated", reason="flip_flop", violations=[v("storage-private@7", "escalated")]),
    row(9, "2026-11-03T03:00:00.000000Z", F, "failed", reason="throttled", event_id="ev-f"),
    row(10, "2026-11-03T04:00:00.000000Z", G, "ignored", reason="own_write"),
    row(11, "2026-11-03T05:00:00.000000Z", "job:201", "violation", reason="network-zone"),
    row(12, "2026-11-03T06:00:00.000000Z", A, "duplicate", reason="duplicate"),
    row(13, "2026-11-03T07:00:00.000000Z", H, "requested", event_time="2026-11-03T06:59:00.000000Z",
        violations=[v("storage-private@7", "requested")]),
    row(14, "2026-11-03T08:00:00.000000Z", I, "remediated", event_time="2026-11-03T07:50:00.000000Z",
        violations=[v("registry-private@1", "remediated")]),                                 # 600 s
    row(15, "2026-11-04T00:00:00.000000Z", A, "violation", violations=[v("storage-private@7", "violation")]),  # after
    row(16, "2026-11-02T11:00:00.000000Z", "", "invalid", reason="missing_field"),
    row(17, "2026-11-02T12:00:00.000000Z", J, "ignored", reason="no_policy", event_id="ev-j"),
    # shadow rows: same event id as the enforced row, reason = what the shadow version would decide
    row(18, "2026-11-01T10:00:00.000000Z", A, "shadow", reason="remediated", event_id="ev-a", policies=["storage-private@8"]),
    row(19, "2026-11-02T09:00:00.000000Z", C, "shadow", reason="violation", event_id="ev-c", policies=["kv-strict@2"]),
    row(20, "2026-11-02T10:00:00.000000Z", D, "shadow", reason="compliant", event_id="ev-d", policies=["ml-private@3"]),
    row(21, "2026-11-02T12:00:00.000000Z", J, "shadow", reason="remediated", event_id="ev-j", policies=["storage-private@8"]),
    row(22, "2026-11-03T03:00:00.000000Z", F, "shadow", reason="remediated", event_id="ev-f", policies=["acr-private@2"]),
]

# worked out by hand from FIXED_ROWS (see the comments there)
EXPECTED = {
    "since": "2026-11-01T00:00:00Z", "until": "2026-11-04T00:00:00Z",
    "rows": 20,                                     # 22 minus the one before and the one at ``until``
    "verdicts": {"compliant": 1, "dry_run": 1, "duplicate": 1, "escalated": 1, "failed": 1, "ignored": 2,
                 "invalid": 1, "remediated": 4, "requested": 1, "shadow": 5, "violation": 2},
    "covered": 8,                                   # A B C D E F H I (not G J: ignored; not job:201, not "")
    "compliant": 3,                                 # A (remediated), C (compliant last), I (remediated)
    "requested": 1,                                 # H
    "compliance": 0.375,
    "time_to_remediate": {"count": 3, "skipped_without_event_time": 1,       # 30, 120, 600 s; E (sweep) skipped
                          "mean_seconds": 250.0, "median_seconds": 120.0, "p90_seconds": 600.0},
    "open_violations": [                            # latest decision violation/dry_run/failed/escalated
        {"resource_id": B, "verdict": "violation", "reason": "notify", "time": "2026-11-01T12:00:00.000000Z"},
        {"resource_id": D, "verdict": "dry_run", "reason": "", "time": "2026-11-02T10:00:00.000000Z"},
        {"resource_id": E, "verdict": "escalated", "reason": "flip_flop", "time": "2026-11-03T02:00:00.000000Z"},
        {"resource_id": F, "verdict": "failed", "reason": "throttled", "time": "2026-11-03T03:00:00.000000Z"},
    ],
    # one per rule fixed in a row: row 2's two findings of the same rule are one fix (A, then E)
    "remediations_per_policy": {"storage-private": 2, "keyvault-private": 1, "registry-private": 1},
    "remediations_per_day": [{"day": "2026-11-01", "count": 1}, {"day": "2026-11-02", "count": 1},
                             {"day": "2026-11-03", "count": 2}],
    "escalations": 1, "escalated_resources": [E],
    "regrant_escalations": 0, "escalated_grants": [],
    "shadow": {"compared": 4, "agree": 1, "stricter": 2, "looser": 1, "not_comparable": 1, "examples": [
        {"kind": "stricter", "event_id": "ev-c", "resource_id": C, "enforced": "compliant", "shadow": "violation",
         "shadow_policies": "kv-strict@2"},
        {"kind": "looser", "event_id": "ev-d", "resource_id": D, "enforced": "dry_run", "shadow": "compliant",
         "shadow_policies": "ml-private@3"},
        {"kind": "stricter", "event_id": "ev-j", "resource_id": J, "enforced": "compliant", "shadow": "remediated",
         "shadow_policies": "storage-private@8"},
    ]},
    "uncovered_sources": [],
    "deleted": 0,                                   # no row says a covered resource is gone
}


def test_report_numbers_match_the_hand_computed_expectation():
    report = build_report(FIXED_ROWS, since=SINCE, until=UNTIL)
    assert report.to_dict() == EXPECTED


def test_row_order_does_not_change_the_report():
    assert build_report(list(reversed(FIXED_ROWS)), since=SINCE, until=UNTIL).to_dict() == EXPECTED


def test_empty_period_has_no_ratios_and_a_zero_chart():
    report = build_report([], since=SINCE, until=UNTIL)
    d = report.to_dict()
    assert d["rows"] == d["covered"] == d["escalations"] == 0
    assert d["compliance"] is None and d["time_to_remediate"]["mean_seconds"] is None
    assert [x["count"] for x in d["remediations_per_day"]] == [0, 0, 0]
    text = render_text(report)
    assert "0 of 0 (n/a)" in text and "n/a" in render_html(report)


def test_remediations_without_event_time_are_counted_but_not_timed():
    rows = [row(1, "2026-11-01T10:00:00Z", A, "remediated"), row(2, "2026-11-01T11:00:00Z", B, "remediated",
                                                                   event_time="garbage")]
    ttr = build_report(rows, since=SINCE, until=UNTIL).time_to_remediate
    assert (ttr.count, ttr.skipped_without_event_time, ttr.mean_seconds) == (0, 2, None)


def test_a_role_granted_again_past_its_budget_is_a_re_grant_escalation_by_grant_not_assignment():
    sub = "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
    bob, owner = "b0b00000-0000-4000-8000-000000000002", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"

    def removal(n: int, reason: str) -> AuditRow:
        assignment = f"{sub}/providers/Microsoft.Authorization/roleAssignments/0000000{n}-0000-4000-8000-000000000000"
        before = {"role_name": "Owner", "role_id": owner, "principal_id": bob, "principal_type": "User",
                  "scope": sub, "condition": None}
        rec = ViolationRecord("rbac-least-privilege@1", "privileged-at-subscription", "roleAssignment", before,
                              None, "remediated")
        return row(n, f"2026-11-02T10:0{n}:00Z", assignment, "remediated", reason=reason, violations=[rec])

    report = build_report([removal(1, ""), removal(2, "flip_flop"), removal(3, "flip_flop")], since=SINCE, until=UNTIL)
    assert report.regrant_escalations == 2 and report.escalations == 0
    assert report.escalated_grants == [f"rolegrant:{sub}|{bob}|{owner}"]
    assert re.search(r"re-grant escalations +2 \(1 grants\)", render_text(report))


def test_event_sources_without_coverage_are_counted_apart_from_resources():
    s1, s2 = "/subscriptions/5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", "/subscriptions/7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b"
    gap = ViolationRecord("event-coverage@1", "no_system_topic", "eventSubscription", "…", None, "violation")
    rows = [row(1, "2026-11-01T10:00:00Z", s1, "violation", reason="event_coverage", violations=[gap]),
            row(2, "2026-11-01T10:00:01Z", s2, "violation", reason="event_coverage", violations=[gap]),
            row(3, "2026-11-02T10:00:00Z", s2.upper(), "compliant", reason="event_coverage"),
            row(4, "2026-11-02T11:00:00Z", A, "compliant")]
    report = build_report(rows, since=SINCE, until=UNTIL)
    assert report.uncovered_sources == [s1]
    assert (report.covered, report.compliant, report.open_violations) == (1, 1, [])   # the wiring is no resource
    assert report.to_dict()["uncovered_sources"] == [s1]
    assert re.search(r"event sources without coverage +1", render_text(report)) and s1 in render_text(report)
    assert s1 in render_html(report)


def test_latest_decision_wins_and_resource_ids_are_case_insensitive():
    rows = [row(1, "2026-11-01T10:00:00Z", A, "violation"), row(2, "2026-11-01T11:00:00Z", A.upper(), "compliant")]
    report = build_report(rows, since=SINCE, until=UNTIL)
    assert (report.covered, report.compliant, report.open_violations) == (1, 1, [])


def test_terminal_table_carries_the_figures():
    text = render_text(build_report(FIXED_ROWS, since=SINCE, until=UNTIL))
    for needle in ("3 of 8 (37.5%)", "4.2 min", "2.0 min", "10.0 min", "storage-private", "1 (1 resources)",
                   "4 compared: 1 agree, 2 stricter, 1 looser (1 not comparable)", "2026-11-03  2"):
        assert needle in text, needle


def test_html_is_self_contained_and_carries_the_figures():
    page = render_html(build_report(FIXED_ROWS, since=SINCE, until=UNTIL))
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<style>" in page
    assert not re.search(r"""(src|href)\s*=|https?://|<script|<link|@import|url\(""", page, re.IGNORECASE)
    for needle in ("37.5%", "4.2 min", "storage-private", "stricter", "2026-11-03: 2", "11-03"):
        assert needle in page, needle
    # one bar per day
    assert page.count("<rect") == 3


def test_html_escapes_what_comes_from_rows():
    rows = [row(1, "2026-11-01T10:00:00Z", A + "<script>", "violation", reason="<b>x</b>")]
    page = render_html(build_report(rows, since=SINCE, until=UNTIL))
    assert "<script>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
