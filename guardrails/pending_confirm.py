"""Long-running fixes left ``requested`` (their write still ran when the delivery's budget ended),
confirmed later: by the guardrail's own write event (``_own_write``, exactly once through the
event's claim and the resource's lock) or by the sweep (``_confirm_pending``, timer). Either
claims each record before it audits it (``_Claims``), so the two, on any instances, never both
audit one fix. Mixed into ``GuardrailsService`` (its ``pending`` and ``idempotency`` stores,
``arm``, ``snapshots``, ``_once`` and ``_finish``). Meanwhile the resource guardrail does not
send them again (``FixesInFlight``)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Mapping

from .coverage import _parse_time
from .decision_context import _Ctx
from .errors import ArmError, IdempotencyError, InvalidArmId, ResourceNotFound, StoreError
from .logs import emit
from .model.decision import AuditRow, ViolationRecord, combine_verdict, fix_line, short_repr
from .model.resource import ResourceType
from .policy.operators import values_equal
from .ports import Claim
from .safety_rails import give_back_permit

log = logging.getLogger("guardrails")

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
# ``provisioningState`` values of a resource a write still runs on
STILL_RUNNING = frozenset({"updating", "creating", "accepted", "running", "provisioning", "deleting", "migrating"})


class _StillRunning(Exception):
    """The sweep's read-back found the pending fix's write still running: it waits."""


class _Claims:
    """The pending records one confirmation audits, each claimed first: the fix's own write event
    (a late or redelivered one) and the sweep, on this instance or another, may both find a record,
    and only the holder of its claim audits it. A claim is an idempotency record of the event
    path's store (``pending-fix:<resource>|<record key>``): taken, completed once the row is
    audited, released when nothing was (a read that failed, a write still running), and, should
    its holder die, taken over once it expires. The record itself goes only after its row is
    audited, as before."""

    def __init__(self, svc, rid: str, holder: str) -> None:
        self.svc, self.rid, self.holder = svc, rid, holder
        self.held: dict[str, tuple[str, Claim]] = {}       # record key -> (claim key, claim)

    def take(self, pending) -> list:
        """The records of ``pending`` this confirmation now holds; one audited by another (its
        claim completed) is forgotten if still there, one another holds is theirs to audit."""
        mine = []
        for key, record in pending:
            name = f"pending-fix:{self.rid.lower()}|{key}"
            try:
                claim = self.svc.idempotency.acquire(name, holder=self.holder)
            except IdempotencyError:
                continue                  # being confirmed elsewhere right now
            if claim.state == "completed":
                self.svc.pending.remove(self.rid, key)      # audited; its holder did not get to remove it
                continue
            self.held[key] = (name, claim)
            mine.append((key, record))
        return mine

    def settle(self, keys, verdict: str) -> None:
        """The row of ``keys`` is audited: their claims completed, then their records forgotten
        (a record left by a failed delete is forgotten by the next ``take``)."""
        for key in keys:
            if key not in self.held:
                continue
            name, claim = self.held.pop(key)
            try:
                self.svc.idempotency.complete(name, claim, verdict=verdict)
            except IdempotencyError:
                continue                  # held past its expiry and taken over: the taker forgets it
            self.svc.pending.remove(self.rid, key)

    def release(self) -> None:
        """Let go of the claims not settled: the records wait for the next confirmation."""
        while self.held:
            _key, (name, claim) = self.held.popitem()
            try:
                self.svc.idempotency.release(name, claim)
            except StoreError as exc:     # the claim then expires on its own
                emit(log, logging.WARNING, "guardrail_pending_claim_kept", resource_id=self.rid,
                     error=type(exc).__name__)


class PendingConfirmations:
    def _own_write(self, ctx: _Ctx, row: AuditRow, event, rtype: ResourceType | None) -> AuditRow:
        """Our own write came back. Ignored with zero ARM calls, unless it completes a fix that
        was still running when its delivery ended (``requested``): then read back and confirm,
        exactly once like any decision (``_once``: the event's claim, the resource's lock), so two
        deliveries of this event (a redelivery after a slow first attempt, a replayed dead letter,
        another instance) audit the fix once, and a confirmation never overtakes a decision on the
        same resource (its read is cached for the next events)."""
        if rtype is None or self.settled.holds(event.correlation_id):
            # no pending record can exist for a write this worker saw finish: zero table reads
            return self._finish(ctx, row, "ignored", "own_write", "write made by the guardrail itself")
        rid = str(event.resource_id)
        if not self._pending_settled_by(event):
            return self._finish(ctx, row, "ignored", "own_write", "write made by the guardrail itself")
        settled: list[str] = []
        undone: list[tuple[str, str]] = []
        claims = _Claims(self, rid, ctx.delivery_id)
        # ARM says this very write failed (or was cancelled): a fix of it that did not hold was not made
        failed_write = event.event_type != WRITE_SUCCESS

        decided: list[bool] = []

        def decide() -> None:
            decided.append(True)
            # again under the event's claim, and each record claimed: another delivery or the sweep
            # (here or on another instance) may have settled them, or be settling them now
            pending = claims.take(self._pending_settled_by(event))
            if not pending:
                row.verdict, row.reason = "ignored", "own_write"
                row.message = ("write made by the guardrail itself (its pending fix is confirmed by another "
                               "delivery or the sweep)")
                return
            settled.extend(self._judge_pending(ctx, row, rid, rtype, pending, via="confirmed by its write event",
                                               undone=undone if failed_write else None,
                                               written_at=None if failed_write else event.envelope.time))

        try:
            # a fix that did not hold (``not_confirmed``) is its outcome: audited once, not retried
            done = self._once(ctx, row, rid, decide, final=frozenset({"not_confirmed"}))
            if not decided and done.verdict != "duplicate" and done.reason != "own_write":
                # an earlier delivery's confirmation, whose audit write failed, audited now from its
                # parked row (nothing decided again): what it judged is settled all the same, or
                # the sweep would confirm the same fix a second time
                settled.extend(key for key, _rec in claims.take(self._pending_settled_by(event)))
            claims.settle(settled, done.verdict)            # after the row is audited
        finally:
            claims.release()            # not audited: the event's retry, or the sweep, confirms them
        for policy_id, key in undone:                       # its permits no longer count: no fix was made
            give_back_permit(self.breakers, policy_id, event.resource_id.subscription_id or "", key)
        return done

    def _pending_settled_by(self, event) -> list:
        """The pending fixes this own write event settles."""
        pending = self.pending.list(str(event.resource_id))
        cid = (event.correlation_id or "").lower()
        mine = [(k, rec) for k, rec in pending if cid and str(rec.get("correlation_id") or "").lower() == cid]
        if event.event_type != WRITE_SUCCESS:
            # a failed or cancelled write ends only the fix it was: another fix of this resource
            # may still be running (and succeed), so only the record of this very write is settled
            return mine
        if cid:
            # a success settles its own write's record too: a late or replayed success of an
            # earlier fix (another worker's, a dead letter's) must not audit a newer fix still
            # running as failed. Records without a correlation id (an earlier release's) as before
            return mine or [(k, rec) for k, rec in pending if not rec.get("correlation_id")]
        return pending

    def _confirm_pending(self, ctx: _Ctx, row: AuditRow, rid: str, rtype: ResourceType, pending, *,
                         via: str, timer: bool = False, give_up: bool = False) -> AuditRow | None:
        """The sweep's confirmation (``timer``), under the resource's lock, of the records it
        listed at the start of its run: those still there and claimed (``_Claims``: the fix's own
        late write event, or another instance, may have settled them since, or be settling them)
        are judged (``_judge_pending``), audited, then forgotten. None: none left to confirm (no
        decision, as ``_own_write``), or the write is still running (nothing audited, they wait)."""
        listed = {key for key, _rec in pending}
        claims = _Claims(self, rid, ctx.delivery_id)
        try:
            pending = claims.take([(key, rec) for key, rec in self.pending.list(rid) if key in listed])
            if not pending:
                return None
            try:
                settled = self._judge_pending(ctx, row, rid, rtype, pending, via=via, timer=timer, give_up=give_up)
            except _StillRunning:
                return None
            self._finish(ctx, row, row.verdict, row.reason, row.message, timer=timer)
            claims.settle(settled, row.verdict)
            return row
        finally:
            claims.release()

    def _judge_pending(self, ctx: _Ctx, row: AuditRow, rid: str, rtype: ResourceType, pending, *,
                       via: str, timer: bool = False, give_up: bool = False,
                       undone: list[tuple[str, str]] | None = None, written_at: datetime | None = None) -> list[str]:
        """Read the resource back and record each pending fix ``remediated`` (it holds) or
        ``failed`` (``not_confirmed``, owner notified) on ``row`` (verdict, reason, message set;
        not audited). Returns the records to forget once the row is audited: all of them, or none
        when the read failed (the retry, or the next sweep, tries again; ``give_up``: forgotten,
        audited ``failed``). Raises ``_StillRunning`` for a ``timer`` that finds the write running,
        unless ``give_up``: a write still running that long (a hung update) is never confirmed,
        audited ``failed`` and forgotten like an unreadable one.
        ``undone`` (only for the records of a write ARM says failed): each of them is ``failed``
        whatever is read now (the write was not made; a value that holds now is someone else's,
        said in the message), and it collects the breaker permits (policy id, event id) of each
        record none of whose changes holds, to give back once the row is audited. ``written_at``
        (the time of the write's own ``ResourceWriteSuccess``): a read-back that disagrees although
        someone else wrote the resource after it (``changed_by_other``) is the fix made and changed
        since, ``remediated`` saying by whom: that change is decided on its own event. Without such
        evidence a disagreement is ``failed`` (a provider that silently ignored the property). A
        read-back that disagrees after a write that succeeded (or with no failure event) keeps the
        permits: the fix may have been made and changed since by someone else."""
        self.snapshots.forget(rid)
        sent = self.snapshots.now()
        keys = [key for key, _rec in pending]
        try:
            after = self.arm.get_resource(rid, api_version=rtype.api_version, deadline=ctx.deadline)
        except ResourceNotFound:
            row.verdict, row.reason, row.message = "ignored", "resource_not_found", "the resource no longer exists"
            return keys
        except ArmError as exc:
            if give_up:
                row.verdict, row.reason = "failed", exc.reason
                row.message = f"{len(pending)} pending fix(es) never confirmed, forgotten: {exc}"
                return keys
            row.verdict, row.reason, row.message = "failed", exc.reason, str(exc)
            return []                 # the event is retried (``_once``) / the next sweep tries again
        self.snapshots.put(after, requested_at=sent)
        state, _present = after.value("properties.provisioningState")
        if timer and isinstance(state, str) and state.lower() in STILL_RUNNING:
            if not give_up:
                raise _StillRunning   # the sweep's confirmation: the write is still running, it waits
            row.verdict, row.reason = "failed", "not_confirmed"
            row.message = (f"{len(pending)} pending fix(es) never confirmed, forgotten: the resource is still "
                           f"{short_repr(state)} after {PENDING_GIVE_UP_SECONDS / 3600:g} h")
            return keys
        # the drift this fix answers happened when its first event says, not when our write ended:
        # the confirm row carries that time, so time-to-remediate is measured from the drift
        drift_times = [t for _key, rec in pending if isinstance(t := rec.get("event_time"), str) and t]
        if drift_times:
            row.event_time = min(drift_times)
        since = changed_by_other(self.settings, after, written_at) if written_at is not None else None
        stuck = False                      # a change that does not hold now: its owner acts
        for _key, record in pending:
            held = False
            fix = f"long-running fix of event {record.get('event_id')}"
            for c in record.get("changes", []):
                value, _present = after.value(c["property"])
                ok = values_equal(value, c["after"])
                held, stuck = held or ok, stuck or not ok
                if undone is not None:     # ARM says the write failed: not made, whatever is read now
                    outcome = "failed"
                    message = f"{fix}: its write failed; " + (
                        f"the value read now holds ({_by(after)})" if ok else f"read-back shows {short_repr(value)}")
                elif ok or since is not None:
                    outcome = "remediated"
                    message = f"{fix} {via}" + ("" if ok else f"; changed since by {since} (read now: "
                                                              f"{short_repr(value)}, decided on its own event)")
                else:
                    outcome, message = "failed", f"long-running fix finished but read-back shows {short_repr(value)}"
                row.violations.append(ViolationRecord(
                    policy=c["policy"], rule=c["rule"], property=c["property"], before=c["before"], after=c["after"],
                    outcome=outcome, message=message[:300]))
            if undone is not None and not held and record.get("event_id"):
                # the permit is per policy (its ref without the version), keyed by the drift's event
                undone.extend((pid, str(record["event_id"])) for pid in
                              dict.fromkeys(str(c["policy"]).split("@", 1)[0] for c in record.get("changes", [])))
        row.verdict = combine_verdict([v.outcome for v in row.violations])
        row.reason = "" if row.verdict != "failed" else "not_confirmed"
        row.notify = row.notify or (row.verdict == "failed" and stuck)      # the fix did not hold: its owner acts
        row.message = "; ".join(fix_line(v) for v in row.violations)
        return keys


def changed_by_other(settings, snapshot, since: datetime) -> str | None:
    """Who wrote the resource after ``since``, by its ``systemData`` (``lastModifiedBy``, or
    "someone" when ARM does not name them); None when nobody did, when the last writer is the
    guardrails themselves (their own write, or a provider stamping it when it accepted it) or
    when the resource carries no ``systemData``."""
    data = snapshot.body.get("systemData")
    if not isinstance(data, Mapping):
        return None
    at, who = _parse_time(data.get("lastModifiedAt")), data.get("lastModifiedBy")
    if at is None or at <= since or (isinstance(who, str) and settings.is_own_principal(who)):
        return None
    return short_repr(who) if isinstance(who, str) and who else "someone"


def _by(snapshot) -> str:
    """Who last wrote the resource, as a message says it."""
    data = snapshot.body.get("systemData")
    who = data.get("lastModifiedBy") if isinstance(data, Mapping) else None
    return f"last written by {short_repr(who)}" if isinstance(who, str) and who else "written since by someone"


class FixesInFlight:
    """The long-running fixes a decision must not send again. Until such a write ends ARM reads
    the old value, so each further event of a burst (a deployment touching the resource several
    times) would send the same fix again and count as one more revert on the flip-flop rail, up
    to ``escalated``. ``add`` keeps a fix left ``requested`` (the pending record, with when it was
    sent); ``making`` says whether the fixes a decision is about to send are all being made."""

    SIZE = 1024

    def __init__(self, svc) -> None:
        self.svc = svc
        # resources (lower-case id) whose fix this worker left ``requested``, and when it was sent
        self._sent: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def add(self, resource_id: str, event_id: str, record: dict, *, sent: datetime) -> None:
        """Keep ``record`` in the pending fixes, with ``sent``; noted in this worker too."""
        self.svc.pending.add(resource_id, event_id, {**record, "sent_at": sent.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        with self._lock:
            self._sent.pop(resource_id.lower(), None)
            if len(self._sent) >= self.SIZE:
                self._sent.pop(next(iter(self._sent)))
            self._sent[resource_id.lower()] = sent

    def making(self, snapshot, recs: list[ViolationRecord]) -> bool:
        """Whether a long-running write still running (a pending fix: this worker's or another's)
        sets every property of ``recs`` to its value. Then each is recorded ``requested``, naming
        the event whose fix is in flight, and nothing is to be sent. A pending fix counts while it
        is younger than ``PENDING_STALE_SECONDS`` (older ones are the sweep's to confirm) and while
        nobody else has written the resource since it was sent (``changed_by_other``: its write has
        ended, and the change read now is a new one). One table query, and only for a decision
        about to write whose resource reads as still being written (``provisioningState``, as long-
        running writes show) or that this worker sent such a fix for within that time: a compliant
        decision, and a fix with neither, costs nothing more. An unreadable store: sent, as before."""
        state, _present = snapshot.value("properties.provisioningState")
        now = self.svc.snapshots.now()
        with self._lock:
            sent = self._sent.get(snapshot.resource_id.lower())
        if not (isinstance(state, str) and state.lower() in STILL_RUNNING) and \
                (sent is None or (now - sent).total_seconds() >= PENDING_STALE_SECONDS):
            return False
        try:
            pending = self.svc.pending.list(snapshot.resource_id)
        except StoreError as exc:
            emit(log, logging.WARNING, "guardrail_pending_fixes_unread", error=type(exc).__name__)
            return False
        running = []
        for _key, record in pending:
            at = _parse_time(record.get("sent_at"))        # none in an earlier release's records
            if at is not None and (now - at).total_seconds() < PENDING_STALE_SECONDS \
                    and changed_by_other(self.svc.settings, snapshot, at) is None:
                running.append(record)
        making = []
        for rec in recs:
            record = next((p for p in running for c in p.get("changes") or () if isinstance(c, dict)
                           and str(c.get("property", "")).lower() == rec.property.lower()
                           and values_equal(c.get("after"), rec.after)), None)
            if record is None:
                return False       # a change no running write makes: the merged fix is sent whole
            making.append((rec, record))
        for rec, record in making:
            rec.outcome = "requested"
            rec.message = (f"fix in flight since event {record.get('event_id')}: its long-running write still "
                           "runs, not sent again")[:300]
        return bool(making)


# a fix still ``requested`` this long after its record was written is confirmed by the sweep: longer
# than any long-running write should take (an ML online deployment's update: tens of minutes)
PENDING_STALE_SECONDS = 3600.0
# one the sweep still cannot confirm this long after it was written (its resource unreadable: a
# subscription left the estate, a role was taken away; or still being written: a hung update) is
# audited once more and forgotten
PENDING_GIVE_UP_SECONDS = 2 * 86400.0
# of what is left of the sweep's budget: the confirmations' most (as the Resource Graph listing's
# ``GRAPH_SHARE``), so resources that answer slowly cannot keep a run from its ring
CONFIRM_SHARE = 0.5


def confirm_stale_fixes(sweeper, tally, sweep_id: str, deadline: float) -> None:
    """Fixes left ``requested`` over ``PENDING_STALE_SECONDS`` ago whose own write event never
    settled them (it came before their record was written on another worker, or was lost):
    each resource read back once and its fixes audited (``Service.confirm_pending``), before
    the resources are swept. One still running (``provisioningState`` not final) waits. They take
    at most ``CONFIRM_SHARE`` of what is left of the budget, each read bounded by it: those not
    reached are the next run's (the same oldest first), and the ring always has its turn."""
    now = sweeper._clock()
    until = min(deadline, now + CONFIRM_SHARE * max(0.0, deadline - now))
    try:
        stale = sweeper.service.pending.stale(sweeper._wall() - timedelta(seconds=PENDING_STALE_SECONDS))
    except StoreError as exc:
        tally.error(f"pending fixes: {exc}")
        return
    give_up = sweeper._wall() - timedelta(seconds=PENDING_GIVE_UP_SECONDS)
    for rid, pending, oldest in stale:
        left = until - sweeper._clock()
        if left <= 0:
            tally.truncate()        # the confirmations' share is spent: the next run goes on
            return
        if not pending:
            continue
        try:
            row = sweeper.service.confirm_pending(rid, pending, sweep_id=sweep_id, give_up=oldest < give_up,
                                                  seconds=left)
        except InvalidArmId:
            continue
        except StoreError as exc:   # its records wait for the next run; the others are confirmed
            tally.error(f"pending fixes of {rid}: {exc}")
            continue
        if row is not None:
            tally.decided(row.verdict)
