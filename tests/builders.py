"""Builders for realistic ARM resources and Event Grid deliveries used across test tiers."""

from __future__ import annotations

import copy
import itertools
import uuid
from datetime import datetime, timezone
from typing import Any

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RG = "rg-ml-prod"
ALICE = "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
ALICE_APP = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
GUARDRAIL_OID = "6a1f5c3e-0d7b-4a8e-9c2f-51e0d1a9b7c4"   # settings.DEFAULT_LOCAL_OBJECT_ID

_counter = itertools.count(1)


def rg_id(rg: str = RG, sub: str = SUB) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def rid(ns: str, type_: str, name: str, *, rg: str = RG, sub: str = SUB) -> str:
    return f"{rg_id(rg, sub)}/providers/{ns}/{type_}/{name}"


TAGS = {"owner": "ml-platform@contoso.com", "environment": "prod"}


def workspace(name="mlw-prod", *, pna: str | None = "Enabled", rg=RG, tags=None) -> dict:
    props: dict[str, Any] = {"friendlyName": name, "provisioningState": "Succeeded"}
    if pna is not None:
        props["publicNetworkAccess"] = pna
    return {"id": rid("Microsoft.MachineLearningServices", "workspaces", name, rg=rg), "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces", "location": "eastus",
            "tags": dict(TAGS if tags is None else tags), "identity": {"type": "SystemAssigned"},
            "sku": {"name": "Basic", "tier": "Basic"}, "properties": props}


def ml_registry(name="mlreg-shared", *, pna: str | None = "Enabled", rg=RG) -> dict:
    props: dict[str, Any] = {"intellectualPropertyPublisher": "contoso",
                             "regionDetails": [{"location": "eastus"}]}
    if pna is not None:
        props["publicNetworkAccess"] = pna
    return {"id": rid("Microsoft.MachineLearningServices", "registries", name, rg=rg), "name": name,
            "type": "Microsoft.MachineLearningServices/registries", "location": "eastus", "kind": "Registry",
            "tags": dict(TAGS), "identity": {"type": "SystemAssigned"},
            "sku": {"name": "Basic", "tier": "Basic"}, "properties": props}


def storage(name="stmlprod", *, pna: str | None = "Enabled", blob: bool | None = True, rg=RG, tags=None) -> dict:
    props: dict[str, Any] = {"minimumTlsVersion": "TLS1_2", "supportsHttpsTrafficOnly": True,
                             "provisioningState": "Succeeded"}
    if pna is not None:
        props["publicNetworkAccess"] = pna
    if blob is not None:
        props["allowBlobPublicAccess"] = blob
    return {"id": rid("Microsoft.Storage", "storageAccounts", name, rg=rg), "name": name,
            "type": "Microsoft.Storage/storageAccounts", "location": "eastus", "kind": "StorageV2",
            "tags": dict(TAGS if tags is None else tags), "sku": {"name": "Standard_LRS", "tier": "Standard"},
            "properties": props}


def key_vault(name="kv-ml-prod", *, pna: str | None = "Enabled", rbac: bool | None = True, rg=RG) -> dict:
    props: dict[str, Any] = {"sku": {"family": "A", "name": "standard"}, "tenantId": TENANT,
                             "accessPolicies": [], "enableSoftDelete": True, "provisioningState": "Succeeded"}
    if pna is not None:
        props["publicNetworkAccess"] = pna
    if rbac is not None:
        props["enableRbacAuthorization"] = rbac
    return {"id": rid("Microsoft.KeyVault", "vaults", name, rg=rg), "name": name,
            "type": "Microsoft.KeyVault/vaults", "location": "eastus", "tags": dict(TAGS), "properties": props}


def container_registry(name="acrmlprod", *, pna: str | None = "Enabled", admin: bool | None = True, rg=RG,
                       sku: str = "Premium") -> dict:
    props: dict[str, Any] = {"loginServer": f"{name}.azurecr.io", "provisioningState": "Succeeded"}
    if pna is not None:
        props["publicNetworkAccess"] = pna
    if admin is not None:
        props["adminUserEnabled"] = admin
    return {"id": rid("Microsoft.ContainerRegistry", "registries", name, rg=rg), "name": name,
            "type": "Microsoft.ContainerRegistry/registries", "location": "eastus", "tags": dict(TAGS),
            "sku": {"name": sku, "tier": sku}, "properties": props}


def compute(name="cpu-cluster", *, workspace_name="mlw-prod", node_public_ip: bool | None = True, rg=RG) -> dict:
    inner: dict[str, Any] = {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0}}
    if node_public_ip is not None:
        inner["enableNodePublicIp"] = node_public_ip
    return {"id": rid("Microsoft.MachineLearningServices", "workspaces", workspace_name, rg=rg) + f"/computes/{name}",
            "name": name, "type": "Microsoft.MachineLearningServices/workspaces/computes", "location": "eastus",
            "tags": dict(TAGS), "properties": {"computeType": "AmlCompute", "provisioningState": "Succeeded",
                                               "properties": inner}}


def storage_private_policy(*, version: int = 5, max_actions: int = 50, window_seconds: int = 3600) -> str:
    """The storage-private policy text (public network access disabled) with its own breaker."""
    return f"""\
id: storage-private
version: {version}
description: storage private, at most {max_actions} fixes in {window_seconds} s per subscription (test variant)
mode: enforce
selector: {{resource_types: [Microsoft.Storage/storageAccounts]}}
breaker: {{max_actions: {max_actions}, window_seconds: {window_seconds}}}
rules:
  - id: public-network-access-disabled
    property: properties.publicNetworkAccess
    expect: {{equals: Disabled}}
    action: {{type: set-property, value: Disabled}}
"""


def claims(oid: str = ALICE, *, app_id: str | None = ALICE_APP, upn: str | None = "alice@contoso.com") -> dict:
    c = {"aud": "https://management.core.windows.net/", "iss": f"https://sts.windows.net/{TENANT}/",
         "http://schemas.microsoft.com/identity/claims/objectidentifier": oid,
         "http://schemas.microsoft.com/identity/claims/tenantid": TENANT, "ver": "1.0"}
    if app_id:
        c["appid"] = app_id
    if upn:
        c["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] = upn
    return c


def write_event(resource_id: str, resource_type: str | None = None, *, event_type="Microsoft.Resources.ResourceWriteSuccess",
                event_id: str | None = None, actor: dict | None = None, op: str = "write") -> dict:
    n = next(_counter)
    rtype = resource_type or _type_of(resource_id)
    ns = rtype.split("/")[0]
    return {
        "id": event_id or str(uuid.uuid4()), "topic": f"/subscriptions/{SUB}", "subject": resource_id,
        "eventType": event_type, "eventTime": _now_iso(),
        "dataVersion": "2", "metadataVersion": "1",
        "data": {
            "authorization": {"Scope": resource_id, "Action": f"{rtype}/{op}",
                              "Evidence": {"Role": "Contributor", "PrincipalId": ALICE.replace("-", ""),
                                           "PrincipalType": "User"}},
            "claims": actor or claims(), "correlationId": str(uuid.uuid4()), "httpRequest": {},
            "resourceProvider": ns, "resourceUri": resource_id, "operationName": f"{rtype}/{op}",
            "status": "Succeeded", "subscriptionId": SUB, "tenantId": TENANT,
        },
    }


def cloud_event(resource_id: str, **kw) -> dict:
    eg = write_event(resource_id, **kw)
    return {"specversion": "1.0", "id": eg["id"], "source": eg["topic"], "subject": eg["subject"],
            "type": eg["eventType"], "time": eg["eventTime"], "data": eg["data"]}


def with_data(event: dict, **changes) -> dict:
    e = copy.deepcopy(event)
    for k, v in changes.items():
        e["data"][k] = v
    return e


def _now_iso() -> str:
    # deliveries carry the time ARM reported the change: now, as in a live subscription
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _type_of(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    i = [p.lower() for p in parts].index("providers")
    ns, rest = parts[i + 1], parts[i + 2:]
    return "/".join([ns] + rest[0::2])


# ---- role assignments ------------------------------------------------------------------------
ROLE_IDS = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
}
BOB = "2b7e151e-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
BREAK_GLASS = "b1eaa000-0000-4000-8000-00000000b1ea"
WORKSPACE_MI = "5d0c3b2a-1e4f-4a6b-9c8d-7e6f5a4b3c2d"
DS_GROUP = "d5000000-0000-4000-8000-0000000000d5"


def role_assignment(role: str, principal_id: str, *, scope: str | None = None, principal_type: str = "User",
                    name: str | None = None, condition: str | None = None, role_id: str | None = None) -> dict:
    scope = scope or f"/subscriptions/{SUB}"
    name = name or str(uuid.uuid4())
    guid = role_id or ROLE_IDS[role]
    props = {"roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
             "principalId": principal_id, "principalType": principal_type, "scope": scope,
             "createdOn": "2026-11-24T09:00:00.0000000Z", "updatedOn": "2026-11-24T09:00:00.0000000Z",
             "createdBy": ALICE, "updatedBy": ALICE}
    if condition:
        props["condition"] = condition
        props["conditionVersion"] = "2.0"
    return {"id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
            "name": name, "type": "Microsoft.Authorization/roleAssignments", "properties": props}


def role_event(assignment: dict, **kw) -> dict:
    return write_event(assignment["id"], "Microsoft.Authorization/roleAssignments", **kw)


RBAC_ADMIN_CONDITION = (
    "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
    "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
    "{acdd72a7-3385-48ef-bd42-f606fba81ae7, ba92f5b4-2d11-453d-a403-e96b0029c9fe})) AND "
    "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
    "(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
    "{acdd72a7-3385-48ef-bd42-f606fba81ae7, ba92f5b4-2d11-453d-a403-e96b0029c9fe}))"
)
