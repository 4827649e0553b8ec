"""The sweep tells an owner of a finding once, not on every run.

A finding the guardrail may not fix (notify-only rules, an escalated grant, a fix Azure refuses)
stays open until its owner acts, and the sweep meets it again on every run. Each run writes its
audit row (the record of what was found, when), but only news sets ``notify`` and logs
``guardrail_violation_notify``:

- a finding set not seen on the previous run: the resource was compliant, unseen, or new;
- a finding set that changed (another rule, another value);
- the same set, once ``GUARDRAILS_SWEEP_RENOTIFY_HOURS`` (default 24) have passed since the owner
  was last told: a reminder. ``0`` tells on every run, as before.

Otherwise the row says ``notify: false`` and why (``unchanged since the owner was told at …``).
State per resource (``<prefix>TimerState``, partition ``finding``): the findings' signature, when
the owner was last told, when a sweep last saw them. "Seen on the previous run" means seen since
that run began; a resource a run did not reach (its budget ran out) is news again next time, and a
state that cannot be read or written never silences a notice. A finding some decision settled
since the owner was told (an event found it compliant or fixed it; the audit's per-resource index
says so) and that came back is news, and so is the same finding under a new owner. Failed fixes always notify
(never gated); their state is kept all the same, so that a later run knows them open.

A finding the sweep left open stays the resource's latest audited decision (what the compliance
report counts) until a decision closes it. When its owner fixes it and the write event is lost,
no event does: a run that lists the resource compliant while it holds an open state for it
(``holds``: the states are listed once a run) decides it (a ``compliant`` row) and the state goes;
resources with no open state are only counted. A state no run has seen for 7 days (or twice the
reminder interval, if longer) is pruned at the end of a sweep that was not cut short: a deleted
resource leaves no row behind for good.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from .errors import FindingStateChanged, StoreError
from .logs import emit
from .model.decision import AuditRow

log = logging.getLogger("guardrails")

PRUNE_AFTER = timedelta(days=7)   # a finding state no run has seen for this long is dropped

# the outcomes that stay open after a decision: what the owner is told of
OPEN_OUTCOMES = frozenset({"violation", "escalated", "dry_run", "requested", "failed"})


def signature(row: AuditRow, held: Sequence[tuple[Any, dict]] = ()) -> str:
    """What the owner was told: each open finding's policy, rule, property, value and outcome,
    and who was told (the held notices' ``owner``: a new owner has not heard of it)."""
    items = sorted(json.dumps([v.policy, v.rule, v.property, v.before, v.outcome], default=str, sort_keys=True)
                   for v in row.violations if v.outcome in OPEN_OUTCOMES)
    owners = sorted({str(fields.get("owner")) for _logger, fields in held if fields.get("owner")})
    items += [f"owner:{o}" for o in owners]
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:40]


def _parse(text: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else None


def _iso(dt: datetime) -> str:
    """Kept to the microsecond: a run that began at x.5 s must still see a decision made at x.7 s
    of the run before it as "seen since that run began"."""
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _shown(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


class NoticeGate:
    """``service.reconcile``'s ``notice_gate`` for one sweep run: ``state`` is the sweep's
    ``TableTimerState``; ``previous_start`` when the previous run began (None: no run before)."""

    def __init__(self, state, *, previous_start: datetime | None, remind_after: timedelta,
                 now: Callable[[], datetime], settled_since: Callable[[str, datetime], bool] | None = None) -> None:
        self.state, self.previous_start, self.remind_after, self._now = state, previous_start, remind_after, now
        # whether any decision found the resource compliant or fixed it since a time (the audit's
        # per-resource index: an event may have settled it between two sweeps); None: not asked
        self.settled_since = settled_since
        self.repeats = 0
        self._lock = threading.Lock()          # the sweep decides on a thread pool
        self._open: set[str] | None = None     # lower-cased ids with an open state (``holds``: listed once)

    def __call__(self, row: AuditRow, held: Sequence[tuple[Any, dict]] = ()) -> str | None:
        """None: the owner is told (or nothing to tell); else the note for a repeat's row."""
        rid = row.resource_id
        try:
            if row.verdict == "failed":
                # never gated; kept as open (notified or not) so that a run that lists the resource
                # compliant later closes it (``holds``)
                now = _iso(self._now())
                self.state.set_finding_state(rid, {"signature": signature(row, held), "told": now, "seen": now})
                return None
            if not row.notify or row.verdict not in ("violation", "escalated", "dry_run", "requested"):
                if not row.notify:        # compliant, fixed, skipped: a later finding is news again
                    self.state.delete_finding_state(rid)
                return None
            return self._judge(rid, row, held)
        except (StoreError, OverflowError) as exc:
            emit(log, logging.WARNING, "guardrail_notice_state_unavailable", resource_id=rid[:300],
                 reason=getattr(exc, "reason", type(exc).__name__))
            return None

    def _judge(self, rid: str, row: AuditRow, held: Sequence[tuple[Any, dict]]) -> str | None:
        now, sig = self._now(), signature(row, held)
        before = self.state.finding_state(rid)
        told = _parse(before.get("told")) if before else None
        seen = _parse(before.get("seen")) if before else None
        repeat = (before is not None and before.get("signature") == sig and told is not None and seen is not None
                  and self.previous_start is not None and seen >= self.previous_start
                  and self.remind_after > timedelta(0) and now - told < self.remind_after)
        if repeat and self.settled_since is not None and self.settled_since(rid, told):
            repeat = False        # fixed (by its owner, an event) and broken again since: news
        try:
            # over the state as read: of two runs judging one finding at once, one tells its owner
            self.state.set_finding_state(rid, {"signature": sig, "told": _iso(told if repeat else now),
                                               "seen": _iso(now)}, read=before, conditional=True)
        except FindingStateChanged:
            with self._lock:
                self.repeats += 1
            return " [not notified again: another run judged this finding at the same moment]"
        if not repeat:
            return None
        with self._lock:
            self.repeats += 1
        hours = self.remind_after.total_seconds() / 3600
        return (f" [not notified again: unchanged since the owner was told at {_shown(told)};"
                f" reminder after {hours:g} h]")

    def holds(self, resource_id: str) -> bool:
        """Whether a finding left open (a violation, a failed fix …) is kept for ``resource_id``: a
        run that lists it compliant then decides it, so that an audited compliant decision closes
        the finding. The states are listed on the first call (one query a run, as ``prune``);
        states that cannot be listed hold nothing (the resource is only counted, as before)."""
        with self._lock:
            if self._open is None:
                try:
                    self._open = {str(st.get("resource_id") or "").lower() for st in self.state.finding_states()}
                except StoreError as exc:
                    self._open = set()
                    emit(log, logging.WARNING, "guardrail_notice_state_unavailable", reason=exc.reason,
                         during="list")
            return resource_id.lower() in self._open

    def prune(self, *, keep: timedelta = PRUNE_AFTER) -> int:
        """Delete the states no run has seen for ``keep`` (at least twice the reminder interval):
        the resource was deleted, fixed behind the listing, or left the policies' scope. One query
        and a delete per stale state; never raises (a state left is only a row)."""
        pruned = 0
        try:
            horizon = self._now() - max(keep, 2 * self.remind_after)
        except OverflowError:            # a reminder interval beyond the calendar: nothing is that old
            return 0
        try:
            for st in self.state.finding_states():
                seen = _parse(st.get("seen"))
                if seen is None or seen < horizon:
                    self.state.delete_finding_key(st["key"])
                    pruned += 1
        except StoreError as exc:
            emit(log, logging.WARNING, "guardrail_notice_state_unavailable", reason=exc.reason, during="prune")
        return pruned


__all__ = ["NoticeGate", "OPEN_OUTCOMES", "signature"]
