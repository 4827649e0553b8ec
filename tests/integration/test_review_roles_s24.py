"""Role-assignment guardrail, review fixes (s24) end to end: the real azure-mgmt-authorization client
and azure-core Graph pipeline against the emulator's assignments, definitions and directory, Azurite
audit. Asserts on the emulator's resulting state: the assignment really gone, or really kept."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests import builders as b
from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, RG_SCOPE, SUB_SCOPE, _exists, _policy_dir
from tests.integration.test_role_review_fixes import CUSTOM, custom_role

pytestmark = pytest.mark.integration

KV_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KV_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
READER = b.ROLE_IDS["Reader"]
NEWCOMER = "5e5e5e5e-0000-4000-8000-00000000c0de"      # a principal Graph has not replicated yet
WRITE_ONLY = ("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
              "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
              "{" + READER + "}))")


def _shipped(harness, assignments, *, definitions=()):
    """The shipped metadata only (``metadata/policies/rbac-least-privilege.yaml``)."""
    world = {"roleAssignments": [BREAK_GLASS_OWNER, *assignments], "roleDefinitions": list(definitions),
             "directory": {"groups": {}}}
    return harness([], world=world)


def _test_policy(harness, tmp_path, assignments, *, definitions=(), directory=None):
    """The integration policy of ``test_role_guardrail`` (break-glass, a data-science group grant)."""
    world = {"roleAssignments": [BREAK_GLASS_OWNER, *assignments], "roleDefinitions": list(definitions),
             "directory": directory or {"groups": {b.DS_GROUP: [b.ALICE]}}}
    return harness([], world=world, extra_metadata=[_policy_dir(tmp_path)])


# ---- 1. the shipped policy: Key Vault Secrets User / Officer at subscription scope -------------------
@pytest.mark.parametrize("guid", [KV_SECRETS_USER, KV_SECRETS_OFFICER])
def test_a_key_vault_secrets_role_at_subscription_scope_is_removed_and_on_a_vault_kept(harness, guid):
    at_sub = b.role_assignment("", b.BOB, role_id=guid)
    on_vault = b.role_assignment("", b.BOB, role_id=guid,
                                 scope=f"{RG_SCOPE}/providers/Microsoft.KeyVault/vaults/kv-ml")
    h = _shipped(harness, [at_sub, on_vault])
    row = h.deliver(b.role_event(at_sub))
    assert row.verdict == "remediated", row.message
    (v,) = row.violations
    assert v.policy.startswith("rbac-least-privilege@5") and v.rule == "privileged-at-subscription"
    assert h.deliver(b.role_event(on_vault)).verdict == "compliant"
    assert not _exists(h, at_sub) and _exists(h, on_vault)


# ---- 2. roles that delete role assignments --------------------------------------------------------------
@pytest.mark.parametrize("actions", [["*/read", "Microsoft.Authorization/roleAssignments/delete"],
                                     ["*/read", "Microsoft.Authorization/*/delete"]])
def test_a_custom_role_that_can_delete_role_assignments_is_removed_by_the_shipped_policy(harness, actions):
    grant = b.role_assignment("", b.BOB, role_id=CUSTOM)
    h = _shipped(harness, [grant], definitions=[custom_role(actions)])
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "remediated", row.message
    assert [v.rule for v in row.violations] == ["privileged-at-subscription"] and not _exists(h, grant)


def test_an_rbac_administrator_whose_condition_leaves_delete_open_is_removed(harness, tmp_path):
    loose = b.role_assignment("Role Based Access Control Administrator", b.BOB, condition=WRITE_ONLY)
    both = b.role_assignment("Role Based Access Control Administrator", b.ALICE, condition=b.RBAC_ADMIN_CONDITION)
    h = _test_policy(harness, tmp_path, [loose, both])
    row = h.deliver(b.role_event(loose))
    assert row.verdict == "remediated" and [v.rule for v in row.violations] == ["rbac-admin-without-condition"]
    assert h.deliver(b.role_event(both)).verdict == "compliant"
    assert not _exists(h, loose) and _exists(h, both)


# ---- 3. a custom role narrowed on another worker's watch --------------------------------------------------
def test_a_custom_role_narrowed_since_this_worker_cached_it_is_not_removed_on_the_stale_copy(harness, tmp_path):
    # GIVEN this worker read and cached the custom role while it granted '*' (judging an assignment
    # of it on a resource group, where it is allowed)
    below = b.role_assignment("", b.ALICE, role_id=CUSTOM, scope=RG_SCOPE)
    grant = b.role_assignment("", b.BOB, role_id=CUSTOM)
    h = _test_policy(harness, tmp_path, [below, grant], definitions=[custom_role(["*"])])
    assert h.deliver(b.role_event(below)).verdict == "compliant"
    # WHEN the role is narrowed to reading (its definition event handled by another worker) and
    # an assignment of it at the subscription is delivered here
    h.emu.put_role_definition(custom_role(["*/read"]))
    h.emu.clear_requests()
    row = h.deliver(b.role_event(grant))
    # THEN the definition is read again before anything is removed: allowed, and still there
    assert row.verdict == "compliant", row.message
    assert _exists(h, grant) and h.writes() == []
    assert len([q for q in h.arm_requests("GET") if "/roleDefinitions/" in q["path"]]) == 1


def test_a_custom_role_still_wide_when_read_again_is_removed(harness, tmp_path):
    below = b.role_assignment("", b.ALICE, role_id=CUSTOM, scope=RG_SCOPE)
    grant = b.role_assignment("", b.BOB, role_id=CUSTOM)
    h = _test_policy(harness, tmp_path, [below, grant], definitions=[custom_role(["*"])])
    assert h.deliver(b.role_event(below)).verdict == "compliant"
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "remediated" and not _exists(h, grant)


# ---- 4. Graph does not know the principal yet -------------------------------------------------------------
def test_a_principal_graph_does_not_know_yet_keeps_its_grant_and_is_decided_on_the_retry(harness, tmp_path):
    # GIVEN a group grant of AzureML Data Scientist, and an assignment of it to a principal just
    # created: Graph's directory does not hold it yet (checkMemberGroups answers 404)
    grant = b.role_assignment("AzureML Data Scientist", NEWCOMER, scope=RG_SCOPE)
    # made a moment ago (s25: a 404 is transient only within the replication grace of createdOn)
    grant["properties"]["createdOn"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    h = _test_policy(harness, tmp_path, [grant],
                     directory={"groups": {b.DS_GROUP: [b.ALICE]}, "objects": {b.ALICE: "User"}})
    # WHEN it is delivered THEN the decision fails (Event Grid redelivers) and nothing is removed
    row = h.deliver(b.role_event(grant))
    assert (row.verdict, row.reason) == ("failed", "transient"), row.message
    assert _exists(h, grant) and h.writes() == []
    # WHEN Graph has replicated it, as a member of the granted group, and the event is redelivered
    with h.emu.store.lock:
        h.emu.directory.set_group(b.DS_GROUP, [b.ALICE, NEWCOMER])
    row = h.deliver(b.role_event(grant))
    # THEN it is allowed (the 404 was not remembered as "not a member") and still there
    assert row.verdict == "compliant", row.message
    assert _exists(h, grant)


# ---- 5. a scope written with a trailing '/' ---------------------------------------------------------------
def test_an_owner_whose_scope_ends_in_a_slash_is_judged_at_the_subscription_and_removed(harness, tmp_path):
    grant = b.role_assignment("Owner", b.BOB, name="0b0b0000-0000-4000-8000-0000000000f5")
    grant["properties"]["scope"] = SUB_SCOPE + "/"
    h = _test_policy(harness, tmp_path, [grant])
    assert h.emu.get_role_assignment(grant["id"])["properties"]["scope"] == SUB_SCOPE + "/"
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "remediated", row.message
    assert [v.rule for v in row.violations] == ["privileged-at-subscription"]
    assert not _exists(h, grant) and _exists(h, BREAK_GLASS_OWNER)


def test_an_assignment_whose_scope_cannot_be_placed_is_a_failed_decision_and_kept(harness, tmp_path):
    grant = b.role_assignment("Owner", b.BOB, name="0b0b0000-0000-4000-8000-0000000000f6")
    grant["properties"]["scope"] = f"/subscriptions/{b.SUB}//resourceGroups/{RG_SCOPE.rsplit('/', 1)[-1]}"
    h = _test_policy(harness, tmp_path, [grant])
    row = h.deliver(b.role_event(grant))
    assert (row.verdict, row.reason) == ("failed", "unexpected_shape") and "cannot be judged" in row.message
    assert _exists(h, grant) and h.writes() == []
