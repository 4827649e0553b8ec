"""The ML lifecycle guardrail: model versions, online deployments and endpoints, drift and runs,
held to the ``kind: model-registry`` rule table (``guardrails.policy.model_rules``) — the same
table ``POST /api/checks/model-promotion`` answers from.

    ARM write of …/models/versions or ModelRegistered ─▶ GET the version ─▶ required tags?
        ─▶ enforce: PUT the whole body read just before, If-Match, ``isArchived: true`` ─▶ read back
    ARM write of …/onlineEndpoints/deployments ─▶ GET deployment + endpoint ─▶ production endpoint?
        ─▶ model reference explicit, version readable, in a production stage, compliant
        ─▶ enforce: PUT the endpoint with this deployment's traffic 0 (live and mirrored); its
           share only to the others judged fit (each one receiving requests is judged too)
    ARM write of …/onlineEndpoints or ModelDeployed ─▶ GET endpoint ─▶ auth mode, public access
        ─▶ production: every deployment with traffic (live or mirrored) checked as above ─▶ one PUT
    DatasetDriftDetected / RunCompleted / RunStatusChanged ─▶ thresholds ─▶ record and notify

Acting once when a registration arrives twice (``ModelRegistered`` and the ARM write, any order):
both decide on live state under the same per-resource lock, and an archived version is already
safe, so the second finds nothing to do. Neither model versions nor endpoints take a PATCH of
their properties: every write is a PUT of the body read just before, with its etag, confirmed by
a read-back; nothing is ever deleted. Enforce actions take a breaker permit like every guardrail.
"""

from __future__ import annotations

import copy
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import ArmError, InvalidArmId, ResourceNotFound
from .logs import emit
from .model.arm_id import ArmId, parse_arm_id
from .model.decision import ViolationRecord, combine_verdict
from .model.resource import ResourceType
from .model.ml_events import DriftDetected, MlEvent, ModelDeployed, ModelRegistered, RunEvent
from .ml_fixes import (Found, Permit, Plan, always, auth_mode_choice, conflict, endpoint_plan, owner_of,
                       mirror_of, policy_contact, serving, set_outcome, set_property, share_of, traffic_of)
from .policy import model_rules as mr
from .resource_guardrail import READ_ONLY_TOP

log = logging.getLogger("guardrails")

API_VERSION = "2025-09-01"      # Azure ML control plane (workspaces, registries and their children)
_NS = "microsoft.machinelearningservices/"
MODEL_VERSION_TYPES = frozenset({_NS + "workspaces/models/versions", _NS + "registries/models/versions"})
ENDPOINT_TYPE = _NS + "workspaces/onlineendpoints"
DEPLOYMENT_TYPE = _NS + "workspaces/onlineendpoints/deployments"
ML_TYPES = MODEL_VERSION_TYPES | {ENDPOINT_TYPE, DEPLOYMENT_TYPE}
# the same types as ARM spells them (role actions, Event Grid operationName filter)
ML_TYPE_NAMES = ("Microsoft.MachineLearningServices/registries/models/versions",
                 "Microsoft.MachineLearningServices/workspaces/models/versions",
                 "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                 "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments")
# what the reconciling sweep lists (per workspace or registry): online endpoints, and the model
# containers whose versions it then lists; containers are only listed, never judged
_MS = "Microsoft.MachineLearningServices/"
SWEEP_ENDPOINTS = ResourceType(_MS + "workspaces/onlineEndpoints", API_VERSION, "put")
SWEEP_CONTAINERS = {ResourceType(_MS + f"{parent}/models", API_VERSION, "put").key:
                    (ResourceType(_MS + f"{parent}/models", API_VERSION, "put"),
                     ResourceType(_MS + f"{parent}/models/versions", API_VERSION, "put"))
                    for parent in ("workspaces", "registries")}
_ASSET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")     # Azure ML asset names and versions


# ---------------------------------------------------------------- model references (pure)
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
    reference itself names no subscription or resource group. An ARM id is held to the same
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
        if kind == _NS + "registries/models/versions":
            listed = registry_id(rid.parent.parent.name)
            allowed = listed is not None and _same_id(listed, owner)
        else:
            allowed = _same_id(workspace_id, owner)
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


def _same_id(a: str, b: str) -> bool:
    """Two ARM ids name the same resource (case-insensitive; a malformed one names nothing)."""
    try:
        return str(parse_arm_id(a)).lower() == str(parse_arm_id(b)).lower()
    except InvalidArmId:
        return False


def _unreadable(text: str) -> str:
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
            if rid.resource_type.lower() == _NS + "registries/models/versions":
                return unlisted.format(rid.parent.parent.name[:64]).replace(" under registries", " under registries "
                                                                             "with this ARM id")
            return (f"the version is in workspace '{rid.parent.parent.name[:64]}', not the deployment's own: "
                    "it cannot be read, so it cannot be shown compliant")
    return "the reference cannot be resolved to a model version: it cannot be read, so it cannot be shown compliant"


class MlLifecycleGuardrail:
    # reads every ML type it judges; writes model versions (archive) and endpoints (traffic,
    # authMode, publicNetworkAccess); deployments are only read (never changed or deleted)
    permissions = tuple(f"{t}/read" for t in ML_TYPE_NAMES) + tuple(
        f"{c.name}/read" for c, _versions in SWEEP_CONTAINERS.values()) + (
        "Microsoft.MachineLearningServices/registries/models/versions/write",
        "Microsoft.MachineLearningServices/workspaces/models/versions/write",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write")

    def __init__(self, service) -> None:
        self.svc = service

    @staticmethod
    def sweep_types() -> tuple[ResourceType, ...]:
        """What the reconciling sweep lists for this guardrail, per workspace or registry: online
        endpoints (deciding one checks its settings and every deployment that receives traffic)
        and model containers (each expanded into its versions: ``sweep_expand``)."""
        return (SWEEP_ENDPOINTS, *(c for c, _versions in SWEEP_CONTAINERS.values()))

    @staticmethod
    def sweep_expand(rtype: ResourceType) -> ResourceType | None:
        """The child type the sweep lists under each listed ``rtype`` instead of deciding it: a
        model container's versions; None for what is decided itself."""
        pair = SWEEP_CONTAINERS.get(rtype.key)
        return pair[1] if pair else None

    @staticmethod
    def sweep_needs_decision(body: Mapping[str, Any], policies) -> bool:
        """The sweep's cheap filter for a listed model version: only one that is not archived and
        lacks a required tag of a policy in force is decided (on a fresh read, as an event would).
        Endpoints are always decided: their deployments are not in the listed body."""
        if not str(body.get("type", "")).lower().endswith("/models/versions"):
            return True
        props = body.get("properties") if isinstance(body.get("properties"), Mapping) else {}
        if props.get("isArchived") is True:
            return False
        tags = props.get("tags") if isinstance(props.get("tags"), Mapping) else {}
        return any(mr.missing_tags(p.rules, tags) for p in policies)

    @staticmethod
    def resource_type(rid: ArmId) -> ResourceType:
        """How the service reads one of these back (a pending long-running fix's own write)."""
        return ResourceType(rid.resource_type, API_VERSION, "put")

    @staticmethod
    def covers(rid: ArmId) -> bool:
        return bool(rid.resource_group) and rid.scope is None and rid.resource_type.lower() in ML_TYPES

    def policies(self) -> list:
        return list(self.svc.policies.get().model_registry_policies)

    # ---------------------------------------------------------------- entry points
    def decide(self, ctx, row, target, policies) -> None:
        """An ARM write (or an on-demand check) of a model version, deployment or endpoint."""
        rid = target.resource_id
        row.policies = [p.ref for p in policies]
        kind = rid.resource_type.lower()
        if kind in MODEL_VERSION_TYPES:
            self._model_version(ctx, row, str(rid), policies)
        elif kind == DEPLOYMENT_TYPE:
            self._deployment(ctx, row, rid, policies)
        else:
            self._endpoint(ctx, row, str(rid), policies)

    def on_event(self, ctx, row, ev: MlEvent):
        """A workspace event: decided once per event id (``_once``), like every delivery."""
        policies = self.policies()
        if not policies:
            return self.svc._finish(ctx, row, "ignored", "no_policy", "no model-registry policy in force")
        if isinstance(ev, RunEvent) and not ev.completed:
            return self.svc._finish(ctx, row, "ignored", "run_not_completed",
                                    f"run status {str(ev.status)[:40]!r}: judged when it completes")
        return self.svc._once(ctx, row, row.resource_id, lambda: self._decide_event(ctx, row, ev, policies))

    def _decide_event(self, ctx, row, ev: MlEvent, policies) -> None:
        row.policies = [p.ref for p in policies]
        if isinstance(ev, ModelRegistered):
            self._model_version(ctx, row, ev.subject_id, policies)
        elif isinstance(ev, ModelDeployed):
            self._model_deployed(ctx, row, ev, policies)
        elif isinstance(ev, DriftDetected):
            self._drift(row, ev, policies)
        else:
            self._run(row, ev, policies)

    # ---------------------------------------------------------------- model versions
    def _model_version(self, ctx, row, vid: str, policies) -> None:
        snap = self._read(ctx, row, vid)
        if snap is None:
            return
        props = snap.body.get("properties") or {}
        tags = props.get("tags") if isinstance(props.get("tags"), Mapping) else {}
        archived = props.get("isArchived") is True
        found = [Found(p, ViolationRecord(policy=p.ref, rule=f.rule, property="properties.isArchived",
                                           before=archived, after=True, outcome="violation", message=f.message))
                 for p in policies for f in mr.evaluate_registration(p.rules, tags=tags)]
        if not found:
            row.verdict, row.reason, row.message = "compliant", "", "model version carries every required tag"
            return
        if archived:   # already safe: archived by us (a second event of the same registration) or its owner
            missing = sorted({t for p in policies for t in mr.missing_tags(p.rules, tags)})
            row.verdict, row.reason = "compliant", "already_archived"
            row.message = (f"archived, so it cannot be deployed; to use it, restore the tags "
                           f"({', '.join(missing)}) and un-archive it")
            self._recover(ctx, row, snap, owner_of(tags, policies))    # archived by an attempt that died?
            return
        self._act(ctx, row, snap, found, always(
            lambda body: set_property(body, "isArchived", True),
            lambda after: (after.get("properties") or {}).get("isArchived") is True,
            "archived (isArchived true) and confirmed by read-back"), owner=owner_of(tags, policies))

    # ---------------------------------------------------------------- deployments and endpoints
    def _deployment(self, ctx, row, rid: ArmId, policies) -> None:
        dep = self._read(ctx, row, str(rid))
        endpoint = dep and self._read(ctx, row, str(rid.parent))
        if endpoint is None:
            return
        prod = [p for p in policies if p.rules.production_endpoints.matches(rid.parent.name, endpoint.tags)]
        if not prod:
            row.verdict, row.reason, row.message = "compliant", "", f"endpoint {rid.parent.name} is not production"
            return
        traffic, mirror = traffic_of(endpoint.body), mirror_of(endpoint.body)
        via = "mirrorTraffic" if share_of(traffic, rid.name) == 0 and share_of(mirror, rid.name) > 0 else "traffic"
        found = self._serving_findings(ctx, row, dep.body, rid.parent.parent, rid.name, prod, via=via)
        if found is None:
            return
        if not found:
            row.verdict, row.reason = "compliant", ""
            row.message = f"deployment {rid.name} serves a compliant, explicit production version"
            return
        if share_of(traffic, rid.name) == 0 and share_of(mirror, rid.name) == 0:
            for f in found:
                f.rec.outcome = "violation"
                f.rec.message = (f.rec.message + "; it receives no traffic (live or mirrored): none will be "
                                 "routed to it")[:300]
            self._report(row, found, owner_of(endpoint.tags, policies))
            return
        # its share goes only to deployments judged fit: every other one receiving production
        # requests is judged here, as an endpoint write would, and one serving badly is taken out
        # of traffic by the same write (the guardrail's own endpoint write is judged by nobody)
        others = self._serving(ctx, row, endpoint, rid.parent.parent, prod, skip=rid.name)
        if others is None:
            return
        found += others
        unfit = {f.deployment for f in found if f.deployment is not None}
        self._act(ctx, row, endpoint, found, lambda permitted: endpoint_plan(traffic, permitted, mirror, unfit),
                  owner=owner_of(endpoint.tags, policies))

    def _serving(self, ctx, row, endpoint, workspace: ArmId, policies, skip: str = "") -> list[Found] | None:
        """Findings of every deployment receiving production requests, live or mirrored, but
        ``skip`` (None: a read failed, row set)."""
        traffic, mirror = traffic_of(endpoint.body), mirror_of(endpoint.body)
        found: list[Found] = []
        for dep_name in serving(traffic, mirror):
            if dep_name.lower() == skip.lower():
                continue
            dep = self._read(ctx, row, f"{endpoint.resource_id}/deployments/{dep_name}")
            via = "traffic" if share_of(traffic, dep_name) > 0 else "mirrorTraffic"
            found_here = dep and self._serving_findings(ctx, row, dep.body, workspace, dep_name, policies, via=via)
            if found_here is None:
                return None
            found += found_here
        return found

    def _endpoint(self, ctx, row, eid: str, policies, endpoint=None) -> None:
        endpoint = endpoint or self._read(ctx, row, eid)
        if endpoint is None:
            return
        props = endpoint.body.get("properties") or {}
        name, rid = eid.rsplit("/", 1)[-1], parse_arm_id(eid)
        found: list[Found] = []
        conflicts: list[Found] = []        # an authMode fix no value of which every policy allows
        auth_mode = auth_mode_choice(policies)
        for p in policies:
            sensitive = p.rules.sensitive_endpoints.matches(name, endpoint.tags)
            for f in mr.evaluate_endpoint(p.rules, auth_mode=props.get("authMode"),
                                          public_network_access=props.get("publicNetworkAccess"), sensitive=sensitive):
                path, want = (("authMode", auth_mode) if f.rule == mr.RULE_ENDPOINT_AUTH
                              else ("publicNetworkAccess", "Disabled"))
                enforced = p.rules.endpoint_action == "enforce"
                rec = ViolationRecord(policy=p.ref, rule=f.rule, property=f"properties.{path}", before=props.get(path),
                                      after=want if enforced else None, outcome="violation", message=f.message[:300])
                if enforced and want is None:
                    conflict(ctx, row, p, rec, policies)
                    conflicts.append(Found(p, rec))
                    continue
                found.append(Found(p, rec, setting=(path, want) if enforced else None))
        traffic, mirror = traffic_of(endpoint.body), mirror_of(endpoint.body)
        prod = [p for p in policies if p.rules.production_endpoints.matches(name, endpoint.tags)]
        if prod:
            served = self._serving(ctx, row, endpoint, rid.parent, prod)
            if served is None:
                return
            found += served
        unfit = {f.deployment for f in found if f.deployment is not None}
        if not found and not conflicts:
            row.verdict, row.reason, row.message = "compliant", "", f"endpoint {name} is compliant"
            self._recover(ctx, row, endpoint, owner_of(endpoint.tags, policies))   # fixed by one that died?
            return
        notify_only = [f for f in found if f.rec.after is None and f.rec.rule in (mr.RULE_ENDPOINT_AUTH,
                                                                                  mr.RULE_ENDPOINT_PUBLIC)]
        acting = [f for f in found if f not in notify_only]
        for f in notify_only:
            f.rec.message = (f.rec.message + " (reported: endpoint_action notify)")[:300]
        owner = owner_of(endpoint.tags, policies)
        if not acting:
            self._report(row, conflicts + found, owner)
            return

        self._act(ctx, row, endpoint, acting, lambda permitted: endpoint_plan(traffic, permitted, mirror, unfit),
                  owner=owner, also=conflicts + notify_only)

    def _serving_findings(self, ctx, row, dep_body, workspace: ArmId, dep_name: str, policies,
                          via: str = "traffic") -> list[Found] | None:
        """Findings of the model a production deployment serves (None: a read failed, row set);
        ``via``: how it receives production requests (``traffic`` or ``mirrorTraffic``), the
        property its fix sets to 0."""
        def registry_id(name: str) -> str | None:
            return next((rid for p in policies if (rid := p.rules.registry_id(name)) is not None), None)

        ref = parse_model_reference((dep_body.get("properties") or {}).get("model"), str(workspace), registry_id)
        version = None
        if ref.version_id is not None and any(mr.is_explicit_version(p.rules, ref.version) for p in policies):
            version, ok = self._get(ctx, row, ref.version_id)
            if not ok:
                return None
        found = []
        for p in policies:
            if not mr.is_explicit_version(p.rules, ref.version) or (version is None and ref.version_id is None):
                findings = mr.evaluate_deployment(p.rules, version=ref.version, stage=p.rules.production_stage) or [
                    mr.ModelFinding(mr.RULE_VERSION_READABLE, _unreadable(ref.text))]
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

    def _model_deployed(self, ctx, row, ev: ModelDeployed, policies) -> None:
        """A service deployed: an online endpoint of that name is judged as an endpoint write; a
        legacy (ACI/AKS) service can only be reported."""
        endpoint, ok = self._get(ctx, row, ev.subject_id)
        if not ok:
            return
        if endpoint is not None:
            self._endpoint(ctx, row, ev.subject_id, policies, endpoint=endpoint)
            return
        prod = [p for p in policies if p.rules.production_endpoints.matches(ev.service_name, ev.tags)]
        found: list[Found] = []
        for name, version in ev.model_ids if prod else ():
            model = (f"azureml:{name}" if version is None else f"azureml:{name}{version}" if version.startswith("@")
                     else f"azureml:{name}:{version}")
            body = {"properties": {"model": model}}
            serving = self._serving_findings(ctx, row, body, ev.workspace_id, ev.service_name, prod)
            if serving is None:
                return
            found += serving
        if not found:
            row.verdict, row.reason, row.message = "compliant", "", f"service {ev.service_name}: nothing to report"
            return
        self._report(row, found, owner_of(ev.tags, policies))

    # ---------------------------------------------------------------- drift and runs (no ARM calls)
    def _drift(self, row, ev: DriftDetected, policies) -> None:
        found, judged, owner = [], False, ""
        for p in policies:
            findings, threshold = mr.evaluate_drift(p.rules, monitor=ev.monitor_name, coefficient=ev.coefficient)
            judged = judged or threshold is not None
            owner = owner or mr.drift_threshold(p.rules, ev.monitor_name)[1]
            found += [Found(p, ViolationRecord(policy=p.ref, rule=f.rule, property="DriftCoefficient",
                                                before=ev.coefficient, after=threshold, outcome="violation",
                                                message=f.message[:300])) for f in findings]
        if not judged:
            row.verdict, row.reason = "ignored", "no_threshold"
            row.message = f"no drift threshold set for monitor {ev.monitor_name[:64]!r}"
        elif not found:
            row.verdict, row.reason, row.message = "compliant", "", f"drift {ev.coefficient:.4g} within threshold"
        else:
            self._report(row, found, (owner, "drift monitor owner") if owner else (policy_contact(policies)))

    def _run(self, row, ev: RunEvent, policies) -> None:
        found, candidate = [], False
        for p in policies:
            findings = mr.evaluate_run(p.rules, tags=ev.tags, properties=ev.properties)
            candidate = candidate or findings is not None
            found += [Found(p, ViolationRecord(policy=p.ref, rule=f.rule, property="runTags", before=None, after=None,
                                                outcome="violation", message=f.message[:300])) for f in findings or ()]
        if not candidate:
            row.verdict, row.reason, row.message = "ignored", "not_a_candidate", "run not tagged as a promotion candidate"
        elif not found:
            row.verdict, row.reason, row.message = "compliant", "", f"candidate run {ev.run_id[:80]} meets every metric"
        else:
            self._report(row, found, owner_of(ev.tags, policies))

    # ---------------------------------------------------------------- reading, acting, reporting
    def _get(self, ctx, row, rid: str):
        """``(live resource or None when it does not exist, True)``; ``(None, False)`` with the
        row ``failed`` when ARM cannot answer (the delivery is retried)."""
        try:
            return self.svc.arm.get_resource(rid, api_version=API_VERSION, deadline=ctx.deadline), True
        except ResourceNotFound:
            return None, True
        except ArmError as exc:
            row.verdict, row.reason, row.message = "failed", exc.reason, str(exc)
            return None, False

    def _read(self, ctx, row, rid: str):
        """The live resource, or None with the row set (gone: ignored; ARM failing: failed)."""
        snap, ok = self._get(ctx, row, rid)
        if ok and snap is None:
            row.verdict, row.reason, row.message = "ignored", "resource_not_found", f"{rid.rsplit('/', 1)[-1]} no longer exists"
        return snap

    def _act(self, ctx, row, snap, found: list[Found], plan: Callable[[list[Found]], Plan | None], *,
             owner: tuple[str, str], also: list[Found] = ()) -> None:
        """Audit mode / dry run: ``dry_run``. Enforce: flip-flop and breaker permits, then
        ``plan(permitted findings)`` — what to write is decided only from the findings allowed
        to act, never from an audit-mode policy's or a refused one's — a PUT of the body read
        just before with its etag, read back. Every broken rule is recorded; the owner is told."""
        enforce = [f for f in found if f.policy.mode == "enforce" and not getattr(ctx, "dry_run", False)]
        for f in found:
            if f not in enforce:
                f.rec.outcome, f.rec.message = "dry_run", f"{f.rec.message}; audit mode: would fix"[:300]
        rid = parse_arm_id(snap.resource_id)
        permitted = [(Permit(f.policy), f.rec) for f in enforce]
        reasons: list[str] = []
        if permitted and self.svc.escalations is not None:     # a pipeline fighting the guardrail
            permitted = self.svc.rails.flip_flop(row, rid, permitted, reasons)
        if permitted:
            permitted = self.svc.rails.breaker_permits(row, rid, permitted)
        if permitted:
            allowed = {id(rec) for _p, rec in permitted}
            change = plan([f for f in enforce if id(f.rec) in allowed])
            if change is not None:
                self._write(ctx, row, snap, [rec for _p, rec in permitted], change.apply, change.holds, change.done)
        self._report(row, list(also) + found, owner)
        if reasons and row.verdict != "failed":
            row.reason = reasons[0]

    def _recover(self, ctx, row, snap, owner: tuple[str, str]) -> None:
        """On a takeover: a fix the dead attempt made before its audit row is recorded
        (``ResourceGuardrail.recover``), and its owner told, as that attempt would have."""
        if not getattr(ctx, "takeover", "") or self.svc.escalations is None:
            return
        if self.svc.resources.recover(ctx, row, snap):
            row.notify = True
            emit(log, logging.WARNING, "guardrail_violation_notify", owner_tag=owner[1], owner=owner[0],
                 rules=[f"{v.policy}/{v.rule}" for v in row.violations])

    def _write(self, ctx, row, snap, recs, apply, holds, done: str) -> None:
        body = copy.deepcopy(dict(snap.body))
        for key in READ_ONLY_TOP:
            body.pop(key, None)
        apply(body)
        correlation = str(uuid.uuid4())      # its own write event carries it (see caches.SettledWrites)
        try:
            result = self.svc.arm.put_resource(snap.resource_id, body, api_version=API_VERSION, etag=snap.etag,
                                               deadline=ctx.deadline, correlation_id=correlation)
            if result.state == "requested":
                # confirmed when its own write event arrives, like every long-running fix
                self.svc.pending.add(snap.resource_id, row.event_id, {
                    "event_id": row.event_id, "api_version": API_VERSION,
                    "changes": [{"policy": r.policy, "rule": r.rule, "property": r.property, "before": r.before,
                                 "after": r.after} for r in recs]})
                return set_outcome(recs, "requested", "fix accepted, still running")
        except ArmError as exc:       # the write itself was refused or never answered: nothing made
            row.reason = exc.reason
            return set_outcome(recs, "failed", str(exc))
        self.svc.settled.add(correlation)
        try:
            after = self.svc.arm.get_resource(snap.resource_id, api_version=API_VERSION, deadline=ctx.deadline)
        except ArmError as exc:
            # ARM accepted the write; only its confirmation failed. The fix is made, not failed: a
            # `failed` row would release the claim and the retry would find it done and record it
            # as someone else's (ResourceGuardrail._apply does the same)
            return set_outcome(recs, "requested", f"fix sent, read-back failed: {exc.reason}")
        if holds(after.body):
            return set_outcome(recs, "remediated", done)
        row.reason = "not_confirmed"
        set_outcome(recs, "failed", "read-back does not show the fix")

    def _report(self, row, found: list[Found], owner: tuple[str, str]) -> None:
        row.violations = [f.rec for f in found]
        row.verdict = combine_verdict([r.outcome for r in row.violations])
        if row.verdict != "failed" and row.reason != "circuit_open":
            row.reason = ""
        row.message = "; ".join(f"{r.policy}/{r.rule}: {r.message} ({r.outcome})" for r in row.violations)[:2000]
        row.notify = True       # every broken rule is the owner's to know, fixed or not
        who, via = owner
        emit(log, logging.WARNING, "guardrail_violation_notify", owner_tag=via, owner=who,
             rules=[f"{r.policy}/{r.rule}" for r in row.violations], outcomes=sorted({r.outcome for r in row.violations}))
