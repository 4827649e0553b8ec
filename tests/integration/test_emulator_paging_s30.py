"""The emulator's list pages resume after the last item they returned, as ARM's continuation tokens
do, so an item deleted while a caller pages never makes the next page skip another one.

Found by CI in session 30: ``test_sweep_removes_a_privileged_assignment_at_management_group_scope_
and_at_the_tenant_root`` failed once in about a dozen runs on a two-core machine. The sweep lists a
management group's assignments (``atScope()``: the group's and the tenant root's) on one thread
while its root part deletes the root's Contributor on another. The emulator's ``$skiptoken`` was
an offset: a deletion before the next page shifted every later item one place, and the group's own
Contributor was never listed, judged or removed. Real SDK client (azure-mgmt-authorization), real
pages, assertions on what the pages returned."""

from __future__ import annotations

import pytest
from azure.mgmt.authorization import AuthorizationManagementClient

from guardrails.local.credential import LocalTokenCredential
from guardrails.local.emulator import AzureEmulator
from tests import builders as b

pytestmark = pytest.mark.integration

MG = "/providers/Microsoft.Management/managementGroups/mg-corp"


def _authz(emu: AzureEmulator) -> AuthorizationManagementClient:
    return AuthorizationManagementClient(LocalTokenCredential(object_id=b.ALICE), b.SUB, base_url=emu.base_url,
                                         connection_verify=emu.ca_path, retry_total=0)


@pytest.mark.parametrize("delete", ["first returned", "one not yet returned"])
def test_an_assignment_deleted_between_pages_makes_no_other_one_skipped(delete):
    names = [f"{n:08x}-0000-4000-8000-000000000000" for n in (1, 2, 3, 4)]
    grants = [b.role_assignment("Reader", b.ALICE, scope=MG, name=n) for n in names]
    with AzureEmulator.from_world({"roleAssignments": grants}) as emu:
        emu.page_size = 1
        client = _authz(emu)
        pages = client.role_assignments.list_for_scope(MG, filter="atScope()").by_page()
        seen = [a.name for a in next(pages)]
        assert seen == [names[0]]
        gone = names[0] if delete == "first returned" else names[2]
        client.role_assignments.delete(MG, gone)
        for p in pages:
            seen += [a.name for a in p]
        expected = [n for n in names if n != gone or delete == "first returned"]
        assert seen == expected, seen


def test_an_assignment_added_between_pages_repeats_none():
    names = [f"{n:08x}-0000-4000-8000-000000000000" for n in (2, 4, 6)]
    with AzureEmulator.from_world({"roleAssignments": [b.role_assignment("Reader", b.ALICE, scope=MG, name=n)
                                                       for n in names]}) as emu:
        emu.page_size = 2
        client = _authz(emu)
        pages = client.role_assignments.list_for_scope(MG, filter="atScope()").by_page()
        seen = [a.name for a in next(pages)]
        emu.put_role_assignment(b.role_assignment("Reader", b.BOB, scope=MG,
                                                    name="00000001-0000-4000-8000-000000000000"))
        for p in pages:
            seen += [a.name for a in p]
        assert seen == names, seen           # the new one sorts before the token: not listed, nothing twice


def test_a_token_the_emulator_did_not_make_is_refused():
    with AzureEmulator.from_world({"roleAssignments": [b.role_assignment("Reader", b.ALICE, scope=MG)]}) as emu:
        import requests

        from guardrails.local.credential import encode_local_token
        r = requests.get(f"{emu.base_url}{MG}/providers/Microsoft.Authorization/roleAssignments",
                         params={"api-version": "2022-04-01", "$skiptoken": "bzE"},         # an old offset token
                         headers={"Authorization": "Bearer " + encode_local_token({"oid": b.ALICE})},
                         verify=emu.ca_path, timeout=5)
        assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidSkipToken"
