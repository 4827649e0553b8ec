"""Role-assignment policies: metadata (three passes, both kinds side by side) and the pure
evaluation of one assignment against them."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from guardrails.errors import MetadataValidationError
from guardrails.model.policy import Policy, RolePolicy
from guardrails.model.roles import RoleDefinition, builtin_by_name
from guardrails.policy.evaluate import compile_policies
from guardrails.policy.loader import load_directory, load_documents
from guardrails.model.policy import DEFAULT_FLIP_FLOP, FlipFlop
from guardrails.policy.abac import condition_restricts_roles
from guardrails.policy.grant_keys import grant_key, parse_grant_key
from guardrails.policy.roles import Assignment, RoleFinding, evaluate_assignment, is_privileged, role_policies
from guardrails.remediation.actions import DeleteRoleAssignment, actions

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "metadata"
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
OTHER_SUB = "0b7c2d4e-1f3a-4b5c-8d9e-6f7a8b9c0d1e"
SUB_SCOPE = f"/subscriptions/{SUB}"
RG_ML = f"{SUB_SCOPE}/resourceGroups/rg-ml-prod"
STORAGE_ACCOUNT = f"{RG_ML}/providers/Microsoft.Storage/storageAccounts/stmlprod"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)

ALICE = "a11ce000-0000-4000-8000-000000000001"          # a user
BOB = "b0b00000-0000-4000-8000-000000000002"            # a user in the data-science group
GLASS = "91a55000-0000-4000-8000-000000000003"          # break-glass account
PIPELINE = "919e1100-0000-4000-8000-000000000004"       # deployment pipeline service principal
WORKSPACE_MI = "3e5a0000-0000-4000-8000-000000000005"   # a workspace's managed identity
GUARDRAIL = "6a4d0000-0000-4000-8000-000000000006"      # the guardrail's own identity
DS_GROUP = "d5000000-0000-4000-8000-00000000000a"

OWNER = builtin_by_name("Owner")
READER = builtin_by_name("Reader")
RBAC_ADMIN = builtin_by_name("Role Based Access Control Administrator")
DATA_SCIENTIST = builtin_by_name("AzureML Data Scientist")
BLOB_CONTRIBUTOR = builtin_by_name("Storage Blob Data Contributor")

BACKUP_CONTRIBUTOR = "5e467623-bb1f-42f4-a55d-6e525e11384b"
BACKUP_READER = "a795c7a0-d4a2-40c1-ae25-d81f01202912"
# Microsoft's "Constrain roles" delegation example (add and remove only Backup roles)
CONSTRAIN_ROLES = f"""(
 (
  !(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})
 )
 OR
 (
  @Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{BACKUP_CONTRIBUTOR}, {BACKUP_READER}}}
 )
)
AND
(
 (
  !(ActionMatches{{'Microsoft.Authorization/roleAssignments/delete'}})
 )
 OR
 (
  @Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{BACKUP_CONTRIBUTOR}, {BACKUP_READER}}}
 )
)"""
PRINCIPAL_TYPES_ONLY = """(
 (
  !(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})
 )
 OR
 (
  @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}
 )
)"""
# the delete half of a "Constrain roles" condition (remove only Backup Reader assignments)
DELETE_BACKUP_READER = (" AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
                        "(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
                        f"ForAnyOfAnyValues:GuidEquals {{{BACKUP_READER}}}))")
ALL_BUT_PRIVILEGED = """((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR
 (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals
 {8e3af657-a8ff-443c-a75c-2fe8c4bcb635, 18d7d88d-d35e-4fb5-a5c3-7773c20a72d9, f58310d9-a9f6-439a-9e8d-f62e7b41a168}))"""


class FakeDirectory:
    """Local stand-in for Microsoft Graph: group -> members; counts the questions asked."""

    def __init__(self, groups: dict[str, set[str]] | None = None) -> None:
        self.groups = groups or {}
        self.asked: list[tuple[str, str]] = []

    def is_member(self, principal_id: str, group_id: str) -> bool:
        self.asked.append((principal_id, group_id))
        return principal_id in self.groups.get(group_id, set())


def role_doc(**overrides) -> dict:
    doc = {
        "id": "rbac-test",
        "version": 2,
        "kind": "role-assignments",
        "description": "Least privilege for tests.",
        "mode": "enforce",
        "privileged": {
            "roles": ["Owner", "Contributor", "User Access Administrator", "Key Vault Administrator",
                      "Key Vault Contributor"],
            "custom_role_actions": ["*", "Microsoft.Authorization/*/write",
                                    "Microsoft.KeyVault/vaults/accessPolicies/write"],
            "conditional_roles": ["Role Based Access Control Administrator"],
            "allowed_service_principals": [PIPELINE],
        },
        "break_glass": [GLASS],
        "action": {"type": "delete-role-assignment"},
    }
    doc.update(overrides)
    return doc


def policy(**overrides) -> RolePolicy:
    (p,) = load_documents([("row", role_doc(**overrides))])
    assert isinstance(p, RolePolicy)
    return p


def assignment(role: RoleDefinition | str, principal: str, principal_type: str = "User", scope: str = SUB_SCOPE,
               condition: str | None = None) -> Assignment:
    guid = role if isinstance(role, str) else role.id
    props = {
        "roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        "principalId": principal, "principalType": principal_type, "scope": scope,
        "condition": condition, "conditionVersion": "2.0" if condition else None,
        "createdOn": "2026-11-24T11:59:00Z",
    }
    body = {"id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/0e1f0000-0000-4000-8000-000000000099",
            "type": "Microsoft.Authorization/roleAssignments", "name": "0e1f0000-0000-4000-8000-000000000099",
            "properties": props}
    return Assignment.from_arm(body)


# built-in roles outside the guardrail's catalogue, as ARM returns them (an ABAC condition names them)
OTHER_BUILTINS = {g: RoleDefinition(g, n, "BuiltInRole", actions=("Microsoft.RecoveryServices/*",))
                  for g, n in ((BACKUP_CONTRIBUTOR, "Backup Contributor"), (BACKUP_READER, "Backup Reader"))}


def evaluate(a: Assignment, role: RoleDefinition, *policies, groups=None, own=frozenset()) -> list[RoleFinding]:
    return evaluate_assignment(a, role, list(policies) or [policy()], groups=groups or FakeDirectory(),
                               now=NOW, own_principal_ids=frozenset(own), definitions=OTHER_BUILTINS.get)


def rules(findings: list[RoleFinding]) -> list[str]:
    return [f.rule for f in findings]


def custom(*actions_, not_actions=()) -> RoleDefinition:
    return RoleDefinition("c0570000-0000-4000-8000-0000000000c1", "Contoso Ops", "CustomRole",
                          actions=tuple(actions_), not_actions=tuple(not_actions),
                          assignable_scopes=(SUB_SCOPE,))


# ---------------------------------------------------------------- privileged roles at subscription scope

def test_owner_for_a_user_at_subscription_scope_is_a_finding():
    # GIVEN Owner assigned to a user on the subscription WHEN evaluated
    (finding,) = evaluate(assignment(OWNER, ALICE), OWNER)
    # THEN it is privileged at subscription scope, named in the message, not exempt
    assert finding.rule == "privileged-at-subscription" and finding.policy.ref == "rbac-test@2"
    assert "Owner" in finding.message and ALICE in finding.message and SUB_SCOPE in finding.message
    assert finding.exemption is None and finding.break_glass is False


def test_privileged_roles_for_groups_and_unlisted_service_principals_are_findings():
    assert rules(evaluate(assignment("b24988ac-6180-42a0-ab88-20f7382dd24c", DS_GROUP, "Group"),
                          builtin_by_name("Contributor"))) == ["privileged-at-subscription"]
    assert rules(evaluate(assignment(OWNER, WORKSPACE_MI, "ServicePrincipal"), OWNER)) == ["privileged-at-subscription"]


def test_an_allowed_service_principal_may_hold_a_privileged_role():
    assert evaluate(assignment(OWNER, PIPELINE, "ServicePrincipal"), OWNER) == []
    # but only as a service principal: the same id typed User is not on the allow list
    assert rules(evaluate(assignment(OWNER, PIPELINE, "User"), OWNER)) == ["privileged-at-subscription"]


def test_reader_at_a_resource_group_and_owner_below_subscription_are_allowed():
    assert evaluate(assignment(READER, ALICE, scope=RG_ML), READER) == []
    assert evaluate(assignment(READER, ALICE), READER) == []
    assert evaluate(assignment(OWNER, ALICE, scope=RG_ML), OWNER) == []


def test_privileged_role_above_subscription_scope_is_a_finding():
    mg = "/providers/Microsoft.Management/managementGroups/contoso"
    assert rules(evaluate(assignment(OWNER, ALICE, scope=mg), OWNER)) == ["privileged-at-subscription"]
    assert rules(evaluate(assignment(OWNER, ALICE, scope="/"), OWNER)) == ["privileged-at-subscription"]


def test_break_glass_owner_is_allowed():
    assert evaluate(assignment(OWNER, GLASS), OWNER) == []
    assert evaluate(assignment(OWNER, GLASS.replace("-", "").upper()), OWNER) == []


def test_break_glass_in_another_policy_marks_the_finding_never_to_delete():
    # GIVEN a second policy that does not list the break-glass account
    other = policy(id="rbac-other", break_glass=[])
    (finding,) = evaluate(assignment(OWNER, GLASS), OWNER, policy(), other)
    assert finding.policy.id == "rbac-other" and finding.break_glass is True


def test_the_guardrails_own_identity_never_produces_findings():
    own = {GUARDRAIL.replace("-", "")}                        # settings normalise to dashless
    assert evaluate(assignment(OWNER, GUARDRAIL, "ServicePrincipal"), OWNER, own=own) == []
    assert evaluate(assignment(OWNER, GUARDRAIL.upper(), "ServicePrincipal"), OWNER, own={GUARDRAIL}) == []


# ---------------------------------------------------------------- RBAC Administrator and conditions

def test_rbac_administrator_without_condition_is_a_finding():
    (finding,) = evaluate(assignment(RBAC_ADMIN, ALICE), RBAC_ADMIN)
    assert finding.rule == "rbac-admin-without-condition"


def test_rbac_administrator_with_a_role_constraining_condition_is_allowed():
    assert evaluate(assignment(RBAC_ADMIN, ALICE, condition=CONSTRAIN_ROLES), RBAC_ADMIN) == []


@pytest.mark.parametrize("condition", [PRINCIPAL_TYPES_ONLY, ALL_BUT_PRIVILEGED, "((nonsense", "   "])
def test_rbac_administrator_with_a_condition_that_does_not_constrain_roles_is_a_finding(condition):
    assert rules(evaluate(assignment(RBAC_ADMIN, ALICE, condition=condition), RBAC_ADMIN)) == [
        "rbac-admin-without-condition"]


@pytest.mark.parametrize("condition, restricts", [
    (CONSTRAIN_ROLES, True),
    (CONSTRAIN_ROLES.replace("ForAnyOfAnyValues:GuidEquals", "ForAnyOfAllValues:GuidEquals"), True),
    ("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
     "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] StringEqualsIgnoreCase "
     f"'/providers/Microsoft.Authorization/roleDefinitions/{BACKUP_READER}')){DELETE_BACKUP_READER}", True),
    # roles AND principal types constrained: still constrains roles
    ("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
     f"(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{BACKUP_READER}}}"
     " AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase"
     f" {{'ServicePrincipal'}})){DELETE_BACKUP_READER}", True),
    # only the write action is constrained: whoever holds it may delete any assignment
    ("(!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
     f"(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{BACKUP_READER}}})",
     False),
    # roles OR principal types: a service principal may get any role
    ("(!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
     f"(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{BACKUP_READER}}}"
     " OR @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase"
     " {'ServicePrincipal'})", False),
    # only the delete action is constrained
    ("(!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
     f"(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{BACKUP_READER}}})",
     False),
    (PRINCIPAL_TYPES_ONLY, False),
    (ALL_BUT_PRIVILEGED, False),
    (None, False),
    ("", False),
    ("@Request[", False),
])
def test_condition_restricts_roles(condition, restricts):
    assert condition_restricts_roles(condition) is restricts


# ---------------------------------------------------------------- custom roles

@pytest.mark.parametrize("role, privileged", [
    (custom("*"), True),
    (custom("*", not_actions=("Microsoft.Authorization/*",)), True),        # still Contributor-like
    (custom("Microsoft.KeyVault/*"), True),
    (custom("Microsoft.Authorization/roleAssignments/write"), True),
    (custom("Microsoft.Authorization/*", not_actions=("Microsoft.Authorization/*/write",)), False),
    (custom("Microsoft.KeyVault/*", not_actions=("Microsoft.KeyVault/vaults/accessPolicies/*",)), False),
    (custom("*/read"), False),
    (custom("Microsoft.Compute/virtualMachines/start/action"), False),
])
def test_custom_roles_are_judged_by_their_effective_actions(role, privileged):
    found = evaluate(assignment(role.id, ALICE), role)
    assert rules(found) == (["privileged-at-subscription"] if privileged else [])
    assert is_privileged(role, policy()) is privileged


def test_builtins_outside_the_catalogue_are_judged_by_actions_catalogue_ones_by_the_list():
    # changed (review s20): a built-in the catalogue does not hold is read from ARM and judged by
    # its actions like a custom role; one with role assignment write is privileged
    role = RoleDefinition("a8889054-8d42-49c9-bc1c-52486c10e7cd", "Reservations Administrator", "BuiltInRole",
                          actions=("Microsoft.Authorization/roleAssignments/write",))
    assert is_privileged(role, policy())
    # a catalogue built-in the policy does not list stays unprivileged, whatever it can do
    uaa = builtin_by_name("User Access Administrator")
    unlisted = policy(privileged={"roles": ["Owner"], "custom_role_actions": ["*", "Microsoft.Authorization/*/write"]})
    assert not is_privileged(uaa, unlisted)


# ---------------------------------------------------------------- grants ("who may hold what")

GRANTS = [{"role": "AzureML Data Scientist", "scopes": [RG_ML], "groups": [DS_GROUP], "principals": [ALICE]},
          {"role": "AcrPull", "scopes": [SUB_SCOPE], "principal_types": ["ServicePrincipal"]}]


def test_a_granted_role_outside_its_entry_is_a_finding():
    directory = FakeDirectory({DS_GROUP: {BOB}})
    stranger = "5a4e0000-0000-4000-8000-00000000005a"
    (finding,) = evaluate(assignment(DATA_SCIENTIST, stranger, scope=RG_ML), DATA_SCIENTIST,
                          policy(grants=GRANTS), groups=directory)
    assert finding.rule == "not-granted" and directory.asked == [(stranger, DS_GROUP)]


def test_a_granted_role_to_a_group_member_or_listed_principal_is_allowed():
    directory = FakeDirectory({DS_GROUP: {BOB}})
    p = policy(grants=GRANTS)
    assert evaluate(assignment(DATA_SCIENTIST, BOB, scope=RG_ML), DATA_SCIENTIST, p, groups=directory) == []
    # a listed principal needs no directory call; a scope below the entry's is covered
    directory.asked.clear()
    below = f"{RG_ML}/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod"
    assert evaluate(assignment(DATA_SCIENTIST, ALICE, scope=below), DATA_SCIENTIST, p, groups=directory) == []
    assert directory.asked == []
    # principal type entry
    acr_pull = builtin_by_name("AcrPull")
    assert evaluate(assignment(acr_pull, WORKSPACE_MI, "ServicePrincipal", RG_ML), acr_pull, p) == []
    assert rules(evaluate(assignment(acr_pull, ALICE, "User", RG_ML), acr_pull, p)) == ["not-granted"]


def test_a_granted_role_outside_the_entrys_scopes_is_a_finding_segment_wise():
    directory = FakeDirectory({DS_GROUP: {BOB}})
    p = policy(grants=GRANTS)
    for scope in (f"{SUB_SCOPE}/resourceGroups/rg-ml-prod2", f"{SUB_SCOPE}/resourceGroups/rg-dev", SUB_SCOPE):
        assert rules(evaluate(assignment(DATA_SCIENTIST, BOB, scope=scope), DATA_SCIENTIST, p,
                              groups=directory)) == ["not-granted"], scope
    assert directory.asked == []             # no entry covers the scope: Graph is not asked


def test_workspace_identity_on_its_storage_account_is_allowed_without_grants():
    # GIVEN the shipped baseline (no grants, no strict scopes)
    baseline = role_policies(load_directory(BASELINE))
    # WHEN a workspace's managed identity gets Storage Blob Data Contributor on its storage account
    found = evaluate(assignment(BLOB_CONTRIBUTOR, WORKSPACE_MI, "ServicePrincipal", STORAGE_ACCOUNT),
                     BLOB_CONTRIBUTOR, *baseline)
    # THEN nothing is excess
    assert found == []


def test_strict_scope_makes_roles_without_entries_excess():
    p = policy(strict_scopes=[RG_ML], grants=GRANTS)
    assert rules(evaluate(assignment(BLOB_CONTRIBUTOR, WORKSPACE_MI, "ServicePrincipal", STORAGE_ACCOUNT),
                          BLOB_CONTRIBUTOR, p)) == ["strict-scope-no-grant"]
    # outside the strict scope the same assignment is fine
    other = f"{SUB_SCOPE}/resourceGroups/rg-ml-dev/providers/Microsoft.Storage/storageAccounts/stdev"
    assert evaluate(assignment(BLOB_CONTRIBUTOR, WORKSPACE_MI, "ServicePrincipal", other), BLOB_CONTRIBUTOR, p) == []
    # a role WITH an entry is judged by the entry, not the strict rule
    assert evaluate(assignment(DATA_SCIENTIST, ALICE, scope=RG_ML), DATA_SCIENTIST, p) == []


# ---------------------------------------------------------------- modes, selectors, exemptions

def test_mode_off_is_skipped_and_audit_is_reported():
    assert evaluate(assignment(OWNER, ALICE), OWNER, policy(mode="off")) == []
    (finding,) = evaluate(assignment(OWNER, ALICE), OWNER, policy(mode="audit"))
    assert finding.policy.mode == "audit"


def test_selector_subscriptions_limit_the_policy():
    p = policy(selector={"subscriptions": [OTHER_SUB]})
    assert evaluate(assignment(OWNER, ALICE), OWNER, p) == []
    assert rules(evaluate(assignment(OWNER, ALICE, scope=f"/subscriptions/{OTHER_SUB}"), OWNER, p)) == [
        "privileged-at-subscription"]


def test_exemptions_cover_by_scope_and_expire():
    ex = {"scope": SUB_SCOPE, "reason": "migration", "owner": "secops@contoso.com"}
    (finding,) = evaluate(assignment(OWNER, ALICE), OWNER, policy(exemptions=[ex]))
    assert finding.exemption is not None and finding.exemption.owner == "secops@contoso.com"
    (finding,) = evaluate(assignment(OWNER, ALICE), OWNER,
                          policy(exemptions=[{**ex, "expires": "2026-01-01T00:00:00Z"}]))
    assert finding.exemption is None
    other_rg = {**ex, "scope": f"{SUB_SCOPE}/resourceGroups/rg-ml"}     # segment-wise: not rg-ml-prod
    (finding,) = evaluate(assignment(READER, ALICE, scope=RG_ML), READER, policy(strict_scopes=[RG_ML],
                                                                               exemptions=[other_rg]))
    assert finding.exemption is None


def test_resource_policies_in_the_list_are_ignored_and_compiled_sets_expose_role_policies():
    everything = load_directory(BASELINE)
    compiled = compile_policies(everything)
    assert [p.ref for p in compiled.role_policies] == ["rbac-least-privilege@5"]
    assert all(isinstance(p, Policy) for p in compiled.policies)
    assert compiled.candidates("Microsoft.Authorization/roleAssignments") == []
    # mixed list, plain or compiled: the same findings
    for given in (everything, compiled.role_policies):
        (finding,) = evaluate_assignment(assignment(OWNER, ALICE), OWNER, given, groups=FakeDirectory(), now=NOW)
        assert finding.policy.id == "rbac-least-privilege"
    assert compile_policies([policy(mode="off")]).role_policies == ()


def test_assignment_from_arm_rejects_missing_or_ill_typed_fields():
    good = {"id": f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleAssignments/x",
            "properties": {"scope": SUB_SCOPE, "roleDefinitionId": OWNER.to_arm()["id"],
                           "principalId": ALICE, "principalType": "User"}}
    a = Assignment.from_arm(good)
    assert a.condition is None and a.principal_type == "User"
    for key in ("scope", "roleDefinitionId", "principalId", "principalType"):
        bad = copy.deepcopy(good)
        del bad["properties"][key]
        with pytest.raises(ValueError, match=key):
            Assignment.from_arm(bad)
    with pytest.raises(ValueError, match="principalId"):
        Assignment.from_arm({**good, "properties": {**good["properties"], "principalId": 7}})
    with pytest.raises(ValueError, match="'id'"):
        Assignment.from_arm({"properties": good["properties"]})


def test_delete_role_assignment_action_plans_the_removal():
    action = actions.build({"type": "delete-role-assignment"})
    assert isinstance(action, DeleteRoleAssignment) and action.kinds == ("role-assignments",)
    change = action.plan_assignment(assignment(OWNER, ALICE))
    assert change.property == "roleAssignment" and change.after is None
    assert change.before["principal_id"] == ALICE and change.before["scope"] == SUB_SCOPE


# ---------------------------------------------------------------- metadata: the baseline and both kinds

def test_baseline_role_policy_loads_alone_and_round_trips(tmp_path):
    src = BASELINE / "policies" / "rbac-least-privilege.yaml"
    (tmp_path / src.name).write_text(src.read_text())
    (p,) = load_directory(tmp_path)
    assert isinstance(p, RolePolicy) and p.id == "rbac-least-privilege" and p.mode == "enforce"
    assert p.break_glass == () and p.grants == () and p.strict_scopes == ()
    assert p.privileged.allowed_service_principals == () and len(p.description) > 80
    assert p.privileged.role_ids == {builtin_by_name(n).id for n in p.privileged.roles}
    assert p.privileged.conditional_role_ids == {RBAC_ADMIN.id}
    assert p.action_type == "delete-role-assignment"
    assert Policy.from_document(json.loads(json.dumps(p.to_document())), source="table") == p


def test_a_role_policy_may_set_its_re_grant_budget_and_it_round_trips():
    assert policy().flip_flop == DEFAULT_FLIP_FLOP and "flip_flop" not in policy().to_document()
    p = policy(flip_flop={"max_reverts": 2, "window_minutes": 30, "hold_minutes": 240})
    assert p.flip_flop == FlipFlop(max_reverts=2, window_minutes=30, hold_minutes=240)
    assert Policy.from_document(json.loads(json.dumps(p.to_document())), source="table") == p
    with pytest.raises(MetadataValidationError, match="max_reverts"):
        policy(flip_flop={"max_reverts": 0, "window_minutes": 30})


# ---------------------------------------------------------------- the grant an assignment makes

def test_the_grant_key_is_the_same_for_every_re_grant_whatever_its_assignment_id_and_spelling():
    first = assignment(OWNER, ALICE)
    again = Assignment(id=f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleAssignments/another",
                       scope=SUB_SCOPE.upper() + "/", principal_id=ALICE.replace("-", "").upper(),
                       role_definition_id=f"/providers/Microsoft.Authorization/roleDefinitions/{OWNER.id.upper()}",
                       principal_type="User")
    assert first.grant_key == again.grant_key == f"rolegrant:{SUB_SCOPE}|{ALICE}|{OWNER.id}"
    assert assignment(OWNER, BOB).grant_key != first.grant_key                       # another principal
    assert assignment(builtin_by_name("Contributor"), ALICE).grant_key != first.grant_key   # another role
    assert assignment(OWNER, ALICE, scope=RG_ML).grant_key != first.grant_key          # another scope
    assert grant_key("/", ALICE, OWNER.id) == f"rolegrant:/|{ALICE}|{OWNER.id}"        # the tenant root


def test_a_grant_key_as_an_operator_types_it_is_read_back_or_rejected_with_the_reason():
    key = grant_key(RG_ML, ALICE, OWNER.id)
    assert parse_grant_key(key.upper().replace("ROLEGRANT:", "RoleGrant:")) == key
    for bad, why in [("x", "starts with"), (f"rolegrant:{RG_ML}|{ALICE}", "rolegrant:<scope>"),
                     (f"rolegrant:{RG_ML}|nope|{OWNER.id}", "principal id is not a GUID"),
                     (f"rolegrant:{RG_ML}|{ALICE}|nope", "role definition id is not a GUID"),
                     (f"rolegrant:/tenants/x|{ALICE}|{OWNER.id}", "not an assignment scope")]:
        with pytest.raises(ValueError, match=why):
            parse_grant_key(bad)


def test_mixed_directory_loads_both_kinds(tmp_path):
    (tmp_path / "storage.yaml").write_text((BASELINE / "policies" / "storage-private.yaml").read_text())
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "rbac.yaml").write_text(json.dumps(role_doc()))
    loaded = {p.id: p for p in load_directory(tmp_path)}
    assert type(loaded["storage-private"]) is Policy and type(loaded["rbac-test"]) is RolePolicy
    assert loaded["storage-private"].kind == "resource" and loaded["rbac-test"].kind == "role-assignments"


def test_from_document_returns_the_right_kind_for_both():
    (resource,) = load_documents([("row", {**_storage_doc(), "kind": "resource"})])
    assert type(Policy.from_document(resource.to_document())) is Policy
    full = policy(grants=GRANTS, strict_scopes=[RG_ML], selector={"subscriptions": [SUB]},
                  exemptions=[{"scope": RG_ML, "reason": "r", "owner": "o", "expires": "2027-01-31T00:00:00Z"}],
                  breaker={"max_actions": 5, "window_seconds": 60})
    doc = json.loads(json.dumps(full.to_document()))
    again = RolePolicy.from_document(doc, source="table/rbac-test")
    assert again == full and type(again) is RolePolicy and again.source == "table/rbac-test"


def test_a_tampered_role_row_is_rejected():
    doc = copy.deepcopy(policy().to_document())
    doc["break_glass"] = ["everyone"]
    with pytest.raises(MetadataValidationError) as info:
        Policy.from_document(doc, source="table/rbac-test")
    assert info.value.findings == [
        "table/rbac-test: policy 'rbac-test': $.break_glass[0]: 'everyone' is not a principal object id (a GUID)"]


def _storage_doc() -> dict:
    return {"id": "storage-private", "version": 1, "description": "d", "mode": "enforce",
            "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
            "rules": [{"id": "pna", "property": "properties.publicNetworkAccess", "expect": {"equals": "Disabled"},
                       "action": {"type": "set-property", "value": "Disabled"}}]}


def _findings(doc: dict) -> list[str]:
    with pytest.raises(MetadataValidationError) as info:
        load_documents([("policies/bad.yaml", doc)])
    return info.value.findings


@pytest.mark.parametrize("change, expected", [
    # pass 1: structure
    ({"kind": "role-assignment"},
     "policy 'rbac-test': $.kind: unknown policy kind 'role-assignment' (did you mean 'role-assignments'?)"),
    ({"privileged": {"role": ["Owner"]}},
     "policy 'rbac-test': $.privileged: unknown key 'role' (did you mean 'roles'?)"),
    ({"action": {"type": "set-property", "value": 1}},
     "policy 'rbac-test': $.action.type: unknown action type 'set-property'"),
    ({"action": None}, None),       # replaced below: missing action
    # pass 2: JSON Schema
    ({"grants": [{"role": "AcrPull", "scopes": [SUB_SCOPE], "principal_types": ["Robot"]}]},
     "policy 'rbac-test': $.grants[0].principal_types[0]: 'Robot' is not one of"),
    ({"privileged": {"custom_role_actions": ["Microsoft Authorization/*"]}},
     "policy 'rbac-test': $.privileged.custom_role_actions[0]: 'Microsoft Authorization/*' does not match"),
    # pass 3: semantics
    ({"privileged": {"roles": ["Ownr"]}},
     "policy 'rbac-test': $.privileged.roles[0]: role 'Ownr' is neither a built-in role of the catalogue nor a"
     " role definition GUID (did you mean 'Owner'?)"),
    ({"privileged": {"roles": ["Owner"], "conditional_roles": ["owner"]}},
     "policy 'rbac-test': $.privileged.conditional_roles[0]: role 'owner' is also in privileged.roles"),
    ({"privileged": {"allowed_service_principals": ["pipeline"]}},
     "policy 'rbac-test': $.privileged.allowed_service_principals[0]: 'pipeline' is not a service principal"
     " object id (a GUID)"),
    ({"grants": [{"role": "AcrPull", "scopes": ["/subscriptions/not-a-guid"], "groups": [DS_GROUP]}]},
     "policy 'rbac-test': $.grants[0].scopes[0]: not a valid ARM scope '/subscriptions/not-a-guid'"),
    ({"grants": [{"role": "AcrPull", "scopes": [SUB_SCOPE], "groups": ["data-science"]}]},
     "policy 'rbac-test': $.grants[0].groups[0]: 'data-science' is not a group object id (a GUID)"),
    ({"grants": [{"role": "AcrPull", "scopes": [SUB_SCOPE]}]},
     "policy 'rbac-test': $.grants[0]: grant of 'AcrPull' names nobody"),
    ({"strict_scopes": ["rg-ml-prod"]},
     "policy 'rbac-test': $.strict_scopes[0]: not a valid ARM scope 'rg-ml-prod'"),
    ({"selector": {"subscriptions": ["prod"]}},
     "policy 'rbac-test': $.selector.subscriptions[0]: 'prod' is not a subscription GUID"),
    ({"break_glass": [GLASS, GLASS.upper()]},
     f"policy 'rbac-test': $.break_glass[1]: '{GLASS.upper()}' is listed twice"),
])
def test_each_kind_of_bad_role_policy_is_rejected_with_file_id_and_path(change, expected):
    doc = role_doc(**change)
    if change == {"action": None}:
        del doc["action"]
        expected = "policy 'rbac-test': $: missing required key(s) 'action'"
    (finding,) = _findings(doc)
    assert finding.startswith("policies/bad.yaml: " + expected), finding


def test_role_only_keys_and_actions_stay_out_of_resource_policies():
    (finding,) = _findings({**_storage_doc(), "break_glass": []})
    assert finding.startswith("policies/bad.yaml: policy 'storage-private': $: unknown key 'break_glass'")
    doc = _storage_doc()
    doc["rules"][0]["action"] = {"type": "delete-role-assignment"}
    (finding,) = _findings(doc)
    assert finding.startswith(
        "policies/bad.yaml: policy 'storage-private': $.rules[0].action.type: unknown action type"
        " 'delete-role-assignment'")
    assert load_documents([("row", {**_storage_doc(), "kind": "resource"})])[0].kind == "resource"
