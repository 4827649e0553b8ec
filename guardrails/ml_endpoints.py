"""The ML lifecycle guardrail's decisions on what serves production (``ml_guardrail``): online
deployments, online endpoints and ``ModelDeployed``.

    deployment ─▶ GET deployment + endpoint ─▶ production endpoint? ─▶ what it serves (``ml_refs``)
        ─▶ enforce: PUT the endpoint with this deployment's traffic 0 (live and mirrored); its
           share only to the others judged fit (each one receiving requests is judged too)
    endpoint (or ``ModelDeployed``) ─▶ GET endpoint ─▶ auth mode, public access ─▶ production:
        every deployment with traffic (live or mirrored) judged as above ─▶ one PUT

An audit-mode finding changes nothing written; a refused one's deployment keeps its share
(``ml_fixes.endpoint_plan``). What is done with the findings (the rails, the PUT, its read-back,
the row, the owner told) is ``ml_writes``. ``again`` is passed through to it: whether a PUT that
meets ``412`` is decided once more (``MlLifecycleGuardrail._once_more``).
"""

from __future__ import annotations

from .ml_fixes import (Found, auth_mode_choice, conflict, endpoint_plan, held, mirror_of, owner_of, serving, share_of,
                       traffic_of)
from .ml_refs import serving_findings
from .model.arm_id import ArmId, parse_arm_id
from .model.decision import ViolationRecord
from .model.ml_events import ModelDeployed
from .policy import model_rules as mr


class EndpointDecisions:
    """Mixed into ``MlLifecycleGuardrail``: uses its reads, ``_act``, ``_report`` and ``_recover``
    (``ml_writes``)."""

    def _deployment(self, ctx, row, rid: ArmId, policies, *, again: bool) -> None:
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
                  owner=owner_of(endpoint.tags, policies), again=again)

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

    def _endpoint(self, ctx, row, eid: str, policies, endpoint=None, *, again: bool) -> None:
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
                  owner=owner, also=conflicts + notify_only, again=again)

    def _serving_findings(self, ctx, row, dep_body, workspace: ArmId, dep_name: str, policies,
                          via: str = "traffic", reads: dict | None = None) -> list[Found] | None:
        """Findings of the model a production deployment serves (None: a read failed, row set);
        ``via``: how it receives production requests (``traffic`` or ``mirrorTraffic``), the
        property its fix sets to 0. Resolved per policy (``ml_refs.serving_findings``); each
        distinct version read once (``reads``: version id -> live version or None, shared)."""
        return serving_findings((dep_body.get("properties") or {}).get("model"), str(workspace), dep_name,
                                policies, via, lambda vid: self._get(ctx, row, vid), reads)

    def _model_deployed(self, ctx, row, ev: ModelDeployed, policies, *, again: bool) -> None:
        """A service deployed: an online endpoint of that name is judged as an endpoint write; a
        legacy (ACI/AKS) service can only be reported."""
        endpoint, ok = self._get(ctx, row, ev.subject_id)
        if not ok:
            return
        if endpoint is not None:
            self._endpoint(ctx, row, ev.subject_id, policies, endpoint=endpoint, again=again)
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
