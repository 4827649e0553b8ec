"""The use case every entry point shares: handle one delivered resource event.

    parse envelope ─▶ parse data ─▶ classify (ignored / own write) ─▶ policies (table, cached)
      ─▶ idempotency claim ─▶ read live state ─▶ evaluate (pure) ─▶ plan (pure) ─▶ apply ─▶ confirm
      ─▶ audit row (always) ─▶ complete claim (or release it on failure so Event Grid retries)

This module routes and owns the claim and the row; the decision itself is made by the guardrail
for the id's kind (``resource_guardrail``, ``role_guardrail``, ``secret_guardrail``,
``ml_guardrail``), each given the service for its gateways, stores and safety rails (flip-flop
budget, circuit breaker).

``handle_event`` returns the audit row it wrote. It raises only when Event Grid must redeliver:
``DeliveryFailed`` after a ``failed`` row, ``IdempotencyError`` while another delivery holds the
event, ``StoreError`` when Table Storage is unavailable (then nothing was acknowledged).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from .caches import SettledWrites, SnapshotCache
from .decision_context import _CheckTarget, _Ctx, _event_time, _now_iso, kv_object_id
from .errors import GuardrailsError, InvalidEvent, PolicyUnreadable
from .logs import bound, emit
from .model.decision import Actor, AuditRow, acted, as_it_stood, short_repr
from .model.events import parse_envelope, parse_resource_event
from .model.keyvault_events import KEYVAULT_EVENT_TYPES, SECRET_EXPOSED, exposure_scope, parse_keyvault_event
from .model.resource import lookup_type
from .policy.cache import PolicyCache
from .ports import AuditSink, BreakerStore, IdempotencyStore, PendingFixStore, ResourceGateway
from .resource_guardrail import ResourceGuardrail
from .safety_rails import SafetyRails
from .settings import Settings
from .pending_confirm import WRITE_SUCCESS, PendingConfirmations
from .timer_decisions import TimerDecisions

log = logging.getLogger("guardrails")

_OWN_WRITE_ENDS = ("Microsoft.Resources.ResourceWriteFailure", "Microsoft.Resources.ResourceWriteCancel")
ROLE_ASSIGNMENT_TYPE = "microsoft.authorization/roleassignments"
ROLE_DEFINITION_TYPE = "microsoft.authorization/roledefinitions"


# provisioning states of a write still under way (ARM's and the resource providers' spellings)


class DeliveryFailed(GuardrailsError):
    """The delivery ended ``failed`` and was audited; raising makes Event Grid redeliver. Its
    ``reason`` is the row's (``forbidden``, ``throttled`` …), for a caller that answers for it."""

    reason = "failed"


class GuardrailsService(PendingConfirmations, TimerDecisions):
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
        self.rails = SafetyRails(self)              # flip-flop budget, circuit breaker
        self.resources = ResourceGuardrail(self)    # the catalogue's resource types

    # ---------------------------------------------------------------------------------
    def handle_event(self, raw: Any, *, actor: Actor | None = None, said_by: str | None = None,
                     delivery_id: str | None = None) -> AuditRow:
        """``actor``: the verified caller of a report that arrives over HTTP (an event names its own).
        ``said_by``: who handed the event on other than its delivery (a dead-letter replay), ending the
        row's message; names only, never content. ``delivery_id``: the id a caller that answers for
        the delivery already gave it (the exposure endpoint's ``decision_id``), so its answer names the
        row even when this raises; a new one otherwise."""
        start = self._clock()
        ctx = _Ctx(delivery_id or uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall(),
                   said_by=(said_by or "")[:300])
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
                return self._dispatch(ctx, row, raw)
            except PolicyUnreadable as exc:
                # a policy row is unreadable: a decision on the rest would be one without that policy
                self._finish(ctx, row, "failed", exc.reason, str(exc))
                raise DeliveryFailed(f"delivery failed: {exc.reason}", reason=exc.reason) from None

    def _dispatch(self, ctx: _Ctx, row: AuditRow, raw: Any) -> AuditRow:
        try:
            env = parse_envelope(raw)
            canonical = _canonical_event_types().get(env.event_type.lower())
            if canonical is not None and canonical != env.event_type:
                env = replace(env, event_type=canonical)     # Event Grid matches types case-insensitively
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
                                    f"event type {short_repr(env.event_type)} is not handled by any guardrail")
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
                              lambda: self.resources.decide(ctx, row, target, rtype, compiled, candidates))
        policies = [p for p in getattr(self.policies.get(), "secret_policies", ())
                    if p.mode != "off" and p.governs(ev.vault_name)] if self.secrets is not None else []
        if not policies:
            reason, why = (("not_covered", "secret guardrail not configured") if self.secrets is None
                           else ("no_policy", f"no secrets policy governs vault {ev.vault_name}"))
            if ev.kind == "Exposed":
                # a leaked credential nothing will rotate: never a quiet "ignored"; its owner acts —
                # once per event (a redelivery is a duplicate, not a second alarm)
                def tell() -> None:
                    row.verdict, row.reason, row.message, row.notify = "ignored", reason, why + ": rotate it by hand", True
                    emit(log, logging.ERROR, "exposure_not_governed", reason=reason, vault=ev.vault_name,
                         object=ev.object_name)
                return self._once(ctx, row, row.resource_id, tell, claim_scope=exposure_scope(ev))
            return self._finish(ctx, row, "ignored", reason, why)
        return self._once(ctx, row, row.resource_id, lambda: self.secrets.decide(ctx, row, ev, policies),
                          claim_scope=exposure_scope(ev))

    def report_exposure(self, *, vault: str, name: str, version: str | None, source: str,
                        actor: Actor | None = None, delivery_id: str | None = None,
                        report_id: str | None = None) -> AuditRow:
        """An exposure reported over HTTP: the same path as a ``Guardrails.SecretExposed`` event
        (``delivery_id``: as ``handle_event``'s). ``report_id`` (the reporter's, one per finding)
        gives a retried report the event id of its first attempt, so it is handled as a redelivery
        (the rotated version, tagged with that id, answers it); without one each report is new."""
        if report_id:
            key = hashlib.sha256(f"{vault.lower()}|{name.lower()}|{report_id.lower()}".encode()).hexdigest()[:32]
        else:
            key = uuid.uuid4().hex
        raw = {"specversion": "1.0", "id": f"exposure-{key}", "type": SECRET_EXPOSED,
               "source": "guardrails/http/secrets/exposed", "subject": name,
               "time": self._wall().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "data": {"VaultName": vault, "ObjectName": name, "ObjectType": "Secret", "Version": version,
                        "Source": source}}
        # the caller is on the audit row as it is written
        return self.handle_event(raw, actor=actor, delivery_id=delivery_id)

    def _handle_resource_event(self, ctx: _Ctx, row: AuditRow, event) -> AuditRow:
        rid = event.resource_id
        # the caller's object id decides when the token has one: a user signing in through a client
        # with the guardrail's app id carries that app id too, and is not the guardrail
        actor = event.actor
        own = self.settings.is_own_principal(actor.object_id if actor.object_id else actor.app_id)
        # a long-running fix left ``requested`` that then fails or is cancelled comes back as our
        # own ResourceWriteFailure/Cancel: its pending record is read back and audited like a success
        if event.event_type != WRITE_SUCCESS and not (own and event.event_type in _OWN_WRITE_ENDS):
            return self._finish(ctx, row, "ignored", "event_type_not_evaluated",
                                f"{event.event_type} does not change a resource's configuration")
        if own:
            return self._own_write(ctx, row, event, self._own_write_type(rid))
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
        return (lambda: self.resources.decide(ctx, row, target, rtype, compiled, candidates)), None

    def check_resource(self, resource_id: str, *, remediate: bool, actor: Actor | None = None,
                       decision_id: str | None = None, correlation_id: str = "", said_by: str = "") -> AuditRow:
        """On-demand check (HTTP / CLI): the decision the event path would make for this resource,
        on its live state. Acts only when ``remediate``. Raises InvalidArmId for a bad id; nothing
        but the id's own resource is ever read. ``said_by``: who asked, ending the row's message
        (``[cli as …]``), as the job checks' rows end."""
        from .model.arm_id import parse_arm_id

        start = self._clock()
        ctx = _Ctx(decision_id or uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall(),
                   dry_run=not remediate, said_by=said_by[:300])
        rid = parse_arm_id(resource_id)
        row = AuditRow(event_id=ctx.delivery_id, event_type=CHECK_EVENT_TYPE, resource_id=str(rid), verdict="ignored",
                       delivery_id=ctx.delivery_id, actor=actor or Actor(), correlation_id=correlation_id[:128])
        with bound(delivery_id=ctx.delivery_id, resource_id=str(rid)):
            decide, done = self._route(ctx, row, rid, _CheckTarget(rid))
            if done is not None:
                return done
            lock = self._hold(ctx, str(rid))
            if lock is None:       # answered 503 (busy): the caller asks again
                return self._finish(ctx, row, "failed", "busy",
                                    "another decision held this resource for the whole time budget; ask again")
            try:
                decide()
            finally:
                lock.release()
            return self._finish(ctx, row, row.verdict, row.reason, row.message)

    def _once(self, ctx: _Ctx, row: AuditRow, resource_id: str, decide: Callable[[], None], *,
              final: frozenset[str] = frozenset(), claim_scope: str = "") -> AuditRow:
        """Exactly-once effects on an at-least-once stream: claim the event id, decide and act,
        audit, then mark it completed — or release it so Event Grid's retry can run (a ``failed``
        row, unless its reason is in ``final``: an outcome, not a failure to decide). ``claim_scope``:
        what, beside its id, makes an event one (a custom topic's publisher chooses its ids)."""
        key = f"event:{row.event_id}" + (f"|{claim_scope}" if claim_scope else "")
        claim = self.idempotency.acquire(key, holder=ctx.delivery_id)  # IdempotencyError propagates
        if claim.state == "completed":
            return self._finish(ctx, row, "duplicate", "duplicate",
                                f"event already handled (verdict {claim.verdict or 'unknown'}); nothing done")
        if claim.previous_holder and self.publisher is not None:
            # the attempt this one takes over died holding the event: it may have audited a decision
            # and died before publishing it, and the state it left decides differently now
            self.publisher.republish(row.resource_id, claim.previous_holder)
        if claim.parked is not None:
            return self._audit_parked(ctx, key, claim, final)
        ctx.takeover = claim.previous_holder or ""
        ctx.taken_intent = (claim.intent or "") if ctx.takeover else ""
        ctx.claim = (key, claim)
        parked = False
        try:
            # deliveries for one resource in this worker take turns: the second decides on the
            # state the first left (diff before write), never sending a fix twice
            try:
                # bounded by the delivery's budget: 64 stripes are shared by unrelated resources, and
                # a holder may be polling a long-running fix; past the budget, Event Grid redelivers
                lock = self._hold(ctx, resource_id)
                if lock is None:
                    row.verdict, row.reason = "failed", "busy"
                    row.message = "another decision held this resource's lock for the whole time budget; retried"
                else:
                    try:
                        decide()
                    finally:
                        lock.release()
            finally:
                claim = ctx.claim[1]          # a noted intent changed the claim's token
                ctx.claim = None
            try:
                self._finish(ctx, row, row.verdict, row.reason, row.message)
            except BaseException:
                parked = self._park(key, claim, row)
                raise
        except BaseException:
            if not parked and acted(row):
                # the decision failed after it acted (a fix accepted, then a table write after it
                # failed): released, the retry would find the fix in place and audit ``compliant``,
                # the change and its revert gone; parked, the retry audits the decision as it stood
                parked = self._park(key, claim, as_it_stood(row))
            if not parked:
                self.idempotency.hand_on(key, claim)
            raise
        if row.verdict == "failed" and row.reason not in final:
            # let Event Grid's retry run it again; a takeover hands the dead attempt on to it (its
            # fix or deletion, never audited, would otherwise be recorded by nobody)
            self.idempotency.hand_on(key, claim)
            raise DeliveryFailed(f"delivery failed: {row.reason}", reason=row.reason or None)
        self.idempotency.complete(key, claim, verdict=row.verdict)
        return row

    def note_intent(self, ctx: _Ctx, intent: Any) -> None:
        """Before an act whose effect cannot show what it was (a deletion): keep ``intent`` with
        the event's claim, so an attempt that takes the event over from this one, should it die
        before its audit row, can record what was done (``taken_intent``). One table write; none
        outside a claim (checks, timers: no redelivery). Raises StoreError / IdempotencyError
        (nothing has been done yet: the event is retried)."""
        if ctx.claim is None:
            return
        key, claim = ctx.claim
        text = json.dumps(intent, default=str, sort_keys=True)
        ctx.claim = (key, self.idempotency.note(key, claim, text))

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

    def _audit_parked(self, ctx: _Ctx, key: str, claim, final: frozenset[str] = frozenset()) -> AuditRow:
        """An earlier delivery of this event acted and could not write its row: write that row
        now (the decision as it was made, noted as audited late), nothing decided again; a
        ``failed`` row is retried after it as on the first attempt, unless its reason is in
        ``final`` (``_once``'s: an outcome, not a failure to decide)."""
        prior = AuditRow.from_dict(claim.parked)
        note = f" [audited by a later delivery ({ctx.delivery_id}): the first audit write failed]"
        try:
            self._finish(ctx, prior, prior.verdict, prior.reason, prior.message[:2000 - len(note)] + note,
                         keep_time=True)
        except BaseException:
            self._park(key, claim, prior)
            raise
        if prior.verdict == "failed" and prior.reason not in final:     # as on the first attempt: audited, then retried
            self.idempotency.release(key, claim)
            raise DeliveryFailed(f"delivery failed: {prior.reason}", reason=prior.reason or None)
        self.idempotency.complete(key, claim, verdict=prior.verdict)
        return prior

    def share_coordination(self, other: "GuardrailsService") -> None:
        """Take ``other``'s in-process coordination: its resource lock stripes, snapshot cache,
        settled writes and policy cache. The timers' service (paced gateways of its own) shares the
        event service's, so a sweep or replayed decision and a live delivery for one resource in
        this worker take turns, and neither decides on a read the other's fix made stale."""
        self._locks, self.snapshots, self.settled = other._locks, other.snapshots, other.settled
        self.policies = other.policies

    # ---------------------------------------------------------------------------------
    def _hold(self, ctx: _Ctx, resource_id: str):
        """The resource's lock stripe, taken within the decision's budget; None when another
        decision held it all that time (64 stripes are shared by unrelated resources, and a holder
        may be polling a long-running fix): never a wait past the budget."""
        lock = self._resource_lock(resource_id)
        return lock if lock.acquire(timeout=max(0.05, ctx.deadline - self._clock())) else None

    def _resource_lock(self, resource_id: str) -> threading.Lock:
        return self._locks[hash(resource_id.lower()) % len(self._locks)]

    def _own_write_type(self, rid):
        """The type whose pending fixes an own write of ``rid`` may settle (None: none can)."""
        covered = rid.resource_group and rid.scope is None and rid.resource_type.lower() != ROLE_ASSIGNMENT_TYPE
        rtype = lookup_type(rid.resource_type) if covered else None
        if rtype is None and self.ml is not None and self.ml.covers(rid):
            rtype = self.ml.resource_type(rid)       # its long-running fixes are pending fixes too
        return rtype

    # ---------------------------------------------------------------------------------
    def _finish(self, ctx: _Ctx, row: AuditRow, verdict: str, reason: str, message: str, *,
                timer: bool = False, keep_time: bool = False) -> AuditRow:
        """Audit the decision, then publish it. ``timer``: no redelivery will come if this worker
        dies, so the decision event is first kept as an outbox intent (``outbox`` module doc).
        ``keep_time``: a parked decision keeps the time (and so the row keys) of its first write,
        which may have stored one of its two rows: written again, it replaces it."""
        suffix = f" [{ctx.said_by}]" if ctx.said_by else ""
        row.verdict, row.reason, row.message = verdict, reason, message[:2000 - len(suffix)] + suffix
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


def _resource_event_types() -> frozenset[str]:
    from .model.events import RESOURCE_EVENT_TYPES
    return frozenset(RESOURCE_EVENT_TYPES)


@functools.cache
def _canonical_event_types() -> dict[str, str]:
    """Every event type a guardrail handles, by its lower case: a type spelled in another case is
    the same type (Event Grid's own filters compare types case-insensitively)."""
    from .model.ml_events import ML_EVENT_TYPES
    return {t.lower(): t for t in (*_resource_event_types(), *KEYVAULT_EVENT_TYPES, *ML_EVENT_TYPES)}


def _selects_subscription(policy, subscription_id: str | None) -> bool:
    """Whether the policy's selector takes in the subscription (None: a scope above every one,
    which only a selector-less policy governs). A ``CompiledRolePolicy`` wraps its policy."""
    selector = getattr(getattr(policy, "policy", policy), "selector", None)
    subs = getattr(selector, "subscriptions", ()) or ()
    return not subs or (subscription_id or "").lower() in {s.lower() for s in subs}


__all__ = ["GuardrailsService", "DeliveryFailed", "Actor"]
