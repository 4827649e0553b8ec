"""What a warm worker remembers between deliveries: its own settled writes and recent reads.

Both are bounded, thread-safe and only ever save work: a miss costs the lookup or read the
worker would have made anyway, never a different decision.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Callable

from .model.resource import ResourceSnapshot


class SettledWrites:
    """Correlation ids of this worker's fixes that finished within their delivery.

    A pending-fix record exists only for a write left ``requested``; a write this worker saw
    finish never has one. So its own write event (``data.correlationId`` = the id sent as
    ``x-ms-correlation-request-id``) is ignored without looking records up. The fact never goes
    stale, whatever other instances do; an event this worker cannot vouch for (another instance's
    write, an id evicted from the bounded memory) is looked up as before.
    """

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._ids: dict[str, None] = {}
        self._lock = threading.Lock()

    def add(self, correlation_id: str) -> None:
        with self._lock:
            if len(self._ids) >= self._size:
                self._ids.pop(next(iter(self._ids)))
            self._ids[correlation_id.lower()] = None

    def holds(self, correlation_id: str | None) -> bool:
        return bool(correlation_id) and correlation_id.lower() in self._ids

    def discard(self, correlation_id: str) -> None:
        """A write whose outcome this worker could not confirm after all: its event is looked up."""
        with self._lock:
            self._ids.pop(correlation_id.lower(), None)


class SnapshotCache:
    """Re-use a resource read for events that happened before it.

    A snapshot read at wall time R already reflects every change ARM reported before R. An event
    whose ``eventTime`` is older than R minus the allowed clock skew is decided on that snapshot
    instead of a new GET, as long as the snapshot is younger than ``max_age`` — so a burst of
    events for one resource costs one read, and every decision is still on live state.
    """

    def __init__(self, *, max_age: float, skew: float, wall_clock: Callable[[], datetime], size: int = 1024) -> None:
        self._max_age, self._skew, self._wall, self._size = max_age, skew, wall_clock, size
        self._items: dict[str, tuple[ResourceSnapshot, datetime]] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, resource_id: str, event_time: datetime | None) -> ResourceSnapshot | None:
        if self._max_age <= 0 or event_time is None:
            return None
        with self._lock:
            item = self._items.get(resource_id.lower())
        if item is None:
            return None
        snapshot, read_at = item
        now = self._wall()
        if (now - read_at).total_seconds() > self._max_age:
            return None
        if (read_at - event_time).total_seconds() <= self._skew:
            return None
        self.hits += 1
        return snapshot

    def now(self) -> datetime:
        """Take this before sending the GET whose answer goes to ``put``."""
        return self._wall()

    def put(self, snapshot: ResourceSnapshot, *, requested_at: datetime) -> None:
        """``requested_at``: when the GET was sent, not when its answer came. A change that lands
        while the answer is on its way is not in the snapshot; stamped on arrival, that change's
        event would look older than the snapshot and be decided on the state before it. Of two
        reads of one resource, the one sent later is kept, whichever answer comes back last."""
        if self._max_age <= 0:
            return
        key = snapshot.resource_id.lower()
        with self._lock:
            held = self._items.get(key)
            if held is not None and held[1] > requested_at:
                return      # a read sent later is held already: an older answer arriving last never replaces it
            if held is None and len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = (snapshot, requested_at)

    def forget(self, resource_id: str) -> None:
        with self._lock:
            self._items.pop(resource_id.lower(), None)


__all__ = ["SettledWrites", "SnapshotCache"]
