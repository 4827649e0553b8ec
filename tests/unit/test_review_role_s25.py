"""Role-assignment guardrail, review (s25), in the pure core, the Graph adapter and the guardrail's
decision over fakes:

1. a principal deleted for good: Graph's 404 on ``checkMemberGroups`` is transient only within the
   replication grace of the assignment's creation (ARM's ``createdOn``, else the event's time);
   past it the principal is a member of no group and the assignment is judged so;
2. the shipped policy (version 4): storage data-plane roles — and the other ways to a storage key —
   at subscription scope or above are privileged; on a resource group or below they stay allowed.

Names are imported inside the tests that use them, so each test fails on its own when the code it
proves is missing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace as NS

import pytest

from guardrails.errors import ArmTransient
from guardrails.model.arm_id import parse_arm_id
from guardrails.model.decision import AuditRow
from guardrails.model.roles import BUILTIN_ROLES, RoleDefinition, builtin_by_name
from guardrails.policy.loader import load_documents
from guardrails.policy.roles import Assignment, evaluate_assignment
from guardrails.role_guardrail import RoleAssignmentGuardrail
from tests import builders as b
from tests.unit.test_role_review_fixes import (
    BASELINE, MG, NOW, SUB_SCOPE, FakeAuthz, FakeService, NoGroups, at, custom, decide, rules,
)

GONE = "de1e7ed0-0000-4000-8000-00000000dead"          # a principal deleted from the directory
ADMINS = "ad000000-0000-4000-8000-0000000000ad"         # the platform admins' group
RG = b.rg_id()
DS = "AzureML Data Scientist"
DS_GRANTS = load_documents([("ds.yaml", {
    "id": "ds-grants", "version": 1, "kind": "role-assignments", "description": "x", "mode": "enforce",
    "grants": [{"role": DS, "scopes": [RG], "groups": [b.DS_GROUP]}],
    "action": {"type": "delete-role-assignment"}})])
# the shipped policy, with Owner at the subscription granted to the platform admins' group
OWNER_GRANTS = load_documents([("p.yaml", {
    **BASELINE[0].to_document(),
    "grants": [{"role": "Owner", "scopes": [SUB_SCOPE], "groups": [ADMINS]}]})])


class NotInDirectory:
    """Graph's answer for a principal the directory does not hold (404), counting the asks."""

    def __init__(self) -> None:
        self.asked = 0

    def is_member(self, principal_id, group_id):
        from guardrails.policy.roles import PrincipalNotFound

        self.asked += 1
        raise PrincipalNotFound("Graph checkMemberGroups answered 404")


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")           # ARM's seven fractional digits


def _made(body: dict, when: datetime | None) -> dict:
    """``body`` with ARM's ``createdOn`` set to ``when`` (removed when None)."""
    if when is None:
        body["properties"].pop("createdOn", None)
    else:
        body["properties"]["createdOn"] = _iso(when)
    return body


def _findings(body: dict, role: str = DS, policies=DS_GRANTS, groups=None, **kw):
    a = Assignment.from_arm(body)
    return evaluate_assignment(a, builtin_by_name(role), policies, groups=groups or NotInDirectory(), now=NOW, **kw)


# ---- 1. Graph's 404: transient within the replication grace, "in no group" after -----------------------
def test_the_grace_is_a_module_constant_of_ten_minutes():
    from guardrails.policy.roles import REPLICATION_GRACE_SECONDS

    assert REPLICATION_GRACE_SECONDS == 600.0


def test_createdon_is_read_from_the_assignment_as_arm_writes_it():
    body = at(RG, DS, GONE)
    assert Assignment.from_arm(body).created_on == datetime(2026, 11, 24, 9, tzinfo=timezone.utc)
    for odd in ("", "yesterday", 17, None, "9" * 100):
        body["properties"]["createdOn"] = odd
        assert Assignment.from_arm(body).created_on is None         # optional: never a failed decision


def test_a_deleted_principal_past_the_grace_is_in_no_group_and_its_grant_is_excess():
    body = _made(at(RG, DS, GONE), NOW - timedelta(minutes=11))
    (f,) = _findings(body)
    assert f.rule == "not-granted" and f.principal_missing
    assert "not found in the directory" in f.message


@pytest.mark.parametrize("age", [timedelta(0), timedelta(minutes=2), timedelta(minutes=9, seconds=59),
                                 -timedelta(minutes=30)])        # a createdOn ahead of our clock: unknown
def test_within_the_grace_a_404_stays_transient(age):
    body = _made(at(RG, DS, GONE), NOW - age)
    with pytest.raises(ArmTransient) as err:
        _findings(body)
    assert err.value.status == 404 and err.value.reason == "transient"


def test_without_createdon_the_event_time_measures_the_grace_and_neither_known_is_transient():
    body = _made(at(RG, DS, GONE), None)
    assert [f.rule for f in _findings(body, written_at=NOW - timedelta(minutes=20))] == ["not-granted"]
    with pytest.raises(ArmTransient):
        _findings(body, written_at=NOW - timedelta(minutes=1))
    with pytest.raises(ArmTransient):
        _findings(body)                                              # age unknown: maybe replicating
    # ARM's createdOn wins over the event's time (a redelivery of an old write, a rewrite)
    old = _made(at(RG, DS, GONE), NOW - timedelta(days=1))
    assert [f.rule for f in _findings(old, written_at=NOW)] == ["not-granted"]


def test_only_a_404_is_settled_by_the_grace_any_other_graph_failure_stays_transient():
    class Down:
        def is_member(self, principal_id, group_id):
            raise ArmTransient("Graph checkMemberGroups answered 503", status=503)

    body = _made(at(RG, DS, GONE), NOW - timedelta(days=1))
    with pytest.raises(ArmTransient):
        _findings(body, groups=Down())


def test_a_404_is_never_a_member_and_a_listed_principal_needs_no_graph_call():
    listed = load_documents([("p.yaml", {
        "id": "ds-grants", "version": 1, "kind": "role-assignments", "description": "x", "mode": "enforce",
        "grants": [{"role": DS, "scopes": [RG], "principals": [GONE], "groups": [b.DS_GROUP]}],
        "action": {"type": "delete-role-assignment"}})])
    graph = NotInDirectory()
    assert _findings(at(RG, DS, GONE), policies=listed, groups=graph) == [] and graph.asked == 0


def test_a_deleted_principal_holding_a_privileged_role_is_judged_as_any_other():
    body = at(SUB_SCOPE, "Owner", GONE)
    fs = _findings(body, role="Owner", policies=OWNER_GRANTS)
    assert [f.rule for f in fs] == ["privileged-at-subscription", "not-granted"]
    assert all(f.principal_missing for f in fs)


def test_a_member_answer_is_unchanged_by_the_grace():
    class Member:
        def is_member(self, principal_id, group_id):
            return True

    assert _findings(at(RG, DS, b.BOB), groups=Member()) == []


# ---- 1b. the guardrail's decision ----------------------------------------------------------------------------
def _decide(authz, target, groups, policies, event_time=None) -> AuditRow:
    g = RoleAssignmentGuardrail(FakeService(), authz, groups)
    row = AuditRow(event_id="e", event_type="x", resource_id=target["id"], verdict="ignored")
    event = NS(resource_id=parse_arm_id(target["id"]), envelope=NS(time=event_time))
    g.decide(NS(deadline=None, now=NOW, dry_run=False), row, event, policies)
    return row


def test_an_owner_of_a_deleted_principal_is_removed_and_the_row_says_it_was_not_found():
    grant = at(SUB_SCOPE, "Owner", GONE)                    # createdOn a day before NOW
    authz = FakeAuthz(at(MG, "Owner", b.ALICE), grant)
    row = _decide(authz, grant, NotInDirectory(), OWNER_GRANTS)
    assert row.verdict == "remediated", row.message
    assert [v.rule for v in row.violations] == ["privileged-at-subscription", "not-granted"]
    assert grant["id"].lower() not in authz.world
    assert f"principal {GONE} not found in the directory" in row.message


def test_a_grant_of_a_principal_not_yet_replicated_is_kept_and_the_decision_fails():
    grant = _made(at(RG, DS, GONE), NOW - timedelta(minutes=1))
    authz = FakeAuthz(grant)
    row = _decide(authz, grant, NotInDirectory(), DS_GRANTS)
    assert (row.verdict, row.reason) == ("failed", "transient") and grant["id"].lower() in authz.world


def test_the_event_time_stands_in_for_a_missing_createdon():
    grant = _made(at(RG, DS, GONE), None)
    authz = FakeAuthz(grant)
    assert _decide(authz, grant, NotInDirectory(), DS_GRANTS, event_time=NOW).verdict == "failed"
    assert grant["id"].lower() in authz.world
    row = _decide(authz, grant, NotInDirectory(), DS_GRANTS, event_time=NOW - timedelta(minutes=15))
    assert row.verdict == "remediated" and grant["id"].lower() not in authz.world


# ---- 1c. the adapter: a 404 is PrincipalNotFound, never an answer, never kept -------------------------------
from tests.unit.test_review_roles_s24 import _Graph  # noqa: E402  (Graph's client answering a list of (status, groups))


def test_graphs_404_is_principal_not_found_and_never_kept_as_an_answer():
    from guardrails.policy.roles import PrincipalNotFound

    clock = [0.0]
    g = _Graph([(404, None), (404, None), (200, [b.DS_GROUP])], clock)
    with pytest.raises(PrincipalNotFound) as err:
        g.is_member(b.BOB, b.DS_GROUP)
    assert isinstance(err.value, ArmTransient) and err.value.status == 404 and err.value.reason == "transient"
    with pytest.raises(PrincipalNotFound):
        g.is_member(b.BOB, b.DS_GROUP)
    assert g.calls == 2 and g._cache == {}                       # asked each time, nothing kept
    assert g.is_member(b.BOB, b.DS_GROUP) is True and g.calls == 3     # replicated since: a member


# ---- 2. the shipped policy, version 4: storage data at subscription scope ------------------------------------
BLOB_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"   # infra/modules/app.bicep names the same id
BLOB_ROLES = ["Storage Blob Data Owner", "Storage Blob Data Contributor", "Storage Blob Data Reader"]
CONTAINER = f"{RG}/providers/Microsoft.Storage/storageAccounts/mlsa/blobServices/default/containers/train"


def arm_builtin(guid: str, name: str, actions=(), data_actions=()) -> RoleDefinition:
    """A built-in outside the catalogue, as ARM GET answers it (read, then judged by permissions)."""
    return RoleDefinition.from_arm({
        "id": f"/providers/Microsoft.Authorization/roleDefinitions/{guid}", "name": guid,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {"roleName": name, "type": "BuiltInRole", "assignableScopes": ["/"],
                       "permissions": [{"actions": list(actions), "notActions": [],
                                        "dataActions": list(data_actions), "notDataActions": []}]}})


S = "Microsoft.Storage/storageAccounts/"
# ARM's definitions (learn.microsoft.com, built-in roles: Storage)
QUEUE_CONTRIBUTOR = arm_builtin("974c5e8b-45b9-4653-ba55-5f855dd0fb88", "Storage Queue Data Contributor",
                                [S + "queueServices/queues/delete", S + "queueServices/queues/read",
                                 S + "queueServices/queues/write"],
                                [S + "queueServices/queues/messages/delete", S + "queueServices/queues/messages/read",
                                 S + "queueServices/queues/messages/write",
                                 S + "queueServices/queues/messages/process/action"])
QUEUE_SENDER = arm_builtin("c6a89b2d-59bc-44d0-9896-0f6e12d7b80a", "Storage Queue Data Message Sender",
                           data_actions=[S + "queueServices/queues/messages/add/action"])
TABLE_CONTRIBUTOR = arm_builtin("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "Storage Table Data Contributor",
                                [S + "tableServices/tables/read", S + "tableServices/tables/write",
                                 S + "tableServices/tables/delete"],
                                [S + "tableServices/tables/entities/read", S + "tableServices/tables/entities/write",
                                 S + "tableServices/tables/entities/delete",
                                 S + "tableServices/tables/entities/add/action",
                                 S + "tableServices/tables/entities/update/action"])
FILE_PRIVILEGED = arm_builtin("69566ab7-960f-475b-8e7c-b3118f30c6bd", "Storage File Data Privileged Contributor",
                              data_actions=[S + "fileServices/fileshares/files/read",
                                            S + "fileServices/fileshares/files/write",
                                            S + "fileServices/fileshares/files/delete",
                                            S + "fileServices/fileshares/files/modifypermissions/action",
                                            S + "fileServices/readFileBackupSemantics/action",
                                            S + "fileServices/writeFileBackupSemantics/action"])
SMB_CONTRIBUTOR = arm_builtin("0c867c2a-1d8c-454a-a3db-ab2ea1bdc8bb", "Storage File Data SMB Share Contributor",
                              data_actions=[S + "fileServices/fileshares/files/read",
                                            S + "fileServices/fileshares/files/write",
                                            S + "fileServices/fileshares/files/delete"])
KEY_OPERATOR = arm_builtin("81a9662b-bebf-436f-a333-f67b29880f12", "Storage Account Key Operator Service Role",
                           [S + "listkeys/action", S + "regeneratekey/action"])
READER_AND_DATA = arm_builtin("c12c1c16-33a1-487b-954d-41c89c60f349", "Reader and Data Access",
                              [S + "listKeys/action", S + "ListAccountSas/action", S + "read"])
ACCOUNT_CONTRIBUTOR = arm_builtin("17d1049b-9a84-46fb-8f53-869881c3d3ab", "Storage Account Contributor",
                                  ["Microsoft.Authorization/*/read", "Microsoft.Resources/deployments/*",
                                   "Microsoft.Storage/storageAccounts/*", "Microsoft.Support/*"])
BLOB_DELEGATOR = arm_builtin("db58b8e5-c6ad-4a2a-8342-4190687cbf4a", "Storage Blob Delegator",
                             [S + "blobServices/generateUserDelegationKey/action"])
DEFENDER_SCANNER = arm_builtin("1e7ca9b1-60d1-4db8-a914-f2ca1ff27c40", "Defender for Storage Data Scanner",
                               [S + "blobServices/containers/read"],
                               [S + "blobServices/containers/blobs/read", S + "blobServices/containers/blobs/delete"])
ABOVE = [SUB_SCOPE, MG, "/"]
BELOW = [RG, f"{RG}/providers/Microsoft.Storage/storageAccounts/mlsa", CONTAINER]


def test_the_shipped_policy_is_version_4_and_names_the_blob_roles_by_their_azure_ids():
    (pol,) = BASELINE
    assert pol.version >= 4
    owner = builtin_by_name("Storage Blob Data Owner")
    assert owner is not None and owner.id == BLOB_OWNER and BUILTIN_ROLES[BLOB_OWNER] is owner
    assert owner.data_actions == (S + "blobServices/containers/blobs/*",)
    assert {builtin_by_name(n).id for n in BLOB_ROLES} <= pol.privileged.role_ids


@pytest.mark.parametrize("name", BLOB_ROLES)
@pytest.mark.parametrize("scope", ABOVE)
def test_blob_data_roles_at_subscription_scope_or_above_are_privileged(name, scope):
    assert rules(builtin_by_name(name), scope=scope) == ["privileged-at-subscription"]


@pytest.mark.parametrize("name", BLOB_ROLES)
@pytest.mark.parametrize("scope", BELOW)
def test_blob_data_roles_on_a_resource_group_account_or_container_stay_allowed(name, scope):
    assert rules(builtin_by_name(name), scope=scope) == []


@pytest.mark.parametrize("role", [QUEUE_CONTRIBUTOR, QUEUE_SENDER, TABLE_CONTRIBUTOR, FILE_PRIVILEGED,
                                  SMB_CONTRIBUTOR, KEY_OPERATOR, READER_AND_DATA, ACCOUNT_CONTRIBUTOR,
                                  DEFENDER_SCANNER], ids=lambda r: r.role_name)
def test_other_storage_data_and_key_roles_are_judged_by_their_permissions(role):
    assert rules(role) == ["privileged-at-subscription"]
    assert rules(role, scope=RG) == []


def test_a_delegator_role_alone_reaches_no_data_and_stays_allowed():
    assert rules(BLOB_DELEGATOR) == []


@pytest.mark.parametrize("data_actions", [
    [S + "blobServices/containers/blobs/write"],
    [S + "blobServices/containers/blobs/read"],
    [S + "blobServices/containers/*"],
    ["Microsoft.Storage/*"],
    [S + "fileServices/fileshares/files/write"],
    [S + "queueServices/queues/messages/*"],
    [S + "tableServices/tables/entities/write"],
])
def test_a_custom_role_reaching_storage_data_is_privileged_at_subscription_scope_only(data_actions):
    role = custom(["*/read"], data_actions=data_actions)
    assert rules(role) == ["privileged-at-subscription"]
    assert rules(role, scope=RG) == []


@pytest.mark.parametrize("actions", [[S + "ListAccountSas/action"], [S + "listServiceSas/action"],
                                     [S + "regenerateKey/action"], [S + "*"]])
def test_a_custom_role_that_mints_a_key_or_a_sas_is_privileged(actions):
    assert rules(custom(["*/read", *actions])) == ["privileged-at-subscription"]


def test_not_data_actions_that_remove_every_storage_data_action_leave_the_role_unprivileged():
    role = custom(["*/read"], data_actions=["Microsoft.Storage/*"],
                  not_data_actions=[S + "blobServices/*", S + "fileServices/*", S + "queueServices/*",
                                    S + "tableServices/*"])
    assert rules(role) == []


def test_a_blob_data_contributor_at_the_subscription_is_removed():
    grant = at(SUB_SCOPE, "Storage Blob Data Contributor", b.BOB)
    authz = FakeAuthz(grant)
    row = decide(authz, grant)
    assert row.verdict == "remediated" and grant["id"].lower() not in authz.world
    assert row.violations[0].policy.startswith("rbac-least-privilege@5")


def test_an_allowed_service_principal_keeps_its_blob_role_at_the_subscription():
    pol = load_documents([("p.yaml", {**BASELINE[0].to_document(),
                                      "privileged": {**BASELINE[0].to_document()["privileged"],
                                                     "allowed_service_principals": [b.WORKSPACE_MI]}})])
    role = builtin_by_name("Storage Blob Data Reader")
    assert rules(role, principal=b.WORKSPACE_MI, ptype="ServicePrincipal", policies=pol) == []
    assert rules(role, principal=b.WORKSPACE_MI, ptype="User", policies=pol) == ["privileged-at-subscription"]


def test_the_benchmarks_role_events_stay_compliant_under_the_shipped_policy():
    import random

    from bench.pipeline import _role_pool

    pool = _role_pool(30, random.Random(3), [b.SUB])
    assert {p["properties"]["scope"].split("/")[3] for p in pool} == {"resourceGroups"}
    for body in pool:
        a = Assignment.from_arm(body)
        role = BUILTIN_ROLES[body["properties"]["roleDefinitionId"].rsplit("/", 1)[-1]]
        assert evaluate_assignment(a, role, BASELINE, groups=NoGroups(), now=NOW) == [], role.role_name
