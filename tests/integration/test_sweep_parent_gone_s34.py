"""A parent deleted while the sweep lists its children, and the summary's count of fixes only
requested: the sweep over Azurite + the HTTPS emulator with the real SDK clients.

ARM answers a list of children under a parent that no longer exists with 404
``ParentResourceNotFound`` (the ARM RPC contract: an empty list only when every parent exists);
the emulator does the same."""

from __future__ import annotations

import pytest

from guardrails.local.ml_emulator import online_endpoint
from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_sweep import _sweeper

pytestmark = pytest.mark.integration


def _deleting_before_its_children_are_listed(h, sweeper, parent_id: str, children: list[str]) -> list[str]:
    """Delete ``parent_id`` and ``children`` out of band (as ARM does when a workspace is deleted)
    just before the sweep lists the parent's children: after the parent's own list showed it."""
    listed: list[str] = []
    real = sweeper.lister.list_children

    def list_children(pid, rtype, **kw):
        if pid.lower() == parent_id.lower() and not listed:
            for rid in [parent_id, *children]:
                h.emu.store.unseed(rid)
        listed.append(pid)
        return real(pid, rtype, **kw)

    sweeper.lister.list_children = list_children
    return listed


def test_a_child_list_under_a_missing_parent_is_answered_404_and_lists_nothing(harness):
    """The emulator answers as ARM (404 ``ParentResourceNotFound``); the lister reads the parent
    once, finds it gone too, and lists no children."""
    ws = b.workspace("mlw-there", pna="Disabled")
    h = harness([ws])
    sweeper = _sweeper(h, FakeClock())
    from guardrails.ml_guardrail import SWEEP_ENDPOINTS
    assert list(sweeper.lister.list_children(ws["id"], SWEEP_ENDPOINTS)) == []
    gone = ws["id"].replace("mlw-there", "mlw-gone")
    assert list(sweeper.lister.list_children(gone, SWEEP_ENDPOINTS)) == []
    asked = [(q["path"].rsplit("/", 1)[-1], q["status"]) for q in h.emu.requests if "mlw-gone" in q["path"]]
    assert asked == [("onlineEndpoints", 404), ("mlw-gone", 404)]


def test_a_workspace_deleted_while_its_endpoints_are_listed_is_no_error_of_the_run(harness):
    """A workspace deleted between the workspace list and the list of its endpoints made the child
    list's 404 an error of the run (``failed`` counted, the timer's run reported failing, the
    CLI exiting 1) though nothing was left unswept. One read of the parent tells a parent gone
    (not an error) from a list ARM refused; the rest of the estate is swept as before."""
    gone, kept = b.workspace("mlw-gone", pna="Disabled"), b.workspace("mlw-kept", pna="Enabled")
    ep = online_endpoint(gone["id"], "scoring", tags={"owner": "ml@contoso.com", "environment": "dev"})
    h = harness([gone, kept, ep])
    sweeper = _sweeper(h, FakeClock())
    listed = _deleting_before_its_children_are_listed(h, sweeper, gone["id"], [ep["id"]])
    summary = sweeper.run(subscriptions=[b.SUB])
    assert gone["id"] in listed                                        # its children were asked for
    assert summary.errors == [] and summary.failed == 0, summary.errors
    assert h.resource(kept["id"])["properties"]["publicNetworkAccess"] == "Disabled"   # the rest swept
    # each of its child lists (computes, endpoints, models) answered 404, and one read of the parent each said why
    child_lists = [q for q in h.arm_requests("GET") if q["path"].lower().startswith(gone["id"].lower() + "/")]
    parent_reads = [q for q in h.arm_requests("GET") if q["path"].lower() == gone["id"].lower()]
    assert {q["status"] for q in child_lists} == {404} and len(child_lists) == 3
    assert [q["status"] for q in parent_reads] == [404] * len(child_lists)


def test_control_a_child_list_answered_404_under_a_parent_that_exists_stays_an_error(harness):
    """Control: ARM answers 404 for a child type it does not know (``InvalidResourceType``, a
    provider not registered) with the parent in place: that list was not swept, an error."""
    ws = b.workspace("mlw-there", pna="Disabled")
    h = harness([ws])
    h.emu.add_fault(method="GET", path_regex=r"mlw-there/onlineEndpoints$", status=404, code="InvalidResourceType")
    summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB])
    assert summary.failed == 1 and "onlineEndpoints" in summary.errors[0]


def test_summary_counts_a_fix_only_requested_apart_from_those_made(harness):
    """A long-running fix the sweep sent and ARM had not finished when its decision was recorded
    (``requested``: the write accepted, the value not yet confirmed) was counted ``remediated``
    in the summary row: the run claimed fixes it had not seen land. It is counted ``requested``;
    ``remediated`` holds only fixes confirmed in place."""
    ws = b.workspace("mlw-slow", pna="Enabled")
    h = harness([ws], lro_seconds=3.0)          # the PATCH outlasts the decision's budget: not yet confirmed
    summary = _sweeper(h, FakeClock(), GUARDRAILS_TIME_BUDGET_SECONDS="1.5").run(subscriptions=[b.SUB])
    assert summary.verdicts == {"requested": 1}, summary.verdicts
    assert (summary.remediated, summary.requested, summary.open, summary.failed) == (0, 1, 0, 0)
