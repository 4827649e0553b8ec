"""Dead-letter replay: events Event Grid gave up on, handled after all (timer ``deadletter_replay``,
``python -m guardrails deadletter``).

The reconciling sweep repairs the *state* a lost event left behind, but only the event knows who
made the change (its claims), the ARM correlation id, the exact operation, and, for a role
assignment, whom to count toward flip-flop. So each dead-lettered event goes through the very
``handle_event`` the trigger functions call, with the sweep's paced ARM clients:

    list the container (names and sizes) ─▶ drop the state of blobs that are gone
    each blob not yet settled, oldest first, within the time budget:
        read it ─▶ ``deadletter.parse_blob`` ─▶ unreadable (not JSON, too large …): an ``invalid``
            audit row under the blob's name, state ``unreadable``, reported once
        each event not yet handled ─▶ ``service.handle_event`` (claims, dedup, decision, fix,
            audit row as ever)
            raises (what would have made Event Grid redeliver): that event is retried on the next
            runs, the blob's other events go on; after ``GIVE_UP_AFTER`` of failing and at least
            ``MIN_ATTEMPTS`` tries (Event Grid's own 24 h) the event is given up, reported. Each
            failing event's clock (tries, first failure; no error text) is kept for up to
            ``MAX_FAILING_TRACKED`` events (those that started failing last); an event beyond
            that runs on the blob's own clock (``failing_since``, ``failing_runs``: since its
            oldest failing event first failed), so a blob of any size is given up in the end
            Table Storage down: the run stops (every decision needs it)
        state ``replayed`` (every event handled), ``retrying`` (one still fails) or ``gave_up``
        (handled but for given-up events), with each event's id, verdict, reason, delivery id

Progress is per event (``done`` ranges of indexes in the state row), so a run that dies or hits
its time budget half way through a blob carries on where it stopped, and an event handled before
it was dead-lettered comes out ``duplicate`` while its idempotency record lasts
(``GUARDRAILS_DEDUP_COMPLETED_HOURS``), else decided again on live state (nothing left to fix is
``compliant``). The blobs are never changed or deleted (the container keeps Event Grid's record);
progress lives in ``<prefix>TimerState`` (partition ``deadletter``). One summary row per run in
``<prefix>Sweeps`` (``kind`` ``deadletter_replay``).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .deadletter import MAX_BLOB_BYTES, ParsedBlob, from_ranges, parse_blob, to_ranges
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
SETTLED = frozenset({"replayed", "unreadable", "gave_up"})
KIND = "deadletter_replay"


class _Stop(Exception):
    """Table Storage failed: end the run (every decision and every state write needs it)."""


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
        try:
            listed = self.container.list()
            states = self.state.deadletter_states()
            names = {b.name for b in listed}
            if not dry_run:
                for gone in sorted(set(states) - names):     # deleted by the container's lifecycle rule
                    self.state.delete_deadletter_state(gone)
            pending = [b for b in sorted(listed, key=lambda b: (b.last_modified, b.name))
                       if (states.get(b.name) or {}).get("outcome") not in SETTLED]
            if limit is not None:
                pending = pending[:max(0, limit)]
            deadline = start + self.max_seconds
            for blob in pending:
                if self._clock() > deadline:
                    tally.truncate()
                    break
                self._blob(blob, states.get(blob.name) or {}, tally, dry_run, deadline, summary.sweep_id)
                done += 1
        except (StoreError, _Stop) as exc:
            if isinstance(exc, StoreError):
                tally.error(str(exc))
            emit(log, logging.ERROR, "guardrail_deadletter_run_stopped", reason=str(exc)[:300])
        return self._finish(summary, start, blobs=done)

    # ---------------------------------------------------------------------------------------------
    def _blob(self, blob, prev: dict[str, Any], tally: _Tally, dry_run: bool, deadline: float, run_id: str) -> None:
        name = blob.name
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
                    self.container.name, name, parsed.unreadable, run_id=run_id))
                tally.decided("invalid")
                self._save(name, {"outcome": "unreadable", "attempts": int(prev.get("attempts", 0)) + 1,
                                  "detail": parsed.unreadable})
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
            try:
                row = self.service.handle_event(dl.envelope)
            except StoreError as exc:
                if not isinstance(exc, IdempotencyError):       # Table Storage itself: stop the run
                    tally.error(f"dead-letter blob {name}, event {dl.index}: {exc}")
                    detail = f"event {dl.index}: {exc}"
                    self._store(lambda: save("retrying", detail))
                    raise _Stop(str(exc)) from None
                self._failed(name, dl, exc, failing, abandoned, record, now, tally, clock)
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
                tally: _Tally, clock: dict[str, Any]) -> None:
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
        else:
            outcome = "retrying"
            f["next"] = _iso(next_try(now, f["attempts"]))
        tally.error(f"dead-letter blob {name}, event {dl.index}: {why} ({outcome}, attempt {f['attempts']})")
        emit(log, logging.ERROR, "guardrail_deadletter_replay_failed", blob=name, event_id=dl.event_id[:256],
             attempt=f["attempts"], outcome=outcome, reason=why)

    @staticmethod
    def _store(write: Callable[[], Any]) -> Any:
        try:
            return write()
        except StoreError as exc:
            raise _Stop(str(exc)) from None

    def _save(self, name: str, state: dict[str, Any]) -> None:
        self._store(lambda: self.state.set_deadletter_state(name, {**state, "at": _iso(self._wall())}))

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
                   help="retry BLOB: forget a blob's replay state (after fixing why it was given up or unreadable); "
                        "the next replay handles it again")
    p.add_argument("blob", nargs="?", help="retry: the blob's name, as 'list' prints it")
    p.add_argument("--limit", type=int, metavar="N", help="replay: at most N blobs")
    p.add_argument("--dry-run", action="store_true", help="replay: read and parse only, decide nothing")
    p.add_argument("--json", action="store_true", help="print JSON")


def cli_main(args) -> int:
    """Exit 0: nothing failed (list: nothing pending or failed); 1: a blob failed, is unreadable,
    or (list) waits; 2: usage (replay not configured)."""
    import json

    from .bootstrap import build_replayer
    from .settings import DEAD_LETTER_CONNECTION, DEAD_LETTER_ENDPOINT, Settings
    from .simulate import UsageError

    replayer = build_replayer(Settings.from_env())
    if replayer is None:
        raise UsageError(f"set {DEAD_LETTER_ENDPOINT} (or {DEAD_LETTER_CONNECTION}) to the dead-letter storage")
    if args.action == "retry":
        if not args.blob:
            raise UsageError("deadletter retry needs the blob's name (python -m guardrails deadletter list)")
        if args.blob not in {b.name for b in replayer.container.list()}:
            raise UsageError(f"no blob {args.blob!r} in {replayer.container.name}")
        replayer.state.delete_deadletter_state(args.blob)
        print(f"{args.blob}: state cleared, the next replay handles it again")
        return 0
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


__all__ = ["GIVE_UP_AFTER", "MIN_ATTEMPTS", "DeadLetterReplayer", "KIND", "add_parser", "cli_main"]
