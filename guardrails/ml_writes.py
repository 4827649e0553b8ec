"""What the ML lifecycle guardrail does once a decision found something (``ml_guardrail``): read
live state, pass the safety rails, write, confirm, record and tell the owner.

    findings ─▶ audit mode / dry run: ``dry_run`` ─▶ a fix of its own still running: ``requested``
        ─▶ flip-flop budget and breaker permits ─▶ plan (from the permitted findings only)
        ─▶ PUT of the body read just before, ``If-Match`` its etag (none documented: read again
           right before, nothing sent when it changed) ─▶ read back ─▶ the row's records

Neither model versions nor endpoints take a PATCH of their properties, and nothing is ever
deleted. A fix still running (long-running) is a pending record (``FixesInFlight``), confirmed by
its own write event or the sweep. What the rails took is given back whenever nothing was made: a
PUT never sent or refused outright (``errors.refused_outright``: the breaker permits; a 5xx may
have been applied and keeps them), a PUT that met ``412`` or ``404`` (the revert count too).
A first ``412`` raises ``ChangedSince``: the guardrail decides once more on a new read
(``MlLifecycleGuardrail._once_more``); a second is a ``failed`` fix.
"""

from __future__ import annotations

import copy
import logging
import uuid
from typing import Callable

from .errors import ArmError, ResourceNotFound, refused_outright
from .logs import notify_owner
from .ml_fixes import Found, Permit, Plan, as_decided, set_outcome, traffic_notes
from .ml_refs import API_VERSION
from .model.arm_id import parse_arm_id
from .model.decision import combine_verdict, fix_line
from .resource_guardrail import READ_ONLY_TOP, ChangedSince

log = logging.getLogger("guardrails")


class MlWrites:
    """Mixed into ``MlLifecycleGuardrail``: uses its service (``svc``): the ARM gateway, the
    safety rails, the pending-fix store, the outbox."""

    @property
    def in_flight(self):
        """The service's long-running fixes still running (the resource guardrail's
        ``FixesInFlight``, built after this guardrail): one record of them for every guardrail."""
        return self.svc.resources.in_flight

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
             owner: tuple[str, str], also: list[Found] = (), again: bool) -> None:
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
        ``ignored`` as a 404 on the read: nothing left to fix or to tell anyone of. ``again``: a
        PUT answered ``412`` raises ``ChangedSince`` to be decided once more (``_write``)."""
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
                    self._carry_out(ctx, row, snap, found, also, allowed, change, grant, again=again)
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

    def _carry_out(self, ctx, row, snap, found: list[Found], also, allowed: set[int], change: Plan, grant, *,
                   again: bool) -> None:
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
        self._write(ctx, row, snap, sending, change, grant, again=again)
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

    def _write(self, ctx, row, snap, recs, change: Plan, grant, *, again: bool) -> None:
        """PUT the body read (with ``change`` applied), ``If-Match`` its etag; without one (the
        documented bodies of model versions, registries' included, and online endpoints carry
        none) the resource is read again right before the PUT and nothing is sent when it changed
        since the decision's read, as ARM answers a conditional PUT (412). Then read back. Raises
        ``ResourceNotFound`` when the resource is gone (deleted since it was read) and, with
        ``again`` (the decision's first attempt), ``ChangedSince`` on a ``412`` (``_once_more``
        decides again): nothing was made by this decision, and everything the rails took for it,
        the flip-flop count included, is given back first. Without ``again`` a ``412`` is a
        ``failed`` fix."""
        apply, holds, done = change.apply, change.holds, change.done
        correlation = str(uuid.uuid4())      # its own write event carries it (see caches.SettledWrites)
        rid = parse_arm_id(snap.resource_id)
        sent = False          # whether the PUT left: the read before it that fails made nothing
        try:
            if snap.etag is None:
                snap = self._unchanged_since(ctx, snap)
            body = copy.deepcopy(dict(snap.body))
            for key in READ_ONLY_TOP:
                body.pop(key, None)
            apply(body)
            sent_at, sent = self.svc.snapshots.now(), True
            result = self.svc.arm.put_resource(snap.resource_id, body, api_version=API_VERSION, etag=snap.etag,
                                               deadline=ctx.deadline, correlation_id=correlation)
            if result.state == "requested":
                # confirmed when its own write event arrives, like every long-running fix; its own
                # failure event finds it by the correlation id; meanwhile not sent again
                self._pending(row, snap, recs, correlation, sent_at)
                return set_outcome(recs, "requested", "fix accepted, still running")
        except ResourceNotFound:
            self.svc.rails.give_back(row, rid, grant, flip_flop=True)      # no revert was made
            raise
        except ArmError as exc:       # the write failed, or the read before it: a fix not confirmed made
            if exc.status == 412:
                # a stale read, not a refusal: another write landed since (another worker's fix of
                # the same change, most likely) and the condition kept this one from overwriting
                # it; no revert was made, so none is counted
                self.svc.rails.give_back(row, rid, grant, flip_flop=True)
                if again:
                    raise ChangedSince from exc
            elif not sent or refused_outright(exc):
                # certainly no action was taken (never sent, or refused outright: the one rule,
                # errors.refused_outright): its breaker permits go back (the flip-flop count stays,
                # as for every failed revert: Event Grid's redelivery of the change is the same
                # revert). A 5xx or another 409 may have been applied: the permits stay, and the
                # redelivery of the same event reuses them
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
            self._pending(row, snap, recs, correlation, sent_at)
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
