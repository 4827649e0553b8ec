"""Role-assignment guardrail, review fixes (s24), in the pure core and the guardrail's decision over
fakes: the shipped policy's Key Vault secrets roles and role-assignment deletes, ABAC conditions
that leave roleAssignments/delete open, a removal decided on a stale cached custom definition,
Graph's 404 and the membership cache, and assignment scopes with a trailing '/'."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import yaml

from guardrails.errors import ArmTransient
from guardrails.model.roles import BUILTIN_ROLES, builtin_by_name
from guardrails.policy.abac import condition_allowed_roles, condition_restricts_roles
from guardrails.policy.loader import load_documents
from guardrails.policy.roles import Assignment, at_or_above_subscription, evaluate_assignment
from tests import builders as b
from tests.unit.test_role_review_fixes import (
    BASELINE, CUSTOM, MG, NOW, RBAC_ADMIN, SUB_SCOPE, FakeAuthz, NoGroups, at, custom, decide, rules,
)

ROOT = Path(__file__).resolve().parents[2]
READER, BLOB, OWNER = b.ROLE_IDS["Reader"], b.ROLE_IDS["Storage Blob Data Contributor"], b.ROLE_IDS["Owner"]
DS = b.ROLE_IDS["AzureML Data Scientist"]      # unprivileged everywhere (Storage Blob Data Contributor: v4)
KV_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KV_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
WRITE_ONLY = ("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
              "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
              "{" + READER + "}))")


def constrain(write: list[str], delete: list[str]) -> str:
    """The Azure portal's "Constrain roles" template: write and delete each limited to a list."""
    return ("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
            "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
            "{" + ", ".join(write) + "})) AND "
            "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
            "(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
            "{" + ", ".join(delete) + "}))")


# ---- 1. Key Vault Secrets User / Officer at subscription scope ----------------------------------------
def test_every_role_the_shipped_policy_names_is_in_the_catalogue():
    doc = yaml.safe_load((ROOT / "metadata/policies/rbac-least-privilege.yaml").read_text())
    names = doc["privileged"]["roles"] + doc["privileged"]["conditional_roles"]
    assert all(builtin_by_name(n) is not None for n in names), names
    assert {"Key Vault Secrets User", "Key Vault Secrets Officer"} <= set(names)
    (pol,) = BASELINE
    assert {KV_SECRETS_USER, KV_SECRETS_OFFICER} <= pol.privileged.role_ids and pol.version >= 3


@pytest.mark.parametrize("guid", [KV_SECRETS_USER, KV_SECRETS_OFFICER])
def test_key_vault_secrets_roles_are_privileged_at_subscription_scope_only(guid):
    role = BUILTIN_ROLES[guid]
    # GIVEN the shipped policy WHEN the role is held by a user at the subscription THEN a finding
    assert rules(role) == ["privileged-at-subscription"]
    # like a custom role with the same data actions, which already was one
    clone = custom(role.actions, data_actions=role.data_actions)
    assert rules(clone) == ["privileged-at-subscription"]
    # and on the vault itself it stays allowed
    vault = f"{b.rg_id()}/providers/Microsoft.KeyVault/vaults/kv-ml"
    assert rules(role, scope=vault) == []


@pytest.mark.parametrize("guid", [KV_SECRETS_USER, KV_SECRETS_OFFICER])
def test_a_key_vault_secrets_role_at_subscription_scope_is_removed(guid):
    grant = at(SUB_SCOPE, "Owner", b.BOB)
    grant["properties"]["roleDefinitionId"] = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    authz = FakeAuthz(grant)
    row = decide(authz, grant)
    assert row.verdict == "remediated" and grant["id"].lower() not in authz.world
    assert [v.rule for v in row.violations] == ["privileged-at-subscription"]


# ---- 2. deleting role assignments; conditions that leave delete open ----------------------------------
@pytest.mark.parametrize("actions", [
    ["*/read", "Microsoft.Authorization/*/delete"],
    ["*/read", "Microsoft.Authorization/roleAssignments/delete"],
    ["Microsoft.Authorization/role*"],
])
def test_a_custom_role_that_can_delete_role_assignments_is_privileged(actions):
    assert rules(custom(actions)) == ["privileged-at-subscription"]


def test_a_custom_role_that_only_reads_authorization_stays_unprivileged():
    assert rules(custom(["*/read", "Microsoft.Authorization/*/read"])) == []
    assert rules(custom(["Microsoft.Authorization/role*"],
                        not_actions=["Microsoft.Authorization/*/write", "Microsoft.Authorization/*/delete"])) == []


def test_an_rbac_administrator_whose_condition_leaves_delete_open_is_a_finding():
    assert not condition_restricts_roles(WRITE_ONLY) and condition_allowed_roles(WRITE_ONLY) is None
    assert rules(RBAC_ADMIN, condition=WRITE_ONLY) == ["rbac-admin-without-condition"]


def test_the_portal_template_constraining_write_and_delete_restricts():
    cond = constrain([READER, DS], [READER, DS])
    assert condition_allowed_roles(cond) == {READER, DS}
    assert rules(RBAC_ADMIN, condition=cond) == []


def test_the_template_with_principal_types_spread_over_lines_restricts():
    cond = f"""
(
 (
  !(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})
 )
 OR
 (
  @Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{READER}}}
  AND
  @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'User'}}
 )
)
AND
(
 (
  !(ActionMatches{{'Microsoft.Authorization/roleAssignments/delete'}})
 )
 OR
 (
  @Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{READER}}}
  AND
  @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'User'}}
 )
)"""
    assert condition_allowed_roles(cond) == {READER}
    assert rules(RBAC_ADMIN, condition=cond) == []


@pytest.mark.parametrize("cond", [
    constrain([READER], [OWNER]),                                          # may remove the Owners
    constrain([READER], [READER]).replace("@Resource[", "@Request["),      # delete has no @Request role
    constrain([READER], [READER]).replace("roleAssignments/delete'", "roleAssignments/read'"),
    # the delete half compares with an operator that cannot be judged (the write half is fine)
    "StringLike {'*'}))".join(constrain([READER], [READER]).rsplit("GuidEquals {" + READER + "}))", 1)),
])
def test_a_delete_half_that_allows_a_privileged_role_or_cannot_be_judged_is_a_finding(cond):
    assert rules(RBAC_ADMIN, condition=cond) == ["rbac-admin-without-condition"]


def test_a_custom_role_named_only_in_the_delete_half_is_judged_too():
    cond = constrain([READER], [READER, CUSTOM])
    assert condition_allowed_roles(cond) == {READER, CUSTOM}
    assert rules(RBAC_ADMIN, condition=cond, definitions={CUSTOM: custom(["*/read"])}.get) == []
    assert rules(RBAC_ADMIN, condition=cond, definitions={CUSTOM: custom(["*"])}.get) == [
        "rbac-admin-without-condition"]


# ---- 3. a removal decided on a stale cached custom definition ------------------------------------------
# ``AuthorizationGateway``'s definition cache over the fake's world (``reads`` counts ARM reads)
from tests.unit.test_roles_s20b import CachingAuthz  # noqa: E402


def _custom_grant(principal, name, scope=SUB_SCOPE):
    a = at(scope, "Owner", principal, name=name)
    a["properties"]["roleDefinitionId"] = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM}"
    return a


def test_a_role_narrowed_on_another_worker_is_read_again_before_its_assignment_is_removed():
    # GIVEN this worker cached the custom role while it granted '*' (an assignment below a subscription)
    below = _custom_grant(b.BOB, "0b0b0000-0000-4000-8000-0000000000d1", scope=b.rg_id())
    authz = CachingAuthz(at(MG, "Owner", b.ALICE), below, definitions={CUSTOM: custom(["*"]).to_arm(SUB_SCOPE)})
    assert decide(authz, below).verdict == "compliant" and authz.reads == 1
    # WHEN the role is narrowed to reading (another worker handled that definition event) and an
    # assignment of it at the subscription is delivered
    authz.definitions[CUSTOM] = custom(["*/read"]).to_arm(SUB_SCOPE)
    grant = _custom_grant(b.BOB, "0b0b0000-0000-4000-8000-0000000000d2")
    authz.world[grant["id"].lower()] = grant
    row = decide(authz, grant)
    # THEN it is judged on the definition read again: allowed, and still there
    assert row.verdict == "compliant", row.message
    assert grant["id"].lower() in authz.world and authz.reads == 2


def test_a_role_still_wide_when_read_again_is_removed_with_one_more_read():
    below = _custom_grant(b.BOB, "0b0b0000-0000-4000-8000-0000000000d3", scope=b.rg_id())
    authz = CachingAuthz(at(MG, "Owner", b.ALICE), below, definitions={CUSTOM: custom(["*"]).to_arm(SUB_SCOPE)})
    decide(authz, below)
    grant = _custom_grant(b.BOB, "0b0b0000-0000-4000-8000-0000000000d4")
    authz.world[grant["id"].lower()] = grant
    row = decide(authz, grant)
    assert row.verdict == "remediated" and grant["id"].lower() not in authz.world
    assert authz.reads == 2                                   # one re-read before the removal, no more


def test_a_removal_resting_on_catalogue_roles_or_a_grant_costs_no_definition_read():
    owner = at(SUB_SCOPE, "Owner", b.BOB)
    authz = CachingAuthz(at(MG, "Owner", b.ALICE), owner)
    assert decide(authz, owner).verdict == "remediated" and authz.reads == 0
    # an RBAC administrator whose condition leaves delete open: nothing to read
    admin = at(SUB_SCOPE, "Role Based Access Control Administrator", b.BOB)
    admin["properties"]["condition"] = WRITE_ONLY
    authz = CachingAuthz(admin)
    assert decide(authz, admin).verdict == "remediated" and authz.reads == 0


def test_an_rbac_administrator_whose_allowed_custom_role_was_narrowed_is_kept():
    cond = constrain([READER, CUSTOM], [READER, CUSTOM])
    admin = at(SUB_SCOPE, "Role Based Access Control Administrator", b.BOB)
    admin["properties"]["condition"] = cond
    authz = CachingAuthz(admin, definitions={CUSTOM: custom(["*"]).to_arm(SUB_SCOPE)})
    authz.cache[CUSTOM] = custom(["*"])                               # cached while it granted '*'
    authz.definitions[CUSTOM] = custom(["*/read"]).to_arm(SUB_SCOPE)  # narrowed since
    row = decide(authz, admin)
    assert row.verdict == "compliant" and admin["id"].lower() in authz.world and authz.reads == 1


# ---- 4. Graph: a 404 is transient, "not a member" is not kept for minutes ------------------------------
class _Graph:
    """``GraphGroupResolver`` with its HTTP pipeline replaced by ``answers`` (one per call, the last
    repeated) and its clock by ``clock``."""

    def __new__(cls, answers, clock):
        from guardrails.adapters.authorization import GraphGroupResolver

        class Cred:
            def get_token(self, *a, **k):
                return NS(token="t", expires_on=2**40)

        g = GraphGroupResolver(Cred(), endpoint="https://graph.invalid", clock=lambda: clock[0])
        sent = []

        def send(request, **_kw):
            sent.append(request.url)
            status, groups = answers[min(len(sent), len(answers)) - 1]
            return NS(status_code=status, json=lambda: {"value": groups})
        g._client = NS(send_request=send)
        return g


def test_a_404_from_check_member_groups_is_transient_and_not_remembered():
    clock = [0.0]
    g = _Graph([(404, None), (200, [b.DS_GROUP])], clock)
    with pytest.raises(ArmTransient) as err:
        g.is_member(b.BOB, b.DS_GROUP)                  # a principal Graph has not replicated yet
    assert err.value.status == 404 and err.value.reason == "transient"
    clock[0] = 30.0
    assert g.is_member(b.BOB, b.DS_GROUP) is True and g.calls == 2      # the retry asks Graph again


def test_not_a_member_is_kept_seconds_and_a_member_minutes():
    clock = [0.0]
    g = _Graph([(200, []), (200, [b.DS_GROUP])], clock)
    assert g.is_member(b.BOB, b.DS_GROUP) is False
    clock[0] = 1.0
    assert g.is_member(b.BOB, b.DS_GROUP) is False and g.calls == 1     # a burst: one call
    clock[0] = 60.0
    assert g.is_member(b.BOB, b.DS_GROUP) is True and g.calls == 2      # added to the group since
    clock[0] = 250.0
    assert g.is_member(b.BOB, b.DS_GROUP) is True and g.calls == 2      # "member" stays cached


def test_a_transient_graph_answer_fails_the_decision_and_keeps_the_grant():
    class NotReplicated:
        def is_member(self, principal_id, group_id):
            raise ArmTransient("Graph checkMemberGroups answered 404", status=404)

    pols = load_documents([("ds.yaml", {
        "id": "ds-grants", "version": 1, "kind": "role-assignments", "description": "x", "mode": "enforce",
        "grants": [{"role": "AzureML Data Scientist", "scopes": [b.rg_id()], "groups": [b.DS_GROUP]}],
        "action": {"type": "delete-role-assignment"}})])
    grant = at(b.rg_id(), "AzureML Data Scientist", b.BOB)
    authz = FakeAuthz(grant)
    row = decide(authz, grant, groups=NotReplicated(), policies=pols)
    assert (row.verdict, row.reason) == ("failed", "transient") and grant["id"].lower() in authz.world


# ---- 5. scopes with a trailing '/' or surrounding whitespace -------------------------------------------
@pytest.mark.parametrize("raw, clean", [
    (SUB_SCOPE + "/", SUB_SCOPE), (f"  {SUB_SCOPE}\n", SUB_SCOPE), (b.rg_id() + "//", b.rg_id()),
    ("/", "/"), (" / ", "/"), (MG + "/", MG),
])
def test_assignment_scopes_are_normalised_where_they_are_read(raw, clean):
    from guardrails.policy.roles import normalize_scope

    body = at(SUB_SCOPE, "Owner", b.BOB)
    body["properties"]["scope"] = raw
    assert Assignment.from_arm(body).scope == clean == normalize_scope(raw)


@pytest.mark.parametrize("scope", [SUB_SCOPE + "/", f" {SUB_SCOPE} ", MG + "/"])
def test_a_privileged_role_at_a_subscription_written_with_a_trailing_slash_is_a_finding(scope):
    owner = BUILTIN_ROLES[OWNER]
    assert at_or_above_subscription(scope)
    assert rules(owner, scope=scope) == ["privileged-at-subscription"]


def test_a_strict_scope_applies_to_a_scope_written_with_a_trailing_slash():
    pol = load_documents([("s.yaml", {**BASELINE[0].to_document(), "strict_scopes": [b.rg_id()]})])
    assert rules(BUILTIN_ROLES[READER], scope=b.rg_id() + "/", policies=pol) == ["strict-scope-no-grant"]


@pytest.mark.parametrize("scope", [f"/subscriptions/{b.SUB}//resourceGroups/rg", "/subscriptions/not-a-guid",
                                   "/providers/Microsoft.Capacity"])
def test_a_scope_that_cannot_be_placed_is_never_passed(scope):
    body = at(SUB_SCOPE, "Owner", b.BOB)
    body["properties"]["scope"] = scope
    with pytest.raises(ValueError, match="cannot be judged"):
        Assignment.from_arm(body)
    made = Assignment(id=body["id"], scope=scope, role_definition_id=OWNER, principal_id=b.BOB, principal_type="User")
    with pytest.raises(ValueError, match="cannot be judged"):
        evaluate_assignment(made, BUILTIN_ROLES[OWNER], BASELINE, groups=NoGroups(), now=NOW)
    # the guardrail's decision fails (audited, redelivered) and nothing is deleted
    authz = FakeAuthz(body)
    row = decide(authz, body)
    assert (row.verdict, row.reason) == ("failed", "unexpected_shape") and "cannot be judged" in row.message
    assert body["id"].lower() in authz.world


def test_an_owner_at_a_subscription_written_with_a_trailing_slash_is_removed():
    grant = at(SUB_SCOPE, "Owner", b.BOB)
    grant["properties"]["scope"] = SUB_SCOPE + "/"
    authz = FakeAuthz(at(MG, "Owner", b.ALICE), grant)
    row = decide(authz, grant)
    assert row.verdict == "remediated" and grant["id"].lower() not in authz.world
    assert row.violations[0].before["scope"] == SUB_SCOPE
