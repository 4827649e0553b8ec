"""Dead-letter replay: events Event Grid gave up on, handled after all (timer ``deadletter_replay``,
``python -m guardrails deadletter``).

The reconciling sweep repairs the *state* a lost event left behind, but only the event knows who
made the change (its claims), the ARM correlation id, the exact operation, and, for a role
assignment, whom to count toward flip-flop. So each dead-lettered event goes through the very
``handle_event`` the trigger functions call, with the sweep's paced ARM clients:

    list the container (names only) ─▶ drop the state of blobs that are gone
    each blob not yet settled, oldest first, within the time budget:
        read it ─▶ ``deadletter.parse_blob`` ─▶ unreadable: state ``unreadable``, reported once
        each event ─▶ ``service.handle_event`` (claims, dedup, decision, fix, audit row as ever)
            raises (what would have made Event Grid redeliver): state ``retrying`` with the
            attempt count; the next run tries the blob again, ``MAX_ATTEMPTS`` runs at most,
            then ``gave_up``, reported
        all handled ─▶ state ``replayed`` with each event's id, type, verdict, reason, delivery id

At least once, like Event Grid: a blob whose run died half way is replayed again, and the events
already handled come out ``duplicate``/``ignored`` from the idempotency table, zero ARM calls. The
blobs are never changed or deleted (the container keeps Event Grid's record; its lifecycle is the
storage account's); progress lives in ``<prefix>TimerState`` (partition ``deadletter``). One summary
row per run in ``<prefix>Sweeps`` (``kind`` ``deadletter_replay``).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from .deadletter import ParsedBlob, parse_blob
from .errors import GuardrailsError, StoreError
from .logs import emit
from .sweep import SweepSummary, _iso, _Tally

log = logging.getLogger("guardrails")
MAX_ATTEMPTS = 5
SETTLED = frozenset({"replayed", "unreadable", "gave_up"})
KIND = "deadletter_replay"


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
        read and parse only, decide nothing, change no state."""
        start, started = self._clock(), self._wall()
        summary = SweepSummary(sweep_id=f"replay-{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", kind=KIND,
                               started=_iso(started), dry_run=dry_run)
        tally = _Tally(summary)
        try:
            listed = self.container.list()
        except StoreError as exc:
            tally.error(str(exc))
            emit(log, logging.ERROR, "guardrail_deadletter_list_failed", reason=str(exc))
            return self._finish(summary, start, blobs=0)
        states = self.state.deadletter_states()
        names = {b.name for b in listed}
        if not dry_run:
            for gone in sorted(set(states) - names):     # deleted by the container's lifecycle
                self.state.delete_deadletter_state(gone)
        pending = [b for b in sorted(listed, key=lambda b: (b.last_modified, b.name))
                   if (states.get(b.name) or {}).get("outcome") not in SETTLED]
        if limit is not None:
            pending = pending[:max(0, limit)]
        deadline = start + self.max_seconds
        done = 0
        for blob in pending:
            if self._clock() > deadline:
                tally.truncate()
                break
            self._blob(blob.name, states.get(blob.name) or {}, tally, dry_run, deadline)
            done += 1
        return self._finish(summary, start, blobs=done)

    # ---------------------------------------------------------------------------------------------
    def _blob(self, name: str, prev: dict[str, Any], tally: _Tally, dry_run: bool, deadline: float) -> None:
        try:
            data = self.container.read(name)
        except StoreError as exc:                 # transient: the next run reads it again
            tally.error(f"dead-letter blob {name}: {exc}")
            emit(log, logging.ERROR, "guardrail_deadletter_read_failed", blob=name, reason=str(exc))
            return
        if data is None:
            return                                # deleted since it was listed
        parsed = parse_blob(name, data)
        attempts = int(prev.get("attempts", 0)) + 1
        if parsed.unreadable:
            tally.error(f"dead-letter blob {name} is unreadable: {parsed.unreadable}")
            emit(log, logging.ERROR, "guardrail_deadletter_unreadable", blob=name, reason=parsed.unreadable)
            if not dry_run:
                self._save(name, "unreadable", attempts, parsed.unreadable, [])
            return
        if parsed.dropped:
            tally.error(f"dead-letter blob {name}: {parsed.dropped} item(s) beyond the first "
                        f"{len(parsed.events)} not replayed")
        if dry_run:
            for dl in parsed.events:
                tally.seen()
                emit(log, logging.INFO, "guardrail_deadletter_pending", blob=name, event_id=dl.event_id[:256],
                     event_type=dl.event_type[:256], dead_letter_reason=dl.reason, delivery_attempts=dl.attempts)
            return
        self._replay(parsed, attempts, tally, deadline)

    def _replay(self, parsed: ParsedBlob, attempts: int, tally: _Tally, deadline: float) -> None:
        name = parsed.blob
        results: list[dict[str, Any]] = []
        for dl in parsed.events:
            if self._clock() > deadline:          # the rest of this blob: the next run (dedup skips the done ones)
                tally.truncate()
                self._save(name, "retrying", attempts - 1, f"time budget ended after event {dl.index}", results)
                return
            try:
                row = self.service.handle_event(dl.envelope)
            except Exception as exc:              # noqa: BLE001 - what made the trigger raise: Event Grid would redeliver
                why = str(exc)[:200] if isinstance(exc, GuardrailsError) else type(exc).__name__
                outcome = "gave_up" if attempts >= MAX_ATTEMPTS else "retrying"
                tally.error(f"dead-letter blob {name}, event {dl.index}: {why} ({outcome}, attempt {attempts})")
                emit(log, logging.ERROR, "guardrail_deadletter_replay_failed", blob=name, event_id=dl.event_id[:256],
                     attempt=attempts, outcome=outcome, reason=why)
                self._save(name, outcome, attempts, f"event {dl.index}: {why}", results)
                return
            tally.seen()
            tally.decided(row.verdict)
            results.append({"event_id": row.event_id, "event_type": row.event_type, "verdict": row.verdict,
                            "reason": row.reason, "delivery_id": row.delivery_id,
                            "dead_letter_reason": dl.reason, "delivery_attempts": dl.attempts})
            emit(log, logging.INFO, "guardrail_deadletter_replayed", blob=name, event_id=row.event_id,
                 verdict=row.verdict, reason=row.reason, dead_letter_reason=dl.reason)
        detail = "; ".join([*parsed.problems, *([f"{parsed.dropped} item(s) not replayed"] if parsed.dropped else [])])
        self._save(name, "replayed", attempts, detail, results)

    def _save(self, name: str, outcome: str, attempts: int, detail: str, events: list[dict[str, Any]]) -> None:
        self.state.set_deadletter_state(name, {"outcome": outcome, "attempts": attempts, "at": _iso(self._wall()),
                                               "detail": detail, "events": events})

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
    p.add_argument("action", choices=("list", "replay"))
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


__all__ = ["DeadLetterReplayer", "KIND", "MAX_ATTEMPTS", "add_parser", "cli_main"]
