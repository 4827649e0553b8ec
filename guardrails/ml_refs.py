"""Azure ML model references: what an online deployment's ``properties.model`` names, the model
version's ARM id when the guardrail may read it, why it cannot be read otherwise, and the findings
of what a production deployment serves (``serving_findings``: pure but for the version reads its
caller passes in). Used by the ML lifecycle guardrail (``ml_guardrail``: judging what a
deployment serves) and by its served-version lookup (``ml_serving``: which deployments serve a
version). A reference is always resolved per policy, with that policy's own ``registries``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import InvalidArmId
from .ml_fixes import Found
from .model.arm_id import parse_arm_id
from .model.decision import ViolationRecord
from .policy import model_rules as mr

API_VERSION = "2025-09-01"      # Azure ML control plane (workspaces, registries and their children)
NS = "microsoft.machinelearningservices/"
WORKSPACE_VERSION_TYPE = NS + "workspaces/models/versions"
REGISTRY_VERSION_TYPE = NS + "registries/models/versions"
MODEL_VERSION_TYPES = frozenset({WORKSPACE_VERSION_TYPE, REGISTRY_VERSION_TYPE})
_ASSET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")     # Azure ML asset names and versions


@dataclass(frozen=True)
class ModelReference:
    """What a deployment's ``properties.model`` names: ``version`` as written (None when absent,
    ``name@label`` for a label), and the version's ARM id when it can be read."""

    text: str
    version: str | None
    version_id: str | None


def parse_model_reference(ref: Any, workspace_id: str,
                          registry_id: Callable[[str], str | None] = lambda _name: None) -> ModelReference:
    """``azureml:name:version``, ``azureml:name@label``, ``azureml:name``, an ARM id of a workspace
    or registry model version, or ``azureml://registries/r/models/n/versions/v``: readable when
    ``registry_id(r)`` knows the registry's ARM id (the policy's ``registries``), since the
    reference itself names no subscription or resource group. Resolve it once per policy, with
    that policy's own ``rules.registry_id``: a registry one policy lists is not readable for
    another (never merge the lists). An ARM id is held to the same
    allow-list as the short forms: a registry version is readable only in a registry the policy
    lists (under that very ARM id), a workspace version only in the deployment's own workspace
    (``azureml:name:version`` can name no other) — else it cannot be shown compliant."""
    text = ref.strip() if isinstance(ref, str) else ""
    if text.lower().startswith("/subscriptions/"):
        try:
            rid = parse_arm_id(text)
        except InvalidArmId:
            return ModelReference(text, None, None)
        kind = rid.resource_type.lower()
        if kind not in MODEL_VERSION_TYPES:
            return ModelReference(text, None, None)
        owner = str(rid.parent.parent).lower()          # the workspace or registry holding the version
        if kind == REGISTRY_VERSION_TYPE:
            listed = registry_id(rid.parent.parent.name)
            allowed = listed is not None and same_id(listed, owner)
        else:
            allowed = same_id(workspace_id, owner)
        return ModelReference(text, rid.name, str(rid) if allowed else None)
    if text.lower().startswith("azureml://"):
        parts = text[len("azureml://"):].split("/")
        low = [p.lower() for p in parts]
        if "versions" in low[:-1]:
            version = parts[low.index("versions") + 1]
            if (len(parts) == 6 and low[0] == "registries" and low[2] == "models" and low[4] == "versions"
                    and all(_ASSET.match(x) for x in (parts[3], version))):
                registry = registry_id(parts[1])
                if registry is not None:
                    return ModelReference(text, version, f"{registry}/models/{parts[3]}/versions/{version}")
            return ModelReference(text, version, None)
        if "labels" in low[:-1]:
            return ModelReference(text, "@" + parts[low.index("labels") + 1], None)
        return ModelReference(text, None, None)
    body = text[len("azureml:"):] if text.lower().startswith("azureml:") else text
    if "@" in body:
        return ModelReference(text, "@" + body.split("@", 1)[1], None)
    name, sep, version = body.rpartition(":")
    if not sep or not name or not version:
        return ModelReference(text, None, None)
    if not (_ASSET.match(name) and _ASSET.match(version)):     # never let a reference shape an ARM path
        return ModelReference(text, version, None)
    return ModelReference(text, version, f"{workspace_id}/models/{name}/versions/{version}")


def serving_findings(model: Any, workspace_id: str, dep_name: str, policies, via: str,
                     read: Callable[[str], tuple[Any, bool]], reads: dict | None = None) -> list | None:
    """Findings (``ml_fixes.Found``) of the model ``model`` a production deployment ``dep_name``
    serves, under each of ``policies``; None when ``read`` failed (``(None, False)``). The
    reference is resolved per policy, with that policy's own ``registries``: a registry one
    policy lists never makes a version readable for another, which finds it ``version-readable``
    as it would alone. Each distinct version is read once (``reads``: lower-case version id ->
    what ``read`` returned, shared by the caller across deployments). ``via``: the property its
    fix sets to 0 (``traffic`` or ``mirrorTraffic``)."""
    reads = {} if reads is None else reads
    found = []
    for p in policies:
        ref = parse_model_reference(model, workspace_id, p.rules.registry_id)
        explicit = mr.is_explicit_version(p.rules, ref.version)
        version = None
        if explicit and ref.version_id is not None:
            key = ref.version_id.lower()
            if key not in reads:
                got, ok = read(ref.version_id)
                if not ok:
                    return None
                reads[key] = got
            version = reads[key]
        if not explicit or ref.version_id is None:
            findings = mr.evaluate_deployment(p.rules, version=ref.version, stage=p.rules.production_stage) or [
                mr.ModelFinding(mr.RULE_VERSION_READABLE, unreadable(ref.text))]
        elif version is None:
            findings = [mr.ModelFinding(mr.RULE_VERSION_READABLE, "the referenced model version does not exist")]
        else:
            vp = version.body.get("properties") or {}
            findings = mr.evaluate_serving(p.rules, version=ref.version, stage=vp.get("stage"),
                                           tags=vp.get("tags") or {}, archived=vp.get("isArchived") is True)
        found += [Found(p, ViolationRecord(
            policy=p.ref, rule=f.rule, property=f"properties.{via}.{dep_name}", before=ref.text[:200], after=0,
            outcome="violation", message=f"deployment {dep_name}: {f.message}"[:300]), deployment=dep_name)
            for f in findings]
    return found


def same_id(a: str, b: str) -> bool:
    """Two ARM ids name the same resource (case-insensitive; a malformed one names nothing)."""
    try:
        return str(parse_arm_id(a)).lower() == str(parse_arm_id(b)).lower()
    except InvalidArmId:
        return False


def unreadable(text: str) -> str:
    """Why an explicit reference without an ARM id cannot be read."""
    unlisted = ("the version is in registry '{}', which the model-registry policy does not list "
                "under registries: it cannot be read, so it cannot be shown compliant")
    parts = text[len("azureml://"):].split("/") if text.lower().startswith("azureml://") else []
    if len(parts) > 1 and parts[0].lower() == "registries":
        return unlisted.format(parts[1][:64])
    if text.lower().startswith("/subscriptions/"):
        try:
            rid = parse_arm_id(text)
        except InvalidArmId:
            rid = None
        if rid is not None and rid.resource_type.lower() in MODEL_VERSION_TYPES:
            if rid.resource_type.lower() == REGISTRY_VERSION_TYPE:
                return unlisted.format(rid.parent.parent.name[:64]).replace(" under registries", " under registries "
                                                                             "with this ARM id")
            return (f"the version is in workspace '{rid.parent.parent.name[:64]}', not the deployment's own: "
                    "it cannot be read, so it cannot be shown compliant")
    return "the reference cannot be resolved to a model version: it cannot be read, so it cannot be shown compliant"
