"""Azure ML assets of the emulated control plane (host "management", api-version 2025-09-01):

    {workspace}/models/{name}/versions/{version}                  model versions (workspace)
    {registry}/models/{name}/versions/{version}                   model versions (registry)
    {workspace}/onlineEndpoints/{endpoint}                        online endpoints (with ``traffic``)
    {workspace}/onlineEndpoints/{endpoint}/deployments/{name}     online deployments

They are plain ARM resources of the shared store (world files list them under ``resources``; PUT
emits ``ResourceWriteSuccess`` with the caller's claims, like every write). The rules the real
service applies and the product must live with:

- model versions have no PATCH (405): archiving is a PUT of the whole version;
- an endpoint's PATCH takes only ``tags`` and ``identity`` (400 ``InvalidRequestContent`` for
  anything else): traffic, auth mode and public access change by PUT of the whole endpoint;
- an endpoint's ``traffic`` names existing deployments only, integers 0-100 summing to 0 or 100;
- a deployment needs its endpoint.

Writes also emit the workspace system topic's events, as Azure ML does: creating a workspace
model version → ``Microsoft.MachineLearningServices.ModelRegistered`` (PascalCase data,
``ModelVersion`` a number when numeric, as in the samples; no caller identity); creating a
deployment → ``Microsoft.MachineLearningServices.ModelDeployed``. Builders ``model_version``,
``online_endpoint`` and ``online_deployment`` make resources in the GET shape.
"""

from __future__ import annotations

import copy
import uuid
from typing import TYPE_CHECKING, Any

from guardrails.local.arm_emulator_events import event_time
from guardrails.local.arm_emulator_http import ArmError, EmuRequest, EmuResponse
from guardrails.local.arm_emulator_routes import ArmResourceRoute, authenticate, require_object_body
from guardrails.local.arm_emulator_state import ArmTarget, not_found, parse_arm_path
from guardrails.model.resource import ResourceType

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

API_VERSION = "2025-09-01"
NS = "Microsoft.MachineLearningServices"
WS_VERSION = ResourceType(f"{NS}/workspaces/models/versions", API_VERSION, "put")
REG_VERSION = ResourceType(f"{NS}/registries/models/versions", API_VERSION, "put")
ENDPOINT = ResourceType(f"{NS}/workspaces/onlineEndpoints", API_VERSION, "put")
DEPLOYMENT = ResourceType(f"{NS}/workspaces/onlineEndpoints/deployments", API_VERSION, "put")
TYPES = {t.key: t for t in (WS_VERSION, REG_VERSION, ENDPOINT, DEPLOYMENT)}
# model containers (``…/models/{name}``): Azure ML makes one with a model's first version; here
# they are listed from the versions present (never stored, read or written on their own)
CONTAINERS = {c.key: (c, v) for c, v in (
    (ResourceType(f"{NS}/workspaces/models", API_VERSION, "put"), WS_VERSION),
    (ResourceType(f"{NS}/registries/models", API_VERSION, "put"), REG_VERSION))}


def model_containers(versions: list[dict], container: ResourceType) -> list[dict]:
    """The containers of ``versions`` (all under one workspace or registry), as ARM lists them."""
    out: dict[str, dict] = {}
    for v in versions:
        cid = v["id"].rsplit("/versions/", 1)[0]
        latest = out.get(cid.lower(), {}).get("properties", {}).get("latestVersion")
        name = str(v.get("name", ""))
        if latest is None or (name.isdigit() and (not latest.isdigit() or int(name) > int(latest))):
            latest = name
        out[cid.lower()] = {"id": cid, "name": cid.rsplit("/", 1)[-1], "type": container.name,
                            "properties": {"latestVersion": latest, "isArchived": False}}
    return [out[k] for k in sorted(out)]
ENDPOINT_PATCH_KEYS = frozenset({"tags", "identity"})
AUTH_MODES = ("AMLToken", "Key", "AADToken")
EVENT_PREFIX = f"{NS}."


def _target(req: EmuRequest) -> ArmTarget | None:
    parsed = parse_arm_path(req.segments)
    if parsed is None:
        return None
    sub, rg, type_name, names = parsed
    rtype = TYPES.get(type_name.lower())
    if rtype is None:
        return None
    canon = rtype.name.split("/")
    parts = ["", "subscriptions", sub, "resourceGroups", rg, "providers", canon[0]]
    for type_seg, name in zip(canon[1:], names):
        parts += [type_seg, name]
    return ArmTarget(sub, rg, rtype, "/".join(parts), "/".join(req.segments[5:]), names[-1])


def _parent_id(resource_id: str) -> str:
    return resource_id.rsplit("/", 2)[0]


class MlResourceRoute:
    host = "management"

    def claims(self, req: EmuRequest) -> bool:
        return _target(req) is not None

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        authenticate(req, emu.tenant_id)
        target = _target(req)
        ArmResourceRoute._check_api_version(req, target)
        if req.method == "GET":
            return ArmResourceRoute._get(emu, req, target)
        if req.method == "DELETE":
            return ArmResourceRoute._delete(emu, req, target)
        if req.method == "PATCH":
            return self._patch(emu, req, target)
        if req.method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported.")
        body = require_object_body(req)
        with emu.store.lock:
            existed = emu.store.find(target.url_id) is not None
            self._validate_put(emu, target, body)
            resp = ArmResourceRoute._put(emu, req, target)
            if resp.status in (200, 201) and not existed:
                event = self._workspace_event(target, resp.body)
                if event is not None:
                    emu.store.emit(event)
        return resp

    # ---- the service's rules ------------------------------------------------------------
    @staticmethod
    def _patch(emu: "AzureEmulator", req: EmuRequest, target: ArmTarget) -> EmuResponse:
        if target.rtype in (WS_VERSION, REG_VERSION):
            raise ArmError(405, "MethodNotAllowed", "The HTTP method 'PATCH' is not supported for model versions: "
                           "PUT the whole version.")
        if target.rtype is ENDPOINT:
            body = require_object_body(req)
            extra = sorted(k for k in body if k.lower() not in ENDPOINT_PATCH_KEYS)
            if extra:
                raise ArmError(400, "InvalidRequestContent",
                               f"PATCH of '{target.rtype.name}' accepts only {sorted(ENDPOINT_PATCH_KEYS)}; found "
                               f"{extra}. Use PUT of the whole endpoint to change other properties.")
        return ArmResourceRoute._patch(emu, req, target)

    @staticmethod
    def _validate_put(emu: "AzureEmulator", target: ArmTarget, body: dict) -> None:
        props = body.get("properties")
        if not isinstance(props, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content was invalid: 'properties' is required.")
        if target.rtype in (WS_VERSION, REG_VERSION):
            if "isArchived" in props and not isinstance(props["isArchived"], bool):
                raise ArmError(400, "InvalidRequestContent", "properties.isArchived must be a boolean.")
            return
        if target.rtype is DEPLOYMENT:
            if emu.store.find(_parent_id(target.url_id)) is None:
                raise not_found(ArmTarget(target.subscription_id, target.resource_group, ENDPOINT,
                                          _parent_id(target.url_id), target.relative.rsplit("/", 2)[0],
                                          _parent_id(target.url_id).rsplit("/", 1)[-1]))
            return
        mode = props.get("authMode")
        if mode is not None and mode not in AUTH_MODES:
            raise ArmError(400, "InvalidRequestContent", f"properties.authMode must be one of {list(AUTH_MODES)}.")
        if props.get("publicNetworkAccess") not in (None, "Enabled", "Disabled"):
            raise ArmError(400, "InvalidRequestContent", "properties.publicNetworkAccess must be Enabled or Disabled.")
        traffic = props.get("traffic") or {}
        if not isinstance(traffic, dict) or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100
                                                for v in traffic.values()):
            raise ArmError(400, "InvalidRequestContent", "properties.traffic maps deployment names to integers 0-100.")
        for name in traffic:
            if emu.store.find(f"{target.url_id}/deployments/{name}") is None:
                raise ArmError(400, "BadRequest", f"Traffic is set for deployment '{name}', which does not exist.")
        if sum(traffic.values()) not in (0, 100):
            raise ArmError(400, "BadRequest", f"Traffic values must sum to 100 (or all be 0); got {sum(traffic.values())}.")

    # ---- workspace system topic events ---------------------------------------------------
    @staticmethod
    def _workspace_event(target: ArmTarget, resource: dict) -> dict | None:
        rid = resource["id"]
        if target.rtype is WS_VERSION:
            workspace, name, version = rid.split("/models/")[0], rid.split("/")[-3], rid.split("/")[-1]
            props = resource.get("properties") or {}
            return _event("ModelRegistered", workspace, f"models/{name}:{version}", {
                "ModelName": name, "ModelVersion": int(version) if version.isdigit() else version,
                "ModelTags": copy.deepcopy(props.get("tags") or {}),
                "ModelProperties": copy.deepcopy(props.get("properties") or {})})
        if target.rtype is DEPLOYMENT:
            workspace, endpoint = rid.split("/onlineEndpoints/")[0], rid.split("/")[-3]
            model = str((resource.get("properties") or {}).get("model") or "")
            ids = model.split("/models/", 1)[-1].replace("/versions/", ":") if "/models/" in model else \
                model.removeprefix("azureml:")
            return _event("ModelDeployed", workspace, f"endpoints/{endpoint}", {
                "ServiceName": endpoint, "ServiceComputeType": "Managed", "ModelIds": ids,
                "ServiceTags": copy.deepcopy(resource.get("tags") or {}), "ServiceProperties": {}})
        return None


def _event(kind: str, workspace: str, subject: str, data: dict) -> dict:
    return {"id": str(uuid.uuid4()), "topic": workspace, "subject": subject, "eventType": EVENT_PREFIX + kind,
            "eventTime": event_time(), "data": data, "dataVersion": "", "metadataVersion": "1"}


# ---- builders (GET shape) -------------------------------------------------------------------
def model_version(parent_id: str, name: str, version: str | int, *, tags: dict | None = None,
                  stage: str | None = None, archived: bool = False) -> dict:
    """A model version under a workspace or registry id."""
    props: dict[str, Any] = {"description": f"{name} v{version}", "tags": dict(tags or {}), "properties": {},
                             "isAnonymous": False, "isArchived": archived, "modelType": "custom_model",
                             "modelUri": f"azureml://jobs/train-{name}/outputs/artifacts/paths/model/"}
    if stage is not None:
        props["stage"] = stage
    kind = REG_VERSION if "/registries/" in parent_id else WS_VERSION
    return {"id": f"{parent_id}/models/{name}/versions/{version}", "name": str(version), "type": kind.name,
            "properties": props}


def online_endpoint(workspace_id: str, name: str, *, traffic: dict | None = None, auth_mode: str = "AADToken",
                    public_network_access: str = "Disabled", tags: dict | None = None) -> dict:
    return {"id": f"{workspace_id}/onlineEndpoints/{name}", "name": name, "type": ENDPOINT.name, "location": "eastus",
            "kind": "Managed", "tags": dict(tags or {}), "identity": {"type": "SystemAssigned"},
            "properties": {"authMode": auth_mode, "publicNetworkAccess": public_network_access,
                           "traffic": dict(traffic or {}), "scoringUri": f"https://{name}.eastus.inference.ml.azure.com/score",
                           "provisioningState": "Succeeded"}}


def online_deployment(endpoint_id: str, name: str, *, model: str) -> dict:
    return {"id": f"{endpoint_id}/deployments/{name}", "name": name, "type": DEPLOYMENT.name, "location": "eastus",
            "kind": "Managed", "tags": {}, "sku": {"name": "Default", "capacity": 1},
            "properties": {"endpointComputeType": "Managed", "model": model, "instanceType": "Standard_DS3_v2",
                           "provisioningState": "Succeeded"}}
