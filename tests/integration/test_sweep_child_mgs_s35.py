"""Session 35: the sweep judges the role assignments of every management group below a configured
one (``guardrails.sweep_groups``), not only those at the configured group itself.

No Event Grid source delivers a management group's role assignments, so the sweep is their only
path, and a grant at a group below the configured one reaches every subscription below that group.
Azurite + the HTTPS emulator (its world names the group hierarchy, ``managementGroups``, and answers
``GET …/managementGroups/{mg}/descendants?api-version=2020-05-01`` in pages) + the real SDK clients.

    mg-corp                       (configured)
    └── mg-corp-sandbox           (a child; configured too in the "once" test)
        ├── <subscription SUB>
        └── mg-corp-sandbox-dev   (a grandchild)
"""

from __future__ import annotations

import pytest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.ratelimit import FakeClock
from tests import builders as b

pytestmark = pytest.mark.integration

GROUPS = "/providers/Microsoft.Management/managementGroups"
MG, CHILD, GRANDCHILD = f"{GROUPS}/mg-corp", f"{GROUPS}/mg-corp-sandbox", f"{GROUPS}/mg-corp-sandbox-dev"
HIERARCHY = [{"name": "mg-corp-sandbox", "parent": "mg-corp", "subscriptions": [b.SUB]},
             {"name": "mg-corp-sandbox-dev", "parent": "mg-corp-sandbox"}]
ASSIGNMENTS = "/providers/Microsoft.Authorization/roleAssignments"


def _sweep(h, groups: str = "mg-corp", **env):
    clock = FakeClock()
    return bootstrap.build_sweeper(S.Settings.from_env({**h.env, "GUARDRAILS_SWEEP_MANAGEMENT_GROUPS": groups, **env}),
                                   clock=clock, sleep=clock.sleep).run()


def _rows(h, sweep_id: str) -> list[tuple[str, str]]:
    return [(r.resource_id, r.verdict) for r in h.stored_rows() if r.correlation_id == sweep_id]


def _group_lists(h, scope: str) -> list[dict]:
    """The ``atScope()`` lists of role assignments at ``scope`` (the management-group part's)."""
    return [q for q in h.arm_requests("GET") if q["path"] == f"{scope}{ASSIGNMENTS}"
            and q["query"].get("$filter") == "atScope()" and "$skiptoken" not in q["query"]]


def test_a_privileged_grant_at_a_grandchild_group_is_removed_and_audited(harness):
    """A Contributor two levels below the configured group is listed (the descendants list, paged),
    judged at its own group and removed; the subscription among the descendants is swept as a
    subscription, never listed as a group."""
    grant = b.role_assignment("Contributor", b.ALICE, scope=GRANDCHILD)
    h = harness([], world={"roleAssignments": [grant], "managementGroups": HIERARCHY})
    h.emu.page_size = 1                                                   # the descendants list pages too
    summary = _sweep(h)
    assert summary.errors == [] and not summary.truncated
    assert _rows(h, summary.sweep_id) == [(grant["id"], "remediated")]
    assert grant["id"] not in {a["id"] for a in h.emu.role_assignments()}
    listed = [q for q in h.arm_requests("GET") if q["path"] == f"{MG}/descendants"]
    assert listed[0]["query"]["api-version"] == "2020-05-01" and any("$skiptoken" in q["query"] for q in listed)
    assert [len(_group_lists(h, g)) for g in (MG, CHILD, GRANDCHILD)] == [1, 1, 1]
    assert not _group_lists(h, f"/subscriptions/{b.SUB}")                 # not judged as a group


def test_a_group_below_two_configured_groups_is_judged_once_per_run(harness):
    """``mg-corp`` and ``mg-corp-sandbox`` both configured: the sandbox and its grandchild are below
    both (and ARM's ``atScope()`` at each group lists the grants of the groups above it too), yet
    every group is listed once and every grant has one row and one removal."""
    at_child = b.role_assignment("Contributor", b.BOB, scope=CHILD)
    at_grandchild = b.role_assignment("Contributor", b.ALICE, scope=GRANDCHILD)
    at_top = b.role_assignment("Contributor", b.BOB, scope=MG)
    h = harness([], world={"roleAssignments": [at_child, at_grandchild, at_top], "managementGroups": HIERARCHY})
    summary = _sweep(h, "mg-corp,mg-corp-sandbox")
    assert summary.errors == []
    assert sorted(_rows(h, summary.sweep_id)) == sorted([(at_child["id"], "remediated"),
                                                         (at_grandchild["id"], "remediated"),
                                                         (at_top["id"], "remediated")])
    assert [len(_group_lists(h, g)) for g in (MG, CHILD, GRANDCHILD)] == [1, 1, 1]
    deletes = [q["path"] for q in h.arm_requests("DELETE")]
    assert sorted(deletes) == sorted(a["id"] for a in (at_child, at_grandchild, at_top))


def test_a_failed_descendants_list_is_a_run_error_and_the_configured_group_is_still_judged(harness):
    """ARM refuses the descendants list (403: the identity lacks ``…/descendants/read``): an error
    of the run naming the group, never a clean sweep; the configured group's own grant is still
    judged and removed (the child's cannot be: it was not listed)."""
    at_top = b.role_assignment("Contributor", b.ALICE, scope=MG)
    at_child = b.role_assignment("Contributor", b.ALICE, scope=CHILD)
    h = harness([], world={"roleAssignments": [at_top, at_child], "managementGroups": HIERARCHY})
    h.emu.add_fault(method="GET", path_regex=r"/managementGroups/mg-corp/descendants$", status=403,
                    code="AuthorizationFailed")
    summary = _sweep(h)
    assert summary.failed == 1 and len(summary.errors) == 1, summary.errors
    assert f"list the management groups below {MG}" in summary.errors[0] and "403" in summary.errors[0]
    assert _rows(h, summary.sweep_id) == [(at_top["id"], "remediated")]
    assert {a["id"] for a in h.emu.role_assignments()} == {at_child["id"]}


def test_a_compliant_grant_at_a_child_group_is_judged_and_left_alone(harness):
    """The boundary: a Reader at the child group is judged (a row, as a management group's
    always get: ``compliant``) and left in place, nothing deleted."""
    reader = b.role_assignment("Reader", b.ALICE, scope=CHILD)
    h = harness([], world={"roleAssignments": [reader], "managementGroups": HIERARCHY})
    summary = _sweep(h)
    assert summary.errors == []
    assert _rows(h, summary.sweep_id) == [(reader["id"], "compliant")]
    assert reader["id"] in {a["id"] for a in h.emu.role_assignments()}
    assert h.arm_requests("DELETE") == []


def test_a_run_cut_short_in_a_group_below_records_it_and_the_next_run_goes_on_from_there(harness):
    """The configured group's grant is judged, then the list at the child group is throttled with
    a ``Retry-After`` that does not fit in what is left of the budget: not waited out, the run is
    cut short (``truncated``, no error). The next run goes on where it stopped: it does not list
    the configured group's assignments again and judges the child's grant."""
    at_top = b.role_assignment("Contributor", b.ALICE, scope=MG)
    at_child = b.role_assignment("Contributor", b.ALICE, scope=CHILD)
    h = harness([], world={"roleAssignments": [at_top, at_child], "managementGroups": HIERARCHY})
    h.emu.add_fault(method="GET", path_regex=r"/mg-corp-sandbox/providers/Microsoft\.Authorization/roleAssignments$",
                    status=429, retry_after=3600, times=1)
    env = {"GUARDRAILS_SWEEP_MAX_SECONDS": "30", "GUARDRAILS_SWEEP_CONCURRENCY": "1"}
    first = _sweep(h, **env)
    assert first.truncated and first.errors == [] and first.units_done == 0, first.errors
    assert _rows(h, first.sweep_id) == [(at_top["id"], "remediated")]
    h.emu.clear_requests()
    second = _sweep(h, **env)
    assert not second.truncated and second.errors == [] and second.units_done == 1
    assert _rows(h, second.sweep_id) == [(at_child["id"], "remediated")]
    assert (len(_group_lists(h, MG)), len(_group_lists(h, CHILD))) == (0, 1)
    assert h.emu.role_assignments() == []
