"""Role-assignment guardrail, review fixes (s20) end to end (real azure-mgmt-authorization client and
azure-core pipeline to the emulator's ARM and Graph, Azurite audit): an RBAC administrator whose
condition allows only Owner, a Contributor clone spelled without '*', Graph answering in an
unexpected shape."""

from __future__ import annotations

import pytest

from tests import builders as b
from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, RG_SCOPE, _exists
from tests.integration.test_role_review_fixes import CUSTOM, _world, custom_role

pytestmark = pytest.mark.integration

OWNER = b.ROLE_IDS["Owner"]
# "may assign a role only if it is NOT not-Owner": Owner and nothing else
ONLY_OWNER = ("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
              "(!(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
              "ForAnyOfAnyValues:GuidNotEquals {" + OWNER + "})))")
CONTRIBUTOR_NOT = ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
                   "Microsoft.Authorization/elevateAccess/Action",
                   "Microsoft.KeyVault/vaults/accessPolicies/write"]   # so only '*' can judge it


def test_an_rbac_administrator_allowed_to_assign_only_owner_is_removed(harness, tmp_path):
    admin = b.role_assignment("Role Based Access Control Administrator", b.BOB, condition=ONLY_OWNER)
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, admin])
    row = h.deliver(b.role_event(admin))
    assert row.verdict == "remediated" and not _exists(h, admin)
    assert [v.rule for v in row.violations] == ["rbac-admin-without-condition"]


@pytest.mark.parametrize("actions", [["*/read", "*/write", "*/delete", "*/action"], ["Microsoft.*"]])
def test_a_contributor_clone_without_a_bare_star_is_removed(harness, tmp_path, actions):
    grant = b.role_assignment("Owner", b.BOB, role_id=CUSTOM)
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, grant],
               definitions=[custom_role(actions=actions, not_actions=CONTRIBUTOR_NOT)])
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "remediated" and not _exists(h, grant)
    assert [v.rule for v in row.violations] == ["privileged-at-subscription"]


@pytest.mark.parametrize("status", [200, 204])
def test_graph_answering_in_an_unexpected_shape_is_a_failed_row_and_nothing_is_removed(harness, tmp_path, status):
    # a grant Graph must judge (BOB is not in the granted group); Graph answers a success that is
    # no checkMemberGroups result (an error body with 200, or no content)
    grant = b.role_assignment("AzureML Data Scientist", b.BOB, scope=RG_SCOPE)
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, grant])
    h.emu.add_fault(method="POST", path_regex="checkMemberGroups", status=status)
    row = h.deliver(b.role_event(grant))
    assert (row.verdict, row.reason) == ("failed", "unexpected_shape")
    assert [r.verdict for r in h.stored_rows()] == ["failed"]
    assert _exists(h, grant) and h.writes() == []


# ---- 5. a custom role an ABAC condition names, widened: the RBAC administrator is re-judged -----------
def test_widening_a_role_a_condition_allows_re_judges_the_rbac_administrator(harness, tmp_path):
    from tests.integration.test_role_definition_change import _definition_event, _deliver

    # GIVEN an RBAC administrator allowed to assign Reader and a custom role that only reads, and
    # another whose condition does not name the custom role
    cond = b.RBAC_ADMIN_CONDITION.replace(b.ROLE_IDS["Storage Blob Data Contributor"], CUSTOM)
    admin = b.role_assignment("Role Based Access Control Administrator", b.BOB, condition=cond,
                              name="0a0a0000-0000-4000-8000-0000000000a1")
    other = b.role_assignment("Role Based Access Control Administrator", b.ALICE,
                              condition=b.RBAC_ADMIN_CONDITION, name="0a0a0000-0000-4000-8000-0000000000a2")
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, admin, other], definitions=[custom_role(["*/read"])])
    assert [h.deliver(b.role_event(a)).verdict for a in (admin, other)] == ["compliant", "compliant"]
    # WHEN the custom role is widened to everything
    h.emu.put_role_definition(custom_role(["*"]))
    row = _deliver(h, _definition_event())
    # THEN the administrator who may now hand out '*' is re-judged and removed; the other stays
    assert row.verdict == "remediated", row.message
    assert not _exists(h, admin) and _exists(h, other)
    rejudged = [r for r in h.recorder.rows if r.resource_id.lower() == admin["id"].lower()]
    assert [r.verdict for r in rejudged][-1] == "remediated"
    assert [v.rule for v in rejudged[-1].violations] == ["rbac-admin-without-condition"]
