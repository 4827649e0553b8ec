"""Generate the data block of ``guardrails/model/known_properties.py``.

The block lists, per covered ARM resource type, every dotted REST property path (camelCase, as
ARM spells it) to a depth of 4 segments, plus the "open" prefixes below which any key is valid.

Sources
-------
Storage, Key Vault and Container Registry: the TypeSpec-generated Python SDK models, read with
``ast`` (nothing is imported). A field is declared like
``network_acls: Optional["_models.NetworkRuleSet"] = rest_field(name="networkAcls", ...)``; the
REST name is ``name=`` or else the Python name. To fetch them again::

    mkdir -p /tmp/mgmtpk/x && cd /tmp/mgmtpk
    pip download --no-deps azure-mgmt-storage==25.3.0 azure-mgmt-keyvault==14.1.0 \\
        azure-mgmt-containerregistry==15.0.0
    for w in *.whl; do unzip -q -o "$w" -d "x/$(basename "$w" .whl | cut -d- -f1-2)"; done
    python tools/gen_known_properties.py --wheels /tmp/mgmtpk/x --write

(The wheel directories are found by glob, ``azure_mgmt_storage-*`` etc., so other versions work;
update ``SDK_SOURCES`` and the header of known_properties.py when the versions change.)

Machine Learning (workspaces, registries, computes): the Azure REST API specs, swagger 2.0,
``specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/
stable/2025-09-01/`` (workspaceRP.json, registries.json, machineLearningServices.json) and the ARM
common types v3 (types.json, managedidentity.json). There was no way to download the files here,
so ``ML_SPEC`` below is a hand transcription of the definitions the three resources reach (names,
``$ref``s, ``allOf``, discriminators, ``additionalProperties``, array/object/scalar types only;
descriptions, enums and formats dropped). ``--spec-dir DIR`` instead reads those swagger files from
a checkout of the specs repository (DIR = the 2025-09-01 folder; the common types are taken
from ``DIR/../../../../../common-types/resource-management/v3/``), so the transcription can be
checked against the real files::

    python tools/gen_known_properties.py --spec-dir .../stable/2025-09-01 --check

Rules of the walk (both sources): an object is followed while the path has fewer than 4
segments; an array-typed field is a leaf (a policy cannot index an array); a map
(``dict[str, X]``, ``additionalProperties``) or a free-form object (``type: object`` without
properties, ``Any``) is an open prefix; an object that still has members at depth 4 is a
"depth-limited" prefix (its members are not listed, so nothing below it can be judged); a
polymorphic (discriminated) model contributes the members of every subtype. Every path is also
classified: an array in every declaration is listed in ``arrays``, an object (a model, a map, a
free-form ``type: object``) in every declaration in ``objects``; the loader refuses a comparison
(``equals``, ``in`` ...) on either, since a scalar operand never equals a container. A Python
``Any`` is neither (it may hold a scalar).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

MAX_DEPTH = 4
ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "guardrails" / "model" / "known_properties.py"
BEGIN, END = "# BEGIN GENERATED (tools/gen_known_properties.py)", "# END GENERATED"


class Found:
    """Paths, open prefixes and depth-limited prefixes of one resource type, and which paths are
    containers: ``objects`` (a model, a map or a free-form object in every declaration of the
    path) and ``arrays`` (an array in every declaration). A path some declaration gives a scalar
    type (or ``Any``) is in neither: a scalar comparison may match it."""

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.open: set[str] = set()
        self.deep: set[str] = set()
        self.objects: set[str] = set()
        self.arrays: set[str] = set()

    def shape(self, path: str, kinds: list[str], containers: tuple[str, ...]) -> None:
        """Record ``path`` as an array or an object when every declaration (``kinds``) is one."""
        if kinds and all(k == "array" for k in kinds):
            self.arrays.add(path)
        elif kinds and all(k in containers for k in kinds):
            self.objects.add(path)


# ---------------------------------------------------------------------------------------------
# SDK models (TypeSpec-generated, azure-mgmt-* >= 2025)

SDK_SOURCES = {
    # type key: (wheel directory glob, package, models module, root model class)
    "microsoft.storage/storageaccounts": ("azure_mgmt_storage-*", "storage", "StorageAccount"),
    "microsoft.keyvault/vaults": ("azure_mgmt_keyvault-*", "keyvault", "Vault"),
    "microsoft.containerregistry/registries": ("azure_mgmt_containerregistry-*", "containerregistry", "Registry"),
}


class SdkModels:
    """The model classes of one ``models/_models.py``, parsed with ``ast``."""

    def __init__(self, path: Path) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        self.bases: dict[str, list[str]] = {}
        self.fields: dict[str, list[tuple[str, ast.expr]]] = {}  # class -> [(rest name, annotation)]
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            self.bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
            fields = []
            for stmt in node.body:
                if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                        and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name)
                        and stmt.value.func.id in ("rest_field", "rest_discriminator")):
                    rest = stmt.target.id
                    for kw in stmt.value.keywords:
                        if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                            rest = kw.value.value
                    fields.append((rest, stmt.annotation))
            self.fields[node.name] = fields
        self.subclasses: dict[str, list[str]] = {}
        for cls, bases in self.bases.items():
            for b in bases:
                self.subclasses.setdefault(b, []).append(cls)

    def all_fields(self, cls: str) -> dict[str, list[ast.expr]]:
        """Fields of the class, its model bases and (polymorphism) every subclass; a name two
        subclasses declare (with different models) keeps both annotations."""
        out: dict[str, list[ast.expr]] = {}
        seen: set[str] = set()

        def up(c: str) -> None:
            if c in seen or c not in self.fields:
                return
            seen.add(c)
            for b in self.bases.get(c, []):
                up(b)
            for name, ann in self.fields[c]:
                out.setdefault(name, []).append(ann)

        def down(c: str) -> None:
            for s in self.subclasses.get(c, []):
                up(s)
                down(s)

        up(cls)
        down(cls)
        return out

    def kind(self, ann: ast.expr) -> tuple[str, str | None]:
        """("model", class) | ("array", None) | ("map", None) | ("open", None) | ("leaf", None)."""
        if isinstance(ann, ast.Constant) and isinstance(ann.value, str):  # "_models.X" forward ref
            return self.kind(ast.parse(ann.value, mode="eval").body)
        if isinstance(ann, ast.Attribute):  # _models.X (an enum or a model) / datetime.datetime
            return ("model", ann.attr) if ann.attr in self.fields else ("leaf", None)
        if isinstance(ann, ast.Name):
            if ann.id == "Any":
                return ("open", None)
            return ("model", ann.id) if ann.id in self.fields else ("leaf", None)
        if isinstance(ann, ast.Subscript):
            head = ann.value.id if isinstance(ann.value, ast.Name) else getattr(ann.value, "attr", "")
            if head in ("list", "List"):
                return ("array", None)
            if head in ("dict", "Dict"):
                return ("map", None)
            if head == "Literal":
                return ("leaf", None)
            if head in ("Optional", "Union"):
                args = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
                kinds = [self.kind(a) for a in args]
                for k in ("model", "map", "open", "array"):
                    for kk in kinds:
                        if kk[0] == k:
                            return kk
                return ("leaf", None)
        return ("leaf", None)

    def walk(self, root: str) -> Found:
        found = Found()

        def visit(classes: list[str], prefix: str, depth: int) -> None:
            merged: dict[str, list[ast.expr]] = {}
            for cls in classes:
                for name, anns in self.all_fields(cls).items():
                    merged.setdefault(name, []).extend(anns)
            for name, anns in sorted(merged.items()):
                path = f"{prefix}{name}"
                found.paths.add(path)
                kinds = [self.kind(a) for a in anns]
                found.shape(path, [k for k, _ in kinds], ("model", "map", "array"))   # Any may be a scalar
                models = sorted({t for k, t in kinds if k == "model" and t is not None})
                if any(k in ("map", "open") for k, _ in kinds) or any(not self.all_fields(t) for t in models):
                    found.open.add(path)  # a map, Any, or a model without declared fields
                elif models:
                    if depth < MAX_DEPTH:
                        visit(models, path + ".", depth + 1)
                    else:
                        found.deep.add(path)

        visit([root], "", 1)
        return found


def sdk_found(wheels: Path) -> tuple[dict[str, Found], dict[str, str]]:
    out, versions = {}, {}
    for key, (pattern, pkg, root) in SDK_SOURCES.items():
        dirs = sorted(wheels.glob(pattern))
        if not dirs:
            raise SystemExit(f"no {pattern} under {wheels}: see the docstring for the download steps")
        models = dirs[-1] / "azure" / "mgmt" / pkg / "models" / "_models.py"
        out[key] = SdkModels(models).walk(root)
        versions[key] = dirs[-1].name.replace("_", "-")
    return out, versions


# ---------------------------------------------------------------------------------------------
# Swagger 2.0 (the Machine Learning specs)

def _s() -> dict:   # a scalar (string, boolean, integer, enum ...)
    return {"type": "string"}


def _a() -> dict:   # an array (a leaf for policies)
    return {"type": "array"}


def _m() -> dict:   # a map: additionalProperties
    return {"type": "object", "additionalProperties": {"type": "string"}}


def _r(name: str) -> dict:
    return {"$ref": name if "#" in name else f"#/definitions/{name}"}


def _o(**props: dict) -> dict:  # an inline object
    return {"type": "object", "properties": props}


def _d(*all_of: str, disc: str | None = None, **props: dict) -> dict:  # a definition
    d: dict[str, Any] = {"type": "object", "properties": props}
    if all_of:
        d["allOf"] = [_r(x) for x in all_of]
    if disc:
        d["discriminator"] = disc
    return d


TYPES = "../../../../../common-types/resource-management/v3/types.json#/definitions/"
MSI = "../../../../../common-types/resource-management/v3/managedidentity.json#/definitions/"

# common-types/resource-management/v3 (types.json, managedidentity.json), the parts reached
COMMON_SPEC: dict[str, dict] = {
    "types.json": {
        "Resource": _d(id=_s(), name=_s(), type=_s(), systemData=_r("systemData")),
        "TrackedResource": _d("Resource", tags=_m(), location=_s()),
        "systemData": _d(createdBy=_s(), createdByType=_s(), createdAt=_s(), lastModifiedBy=_s(),
                         lastModifiedByType=_s(), lastModifiedAt=_s()),
        "Sku": _d(name=_s(), tier=_s(), size=_s(), family=_s(), capacity=_s()),
    },
    "managedidentity.json": {
        "ManagedServiceIdentity": _d(principalId=_s(), tenantId=_s(), type=_s(), userAssignedIdentities=_m()),
    },
}

# Transcribed from stable/2025-09-01: workspaceRP.json (Workspace ...), registries.json
# (RegistryTrackedResource ...), machineLearningServices.json (ComputeResource and every Compute
# subtype). Only what the three resources reach; definitions reached only through arrays omitted.
ML_SPEC: dict[str, dict] = {
    # --- workspaceRP.json
    "Workspace": _d(TYPES + "Resource", properties=_r("WorkspaceProperties"), identity=_r(MSI + "ManagedServiceIdentity"),
                    kind=_s(), location=_s(), tags=_m(), sku=_r(TYPES + "Sku")),
    "WorkspaceProperties": _d(
        workspaceId=_s(), description=_s(), friendlyName=_s(), keyVault=_s(), applicationInsights=_s(),
        containerRegistry=_s(), storageAccount=_s(), discoveryUrl=_s(), provisioningState=_s(),
        encryption=_r("EncryptionProperty"), hbiWorkspace=_s(), serviceProvisionedResourceGroup=_s(),
        privateLinkCount=_s(), provisionNetworkNow=_s(), imageBuildCompute=_s(),
        allowPublicAccessWhenBehindVnet=_s(), publicNetworkAccess=_s(), privateEndpointConnections=_a(),
        serverlessComputeSettings=_r("ServerlessComputeSettings"), sharedPrivateLinkResources=_a(),
        notebookInfo=_r("NotebookResourceInfo"), serviceManagedResourcesSettings=_r("ServiceManagedResourcesSettings"),
        primaryUserAssignedIdentity=_s(), tenantId=_s(), storageHnsEnabled=_s(), systemDatastoresAuthMode=_s(),
        mlFlowTrackingUri=_s(), v1LegacyMode=_s(), managedNetwork=_r("ManagedNetworkSettings"),
        featureStoreSettings=_r("FeatureStoreSettings"), associatedWorkspaces=_a(), enableDataIsolation=_s(),
        enableServiceSideCMKEncryption=_s(), hubResourceId=_s(), workspaceHubConfig=_r("WorkspaceHubConfig")),
    "EncryptionProperty": _d(status=_s(), identity=_r("IdentityForCmk"), keyVaultProperties=_r("EncryptionKeyVaultProperties")),
    "EncryptionKeyVaultProperties": _d(keyVaultArmId=_s(), keyIdentifier=_s(), identityClientId=_s()),
    "IdentityForCmk": _d(userAssignedIdentity=_s()),
    "ServerlessComputeSettings": _d(serverlessComputeCustomSubnet=_s(), serverlessComputeNoPublicIP=_s()),
    "ServiceManagedResourcesSettings": _d(cosmosDb=_r("CosmosDbSettings")),
    "CosmosDbSettings": _d(collectionsThroughput=_s()),
    "ManagedNetworkSettings": _d(isolationMode=_s(), networkId=_s(),
                                 outboundRules={"type": "object", "additionalProperties": _r("OutboundRule")},
                                 status=_r("ManagedNetworkProvisionStatus"), firewallSku=_s(), managedNetworkKind=_s(),
                                 firewallPublicIpAddress=_s()),
    "OutboundRule": _d(disc="type", category=_s(), status=_s(), type=_s(), errorInformation=_s(), parentRuleNames=_a()),
    "ManagedNetworkProvisionStatus": _d(sparkReady=_s(), status=_s()),
    "NotebookResourceInfo": _d(fqdn=_s(), resourceId=_s(), notebookPreparationError=_r("NotebookPreparationError")),
    "NotebookPreparationError": _d(errorMessage=_s(), statusCode=_s()),
    "FeatureStoreSettings": _d(computeRuntime=_r("ComputeRuntimeDto"), offlineStoreConnectionName=_s(),
                               onlineStoreConnectionName=_s()),
    "ComputeRuntimeDto": _d(sparkRuntimeVersion=_s()),
    "WorkspaceHubConfig": _d(additionalWorkspaceStorageAccounts=_a(), defaultWorkspaceResourceGroup=_s()),
    # --- registries.json
    "RegistryTrackedResource": _d(TYPES + "TrackedResource", identity=_r(MSI + "ManagedServiceIdentity"), kind=_s(),
                                  properties=_r("Registry"), sku=_r(TYPES + "Sku")),
    "Registry": _d(discoveryUrl=_s(), intellectualPropertyPublisher=_s(), managedResourceGroup=_r("ArmResourceId"),
                   managedResourceGroupSettings=_r("ManagedResourceGroupSettings"), mlFlowRegistryUri=_s(),
                   registryPrivateEndpointConnections=_a(), publicNetworkAccess=_s(), regionDetails=_a()),
    "ArmResourceId": _d(resourceId=_s()),
    "ManagedResourceGroupSettings": _d(assignedIdentities=_a()),
    # --- machineLearningServices.json
    "ComputeResource": _d(TYPES + "Resource", "ComputeResourceSchema", identity=_r(MSI + "ManagedServiceIdentity"),
                          location=_s(), tags=_m(), sku=_r(TYPES + "Sku")),
    "ComputeResourceSchema": _d(properties=_r("Compute")),
    "Compute": _d(disc="computeType", computeType=_s(), computeLocation=_s(), provisioningState=_s(), description=_s(),
                  createdOn=_s(), modifiedOn=_s(), resourceId=_s(), provisioningErrors=_a(), isAttachedCompute=_s(),
                  disableLocalAuth=_s()),
    "AKS": _d("Compute", "AKSSchema"),
    "AKSSchema": _d(properties=_o(clusterFqdn=_s(), systemServices=_a(), agentCount=_s(), agentVmSize=_s(),
                                  clusterPurpose=_s(), sslConfiguration=_r("SslConfiguration"),
                                  aksNetworkingConfiguration=_r("AksNetworkingConfiguration"),
                                  loadBalancerType=_s(), loadBalancerSubnet=_s())),
    "Kubernetes": _d("Compute", "KubernetesSchema"),
    "KubernetesSchema": _d(properties=_r("KubernetesProperties")),
    "KubernetesProperties": _d(relayConnectionString=_s(), serviceBusConnectionString=_s(), extensionPrincipalId=_s(),
                               extensionInstanceReleaseTrain=_s(), vcName=_s(), namespace=_s(),
                               defaultInstanceType=_s(),
                               instanceTypes={"type": "object", "additionalProperties": _r("InstanceTypeSchema")}),
    "AmlCompute": _d("Compute", "AmlComputeSchema"),
    "AmlComputeSchema": _d(properties=_r("AmlComputeProperties")),
    "AmlComputeProperties": _d(osType=_s(), vmSize=_s(), vmPriority=_s(), virtualMachineImage=_r("VirtualMachineImage"),
                               isolatedNetwork=_s(), scaleSettings=_r("ScaleSettings"),
                               userAccountCredentials=_r("UserAccountCredentials"), subnet=_r("ResourceId"),
                               remoteLoginPortPublicAccess=_s(), allocationState=_s(),
                               allocationStateTransitionTime=_s(), errors=_a(), currentNodeCount=_s(),
                               targetNodeCount=_s(), nodeStateCounts=_r("NodeStateCounts"), enableNodePublicIp=_s(),
                               propertyBag={"type": "object"}),
    "ComputeInstance": _d("Compute", "ComputeInstanceSchema"),
    "ComputeInstanceSchema": _d(properties=_r("ComputeInstanceProperties")),
    "ComputeInstanceProperties": _d(
        vmSize=_s(), subnet=_r("ResourceId"), applicationSharingPolicy=_s(), sshSettings=_r("ComputeInstanceSshSettings"),
        customServices=_a(), osImageMetadata=_r("ImageMetadata"),
        connectivityEndpoints=_r("ComputeInstanceConnectivityEndpoints"), applications=_a(),
        createdBy=_r("ComputeInstanceCreatedBy"), errors=_a(), state=_s(), computeInstanceAuthorizationType=_s(),
        personalComputeInstanceSettings=_r("PersonalComputeInstanceSettings"), setupScripts=_r("SetupScripts"),
        lastOperation=_r("ComputeInstanceLastOperation"), schedules=_r("ComputeSchedules"), enableNodePublicIp=_s(),
        containers=_a(), dataDisks=_a(), dataMounts=_a(), versions=_r("ComputeInstanceVersion")),
    "VirtualMachine": _d("Compute", "VirtualMachineSchema"),
    "VirtualMachineSchema": _d(properties=_o(virtualMachineSize=_s(), sshPort=_s(), notebookServerPort=_s(), address=_s(),
                                             administratorAccount=_r("VirtualMachineSshCredentials"),
                                             isNotebookInstanceCompute=_s())),
    "HDInsight": _d("Compute", "HDInsightSchema"),
    "HDInsightSchema": _d(properties=_r("HDInsightProperties")),
    "HDInsightProperties": _d(sshPort=_s(), address=_s(), administratorAccount=_r("VirtualMachineSshCredentials")),
    "DataFactory": _d("Compute"),
    "Databricks": _d("Compute", "DatabricksSchema"),
    "DatabricksSchema": _d(properties=_r("DatabricksProperties")),
    "DatabricksProperties": _d(databricksAccessToken=_s(), workspaceUrl=_s()),
    "DataLakeAnalytics": _d("Compute", "DataLakeAnalyticsSchema"),
    "DataLakeAnalyticsSchema": _d(properties=_o(dataLakeStoreAccountName=_s())),
    "SynapseSpark": _d("Compute", properties=_o(autoScaleProperties=_r("AutoScaleProperties"),
                                                autoPauseProperties=_r("AutoPauseProperties"), sparkVersion=_s(),
                                                nodeCount=_s(), nodeSize=_s(), nodeSizeFamily=_s(),
                                                subscriptionId=_s(), resourceGroup=_s(), workspaceName=_s(),
                                                poolName=_s())),
    "SslConfiguration": _d(status=_s(), cert=_s(), key=_s(), cname=_s(), leafDomainLabel=_s(), overwriteExistingDomain=_s()),
    "AksNetworkingConfiguration": _d(subnetId=_s(), serviceCidr=_s(), dnsServiceIP=_s(), dockerBridgeCidr=_s()),
    "UserAccountCredentials": _d(adminUserName=_s(), adminUserSshPublicKey=_s(), adminUserPassword=_s()),
    "ScaleSettings": _d(maxNodeCount=_s(), minNodeCount=_s(), nodeIdleTimeBeforeScaleDown=_s()),
    "VirtualMachineImage": _d(id=_s()),
    "ResourceId": _d(id=_s()),
    "NodeStateCounts": _d(idleNodeCount=_s(), runningNodeCount=_s(), preparingNodeCount=_s(), unusableNodeCount=_s(),
                          leavingNodeCount=_s(), preemptedNodeCount=_s()),
    "VirtualMachineSshCredentials": _d(username=_s(), password=_s(), publicKeyData=_s(), privateKeyData=_s()),
    "ImageMetadata": _d(currentImageVersion=_s(), latestImageVersion=_s(), isLatestOsImageVersion=_s()),
    "ComputeInstanceSshSettings": _d(sshPublicAccess=_s(), adminUserName=_s(), sshPort=_s(), adminPublicKey=_s()),
    "ComputeInstanceConnectivityEndpoints": _d(publicIpAddress=_s(), privateIpAddress=_s()),
    "ComputeInstanceCreatedBy": _d(userName=_s(), userOrgId=_s(), userId=_s()),
    "PersonalComputeInstanceSettings": _d(assignedUser=_r("AssignedUser")),
    "AssignedUser": _d(objectId=_s(), tenantId=_s()),
    "SetupScripts": _d(scripts=_r("ScriptsToExecute")),
    "ScriptsToExecute": _d(startupScript=_r("ScriptReference"), creationScript=_r("ScriptReference")),
    "ScriptReference": _d(scriptSource=_s(), scriptData=_s(), scriptArguments=_s(), timeout=_s()),
    "ComputeInstanceLastOperation": _d(operationName=_s(), operationTime=_s(), operationStatus=_s(), operationTrigger=_s()),
    "ComputeSchedules": _d(computeStartStop=_a()),
    "ComputeInstanceVersion": _d(runtime=_s()),
    "AutoScaleProperties": _d(minNodeCount=_s(), enabled=_s(), maxNodeCount=_s()),
    "AutoPauseProperties": _d(delayInMinutes=_s(), enabled=_s()),
    "InstanceTypeSchema": _d(nodeSelector=_m(), resources=_o(requests=_m(), limits=_m())),
}

ML_ROOTS = {
    "microsoft.machinelearningservices/workspaces": "Workspace",
    "microsoft.machinelearningservices/registries": "RegistryTrackedResource",
    "microsoft.machinelearningservices/workspaces/computes": "ComputeResource",
}


class Swagger:
    """Definitions of swagger documents: ``docs`` maps a file name to its ``definitions``; local
    ``$ref``s resolve within ``home``, others by the file name before ``#``."""

    def __init__(self, docs: dict[str, dict[str, dict]], home: str) -> None:
        self.docs, self.home = docs, home

    def resolve(self, ref: str, doc: str) -> tuple[str, str, dict]:
        file, _, frag = ref.partition("#")
        name = frag.rsplit("/", 1)[-1]
        file = Path(file).name if file else doc
        defs = self.docs.get(file)
        if defs is None or name not in defs:
            # a definition split across the documents of one folder (ML's files share names)
            for f, d in self.docs.items():
                if name in d and not f.endswith(("types.json", "managedidentity.json")):
                    return f, name, d[name]
            raise KeyError(f"{ref} (from {doc})")
        return file, name, defs[name]

    def members(self, schema: dict, doc: str, seen: frozenset = frozenset()) -> dict[str, list[tuple[dict, str]]]:
        """{property: [(schema, doc)]} of an object schema: own, allOf, and discriminated subtypes
        (a name several subtypes declare, such as a compute's ``properties``, keeps every schema)."""
        if "$ref" in schema:
            file, name, target = self.resolve(schema["$ref"], doc)
            if (file, name) in seen:
                return {}
            out = self.members(target, file, seen | {(file, name)})
            if "discriminator" in target:
                for f, defs in self.docs.items():
                    for sub_name, sub in defs.items():
                        if any(self._refers(r, f, file, name) for r in sub.get("allOf", [])):
                            for k, v in self.members({"$ref": f"{f}#/definitions/{sub_name}"}, f, seen | {(file, name)}).items():
                                out.setdefault(k, []).extend(v)
            return out
        out: dict[str, list[tuple[dict, str]]] = {}
        for part in schema.get("allOf", []):
            for k, v in self.members(part, doc, seen).items():
                out.setdefault(k, []).extend(v)
        for k, v in (schema.get("properties") or {}).items():
            out.setdefault(k, []).append((v, doc))
        return out

    def _refers(self, ref: dict, ref_doc: str, file: str, name: str) -> bool:
        r = ref.get("$ref", "")
        rfile, _, frag = r.partition("#")
        return frag.rsplit("/", 1)[-1] == name and (Path(rfile).name if rfile else ref_doc) == file

    def kind(self, schema: dict, doc: str) -> tuple[str, dict, str]:
        """("array"|"map"|"object"|"open"|"leaf", schema, doc) with $refs followed."""
        if "$ref" in schema and not schema.get("properties"):
            file, _, target = self.resolve(schema["$ref"], doc)
            return self.kind(target, file)
        if schema.get("type") == "array":
            return ("array", schema, doc)
        has_members = bool(schema.get("properties") or schema.get("allOf") or schema.get("discriminator"))
        extra = schema.get("additionalProperties")
        if extra not in (None, False) and (not has_members or extra is True or isinstance(extra, dict)):
            return ("map", schema, doc)
        if has_members:
            return ("object", schema, doc)
        if schema.get("type") == "object":
            return ("open", schema, doc)  # free-form object, e.g. propertyBag
        return ("leaf", schema, doc)

    def walk(self, root: str) -> Found:
        found = Found()

        def visit(variants: list[tuple[dict, str]], prefix: str, depth: int) -> None:
            merged: dict[str, list[tuple[dict, str]]] = {}
            for schema, doc in variants:
                for k, v in self.members(schema, doc).items():
                    merged.setdefault(k, []).extend(v)
            for name, subs in sorted(merged.items()):
                path = f"{prefix}{name}"
                found.paths.add(path)
                kinds = [self.kind(sub, sdoc)[0] for sub, sdoc in subs]
                found.shape(path, kinds, ("object", "map", "open", "array"))
                objects = [s for s, k in zip(subs, kinds) if k == "object"]
                if "map" in kinds or "open" in kinds:
                    found.open.add(path)
                elif objects:
                    if depth < MAX_DEPTH:
                        visit(objects, path + ".", depth + 1)
                    elif any(self.members(sub, sdoc) for sub, sdoc in objects):
                        found.deep.add(path)

        visit([({"$ref": f"#/definitions/{root}"}, self.home)], "", 1)
        return found


def ml_found(spec_dir: Path | None) -> dict[str, Found]:
    if spec_dir is None:
        docs = {"ml.json": ML_SPEC, **COMMON_SPEC}
        home = "ml.json"
    else:
        common = (spec_dir / "../../../../../common-types/resource-management/v3").resolve()
        docs = {}
        for f in sorted(spec_dir.glob("*.json")):
            docs[f.name] = json.loads(f.read_text(encoding="utf-8")).get("definitions", {})
        for name in ("types.json", "managedidentity.json", "privatelinks.json"):
            p = common / name
            docs[name] = json.loads(p.read_text(encoding="utf-8")).get("definitions", {}) if p.exists() else COMMON_SPEC.get(name, {})
        home = "workspaceRP.json"
    sw = Swagger(docs, home)
    return {key: sw.walk(root) for key, root in ML_ROOTS.items()}


# ---------------------------------------------------------------------------------------------
# output

def _frozenset_lines(name: str, items: Iterable[str], indent: str = "") -> list[str]:
    items = sorted(set(items), key=lambda p: (p.lower(), p))
    if not items:
        return [f"{indent}{name}=frozenset(),"]
    lines = [f"{indent}{name}=frozenset({{"]
    for p in items:
        lines.append(f"{indent}    {p!r},")
    lines.append(f"{indent}}}),")
    return lines


def render(found: dict[str, Found]) -> str:
    order = [
        "microsoft.machinelearningservices/workspaces",
        "microsoft.machinelearningservices/registries",
        "microsoft.machinelearningservices/workspaces/computes",
        "microsoft.storage/storageaccounts",
        "microsoft.keyvault/vaults",
        "microsoft.containerregistry/registries",
    ]
    out = [BEGIN, "KNOWN: dict[str, TypeProperties] = {"]
    for key in order:
        f = found[key]
        out.append(f"    # {len(f.paths)} paths")
        out.append(f"    {key!r}: TypeProperties(")
        out += _frozenset_lines("paths", f.paths, "        ")
        out += _frozenset_lines("open_prefixes", f.open, "        ")
        out += _frozenset_lines("depth_limited", f.deep, "        ")
        out += _frozenset_lines("objects", f.objects, "        ")
        out += _frozenset_lines("arrays", f.arrays, "        ")
        out.append("    ),")
    out.append("}")
    out.append(END)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--wheels", type=Path, default=Path("/tmp/mgmtpk/x"), help="unzipped azure-mgmt-* wheels")
    ap.add_argument("--spec-dir", type=Path, help="the ML 2025-09-01 swagger folder (default: the transcription)")
    ap.add_argument("--write", action="store_true", help=f"replace the generated block of {TARGET.relative_to(ROOT)}")
    ap.add_argument("--check", action="store_true", help="exit 1 when the file's block differs from a fresh one")
    args = ap.parse_args(argv)

    found, versions = sdk_found(args.wheels)
    found.update(ml_found(args.spec_dir))
    block = render(found)
    for key, v in versions.items():
        print(f"{key}: {v}", file=sys.stderr)
    for key, f in found.items():
        print(f"{key}: {len(f.paths)} paths, {len(f.open)} open, {len(f.deep)} depth-limited, "
              f"{len(f.objects)} objects, {len(f.arrays)} arrays", file=sys.stderr)
    if args.write or args.check:
        text = TARGET.read_text(encoding="utf-8")
        pat = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
        if not pat.search(text):
            raise SystemExit(f"{TARGET}: no generated block ({BEGIN!r} ... {END!r})")
        new = pat.sub(lambda _: block, text)
        if args.check:
            if new != text:
                print("known_properties.py is out of date", file=sys.stderr)
                return 1
            return 0
        TARGET.write_text(new, encoding="utf-8")
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
