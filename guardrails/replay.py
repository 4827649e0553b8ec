"""Dead-letter replay: events Event Grid gave up on, handled after all (timer ``deadletter_replay``,
``python -m guardrails deadletter``).

The reconciling sweep repairs the *state* a lost event left behind, but only the event knows who
made the change (its claims), the ARM correlation id, the exact operation, and, for a role
assignment, whom to count toward flip-flop. So each dead-lettered event goes through the very
``handle_event`` the trigger functions call, with the sweep's paced ARM clients:

    each blob's outcome alone (one query of two properties) ─▶ the container's listing, streamed:
        settled blobs dropped as they come; of the others the oldest ``MAX_BLOBS_PER_RUN`` (or
        ``limit``) kept; states whose blob the listing never showed noted as gone
    each blob kept, oldest first, within the time budget (its state read then, one point read):
        not under a deployed event subscription's prefix (``deadletter.not_deliverable``: Event
            Grid names a blob ``<TOPIC>/<EVENT SUBSCRIPTION>/…``; anyone with blob write on the
            container can put one there): not even downloaded ─▶ one ``invalid`` audit row under
            the blob's name, reason ``not_deliverable_here``, state ``rejected``, reported once
        read it ─▶ ``deadletter.parse_blob`` ─▶ unreadable (not JSON, too large …): an ``invalid``
            audit row under the blob's name, state ``unreadable``, reported once
        an event of a type its subscription never delivers (``deadletter.undeliverable_events``: a
            ``Guardrails.*`` type, a Key Vault event under the resource subscription …): the whole
            blob is ``rejected`` as above, none of its events handed on
        each event not yet handled ─▶ ``service.handle_event`` (claims, dedup, decision, fix,
            audit row as ever; the row's message ends ``[replayed from dead-letter blob <name>]``)
            raises (what would have made Event Grid redeliver): that event is retried on the next
            runs, the blob's other events go on; after ``GIVE_UP_AFTER`` of failing and at least
            ``MIN_ATTEMPTS`` tries (Event Grid's own 24 h) the event is given up, reported. Each
            failing event's clock (tries, first failure; no error text) is kept for up to
            ``MAX_FAILING_TRACKED`` events (those that started failing last); an event beyond
            that runs on the blob's own clock (``failing_since``, ``failing_runs``: since its
            oldest failing event first failed), so a blob of any size is given up in the end
            Table Storage failing (``StoreError``): the try counts on the event's clock and the
            blob's state is saved at once. The first time, the run stops (Table Storage down: every
            decision needs it) and the next run tries that event first; an event it fails again
            is that event's failure (Table Storage refusing something of its own: a row too large,
            a record that keeps conflicting), backing off like any other while the rest go on. A
            state save that fails stops the run, an error in its summary
        state ``replayed`` (every event handled), ``retrying`` (one still fails) or ``gave_up``
        (handled but for given-up events), with each event's id, verdict, reason, delivery id;
        saved every ``SAVE_EVERY_EVENTS`` events or ``SAVE_EVERY_SECONDS`` too, so a run the host
        kills half way through a big blob keeps what it did
    the states of blobs gone from the container (its lifecycle rule deletes them after 90 days)
        deleted in the time left, ``TRANSACTION_ROWS`` to a transaction; the rest the next run

Progress is per event (``done`` ranges of indexes in the state row), so a run that dies or hits
its time budget half way through a blob carries on where it stopped, and an event handled before
it was dead-lettered comes out ``duplicate`` while its idempotency record lasts
(``GUARDRAILS_DEDUP_COMPLETED_HOURS``), else decided again on live state (nothing left to fix is
``compliant``). The blobs are never changed or deleted (the container keeps Event Grid's record);
progress lives in ``<prefix>TimerState`` (partition ``deadletter``). One summary row per run in
``<prefix>Sweeps`` (``kind`` ``deadletter_replay``). ``deadletter retry BLOB`` (``retry``) forgets
only what stops a blob: its given-up events and the failing ones' clocks (tried again at the next
run), or an unreadable or rejected blob's state; the events handled stay handled.
"""

from __future__ import annotations

import heapq
import logging
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .deadletter import (MAX_BLOB_BYTES, ParsedBlob, from_ranges, not_deliverable, parse_blob, subscription_of,
                         to_ranges, undeliverable_events)
from .errors import GuardrailsError, IdempotencyError, StoreError
from .logs import emit
from .sweep_summary import SweepSummary, _iso, _Tally

log = logging.getLogger("guardrails")
GIVE_UP_AFTER = timedelta(hours=24)    # as Event Grid: a failing event is retried for a day …
MIN_ATTEMPTS = 3                       # … and at least this many runs
MAX_FAILING_TRACKED = 500              # failing events with a clock of their own, per blob (fits one property)
# a failing event is tried again after 15 min, then 30, 1 h, 2 h, 4 h and every 6 h (~9 tries in the
# day, as Event Grid's own schedule makes ~13), not on every run: each try is an ARM write, an audit
# row, a decision event and, outside the breaker's window, a new breaker permit, and old failing
# blobs would take every run's budget from the newer ones behind them
RETRY_FIRST = timedelta(minutes=15)
RETRY_MAX = timedelta(hours=6)


def next_try(now: datetime, attempts: int) -> datetime:
    """When a replayed event that failed ``attempts`` times is tried again (pure)."""
    return now + min(RETRY_MAX, RETRY_FIRST * (2 ** max(0, min(attempts, 16) - 1)))
SETTLED = frozenset({"replayed", "unreadable", "gave_up", "rejected"})
KIND = "deadletter_replay"
REJECTED_REASON = "not_deliverable_here"
MAX_BLOBS_PER_RUN = 20_000     # blobs a run keeps in hand (the oldest): more than a 540 s budget gets through
TRANSACTION_ROWS = 100         # gone blobs' states deleted per entity-group transaction (its limit)
SAVE_EVERY_EVENTS = 25         # a blob's progress is saved this often while it is replayed …
SAVE_EVERY_SECONDS = 30.0      # … or after this long, whichever comes first
_NAME_CHARS = re.compile(r"[A-Za-z0-9_./-]+")


class _Stop(Exception):
    """Table Storage failed: end the run (every decision and every state write needs it), an error
    of the run (``recorded``: already in the summary)."""

    def __init__(self, message: str, *, recorded: bool = False) -> None:
        super().__init__(message)
        self.recorded = recorded


def replayed_from(blob: str) -> str:
    """What ends a replayed event's audit message (``handle_event``'s ``said_by``): the dead-letter
    blob's name, already judged by ``not_deliverable`` (under a deployed event subscription), shown
    when it is what Event Grid writes (letters, digits, ``-_./``, at most 300 characters) and not
    shaped like a credential; else its event subscription alone (a name is anyone's with blob write)."""
    from .secrets.credentials import looks_like_credential

    if len(blob) <= 300 and _NAME_CHARS.fullmatch(blob) and not looks_like_credential(blob):
        return f"replayed from dead-letter blob {blob}"
    return f"replayed from a dead-letter blob under {subscription_of(blob).upper()} (its name not shown)"


def record_rejected_dead_letter(service, container: str, blob: str, why: str, *, run_id: str):
    """A dead-letter blob Event Grid cannot have written for a guardrails event subscription:
    audited ``invalid`` (``not_deliverable_here``) under the blob's name, as an unreadable one is
    (``record_unreadable_dead_letter``); nothing in it is acted on. ``why`` names the problem, never
    the content."""
    return service.record_unreadable_dead_letter(
        container, blob, why, run_id=run_id, reason=REJECTED_REASON,
        message=f"dead-letter blob {blob} was not written by Event Grid for a guardrails event "
                f"subscription ({why}): not replayed")


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


class DeadLetterReplayer:
    def __init__(self, service, container, state, store, *, max_seconds: float = 540.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.service, self.container, self.state, self.store = service, container, state, store
        self.max_seconds = max_seconds
        self._clock, self._wall = clock, wall_clock

    # ---------------------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """Every blob in the container with its replay state (``pending`` when never tried)."""
        states = self.state.deadletter_states()
        out = []
        for b in sorted(self.container.list(), key=lambda b: (b.last_modified, b.name)):
            st = states.get(b.name) or {}
            out.append({"blob": b.name, "size": b.size, "last_modified": b.last_modified,
                        "state": st.get("outcome") or "pending", "attempts": st.get("attempts", 0),
                        "at": st.get("at", ""), "detail": st.get("detail", ""), "events": st.get("events", [])})
        return out

    def run(self, *, dry_run: bool = False, limit: int | None = None) -> SweepSummary:
        """Replay every blob not yet settled (``limit``: at most that many blobs). ``dry_run``:
        read and parse only, decide nothing, change no state. One run at a time: a run that finds
        another holding the run lease (``TimerState`` ``lease/deadletter_replay``) does nothing."""
        start, started = self._clock(), self._wall()
        summary = SweepSummary(sweep_id=f"replay-{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", kind=KIND,
                               started=_iso(started), dry_run=dry_run)
        tally = _Tally(summary)
        lease = None if dry_run else getattr(self.state, "take_run_lease", None)
        if lease is not None and not lease(KIND, summary.sweep_id, self.max_seconds + 60.0):
            # another replay (the timer on another instance, or the CLI) is running: both would save
            # each blob's progress over the other's and handle its events twice
            tally.error("another dead-letter replay is running; this one did nothing")
            emit(log, logging.WARNING, "guardrail_deadletter_run_skipped", reason="lease held by another run")
            return self._finish(summary, start, blobs=0)
        try:
            return self._run(summary, tally, start, dry_run=dry_run, limit=limit)
        finally:
            if lease is not None:
                self.state.release_run_lease(KIND, summary.sweep_id)

    def _run(self, summary: SweepSummary, tally: _Tally, start: float, *, dry_run: bool,
             limit: int | None) -> SweepSummary:
        done = 0
        deadline = start + self.max_seconds
        try:
            outcomes = self.state.deadletter_outcomes()
            unlisted = set(outcomes)              # states whose blob the listing has not shown
            waiting = 0

            def unsettled():
                nonlocal waiting
                for b in self.container.list():
                    unlisted.discard(b.name)
                    if outcomes.get(b.name) not in SETTLED:
                        waiting += 1
                        yield b
            keep = MAX_BLOBS_PER_RUN if limit is None else max(0, min(limit, MAX_BLOBS_PER_RUN))
            # the whole listing is read (to find the gone), the settled dropped as they come
            listing = unsettled()
            pending = heapq.nsmallest(keep, listing, key=lambda b: (b.last_modified, b.name))
            for _ in listing:                     # ``limit`` 0: nsmallest reads nothing, and the gone
                pass                              # are known only at the listing's end
            with_state = {b.name for b in pending if b.name in outcomes}
            outcomes.clear()                      # not held while the blobs are replayed
            for blob in pending:
                if self._clock() > deadline:
                    tally.truncate()
                    break
                prev = (self.state.deadletter_state(blob.name) or {}) if blob.name in with_state else {}
                done += 1                         # counted too when Table Storage stops the run in it
                self._blob(blob, prev, tally, dry_run, deadline, summary.sweep_id)
            else:
                if limit is None and waiting > len(pending):      # more than a run keeps: the next run
                    tally.truncate()
                if not dry_run and unlisted:      # deleted by the container's lifecycle rule
                    self._forget(sorted(unlisted), tally, deadline)
        except (StoreError, _Stop) as exc:       # the rest waits for the next run: never a clean run
            if not getattr(exc, "recorded", False):
                tally.error(str(exc))
            emit(log, logging.ERROR, "guardrail_deadletter_run_stopped", reason=str(exc)[:300])
        return self._finish(summary, start, blobs=done)

    def _forget(self, gone: list[str], tally: _Tally, deadline: float) -> None:
        """Delete the states of blobs gone from the container, a transaction at a time, while the
        run's time lasts (housekeeping: after the replay, never instead of it)."""
        for i in range(0, len(gone), TRANSACTION_ROWS):
            if self._clock() > deadline:
                tally.truncate()
                emit(log, logging.INFO, "guardrail_deadletter_cleanup_deferred", left=len(gone) - i)
                return
            self.state.delete_deadletter_states(gone[i:i + TRANSACTION_ROWS])     # StoreError: the run's error

    # ---------------------------------------------------------------------------------------------
    def _blob(self, blob, prev: dict[str, Any], tally: _Tally, dry_run: bool, deadline: float, run_id: str) -> None:
        name = blob.name
        why = not_deliverable(name)
        if why:                                   # not Event Grid's for us: not even downloaded
            self._reject(name, why, prev, tally, dry_run, run_id)
            return
        if blob.size > MAX_BLOB_BYTES:            # not even downloaded
            parsed = ParsedBlob(blob=name, unreadable=f"{blob.size} bytes, more than the {MAX_BLOB_BYTES} "
                                                      "a dead-letter blob can hold")
        else:
            try:
                data = self.container.read(name)
            except StoreError as exc:             # transient: the next run reads it again
                tally.error(f"dead-letter blob {name}: {exc}")
                emit(log, logging.ERROR, "guardrail_deadletter_read_failed", blob=name, reason=str(exc))
                return
            if data is None:
                return                            # deleted since it was listed
            try:
                parsed = parse_blob(name, data)
            except Exception as exc:              # noqa: BLE001 - the parser must not stop every later blob
                parsed = ParsedBlob(blob=name, unreadable=f"the parser failed ({type(exc).__name__})")
        if parsed.unreadable:
            tally.error(f"dead-letter blob {name} is unreadable: {parsed.unreadable}")
            emit(log, logging.ERROR, "guardrail_deadletter_unreadable", blob=name, reason=parsed.unreadable)
            if not dry_run:
                self._store(lambda: self.service.record_unreadable_dead_letter(
                    self.container.name, name, parsed.unreadable, run_id=run_id),
                    f"dead-letter blob {name}: its audit row")
                tally.decided("invalid")
                self._save(name, {"outcome": "unreadable", "attempts": int(prev.get("attempts", 0)) + 1,
                                  "detail": parsed.unreadable})
            return
        why = undeliverable_events(parsed)
        if why:                                   # Event Grid never delivers it here: none of the blob is trusted
            self._reject(name, why, prev, tally, dry_run, run_id)
            return
        if dry_run:
            handled = from_ranges(str(prev.get("done", "")))
            for dl in parsed.events:
                if dl.index not in handled:
                    tally.seen()
                    emit(log, logging.INFO, "guardrail_deadletter_pending", blob=name, event_id=dl.event_id[:256],
                         event_type=dl.event_type[:256], dead_letter_reason=dl.reason, delivery_attempts=dl.attempts)
            return
        self._replay(parsed, prev, tally, deadline)

    def _reject(self, name: str, why: str, prev: dict[str, Any], tally: _Tally, dry_run: bool, run_id: str) -> None:
        tally.error(f"dead-letter blob {name} was not written by Event Grid for a guardrails event subscription: {why}")
        emit(log, logging.ERROR, "guardrail_deadletter_rejected", blob=name, reason=why)
        if not dry_run:
            self._store(lambda: record_rejected_dead_letter(self.service, self.container.name, name, why,
                                                            run_id=run_id), f"dead-letter blob {name}: its audit row")
            tally.decided("invalid")
            self._save(name, {"outcome": "rejected", "attempts": int(prev.get("attempts", 0)) + 1, "detail": why})

    def _replay(self, parsed: ParsedBlob, prev: dict[str, Any], tally: _Tally, deadline: float) -> None:
        name = parsed.blob
        handled = from_ranges(str(prev.get("done", "")))
        abandoned = from_ranges(str(prev.get("abandoned", "")))
        failing: dict[str, dict[str, Any]] = dict(prev.get("failing") or {})
        record: list[dict[str, Any]] = list(prev.get("events") or [])
        now = self._wall()
        clock = {"since": str(prev.get("failing_since") or ""), "runs": int(prev.get("failing_runs") or 0),
                 "untracked": bool(prev.get("failing_untracked")), "counted": False}
        clock["prior_since"], clock["prior_runs"] = clock["since"], clock["runs"]

        def save(outcome: str, detail: str = "", *, complete: bool = False) -> None:
            """``complete``: every event not handled or given up was tried this run, so an event
            failing without its own clock is one this save drops (beyond ``MAX_FAILING_TRACKED``)."""
            kept = dict(sorted(failing.items(), key=lambda kv: (str(kv[1].get("first", "")), kv[0].zfill(12)),
                               reverse=True)[:MAX_FAILING_TRACKED])
            untracked = len(kept) < len(failing) or (clock["untracked"] and not complete)
            since, runs = (clock["since"], clock["runs"]) if kept or untracked else ("", 0)
            self._save(name, {"outcome": outcome, "attempts": int(prev.get("attempts", 0)) + 1, "detail": detail,
                              "events": record, "done": to_ranges(handled), "abandoned": to_ranges(abandoned),
                              "failing": kept, "failing_since": since, "failing_runs": runs,
                              "failing_untracked": untracked})

        saved_at, unsaved = self._clock(), 0
        said_by = replayed_from(name)
        for dl in parsed.events:
            if dl.index in handled or dl.index in abandoned:
                continue
            due = _parse_time(str((failing.get(str(dl.index)) or {}).get("next", "")))
            if due is not None and due > now:     # failed lately: backing off
                continue
            if self._clock() > deadline:          # the rest: the next run, from here
                tally.truncate()
                save("retrying", f"time budget ended at event {dl.index}")
                return
            if unsaved and (unsaved >= SAVE_EVERY_EVENTS or self._clock() - saved_at >= SAVE_EVERY_SECONDS):
                # a run killed from here on (the host's timeout, a scale-in) keeps what it did
                save("retrying", f"replaying: progress saved before event {dl.index}")
                saved_at, unsaved = self._clock(), 0
            unsaved += 1
            try:
                row = self.service.handle_event(dl.envelope, said_by=said_by)
            except IdempotencyError as exc:       # another delivery holds it: tried again later
                self._failed(name, dl, exc, failing, abandoned, record, now, tally, clock)
                continue
            except StoreError as exc:
                # Table Storage failed: down (every decision needs it), or refusing this event alone (a
                # row too large, a record that keeps conflicting). The try counts on the event's clock
                # and is saved at once (a save that fails too: down, the run stops). The first time
                # the run stops, the next run trying the event first; failing again, it is the event's
                # own failure, backing off while the rest go on: it holds no newer blob up for ever
                again = str(dl.index) in failing
                self._failed(name, dl, exc, failing, abandoned, record, now, tally, clock, stop=not again)
                save("retrying", f"event {dl.index}: {str(exc)[:200]}")
                saved_at, unsaved = self._clock(), 0
                if not again and dl.index not in abandoned:
                    raise _Stop(f"dead-letter blob {name}, event {dl.index}: {exc}", recorded=True) from None
                continue
            except Exception as exc:              # noqa: BLE001 - what made the trigger raise: Event Grid would redeliver
                self._failed(name, dl, exc, failing, abandoned, record, now, tally, clock)
                continue
            handled.add(dl.index)
            failing.pop(str(dl.index), None)
            tally.seen()
            tally.decided(row.verdict)
            record.append({"index": dl.index, "event_id": row.event_id, "event_type": row.event_type,
                           "verdict": row.verdict, "reason": row.reason, "delivery_id": row.delivery_id,
                           "dead_letter_reason": dl.reason, "delivery_attempts": dl.attempts})
            emit(log, logging.INFO, "guardrail_deadletter_replayed", blob=name, event_id=row.event_id,
                 verdict=row.verdict, reason=row.reason, dead_letter_reason=dl.reason)
        detail = "; ".join(parsed.problems)
        save("retrying" if failing else "gave_up" if abandoned else "replayed", detail, complete=True)

    def _failed(self, name: str, dl, exc: Exception, failing: dict, abandoned: set, record: list, now: datetime,
                tally: _Tally, clock: dict[str, Any], *, stop: bool = False) -> None:
        """One more failed try of ``dl`` on its clock: given up after ``GIVE_UP_AFTER`` and
        ``MIN_ATTEMPTS``, else tried again after its back-off (``stop``: the run ends here, and the
        next run tries it at once)."""
        why = str(exc)[:200] if isinstance(exc, GuardrailsError) else type(exc).__name__
        if not clock["counted"]:                  # the blob's clock: one more run in which an event failed
            clock["counted"] = True
            clock["runs"] += 1
            clock["since"] = clock["since"] or _iso(now)
        f = failing.get(str(dl.index))
        if f is None:
            # failing before, its own clock dropped (more failing events than a row keeps): the blob's clock
            f = ({"attempts": clock["prior_runs"], "first": clock["prior_since"] or _iso(now)} if clock["untracked"]
                 else {"attempts": 0, "first": _iso(now)})
            failing[str(dl.index)] = f
        f["attempts"] = int(f.get("attempts", 0)) + 1
        first = _parse_time(str(f.get("first", ""))) or now
        if f["attempts"] >= MIN_ATTEMPTS and now - first >= GIVE_UP_AFTER:
            failing.pop(str(dl.index), None)
            abandoned.add(dl.index)
            record.append({"index": dl.index, "event_id": dl.event_id[:256], "event_type": dl.event_type[:256],
                           "verdict": "gave_up", "reason": why, "dead_letter_reason": dl.reason})
            outcome = "gave up"
        elif stop:
            outcome = "run stopped: Table Storage failing; the next run tries it first"
        else:
            outcome = "retrying"
            f["next"] = _iso(next_try(now, f["attempts"]))
        tally.error(f"dead-letter blob {name}, event {dl.index}: {why} ({outcome}, attempt {f['attempts']})")
        emit(log, logging.ERROR, "guardrail_deadletter_replay_failed", blob=name, event_id=dl.event_id[:256],
             attempt=f["attempts"], outcome=outcome, reason=why)

    def retry(self, blob: str) -> tuple[bool, str]:
        """``deadletter retry BLOB``, after the cause is fixed: the blob's given-up events (and their
        records) and the failing events' clocks are forgotten, so the next run handles them at once;
        the events handled stay handled (their ``done`` ranges and records kept: handled again,
        one older than its dedup record would be decided again). An unreadable or rejected blob's
        state is deleted: the next run judges it afresh. (False, why) while a replay runs."""
        holder = f"retry-{uuid.uuid4().hex[:8]}"
        lease = getattr(self.state, "take_run_lease", None)
        if lease is not None and not lease(KIND, holder, 60.0):
            return False, "a dead-letter replay is running; try again when it has finished"
        try:
            prev = self.state.deadletter_state(blob)           # StoreError: the CLI's error, exit 2
            if prev is None:
                return True, "no replay state: the next replay handles it"
            if prev.get("outcome") in ("unreadable", "rejected"):
                self.state.delete_deadletter_state(blob)
                return True, f"{prev.get('outcome')} state cleared, the next replay judges it again"
            abandoned = from_ranges(str(prev.get("abandoned", "")))
            failing = dict(prev.get("failing") or {})
            if not abandoned and not failing and not prev.get("failing_untracked"):
                return True, f"nothing given up or failing ({prev.get('outcome') or 'pending'}): nothing to retry"
            events = [e for e in prev.get("events") or []
                      if not (isinstance(e, dict) and e.get("verdict") == "gave_up" and e.get("index") in abandoned)]
            what = f"{len(abandoned)} given-up and {len(failing)} failing event(s)"
            self.state.set_deadletter_state(blob, {
                "outcome": "retrying", "attempts": int(prev.get("attempts", 0)), "events": events,
                "detail": f"retry asked: {what} handled again at the next replay", "at": _iso(self._wall()),
                "done": str(prev.get("done", "")), "abandoned": "", "failing": {}, "failing_since": "",
                "failing_runs": 0, "failing_untracked": False})
            kept = len(from_ranges(str(prev.get("done", ""))))
            return True, f"{what} handled again at the next replay; the {kept} handled stay handled"
        finally:
            if lease is not None:
                self.state.release_run_lease(KIND, holder)

    @staticmethod
    def _store(write: Callable[[], Any], what: str) -> Any:
        """``write`` to Table Storage; failing, the run stops with an error naming ``what``."""
        try:
            return write()
        except StoreError as exc:
            raise _Stop(f"{what} could not be written, the run stopped: {exc}") from None

    def _save(self, name: str, state: dict[str, Any]) -> None:
        self._store(lambda: self.state.set_deadletter_state(name, {**state, "at": _iso(self._wall())}),
                    f"dead-letter blob {name}: its replay state")

    def _finish(self, summary: SweepSummary, start: float, *, blobs: int) -> SweepSummary:
        summary.finished = _iso(self._wall())
        summary.duration_s = round(self._clock() - start, 3)
        self.store.write(summary.to_dict())
        fields = {k: v for k, v in summary.to_dict().items() if k not in ("verdicts", "errors", "coverage",
                                                                         "subscriptions", "management_groups")}
        emit(log, logging.WARNING if summary.failed else logging.INFO, "guardrail_deadletter_replay_finished",
             blobs=blobs, **fields)
        return summary


# ---- command line ----------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser("deadletter", help="events Event Grid gave up on: list them, or replay them through the "
                                          "guardrails (the timer deadletter_replay does the same)")
    p.add_argument("action", choices=("list", "replay", "retry"),
                   help="retry BLOB: after fixing why its events were given up (or why it is unreadable), the next "
                        "replay handles the given-up and failing events again; those handled stay handled")
    p.add_argument("blob", nargs="?", help="retry: the blob's name, as 'list' prints it (retry only: replay "
                                           "takes every blob not yet settled)")
    p.add_argument("--limit", type=int, metavar="N", help="replay: at most N blobs")
    p.add_argument("--dry-run", action="store_true", help="replay: read and parse only, decide nothing")
    p.add_argument("--json", action="store_true", help="print JSON")


def cli_main(args) -> int:
    """Exit 0: nothing failed (list: nothing pending or failed); 1: a blob failed, is unreadable,
    or (list) waits; 2: usage (replay not configured, a blob name given to list or replay)."""
    import json

    from .bootstrap import build_replayer
    from .settings import DEAD_LETTER_CONNECTION, DEAD_LETTER_ENDPOINT, Settings
    from .simulate import UsageError

    if args.blob and args.action != "retry":     # never every blob when one was named
        raise UsageError(f"deadletter {args.action} takes no blob name; use 'deadletter retry BLOB' for one blob")
    replayer = build_replayer(Settings.from_env())
    if replayer is None:
        raise UsageError(f"set {DEAD_LETTER_ENDPOINT} (or {DEAD_LETTER_CONNECTION}) to the dead-letter storage")
    if args.action == "retry":
        if not args.blob:
            raise UsageError("deadletter retry needs the blob's name (python -m guardrails deadletter list)")
        if not any(b.name == args.blob for b in replayer.container.list()):
            raise UsageError(f"no blob {args.blob!r} in {replayer.container.name}")
        ok, what = replayer.retry(args.blob)
        print(f"{args.blob}: {what}")
        return 0 if ok else 1
    if args.action == "list":
        rows = replayer.status()
        if args.json:
            print(json.dumps({"container": replayer.container.name, "blobs": rows}, indent=2))
        else:
            print(f"{len(rows)} dead-letter blob(s) in {replayer.container.name}")
            for r in rows:
                print(f"  {r['state']:<10} {r['blob']}  ({r['size']} bytes, {r['last_modified']}"
                      + (f", attempts {r['attempts']}" if r["attempts"] else "") + ")"
                      + (f"  {r['detail']}" if r["detail"] else ""))
        return 1 if any(r["state"] != "replayed" for r in rows) else 0
    summary = replayer.run(dry_run=args.dry_run, limit=args.limit)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(f"{summary.sweep_id}: {summary.seen} event(s) {'found' if args.dry_run else 'replayed'}, verdicts "
              f"{dict(sorted(summary.verdicts.items()))}, {len(summary.errors)} error(s)"
              + (", stopped at the time budget" if summary.truncated else ""))
        for e in summary.errors:
            print(f"  {e}")
    return 1 if summary.failed else 0


__all__ = ["GIVE_UP_AFTER", "MIN_ATTEMPTS", "DeadLetterReplayer", "KIND", "REJECTED_REASON", "add_parser", "cli_main",
           "record_rejected_dead_letter"]
