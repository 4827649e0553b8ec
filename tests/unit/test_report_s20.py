"""Review fixes (sweep 20): the report ends resources that were deleted, counts one remediation per
rule fixed in a decision, the ``report`` CLI answers an out-of-range date with a usage error, and the
demo's summary names each finding's property and counts DELETEs as writes."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from guardrails.cli import main as cli_main
from guardrails.demo import arm_summary, render
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.report import build_report, render_html, render_text
from tests.unit.test_report import RG, SINCE, UNTIL, A, B, D, v

WS = D
COMPUTE = f"{WS}/computes/cpu-old"
DELETE = "Microsoft.Resources.ResourceDeleteSuccess"


def row(n: int, time: str, resource: str, verdict: str, *, reason: str = "", violations=(),
        event_type: str = "Microsoft.Resources.ResourceWriteSuccess") -> AuditRow:
    return AuditRow(event_id=f"ev-{n}", event_type=event_type, resource_id=resource, verdict=verdict, reason=reason,
                    violations=list(violations), time=time, delivery_id=f"d{n:02d}")


def node_ip(outcome: str = "violation") -> ViolationRecord:
    return ViolationRecord("aml-compute-no-public-ip@1", "node-public-ip-disabled",
                           "properties.properties.enableNodePublicIp", True, None, outcome)


# ---- 1. a deleted resource is no longer covered, nor an open violation ---------------------------
def test_a_compute_deleted_after_its_violation_is_no_longer_an_open_violation():
    # GIVEN an immutable violation (only deleting the compute fixes it), then its delete event
    rows = [row(1, "2026-11-01T10:00:00Z", COMPUTE, "violation", violations=[node_ip()]),
            row(2, "2026-11-01T11:00:00Z", COMPUTE, "ignored", reason="event_type_not_evaluated", event_type=DELETE),
            row(3, "2026-11-01T12:00:00Z", A, "compliant")]
    # WHEN the report is built
    report = build_report(rows, since=SINCE, until=UNTIL)
    # THEN the compute is neither covered nor open; the deletion is counted apart
    assert (report.covered, report.compliant, report.open_violations, report.deleted) == (1, 1, [], 1)
    assert report.compliance == 1.0
    assert re.search(r"deleted since decided \(not covered\) +1", render_text(report))


def test_a_resource_not_found_row_ends_the_resource_too():
    rows = [row(1, "2026-11-01T10:00:00Z", B, "violation", violations=[v("storage-private@7", "violation")]),
            row(2, "2026-11-01T11:00:00Z", B.upper(), "ignored", reason="resource_not_found")]
    report = build_report(rows, since=SINCE, until=UNTIL)
    assert (report.covered, report.open_violations, report.deleted) == (0, [], 1)
    assert report.compliance is None


def test_a_failed_row_for_a_404_on_something_else_does_not_end_the_resource():
    # a role assignment whose custom definition read answered 404: failed, reason resource_not_found;
    # the assignment itself still exists and stays covered and open
    rows = [row(1, "2026-11-01T10:00:00Z", B, "violation", violations=[v("storage-private@7", "violation")]),
            row(2, "2026-11-01T11:00:00Z", B, "failed", reason="resource_not_found")]
    report = build_report(rows, since=SINCE, until=UNTIL)
    assert report.deleted == 0 and report.covered == 1 and len(report.open_violations) == 1


def test_deleting_a_parent_ends_what_lives_under_it():
    # the workspace (its computes with it) and the resource group (everything in it) are deleted
    other = f"{RG}-other/providers/Microsoft.Storage/storageAccounts/stx"
    rows = [row(1, "2026-11-01T10:00:00Z", COMPUTE, "violation", violations=[node_ip()]),
            row(2, "2026-11-01T10:00:01Z", B, "violation"),
            row(3, "2026-11-01T10:00:02Z", other, "violation"),
            row(4, "2026-11-01T11:00:00Z", WS, "ignored", reason="event_type_not_evaluated", event_type=DELETE)]
    report = build_report(rows, since=SINCE, until=UNTIL)
    assert [o.resource_id for o in report.open_violations] == [B, other]     # not the compute
    rows.append(row(5, "2026-11-01T12:00:00Z", RG, "ignored", reason="event_type_not_evaluated", event_type=DELETE))
    report = build_report(rows, since=SINCE, until=UNTIL)
    assert [o.resource_id for o in report.open_violations] == [other]        # rg-ml-other is not under rg-ml
    assert report.deleted == 2


def test_a_resource_decided_again_after_its_deletion_counts_again():
    # GIVEN deleted, then re-created with the same name and decided again
    rows = [row(1, "2026-11-01T10:00:00Z", COMPUTE, "remediated"),
            row(2, "2026-11-01T11:00:00Z", COMPUTE, "ignored", reason="event_type_not_evaluated", event_type=DELETE),
            row(3, "2026-11-01T12:00:00Z", COMPUTE, "violation", violations=[node_ip()])]
    report = build_report(list(reversed(rows)), since=SINCE, until=UNTIL)
    assert (report.covered, report.deleted) == (1, 0)
    assert [(o.resource_id, o.verdict) for o in report.open_violations] == [(COMPUTE, "violation")]


def test_a_deleted_key_vault_secret_is_ended_by_secret_not_found():
    secret = "https://kv-ml-prod.vault.azure.net/secrets/db-password"
    rows = [row(1, "2026-11-01T10:00:00Z", secret + "/v1", "violation"),
            row(2, "2026-11-01T11:00:00Z", secret, "ignored", reason="secret_not_found")]
    report = build_report(rows, since=SINCE, until=UNTIL)
    assert (report.covered, report.open_violations, report.deleted) == (0, [], 1)


# ---- 2. remediations per policy: one per rule fixed in a decision --------------------------------
def test_a_model_version_archived_for_three_missing_tags_is_one_remediation():
    version = f"{WS}/models/fraud-clf/versions/8"
    tags = [ViolationRecord("model-registry@1", "required-tags", "properties.isArchived", False, True, "remediated",
                            f"required tag {t!r} is missing or empty; archived")
            for t in ("data_version", "git_sha", "metric_summary")]
    two_rules = [v("storage-private@1", "remediated"),
                 ViolationRecord("storage-private@1", "blob-public-access-off", "properties.allowBlobPublicAccess",
                                 True, False, "remediated")]
    rows = [row(1, "2026-11-01T10:00:00Z", version, "remediated", violations=tags),
            row(2, "2026-11-01T11:00:00Z", A, "remediated", violations=two_rules),
            row(3, "2026-11-01T12:00:00Z", A, "remediated", violations=[v("storage-private@2", "remediated")])]
    report = build_report(rows, since=SINCE, until=UNTIL)
    # THEN one per (row, rule): 1 archive; 2 rules fixed on A, then 1 more fix on A
    assert report.remediations_per_policy == {"storage-private": 3, "model-registry": 1}
    assert "one per rule fixed in a decision" in render_text(report)
    assert "One per rule fixed in a decision" in render_html(report)


# ---- 3. report --until/--since at the calendar's ends: a usage error, not a traceback --------------
@pytest.mark.parametrize("args", [
    ["--until", "9999-12-31"],                                 # the end of that day is past datetime.max
    ["--until", "0001-01-02"],                                 # the default 7 days before is before datetime.min
    ["--since", "9999-12-30", "--until", "9999-12-31T23:00:00"],   # the day after the last one read
])
def test_report_dates_out_of_range_are_a_usage_error(args, capsys, monkeypatch):
    # GIVEN an audit table (empty: no I/O here) so a period that parses is read day by day
    from guardrails.adapters.audit_tables import TableAuditSink
    monkeypatch.setenv("GUARDRAILS_TABLES_CONNECTION", "UseDevelopmentStorage=true")
    monkeypatch.setattr(TableAuditSink, "read_day", lambda self, day: [])
    # WHEN / THEN a usage error (exit 2) naming the range, not an OverflowError traceback (exit 1)
    assert cli_main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "out of range" in err and "0001-01-02 and 9999-12-30" in err


def test_report_periods_inside_the_range_still_run(capsys, monkeypatch):
    from guardrails.adapters.audit_tables import TableAuditSink
    monkeypatch.setenv("GUARDRAILS_TABLES_CONNECTION", "UseDevelopmentStorage=true")
    monkeypatch.setattr(TableAuditSink, "read_day", lambda self, day: [])
    assert cli_main(["report", "--since", "9999-12-29", "--until", "9999-12-30", "--json"]) == 0
    assert '"until": "9999-12-31T00:00:00Z"' in capsys.readouterr().out


# ---- 4. the demo: DELETEs are writes; each finding names its property ------------------------------
def test_demo_counts_deletes_among_arm_writes():
    reqs = [{"host": "management", "method": m} for m in ["GET"] * 5 + ["PATCH", "PUT", "DELETE", "DELETE", "POST"]]
    reqs.append({"host": "vault", "method": "PUT"})
    assert arm_summary(reqs) == "ARM requests: 10 (5 GET, 4 writes: 1 PATCH, 1 PUT, 2 DELETE; 1 POST)"


def test_demo_render_shows_each_findings_property_and_folds_repeats():
    tags = [{"policy": "model-registry@1", "rule": "required-tags", "property": "properties.isArchived",
             "before": False, "after": True, "outcome": "remediated"}] * 3
    ip = [{"policy": "aml-compute-no-public-ip@1", "rule": "node-public-ip-disabled",
           "property": "properties.properties.enableNodePublicIp", "before": True, "after": None, "outcome": "violation"}]
    decisions = [{"message": "", "violations": vs, "verdict": verdict, "reason": "", "resource_id": rid,
                  "duration_ms": 1.0} for vs, verdict, rid in ((tags, "remediated", f"{WS}/models/m/versions/8"),
                                                              (ip, "violation", COMPUTE))]
    text = render(SimpleNamespace(decisions=decisions))
    assert "required-tags: isArchived false -> true [remediated] (3 findings)" in text
    assert text.count("required-tags") == 1
    assert "node-public-ip-disabled: enableNodePublicIp true [violation]" in text
    # distinct findings of one decision: one per line, under "what happened"
    decisions[1]["violations"] = ip + tags[:1]
    lines = render(SimpleNamespace(decisions=decisions)).splitlines()
    assert lines[-2].endswith("node-public-ip-disabled: enableNodePublicIp true [violation]")
    assert lines[-1].strip() == "required-tags: isArchived false -> true [remediated]"
    assert lines[-1].index("required-tags") == lines[-2].index("node-public-ip-disabled")
