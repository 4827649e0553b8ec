"""A model version that stops being fit to serve production keeps no production traffic.

Archiving a version (its required tags removed) does not stop the deployments already serving
it, and demoting its ``stage`` out of the production stages changes nothing on an endpoint. So
after the version's own decision, a version ARM write of a workspace version that is no longer
fit under a policy (``model_rules.evaluate_serving``: stage, archived, tags) looks for the
production endpoints of its workspace that serve it and decides each again, through the path an
endpoint write takes (``service.reconcile``: its own audit row, event type
``Guardrails.ModelVersionChange``, ``correlation_id`` ``modelversion:<event id>``; the traffic
fix, permits and rows are the endpoint's as on any endpoint event):

    version unfit ─▶ LIST {workspace}/onlineEndpoints (one page) ─▶ production, with traffic
        ─▶ LIST {endpoint}/deployments (one page each, at most MAX_ENDPOINTS_LISTED)
        ─▶ a deployment receiving requests references this version ─▶ reconcile the endpoint

ARM cost per version write: none while the version is fit; else one list of the workspace's
endpoints, one list of deployments per production endpoint receiving traffic (bounded), and per
endpoint found serving it the endpoint decision of today. Within the event's time budget. What
cannot be looked at (the bound, the budget, a list ARM refuses, endpoints past the first page) is
a ``violation`` on the version's row naming the endpoints (rule ``serving-endpoints``): the owner
is told and the reconciling sweep judges them. A re-judged endpoint whose decision failed fails
the version's row (``rejudge_failed``): the event is redelivered and decides them again. A list
answered ``404`` is no refusal: what it lists under was deleted since, the workspace (and with
it the version: ``_workspace_gone``) or an endpoint (it serves nothing any more: skipped). The
re-judged rows carry the event's actor, as its own row does: their reverts are that change's
(``MlLifecycleGuardrail.decide``).

Not looked for: ``ModelRegistered`` (a creation, which its ARM write announces too: that write
looks), registry versions (served from any workspace: the sweep judges those endpoints), and a
check, a sweep or a re-judgement itself (``Guardrails.*`` rows: a check reads only its resource,
the sweep lists every endpoint anyway).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Mapping

from .errors import ArmError, ResourceNotFound, StoreError
from .logs import emit, notify_owner
from .ml_fixes import mirror_of, owner_of, serving, traffic_of
from .ml_refs import API_VERSION, WORKSPACE_VERSION_TYPE, parse_model_reference, same_id
from .model.arm_id import parse_arm_id
from .model.decision import ViolationRecord, combine_verdict
from .policy import model_rules as mr

log = logging.getLogger("guardrails")

VERSION_CHANGE_EVENT_TYPE = "Guardrails.ModelVersionChange"
MAX_ENDPOINTS_LISTED = 10      # production endpoints whose deployments one version event lists


def unfit_policies(policies, version: str, props: Mapping[str, Any]) -> list:
    """The policies under which this version may not serve a production endpoint. Pure."""
    tags = props.get("tags") if isinstance(props.get("tags"), Mapping) else {}
    return [p for p in policies if mr.evaluate_serving(p.rules, version=version, stage=props.get("stage"), tags=tags,
                                                       archived=props.get("isArchived") is True)]


def _items(body: Mapping[str, Any]) -> list[dict]:
    value = body.get("value")
    return [i for i in value if isinstance(i, dict) and isinstance(i.get("id"), str)] if isinstance(value, list) else []


def rejudge_serving(guard, ctx, row, snap, policies) -> None:
    """After the decision on the model version ``snap`` (the row holds it): when the version is
    no longer fit to serve production, decide again every production endpoint of its workspace
    serving it, and note on ``row`` what was done or left to the sweep (module docstring)."""
    if getattr(ctx, "dry_run", False) or row.event_type.startswith("Guardrails."):
        return
    vid = parse_arm_id(snap.resource_id)
    if vid.resource_type.lower() != WORKSPACE_VERSION_TYPE or vid.name is None:
        return
    props = snap.body.get("properties") if isinstance(snap.body.get("properties"), Mapping) else {}
    unfit = unfit_policies(policies, vid.name, props)
    if not unfit:
        return
    svc = guard.svc
    owner = owner_of(props.get("tags"), policies)
    workspace = str(vid.parent.parent)
    unchecked: list[str] = []           # production endpoints (or pages of them) not looked at
    try:
        if svc._clock() > ctx.deadline:
            raise ArmError("no time left in the event's budget to list the workspace's endpoints")
        page = svc.arm.get_resource(f"{workspace}/onlineEndpoints", api_version=API_VERSION, deadline=ctx.deadline)
    except ResourceNotFound:
        return _workspace_gone(row, workspace)
    except ArmError as exc:
        return _left_to_sweep(row, unfit, owner, ["every production endpoint of the workspace"],
                              f"listing failed: {exc.reason}")
    if page.body.get("nextLink"):
        unchecked.append("endpoints past the first list page")
    production = [ep for ep in _items(page.body)
                  if any(p.rules.production_endpoints.matches(str(ep.get("name") or ""), ep.get("tags")) for p in unfit)
                  and serving(traffic_of(ep), mirror_of(ep))]
    served: list[dict] = []
    for n, ep in enumerate(production):
        name = str(ep.get("name") or ep["id"].rsplit("/", 1)[-1])
        if n >= MAX_ENDPOINTS_LISTED or svc._clock() > ctx.deadline:
            unchecked.append(name)
            continue
        try:
            deps = svc.arm.get_resource(f"{ep['id']}/deployments", api_version=API_VERSION, deadline=ctx.deadline)
        except ResourceNotFound:
            continue                    # deleted since it was listed: it serves nothing
        except ArmError:
            unchecked.append(name)
            continue
        receiving = {d.lower() for d in serving(traffic_of(ep), mirror_of(ep))}
        listed = {str(d.get("name") or "").lower(): d for d in _items(deps.body)}
        if any((d := listed.get(r)) is not None and _references(d, workspace, snap.resource_id, policies)
               for r in receiving):
            served.append(ep)
        elif deps.body.get("nextLink") and not receiving <= set(listed):
            unchecked.append(name)      # a deployment receiving requests is past the first page
    verdicts: Counter = Counter()
    judged: list[str] = []
    correlation = f"modelversion:{row.event_id}"[:128]
    for ep in served:
        name = str(ep.get("name") or "")
        if svc._clock() > ctx.deadline:
            unchecked.append(name)
            continue
        try:
            # their rows name who changed the version, as its own row does
            decided = svc.reconcile(ep["id"], None, sweep_id=correlation, remediate=True,
                                    event_type=VERSION_CHANGE_EVENT_TYPE, deadline=ctx.deadline, actor=row.actor)
            verdicts[decided.verdict] += 1
            judged.append(f"{name} ({decided.verdict})")
        except (ArmError, StoreError) as exc:
            verdicts["failed"] += 1
            judged.append(f"{name} (failed)")
            emit(log, logging.ERROR, "guardrail_rejudge_failed", resource_id=ep["id"], error=type(exc).__name__)
    if judged:
        note = (f"served by production endpoint(s) {', '.join(judged)}: decided again in their own rows "
                f"({VERSION_CHANGE_EVENT_TYPE})")
        row.message = f"{row.message}; {note}"[:2000]
        if verdicts.get("failed"):
            was_failed = row.verdict == "failed"
            _add(row, unfit, owner, [j for j in judged if j.endswith("(failed)")], "failed",
                 "deciding a production endpoint serving this version again failed: the event is retried")
            row.reason = row.reason if was_failed else "rejudge_failed"
    if unchecked:
        _left_to_sweep(row, unfit, owner, unchecked, "not looked at within this event's bounds")


def _references(dep: Mapping[str, Any], workspace: str, version_id: str, policies) -> bool:
    """The deployment's model reference names this very version (by any spelling that resolves),
    as some policy resolves it: each with its own ``registries``, never a list merged across them."""
    model = (dep.get("properties") or {}).get("model")
    for p in policies:
        ref = parse_model_reference(model, workspace, p.rules.registry_id)
        if ref.version_id is not None and same_id(ref.version_id, version_id):
            return True
    return False


def _workspace_gone(row, workspace: str) -> None:
    """The workspace's endpoint list answered ``404``: the workspace was deleted since the version
    was read, and with it the version and every endpoint that could serve it. As any decision
    about a resource that is gone: ``ignored`` / ``resource_not_found``, no record, nobody told;
    what the version's own decision recorded (an archive made, or not, before the deletion) stays,
    with this note, and nothing is added to it."""
    note = f"workspace {workspace.rsplit('/', 1)[-1]} no longer exists: no endpoint is left to serve this version"
    if row.violations:
        row.message = f"{row.message}; {note}"[:2000]
        return
    row.verdict, row.reason, row.message = "ignored", "resource_not_found", note


def _left_to_sweep(row, unfit, owner: tuple[str, str], endpoints: list[str], why: str) -> None:
    _add(row, unfit, owner, endpoints, "violation",
         f"this version may no longer serve production, and production endpoint(s) that may serve it were not "
         f"decided again ({why}); the reconciling sweep judges them")


def _add(row, unfit, owner: tuple[str, str], endpoints: list[str], outcome: str, message: str) -> None:
    """One ``serving-endpoints`` record per policy the version is unfit under; the row's verdict
    is the most serious of its records; the owner is told (as ``MlWrites._report`` does)."""
    recs = [ViolationRecord(policy=p.ref, rule=mr.RULE_SERVING_ENDPOINTS, property="servingEndpoints",
                            before=endpoints[:20], after=None, outcome=outcome, message=message[:300])
            for p in unfit]
    row.violations = list(row.violations) + recs
    row.verdict = combine_verdict([r.outcome for r in row.violations])
    if row.verdict != "failed" and row.reason != "circuit_open":
        row.reason = ""             # as ``_report``: the records say what happened
    row.message = f"{row.message}; {mr.RULE_SERVING_ENDPOINTS}: {message} ({', '.join(endpoints[:20])})"[:2000]
    row.notify = True
    who, via = owner
    notify_owner(log, owner_tag=via, owner=who,
                 rules=[f"{r.policy}/{r.rule}" for r in recs], outcomes=[outcome])
