"""Role-assignment guardrail, review fixes in the pure core and the guardrail's decision (fakes for
ARM and Graph): glob overlap, data actions, ABAC allow-lists, granted groups, the last-Owner rail
and decisions that cannot be made."""

from __future__ import annotations

import itertools
import random
import re
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from guardrails.errors import ArmTransient, MetadataValidationError, ResourceNotFound
from guardrails.model.arm_id import parse_arm_id
from guardrails.model.decision import AuditRow
from guardrails.model.roles import BUILTIN_ROLES, RoleDefinition, builtin_by_name, role_guid
from guardrails.policy.loader import load_directory, load_documents
from guardrails.policy.roles import Assignment, evaluate_assignment
from guardrails.role_guardrail import RoleAssignmentGuardrail
from tests import builders as b

NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
SUB_SCOPE = f"/subscriptions/{b.SUB}"
MG = "/providers/Microsoft.Management/managementGroups/contoso-landing-zones"
BASELINE = [p for p in load_directory(Path(__file__).resolve().parents[2] / "metadata")
            if type(p).__name__ == "RolePolicy"]
CUSTOM = "c0ffee00-0000-4000-8000-000000000001"
RBAC_ADMIN = builtin_by_name("Role Based Access Control Administrator")


class NoGroups:
    def is_member(self, principal_id, group_id):
        return False


def custom(actions=(), not_actions=(), data_actions=(), not_data_actions=()) -> RoleDefinition:
    return RoleDefinition(CUSTOM, "Contoso Custom", "CustomRole", actions=tuple(actions),
                          not_actions=tuple(not_actions), data_actions=tuple(data_actions),
                          not_data_actions=tuple(not_data_actions), assignable_scopes=(SUB_SCOPE,))


def rules(role, *, scope=SUB_SCOPE, condition=None, principal=b.BOB, ptype="User", policies=BASELINE,
          groups=None, **kw):
    a = Assignment.from_arm(b.role_assignment("Owner", principal, scope=scope, role_id=role.id,
                                              condition=condition, principal_type=ptype))
    return [f.rule for f in evaluate_assignment(a, role, policies, groups=groups or NoGroups(), now=NOW, **kw)]


# ---- 2. exact overlap of '*' globs ---------------------------------------------------------------
def _brute(include, exclude, alphabet="ab/", max_len=7) -> bool:
    rx = lambda p: re.compile(".*".join(map(re.escape, p.split("*"))))       # noqa: E731
    inc, exc = [rx(p) for p in include], [rx(p) for p in exclude]
    for n in range(max_len + 1):
        for chars in itertools.product(alphabet, repeat=n):
            s = "".join(chars)
            if all(r.fullmatch(s) for r in inc) and not any(r.fullmatch(s) for r in exc):
                return True
    return False


def test_glob_overlap_agrees_with_brute_force_on_random_patterns():
    from guardrails.model.roles import globs_overlap

    rng = random.Random(7)
    pat = lambda: "".join(rng.choice("ab/*") for _ in range(rng.randint(0, 3)))   # noqa: E731
    for _ in range(400):
        include = [pat() for _ in range(2)]
        exclude = [pat() for _ in range(rng.randint(0, 2))]
        assert globs_overlap(include, exclude) == _brute(include, exclude), (include, exclude)


def test_glob_overlap_is_case_insensitive_and_exact_on_authorization_patterns():
    from guardrails.model.roles import globs_overlap

    assert globs_overlap(["Microsoft.Authorization/role*", "microsoft.authorization/*/WRITE"])
    assert not globs_overlap(["Microsoft.Authorization/*/read", "Microsoft.Authorization/*/write"])
    assert not globs_overlap(["Microsoft.Authorization/role*", "Microsoft.Authorization/*/write"],
                             ["Microsoft.Authorization/*/write"])
    assert not globs_overlap(["*"], ["*"])


@pytest.mark.parametrize("actions", [
    ["Microsoft.Authorization/roleAssignments/*"],
    ["Microsoft.Authorization/roleAssignments/w*"],
    ["Microsoft.Authorization/role*"],
    ["Microsoft.Authorization/roleDefinitions/*"],
])
def test_a_custom_role_whose_wildcard_overlaps_a_privileged_pattern_is_privileged(actions):
    assert rules(custom(actions)) == ["privileged-at-subscription"]


def test_not_actions_that_remove_every_overlapping_action_leave_the_role_unprivileged():
    role = custom(["Microsoft.Authorization/role*"],
                  not_actions=["Microsoft.Authorization/*/write", "Microsoft.Authorization/*/delete"])
    assert rules(role) == []
    # deleting role assignments is privileged too (version 3: custom_role_actions names */delete)
    role = custom(["Microsoft.Authorization/role*"], not_actions=["Microsoft.Authorization/*/write"])
    assert rules(role) == ["privileged-at-subscription"]
    assert rules(custom(["*/read", "Microsoft.Compute/*"])) == []


@pytest.mark.parametrize("data_actions, not_data, privileged", [
    (["*"], [], True),
    (["Microsoft.KeyVault/vaults/*"], [], True),
    (["Microsoft.KeyVault/vaults/secrets/getSecret/action"], [], True),
    (["Microsoft.KeyVault/vaults/*"], ["Microsoft.KeyVault/*"], False),
    # version 4: every account's blobs at subscription scope (read too) are privileged
    (["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"], [], True),
    (["Microsoft.Compute/virtualMachines/login/action"], [], False),
])
def test_custom_role_data_actions_are_judged_by_the_policy(data_actions, not_data, privileged):
    role = custom(["*/read"], data_actions=data_actions, not_data_actions=not_data)
    assert rules(role) == (["privileged-at-subscription"] if privileged else [])


def test_custom_role_data_actions_are_validated_and_round_trip():
    from guardrails.model.policy import Policy

    doc = BASELINE[0].to_document()
    assert doc["privileged"]["custom_role_data_actions"][:2] == ["*", "Microsoft.KeyVault/vaults/*"]
    assert "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*" in doc["privileged"][
        "custom_role_data_actions"]                                    # version 4
    (again,) = load_documents([("row", doc)])
    assert again == BASELINE[0] and Policy.from_document(doc, source="table") == BASELINE[0]
    bad = {**doc, "privileged": {**doc["privileged"], "custom_role_data_actions": ["not an action"]}}
    with pytest.raises(MetadataValidationError, match=r"custom_role_data_actions\[0\]"):
        load_documents([("bad.yaml", bad)])


# ---- 3. ABAC allow-lists that name privileged roles ------------------------------------------------
def _allow(*guids: str) -> str:
    """The portal's "Constrain roles" condition: assign, and remove assignments of, ``guids`` only."""
    listed = "{" + ", ".join(guids) + "}"
    return ("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
            "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
            + listed + ")) AND "
            "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
            "(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
            + listed + "))")


@pytest.mark.parametrize("allowed", [
    (b.ROLE_IDS["Owner"], b.ROLE_IDS["User Access Administrator"]),
    (RBAC_ADMIN.id,),                                                  # itself, unconditioned
    (b.ROLE_IDS["Reader"], b.ROLE_IDS["Contributor"]),
])
def test_rbac_administrator_allowed_to_assign_a_privileged_role_is_a_finding(allowed):
    assert rules(RBAC_ADMIN, condition=_allow(*allowed)) == ["rbac-admin-without-condition"]


def test_rbac_administrator_allowed_only_unprivileged_roles_passes():
    assert rules(RBAC_ADMIN, condition=_allow(b.ROLE_IDS["Reader"], b.ROLE_IDS["AzureML Data Scientist"])) == []
    # version 4: Storage Blob Data Contributor (b.RBAC_ADMIN_CONDITION allows it) is privileged at
    # subscription scope, so delegating it there is too
    assert rules(RBAC_ADMIN, condition=b.RBAC_ADMIN_CONDITION) == ["rbac-admin-without-condition"]


def test_a_condition_role_outside_the_catalogue_is_resolved_and_unknown_ones_count_as_privileged():
    cond = _allow(b.ROLE_IDS["Reader"], CUSTOM)
    assert rules(RBAC_ADMIN, condition=cond) == ["rbac-admin-without-condition"]          # cannot tell
    assert rules(RBAC_ADMIN, condition=cond, definitions={CUSTOM: custom(["*/read"])}.get) == []
    assert rules(RBAC_ADMIN, condition=cond, definitions={CUSTOM: custom(["Microsoft.Authorization/*"])}.get) == [
        "rbac-admin-without-condition"]
    assert rules(RBAC_ADMIN, condition=cond, definitions=lambda g: None) == ["rbac-admin-without-condition"]


def test_condition_allowed_roles_lists_the_guids():
    from guardrails.policy.abac import condition_allowed_roles

    assert condition_allowed_roles(b.RBAC_ADMIN_CONDITION) == {b.ROLE_IDS["Reader"],
                                                               b.ROLE_IDS["Storage Blob Data Contributor"]}
    assert condition_allowed_roles(None) is None
    assert condition_allowed_roles(_allow(b.ROLE_IDS["Owner"]).replace("GuidEquals", "GuidNotEquals")) is None


# ---- 4. the granted group itself ------------------------------------------------------------------
GRANTS = {"id": "ds-grants", "version": 1, "kind": "role-assignments", "description": "x", "mode": "enforce",
          "grants": [{"role": "AzureML Data Scientist", "scopes": [b.rg_id()], "groups": [b.DS_GROUP]}],
          "action": {"type": "delete-role-assignment"}}


class CheckMemberGroups:
    """Graph's semantics: a group is never reported a member of itself."""

    def is_member(self, principal_id, group_id):
        return principal_id.lower() == b.ALICE and group_id.lower() == b.DS_GROUP


def test_a_role_assigned_to_the_granted_group_itself_is_covered():
    ds = builtin_by_name("AzureML Data Scientist")
    pols = load_documents([("ds.yaml", GRANTS)])
    group = b.DS_GROUP.upper().replace("-", "")                   # captured deliveries drop the dashes
    assert rules(ds, scope=b.rg_id(), principal=group, ptype="Group", policies=pols, groups=CheckMemberGroups()) == []
    assert rules(ds, scope=b.rg_id(), principal=b.ALICE, policies=pols, groups=CheckMemberGroups()) == []
    assert rules(ds, scope=b.rg_id(), principal=b.BOB, policies=pols, groups=CheckMemberGroups()) == ["not-granted"]


# ---- 1 and 5: the guardrail's decision over fakes ---------------------------------------------------
class FakeAuthz:
    """ARM's role-assignment semantics for the cases here: ``atScope()`` lists the assignments at
    the scope and above it, the subscription's management group included."""

    def __init__(self, *assignments, definitions=None):
        self.world = {a["id"].lower(): a for a in assignments}
        self.definitions = definitions or {}

    def get_assignment(self, rid, deadline=None):
        if rid.lower() not in self.world:
            raise ResourceNotFound(rid)
        return self.world[rid.lower()]

    def get_role_definition(self, rdid, deadline=None):
        guid = role_guid(rdid)
        if guid in BUILTIN_ROLES:
            return BUILTIN_ROLES[guid]
        found = self.definitions.get(guid)
        if found is None:
            raise ResourceNotFound(rdid)
        return RoleDefinition.from_arm(found)

    def list_assignments_at_scope(self, scope, deadline=None):
        s = scope.lower().rstrip("/")
        above = lambda at: at in ("", MG.lower()) or s == at or s.startswith(at + "/")      # noqa: E731
        return [a for a in self.world.values() if above(a["properties"]["scope"].lower().rstrip("/"))]

    def delete_assignment(self, rid, deadline=None):
        return self.world.pop(rid.lower(), None) is not None


class FakeService:
    settings = NS(own_principal_ids=frozenset(), is_own_principal=lambda *ids: False)
    escalations = None
    rails = NS(breaker_permits=lambda row, rid, act, **kw: act, give_back=lambda *a, **kw: None)

    def note_intent(self, ctx, intent):
        pass


def at(scope: str, role: str, principal: str, name: str | None = None) -> dict:
    a = b.role_assignment(role, principal, scope=scope, name=name)
    if scope == "/":
        a["id"] = a["id"][1:] if a["id"].startswith("//") else a["id"]
    return a


def decide(authz, target, groups=None, policies=BASELINE) -> AuditRow:
    g = RoleAssignmentGuardrail(FakeService(), authz, groups or NoGroups())
    row = AuditRow(event_id="e", event_type="x", resource_id=target["id"], verdict="ignored")
    g.decide(NS(deadline=None, now=NOW, dry_run=False), row, NS(resource_id=parse_arm_id(target["id"])), policies)
    return row


@pytest.mark.parametrize("above", [MG, "/"])
def test_an_owner_inherited_from_above_lets_the_attackers_owner_go(above):
    authz = FakeAuthz(at(above, "Owner", b.ALICE), attacker := at(SUB_SCOPE, "Owner", b.BOB))
    assert decide(authz, attacker).verdict == "remediated"
    assert attacker["id"].lower() not in authz.world


def test_a_second_attacker_owner_never_vouches_for_the_first():
    a1, a2 = at(SUB_SCOPE, "Owner", b.BOB), at(SUB_SCOPE, "Owner", b.ALICE)
    authz = FakeAuthz(a1, a2)
    assert [decide(authz, a).verdict for a in (a1, a2)] == ["violation", "violation"]
    assert {a1["id"].lower(), a2["id"].lower()} <= set(authz.world)
    authz = FakeAuthz(at(MG, "Owner", b.ALICE), a1, a2)           # with an Owner above, both go
    assert [decide(authz, a).verdict for a in (a1, a2)] == ["remediated", "remediated"]


def test_a_compliant_owner_at_the_same_scope_counts():
    glass = load_documents([("p", {**BASELINE[0].to_document(), "break_glass": [b.BREAK_GLASS]})])
    a1 = at(SUB_SCOPE, "Owner", b.BOB)
    authz = FakeAuthz(at(SUB_SCOPE, "Owner", b.BREAK_GLASS), a1)
    assert decide(authz, a1, policies=glass).verdict == "remediated"


def test_graph_failing_during_evaluation_is_a_failed_row():
    class Down:
        def is_member(self, p, g):
            raise ArmTransient("Graph checkMemberGroups answered 503", status=503)

    grant = at(b.rg_id(), "AzureML Data Scientist", b.BOB)
    row = decide(FakeAuthz(grant), grant, groups=Down(), policies=load_documents([("ds.yaml", GRANTS)]))
    assert (row.verdict, row.reason) == ("failed", "transient")


def test_a_malformed_role_definition_is_a_failed_row():
    grant = b.role_assignment("Owner", b.BOB, role_id=CUSTOM)
    broken = {"id": f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM}", "name": CUSTOM,
              "properties": {"roleName": "x", "type": "CustomRole", "permissions": [{"actions": "*"}]}}
    row = decide(FakeAuthz(grant, definitions={CUSTOM: broken}), grant)
    assert (row.verdict, row.reason) == ("failed", "unexpected_shape")


def test_a_condition_naming_a_custom_role_is_resolved_through_arm():
    cond = _allow(b.ROLE_IDS["Reader"], CUSTOM)
    grant = b.role_assignment("Role Based Access Control Administrator", b.BOB, condition=cond)
    body = custom(["Microsoft.Authorization/roleAssignments/*"]).to_arm(SUB_SCOPE)
    assert decide(FakeAuthz(at(MG, "Owner", b.ALICE), grant, definitions={CUSTOM: body}), grant).verdict == "remediated"
    body = custom(["*/read"]).to_arm(SUB_SCOPE)
    assert decide(FakeAuthz(grant, definitions={CUSTOM: body}), grant).verdict == "compliant"
