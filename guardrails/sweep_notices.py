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
state that cannot be read or written never silences a notice. Failed fixes always notify. A state
no run has seen for 7 days (or twice the reminder interval, if longer) is pruned at the end of a
sweep that was not cut short: a deleted resource leaves no row behind for good.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any, Callable

from .errors import StoreError
from .logs import emit
from .model.decision import AuditRow

log = logging.getLogger("guardrails")

PRUNE_AFTER = timedelta(days=7)   # a finding state no run has seen for this long is dropped

# the outcomes that stay open after a decision: what the owner is told of
OPEN_OUTCOMES = frozenset({"violation", "escalated", "dry_run", "requested", "failed"})


def signature(row: AuditRow) -> str:
    """What the owner was told: each open finding's policy, rule, property, value and outcome."""
    items = sorted(json.dumps([v.policy, v.rule, v.property, v.before, v.outcome], default=str, sort_keys=True)
                   for v in row.violations if v.outcome in OPEN_OUTCOMES)
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:40]


def _parse(text: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else None


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


class NoticeGate:
    """``service.reconcile``'s ``notice_gate`` for one sweep run: ``state`` is the sweep's
    ``TableTimerState``; ``previous_start`` when the previous run began (None: no run before)."""

    def __init__(self, state, *, previous_start: datetime | None, remind_after: timedelta,
                 now: Callable[[], datetime]) -> None:
        self.state, self.previous_start, self.remind_after, self._now = state, previous_start, remind_after, now
        self.repeats = 0

    def __call__(self, row: AuditRow) -> str | None:
        """None: the owner is told (or nothing to tell); else the note for a repeat's row."""
        rid = row.resource_id
        try:
            if not row.notify or row.verdict not in ("violation", "escalated", "dry_run", "requested"):
                if not row.notify:        # compliant, fixed, skipped: a later finding is news again
                    self.state.delete_finding_state(rid)
                return None
            return self._judge(rid, row)
        except StoreError as exc:
            emit(log, logging.WARNING, "guardrail_notice_state_unavailable", resource_id=rid[:300], reason=exc.reason)
            return None

    def _judge(self, rid: str, row: AuditRow) -> str | None:
        now, sig = self._now(), signature(row)
        before = self.state.finding_state(rid)
        told = _parse(before.get("told")) if before else None
        seen = _parse(before.get("seen")) if before else None
        repeat = (before is not None and before.get("signature") == sig and told is not None and seen is not None
                  and self.previous_start is not None and seen >= self.previous_start
                  and self.remind_after > timedelta(0) and now - told < self.remind_after)
        self.state.set_finding_state(rid, {"signature": sig, "told": _iso(told if repeat else now), "seen": _iso(now)})
        if not repeat:
            return None
        self.repeats += 1
        hours = self.remind_after.total_seconds() / 3600
        return (f" [not notified again: unchanged since the owner was told at {_iso(told)};"
                f" reminder after {hours:g} h]")

    def prune(self, *, keep: timedelta = PRUNE_AFTER) -> int:
        """Delete the states no run has seen for ``keep`` (at least twice the reminder interval):
        the resource was deleted, fixed behind the listing, or left the policies' scope. One query
        and a delete per stale state; never raises (a state left is only a row)."""
        horizon = self._now() - max(keep, 2 * self.remind_after)
        pruned = 0
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
