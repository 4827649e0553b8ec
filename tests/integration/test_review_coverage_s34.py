"""Review s34: the event-coverage check (``guardrails.coverage``, ``guardrails.coverage_check``) and the
role-definition change handler (``guardrails.role_definitions``), on Azurite + the HTTPS emulator
through the real SDK clients.

Each test names what is wrong and what is expected; controls (labelled) show the boundary."""

from __future__ import annotations

import pytest

from guardrails.local.eventgrid_world import subscription_wiring
from tests import builders as b
from tests.integration.test_coverage_sweep import APP, SUB2, _coverage_rows, _sweeper

pytestmark = pytest.mark.integration


def _gap_rows(h, sweep_id: str) -> list:
    """Every coverage row of one sweep (``_coverage_rows`` keys by resource id and so hides repeats)."""
    return [r for r in h.stored_rows() if r.correlation_id == sweep_id and r.reason == "event_coverage"]


# ---- 1. one event source named twice is judged, recorded and notified twice per run ---------------
def test_a_subscription_named_twice_is_one_event_source_one_row_one_notification(harness):
    """DEFECT: ``coverage_check.expectations`` builds one expectation per entry of the swept
    subscription list without folding duplicates. Subscription ids are case-insensitive GUIDs and
    ``GUARDRAILS_SWEEP_SUBSCRIPTIONS`` / ``--subscription`` keep whatever case the operator typed,
    so the same subscription listed twice (``<id>,<ID>``) becomes two sources: every sweep writes
    two ``violation`` rows for the one gap, the first run notifies the owner twice (each read
    compares against the same stored state), and ``uncovered`` counts one gap as two.
    EXPECTED: one source per subscription (compared case-insensitively): one row, one
    notification, ``uncovered == 1``."""
    h = harness([b.storage("stok", pna="Disabled", blob=False), *subscription_wiring(b.SUB, APP),
                 b.storage("stnew", pna="Disabled", blob=False)])
    # SUB2 has no system topic: a real gap
    summary = _sweeper(h, GUARDRAILS_SWEEP_SUBSCRIPTIONS=f"{b.SUB},{SUB2},{SUB2.upper()}").run()
    rows = [r for r in _gap_rows(h, summary.sweep_id) if r.resource_id.lower() == f"/subscriptions/{SUB2}"]
    assert [r.notify for r in rows] == [True], [(r.resource_id, r.notify) for r in rows]
    assert summary.uncovered == 1


def test_control_a_subscription_named_once_is_one_row_and_one_notification(harness):
    """CONTROL (passes): the same estate with SUB2 named once gives one row, notified once."""
    h = harness([b.storage("stok", pna="Disabled", blob=False), *subscription_wiring(b.SUB, APP)])
    summary = _sweeper(h, GUARDRAILS_SWEEP_SUBSCRIPTIONS=f"{b.SUB},{SUB2}").run()
    rows = [r for r in _gap_rows(h, summary.sweep_id) if r.resource_id.lower() == f"/subscriptions/{SUB2}"]
    assert [r.notify for r in rows] == [True] and summary.uncovered == 1
    assert set(_coverage_rows(h, summary.sweep_id)) == {f"/subscriptions/{SUB2}"}


# ---- 2. a role-definition change whose re-judging left a privileged grant in place says "remediated"
_OTHER_POLICY = f"""
id: rbac-glass-elsewhere
version: 1
kind: role-assignments
description: a second role policy whose break-glass list names Alice
mode: enforce
privileged:
  roles: [Owner]
break_glass: [{b.ALICE}]
action: {{type: delete-role-assignment}}
"""


def test_a_widened_role_whose_rejudging_kept_a_privileged_grant_is_not_recorded_as_remediated(harness, tmp_path):
    """DEFECT: ``RoleDefinitionChanges.on_definition`` (guardrails/role_definitions.py, the verdict
    ladder at the end) ranks ``remediated``/``requested`` above ``violation``/``escalated``, the
    reverse of ``model.decision.SEVERITY`` used for every other row. A custom role widened to ``*``
    with two assignments at subscription scope: Bob's is removed, Alice's is kept (she is
    break-glass in another policy, so it is only reported). The definition event's row says
    ``remediated`` with ``notify`` False, as though the widening had been fully undone, while a
    privileged grant made by the widening still stands.
    EXPECTED: the most serious outcome wins, as ``combine_verdict`` does: ``violation`` and
    ``notify`` True (the re-judged rows, one remediated and one violation, stay as they are)."""
    from guardrails.role_definitions import DEFINITION_CHANGE_EVENT_TYPE
    from tests.integration.test_role_definition_change import _assignment, _definition_event, _deliver
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, _exists, _policy_dir
    from tests.integration.test_role_review_fixes import custom_role

    bob = _assignment(b.BOB, "0b0b0000-0000-4000-8000-0000000003b1")
    alice = _assignment(b.ALICE, "0b0b0000-0000-4000-8000-0000000003b2")
    d = _policy_dir(tmp_path)
    (d / "rbac-glass-elsewhere.yaml").write_text(_OTHER_POLICY)
    world = {"roleAssignments": [BREAK_GLASS_OWNER, bob, alice], "roleDefinitions": [custom_role(["*/read"])],
             "directory": {"groups": {b.DS_GROUP: [b.ALICE]}}}
    h = harness([], world=world, extra_metadata=[d])
    h.emu.put_role_definition(custom_role(["*"]))
    row = _deliver(h, _definition_event())
    rejudged = {r.resource_id.lower(): r.verdict for r in h.recorder.rows
                if r.event_type == DEFINITION_CHANGE_EVENT_TYPE}
    # the boundary: Bob's grant went, Alice's stays and is reported
    assert rejudged == {bob["id"].lower(): "remediated", alice["id"].lower(): "violation"}, rejudged
    assert not _exists(h, bob) and _exists(h, alice)
    assert (row.verdict, row.notify) == ("violation", True), (row.verdict, row.notify, row.message)
