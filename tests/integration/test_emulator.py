"""The local Azure emulator, driven by the REAL azure-mgmt-resource client.

SDK findings (azure-mgmt-resource 26.0.0, azure-core 1.41):
* ``GenericResource`` is a MutableMapping over the raw JSON: ``model.as_dict()`` (or ``dict(model)``)
  gives the REST-shaped camelCase dict, server-only fields such as ``etag``/``systemData`` included;
  ``model.properties`` is a plain dict.
* ``*_by_id`` builds the URL with ``skip_quote=True`` (the SDK itself does NOT percent-encode the id),
  but the requests transport re-quotes it: a non-ASCII resource group goes on the wire as UTF-8
  ``%C3%A9``. An id pre-quoted with ``urllib.parse.quote(rid, safe="/")`` arrives byte-identical.
* No ``if_match`` keyword on ``begin_*_by_id``: pass ``headers={"If-Match": etag}``.
* azure-core sends ``x-ms-client-request-id`` but no ``x-ms-correlation-request-id``.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.resource.resources import ResourceManagementClient

from guardrails.local.credential import LocalTokenCredential, decode_local_token
from guardrails.local.emulator import AzureEmulator
from guardrails.model.resource import lookup_type

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-000000000001"
OID = "11111111-2222-3333-4444-555555555555"
APPID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
RG = f"/subscriptions/{SUB}/resourceGroups/rg1"
ST = f"{RG}/providers/Microsoft.Storage/storageAccounts/st1"
WS = f"{RG}/providers/Microsoft.MachineLearningServices/workspaces/ws1"
CI = f"{WS}/computes/ci1"
MLREG = f"{RG}/providers/Microsoft.MachineLearningServices/registries/reg1"
V_ST = lookup_type("Microsoft.Storage/storageAccounts").api_version
V_ML = lookup_type("Microsoft.MachineLearningServices/workspaces").api_version
SAMPLES = Path("/work/shared/azure-samples/arm")


def _storage() -> dict:
    return {"id": ST, "name": "st1", "type": "Microsoft.Storage/storageAccounts", "location": "eastus",
            "kind": "StorageV2", "sku": {"name": "Standard_LRS", "tier": "Standard"}, "tags": {"owner": "ml"},
            "properties": {"publicNetworkAccess": "Enabled", "minimumTlsVersion": "TLS1_2",
                           "networkAcls": {"bypass": "AzureServices", "defaultAction": "Allow", "ipRules": []}}}


def _compute() -> dict:
    return {"id": CI, "name": "ci1", "type": "Microsoft.MachineLearningServices/workspaces/computes",
            "location": "eastus2",
            "properties": {"computeType": "ComputeInstance", "description": "some compute",
                           "properties": {"vmSize": "STANDARD_DS3_V2", "enableNodePublicIp": False}}}


def _registry() -> dict:
    return {"id": MLREG, "name": "reg1", "type": "Microsoft.MachineLearningServices/registries",
            "location": "eastus", "tags": {}, "sku": {"name": "Standard"},
            "identity": {"type": "SystemAssigned"},
            "properties": {"publicNetworkAccess": "Enabled", "regionDetails": []}}


@pytest.fixture
def emu():
    with AzureEmulator([_storage(), _compute(), _registry()]) as e:
        yield e


def client_for(emu: AzureEmulator, **cred) -> ResourceManagementClient:
    cred.setdefault("object_id", OID)
    return ResourceManagementClient(LocalTokenCredential(**cred), SUB, base_url=emu.base_url,
                                    connection_verify=emu.ca_path, retry_total=0, polling_interval=0)


@pytest.fixture
def client(emu):
    c = client_for(emu, app_id=APPID)
    yield c
    c.close()


def raw(emu: AzureEmulator, method: str, path: str, body=None, headers=None):
    """A bare HTTPS call (no SDK), for what the SDK cannot send: no token, odd bodies."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(emu.base_url + path, data=data, method=method, headers=headers or {})
    ctx = ssl.create_default_context(cafile=emu.ca_path)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


def bearer(**claims) -> dict:
    claims.setdefault("object_id", OID)
    return {"Authorization": f"Bearer {LocalTokenCredential(**claims).token}"}


# ---- credential -------------------------------------------------------------------------

def test_local_token_roundtrip():
    cred = LocalTokenCredential(object_id=OID, app_id=APPID, upn="ana@contoso.com", name="Ana")
    tok = cred.get_token("https://management.azure.com/.default", tenant_id="x", enable_cae=True)
    info = cred.get_token_info("https://management.azure.com/.default", options={"enable_cae": True})
    assert tok.token == info.token and tok.token.startswith("local.") and "=" not in tok.token
    assert info.expires_on > time.time() + 600
    assert decode_local_token(tok.token) == {"oid": OID, "appid": APPID, "upn": "ana@contoso.com",
                                             "tid": "00000000-0000-0000-0000-0000000000aa", "name": "Ana"}
    assert decode_local_token("eyJhbGciOi.not.local") is None
    assert decode_local_token("local.!!!") is None
    with cred as c:
        assert c is cred


# ---- reads ------------------------------------------------------------------------------

def test_get_returns_rest_shape_and_404_shape(emu, client):
    res = client.resources.get_by_id(ST, api_version=V_ST)
    body = res.as_dict()
    assert body == dict(res)
    assert body["properties"]["publicNetworkAccess"] == "Enabled"
    assert body["etag"] == emu.get(ST)["etag"] and body["etag"].startswith('W/"')
    assert body["tags"] == {"owner": "ml"}

    missing = ST.replace("st1", "nope")
    with pytest.raises(ResourceNotFoundError) as exc:
        client.resources.get_by_id(missing, api_version=V_ST)
    assert exc.value.error.code == "ResourceNotFound"
    assert exc.value.error.message == ("The Resource 'Microsoft.Storage/storageAccounts/nope' under resource "
                                       "group 'rg1' was not found.")
    status, headers, _ = raw(emu, "GET", ST + f"?api-version={V_ST}", headers=bearer())
    assert status == 200 and headers["ETag"] == body["etag"]


def test_rejects_missing_token_wrong_api_version_and_uncovered_type(emu, client):
    status, headers, body = raw(emu, "GET", ST + f"?api-version={V_ST}")
    assert status == 401 and body["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in headers

    with pytest.raises(HttpResponseError) as exc:
        client.resources.get_by_id(ST, api_version="2019-06-01")
    assert exc.value.status_code == 400 and exc.value.error.code in ("NoRegisteredProviderFound",
                                                                     "InvalidApiVersionParameter")
    status, _, body = raw(emu, "GET", ST, headers=bearer())
    assert status == 400 and body["error"]["code"] == "InvalidApiVersionParameter"

    # a child type is matched exactly, never by prefix of its parent
    with pytest.raises(HttpResponseError) as exc:
        client.resources.get_by_id(ST + "/blobServices/default", api_version=V_ST)
    assert exc.value.status_code == 400 and exc.value.error.code == "InvalidResourceType"


# ---- writes -----------------------------------------------------------------------------

def test_patch_merges_and_emits_event(emu, client):
    before = emu.get(ST)
    out = client.resources.begin_update_by_id(
        ST, {"properties": {"publicNetworkAccess": "Disabled", "minimumTlsVersion": None,
                            "networkAcls": {"defaultAction": "Deny"}}}, api_version=V_ST).result()
    props = out.as_dict()["properties"]
    assert props["publicNetworkAccess"] == "Disabled"
    assert "minimumTlsVersion" not in props                      # null deletes
    # Storage replaces networkAcls whole on PATCH (Azure/azure-cli#4825): the bypass and rules not sent are gone
    assert props["networkAcls"] == {"defaultAction": "Deny"}
    stored = emu.get(ST)
    assert stored["tags"] == {"owner": "ml"} and stored["sku"] == before["sku"]
    assert stored["etag"] != before["etag"] and stored == out.as_dict()

    [event] = emu.drain_events()
    assert event["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert event["subject"] == ST and event["topic"] == f"/subscriptions/{SUB}"
    data = event["data"]
    assert data["operationName"] == data["authorization"]["Action"] == "Microsoft.Storage/storageAccounts/write"
    assert data["authorization"]["Evidence"]["PrincipalId"] == OID.replace("-", "")
    assert data["authorization"]["Evidence"]["PrincipalType"] == "ServicePrincipal"
    assert data["claims"]["appid"] == APPID
    assert data["claims"]["http://schemas.microsoft.com/identity/claims/objectidentifier"] == OID
    assert data["httpRequest"] == {} and data["resourceProvider"] == "Microsoft.Storage"
    assert len(event["eventTime"].split(".")[1]) == 8                # 7 digits + Z
    assert emu.drain_events() == []


def test_put_replaces_with_if_match_and_412_on_stale_etag(emu, client):
    current = client.resources.get_by_id(ST, api_version=V_ST).as_dict()
    etag = current["etag"]
    new_body = {"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"},
                "properties": {"publicNetworkAccess": "Disabled"}}
    out = client.resources.begin_create_or_update_by_id(
        ST, new_body, api_version=V_ST, headers={"If-Match": etag}).result().as_dict()
    assert out["properties"] == {"publicNetworkAccess": "Disabled", "provisioningState": "Succeeded"}
    assert "tags" not in out and out["id"] == ST and out["name"] == "st1"
    assert emu.requests[-1]["status"] == 200

    with pytest.raises(HttpResponseError) as exc:                  # etag is stale now
        client.resources.begin_create_or_update_by_id(ST, new_body, api_version=V_ST, headers={"If-Match": etag})
    assert exc.value.status_code == 412 and exc.value.error.code == "PreconditionFailed"
    with pytest.raises(HttpResponseError) as exc:
        client.resources.begin_create_or_update_by_id(ST, new_body, api_version=V_ST, headers={"If-None-Match": "*"})
    assert exc.value.status_code == 412

    created_id = ST.replace("st1", "st2")
    client.resources.begin_create_or_update_by_id(created_id, new_body, api_version=V_ST,
                                                  headers={"If-None-Match": "*"}).result()
    assert emu.requests[-1]["status"] == 201 and emu.get(created_id)["name"] == "st2"
    assert [e["subject"] for e in emu.drain_events()] == [ST, created_id]


def test_registries_patch_only_takes_tags_identity_sku(emu, client):
    with pytest.raises(HttpResponseError) as exc:
        client.resources.begin_update_by_id(MLREG, {"properties": {"publicNetworkAccess": "Disabled"}},
                                            api_version=V_ML)
    assert exc.value.status_code == 400 and exc.value.error.code == "InvalidRequestContent"
    client.resources.begin_update_by_id(MLREG, {"tags": {"team": "a"}}, api_version=V_ML).result()
    body = client.resources.get_by_id(MLREG, api_version=V_ML).as_dict()
    body["properties"]["publicNetworkAccess"] = "Disabled"       # the product's way: full PUT with etag
    client.resources.begin_create_or_update_by_id(MLREG, body, api_version=V_ML,
                                                  headers={"If-Match": body["etag"]}).result()
    assert emu.get(MLREG)["properties"]["publicNetworkAccess"] == "Disabled"
    assert emu.get(MLREG)["tags"] == {"team": "a"}


def test_snake_case_body_rejected_but_tag_keys_exempt(emu, client):
    with pytest.raises(HttpResponseError) as exc:                  # the SDK "body trap"
        client.resources.begin_update_by_id(ST, {"public_network_access": "Disabled"}, api_version=V_ST)
    assert exc.value.status_code == 400 and exc.value.error.code == "InvalidRequestContent"
    assert "public_network_access" in exc.value.error.message
    with pytest.raises(HttpResponseError) as exc:
        client.resources.begin_update_by_id(ST, {"properties": {"network_acls": {"defaultAction": "Deny"}}},
                                            api_version=V_ST)
    assert "network_acls" in exc.value.error.message
    assert emu.get(ST)["properties"]["publicNetworkAccess"] == "Enabled"
    client.resources.begin_update_by_id(ST, {"tags": {"cost_center": "42"}}, api_version=V_ST).result()
    assert emu.get(ST)["tags"] == {"owner": "ml", "cost_center": "42"}
    status, _, body = raw(emu, "PATCH", ST + f"?api-version={V_ST}", body=b"[1]",
                          headers={**bearer(), "Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "InvalidRequestContent"


def test_compute_enable_node_public_ip_is_immutable(emu, client):
    with pytest.raises(HttpResponseError) as exc:
        client.resources.begin_update_by_id(CI, {"properties": {"properties": {"enableNodePublicIp": True}}},
                                            api_version=V_ML)
    assert exc.value.status_code == 400 and exc.value.error.code == "PropertyChangeNotAllowed"
    client.resources.begin_update_by_id(CI, {"properties": {"description": "x"}}, api_version=V_ML).result()
    put_body = {"location": "eastus2", "properties": {"computeType": "ComputeInstance",
                                                      "properties": {"vmSize": "STANDARD_DS3_V2"}}}
    client.resources.begin_create_or_update_by_id(CI, put_body, api_version=V_ML).result()
    assert emu.get(CI)["properties"]["properties"]["enableNodePublicIp"] is False   # kept when omitted


# ---- long-running operations ------------------------------------------------------------

def test_lro_applies_only_at_completion_and_poller_finishes(emu, client):
    emu.lro_seconds = 0.3
    t0 = time.monotonic()
    poller = client.resources.begin_update_by_id(ST, {"properties": {"publicNetworkAccess": "Disabled"}},
                                                 api_version=V_ST)
    assert emu.get(ST)["properties"]["publicNetworkAccess"] == "Enabled"
    assert emu.drain_events() == []
    out = poller.result()
    assert time.monotonic() - t0 >= 0.3
    assert out.as_dict()["properties"]["publicNetworkAccess"] == "Disabled"
    assert len(emu.drain_events()) == 1
    log = emu.requests
    assert log[0]["method"] == "PATCH" and log[0]["status"] == 202
    polls = [r for r in log if "/operationStatuses/" in r["path"]]
    assert polls and all(r["status"] == 200 and r["host"] == "management" for r in polls)
    assert len(polls) < 30                                          # InProgress answers are throttled
    assert log[-1]["method"] == "GET" and log[-1]["path"] == ST      # final GET of the resource

    body = dict(emu.get(ST), tags={"x": "y"})
    out = client.resources.begin_create_or_update_by_id(ST, body, api_version=V_ST).result()
    assert out.as_dict()["tags"] == {"x": "y"}
    client.resources.begin_delete_by_id(ST, api_version=V_ST).result()
    assert emu.get(ST) is None
    kinds = [e["eventType"].rsplit(".", 1)[1] for e in emu.drain_events()]
    assert kinds == ["ResourceWriteSuccess", "ResourceDeleteSuccess"]


def test_lro_completes_lazily_without_polling(emu, client):
    emu.lro_seconds = 0.2
    client.resources.begin_update_by_id(ST, {"properties": {"publicNetworkAccess": "Disabled"}},
                                        api_version=V_ST, polling=False)
    accepted = emu.requests[-1]
    assert accepted["status"] == 202
    world = {r["id"]: r for r in emu.world()["resources"]}
    assert world[ST]["properties"]["publicNetworkAccess"] == "Enabled"
    time.sleep(0.25)
    assert emu.get(ST)["properties"]["publicNetworkAccess"] == "Disabled"
    assert len(emu.drain_events()) == 1


# ---- faults -----------------------------------------------------------------------------

def test_429_fault_with_retry_after_then_success(emu, client):
    emu.add_fault(method="GET", path_regex=r"storageAccounts/st1$", status=429, retry_after=7, times=1)
    with pytest.raises(HttpResponseError) as exc:
        client.resources.get_by_id(ST, api_version=V_ST)
    assert exc.value.status_code == 429 and exc.value.error.code == "TooManyRequests"
    assert exc.value.response.headers["Retry-After"] == "7"
    assert client.resources.get_by_id(ST, api_version=V_ST)["name"] == "st1"
    assert [r["status"] for r in emu.requests] == [429, 200]


def test_delay_only_fault_and_from_world(emu):
    world = {"resources": [_storage()], "lro_seconds": 0, "later_key": {"ignored": True},
             "faults": [{"method": "GET", "path_regex": "st1", "delay_ms": 150, "times": 1},
                        {"method": "PATCH", "status": 503}]}
    with AzureEmulator.from_world(world) as other:
        c = client_for(other)
        t0 = time.monotonic()
        assert c.resources.get_by_id(ST, api_version=V_ST)["name"] == "st1"
        assert time.monotonic() - t0 >= 0.15
        with pytest.raises(HttpResponseError) as exc:
            c.resources.begin_update_by_id(ST, {"tags": {}}, api_version=V_ST)
        assert exc.value.status_code == 503 and exc.value.error.code == "ServiceUnavailable"
        assert [r["status"] for r in other.requests] == [200, 503]
        assert other.get(ST)["etag"]                                   # assigned when seeded


# ---- ids --------------------------------------------------------------------------------

def test_non_ascii_resource_group_round_trip(emu, client):
    rid = f"/subscriptions/{SUB}/resourceGroups/rg-müller-東京/providers/Microsoft.Storage/storageAccounts/stü"
    body = {"location": "eastus", "properties": {"publicNetworkAccess": "Enabled"}}
    client.resources.begin_create_or_update_by_id(rid, body, api_version=V_ST).result()
    assert emu.get(rid)["id"] == rid and emu.get(rid.upper())["id"] == rid
    # unquoted and pre-quoted ids reach the same resource (the transport quotes; pre-quoted is kept)
    assert client.resources.get_by_id(rid, api_version=V_ST)["id"] == rid
    quoted = urllib.parse.quote(rid, safe="/")
    client.resources.begin_update_by_id(quoted, {"properties": {"publicNetworkAccess": "Disabled"}},
                                        api_version=V_ST).result()
    assert emu.get(rid)["properties"]["publicNetworkAccess"] == "Disabled"
    assert {r["path"] for r in emu.requests} == {rid}
    assert [e["subject"] for e in emu.drain_events()] == [rid, rid]


def test_lower_case_provider_segment_matches_stored_id(emu, client):
    lower = ST.replace("Microsoft.Storage/storageAccounts", "microsoft.storage/storageaccounts")
    assert client.resources.get_by_id(lower, api_version=V_ST)["id"] == ST
    client.resources.begin_update_by_id(lower, {"properties": {"publicNetworkAccess": "Disabled"}},
                                        api_version=V_ST).result()
    ids = [r["id"] for r in emu.world()["resources"]]
    assert ids.count(ST) == 1 and len(ids) == 3
    assert emu.drain_events()[0]["subject"] == ST


# ---- events and request log -------------------------------------------------------------

def test_events_carry_user_caller_and_correlation_id(emu):
    c = client_for(emu, object_id="99999999-8888-7777-6666-555555555555", upn="ana@contoso.com", name="Ana")
    c.resources.begin_update_by_id(ST, {"tags": {"a": "b"}}, api_version=V_ST,
                                   headers={"x-ms-correlation-request-id": "corr-1"}).result()
    c.resources.begin_delete_by_id(CI, api_version=V_ML).result()
    c.resources.begin_delete_by_id(CI, api_version=V_ML).result()       # gone: 204, no event
    write, delete = emu.drain_events()
    assert write["data"]["correlationId"] == "corr-1"
    assert write["data"]["authorization"]["Evidence"]["PrincipalType"] == "User"
    claims = write["data"]["claims"]
    assert claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] == "ana@contoso.com"
    assert claims["name"] == "Ana" and "appid" not in claims
    assert delete["eventType"] == "Microsoft.Resources.ResourceDeleteSuccess"
    assert delete["data"]["operationName"] == "Microsoft.MachineLearningServices/workspaces/computes/delete"
    assert delete["subject"] == CI
    assert [r["status"] for r in emu.requests] == [200, 200, 204]


def test_request_log_entries(emu, client):
    raw(emu, "GET", ST + f"?api-version={V_ST}")
    client.resources.begin_update_by_id(ST, {"tags": {"k": "v"}}, api_version=V_ST).result()
    first, second = emu.requests
    assert first == {"method": "GET", "host": "management", "path": ST, "query": {"api-version": V_ST},
                     "status": 401, "caller": None, "correlation_id": None, "body": None}
    assert second == {"method": "PATCH", "host": "management", "path": ST, "query": {"api-version": V_ST},
                      "status": 200, "caller": OID, "correlation_id": None, "body": {"tags": {"k": "v"}}}
    assert raw(emu, "GET", ST + f"?api-version={V_ST}", headers=bearer(app_id=APPID))[0] == 200
    assert emu.requests[-1]["caller"] == OID                            # oid wins over appid
    emu.clear_requests()
    assert emu.requests == []


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared ARM samples not present")
def test_real_sample_bodies_round_trip_through_put(emu, client):
    for name in ("Microsoft.Storage_storageAccounts.GET.2025-06-01.json",
                 "Microsoft.KeyVault_vaults.GET.2025-05-01.json",
                 "Microsoft.MachineLearningServices_workspaces.GET.2025-09-01.json",
                 "Microsoft.ContainerRegistry_registries.GET.2025-04-01.json"):
        sample = json.loads((SAMPLES / name).read_text())
        rid = f"{RG}/providers/{sample['type']}/{sample['name']}"
        emu.put(dict(sample, id=rid))
        version = lookup_type(sample["type"]).api_version
        body = client.resources.get_by_id(rid, api_version=version).as_dict()
        client.resources.begin_create_or_update_by_id(rid, body, api_version=version,
                                                      headers={"If-Match": body["etag"]}).result()
        assert emu.get(rid)["properties"]["provisioningState"] == "Succeeded"


def test_resource_graph_answers_the_products_query_shape_and_refuses_any_other(emu):
    path = "/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01"
    query = ("Resources | where type in~ ('microsoft.storage/storageaccounts') "
             "| project id, name, type, properties")
    status, _h, body = raw(emu, "POST", path, {"subscriptions": [SUB], "query": query,
                                               "options": {"$top": 1, "resultFormat": "objectArray"}}, bearer())
    assert status == 200 and body["totalRecords"] == 1 and body["data"][0]["id"] == ST
    assert set(body["data"][0]) == {"id", "name", "type", "properties"} and "$skipToken" not in body
    other = {"subscriptions": [SUB], "query": "Resources | take 5"}
    status, _h, body = raw(emu, "POST", path, other, bearer())
    assert status == 400 and body["error"]["code"] == "BadRequest"
    status, _h, body = raw(emu, "POST", path, {"subscriptions": ["00000000-0000-0000-0000-00000000beef"],
                                               "query": query}, bearer())
    assert status == 200 and body["data"] == []                    # another subscription's rows: none
    status, _h, _b = raw(emu, "POST", path, {"subscriptions": [SUB], "query": query})
    assert status == 401
