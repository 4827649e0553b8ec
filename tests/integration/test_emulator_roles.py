"""Role assignments, role definitions and Microsoft Graph group membership on the local Azure
emulator, driven by the REAL azure-mgmt-authorization client.

SDK findings (azure-mgmt-authorization 4.0.0, ``AuthorizationManagementClient`` default profile):
* ``role_assignments`` and ``role_definitions`` both use api-version ``2022-04-01``.
* ``delete`` / ``delete_by_id`` accept 200 (body → the deleted ``RoleAssignment``) and 204 (→ None).
* ``role_definitions.create_or_update`` accepts ONLY 201, for updates too.
* ``{scope}`` goes into the URL unquoted (``skip_quote=True``), a leading ``/`` is stripped, so
  ``"/"`` reaches the tenant root; the transport percent-encodes non-ASCII as UTF-8.
* ``list_for_scope``'s ``$filter`` is sent unquoted by the SDK and encoded by the transport;
  ``nextLink`` is re-parsed, its query values re-quoted and ``api-version`` replaced.
* Models serialise snake_case attributes to camelCase REST bodies (unlike the dict bodies of the
  newer TypeSpec SDKs).
"""

from __future__ import annotations

import copy
import json
import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import (
    Permission, RoleAssignmentCreateParameters, RoleDefinition,
)

from guardrails.local.credential import LocalTokenCredential
from guardrails.local.emulator import AzureEmulator

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-000000000001"
OID = "11111111-2222-3333-4444-555555555555"
USER = "22222222-0000-0000-0000-000000000001"
OTHER = "22222222-0000-0000-0000-000000000002"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER_ID = f"/providers/Microsoft.Authorization/roleDefinitions/{OWNER}"
READER_ID = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{READER}"
S = f"/subscriptions/{SUB}"
RG = f"{S}/resourceGroups/rg1"
RES = f"{RG}/providers/Microsoft.Storage/storageAccounts/st1"
RA = "/providers/Microsoft.Authorization/roleAssignments/"
SAMPLES = Path("/work/shared/azure-samples/arm")


def assignment(scope: str, principal: str, role_id: str = READER_ID, name: str | None = None) -> dict:
    name = name or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{principal}|{role_id}"))
    return {"properties": {"roleDefinitionId": role_id, "principalId": principal, "principalType": "User",
                           "scope": scope},
            "id": f"{scope.rstrip('/')}{RA}{name}", "type": "Microsoft.Authorization/roleAssignments", "name": name}


def custom_role(guid: str, name: str, actions: list[str], scope: str = S) -> dict:
    return {"id": f"{S}/providers/Microsoft.Authorization/roleDefinitions/{guid}", "name": guid,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {"roleName": name, "type": "CustomRole", "description": "", "assignableScopes": [scope],
                           "permissions": [{"actions": actions, "notActions": [], "dataActions": [],
                                            "notDataActions": []}]}}


def client_for(emu: AzureEmulator, **cred) -> AuthorizationManagementClient:
    cred.setdefault("object_id", OID)
    return AuthorizationManagementClient(LocalTokenCredential(**cred), SUB, base_url=emu.base_url,
                                         connection_verify=emu.ca_path, retry_total=0)


@pytest.fixture
def emu():
    with AzureEmulator() as e:
        yield e


@pytest.fixture
def client(emu):
    c = client_for(emu, upn="ana@contoso.com")
    yield c
    c.close()


def raw(emu: AzureEmulator, method: str, path: str, body=None, token: bool = True):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {LocalTokenCredential(object_id=OID).token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(emu.base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=emu.ca_path), timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


# ---- role assignments ---------------------------------------------------------------------

def test_create_get_delete_with_rest_shape_and_camel_case_wire_body(emu, client):
    scope = f"{S}/resourceGroups/rgé-ü"            # non-ASCII round-trips
    name = str(uuid.uuid4())
    params = RoleAssignmentCreateParameters(role_definition_id=READER_ID, principal_id=USER,
                                            principal_type="User", description="why")
    created = client.role_assignments.create(scope, name, parameters=params)
    put = [q for q in emu.requests if q["method"] == "PUT"][-1]
    assert put["host"] == "management" and put["status"] == 201 and put["query"] == {"api-version": "2022-04-01"}
    assert put["body"] == {"properties": {"roleDefinitionId": READER_ID, "principalId": USER,
                                          "principalType": "User", "description": "why"}}
    rid = f"{scope}{RA}{name}"
    assert created.id == rid and created.scope == scope and created.created_by == OID

    stored = emu.get_role_assignment(rid.upper().replace("RGÉ-Ü", "rgé-ü"))  # ids match case-insensitively
    sample = json.loads((SAMPLES / "Microsoft.Authorization_roleAssignments.GET.2022-04-01.json").read_text())
    assert set(stored) == set(sample) and set(sample["properties"]) <= set(stored["properties"])
    assert {"createdOn", "updatedOn", "createdBy", "updatedBy"} <= set(stored["properties"])
    assert stored["properties"]["scope"] == scope and stored["properties"]["updatedBy"] == OID

    got = client.role_assignments.get_by_id(rid.lower())
    assert got.as_dict() == created.as_dict()
    assert client.role_assignments.get(scope, name.upper()).principal_id == USER

    deleted = client.role_assignments.delete_by_id(rid)
    assert deleted is not None and deleted.id == rid
    assert client.role_assignments.delete_by_id(rid) is None          # gone: 204, SDK returns None
    assert [q["status"] for q in emu.requests if q["method"] == "DELETE"] == [200, 204]
    with pytest.raises(ResourceNotFoundError) as exc:
        client.role_assignments.get_by_id(rid)
    assert exc.value.error.code == "RoleAssignmentNotFound"


def test_create_conflicts_and_validation(emu, client):
    params = RoleAssignmentCreateParameters(role_definition_id=OWNER_ID, principal_id=USER, principal_type="User")
    client.role_assignments.create(RG, str(uuid.uuid4()), parameters=params)
    with pytest.raises(ResourceExistsError) as exc:                  # same principal+role+scope, other name
        client.role_assignments.create(RG.upper().replace("SUBSCRIPTIONS", "subscriptions"), str(uuid.uuid4()),
                                       parameters=params)
    assert exc.value.status_code == 409 and exc.value.error.code == "RoleAssignmentExists"

    unknown = f"/providers/Microsoft.Authorization/roleDefinitions/{uuid.uuid4()}"
    with pytest.raises(HttpResponseError) as exc:
        client.role_assignments.create(RG, str(uuid.uuid4()), parameters=RoleAssignmentCreateParameters(
            role_definition_id=unknown, principal_id=USER))
    assert exc.value.status_code == 400 and exc.value.error.code == "RoleDefinitionDoesNotExist"

    status, body = raw(emu, "PUT", f"{RG}{RA}{uuid.uuid4()}?api-version=2022-04-01",
                       {"properties": {"role_definition_id": OWNER_ID, "principal_id": USER}})
    assert status == 400 and "role_definition_id" in body["error"]["message"]
    status, body = raw(emu, "GET", f"{RG}{RA}{uuid.uuid4()}?api-version=2015-07-01")
    assert status == 400 and body["error"]["code"] == "NoRegisteredProviderFound"
    status, body = raw(emu, "GET", f"{RG}{RA}{uuid.uuid4()}?api-version=2022-04-01", token=False)
    assert status == 401
    assert [a["properties"]["principalType"] for a in emu.role_assignments()] == ["User"]


def test_list_for_scope_filters(emu, client):
    other_rg = f"{S}/resourceGroups/rg2"
    seeded = [assignment("/", USER, OWNER_ID), assignment(S, USER), assignment(RG, OTHER), assignment(RES, USER),
              assignment(other_rg, USER), assignment(RG, USER, OWNER_ID)]
    for a in seeded:
        emu.put_role_assignment(a)

    def scopes(scope, filter=None):
        return sorted((a.scope, a.principal_id[-1]) for a in client.role_assignments.list_for_scope(scope, filter=filter))

    assert scopes(RG) == sorted([("/", "1"), (S, "1"), (RG, "2"), (RG, "1"), (RES, "1")])  # at, above, below
    assert scopes(RG, "atScope()") == sorted([("/", "1"), (S, "1"), (RG, "2"), (RG, "1")])
    assert scopes(RG, f"principalId eq '{OTHER}'") == [(RG, "2")]
    assert scopes(S, f"atScope() and principalId eq '{USER}'") == [("/", "1"), (S, "1")]
    assert len(scopes(S)) == 6
    assert [a.id for a in client.role_assignments.list_for_scope(RES, filter="atScope()")
            if a.scope == RES] == [seeded[3]["id"]]
    with pytest.raises(HttpResponseError) as exc:
        list(client.role_assignments.list_for_scope(RG, filter="roleDefinitionId eq 'x'"))
    assert exc.value.status_code == 400


def test_list_pages_with_skiptoken(emu, client):
    emu.page_size = 3
    for i in range(7):
        emu.put_role_assignment(assignment(RG, f"33333333-0000-0000-0000-00000000000{i}"))
    emu.clear_requests()
    got = list(client.role_assignments.list_for_scope(RG, filter="atScope()"))
    assert len(got) == 7 and len({a.id for a in got}) == 7
    pages = emu.requests
    assert len(pages) == 3 and all(q["query"]["$filter"] == "atScope()" for q in pages)
    assert "$skiptoken" not in pages[0]["query"] and all("$skiptoken" in q["query"] for q in pages[1:])
    status, body = raw(emu, "GET", f"{RG}{RA[:-1]}?api-version=2022-04-01")
    assert status == 200 and len(body["value"]) == 3 and "$skiptoken=" in body["nextLink"]


def test_writes_emit_events_with_caller_claims(emu, client):
    name = str(uuid.uuid4())
    rid = f"{RG}{RA}{name}"
    client.role_assignments.create(RG, name, parameters=RoleAssignmentCreateParameters(
        role_definition_id=OWNER_ID, principal_id=USER, principal_type="User"))
    client.role_assignments.delete_by_id(rid)
    client.role_assignments.delete_by_id(rid)                         # nothing deleted: no event
    client.role_assignments.create("/", str(uuid.uuid4()), parameters=RoleAssignmentCreateParameters(
        role_definition_id=OWNER_ID, principal_id=USER))               # tenant scope: no subscription topic
    write, delete = emu.drain_events()
    assert write["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert delete["eventType"] == "Microsoft.Resources.ResourceDeleteSuccess"
    for ev, op in ((write, "write"), (delete, "delete")):
        data = ev["data"]
        assert ev["topic"] == S and ev["subject"] == rid and data["resourceUri"] == rid
        assert data["operationName"] == f"Microsoft.Authorization/roleAssignments/{op}"
        assert data["resourceProvider"] == "Microsoft.Authorization" and data["subscriptionId"] == SUB
        assert set(data["authorization"]) == {"Scope", "Action", "Evidence"}
        evidence = data["authorization"]["Evidence"]
        assert evidence["PrincipalId"] == OID.replace("-", "") and "-" not in evidence["RoleDefinitionId"]
        claims = data["claims"]
        assert claims["http://schemas.microsoft.com/identity/claims/objectidentifier"] == OID
        assert claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] == "ana@contoso.com"


# ---- role definitions ---------------------------------------------------------------------

def test_builtin_definitions_at_tenant_and_subscription_scope(emu, client):
    at_root = client.role_definitions.get("/", OWNER)
    assert at_root.id == OWNER_ID and at_root.role_name == "Owner" and at_root.role_type == "BuiltInRole"
    assert at_root.permissions[0].actions == ["*"]
    at_sub = client.role_definitions.get(S, OWNER)
    assert at_sub.id == f"{S}/providers/Microsoft.Authorization/roleDefinitions/{OWNER}"
    assert client.role_definitions.get_by_id(READER_ID).role_name == "Reader"
    assert client.role_definitions.get(RG, READER.upper()).name == READER
    assert [d.name for d in client.role_definitions.list(S, filter="roleName eq 'Reader'")] == [READER]
    with pytest.raises(ResourceNotFoundError) as exc:
        client.role_definitions.get(S, str(uuid.uuid4()))
    assert exc.value.error.code == "RoleDefinitionDoesNotExist"


def test_custom_definition_create_get_list_assign_delete(emu, client):
    guid = str(uuid.uuid4())
    made = client.role_definitions.create_or_update(S, guid, RoleDefinition(
        role_name="Everything", role_type="CustomRole", description="too much",
        permissions=[Permission(actions=["*"])], assignable_scopes=[S]))
    put = [q for q in emu.requests if q["method"] == "PUT"][-1]
    assert put["status"] == 201 and put["body"]["properties"]["assignableScopes"] == [S]
    assert made.id == f"{S}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    got = client.role_definitions.get(RG, guid)
    assert got.role_type == "CustomRole" and got.permissions[0].not_actions == []
    customs = list(client.role_definitions.list(S, filter="type eq 'CustomRole'"))
    assert [d.name for d in customs] == [guid]
    with pytest.raises(ResourceExistsError):
        client.role_definitions.create_or_update(S, str(uuid.uuid4()), RoleDefinition(
            role_name="everything", permissions=[Permission(actions=["*/read"])], assignable_scopes=[S]))

    ra = client.role_assignments.create(RG, str(uuid.uuid4()), parameters=RoleAssignmentCreateParameters(
        role_definition_id=made.id, principal_id=USER))
    with pytest.raises(ResourceExistsError) as exc:
        client.role_definitions.delete(S, guid)
    assert exc.value.error.code == "RoleDefinitionHasAssignments"
    client.role_assignments.delete_by_id(ra.id)
    assert client.role_definitions.delete(S, guid).name == guid
    assert client.role_definitions.delete(S, guid) is None
    ops = [e["data"]["operationName"] for e in emu.drain_events()]
    assert ops == ["Microsoft.Authorization/roleDefinitions/write", "Microsoft.Authorization/roleAssignments/write",
                   "Microsoft.Authorization/roleAssignments/delete", "Microsoft.Authorization/roleDefinitions/delete"]


# ---- Microsoft Graph ------------------------------------------------------------------------

DIRECTORY = {"groups": {"g-admins": ["g-ops", USER], "g-ops": ["g-oncall"], "g-oncall": [OTHER],
                        "g-loop": ["g-loop2"], "g-loop2": ["g-loop"]}}


def test_check_member_groups_transitive_and_logged_as_graph():
    with AzureEmulator(directory=DIRECTORY) as emu:
        path = f"/v1.0/directoryObjects/{OTHER}/checkMemberGroups"
        status, body = raw(emu, "POST", path, {"groupIds": ["g-admins", "G-OPS", "g-loop", "g-unrelated"]})
        assert status == 200 and body["value"] == ["g-admins", "G-OPS"]     # nested: oncall ⊂ ops ⊂ admins
        assert raw(emu, "POST", f"/v1.0/users/{USER}/checkMemberGroups", {"groupIds": ["g-ops", "g-admins"]}
                   )[1]["value"] == ["g-admins"]
        assert raw(emu, "POST", "/v1.0/groups/g-loop/getMemberGroups", {"securityEnabledOnly": False}
                   )[1]["value"] == ["g-loop", "g-loop2"]                   # cycles terminate
        assert raw(emu, "POST", f"/v1.0/directoryObjects/{uuid.uuid4()}/checkMemberGroups",
                   {"groupIds": ["g-ops"]})[1]["value"] == []              # unknown, cannot tell: empty
        status, body = raw(emu, "POST", path, {"groupIds": ["g-ops"]}, token=False)
        assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
        assert raw(emu, "POST", path, {"groupIds": [f"g{i}" for i in range(21)]})[0] == 400
        log = emu.requests
        assert {q["host"] for q in log} == {"graph"} and log[0]["query"] == {}

        # as a product client would call it: azure-core pipeline + bearer token from the local credential
        policy = BearerTokenCredentialPolicy(LocalTokenCredential(object_id=OID), "https://graph.microsoft.com/.default")
        with PipelineClient(emu.base_url, policies=[policy], connection_verify=emu.ca_path) as graph:
            resp = graph.send_request(HttpRequest("POST", f"{emu.base_url}{path}", json={"groupIds": ["g-oncall"]}))
            assert resp.status_code == 200 and resp.json()["value"] == ["g-oncall"]

    with AzureEmulator(directory={**DIRECTORY, "objects": {USER: "User", OTHER: "User"}}) as emu:
        status, body = raw(emu, "POST", f"/v1.0/directoryObjects/{uuid.uuid4()}/checkMemberGroups",
                           {"groupIds": ["g-ops"]})
        assert status == 404 and body["error"]["code"] == "Request_ResourceNotFound"


# ---- world ------------------------------------------------------------------------------------

def test_world_load_dump_round_trip_and_sample_served_verbatim():
    sample = json.loads((SAMPLES / "Microsoft.Authorization_roleAssignments.GET.2022-04-01.json").read_text())
    custom = custom_role(str(uuid.uuid4()), "Vault Policy Writer", ["Microsoft.KeyVault/vaults/accessPolicies/write"])
    world = {"resources": [],
             "roleAssignments": [assignment(RG, USER, custom["id"]), sample, assignment(S, OTHER, OWNER_ID)],
             "roleDefinitions": [custom], "directory": {"groups": {"g1": [USER]}}}
    with AzureEmulator.from_world(copy.deepcopy(world)) as emu:
        dumped = emu.world()
        assert dumped["roleAssignments"] == sorted(world["roleAssignments"], key=lambda a: a["id"].lower())
        assert dumped["roleDefinitions"] == [custom] and dumped["directory"] == world["directory"]
        assert dumped["resources"] == []
        with client_for(emu) as c:
            got = c.role_assignments.get_by_id(sample["id"].lower())
            assert (got.id, got.scope, got.principal_id) == (sample["id"], sample["properties"]["scope"],
                                                             sample["properties"]["principalId"])
            assert c.role_definitions.get_by_id(custom["id"]).role_name == "Vault Policy Writer"
        status, body = raw(emu, "GET", sample["id"] + "?api-version=2022-04-01")
        assert status == 200 and body == sample                                # exactly as seeded
        with AzureEmulator.from_world(dumped) as again:
            assert again.world() == dumped
