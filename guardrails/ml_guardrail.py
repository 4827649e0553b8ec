"""The ML lifecycle guardrail: model versions, online deployments and endpoints, drift and runs,
held to the ``kind: model-registry`` rule table (``guardrails.policy.model_rules``) — the same
table ``POST /api/checks/model-promotion`` answers from.

    ARM write of …/models/versions or ModelRegistered ─▶ GET the version ─▶ required tags?
        ─▶ enforce: PUT the whole body read just before, If-Match, ``isArchived: true`` ─▶ read back
        ─▶ (ARM write) no longer fit to serve production: the production endpoints of its
           workspace serving it are decided again, each in its own row (``ml_serving``)
    ARM write of …/onlineEndpoints/deployments ─▶ GET deployment + endpoint ─▶ production endpoint?
        ─▶ model reference explicit, version readable, in a production stage, compliant
        ─▶ enforce: PUT the endpoint with this deployment's traffic 0 (live and mirrored); its
           share only to the others judged fit (each one receiving requests is judged too); an
           audit-mode finding changes nothing written, a refused one's deployment keeps its share
    ARM write of …/onlineEndpoints or ModelDeployed ─▶ GET endpoint ─▶ auth mode, public access
        ─▶ production: every deployment with traffic (live or mirrored) checked as above ─▶ one PUT
    DatasetDriftDetected / RunCompleted / RunStatusChanged ─▶ thresholds ─▶ record and notify
        (one run's completion once, whichever event announces it: ``ml_signals``)

Here: the entry points, the model-version decisions and the sweep's hooks. Deployments, endpoints
and ``ModelDeployed`` are decided in ``ml_endpoints``; reading, the rails, the PUT, its read-back
and the row in ``ml_writes`` (both mixed into ``MlLifecycleGuardrail``). Model references
(``azureml:name:version``, ARM ids, ``azureml://registries/…``) are parsed in ``ml_refs``; the
endpoint write plan in ``ml_fixes``.

Acting once when a registration arrives twice (``ModelRegistered`` and the ARM write, any order):
both decide on live state under the same per-resource lock, and an archived version is already
safe, so the second finds nothing to do (or, while a long-running archive still runs, finds it in
flight: ``requested``, nothing sent again). Neither model versions nor endpoints take a PATCH of
their properties: every write is a PUT of the body read just before, with its etag, confirmed by
a read-back; nothing is ever deleted. Enforce actions take a breaker permit like every guardrail.
As on the resource guardrail: a fix of the guardrail's own still running (long-running) is not sent
again (``FixesInFlight``); a PUT that meets ``412`` (another worker's fix landed first) is decided
once more on a new read (``_once_more``); a resource deleted before its fix arrives is ``ignored``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .model.arm_id import ArmId
from .model.decision import ViolationRecord
from .model.resource import ResourceType
from .model.ml_events import DriftDetected, MlEvent, ModelDeployed, ModelRegistered, RunEvent
from .ml_endpoints import EndpointDecisions
from .ml_fixes import Found, always, owner_of, set_property
from .ml_refs import API_VERSION, NS as _NS, MODEL_VERSION_TYPES, ModelReference, parse_model_reference
from .ml_serving import VERSION_CHANGE_EVENT_TYPE, rejudge_serving
from .ml_signals import judge_drift, judge_run, settle_claim
from .ml_writes import MlWrites
from .policy import model_rules as mr
from .resource_guardrail import ChangedSince, note_decided_again

__all__ = ["API_VERSION", "ML_TYPES", "ML_TYPE_NAMES", "MODEL_VERSION_TYPES", "MlLifecycleGuardrail", "ModelReference",
           "VERSION_CHANGE_EVENT_TYPE", "parse_model_reference"]

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


def _action(type_name: str, verb: str) -> str:
    """The role action ARM checks for ``verb`` on ``type_name``: a registry's models and versions are
    its *assets* (Azure ML publishes no ``registries/models/*`` operation; the built-in AzureML
    Registry User role is ``registries/read`` + ``registries/assets/*``)."""
    if type_name.lower().startswith(_MS.lower() + "registries/"):
        return f"{_MS}registries/assets/{verb}"
    return f"{type_name}/{verb}"


class MlLifecycleGuardrail(EndpointDecisions, MlWrites):
    # reads every ML type it judges; writes model versions (archive) and endpoints (traffic,
    # authMode, publicNetworkAccess); deployments are only read (never changed or deleted)
    permissions = tuple(dict.fromkeys(
        [_action(t, "read") for t in ML_TYPE_NAMES]
        + [_action(c.name, "read") for c, _versions in SWEEP_CONTAINERS.values()]
        + [_action(_MS + "registries/models/versions", "write"),
           _action(_MS + "workspaces/models/versions", "write"),
           _action(_MS + "workspaces/onlineEndpoints", "write")]))

    def __init__(self, service) -> None:
        self.svc = service
        # who made each version change whose serving endpoints are being decided again, by the
        # re-judgement's correlation id (``ml_serving``, through ``service.reconcile``, whose rows
        # name nobody): ``decide`` gives their rows that actor

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
            self._once_more(row, lambda again: self._model_version(ctx, row, str(rid), policies, again=again))
        elif kind == DEPLOYMENT_TYPE:
            self._once_more(row, lambda again: self._deployment(ctx, row, rid, policies, again=again))
        else:
            self._once_more(row, lambda again: self._endpoint(ctx, row, str(rid), policies, again=again))

    def on_event(self, ctx, row, ev: MlEvent):
        """A workspace event: decided once per event id (``_once``), like every delivery."""
        policies = self.policies()
        if not policies:
            return self.svc._finish(ctx, row, "ignored", "no_policy", "no model-registry policy in force")
        if isinstance(ev, RunEvent) and not ev.completed:
            return self.svc._finish(ctx, row, "ignored", "run_not_completed",
                                    f"run status {str(ev.status)[:40]!r}: judged when it completes")
        held: list = []         # a run completion's claim, taken while deciding (``ml_signals.judge_run``)
        try:
            out = self.svc._once(ctx, row, row.resource_id, lambda: self._decide_event(ctx, row, ev, policies, held))
        except BaseException:
            for key, claim in held:     # no row of this decision: the other announcement (or the retry) decides
                settle_claim(self.svc.idempotency, key, claim, None)
            raise
        for key, claim in held:         # audited: the other announcement of this completion is a duplicate
            settle_claim(self.svc.idempotency, key, claim, out.verdict)
        return out

    @staticmethod
    def _once_more(row, decide: Callable[[bool], None]) -> None:
        """``decide(again=True)``; when its conditional PUT met ``412`` (``ChangedSince``: the
        resource changed since it was read, another worker's fix of the same change most likely,
        which the condition kept this one from overwriting), ``decide(again=False)``: once more, on
        a new read (each decision reads what it judges), within the delivery's budget, as the
        resource guardrail does (``_decide_again``): ``compliant`` when the other fix landed. What
        the first attempt took on the rails was given back (``_write``); without ``again`` a
        second ``412`` is a failed fix, not a third decision."""
        try:
            decide(True)
            return
        except ChangedSince:
            row.violations, row.reason, row.notify = [], "", False
        decide(False)
        note_decided_again(row)

    def _decide_event(self, ctx, row, ev: MlEvent, policies, held: list) -> None:
        row.policies = [p.ref for p in policies]
        if isinstance(ev, ModelRegistered):
            # a creation, which its ARM write announces too: that write looks for serving endpoints
            self._once_more(row, lambda again: self._model_version(ctx, row, ev.subject_id, policies, served=False,
                                                                   again=again))
        elif isinstance(ev, ModelDeployed):
            self._once_more(row, lambda again: self._model_deployed(ctx, row, ev, policies, again=again))
        elif isinstance(ev, DriftDetected):
            judge_drift(self._report, row, ev, policies)
        else:
            judge_run(self.svc.idempotency, self._report, ctx, row, ev, policies, held)

    # ---------------------------------------------------------------- model versions
    def _model_version(self, ctx, row, vid: str, policies, *, served: bool = True, again: bool) -> None:
        """The version's own rule (required tags: archive); then, with ``served``, the production
        endpoints of its workspace still serving it when it is no longer fit to (``ml_serving``)."""
        snap = self._read(ctx, row, vid)
        if snap is None:
            return
        self._version_tags(ctx, row, snap, policies, again=again)
        if served and row.reason != "resource_not_found":       # not when deleted while its fix was sent
            rejudge_serving(self, ctx, row, snap, policies)

    def _version_tags(self, ctx, row, snap, policies, *, again: bool) -> None:
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
            "archived (isArchived true) and confirmed by read-back"), owner=owner_of(tags, policies), again=again)
