"""Review of the event path (s24), over the in-memory stores: a decision that fails after it acted
(a long-running fix accepted by ARM, then the pending-fix record's table write failed) keeps its
decision with the event's claim (parked), so Event Grid's retry audits the fix instead of deciding
again on the state the fix left: released, the retry found the resource fixed and audited
``compliant``, the change and its revert gone from the audit trail."""

from __future__ import annotations

import pytest

from guardrails.errors import StoreError
from tests import builders as b
from tests.functional.test_service import make


def test_a_failure_after_the_act_leaves_the_fix_in_the_audit_trail():
    ws = b.workspace()
    svc, arm, idem, audit = make([ws])
    arm.write_state = "requested"             # ARM accepted a long-running PATCH

    def unavailable(*a, **k):
        raise StoreError("pending fixes: the table answered 503")

    svc.pending.add = unavailable
    event = b.write_event(ws["id"])
    with pytest.raises(StoreError):
        svc.handle_event(event)
    assert [m for m, _ in arm.writes()] == ["PATCH"] and audit.rows == []
    # the operation finishes meanwhile; Event Grid redelivers
    arm.resources[ws["id"].lower()]["properties"]["publicNetworkAccess"] = "Disabled"
    arm.write_state = "done"

    row = svc.handle_event(event)

    assert row.verdict == "requested" and row.reason == "store_error"
    assert [(v.rule, v.outcome) for v in row.violations] == [("public-network-access-disabled", "requested")]
    assert "audited by a later delivery" in row.message and "pending-fix record" in row.message
    assert [r.verdict for r in audit.rows] == ["requested"]
    assert [m for m, _ in arm.writes()] == ["PATCH"]          # nothing decided or sent again


def test_a_failure_before_any_act_still_releases_the_event_for_its_retry():
    ws = b.workspace()
    svc, arm, idem, audit = make([ws])
    arm.errors["PATCH"] = StoreError("a store failed before the fix was sent")    # nothing sent
    with pytest.raises(StoreError):
        svc.handle_event(b.write_event(ws["id"]))
    assert audit.rows == [] and arm.resources[ws["id"].lower()]["properties"]["publicNetworkAccess"] == "Enabled"
    arm.errors.clear()
    row = svc.handle_event(b.write_event(ws["id"]))        # the retry decides afresh
    assert row.verdict == "remediated" and [r.verdict for r in audit.rows] == ["remediated"]


def _exposed(source: str, vault: str, name: str, event_id: str = "1") -> dict:
    return {"specversion": "1.0", "id": event_id, "source": source, "type": "Guardrails.SecretExposed",
            "subject": name, "time": "2026-11-25T09:00:00Z",
            "data": {"VaultName": vault, "ObjectName": name, "ObjectType": "Secret", "Source": "scanner"}}


def test_two_scanners_reports_with_one_id_are_two_reports_and_a_redelivery_still_one():
    """CloudEvents makes only source + id unique: two scanners publishing to the exposure topic
    may both send id "1". The second report, about another secret, was dropped as ``duplicate``
    (nothing rotated, nobody told); a redelivery of one report is still a duplicate."""
    svc, arm, idem, audit = make([])
    first = svc.handle_event(_exposed("/scanners/github", "kv-ml-prod", "db-password"))
    second = svc.handle_event(_exposed("/scanners/gitleaks", "kv-payments", "stripe-key"))
    again = svc.handle_event(_exposed("/scanners/gitleaks", "kv-payments", "stripe-key"))

    assert first.verdict != "duplicate" and first.notify
    assert second.verdict != "duplicate" and second.notify and "kv-payments" in second.resource_id
    assert again.verdict == "duplicate" and not again.notify
