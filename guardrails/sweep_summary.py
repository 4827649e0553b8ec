"""The reconciling sweep's and the timers' summary: one run's counters (``SweepSummary``, a row
of ``<prefix>Sweeps``) and the thread-safe tally the run's units count into (``_Tally``)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

SWEEP_EVENT_TYPE = "Guardrails.Sweep"
EXPIRY_EVENT_TYPE = "Guardrails.ExemptionExpired"
# verdict of a decision -> summary counter
_COUNTER = {"compliant": "compliant", "remediated": "remediated", "requested": "requested",
            "failed": "failed", "violation": "open", "dry_run": "open", "escalated": "open",
            "ignored": "skipped", "invalid": "skipped", "duplicate": "skipped"}


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class SweepSummary:
    """One run, as written to ``<prefix>Sweeps``. ``remediated``: fixes seen in place;
    ``requested``: fixes sent and not yet confirmed (a long-running write still running, or one
    already in flight); ``open``: non-compliant and left so (notify-only,
    audit mode / dry run, escalated); ``skipped``: gone or no longer covered when decided;
    ``reads``: ARM read tokens taken; ``throttled_wait_s``: time spent waiting for them."""

    sweep_id: str
    kind: str
    started: str
    dry_run: bool = False
    finished: str = ""
    subscriptions: list[str] = field(default_factory=list)
    management_groups: list[str] = field(default_factory=list)
    seen: int = 0
    compliant: int = 0
    remediated: int = 0
    requested: int = 0
    open: int = 0
    failed: int = 0
    skipped: int = 0
    reads: int = 0
    pages: int = 0
    throttled_wait_s: float = 0.0
    duration_s: float = 0.0
    truncated: bool = False
    uncovered: int = 0            # event sources (subscriptions, vaults, workspaces) not all delivered to us
    repeats_not_notified: int = 0  # open findings unchanged since their owner was told (sweep_notices)
    units: int = 0                # units of work (subscriptions, management groups, vaults, keys) in the ring
    units_done: int = 0           # of those, finished in full by this run
    began_with: str = ""          # the unit this run began with (the cursor)
    next_begins_with: str = ""    # the unit the next run begins with
    verdicts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    coverage: list[dict[str, Any]] = field(default_factory=list)   # ``Coverage.to_dict`` per event source

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Tally:
    """Thread-safe counting into a summary."""

    def __init__(self, summary: SweepSummary) -> None:
        self.s = summary
        self._lock = threading.Lock()
        self.cuts = 0            # times a part of the run was cut short (``truncate``)

    def seen(self, n: int = 1, compliant: int = 0) -> None:
        with self._lock:
            self.s.seen += n
            self.s.compliant += compliant

    def decided(self, verdict: str) -> None:
        with self._lock:
            counter = _COUNTER.get(verdict, "skipped")
            setattr(self.s, counter, getattr(self.s, counter) + 1)
            self.s.verdicts[verdict] = self.s.verdicts.get(verdict, 0) + 1

    def truncate(self) -> None:
        with self._lock:
            self.s.truncated = True
            self.cuts += 1

    def error(self, text: str) -> None:
        with self._lock:
            self.s.errors.append(text[:300])
            self.s.failed += 1
