"""The timers' decisions on the service: the reconciling sweep's and the exemption expiry's
(``reconcile``), a lost Key Vault event's (``reconcile_secret``), event coverage
(``record_coverage``) and an unreadable dead-letter blob (``record_unreadable_dead_letter``).
No idempotency claim (a timer run is not redelivered); each decision is kept as an outbox intent
before it is audited (``GuardrailsService._finish(timer=True)``)."""

from __future__ import annotations

import logging
import uuid
from typing import Callable

from .decision_context import _CheckTarget, _Ctx, _now_iso, kv_object_id
from .errors import ArmError
from .logs import bound, emit, holding_notices
from .model.decision import Actor, AuditRow, ViolationRecord
from .model.resource import ResourceSnapshot

DEAD_LETTER_EVENT_TYPE = "Guardrails.DeadLetter"

log = logging.getLogger("guardrails")


def _gate(notice_gate: Callable[..., str | None] | None, row: AuditRow, held: list) -> None:
    """A repeat the gate recognises is recorded with its note, ``notify`` false, and its held
    notice lines dropped; news keeps them (``logs.holding_notices`` emits them)."""
    if notice_gate is None:
        return
    repeat = notice_gate(row, held)
    if repeat:
        row.notify = False
        held.clear()
        row.message = (row.message + repeat)[:2000]


class TimerDecisions:
    """Mixed into ``GuardrailsService``: uses its settings, clocks, policies, guardrails, lock
    stripes, ``_route`` and ``_finish``."""

    def reconcile(self, resource_id: str, snapshot: ResourceSnapshot | None, *, sweep_id: str,
                  remediate: bool = True, event_type: str = "Guardrails.Sweep",
                  deadline: float | None = None,
                  notice_gate: Callable[..., str | None] | None = None, actor: Actor | None = None) -> AuditRow:
        """A timer's decision (reconciling sweep, exemption expiry): the event path's decision for
        this resource on ``snapshot`` (a listed body: no second read) or, when None, on a fresh
        read. Acts unless ``remediate`` is False. One audit row, ``correlation_id`` = the run id;
        no idempotency claim (a timer run is not redelivered; the fix itself diffs first), so a
        published decision is kept as an outbox intent before it is audited. ``notice_gate`` (the
        sweep's ``sweep_notices.NoticeGate``): sees every decision; for one that would tell its
        owner of findings they were already told of, returns why it is not news: the row is then
        written with ``notify`` false and that note, and the held notice lines are dropped.
        ``actor``: who made the change a nested re-decision answers (a model version's, a role
        definition's), on the row as on that change's own: its flip-flop count and an escalation
        name them; a timer's own decisions have none."""
        from .model.arm_id import parse_arm_id

        start = self._clock()
        # ``deadline``: a re-decision nested in an event's stays within that event's budget
        budget_end = start + self.settings.time_budget_seconds
        ctx = _Ctx(uuid.uuid4().hex, start, budget_end if deadline is None else min(budget_end, deadline),
                   self._wall(), dry_run=not remediate, timer=True)
        rid = parse_arm_id(resource_id)
        row = AuditRow(event_id=f"{sweep_id}:{ctx.delivery_id}"[:256], event_type=event_type, resource_id=str(rid),
                       verdict="ignored", delivery_id=ctx.delivery_id, correlation_id=sweep_id[:128],
                       actor=actor or Actor())
        with bound(delivery_id=ctx.delivery_id, resource_id=str(rid)), holding_notices(notice_gate is not None) as held:
            target = _CheckTarget(rid)
            target.snapshot = snapshot        # the resource guardrail decides on it instead of reading
            decide, done = self._route(ctx, row, rid, target)
            if done is not None:
                return done
            # a re-decision nested in another (a role definition's assignments, a model version's
            # endpoints) holds that resource's lock stripe already: two of them taking stripes in
            # opposite order would wait for ever, so this wait is bounded by the time budget
            lock = self._hold(ctx, str(rid))
            if lock is None:
                return self._finish(ctx, row, "failed", "busy",
                                    "another decision held this resource for the whole time budget", timer=True)
            try:
                decide()
            finally:
                lock.release()
            _gate(notice_gate, row, held)
            return self._finish(ctx, row, row.verdict, row.reason, row.message, timer=True)

    def confirm_pending(self, resource_id: str, pending, *, sweep_id: str, give_up: bool = False,
                        seconds: float | None = None) -> AuditRow | None:
        """A sweep's confirmation of fixes left ``requested`` whose own write event never settled
        them (it arrived before the record was written, or was lost): the resource is read back
        and each fix audited ``remediated`` or ``failed``, as its write event would have; the
        records go. Only those of ``pending`` (as the sweep listed them) still kept when the
        resource's lock is taken are confirmed, each claimed first: one the fix's own late write
        event settled meanwhile is not audited again (none left: None). ``give_up``: a read that
        fails, or a write still running, forgets them too (audited ``failed``, once). ``seconds``:
        at most this long (the sweep's share for confirmations), the lock's wait and the read
        included; a lock not had in time leaves them for the next run (None). A type no guardrail
        covers any more: nothing can confirm them, they are forgotten (None)."""
        from .model.arm_id import parse_arm_id

        start = self._clock()
        budget = self.settings.time_budget_seconds
        ctx = _Ctx(uuid.uuid4().hex, start, start + (budget if seconds is None else min(seconds, budget)), self._wall(),
                   timer=True)
        rid = parse_arm_id(resource_id)
        rtype = self._own_write_type(rid)
        if rtype is None:
            for key, _rec in pending:
                self.pending.remove(str(rid), key)
            emit(log, logging.WARNING, "guardrail_pending_fix_dropped", resource_id=str(rid), count=len(pending),
                 reason="type_not_covered")
            return None
        row = AuditRow(event_id=f"{sweep_id}:{ctx.delivery_id}"[:256], event_type="Guardrails.Sweep",
                       resource_id=str(rid), verdict="ignored", delivery_id=ctx.delivery_id,
                       correlation_id=sweep_id[:128])
        with bound(delivery_id=ctx.delivery_id, resource_id=str(rid)):
            lock = self._hold(ctx, str(rid))
            if lock is None:
                return None
            try:
                return self._confirm_pending(ctx, row, str(rid), rtype, pending, via="confirmed by the sweep",
                                             timer=True, give_up=give_up)
            finally:
                lock.release()

    def reconcile_secret(self, vault: str, name: str, version: str | None, *, kind: str, sweep_id: str,
                         remediate: bool = True, object_type: str = "Secret",
                         notice_gate: Callable[..., str | None] | None = None,
                         unread: ArmError | None = None) -> AuditRow:
        """A timer's decision on a secret (or key: ``object_type="Key"``) whose event was lost: the
        secret guardrail's path for ``kind`` (``NearExpiry``, ``Expired``: rotation, on the version
        the sweep saw current, or, ``version`` None, on the one current under the rotation lease;
        if it is no longer current it was rotated meanwhile: compliant; ``NewVersionCreated``: the
        expiry hygiene of that version). One audit row, ``correlation_id`` = the run id, kept as an
        outbox intent like ``reconcile``. ``unread``: the sweep's own read of the object failed, so
        nothing is decided: the row is ``failed`` with its reason, as the event path's row for the
        same failed read (the error names the call, never a value)."""
        from .model.events import parse_envelope
        from .model.keyvault_events import parse_keyvault_event

        start = self._clock()
        ctx = _Ctx(uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall(),
                   dry_run=not remediate, timer=True)
        if kind not in ("NearExpiry", "Expired", "NewVersionCreated"):
            raise ValueError(f"unknown Key Vault event kind {kind!r}")
        raw = {"id": f"{sweep_id}:{ctx.delivery_id}"[:256], "eventType": f"Microsoft.KeyVault.{object_type}{kind}",
               "subject": name,
               "eventTime": _now_iso(ctx.now), "dataVersion": "1", "metadataVersion": "1",
               "data": {"VaultName": vault, "ObjectType": object_type, "ObjectName": name, "Version": version}}
        ev = parse_keyvault_event(parse_envelope(raw))      # InvalidEvent for a name Key Vault would refuse
        row = AuditRow(event_id=raw["id"], event_type="Guardrails.Sweep", resource_id=kv_object_id(ev),
                       verdict="ignored", delivery_id=ctx.delivery_id, correlation_id=sweep_id[:128])
        with bound(delivery_id=ctx.delivery_id, resource_id=row.resource_id), \
                holding_notices(notice_gate is not None) as held:
            policies = [p for p in getattr(self.policies.get(), "secret_policies", ())
                        if p.mode != "off" and p.governs(vault)]
            if self.secrets is None or not policies:
                return self._finish(ctx, row, "ignored", "no_policy", f"no secrets policy governs vault {vault}",
                                    timer=True)
            if unread is not None:
                return self._finish(ctx, row, "failed", unread.reason, f"read {object_type.lower()}: {unread}",
                                    timer=True)
            with self._resource_lock(row.resource_id):
                self.secrets.decide(ctx, row, ev, policies)
            _gate(notice_gate, row, held)      # as ``reconcile``: an unchanged open finding is told once
            return self._finish(ctx, row, row.verdict, row.reason, row.message, timer=True)

    def record_coverage(self, coverage, *, sweep_id: str, verdict: str, notify: bool) -> AuditRow:
        """A sweep's event-coverage decision for one event source (a subscription, a governed vault
        or ML workspace: ``guardrails.coverage``): a ``violation`` (reason ``event_coverage``, one
        violation record per gap) or the ``compliant`` row that closes one. Audited and published
        like any timer decision."""
        from .coverage import CHECK_ID, REASON

        start = self._clock()
        ctx = _Ctx(uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall(), timer=True)
        row = AuditRow(event_id=f"{sweep_id}:{ctx.delivery_id}"[:256], event_type="Guardrails.Sweep",
                       resource_id=coverage.resource_id, verdict="ignored", delivery_id=ctx.delivery_id,
                       correlation_id=sweep_id[:128], notify=notify, policies=[CHECK_ID])
        row.violations = [ViolationRecord(policy=CHECK_ID, rule=g.code, property="eventSubscription",
                                          before=g.detail, after=None, outcome="violation")
                          for g in coverage.gaps]
        with bound(delivery_id=ctx.delivery_id, resource_id=coverage.resource_id):
            return self._finish(ctx, row, verdict, REASON, coverage.message(), timer=True)

    def record_unreadable_dead_letter(self, container: str, blob: str, why: str, *, run_id: str,
                                      reason: str = "unreadable_dead_letter", message: str = "") -> AuditRow:
        """A dead-letter blob with no event to hand to ``handle_event`` (not JSON, too large …; with
        ``reason``/``message``: one not to replay at all, ``replay.record_rejected_dead_letter``):
        audited ``invalid`` like any bad delivery, under the blob's name (``guardrails.replay``).
        ``why`` names the problem, never the content."""
        start = self._clock()
        ctx = _Ctx(uuid.uuid4().hex, start, start + self.settings.time_budget_seconds, self._wall())
        row = AuditRow(event_id=f"deadletter:{blob}"[:256], event_type=DEAD_LETTER_EVENT_TYPE,
                       resource_id=f"/deadletter/{container}/{blob}"[:2048], verdict="ignored",
                       delivery_id=ctx.delivery_id, correlation_id=run_id[:128])
        with bound(delivery_id=ctx.delivery_id):
            return self._finish(ctx, row, "invalid", reason,
                                message or f"dead-letter blob {blob} is unreadable: {why}", timer=True)
