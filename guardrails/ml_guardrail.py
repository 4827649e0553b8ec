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

Model references (``azureml:name:version``, ARM ids, ``azureml://registries/…``) are parsed in
``ml_refs``; the endpoint write plan in ``ml_fixes``.

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

import copy
import logging
import uuid
from contextvars import ContextVar
from typing import Any, Callable, Mapping

from .errors import ArmError, ResourceNotFound
from .logs import notify_owner
from .model.arm_id import ArmId, parse_arm_id
from .model.decision import ViolationRecord, combine_verdict, fix_line
from .model.resource import ResourceType
from .model.ml_events import DriftDetected, MlEvent, ModelDeployed, ModelRegistered, RunEvent
from .ml_fixes import (Found, Permit, Plan, always, as_decided, auth_mode_choice, conflict, endpoint_plan, held,
                       owner_of, mirror_of, serving, set_outcome, set_property, share_of, traffic_notes, traffic_of)
from .ml_refs import API_VERSION, NS as _NS, MODEL_VERSION_TYPES, ModelReference, parse_model_reference, serving_findings
from .ml_serving import VERSION_CHANGE_EVENT_TYPE, rejudge_serving
from .ml_signals import judge_drift, judge_run, settle_claim
from .policy import model_rules as mr
from .resource_guardrail import READ_ONLY_TOP, ChangedSince

__all__ = ["API_VERSION", "ML_TYPES", "ML_TYPE_NAMES", "MODEL_VERSION_TYPES", "MlLifecycleGuardrail", "ModelReference",
           "VERSION_CHANGE_EVENT_TYPE", "parse_model_reference"]

log = logging.getLogger("guardrails")

# set while a decision is made once more after its PUT met ``412`` (``_once_more``): a second
# ``412`` is then a failed fix, not a third decision; per thread, so each decision has its own
_DECIDED_AGAIN: ContextVar[bool] = ContextVar("guardrails_ml_decided_again", default=False)

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


class MlLifecycleGuardrail:
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

    @property
    def in_flight(self):
        """The service's long-running fixes still running (the resource guardrail's
        ``FixesInFlight``, built after this guardrail): one record of them for every guardrail."""
        return self.svc.resources.in_flight

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
            self._once_more(row, lambda: self._model_version(ctx, row, str(rid), policies))
        elif kind == DEPLOYMENT_TYPE:
            self._once_more(row, lambda: self._deployment(ctx, row, rid, policies))
        else:
            self._once_more(row, lambda: self._endpoint(ctx, row, str(rid), policies))

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

    def _once_more(self, row, decide: Callable[[], None]) -> None:
        """``decide``; when its conditional PUT met ``412`` (``ChangedSince``: the resource changed
        since it was read, another worker's fix of the same change most likely, which the condition
        kept this one from overwriting), decided once more on a new read within the delivery's
        budget, as the resource guardrail does (``_decide_again``): ``compliant`` when the other fix
        landed. What the first attempt took on the rails was given back (``_write``); a second
        ``412`` is a failed fix."""
        token = _DECIDED_AGAIN.set(False)
        try:
            try:
                decide()
                return
            except ChangedSince:
                row.violations, row.reason, row.notify = [], "", False
            _DECIDED_AGAIN.set(True)
            decide()
        finally:
            _DECIDED_AGAIN.reset(token)
        note = "decided on a new read: the resource changed while its fix was sent (If-Match answered 412)"
        row.message = f"{row.message[:2000 - len(note) - 2]}; {note}"

    def _decide_event(self, ctx, row, ev: MlEvent, policies, held: list) -> None:
        row.policies = [p.ref for p in policies]
        if isinstance(ev, ModelRegistered):
            # a creation, which its ARM write announces too: that write looks for serving endpoints
            self._once_more(row, lambda: self._model_version(ctx, row, ev.subject_id, policies, served=False))
        elif isinstance(ev, ModelDeployed):
            self._once_more(row, lambda: self._model_deployed(ctx, row, ev, policies))
        elif isinstance(ev, DriftDetected):
            judge_drift(self._report, row, ev, policies)
        else:
            judge_run(self.svc.idempotency, self._report, ctx, row, ev, policies, held)

    # ---------------------------------------------------------------- model versions
    def _model_version(self, ctx, row, vid: str, policies, *, served: bool = True) -> None:
        """The version's own rule (required tags: archive); then, with ``served``, the production
        endpoints of its workspace still serving it when it is no longer fit to (``ml_serving``)."""
        snap = self._read(ctx, row, vid)
        if snap is None:
            return
        self._version_tags(ctx, row, snap, policies)
        if served and row.reason != "resource_not_found":       # not when deleted while its fix was sent
            rejudge_serving(self, ctx, row, snap, policies)

    def _version_tags(self, ctx, row, snap, policies) -> None:
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
        self._act(ctx, row, endpoint, found, lambda permitted, refused: endpoint_plan(traffic, permitted, mirror,
                                                                                      held(refused)),
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
            if dep is None and row.reason == "resource_not_found":
                # the endpoint routes to a deployment being deleted: not the endpoint gone, and not
                # decidable yet; the retry judges it once the traffic is moved
                row.verdict, row.reason = "failed", "deployment_not_found"
                row.message = f"the endpoint routes requests to deployment {dep_name[:64]}, which no longer exists"
                return None
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

        self._act(ctx, row, endpoint, acting, lambda permitted, refused: endpoint_plan(traffic, permitted, mirror,
                                                                                       held(refused)),
                  owner=owner, also=conflicts + notify_only)

    def _serving_findings(self, ctx, row, dep_body, workspace: ArmId, dep_name: str, policies,
                          via: str = "traffic", reads: dict | None = None) -> list[Found] | None:
        """Findings of the model a production deployment serves (None: a read failed, row set);
        ``via``: how it receives production requests (``traffic`` or ``mirrorTraffic``), the
        property its fix sets to 0. Resolved per policy (``ml_refs.serving_findings``); each
        distinct version read once (``reads``: version id -> live version or None, shared)."""
        return serving_findings((dep_body.get("properties") or {}).get("model"), str(workspace), dep_name,
                                policies, via, lambda vid: self._get(ctx, row, vid), reads)

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
        reads: dict = {}            # each version once, however many entries name it
        for name, version in dict.fromkeys(ev.model_ids) if prod else ():
            model = (f"azureml:{name}" if version is None else f"azureml:{name}{version}" if version.startswith("@")
                     else f"azureml:{name}:{version}")
            body = {"properties": {"model": model}}
            serving = self._serving_findings(ctx, row, body, ev.workspace_id, ev.service_name, prod, reads=reads)
            if serving is None:
                return
            found += serving
        left = (f"; {ev.model_ids_omitted} more model id(s) in the event were not judged (first "
                f"{len(ev.model_ids)} only)") if prod and ev.model_ids_omitted else ""
        if not found:
            row.verdict, row.reason = "compliant", ""
            row.message = f"service {ev.service_name}: nothing to report{left}"
            return
        self._report(row, found, owner_of(ev.tags, policies))
        row.message = f"{row.message}{left}"[:2000]

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

    def _act(self, ctx, row, snap, found: list[Found], plan: Callable[[list[Found], list[Found]], Plan | None], *,
             owner: tuple[str, str], also: list[Found] = ()) -> None:
        """Audit mode / dry run: ``dry_run``. Enforce: flip-flop and breaker permits, then
        ``plan(permitted findings, refused ones)`` — what to write is decided only from the
        findings allowed to act (a refused one's deployment only keeps its share; an audit-mode
        one changes nothing) — a PUT of the body read just before with its etag, read back.
        Every broken rule is recorded, each deployment's record with what happened to its
        traffic; the owner is told. A fix of the guardrail's own still running (long-running:
        ARM still reads the old value) is not sent again: its findings are ``requested``, naming
        the event whose fix is in flight, with no revert counted and no permit taken
        (``FixesInFlight``, looked up only when the resource reads as still being written or this
        worker left a fix of it running). A resource deleted before its fix arrives is
        ``ignored`` as a 404 on the read: nothing left to fix or to tell anyone of."""
        enforce = [f for f in found if f.policy.mode == "enforce" and not getattr(ctx, "dry_run", False)]
        for f in found:
            if f not in enforce:
                f.rec.outcome, f.rec.message = "dry_run", f"{f.rec.message}; audit mode: would fix"[:300]
        found_as = {id(f.rec): f.rec.message for f in enforce}
        if enforce and self.in_flight.making(snap, [f.rec for f in enforce]):
            for f in enforce:      # what was found stays said, after the fix in flight (which names its event)
                f.rec.message = f"{f.rec.message}; {found_as[id(f.rec)]}"[:300]
            enforce = []           # ``requested``: the write running makes them; no revert counted, no permit
        rid = parse_arm_id(snap.resource_id)
        permitted = [(Permit(f.policy), f.rec) for f in enforce]
        reasons: list[str] = []
        grant = self.svc.rails.grant(row, rid, permitted, reasons)   # a pipeline fighting it; the breaker
        if grant.kept:
            allowed = {id(rec) for _p, rec in grant.kept}
            change = plan([f for f in enforce if id(f.rec) in allowed],
                          [f for f in enforce if id(f.rec) not in allowed])
            if change is None:
                self.svc.rails.give_back(row, rid, grant)      # nothing to write: nothing was done
            else:
                try:
                    self._carry_out(ctx, row, snap, found, also, allowed, change, grant)
                except ResourceNotFound:
                    # deleted while its fix was on its way: as a 404 on the read (nothing left to
                    # fix or to tell anyone of); ``_write`` gave back what the rails took
                    row.violations, row.notify = [], False
                    row.verdict, row.reason = "ignored", "resource_not_found"
                    row.message = f"{snap.resource_id.rsplit('/', 1)[-1]} no longer exists (deleted while its fix was sent)"
                    return
        self._report(row, list(also) + found, owner)
        if reasons and row.verdict != "failed":
            row.reason = reasons[0]

    def _carry_out(self, ctx, row, snap, found: list[Found], also, allowed: set[int], change: Plan, grant) -> None:
        """Write ``change`` for the permitted records (``allowed``) it fixes; a permitted one it
        cannot (``change.unfixed``) stays a ``violation`` saying why. When nothing is written,
        what this call took on the rails is given back: the flip-flop count (no revert was made)
        and the breaker permits (no action was taken); when something is, the permits of the
        policies none of whose findings it carries."""
        rid = parse_arm_id(snap.resource_id)
        stuck = {id(f.rec) for f in found if id(f.rec) in allowed and (f.deployment or "").lower() in change.unfixed}
        for f in found:
            if id(f.rec) in stuck:
                f.rec.message = f"{f.rec.message}; {change.why}"[:300]
        sending = [f.rec for f in found if id(f.rec) in allowed and id(f.rec) not in stuck]
        others = [f for f in found if id(f.rec) not in allowed]      # audit-mode or refused: dry_run
        if not (sending and change.writes):
            self.svc.rails.give_back(row, rid, grant)
            traffic_notes(others, change, None)
            return
        carried = {f.policy.id for f in found if id(f.rec) in allowed and id(f.rec) not in stuck}
        self.svc.rails.give_back(row, rid, grant, policies=set(grant.permits) - carried, flip_flop=False)
        from .outbox import intend_before_act

        intend_before_act(getattr(self.svc, "publisher", None), ctx, row, sending, records=[
            f.rec for f in list(also) + found],
            sent_message="fix sent; the worker stopped before confirming and auditing it",
            line=fix_line)
        self._write(ctx, row, snap, sending, change, grant)
        traffic_notes(others, change, sending[0].outcome)

    def _recover(self, ctx, row, snap, owner: tuple[str, str]) -> None:
        """On a takeover: a fix the dead attempt made before its audit row is recorded
        (``ResourceGuardrail.recover``), and its owner told, as that attempt would have."""
        if not getattr(ctx, "takeover", "") or self.svc.escalations is None:
            return
        if self.svc.resources.recover(ctx, row, snap):
            row.notify = True
            notify_owner(log, owner_tag=owner[1], owner=owner[0],
                         rules=[f"{v.policy}/{v.rule}" for v in row.violations])

    def _write(self, ctx, row, snap, recs, change: Plan, grant) -> None:
        """PUT the body read (with ``change`` applied), ``If-Match`` its etag; without one (the
        documented bodies of model versions, registries' included, and online endpoints carry
        none) the resource is read again right before the PUT and nothing is sent when it changed
        since the decision's read, as ARM answers a conditional PUT (412). Then read back. Raises
        ``ResourceNotFound`` when the resource is gone (deleted since it was read) and, on a first
        ``412``, ``ChangedSince`` (``_once_more`` decides again): nothing was made by this
        decision, and everything the rails took for it, the flip-flop count included, is given
        back first."""
        apply, holds, done = change.apply, change.holds, change.done
        correlation = str(uuid.uuid4())      # its own write event carries it (see caches.SettledWrites)
        rid = parse_arm_id(snap.resource_id)
        try:
            if snap.etag is None:
                snap = self._unchanged_since(ctx, snap)
            body = copy.deepcopy(dict(snap.body))
            for key in READ_ONLY_TOP:
                body.pop(key, None)
            apply(body)
            sent = self.svc.snapshots.now()
            result = self.svc.arm.put_resource(snap.resource_id, body, api_version=API_VERSION, etag=snap.etag,
                                               deadline=ctx.deadline, correlation_id=correlation)
            if result.state == "requested":
                # confirmed when its own write event arrives, like every long-running fix; its own
                # failure event finds it by the correlation id; meanwhile not sent again
                self._pending(row, snap, recs, correlation, sent)
                return set_outcome(recs, "requested", "fix accepted, still running")
        except ResourceNotFound:
            self.svc.rails.give_back(row, rid, grant, flip_flop=True)      # no revert was made
            raise
        except ArmError as exc:       # the write itself was refused or never answered: nothing made
            if exc.status == 412:
                # a stale read, not a refusal: another write landed since (another worker's fix of
                # the same change, most likely) and the condition kept this one from overwriting
                # it; no revert was made, so none is counted
                self.svc.rails.give_back(row, rid, grant, flip_flop=True)
                if not _DECIDED_AGAIN.get():
                    raise ChangedSince from exc
            else:
                # no action was taken: its breaker permits go back (the flip-flop count stays, as
                # for every failed revert: Event Grid's redelivery of the change is the same revert)
                self.svc.rails.give_back(row, rid, grant, flip_flop=False)
            row.reason = exc.reason
            return set_outcome(recs, "failed", str(exc))
        self.svc.settled.add(correlation)
        try:
            after = self.svc.arm.get_resource(snap.resource_id, api_version=API_VERSION, deadline=ctx.deadline)
        except ArmError as exc:
            # ARM accepted the write; only its confirmation failed. The fix is made, not failed: a
            # `failed` row would release the claim and the retry would find it done and record it
            # as someone else's (ResourceGuardrail._apply does the same); its own write event
            # confirms it, so it is a pending fix and no longer a settled write
            self.svc.settled.discard(correlation)
            self._pending(row, snap, recs, correlation, sent)
            return set_outcome(recs, "requested", f"fix sent, read-back failed: {exc.reason}")
        if holds(after.body):
            return set_outcome(recs, "remediated", done)
        row.reason = "not_confirmed"
        set_outcome(recs, "failed", "read-back does not show the fix")

    def _unchanged_since(self, ctx, snap):
        """``snap``'s resource read again right before a PUT that cannot be conditional; ``ArmError``
        412 (ARM's answer to a conditional PUT after a change: decided once more) if it is not what
        the decision saw; ``ResourceNotFound`` when it is gone."""
        fresh = self.svc.arm.get_resource(snap.resource_id, api_version=API_VERSION, deadline=ctx.deadline)
        if as_decided(fresh.body) != as_decided(snap.body):
            raise ArmError(f"PUT {snap.resource_id}: not sent: it changed since it was read (it carries no etag "
                           "for a conditional PUT)", status=412)
        return fresh

    def _pending(self, row, snap, recs, correlation: str, sent) -> None:
        """A fix left ``requested``: a pending record (confirmed by its own write event or the
        sweep), kept with when it was ``sent`` so that it is not sent again while it runs."""
        self.in_flight.add(snap.resource_id, row.event_id, {
            "event_id": row.event_id, "api_version": API_VERSION, "event_time": row.event_time,
            "correlation_id": correlation,
            "changes": [{"policy": r.policy, "rule": r.rule, "property": r.property, "before": r.before,
                         "after": r.after} for r in recs]}, sent=sent)

    def _report(self, row, found: list[Found], owner: tuple[str, str]) -> None:
        row.violations = [f.rec for f in found]
        row.verdict = combine_verdict([r.outcome for r in row.violations])
        if row.verdict != "failed" and row.reason != "circuit_open":
            row.reason = ""
        row.message = "; ".join(f"{r.policy}/{r.rule}: {r.message} ({r.outcome})" for r in row.violations)[:2000]
        row.notify = True       # every broken rule is the owner's to know, fixed or not
        who, via = owner
        notify_owner(log, owner_tag=via, owner=who,
                     rules=[f"{r.policy}/{r.rule}" for r in row.violations], outcomes=sorted({r.outcome for r in row.violations}))
