"""Role-assignment guardrail, review fixes end to end (real azure-mgmt-authorization client, the
emulator's assignments / definitions / Graph directory, Azurite audit). Asserts on the emulator's
resulting state: the assignment really gone, or really kept."""

from __future__ import annotations

import pytest

from tests import builders as b
from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, RG_SCOPE, SUB_SCOPE, _exists, _policy_dir

pytestmark = pytest.mark.integration

ROOT_OWNER_NAME = "0a0a0000-0000-4000-8000-0000000000f0"
CUSTOM = "c0ffee00-0000-4000-8000-0000000000e1"


def root_assignment(role: str, principal: str, name: str = ROOT_OWNER_NAME) -> dict:
    a = b.role_assignment(role, principal, scope="/", name=name)
    a["id"] = f"/providers/Microsoft.Authorization/roleAssignments/{name}"
    a["properties"]["roleDefinitionId"] = f"/providers/Microsoft.Authorization/roleDefinitions/{b.ROLE_IDS[role]}"
    return a


def custom_role(actions=(), data_actions=(), not_actions=()) -> dict:
    return {"id": f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM}", "name": CUSTOM,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {"roleName": "Contoso Delegated Admin", "type": "CustomRole", "description": "x",
                           "assignableScopes": [SUB_SCOPE],
                           "permissions": [{"actions": list(actions), "notActions": list(not_actions),
                                            "dataActions": list(data_actions), "notDataActions": []}]}}


def _world(harness, tmp_path, assignments, *, definitions=(), groups=None):
    world = {"roleAssignments": list(assignments), "roleDefinitions": list(definitions),
             "directory": {"groups": groups or {b.DS_GROUP: [b.ALICE]}}}
    return harness([], world=world, extra_metadata=[_policy_dir(tmp_path)])


# ---- 1. the last-Owner rail ----------------------------------------------------------------------
def test_an_owner_inherited_from_the_tenant_root_lets_an_attackers_owner_go(harness, tmp_path):
    # GIVEN the real owner is Owner at the tenant root (break-glass) and nobody else at the subscription
    root_owner = root_assignment("Owner", b.BREAK_GLASS)
    attacker = b.role_assignment("Owner", b.BOB)
    h = _world(harness, tmp_path, [root_owner, attacker])
    # WHEN the attacker's Owner at subscription scope is delivered
    row = h.deliver(b.role_event(attacker))
    # THEN it is removed (the inherited Owner stays) and the root one is untouched
    assert row.verdict == "remediated" and not _exists(h, attacker)
    assert _exists(h, root_owner)


def test_two_attacker_owners_do_not_vouch_for_each_other(harness, tmp_path):
    # GIVEN two violating Owners at the subscription and no other Owner anywhere
    a1, a2 = b.role_assignment("Owner", b.BOB), b.role_assignment("Owner", b.ALICE)
    h = _world(harness, tmp_path, [a1, a2])
    rows = [h.deliver(b.role_event(a)) for a in (a1, a2)]
    # THEN neither is removed on the strength of the other: both are kept and reported
    assert [r.verdict for r in rows] == ["violation", "violation"]
    assert all("last Owner" in r.violations[0].message for r in rows)
    assert _exists(h, a1) and _exists(h, a2) and h.writes() == []


def test_two_attacker_owners_are_both_removed_when_a_lawful_owner_stays(harness, tmp_path):
    a1, a2 = b.role_assignment("Owner", b.BOB), b.role_assignment("Owner", b.ALICE)
    h = _world(harness, tmp_path, [root_assignment("Owner", b.BREAK_GLASS), a1, a2])
    assert [h.deliver(b.role_event(a)).verdict for a in (a1, a2)] == ["remediated", "remediated"]
    assert not _exists(h, a1) and not _exists(h, a2)


def test_a_lawful_owner_at_the_same_scope_still_counts(harness, tmp_path):
    attacker = b.role_assignment("Owner", b.BOB)
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, attacker])
    assert h.deliver(b.role_event(attacker)).verdict == "remediated"
    assert not _exists(h, attacker) and _exists(h, BREAK_GLASS_OWNER)


# ---- 2. custom roles that can assign roles, or hold every data action ----------------------------
@pytest.mark.parametrize("permissions", [
    {"actions": ["Microsoft.Authorization/roleAssignments/*"]},
    {"actions": ["Microsoft.Authorization/role*"]},
    {"data_actions": ["*"]},
])
def test_a_custom_role_that_reaches_a_privileged_action_is_removed(harness, tmp_path, permissions):
    grant = b.role_assignment("Owner", b.BOB, role_id=CUSTOM)
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, grant], definitions=[custom_role(**permissions)])
    row = h.deliver(b.role_event(grant))
    assert (row.verdict, row.violations[0].rule) == ("remediated", "privileged-at-subscription")
    assert not _exists(h, grant)


def test_a_custom_role_whose_not_actions_remove_every_privileged_action_stays(harness, tmp_path):
    grant = b.role_assignment("Owner", b.BOB, role_id=CUSTOM)
    role = custom_role(actions=["Microsoft.Authorization/role*"], not_actions=["Microsoft.Authorization/*/write"])
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, grant], definitions=[role])
    assert h.deliver(b.role_event(grant)).verdict == "compliant" and _exists(h, grant)


# ---- 3. an ABAC condition that lets RBAC Administrator hand out privileged roles ------------------
def test_rbac_administrator_allowed_to_assign_owner_is_removed(harness, tmp_path):
    cond = b.RBAC_ADMIN_CONDITION.replace("acdd72a7-3385-48ef-bd42-f606fba81ae7", b.ROLE_IDS["Owner"])
    loose = b.role_assignment("Role Based Access Control Administrator", b.BOB, condition=cond)
    sample = b.role_assignment("Role Based Access Control Administrator", b.ALICE, condition=b.RBAC_ADMIN_CONDITION)
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, loose, sample])
    row = h.deliver(b.role_event(loose))
    assert (row.verdict, row.violations[0].rule) == ("remediated", "rbac-admin-without-condition")
    assert h.deliver(b.role_event(sample)).verdict == "compliant"
    assert not _exists(h, loose) and _exists(h, sample)


# ---- 4. the granted group itself ------------------------------------------------------------------
def test_a_role_assigned_to_the_group_named_in_its_grant_is_kept(harness, tmp_path):
    grant = b.role_assignment("AzureML Data Scientist", b.DS_GROUP, scope=RG_SCOPE, principal_type="Group")
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, grant])
    assert h.deliver(b.role_event(grant)).verdict == "compliant"
    assert _exists(h, grant)


# ---- 5. a decision that cannot be made is audited as failed, and redelivered ----------------------
def test_graph_failing_is_a_failed_row_and_nothing_is_removed(harness, tmp_path):
    grant = b.role_assignment("AzureML Data Scientist", b.BOB, scope=RG_SCOPE)
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, grant])
    h.emu.add_fault(method="POST", path_regex="checkMemberGroups", status=503)
    row = h.deliver(b.role_event(grant))                       # DeliveryFailed: Event Grid retries
    assert row.verdict == "failed" and row.reason in ("transient", "arm_error")
    assert [r.verdict for r in h.stored_rows()] == ["failed"]
    assert _exists(h, grant) and h.writes() == []


def test_graph_refusing_for_want_of_a_grant_names_the_permissions_to_grant(harness, tmp_path, caplog):
    grant = b.role_assignment("AzureML Data Scientist", b.BOB, scope=RG_SCOPE)
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, grant])
    h.emu.add_fault(method="POST", path_regex="checkMemberGroups", status=403)
    row = h.deliver(b.role_event(grant))
    # a failed row, nothing removed, and the row and an ERROR log say what the deployment lacks
    assert row.verdict == "failed" and _exists(h, grant) and h.writes() == []
    assert "User.Read.All" in row.message and "Application.Read.All" in row.message
    assert any("graph_permission_missing" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_a_malformed_custom_role_definition_is_a_failed_row(harness, tmp_path):
    grant = b.role_assignment("Owner", b.BOB, role_id=CUSTOM)
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, grant], definitions=[custom_role(actions=["*"])])
    with h.emu.authz.lock:                   # ARM answers a body that is no role definition we can judge
        h.emu.authz._definitions[CUSTOM]["properties"]["permissions"] = [{"actions": "*"}]
    row = h.deliver(b.role_event(grant))
    assert (row.verdict, row.reason) == ("failed", "unexpected_shape")
    assert [r.verdict for r in h.stored_rows()] == ["failed"] and _exists(h, grant)


def test_a_sweep_that_meets_a_graph_failure_judges_the_rest(harness, tmp_path):
    # GIVEN a subscription whose listed assignments include one Graph must judge (Graph is down)
    # and, after it, an Owner granted to a user while events were lost
    from guardrails.ratelimit import FakeClock
    from tests.integration.test_sweep import _sweep_rows, _sweeper

    needs_graph = b.role_assignment("AzureML Data Scientist", b.BOB, scope=RG_SCOPE,
                                    name="00000000-0000-4000-8000-000000000001")
    lost = b.role_assignment("Owner", b.ALICE, name="ffffffff-0000-4000-8000-000000000002")
    outside = b.role_assignment("AzureML Data Scientist", b.BOB, scope=f"{SUB_SCOPE}/resourceGroups/rg-zz",
                                name="ffffffff-0000-4000-8000-000000000003")       # listed after the failing one
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, needs_graph, lost, outside])
    h.emu.add_fault(method="POST", path_regex="checkMemberGroups", status=503)
    # WHEN the sweep runs
    summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB])
    # THEN the Graph failure is that assignment's failed row, and the Owner is still removed
    rows = {r.resource_id: r for r in _sweep_rows(h, summary.sweep_id)}
    assert rows[needs_graph["id"]].verdict == "failed" and rows[needs_graph["id"]].reason == "transient"
    assert rows[lost["id"]].verdict == "remediated" and rows[outside["id"]].verdict == "remediated"
    assert not _exists(h, lost) and not _exists(h, outside) and _exists(h, needs_graph)
    assert summary.errors == []
