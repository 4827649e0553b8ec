"""Role-assignment guardrail, review (s25), end to end: the real azure-mgmt-authorization client and
azure-core Graph pipeline against the emulator's assignments, definitions and directory (a complete
directory: an object it does not hold answers 404 ``Request_ResourceNotFound``, as Graph does for a
deleted principal), Azurite audit. Asserts on the emulator's resulting state.

1. A principal deleted for good: its assignment is judged once the replication grace has passed
   since the assignment was made (it failed on every delivery for 24 h, and every sweep);
2. the shipped policy (version 4): storage data-plane roles at subscription scope are removed, the
   same roles on a resource group stay (the benchmark's shape)."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, RG_SCOPE, SUB_SCOPE, _exists
from tests.integration.test_role_review_fixes import CUSTOM, custom_role
from tests.integration.test_sweep import _sweep_rows, _sweeper

pytestmark = pytest.mark.integration

GONE = "de1e7ed0-0000-4000-8000-00000000dead"          # deleted from the directory
NEWCOMER = "5e5e5e5e-0000-4000-8000-00000000c0de"      # created a moment ago, not replicated yet
ADMINS = "ad000000-0000-4000-8000-0000000000ad"         # the platform admins' group
DS = "AzureML Data Scientist"
# a complete directory: GONE and NEWCOMER are not in it
DIRECTORY = {"groups": {b.DS_GROUP: [b.ALICE], ADMINS: [b.ALICE]},
             "objects": {b.ALICE: "User", b.BOB: "User", b.BREAK_GLASS: "User"}}
DEFS = "/providers/Microsoft.Authorization/roleDefinitions/"


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _made(body: dict, ago: timedelta | None) -> dict:
    """``body`` with ARM's ``createdOn`` ``ago`` before now (removed when None)."""
    if ago is None:
        body["properties"].pop("createdOn", None)
    else:
        body["properties"]["createdOn"] = _iso(datetime.now(timezone.utc) - ago)
    return body


def _ds_harness(harness, tmp_path, assignments):
    """Beside the shipped policy, one that grants AzureML Data Scientist on the resource group to
    the data-science group."""
    d = tmp_path / "ds"
    d.mkdir()
    (d / "ml-grants.yaml").write_text(textwrap.dedent(f"""\
        id: ml-grants-s25
        version: 1
        kind: role-assignments
        description: who may be a data scientist on the production ML resource group
        mode: enforce
        grants:
          - role: {DS}
            scopes: [{RG_SCOPE}]
            groups: [{b.DS_GROUP}]
        action: {{type: delete-role-assignment}}
        """))
    return harness([], world={"roleAssignments": list(assignments), "directory": DIRECTORY}, extra_metadata=[d])


def _owner_grant_policy(tmp_path) -> Path:
    """The shipped policy, with the break-glass account and Owner at the subscription granted to
    the platform admins' group."""
    d = tmp_path / "owners"
    d.mkdir()
    text = (Path(__file__).resolve().parents[2] / "metadata/policies/rbac-least-privilege.yaml").read_text()
    text = text.replace("break_glass: []", f"break_glass: [{b.BREAK_GLASS}]").replace(
        "grants: []", textwrap.dedent(f"""\
            grants:
              - role: Owner
                scopes: [{SUB_SCOPE}]
                groups: [{ADMINS}]"""))
    (d / "rbac-least-privilege.yaml").write_text(text)
    return d


def _graph_calls(h) -> list[dict]:
    return [q for q in h.emu.requests if q["host"] == "graph"]


# ---- 1. a deleted principal -------------------------------------------------------------------------------
def test_an_owner_of_a_deleted_principal_is_removed_once_the_grace_has_passed(harness, tmp_path):
    # GIVEN Owner at the subscription is granted to the platform admins' group, and an Owner
    # assignment made yesterday whose principal has since been deleted from the directory
    grant = _made(b.role_assignment("Owner", GONE, name="0d0d0000-0000-4000-8000-0000000000d1"), timedelta(days=1))
    h = harness([], world={"roleAssignments": [BREAK_GLASS_OWNER, grant], "directory": DIRECTORY},
                extra_metadata=[_owner_grant_policy(tmp_path)])
    # WHEN its event is delivered
    row = h.deliver(b.role_event(grant))
    # THEN Graph's 404 means "no such principal": in no group, so not granted; removed as any
    # privileged assignment outside policy would be, and the row says why
    assert row.verdict == "remediated", row.message
    assert [v.rule for v in row.violations] == ["privileged-at-subscription", "not-granted"]
    assert f"principal {GONE} not found in the directory" in row.message
    assert not _exists(h, grant) and _exists(h, BREAK_GLASS_OWNER)
    assert _graph_calls(h) and all(q["status"] == 404 for q in _graph_calls(h))


def test_a_grant_of_a_deleted_principal_is_removed_and_of_a_new_one_kept_until_the_grace_ends(harness, tmp_path):
    gone = _made(b.role_assignment(DS, GONE, scope=RG_SCOPE), timedelta(hours=2))
    new = _made(b.role_assignment(DS, NEWCOMER, scope=RG_SCOPE), timedelta(seconds=5))
    h = _ds_harness(harness, tmp_path, [gone, new])
    row = h.deliver(b.role_event(gone))
    assert row.verdict == "remediated" and [v.rule for v in row.violations] == ["not-granted"], row.message
    assert "not found in the directory" in row.message and not _exists(h, gone)
    # a principal created a moment ago: Graph may not hold it yet; decided on a redelivery
    row = h.deliver(b.role_event(new))
    assert (row.verdict, row.reason) == ("failed", "transient"), row.message
    assert _exists(h, new)
    # WHEN the grace has passed and it is still not in the directory (its creation was rolled back)
    h.emu.put_role_assignment(_made(h.emu.get_role_assignment(new["id"]), timedelta(minutes=11)))
    row = h.deliver(b.role_event(new))
    # THEN it is judged: in no group, removed
    assert row.verdict == "remediated", row.message
    assert not _exists(h, new)


def test_without_createdon_the_events_time_measures_the_grace(harness, tmp_path):
    grant = _made(b.role_assignment(DS, GONE, scope=RG_SCOPE), None)
    h = _ds_harness(harness, tmp_path, [grant])
    fresh = b.role_event(grant)
    assert h.deliver(fresh).verdict == "failed" and _exists(h, grant)
    late = b.role_event(grant)
    late["eventTime"] = _iso(datetime.now(timezone.utc) - timedelta(minutes=30))
    row = h.deliver(late)
    assert row.verdict == "remediated", row.message
    assert not _exists(h, grant)


def test_the_sweep_settles_a_deleted_principals_assignment_and_keeps_a_new_ones(harness, tmp_path):
    # GIVEN two assignments whose events were lost: one of a principal deleted since, one of a
    # principal created a moment ago
    gone = _made(b.role_assignment(DS, GONE, scope=RG_SCOPE), timedelta(days=3))
    new = _made(b.role_assignment(DS, NEWCOMER, scope=RG_SCOPE), timedelta(seconds=5))
    h = _ds_harness(harness, tmp_path, [gone, new])
    # WHEN the sweep runs over the subscription
    summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB])
    # THEN the deleted principal's is removed; the new one's decision fails (retried next run)
    assert not _exists(h, gone) and _exists(h, new)
    rows = {r.resource_id: r for r in _sweep_rows(h, summary.sweep_id)}
    assert rows[gone["id"]].verdict == "remediated" and "not found in the directory" in rows[gone["id"]].message
    assert (rows[new["id"]].verdict, rows[new["id"]].reason) == ("failed", "transient")
    assert (summary.remediated, summary.failed) == (1, 1)


# ---- 2. storage data-plane roles in the shipped policy ---------------------------------------------------
BLOB_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
QUEUE_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
S = "Microsoft.Storage/storageAccounts/"
# as ARM GET answers it at the tenant root (learn.microsoft.com, Azure built-in roles: Storage)
STORAGE_QUEUE_DATA_CONTRIBUTOR = {
    "id": f"{DEFS}{QUEUE_CONTRIBUTOR}", "name": QUEUE_CONTRIBUTOR, "type": "Microsoft.Authorization/roleDefinitions",
    "properties": {
        "roleName": "Storage Queue Data Contributor", "type": "BuiltInRole",
        "description": "Allows for read, write, and delete access to Azure Storage queues and queue messages",
        "assignableScopes": ["/"],
        "permissions": [{"actions": [S + "queueServices/queues/delete", S + "queueServices/queues/read",
                                     S + "queueServices/queues/write"],
                         "notActions": [],
                         "dataActions": [S + "queueServices/queues/messages/delete",
                                         S + "queueServices/queues/messages/read",
                                         S + "queueServices/queues/messages/write",
                                         S + "queueServices/queues/messages/process/action"],
                         "notDataActions": []}],
        "createdBy": None, "updatedBy": None}}


def _shipped(harness, assignments, definitions=()):
    return harness([], world={"roleAssignments": [BREAK_GLASS_OWNER, *assignments],
                              "roleDefinitions": list(definitions), "directory": {"groups": {}}})


@pytest.mark.parametrize("guid", [BLOB_OWNER, b.ROLE_IDS["Storage Blob Data Contributor"], QUEUE_CONTRIBUTOR])
def test_a_storage_data_role_at_the_subscription_is_removed_and_on_a_resource_group_kept(harness, guid):
    at_sub = b.role_assignment("", b.BOB, role_id=guid)
    on_rg = b.role_assignment("", b.BOB, role_id=guid, scope=RG_SCOPE)
    h = _shipped(harness, [at_sub, on_rg], definitions=[STORAGE_QUEUE_DATA_CONTRIBUTOR])
    row = h.deliver(b.role_event(at_sub))
    assert row.verdict == "remediated", row.message
    (v,) = row.violations
    assert v.policy.startswith("rbac-least-privilege@5") and v.rule == "privileged-at-subscription"
    assert v.before["role_id"] == guid
    assert h.deliver(b.role_event(on_rg)).verdict == "compliant"
    assert not _exists(h, at_sub) and _exists(h, on_rg)


def test_a_custom_role_writing_blobs_at_the_subscription_is_removed_and_on_a_resource_group_kept(harness):
    role = custom_role(["*/read"], data_actions=[S + "blobServices/containers/blobs/write"])
    at_sub = b.role_assignment("", b.BOB, role_id=CUSTOM)
    on_rg = b.role_assignment("", b.BOB, role_id=CUSTOM, scope=RG_SCOPE)
    h = _shipped(harness, [at_sub, on_rg], definitions=[role])
    row = h.deliver(b.role_event(at_sub))
    assert row.verdict == "remediated" and [v.rule for v in row.violations] == ["privileged-at-subscription"]
    assert h.deliver(b.role_event(on_rg)).verdict == "compliant"
    assert not _exists(h, at_sub) and _exists(h, on_rg)


def test_the_benchmarks_role_events_stay_compliant(harness):
    """``bench/pipeline.py``'s role phase: Reader, Storage Blob Data Contributor and AzureML Data
    Scientist on resource groups, under the shipped policy."""
    import random

    from bench.pipeline import _role_pool

    pool = _role_pool(6, random.Random(11), [b.SUB])
    h = _shipped(harness, pool)
    assert [h.deliver(b.role_event(a)).verdict for a in pool] == ["compliant"] * 6
    assert h.writes() == []
