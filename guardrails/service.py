"""The use case every entry point shares: handle one delivered resource event.

    parse envelope ─▶ parse data ─▶ classify (ignored / own write) ─▶ policies (table, cached)
      ─▶ idempotency claim ─▶ read live state ─▶ evaluate (pure) ─▶ plan (pure) ─▶ apply ─▶ confirm
      ─▶ audit row (always) ─▶ complete claim (or release it on failure so Event Grid retries)

``handle_event`` returns the audit row it wrote. It raises only when Event Grid must redeliver:
``DeliveryFailed`` after a ``failed`` row, ``IdempotencyError`` while another delivery holds the
event, ``StoreError`` when Table Storage is unavailable (then nothing was acknowledged).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from .errors import ArmError, GuardrailsError, InvalidEvent, ResourceNotFound, StoreError
from .logs import bound, emit
from .model.decision import Actor, AuditRow, ViolationRecord, combine_verdict
from .model.events import parse_envelope, parse_resource_event
from .model.keyvault_events import KEYVAULT_EVENT_TYPES, SECRET_EXPOSED, parse_keyvault_event
from .model.resource import ResourceSnapshot, ResourceType, lookup_type
from .policy.cache import PolicyCache
from .policy.evaluate import RuleResult
from .model.policy import DEFAULT_FLIP_FLOP
from .policy.flipflop import describe_actors, strictest
from .policy.operators import values_equal
from .ports import AuditSink, BreakerStore, IdempotencyStore, PendingFixStore, ResourceGateway
from .settings import Settings

log = logging.getLogger("guardrails")

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
ROLE_ASSIGNMENT_TYPE = "microsoft.authorization/roleassignments"
ROLE_DEFINITION_TYPE = "microsoft.authorization/roledefinitions"
# fields ARM computes; never sent back in a full PUT
_READ_ONLY_TOP = ("id", "name", "type", "systemData", "etag")


class DeliveryFailed(GuardrailsError):
    """The delivery ended ``failed`` and was audited; raising makes Event Grid redeliver."""

    reason = "failed"


def _now_iso(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event_time(when: datetime | None) -> str:
    """The event's time for the audit, in UTC; "" when absent or beyond what UTC can express."""
    if when is None:
        return ""
    try:
        return _now_iso(when)
    except (OverflowError, ValueError):     # e.g. 0001-01-01T00:00:00+01:00 has no UTC equivalent
        return ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class _Ctx:
    delivery_id: str
    started: float
    deadline: float
    now: datetime
    dry_run: bool = False      # on-demand check without ?remediate: decide, never act
    takeover: str = ""         # the delivery id of an attempt at this event that died holding it


class GuardrailsService:
    def __init__(self, settings: Settings, *, policies: PolicyCache, arm: ResourceGateway,
                 idempotency: IdempotencyStore, audit: AuditSink, breakers: BreakerStore,
                 pending: PendingFixStore, roles=None, secrets=None, ml=None, publisher=None, escalations=None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.settings = settings
        self.policies = policies
        self.arm = arm
        self.idempotency = idempotency
        self.audit = audit
        self.breakers = breakers
        self.pending = pending
        self.roles = roles(self) if callable(roles) else roles   # RoleAssignmentGuardrail factory
        self.secrets = secrets(self) if callable(secrets) else secrets   # SecretGuardrail factory
        self.ml = ml(self) if callable(ml) else ml   # MlLifecycleGuardrail factory (models, deployments, endpoints)
        self.publisher = publisher                   # decision events (Event Grid custom topic), or None
        self.escalations = escalations               # flip-flop escalation store, or None
        self.snapshots = SnapshotCache(max_age=settings.snapshot_reuse_seconds, skew=settings.clock_skew_seconds,
                                       wall_clock=wall_clock)
        self._clock = clock
        self._wall = wall_clock
        # striped per-resource locks; re-entrant: a decision may decide others in its thread (a
        # role definition's assignments) whose ids can share its stripe
        self._locks = tuple(threading.RLock() for _ in range(64))
        self.settled = SettledWrites()   # correlation ids of our writes that finished (no pending record)

    # ---------------------------------------------------------------------------------
    def handle_event(self, raw: Any, *, actor: Actor | None = None) -> AuditRow:
        """``actor``: the verified caller of a report that arrives over HTTP (an event names its own)."""
        start = self._clock()
        ctx = _Ctx(uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall())
        event_id = raw.get("id") if isinstance(raw, Mapping) and isinstance(raw.get("id"), str) else ""
        event_type = ""
        if isinstance(raw, Mapping):
            t = raw.get("eventType", raw.get("type"))
            event_type = t if isinstance(t, str) else ""
        row = AuditRow(event_id=event_id[:256], event_type=event_type[:256], resource_id="", verdict="invalid",
                       delivery_id=ctx.delivery_id)
        if actor is not None:
            row.actor = actor
        with bound(delivery_id=ctx.delivery_id, event_id=row.event_id or None):
            try:
                env = parse_envelope(raw)
                row.event_id, row.event_type = env.id, env.event_type
                row.event_time = _event_time(env.time)
                if env.event_type in KEYVAULT_EVENT_TYPES:
                    kv_event = parse_keyvault_event(env)
                    row.resource_id = kv_object_id(kv_event)
                    with bound(resource_id=row.resource_id):
                        return self._handle_keyvault_event(ctx, row, kv_event)
                from .model.ml_events import ML_EVENT_TYPES, parse_ml_event   # pure; lazy like the other kinds
                if env.event_type in ML_EVENT_TYPES:
                    ml_event = parse_ml_event(env)
                    row.resource_id = ml_event.subject_id
                    if self.ml is None:
                        return self._finish(ctx, row, "ignored", "not_covered", "ML lifecycle guardrail not configured")
                    with bound(resource_id=row.resource_id):
                        return self.ml.on_event(ctx, row, ml_event)
                if env.event_type not in _resource_event_types():
                    return self._finish(ctx, row, "ignored", "unsupported_event_type",
                                        f"event type {_short(env.event_type)} is not handled by any guardrail")
                event = parse_resource_event(env)
            except InvalidEvent as exc:
                return self._finish(ctx, row, "invalid", exc.reason, str(exc))
            row.resource_id = str(event.resource_id)
            row.actor = event.actor
            row.correlation_id = (event.correlation_id or "")[:128]
            with bound(resource_id=row.resource_id):
                return self._handle_resource_event(ctx, row, event)

    def _handle_keyvault_event(self, ctx: _Ctx, row: AuditRow, ev) -> AuditRow:
        if ev.kind == "VaultAccessPolicyChanged":
            # re-read the vault from ARM and evaluate the vault policies of the resource guardrail
            if ev.vault_id is None:
                return self._finish(ctx, row, "invalid", "invalid_value",
                                    "VaultAccessPolicyChanged without the vault's ARM id as its topic/source")
            row.resource_id = str(ev.vault_id)
            rtype = lookup_type(ev.vault_id.resource_type)
            compiled = self.policies.get()
            candidates = compiled.candidates(rtype.name, ev.vault_id.subscription_id, ev.vault_id.resource_group)
            if not candidates:
                return self._finish(ctx, row, "ignored", "no_policy", "no policy in force selects this vault")
            target = _CheckTarget(ev.vault_id)
            return self._once(ctx, row, str(ev.vault_id),
                              lambda: self._decide_and_fix(ctx, row, target, rtype, compiled, candidates))
        if self.secrets is None:
            return self._finish(ctx, row, "ignored", "not_covered", "secret guardrail not configured")
        policies = [p for p in getattr(self.policies.get(), "secret_policies", ())
                    if p.mode != "off" and p.governs(ev.vault_name)]
        if not policies:
            return self._finish(ctx, row, "ignored", "no_policy", f"no secrets policy governs vault {ev.vault_name}")
        return self._once(ctx, row, row.resource_id, lambda: self.secrets.decide(ctx, row, ev, policies))

    def report_exposure(self, *, vault: str, name: str, version: str | None, source: str,
                        actor: Actor | None = None) -> AuditRow:
        """An exposure reported over HTTP: the same path as a ``Guardrails.SecretExposed`` event."""
        raw = {"specversion": "1.0", "id": f"exposure-{uuid.uuid4().hex}", "type": SECRET_EXPOSED,
               "source": "guardrails/http/secrets/exposed", "subject": name,
               "time": self._wall().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "data": {"VaultName": vault, "ObjectName": name, "ObjectType": "Secret", "Version": version,
                        "Source": source}}
        return self.handle_event(raw, actor=actor)     # the caller is on the audit row as it is written

    def _handle_resource_event(self, ctx: _Ctx, row: AuditRow, event) -> AuditRow:
        if event.event_type != WRITE_SUCCESS:
            return self._finish(ctx, row, "ignored", "event_type_not_evaluated",
                                f"{event.event_type} does not change a resource's configuration")
        rid = event.resource_id
        if self.settings.is_own_principal(event.actor.object_id, event.actor.app_id):
            covered = rid.resource_group and rid.scope is None and rid.resource_type.lower() != ROLE_ASSIGNMENT_TYPE
            rtype = lookup_type(rid.resource_type) if covered else None
            if rtype is None and self.ml is not None and self.ml.covers(rid):
                rtype = self.ml.resource_type(rid)       # its long-running fixes are pending fixes too
            return self._own_write(ctx, row, event, rtype)
        decide, done = self._route(ctx, row, rid, event)
        if done is not None:
            return done
        return self._once(ctx, row, str(rid), decide)

    def _route(self, ctx: _Ctx, row: AuditRow, rid, target) -> tuple[Callable[[], None] | None, AuditRow | None]:
        """Which guardrail decides this id, on which policies: ``(decide, None)``, or
        ``(None, row)`` when it is finished already (not covered / no policy in force)."""
        if rid.resource_type.lower() == ROLE_DEFINITION_TYPE:
            # a custom role changed: its assignments are re-judged (each under its own policies)
            if self.roles is None:
                return None, self._finish(ctx, row, "ignored", "not_covered", "role-assignment guardrail not configured")
            policies = [p for p in self.policies.get().role_policies if p.mode != "off"]
            if not policies:
                return None, self._finish(ctx, row, "ignored", "no_policy", "no role-assignment policy in force")
            return (lambda: self.roles.on_definition(ctx, row, target, policies)), None
        if rid.resource_type.lower() == ROLE_ASSIGNMENT_TYPE:
            if self.roles is None:
                return None, self._finish(ctx, row, "ignored", "not_covered", "role-assignment guardrail not configured")
            policies = [p for p in self.policies.get().role_policies
                        if p.mode != "off" and _selects_subscription(p, rid.subscription_id)]
            if not policies:
                return None, self._finish(ctx, row, "ignored", "no_policy", "no role-assignment policy in force here")
            return (lambda: self.roles.decide(ctx, row, target, policies)), None
        if self.ml is not None and self.ml.covers(rid):      # model versions, online endpoints, deployments
            policies = self.ml.policies()
            if not policies:
                return None, self._finish(ctx, row, "ignored", "no_policy", "no model-registry policy in force")
            return (lambda: self.ml.decide(ctx, row, target, policies)), None
        # covered types live in a resource group; a tenant-level or extension id of the same type
        # name is not one of them (ARM would answer 404 anyway): no read for those
        rtype = lookup_type(rid.resource_type) if rid.resource_group and rid.scope is None else None
        if rtype is None:
            return None, self._finish(ctx, row, "ignored", "not_covered",
                                      f"resource type {rid.resource_type} is not covered by any guardrail")
        compiled = self.policies.get()
        candidates = compiled.candidates(rtype.name, rid.subscription_id, rid.resource_group)
        if not candidates and not (compiled.shadow is not None and not ctx.dry_run
                                   and compiled.shadow.candidates(rtype.name, rid.subscription_id, rid.resource_group)):
            return None, self._finish(ctx, row, "ignored", "no_policy",
                                      f"no policy in force selects {rtype.name} at this scope")
        return (lambda: self._decide_and_fix(ctx, row, target, rtype, compiled, candidates)), None

    def check_resource(self, resource_id: str, *, remediate: bool, actor: Actor | None = None,
                       decision_id: str | None = None, correlation_id: str = "") -> AuditRow:
        """On-demand check (HTTP / CLI): the decision the event path would make for this resource,
        on its live state. Acts only when ``remediate``. Raises InvalidArmId for a bad id; nothing
        but the id's own resource is ever read."""
        from .model.arm_id import parse_arm_id

        start = self._clock()
        ctx = _Ctx(decision_id or uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall(),
                   dry_run=not remediate)
        rid = parse_arm_id(resource_id)
        row = AuditRow(event_id=ctx.delivery_id, event_type=CHECK_EVENT_TYPE, resource_id=str(rid), verdict="ignored",
                       delivery_id=ctx.delivery_id, actor=actor or Actor(), correlation_id=correlation_id[:128])
        with bound(delivery_id=ctx.delivery_id, resource_id=str(rid)):
            decide, done = self._route(ctx, row, rid, _CheckTarget(rid))
            if done is not None:
                return done
            with self._resource_lock(str(rid)):
                decide()
            return self._finish(ctx, row, row.verdict, row.reason, row.message)

    def reconcile(self, resource_id: str, snapshot: ResourceSnapshot | None, *, sweep_id: str,
                  remediate: bool = True, event_type: str = "Guardrails.Sweep") -> AuditRow:
        """A timer's decision (reconciling sweep, exemption expiry): the event path's decision for
        this resource on ``snapshot`` (a listed body: no second read) or, when None, on a fresh
        read. Acts unless ``remediate`` is False. One audit row, ``correlation_id`` = the run id;
        no idempotency claim (a timer run is not redelivered; the fix itself diffs first), so a
        published decision is kept as an outbox intent before it is audited."""
        from .model.arm_id import parse_arm_id

        start = self._clock()
        ctx = _Ctx(uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall(),
                   dry_run=not remediate)
        rid = parse_arm_id(resource_id)
        row = AuditRow(event_id=f"{sweep_id}:{ctx.delivery_id}"[:256], event_type=event_type, resource_id=str(rid),
                       verdict="ignored", delivery_id=ctx.delivery_id, correlation_id=sweep_id[:128])
        with bound(delivery_id=ctx.delivery_id, resource_id=str(rid)):
            target = _CheckTarget(rid)
            target.snapshot = snapshot        # _decide_and_fix decides on it instead of reading
            decide, done = self._route(ctx, row, rid, target)
            if done is not None:
                return done
            with self._resource_lock(str(rid)):
                decide()
            return self._finish(ctx, row, row.verdict, row.reason, row.message, timer=True)

    def reconcile_secret(self, vault: str, name: str, version: str | None, *, kind: str, sweep_id: str,
                         remediate: bool = True, object_type: str = "Secret") -> AuditRow:
        """A timer's decision on a secret (or key: ``object_type="Key"``) whose event was lost: the
        secret guardrail's path for ``kind`` (``NearExpiry``, ``Expired``: rotation, on the version
        the sweep saw current; if it is no longer current it was rotated meanwhile: compliant;
        ``NewVersionCreated``: the expiry hygiene of that version). One audit row,
        ``correlation_id`` = the run id, kept as an outbox intent like ``reconcile``."""
        from .model.events import parse_envelope
        from .model.keyvault_events import parse_keyvault_event

        start = self._clock()
        ctx = _Ctx(uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall(),
                   dry_run=not remediate)
        if kind not in ("NearExpiry", "Expired", "NewVersionCreated"):
            raise ValueError(f"unknown Key Vault event kind {kind!r}")
        raw = {"id": f"{sweep_id}:{ctx.delivery_id}"[:256], "eventType": f"Microsoft.KeyVault.{object_type}{kind}",
               "subject": name,
               "eventTime": _now_iso(ctx.now), "dataVersion": "1", "metadataVersion": "1",
               "data": {"VaultName": vault, "ObjectType": object_type, "ObjectName": name, "Version": version}}
        ev = parse_keyvault_event(parse_envelope(raw))      # InvalidEvent for a name Key Vault would refuse
        row = AuditRow(event_id=raw["id"], event_type="Guardrails.Sweep", resource_id=kv_object_id(ev),
                       verdict="ignored", delivery_id=ctx.delivery_id, correlation_id=sweep_id[:128])
        with bound(delivery_id=ctx.delivery_id, resource_id=row.resource_id):
            policies = [p for p in getattr(self.policies.get(), "secret_policies", ())
                        if p.mode != "off" and p.governs(vault)]
            if self.secrets is None or not policies:
                return self._finish(ctx, row, "ignored", "no_policy", f"no secrets policy governs vault {vault}",
                                    timer=True)
            with self._resource_lock(row.resource_id):
                self.secrets.decide(ctx, row, ev, policies)
            return self._finish(ctx, row, row.verdict, row.reason, row.message, timer=True)

    def record_coverage(self, coverage, *, sweep_id: str, verdict: str, notify: bool) -> AuditRow:
        """A sweep's event-coverage decision for one event source (a subscription, a governed vault
        or ML workspace: ``guardrails.coverage``): a ``violation`` (reason ``event_coverage``, one
        violation record per gap) or the ``compliant`` row that closes one. Audited and published
        like any timer decision."""
        from .coverage import CHECK_ID, REASON

        start = self._clock()
        ctx = _Ctx(uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall())
        row = AuditRow(event_id=f"{sweep_id}:{ctx.delivery_id}"[:256], event_type="Guardrails.Sweep",
                       resource_id=coverage.resource_id, verdict="ignored", delivery_id=ctx.delivery_id,
                       correlation_id=sweep_id[:128], notify=notify, policies=[CHECK_ID])
        row.violations = [ViolationRecord(policy=CHECK_ID, rule=g.code, property="eventSubscription",
                                          before=g.detail, after=None, outcome="violation")
                          for g in coverage.gaps]
        return self._finish(ctx, row, verdict, REASON, coverage.message(), timer=True)

    def record_unreadable_dead_letter(self, container: str, blob: str, why: str, *, run_id: str) -> AuditRow:
        """A dead-letter blob with no event to hand to ``handle_event`` (not JSON, too large …):
        audited ``invalid`` like any bad delivery, under the blob's name (``guardrails.replay``).
        ``why`` names the problem, never the content."""
        start = self._clock()
        ctx = _Ctx(uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall())
        row = AuditRow(event_id=f"deadletter:{blob}"[:256], event_type=DEAD_LETTER_EVENT_TYPE,
                       resource_id=f"/deadletter/{container}/{blob}"[:2048], verdict="ignored",
                       delivery_id=ctx.delivery_id, correlation_id=run_id[:128])
        with bound(delivery_id=ctx.delivery_id):
            return self._finish(ctx, row, "invalid", "unreadable_dead_letter",
                                f"dead-letter blob {blob} is unreadable: {why}", timer=True)

    def _once(self, ctx: _Ctx, row: AuditRow, resource_id: str, decide: Callable[[], None]) -> AuditRow:
        """Exactly-once effects on an at-least-once stream: claim the event id, decide and act,
        audit, then mark it completed — or release it so Event Grid's retry can run."""
        key = f"event:{row.event_id}"
        claim = self.idempotency.acquire(key, holder=ctx.delivery_id)  # IdempotencyError propagates
        if claim.state == "completed":
            return self._finish(ctx, row, "duplicate", "duplicate",
                                f"event already handled (verdict {claim.verdict or 'unknown'}); nothing done")
        if claim.previous_holder and self.publisher is not None:
            # the attempt this one takes over died holding the event: it may have audited a decision
            # and died before publishing it, and the state it left decides differently now
            self.publisher.republish(row.resource_id, claim.previous_holder)
        if claim.parked is not None:
            return self._audit_parked(ctx, key, claim)
        ctx.takeover = claim.previous_holder or ""
        parked = False
        try:
            # deliveries for one resource in this worker take turns: the second decides on the
            # state the first left (diff before write), never sending a fix twice
            with self._resource_lock(resource_id):
                decide()
            try:
                self._finish(ctx, row, row.verdict, row.reason, row.message)
            except BaseException:
                parked = self._park(key, claim, row)
                raise
        except BaseException:
            if not parked:
                self.idempotency.release(key, claim)
            raise
        if row.verdict == "failed":
            self.idempotency.release(key, claim)   # let Event Grid's retry run it again
            raise DeliveryFailed(f"delivery failed: {row.reason}")
        self.idempotency.complete(key, claim, verdict=row.verdict)
        return row

    def _park(self, key: str, claim, row: AuditRow) -> bool:
        """The audit write failed after a decision that changed something (a fix, a removal): keep
        the decision with the event's claim so the retry audits it instead of deciding again on
        the state the fix left (``compliant``, and the change and its revert gone from the audit
        table). The decision also goes to the log at ERROR. Never raises; True when parked."""
        if not any(v.outcome in ("remediated", "requested") for v in row.violations):
            return False
        emit(log, logging.ERROR, "guardrail_decision_unaudited", resource_id=row.resource_id, verdict=row.verdict,
             event_id=row.event_id, actions=[f"{v.policy}/{v.rule}:{v.outcome}" for v in row.violations][:20])
        try:
            self.idempotency.park(key, claim, row.to_dict())
            return True
        except Exception as exc:         # the store is what failed: the retry decides again
            emit(log, logging.ERROR, "guardrail_decision_not_parked", event_id=row.event_id, error=type(exc).__name__)
            return False

    def _audit_parked(self, ctx: _Ctx, key: str, claim) -> AuditRow:
        """An earlier delivery of this event acted and could not write its row: write that row
        now (the decision as it was made, noted as audited late), nothing decided again."""
        prior = AuditRow.from_dict(claim.parked)
        note = f" [audited by a later delivery ({ctx.delivery_id}): the first audit write failed]"
        try:
            self._finish(ctx, prior, prior.verdict, prior.reason, prior.message[:2000 - len(note)] + note,
                         keep_time=True)
        except BaseException:
            self._park(key, claim, prior)
            raise
        if prior.verdict == "failed":         # as on the first attempt: audited, then retried
            self.idempotency.release(key, claim)
            raise DeliveryFailed(f"delivery failed: {prior.reason}")
        self.idempotency.complete(key, claim, verdict=prior.verdict)
        return prior

    # ---------------------------------------------------------------------------------
    def _decide_and_fix(self, ctx: _Ctx, row: AuditRow, event, rtype: ResourceType, compiled, candidates) -> None:
        rid = event.resource_id
        try:
            # a target may carry the live state already (a sweep's list page): no second read
            snapshot = getattr(event, "snapshot", None) or self.snapshots.get(str(rid), event.envelope.time)
            if snapshot is None:
                sent = self.snapshots.now()
                snapshot = self.arm.get_resource(str(rid), api_version=rtype.api_version, deadline=ctx.deadline)
                self.snapshots.put(snapshot, requested_at=sent)
        except ResourceNotFound:
            self.snapshots.forget(str(rid))
            row.verdict, row.reason, row.message = "ignored", "resource_not_found", "the resource no longer exists"
            return
        except ArmError as exc:
            row.verdict, row.reason, row.message = "failed", exc.reason, str(exc)
            return
        if snapshot.type and snapshot.type.lower() != rtype.key:
            row.verdict, row.reason = "failed", "unexpected_type"
            row.message = f"ARM returned type {_short(snapshot.type)} for a {rtype.name} id"
            return
        shadow = compiled.shadow
        if shadow is not None and not ctx.dry_run:
            self._shadow(ctx, row, snapshot, shadow, rid)
        row.policies = [p.ref for p in candidates if _tags_match(p, snapshot.tags)]
        if not candidates:
            row.verdict, row.reason = "ignored", "no_policy"
            row.message = "only shadow policy versions select this resource (see the shadow row)"
            return
        results = compiled.evaluate(snapshot, now=ctx.now, subscription_id=rid.subscription_id,
                                    resource_group=rid.resource_group)
        if not results:
            row.verdict, row.reason = "compliant", ""
            row.message = f"compliant with {', '.join(row.policies) or 'no policy'}"
            if ctx.takeover and self.escalations is not None:
                self._recover(ctx, row, snapshot)
            return

        records: list[tuple[RuleResult, ViolationRecord]] = []
        to_apply: list[tuple[RuleResult, ViolationRecord]] = []
        approved_pe: int | None = None          # approved private endpoint connections (read once)
        pe_waived: list[ViolationRecord] = []   # enforced although no private endpoint is approved
        for r in results:
            rec = ViolationRecord(policy=r.policy.ref, rule=r.rule.id, property=r.rule.property,
                                  before=r.before, after=r.change.after if r.change else None, outcome="violation")
            pe_rule = r.rule.private_endpoint
            if pe_rule is not None and r.exemption is None and r.change is not None and approved_pe is None:
                approved_pe = approved_private_endpoints(snapshot)
            if r.exemption is not None:
                rec.outcome = "exempted"
                exp = r.exemption.expires.isoformat() if r.exemption.expires else "no expiry"
                rec.message = f"exempted by {r.exemption.owner} ({exp}): {r.exemption.reason}"[:300]
            elif r.notify or r.change is None:
                rec.outcome = "violation"
                rec.message = "notify only"
                row.notify = True
            elif pe_rule is not None and not approved_pe and pe_rule.when_missing == "notify":
                # disabling public access now would cut off every client: no private path exists yet
                rec.outcome = "violation"
                rec.message = ("not reverted: no approved private endpoint connection; public access stays until "
                               "one is approved (the policy asks for private connectivity first)")
                row.notify = True
            elif (refused := rtype.write_refused(r.change.property, snapshot.body)) is not None:
                # the platform would refuse the write (and with it every fix merged into it)
                rec.outcome = "violation"
                rec.message = f"not fixable here: {refused}"[:300]
                row.notify = True
            elif r.policy.mode == "audit" or ctx.dry_run:
                rec.outcome = "dry_run"
                rec.message = "audit mode: would set the value"
            else:
                to_apply.append((r, rec))
                if pe_rule is not None and not approved_pe:
                    pe_waived.append(rec)
            records.append((r, rec))
        reasons: list[str] = []
        if to_apply and self.escalations is not None:
            to_apply = self._flip_flop(row, rid, to_apply, reasons)
        if to_apply:
            to_apply = self._breaker_permits(row, rid, to_apply)
            if row.reason == "circuit_open":
                reasons.append("circuit_open")
        if to_apply:
            self._apply(ctx, row, snapshot, rtype, to_apply)
            if any(rec.outcome == "requested" for _r, rec in to_apply):
                self.pending.add(snapshot.resource_id, row.event_id, {
                    "event_id": row.event_id, "api_version": rtype.api_version,
                    "changes": [{"policy": rec.policy, "rule": rec.rule, "property": rec.property,
                                 "before": rec.before, "after": rec.after}
                                for _r, rec in to_apply if rec.outcome == "requested"]})
        for rec in pe_waived:
            rec.message = (rec.message + "; enforced without an approved private endpoint connection "
                           "(policy: when_missing enforce)")[:300]
        row.violations = [rec for _r, rec in records]
        row.verdict = combine_verdict([rec.outcome for rec in row.violations])
        if row.verdict != "failed":
            row.reason = reasons[0] if reasons else ""
        row.message = "; ".join(
            f"{v.policy}/{v.rule}: {v.property} {_short(v.before)}"
            + (f" -> {_short(v.after)}" if v.after is not None else "") + f" ({v.outcome})"
            for v in row.violations)[:2000]
        if row.notify:
            told = [r for r, rec in records if rec.outcome in ("violation", "escalated")]
            owner, via = _owner(snapshot, told)
            emit(log, logging.WARNING, "guardrail_violation_notify", owner_tag=via, owner=owner,
                 rules=[f"{v.policy}/{v.rule}" for v in row.violations if v.outcome in ("violation", "escalated")])

    def _shadow(self, ctx: _Ctx, row: AuditRow, snapshot: ResourceSnapshot, shadow, rid) -> None:
        """Judge the same live state with the ``mode: shadow`` policy versions and record, in a
        row of its own (verdict ``shadow``), what they would have done. Nothing is changed."""
        candidates = shadow.candidates(snapshot.type, rid.subscription_id, rid.resource_group)
        policies = [p.ref for p in candidates if _tags_match(p, snapshot.tags)]
        if not policies:
            return
        results = shadow.evaluate(snapshot, now=ctx.now, subscription_id=rid.subscription_id,
                                  resource_group=rid.resource_group)
        srow = AuditRow(event_id=row.event_id, event_type=row.event_type, resource_id=row.resource_id,
                        verdict="shadow", actor=row.actor, correlation_id=row.correlation_id,
                        delivery_id=f"{ctx.delivery_id}-shadow", event_time=row.event_time, policies=policies)
        would: list[str] = []
        for r in results:
            if r.exemption is not None:
                outcome, text = "exempted", f"would leave it: exempted by {r.exemption.owner}"
            elif r.notify or r.change is None:
                outcome, text = "violation", "would notify"
            elif r.rule.private_endpoint is not None and r.rule.private_endpoint.when_missing == "notify" \
                    and not approved_private_endpoints(snapshot):
                outcome, text = "violation", "would notify: no approved private endpoint connection"
            else:
                outcome, text = "remediated", f"would set {_short(r.change.after)}"
            would.append(outcome)
            srow.violations.append(ViolationRecord(policy=r.policy.ref, rule=r.rule.id, property=r.rule.property,
                                                   before=r.before, after=r.change.after if r.change else None,
                                                   outcome="shadow", message=text[:300]))
        verdict = combine_verdict(would)
        message = "; ".join(f"{v.policy}/{v.rule}: {v.message}" for v in srow.violations) or \
            f"compliant with {', '.join(policies)}"
        self._finish(ctx, srow, "shadow", verdict, f"shadow ({verdict}): {message}")

    def _recover(self, ctx: _Ctx, row: AuditRow, snapshot: ResourceSnapshot) -> None:
        """This delivery took the event over from one that died holding it, and finds the resource
        compliant. If that one counted a revert (its flip-flop intent) and the values it set out to
        write hold now, it made the fix and died before its audit row: record the violation and
        its revert (``remediated``), not a bare ``compliant``. Nothing when it did audit its
        decision (it died after that row: ``republish`` sends it). Two table reads, on takeovers only."""
        try:
            if any(r.verdict != "shadow" for r in self.audit.rows_of_delivery(row.resource_id, ctx.takeover)):
                return
            changes = json.loads(self.escalations.intent(row.resource_id, row.event_id) or "[]")
        except (StoreError, ValueError) as exc:
            emit(log, logging.WARNING, "guardrail_takeover_intent_unread", error=type(exc).__name__)
            return
        held = [c for c in changes if isinstance(c, dict) and {"policy", "rule", "property", "after"} <= c.keys()
                and values_equal(snapshot.value(c["property"])[0], c["after"])]
        if not held:
            return
        note = (f"an earlier delivery of this event ({ctx.takeover[:64]}) set out to revert this and stopped "
                "before its audit row; the value read now holds")
        row.violations = [ViolationRecord(policy=str(c["policy"]), rule=str(c["rule"]), property=str(c["property"]),
                                          before=c.get("before"), after=c["after"], outcome="remediated",
                                          message=note[:300]) for c in held]
        row.verdict = "remediated"
        row.message = "; ".join(f"{v.policy}/{v.rule}: {v.property} {_short(v.before)} -> {_short(v.after)} "
                                f"(remediated)" for v in row.violations)[:2000 - len(note) - 2] + "; " + note

    def _flip_flop(self, row: AuditRow, rid, to_apply, reasons: list[str]):
        """Count this revert against the resource's flip-flop budget; past it, revert nothing,
        record ``escalated`` with the actors whose changes were reverted, and tell the owner.
        The count keeps what the revert sets out to change (``_recover`` reads it)."""
        rule = strictest(getattr(r.policy, "flip_flop", DEFAULT_FLIP_FLOP) for r, _rec in to_apply)
        intent = json.dumps([{"policy": rec.policy, "rule": rec.rule, "property": rec.property,
                              "before": rec.before, "after": rec.after} for _r, rec in to_apply], default=str)
        # keyed by the event: Event Grid's redeliveries of one change whose revert failed count once
        decision = self.escalations.attempt(str(rid), row.actor.to_dict(), rule=rule, event=row.event_id or None,
                                            intent=intent)
        if decision.allowed:
            return to_apply
        who = describe_actors(decision.actors)
        first = "escalated now" if decision.escalated_now else "still escalated"
        for _r, rec in to_apply:
            rec.outcome = "escalated"
            rec.message = (f"not reverted ({first}): reverted {decision.reverts} times in "
                           f"{rule.window_minutes} min, changes by {who}; held until "
                           f"`guardrails escalation reset`")[:300]
        row.notify = True
        reasons.append("flip_flop")
        emit(log, logging.WARNING, "guardrail_escalated", resource_id=str(rid), reverts=decision.reverts,
             window_minutes=rule.window_minutes, actors=who, escalated_now=decision.escalated_now)
        return []

    def _apply(self, ctx: _Ctx, row: AuditRow, snapshot: ResourceSnapshot, rtype: ResourceType,
               to_apply: list[tuple[RuleResult, ViolationRecord]]) -> None:
        # one write per resource: merge every change; conflicting targets fail loudly
        desired: dict[str, Any] = {}
        conflicts: set[str] = set()
        for r, _rec in to_apply:
            path = r.change.property
            if path in desired and not values_equal(desired[path], r.change.after):
                conflicts.add(path)
            desired.setdefault(path, r.change.after)
        ok = [(r, rec) for r, rec in to_apply if r.change.property not in conflicts]
        for r, rec in to_apply:
            if r.change.property in conflicts:
                rec.outcome, rec.message = "failed", "policies demand different values for this property"
                row.reason = "conflicting_policies"
        if not ok:
            return
        rid = snapshot.resource_id
        # our write's own event carries this id (data.correlationId); unless the fix is left
        # ``requested`` (a pending record), that event needs no lookup at all
        correlation = str(uuid.uuid4())
        try:
            if rtype.write_method == "put":
                body = copy.deepcopy(dict(snapshot.body))
                for key in _READ_ONLY_TOP:
                    body.pop(key, None)
                for r, _rec in ok:
                    _set_path(body, r.change.property, r.change.after)
                result = self.arm.put_resource(rid, body, api_version=rtype.api_version, etag=snapshot.etag,
                                               deadline=ctx.deadline, correlation_id=correlation)
            else:
                body = _patch_body(snapshot.body, [(r.change.property, r.change.after) for r, _rec in ok])
                result = self.arm.patch_resource(rid, body, api_version=rtype.api_version, deadline=ctx.deadline,
                                                 correlation_id=correlation)
        except ResourceNotFound:
            for _r, rec in ok:
                rec.outcome, rec.message = "failed", "resource disappeared before the fix"
            row.reason = "resource_not_found"
            return
        except ArmError as exc:
            for _r, rec in ok:
                rec.outcome, rec.message = "failed", str(exc)[:300]
            row.reason = exc.reason
            return
        if result.state == "requested":
            for _r, rec in ok:
                rec.outcome, rec.message = "requested", "long-running fix accepted, still running"
            return
        self.settled.add(correlation)
        # confirm: read back and check every property really holds the value we set
        self.snapshots.forget(rid)
        try:
            sent = self.snapshots.now()
            after = self.arm.get_resource(rid, api_version=rtype.api_version, deadline=ctx.deadline)
            self.snapshots.put(after, requested_at=sent)
        except ArmError as exc:
            for _r, rec in ok:
                rec.outcome, rec.message = "requested", f"fix sent, read-back failed: {exc.reason}"
            return
        for r, rec in ok:
            value, _present = after.value(r.change.property)
            if values_equal(value, r.change.after):
                rec.outcome, rec.message = "remediated", "fixed and confirmed by read-back"
            else:
                rec.outcome, rec.message = "failed", f"read-back shows {_short(value)}"
                row.reason = "not_confirmed"

    def _resource_lock(self, resource_id: str) -> threading.Lock:
        return self._locks[hash(resource_id.lower()) % len(self._locks)]

    def _breaker_permits(self, row: AuditRow, rid, to_apply):
        """One permit per policy per event; a policy whose breaker is open drops to audit."""
        allowed: dict[str, bool] = {}
        kept = []
        for r, rec in to_apply:
            pol = r.policy
            if pol.id not in allowed:
                allowed[pol.id] = self.breakers.try_acquire(
                    pol.id, rid.subscription_id or "", max_actions=pol.breaker.max_actions,
                    window_seconds=pol.breaker.window_seconds)
                if not allowed[pol.id]:
                    emit(log, logging.ERROR, "guardrail_circuit_open", policy=pol.id,
                         subscription_id=rid.subscription_id, max_actions=pol.breaker.max_actions,
                         window_seconds=pol.breaker.window_seconds)
            if allowed[pol.id]:
                kept.append((r, rec))
            else:
                rec.outcome = "dry_run"
                rec.message = (f"circuit open: more than {pol.breaker.max_actions} fixes in "
                               f"{pol.breaker.window_seconds} s; policy in audit for this subscription until reset")
                row.reason = "circuit_open"
        return kept

    def _own_write(self, ctx: _Ctx, row: AuditRow, event, rtype: ResourceType | None) -> AuditRow:
        """Our own write came back. Ignored with zero ARM calls, unless it completes a fix that
        was still running when its delivery ended (``requested``): then read back and confirm."""
        if rtype is None or self.settled.holds(event.correlation_id):
            # no pending record can exist for a write this worker saw finish: zero table reads
            return self._finish(ctx, row, "ignored", "own_write", "write made by the guardrail itself")
        pending = self.pending.list(str(event.resource_id))
        if not pending:
            return self._finish(ctx, row, "ignored", "own_write", "write made by the guardrail itself")
        rid = str(event.resource_id)
        self.snapshots.forget(rid)
        sent = self.snapshots.now()
        try:
            after = self.arm.get_resource(rid, api_version=rtype.api_version, deadline=ctx.deadline)
        except ResourceNotFound:
            for key, _rec in pending:
                self.pending.remove(rid, key)
            return self._finish(ctx, row, "ignored", "resource_not_found", "the resource no longer exists")
        except ArmError as exc:
            self._finish(ctx, row, "failed", exc.reason, str(exc))
            raise DeliveryFailed(f"delivery failed: {exc.reason}") from None
        self.snapshots.put(after, requested_at=sent)
        for _key, record in pending:
            for c in record.get("changes", []):
                value, _present = after.value(c["property"])
                ok = values_equal(value, c["after"])
                row.violations.append(ViolationRecord(
                    policy=c["policy"], rule=c["rule"], property=c["property"], before=c["before"], after=c["after"],
                    outcome="remediated" if ok else "failed",
                    message=(f"long-running fix of event {record.get('event_id')} confirmed by its write event"
                             if ok else f"long-running fix finished but read-back shows {_short(value)}")))
        row.verdict = combine_verdict([v.outcome for v in row.violations])
        reason = "" if row.verdict != "failed" else "not_confirmed"
        message = "; ".join(f"{v.policy}/{v.rule}: {v.property} -> {_short(v.after)} ({v.outcome})" for v in row.violations)
        self._finish(ctx, row, row.verdict, reason, message)
        for key, _rec in pending:
            self.pending.remove(rid, key)
        return row

    # ---------------------------------------------------------------------------------
    def _finish(self, ctx: _Ctx, row: AuditRow, verdict: str, reason: str, message: str, *,
                timer: bool = False, keep_time: bool = False) -> AuditRow:
        """Audit the decision, then publish it. ``timer``: no redelivery will come if this worker
        dies, so the decision event is first kept as an outbox intent (``outbox`` module doc).
        ``keep_time``: a parked decision keeps the time (and so the row keys) of its first write,
        which may have stored one of its two rows: written again, it replaces it."""
        row.verdict, row.reason, row.message = verdict, reason, message[:2000]
        if not (keep_time and row.time):
            row.time = _now_iso(self._wall())
            row.duration_ms = round((self._clock() - ctx.started) * 1000.0, 3)
        intended = timer and self.publisher is not None and self.publisher.intend(row)
        self.audit.write(row)   # StoreError propagates: nothing is acknowledged unaudited
        if self.publisher is not None:   # after the row is safe; never raises (outbox on failure)
            self.publisher.publish(row, intended=intended)
        level = logging.WARNING if verdict in ("failed", "invalid", "violation", "escalated") else logging.INFO
        emit(log, level, "guardrail_decision", verdict=verdict, reason=reason, event_type=row.event_type,
             resource_id=row.resource_id, duration_ms=row.duration_ms)
        return row


CHECK_EVENT_TYPE = "Guardrails.CheckResource"
DEAD_LETTER_EVENT_TYPE = "Guardrails.DeadLetter"


def kv_object_id(ev) -> str:
    """The audit's resource id for a Key Vault object: its data-plane URL, without version."""
    if ev.object_name is None:
        return str(ev.vault_id) if ev.vault_id is not None else f"https://{ev.vault_name.lower()}.vault.azure.net"
    kind = {"Secret": "secrets", "Key": "keys", "Certificate": "certificates"}.get(ev.object_type or "Secret", "secrets")
    return f"https://{ev.vault_name.lower()}.vault.azure.net/{kind}/{ev.object_name}"


class _CheckTarget:
    """What an on-demand check knows: the resource id, no event time (always read fresh)."""

    class _Env:
        time = None

    def __init__(self, resource_id) -> None:
        self.resource_id = resource_id
        self.envelope = self._Env()


class SettledWrites:
    """Correlation ids of this worker's fixes that finished within their delivery.

    A pending-fix record exists only for a write left ``requested``; a write this worker saw
    finish never has one. So its own write event (``data.correlationId`` = the id sent as
    ``x-ms-correlation-request-id``) is ignored without looking records up. The fact never goes
    stale, whatever other instances do; an event this worker cannot vouch for (another instance's
    write, an id evicted from the bounded memory) is looked up as before.
    """

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._ids: dict[str, None] = {}
        self._lock = threading.Lock()

    def add(self, correlation_id: str) -> None:
        with self._lock:
            if len(self._ids) >= self._size:
                self._ids.pop(next(iter(self._ids)))
            self._ids[correlation_id.lower()] = None

    def holds(self, correlation_id: str | None) -> bool:
        return bool(correlation_id) and correlation_id.lower() in self._ids


class SnapshotCache:
    """Re-use a resource read for events that happened before it.

    A snapshot read at wall time R already reflects every change ARM reported before R. An event
    whose ``eventTime`` is older than R minus the allowed clock skew is decided on that snapshot
    instead of a new GET, as long as the snapshot is younger than ``max_age`` — so a burst of
    events for one resource costs one read, and every decision is still on live state.
    """

    def __init__(self, *, max_age: float, skew: float, wall_clock: Callable[[], datetime], size: int = 1024) -> None:
        self._max_age, self._skew, self._wall, self._size = max_age, skew, wall_clock, size
        self._items: dict[str, tuple[ResourceSnapshot, datetime]] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, resource_id: str, event_time: datetime | None) -> ResourceSnapshot | None:
        if self._max_age <= 0 or event_time is None:
            return None
        with self._lock:
            item = self._items.get(resource_id.lower())
        if item is None:
            return None
        snapshot, read_at = item
        now = self._wall()
        if (now - read_at).total_seconds() > self._max_age:
            return None
        if (read_at - event_time).total_seconds() <= self._skew:
            return None
        self.hits += 1
        return snapshot

    def now(self) -> datetime:
        """Take this before sending the GET whose answer goes to ``put``."""
        return self._wall()

    def put(self, snapshot: ResourceSnapshot, *, requested_at: datetime) -> None:
        """``requested_at``: when the GET was sent, not when its answer came. A change that lands
        while the answer is on its way is not in the snapshot; stamped on arrival, that change's
        event would look older than the snapshot and be decided on the state before it."""
        if self._max_age <= 0:
            return
        with self._lock:
            if len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)))
            self._items[snapshot.resource_id.lower()] = (snapshot, requested_at)

    def forget(self, resource_id: str) -> None:
        with self._lock:
            self._items.pop(resource_id.lower(), None)


def _resource_event_types() -> frozenset[str]:
    from .model.events import RESOURCE_EVENT_TYPES
    return frozenset(RESOURCE_EVENT_TYPES)


def _selects_subscription(policy, subscription_id: str | None) -> bool:
    """Whether the policy's selector takes in the subscription (None: a scope above every one,
    which only a selector-less policy governs). A ``CompiledRolePolicy`` wraps its policy."""
    selector = getattr(getattr(policy, "policy", policy), "selector", None)
    subs = getattr(selector, "subscriptions", ()) or ()
    return not subs or (subscription_id or "").lower() in {s.lower() for s in subs}


def _tags_match(policy, tags: Mapping[str, str]) -> bool:
    wanted = policy.selector.tags or {}
    if not wanted:
        return True
    lowered = {str(k).lower(): v for k, v in tags.items()}
    return all(lowered.get(str(k).lower()) == v for k, v in wanted.items())


def approved_private_endpoints(snapshot: ResourceSnapshot) -> int:
    """Private endpoint connections in ``Approved`` state (and not failed or being deleted)."""
    conns, _present = snapshot.value("properties.privateEndpointConnections")
    count = 0
    for c in conns if isinstance(conns, list) else ():
        props = c.get("properties") if isinstance(c, Mapping) else None
        if not isinstance(props, Mapping):
            continue
        state = props.get("privateLinkServiceConnectionState") or {}
        status = state.get("status") if isinstance(state, Mapping) else None
        prov = str(props.get("provisioningState") or "Succeeded").lower()
        if isinstance(status, str) and status.lower() == "approved" and prov not in ("failed", "deleting"):
            count += 1
    return count


def _owner(snapshot: ResourceSnapshot, results) -> tuple[str, str]:
    """Who to tell: the value of the policy's owner tag on the resource, else the policy's
    contact, else "unknown". Returns ``(owner, where it came from)``."""
    tag = next((r.policy.notify_tag for r in results), "owner")
    lowered = {str(k).lower(): v for k, v in snapshot.tags.items()}
    if lowered.get(tag.lower()):
        return str(lowered[tag.lower()]), tag
    contact = next((r.policy.contact for r in results if getattr(r.policy, "contact", "")), "")
    return (contact, "policy contact") if contact else ("unknown", tag)


def _key_in(obj: dict, seg: str) -> str:
    """The key of ``obj`` spelling ``seg`` (exact, else case-insensitive), else ``seg``: a change
    never adds a second spelling of a property the body already has."""
    if seg in obj:
        return seg
    low = seg.lower()
    return next((k for k in obj if isinstance(k, str) and k.lower() == low), seg)


def _set_path(body: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    cur = body
    for seg in parts[:-1]:
        key = _key_in(cur, seg)
        nxt = cur.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[key] = nxt
        cur = nxt
    cur[_key_in(cur, parts[-1])] = value


def _get_path(body: Any, parts: list[str]) -> Any:
    cur = body
    for seg in parts:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(_key_in(cur, seg))
    return cur


def _patch_body(current: Mapping[str, Any], changes: list[tuple[str, Any]]) -> dict:
    """A PATCH body setting ``changes`` (dotted paths). A change below a member of ``properties``
    (``properties.networkAcls.defaultAction``) sends that member whole, as read, with the change
    made: resource providers replace such a member on PATCH rather than merge it (Storage drops the
    ``ipRules``, ``virtualNetworkRules`` and ``bypass`` a bare ``{"defaultAction": "Deny"}`` leaves
    out), and under a true merge patch the whole member is the same request."""
    body: dict = {}
    for path, value in changes:
        parts = path.split(".")
        if len(parts) > 2 and _get_path(body, parts[:2]) is None:
            member = _get_path(current, parts[:2])
            if isinstance(member, dict):
                _set_path(body, ".".join(parts[:2]), copy.deepcopy(member))
        _set_path(body, path, value)
    return body


__all__ = ["GuardrailsService", "DeliveryFailed", "Actor"]
