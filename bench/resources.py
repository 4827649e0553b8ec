"""Seeded, ARM-shaped resources of the five covered types, as ARM's GET returns them.

Property sets follow real GET responses (storage 2025-06-01, Key Vault 2025-05-01, ACR
2025-04-01, AML 2025-09-01): provisioning state, endpoints, network rule sets, encryption,
system data, identities. The guarded properties take the values seen in the wild: the enum in
its usual and lower-case spelling, ``SecuredByPerimeter``, explicit ``null`` (booleans too), absent,
and now and then a boolean sent as a string. Every rule is broken by some resources and kept by others. About half of the resources violate at least one rule.

Pure standard library: the Cloud Custodian worker (another virtual environment) never imports
this; it reads the generated JSON.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

WORKSPACES = "Microsoft.MachineLearningServices/workspaces"
ML_REGISTRIES = "Microsoft.MachineLearningServices/registries"
STORAGE = "Microsoft.Storage/storageAccounts"
VAULTS = "Microsoft.KeyVault/vaults"
ACR = "Microsoft.ContainerRegistry/registries"
TYPES = (WORKSPACES, ML_REGISTRIES, STORAGE, VAULTS, ACR)

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
LOCATIONS = ("eastus", "eastus2", "westeurope", "northeurope", "uksouth", "swedencentral")
_ABSENT = object()   # "leave the key out"

# (value, weight) for each guarded property; _ABSENT drops the key, None sends JSON null
PNA = (("Disabled", 48), ("disabled", 4), ("Enabled", 26), ("enabled", 2), (None, 5), (_ABSENT, 15))
PNA_PERIMETER = (("Disabled", 46), ("disabled", 3), ("Enabled", 24), ("SecuredByPerimeter", 4), (None, 8), (_ABSENT, 15))
BOOL_FALSE_WANTED = ((False, 53), (True, 22), (_ABSENT, 17), (None, 3), ("false", 3), ("True", 2))   # default false
BOOL_TRUE_WANTED = ((True, 60), (False, 18), (_ABSENT, 15), (None, 2), ("true", 3), ("False", 2))    # default false
ANON_PULL = ((False, 80), (True, 8), (_ABSENT, 8), (None, 2), ("true", 2))      # default false, rarely on


def _pick(rng: random.Random, choices: tuple[tuple[Any, int], ...]) -> Any:
    total = sum(w for _v, w in choices)
    x = rng.random() * total
    for v, w in choices:
        x -= w
        if x < 0:
            return v
    return choices[-1][0]


def _put(props: dict, key: str, value: Any) -> None:
    if value is not _ABSENT:
        props[key] = value


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _time(rng: random.Random) -> str:
    return (f"202{rng.randint(2, 6)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 9999999):07d}Z")


def _system_data(rng: random.Random) -> dict:
    who = rng.choice(("alice@contoso.com", "bob@contoso.com", "ml-deployer", "terraform-sp"))
    kind = "User" if "@" in who else "Application"
    return {"createdBy": who, "createdByType": kind, "createdAt": _time(rng),
            "lastModifiedBy": who, "lastModifiedByType": kind, "lastModifiedAt": _time(rng)}


def _tags(rng: random.Random, i: int) -> dict:
    tags = {"owner": rng.choice(("ml-platform@contoso.com", "data-science@contoso.com", "fraud-ml@contoso.com")),
            "environment": rng.choice(("prod", "prod", "staging", "dev")),
            "costCenter": f"CC-{rng.randint(1000, 9999)}"}
    if i % 3 == 0:
        tags["project"] = rng.choice(("churn", "fraud", "forecast", "recsys", "llm-eval"))
    return tags


def _base(rng: random.Random, i: int, sub: str, rg: str, ns: str, type_: str, name: str) -> dict:
    rid = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type_}/{name}"
    return {"id": rid, "name": name, "type": f"{ns}/{type_}", "location": rng.choice(LOCATIONS),
            "tags": _tags(rng, i), "etag": f"\"{rng.getrandbits(64):016x}\"", "systemData": _system_data(rng)}


def _private_endpoints(rng: random.Random, rid: str) -> list:
    if rng.random() < 0.6:
        return []
    pe = f"{rid.split('/providers/')[0]}/providers/Microsoft.Network/privateEndpoints/pe-{rng.getrandbits(24):06x}"
    return [{"id": f"{rid}/privateEndpointConnections/{pe.rsplit('/', 1)[1]}",
             "properties": {"privateEndpoint": {"id": pe},
                            "privateLinkServiceConnectionState": {"status": "Approved", "description": "Auto-Approved",
                                                                  "actionsRequired": "None"},
                            "provisioningState": "Succeeded"}}]


def storage_account(rng: random.Random, i: int, sub: str, rg: str) -> dict:
    name = f"st{i:06d}{rng.getrandbits(20):05x}"
    r = _base(rng, i, sub, rg, "Microsoft.Storage", "storageAccounts", name)
    r.pop("etag")   # storage accounts carry no etag
    r.update(kind="StorageV2", sku={"name": rng.choice(("Standard_LRS", "Standard_ZRS", "Standard_GRS")),
                                    "tier": "Standard"})
    ep = f"https://{name}"
    t = _time(rng)
    props: dict[str, Any] = {
        "dnsEndpointType": "Standard", "defaultToOAuthAuthentication": rng.random() < 0.5,
        "keyCreationTime": {"key1": t, "key2": t},
        "privateEndpointConnections": _private_endpoints(rng, r["id"]),
        "minimumTlsVersion": rng.choice(("TLS1_2", "TLS1_2", "TLS1_0")),
        "allowSharedKeyAccess": rng.random() < 0.7, "isHnsEnabled": rng.random() < 0.3,
        "networkAcls": {"bypass": "AzureServices", "virtualNetworkRules": [], "ipRules": [],
                        "defaultAction": rng.choice(("Allow", "Deny"))},
        "supportsHttpsTrafficOnly": True,
        "encryption": {"requireInfrastructureEncryption": False,
                       "services": {"file": {"keyType": "Account", "enabled": True, "lastEnabledTime": t},
                                    "blob": {"keyType": "Account", "enabled": True, "lastEnabledTime": t}},
                       "keySource": "Microsoft.Storage"},
        "accessTier": "Hot", "provisioningState": "Succeeded", "creationTime": t,
        "primaryEndpoints": {s: f"{ep}.{s}.core.windows.net/" for s in ("dfs", "web", "blob", "queue", "table", "file")},
        "primaryLocation": r["location"], "statusOfPrimary": "available",
    }
    _put(props, "allowBlobPublicAccess", _pick(rng, BOOL_FALSE_WANTED))
    _put(props, "publicNetworkAccess", _pick(rng, PNA_PERIMETER))
    r["properties"] = props
    return r


def key_vault(rng: random.Random, i: int, sub: str, rg: str) -> dict:
    name = f"kv-{i:06d}-{rng.getrandbits(16):04x}"
    r = _base(rng, i, sub, rg, "Microsoft.KeyVault", "vaults", name)
    r.pop("etag")
    props: dict[str, Any] = {
        "sku": {"family": "A", "name": rng.choice(("standard", "premium"))}, "tenantId": TENANT,
        "accessPolicies": [{"tenantId": TENANT, "objectId": _guid(rng),
                            "permissions": {"keys": ["get", "list"], "secrets": ["get", "list", "set"],
                                            "certificates": []}} for _ in range(rng.randint(0, 3))],
        "enabledForDeployment": False, "enabledForDiskEncryption": rng.random() < 0.2,
        "enabledForTemplateDeployment": False, "enableSoftDelete": True, "softDeleteRetentionInDays": 90,
        "vaultUri": f"https://{name}.vault.azure.net/", "provisioningState": "Succeeded",
        "networkAcls": {"bypass": "AzureServices", "defaultAction": rng.choice(("Allow", "Deny")),
                        "ipRules": [], "virtualNetworkRules": []},
        "privateEndpointConnections": _private_endpoints(rng, r["id"]),
    }
    if rng.random() < 0.5:
        props["enablePurgeProtection"] = True
    _put(props, "enableRbacAuthorization", _pick(rng, BOOL_TRUE_WANTED))
    _put(props, "publicNetworkAccess", _pick(rng, PNA_PERIMETER))
    r["properties"] = props
    return r


def container_registry(rng: random.Random, i: int, sub: str, rg: str) -> dict:
    name = f"acr{i:06d}{rng.getrandbits(20):05x}"
    r = _base(rng, i, sub, rg, "Microsoft.ContainerRegistry", "registries", name)
    r.pop("etag")
    r["sku"] = {"name": "Premium", "tier": "Premium"}
    props: dict[str, Any] = {
        "loginServer": f"{name}.azurecr.io", "creationDate": _time(rng), "provisioningState": "Succeeded",
        "networkRuleSet": {"defaultAction": rng.choice(("Allow", "Deny")), "ipRules": []},
        "policies": {"quarantinePolicy": {"status": "disabled"},
                     "trustPolicy": {"type": "Notary", "status": "disabled"},
                     "retentionPolicy": {"days": 7, "lastUpdatedTime": _time(rng), "status": "disabled"},
                     "exportPolicy": {"status": "enabled"}, "azureADAuthenticationAsArmPolicy": {"status": "enabled"}},
        "encryption": {"status": "disabled"}, "dataEndpointEnabled": False, "dataEndpointHostNames": [],
        "privateEndpointConnections": _private_endpoints(rng, r["id"]),
        "networkRuleBypassOptions": "AzureServices", "zoneRedundancy": "Disabled",
    }
    _put(props, "anonymousPullEnabled", _pick(rng, ANON_PULL))
    _put(props, "adminUserEnabled", _pick(rng, BOOL_FALSE_WANTED))
    _put(props, "publicNetworkAccess", _pick(rng, PNA))
    r["properties"] = props
    return r


def workspace(rng: random.Random, i: int, sub: str, rg: str) -> dict:
    name = f"mlw-{i:06d}-{rng.getrandbits(16):04x}"
    r = _base(rng, i, sub, rg, "Microsoft.MachineLearningServices", "workspaces", name)
    r.pop("etag")
    r.update(kind="Default", identity={"type": "SystemAssigned", "principalId": _guid(rng), "tenantId": TENANT},
             sku={"name": "Basic", "tier": "Basic"})
    prefix = f"/subscriptions/{sub}/resourceGroups/{rg}/providers"
    props: dict[str, Any] = {
        "friendlyName": name, "description": "", "hbiWorkspace": False, "provisioningState": "Succeeded",
        "storageAccount": f"{prefix}/Microsoft.Storage/storageAccounts/st{name.replace('-', '')[:18]}",
        "keyVault": f"{prefix}/Microsoft.KeyVault/vaults/kv-{name[4:]}",
        "applicationInsights": f"{prefix}/Microsoft.Insights/components/appi-{name[4:]}",
        "workspaceId": _guid(rng), "discoveryUrl": f"https://{r['location']}.api.azureml.ms/discovery",
        "privateEndpointConnections": _private_endpoints(rng, r["id"]),
        "v1LegacyMode": False, "managedNetwork": {"isolationMode": rng.choice(("Disabled", "AllowInternetOutbound"))},
        "enableDataIsolation": False, "systemDatastoresAuthMode": "accessKey",
    }
    if rng.random() < 0.7:
        props["containerRegistry"] = f"{prefix}/Microsoft.ContainerRegistry/registries/acr{name.replace('-', '')[3:15]}"
    _put(props, "publicNetworkAccess", _pick(rng, PNA))
    r["properties"] = props
    return r


def ml_registry(rng: random.Random, i: int, sub: str, rg: str) -> dict:
    name = f"mlreg-{i:06d}-{rng.getrandbits(16):04x}"
    r = _base(rng, i, sub, rg, "Microsoft.MachineLearningServices", "registries", name)
    r.update(kind="Registry", identity={"type": "SystemAssigned", "principalId": _guid(rng), "tenantId": TENANT},
             sku={"name": "Basic", "tier": "Basic"})
    mrg = f"/subscriptions/{sub}/resourceGroups/azureml-rg-{name}_{_guid(rng)[:8]}"
    props: dict[str, Any] = {
        "discoveryUrl": f"https://{r['location']}.api.azureml.ms/registrymanagement/v1.0/registries/{name}/discovery",
        "intellectualPropertyPublisher": "contoso", "managedResourceGroup": {"resourceId": mrg},
        "mlFlowRegistryUri": f"azureml://{r['location']}.api.azureml.ms/mlflow/v1.0{r['id']}",
        "regionDetails": [{"location": r["location"],
                           "storageAccountDetails": [{"systemCreatedStorageAccount": {
                               "storageAccountType": "Standard_LRS", "storageAccountHnsEnabled": False}}],
                           "acrDetails": [{"systemCreatedAcrAccount": {"acrAccountSku": "Premium"}}]}],
        "registryPrivateEndpointConnections": [],
    }
    _put(props, "publicNetworkAccess", _pick(rng, PNA))
    r["properties"] = props
    return r


BUILDERS = {WORKSPACES: workspace, ML_REGISTRIES: ml_registry, STORAGE: storage_account,
            VAULTS: key_vault, ACR: container_registry}
# share of each type in a generated estate: storage and vaults dominate an ML platform
MIX = ((STORAGE, 35), (VAULTS, 25), (ACR, 15), (WORKSPACES, 15), (ML_REGISTRIES, 10))


def generate(n: int, *, seed: int = 20261124) -> list[dict]:
    """``n`` resources over 4 subscriptions x 12 resource groups, reproducible from ``seed``."""
    rng = random.Random(seed)
    subs = [_guid(rng) for _ in range(4)]
    rgs = [f"rg-{team}-{env}" for team in ("ml", "data", "fraud", "llm") for env in ("prod", "staging", "dev")]
    out = []
    for i in range(n):
        type_ = _pick(rng, MIX)
        out.append(BUILDERS[type_](rng, i, rng.choice(subs), rng.choice(rgs)))
    return out


def compliant(type_: str, rng: random.Random, i: int, sub: str, rg: str) -> dict:
    """A resource of ``type_`` that satisfies the baseline (for pipeline benchmarks)."""
    r = BUILDERS[type_](rng, i, sub, rg)
    p = r["properties"]
    p["publicNetworkAccess"] = "Disabled"
    if type_ == STORAGE:
        p["allowBlobPublicAccess"] = False
    elif type_ == VAULTS:
        p["enableRbacAuthorization"] = True
    elif type_ == ACR:
        p["adminUserEnabled"] = False
        p["anonymousPullEnabled"] = False
    return r


def violating(type_: str, rng: random.Random, i: int, sub: str, rg: str) -> dict:
    """A resource of ``type_`` whose public access (and storage blob access, ACR admin user) is
    violated; notify-only rules hold, and ACR anonymous pull stays off, as in every recorded run."""
    r = compliant(type_, rng, i, sub, rg)
    p = r["properties"]
    p["publicNetworkAccess"] = "Enabled"
    if type_ == STORAGE:
        p["allowBlobPublicAccess"] = True
    elif type_ == ACR:
        p["adminUserEnabled"] = True
    return r
