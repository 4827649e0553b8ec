"""Session 35 of the ML lifecycle guardrail, end to end (Azurite + the local HTTPS emulator + the
real SDK clients, through the trigger function): what a model version's change does to the
production endpoints serving it (``ml_serving``).

Tests named ``test_control_*`` pass on the code before the fixes and show the boundary; every
other test failed on it and says, in its docstring, what was wrong and what is expected.
"""

from __future__ import annotations

import pytest

from guardrails.ml_guardrail import VERSION_CHANGE_EVENT_TYPE
from guardrails.model.policy import FlipFlop
from guardrails.policy.model_rules import RULE_SERVING_ENDPOINTS
from tests import builders as b
from tests.integration.test_ml_guardrail import EP, WS, endpoint_world
from tests.integration.test_ml_s20b import change_version, deliver_all, notifications

pytestmark = pytest.mark.integration
V7 = f"{WS}/models/fraud-clf/versions/7"        # served by ``blue`` in ``endpoint_world``


# ---- (a) rows re-judged from a version change name who changed the version -------------------------
def test_an_endpoint_re_judged_from_a_version_change_carries_the_events_actor(harness):
    """DEFECT. A version change re-judges the production endpoints serving it, each in its own row
    (``Guardrails.ModelVersionChange``, through ``service.reconcile``, which makes a timer's row
    naming nobody). The revert it makes (the endpoint's traffic) is the version change's, by the
    event's actor, as on the event's own row, but its row and its flip-flop count carried no actor.
    Expected: the re-judged row's actor is the event's, and the endpoint's revert count names them."""
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 60, "green": 40})
    h = harness(world)
    event = change_version(h, V7, "demote")         # alice, through ARM
    endpoint_row, own = deliver_all(h, event)
    assert endpoint_row.event_type == VERSION_CHANGE_EVENT_TYPE and endpoint_row.verdict == "remediated"
    assert own.actor.object_id == b.ALICE
    assert endpoint_row.actor == own.actor, f"the re-judged row names {endpoint_row.actor}, the event {own.actor}"
    actors = h.service.escalations.status(EP)["actors"]
    assert [a["object_id"] for a in actors] == [b.ALICE], f"the endpoint's revert was counted for {actors}"


def test_an_escalation_counted_from_a_re_judged_row_names_who_changed_the_version(harness):
    """DEFECT (same root cause, where it shows). The endpoint was reverted three times already
    (by the sweep, which names nobody); alice's version change then re-judges it past the flip-flop
    budget: ``escalated``, and the owner's message says whose changes were reverted. It said
    "changes by unknown actor". Expected: it names alice."""
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 60, "green": 40})
    h = harness(world)
    for _ in range(3):
        assert h.service.escalations.attempt(EP, None, rule=FlipFlop()).allowed
    event = change_version(h, V7, "demote")
    endpoint_row, _own = deliver_all(h, event)
    assert (endpoint_row.verdict, endpoint_row.reason) == ("escalated", "flip_flop")
    message = endpoint_row.violations[0].message
    assert "unknown actor" not in message and "alice@contoso.com" in message, message
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 60, "green": 40}     # held, not reverted


def test_control_a_sweep_row_names_no_actor(harness):
    """CONTROL (passes). A sweep's decision on the same endpoint is nobody's change: no actor."""
    world, _green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 60, "green": 40})
    h = harness(world)
    row = h.service.reconcile(EP, None, sweep_id="sweep-s35")
    assert row.verdict == "remediated" and not (row.actor.object_id or row.actor.upn or row.actor.app_id)


# ---- (b) the workspace deleted while its endpoints are looked for ------------------------------------
def test_a_workspace_deleted_while_its_endpoints_are_listed_is_ignored_not_a_violation(harness, caplog):
    """DEFECT. A version made unfit (stage demoted) lists its workspace's online endpoints; the
    workspace was deleted meanwhile (with it this version and every endpoint), so ARM answers the
    list ``404`` (``ParentResourceNotFound``). That was taken for a list ARM refused: a
    ``serving-endpoints`` violation "left to the sweep" on the version's row, and its owner told
    of endpoints that no longer exist. Expected: as any decision about a resource that is gone,
    ``ignored`` / ``resource_not_found``; no record, no owner notice, nothing written."""
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 100, "green": 0})
    h = harness(world)
    event = change_version(h, V7, "demote")
    h.emu.clear_requests()
    h.emu.add_fault("GET", r"/onlineEndpoints$", status=404, code="ParentResourceNotFound", times=5)
    with caplog.at_level("WARNING", logger="guardrails"):
        (row,) = deliver_all(h, event)
    assert (row.verdict, row.reason) == ("ignored", "resource_not_found"), (row.verdict, row.reason, row.message)
    assert row.violations == [] and not row.notify and notifications(caplog) == []
    assert "no longer exists" in row.message
    assert h.writes() == []


def test_an_endpoint_deleted_before_its_deployments_are_listed_is_not_left_to_the_sweep(harness):
    """DEFECT (the same one level down). The version's workspace lists a production endpoint serving
    it, which is deleted before its deployments are listed (``404``): it serves nothing any more,
    yet it was named a ``serving-endpoints`` violation for the sweep. Expected: skipped; the
    version's row is ``compliant`` (its tags are all there) with no record."""
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 100, "green": 0})
    h = harness(world)
    event = change_version(h, V7, "demote")
    h.emu.clear_requests()
    h.emu.add_fault("GET", r"/onlineEndpoints/fraud-scoring/deployments$", status=404,
                    code="ParentResourceNotFound", times=5)
    (row,) = deliver_all(h, event)
    assert (row.verdict, row.violations) == ("compliant", []), row.message
    assert h.writes() == []


def test_an_archive_made_before_the_workspace_was_deleted_stays_on_the_row(harness):
    """DEFECT (the same, after an archive). The version's own decision archived it (its tags
    removed) and the workspace is then deleted before its endpoints are listed. The row was a
    ``violation`` (``serving-endpoints``, endpoints that no longer exist left to the sweep).
    Expected: the archive was made, so its record stays (``remediated``; its owner was told of
    it), with the workspace gone noted; no ``serving-endpoints`` record."""
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 100, "green": 0})
    h = harness(world)
    event = change_version(h, V7, "untag")
    h.emu.add_fault("GET", r"/onlineEndpoints$", status=404, code="ParentResourceNotFound", times=5)
    (row,) = deliver_all(h, event)
    assert row.verdict == "remediated" and h.resource(V7)["properties"]["isArchived"] is True
    assert RULE_SERVING_ENDPOINTS not in {v.rule for v in row.violations}
    assert "no longer exists" in row.message


def test_control_an_endpoint_list_arm_refuses_is_still_left_to_the_sweep(harness):
    """CONTROL (passes). A list ARM refuses (403) is not a workspace gone: the violation stays."""
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 100, "green": 0})
    h = harness(world)
    event = change_version(h, V7, "demote")
    h.emu.add_fault("GET", r"/onlineEndpoints$", status=403, times=5)
    (row,) = deliver_all(h, event)
    assert row.verdict == "violation" and [v.rule for v in row.violations] == [RULE_SERVING_ENDPOINTS]
