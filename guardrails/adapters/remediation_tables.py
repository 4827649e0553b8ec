"""Table-backed remediation state, shared by every worker: the circuit breakers
(``TableBreakerStore``, ``<prefix>Breakers``) and the fixes still running (``TablePendingFixes``,
``<prefix>PendingFixes``)."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from ..errors import StoreError
from ..logs import emit
from .tables import NO_CONTENT, _MAX_STRING, Tables, _log, _sha, _store_error, delete_existing, resource_partition


MAX_PERMIT_KEYS = 200     # event keys of the permits kept per breaker (inside the window, newest)
TIME_BUCKETS = 500        # at most this many [first, last, count] entries per window: one table property
                          # holds the window whatever ``max_actions`` allows (the schema: up to 100,000)


def _buckets(times: list) -> list[list]:
    """Stored times as [first, last, count]: an entry of an earlier release is one bare float."""
    out = []
    for t in times:
        if isinstance(t, (int, float)):
            out.append([float(t), float(t), 1])
        elif isinstance(t, list) and len(t) == 3:
            out.append([float(t[0]), float(t[1]), int(t[2])])
    return out


def admit(times: list, keys: list[list], *, now: float, window_seconds: float, max_actions: int,
          key: str | None) -> tuple[bool, bool, list[list], list[list]]:
    """One permit asked at ``now`` (pure): (allowed, counted, buckets, keys) inside the window.

    The permits are kept as buckets [first, last, count], each at most window / ``TIME_BUCKETS``
    wide; a bucket leaves the window when its *last* permit does, so the count errs on the side
    of the breaker. A ``key`` (the event) whose permit is still inside the window is allowed
    again and not counted: Event Grid redelivers an event whose fix failed, and each redelivery
    taking a permit would open the breaker for the whole subscription after a few throttled fixes."""
    horizon = now - window_seconds
    buckets = [b for b in _buckets(times) if b[1] > horizon]
    keys = [[k, t] for k, t in keys if t > horizon]
    if key is not None and any(k == key for k, _t in keys):
        return True, False, buckets, keys
    if sum(b[2] for b in buckets) >= max_actions:
        return False, False, buckets, keys
    width = window_seconds / TIME_BUCKETS
    if buckets and now - buckets[-1][0] < width:
        buckets[-1] = [buckets[-1][0], max(buckets[-1][1], now), buckets[-1][2] + 1]
    else:
        buckets.append([now, now, 1])
    if key is not None:
        keys = (keys + [[key[:300], now]])[-MAX_PERMIT_KEYS:]
    return True, True, buckets, keys


def give_back(times: list, keys: list[list], key: str) -> tuple[list[list], list[list]] | None:
    """Take back the permit ``key`` (the event) was given (pure): (buckets, keys) without it, or
    None when no permit of that key is kept (never taken, out of the window, or its key dropped
    as one of the oldest: then nothing is taken back, erring towards the breaker). One count
    leaves the bucket that holds the permit's time (the nearest one when workers' clocks put it
    outside every bucket); a bucket left empty goes."""
    key = key[:300]
    taken = [t for k, t in keys if k == key]
    if not taken:
        return None
    buckets = _buckets(times)
    if buckets:
        at = max(taken)
        i = min(range(len(buckets)), key=lambda n: (0.0 if buckets[n][0] <= at <= buckets[n][1]
                                                    else min(abs(at - buckets[n][0]), abs(at - buckets[n][1])), -n))
        buckets[i] = [buckets[i][0], buckets[i][1], buckets[i][2] - 1]
        buckets = [b for b in buckets if b[2] > 0]
    return buckets, [[k, t] for k, t in keys if k != key]


def _times_of(entity) -> list:
    """The window as stored: ``buckets`` ([first, last, count] entries) when this release wrote
    it (its ``times`` is then a mirror for an earlier release), else the bare ``times`` an
    earlier release wrote (its REPLACE drops ``buckets``)."""
    name = "buckets" if entity.get("buckets") else "times"
    try:
        values = json.loads(entity.get(name) or "[]")
    except ValueError:
        return []
    return values if isinstance(values, list) else []


def _keys_of(entity) -> list[list]:
    try:
        keys = json.loads(entity.get("keys") or "[]")
    except ValueError:
        return []
    return [[str(k), float(t)] for k, t in keys] if isinstance(keys, list) else []


class TableBreakerStore:
    """Sliding-window remediation counter per (policy, subscription), shared by every worker.

    One entity per pair holds the action times inside the window and the event keys of their
    permits (a redelivered event reuses its permit); every change is an etag-conditioned update
    (optimistic concurrency), so concurrent workers never both take the last slot. A permit whose
    action was never taken is given back (``release``), the same way. Once tripped the breaker
    stays open until ``reset``.
    """

    MAX_ATTEMPTS = 20

    def __init__(self, tables: Tables, *, clock=lambda: datetime.now(timezone.utc)) -> None:
        self._t = tables
        self._clock = clock
        # pk -> (buckets, keys, etag) last written here
        self._known: dict[str, tuple[list[list], list[list], str | None]] = {}
        # pk -> keys of the permits this worker took (and has not given back): the only ones it
        # answers from memory; a key it merely read may have been given back by another worker
        self._mine: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(policy_id: str, subscription_id: str) -> tuple[str, str]:
        return _sha(f"{policy_id}|{subscription_id.lower()}")[:32], "breaker"

    def _entity(self, pk, rk, policy_id, subscription_id, times, keys, is_open, now,
                opened_at: str | None = None) -> dict[str, Any]:
        keys = list(keys)
        keys_text = json.dumps(keys)
        while len(keys_text) > _MAX_STRING and keys:
            keys = keys[1:]               # oldest first: a dropped key only costs a redelivery one more permit
            keys_text = json.dumps(keys)
        # the buckets have a property of their own: an earlier release reads ``times`` as bare
        # numbers (a bucket there would crash it during a rolling deploy or after a rollback); it
        # is given each bucket's last time, so it still counts the window, if low
        if opened_at is None:
            opened_at = now.isoformat() if is_open else ""
        return {"PartitionKey": pk, "RowKey": rk, "policy": policy_id, "subscription": subscription_id,
                "buckets": json.dumps(times), "times": json.dumps([b[1] for b in times]),
                "keys": keys_text, "open": is_open, "opened_at": opened_at}

    def _remember(self, pk: str, state: tuple[list[list], list[list], str | None] | None, *,
                  took: str | None = None, gave: str | None = None) -> None:
        """Keep (or, with None, forget) the state last written or read here; ``took``: a key whose
        permit this worker just took, ``gave``: one it just gave back."""
        with self._lock:
            mine = self._mine.setdefault(pk, set())
            if took is not None:
                mine.add(took[:300])
            if gave is not None:
                mine.discard(gave[:300])
            if state is None:
                self._known.pop(pk, None)
                return
            self._known[pk] = state
            mine.intersection_update(k for k, _t in state[1])     # bounded by the keys kept

    def _fast_path(self, table, pk, rk, policy_id, subscription_id, max_actions, window_seconds,
                   key) -> tuple[bool, bool] | None:
        """Update from this worker's last known state with its etag: one call instead of two (none
        for a redelivery of an event whose permit this worker took). None when there is no usable
        cached state or another worker changed it meanwhile."""
        with self._lock:
            cached = self._known.get(pk)
            mine = key is not None and key[:300] in self._mine.get(pk, ())
        if cached is None:
            return None
        times, keys, etag = cached
        now = self._clock()
        allowed, counted, times, keys = admit(times, keys, now=now.timestamp(), window_seconds=window_seconds,
                                              max_actions=max_actions, key=key)
        if not allowed:
            return None          # about to trip: decide on a fresh read
        if not counted:
            # this event's permit, taken here inside the window; one only read here may have been
            # given back since (``release`` on another worker): the table decides
            return (True, False) if mine else None
        try:
            meta = table.update_entity(self._entity(pk, rk, policy_id, subscription_id, times, keys, False, now),
                                       mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            self._remember(pk, None)
            return None
        self._remember(pk, (times, keys, meta.get("etag")), took=key)
        return True, True

    def try_acquire(self, policy_id: str, subscription_id: str, *, max_actions: int, window_seconds: int,
                    key: str | None = None) -> bool:
        """One permit for a fix; ``key`` (the event id) makes a redelivery of the same event
        reuse the permit it took inside the window instead of taking another."""
        return self.acquire(policy_id, subscription_id, max_actions=max_actions, window_seconds=window_seconds,
                            key=key)[0]

    def acquire(self, policy_id: str, subscription_id: str, *, max_actions: int, window_seconds: int,
                key: str | None = None) -> tuple[bool, bool]:
        """``try_acquire`` saying also whether this call took the permit: (allowed, counted).
        ``counted`` is False for a redelivery allowed on the permit its event took before (which
        may have been acted on: only a permit a call counted is for it to give back)."""
        table = self._t.table(self._t.breakers_name)
        pk, rk = self._keys(policy_id, subscription_id)
        try:
            fast = self._fast_path(table, pk, rk, policy_id, subscription_id, max_actions, window_seconds, key)
        except AzureError as exc:
            raise _store_error("breaker update", exc) from exc
        if fast is not None:
            return fast
        for _attempt in range(self.MAX_ATTEMPTS):
            now = self._clock()
            try:
                try:
                    current = table.get_entity(pk, rk)
                except ResourceNotFoundError:
                    current = None
                if current is None:
                    allowed, _c, times, keys = admit([], [], now=now.timestamp(), window_seconds=window_seconds,
                                                     max_actions=max_actions, key=key)
                    entity = self._entity(pk, rk, policy_id, subscription_id, times if allowed else [],
                                          keys if allowed else [], not allowed, now)
                    try:
                        meta = table.create_entity(entity, **NO_CONTENT)
                        if allowed:
                            self._remember(pk, (times, keys, meta.get("etag")), took=key)
                        return allowed, allowed
                    except ResourceExistsError:
                        continue
                allowed, counted, times, keys = admit(
                    _times_of(current), _keys_of(current),
                    now=now.timestamp(), window_seconds=window_seconds, max_actions=max_actions, key=key)
                if current.get("open"):
                    # open: no new permit; an event's own permit, taken before it opened, stands (as
                    # the worker that took it answers from its memory); the open state is never cached
                    return allowed and not counted, False
                if allowed and not counted:
                    self._remember(pk, (times, keys, current.metadata["etag"]))
                    return True, False
                entity = self._entity(pk, rk, policy_id, subscription_id, times, keys, not allowed, now)
                try:
                    meta = table.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                               match_condition=MatchConditions.IfNotModified)
                    if allowed:
                        self._remember(pk, (times, keys, meta.get("etag")), took=key)
                    else:
                        self._remember(pk, None)
                    return allowed, allowed
                except ResourceModifiedError:
                    continue
            except AzureError as exc:
                raise _store_error("breaker update", exc) from exc
        raise StoreError("breaker update kept conflicting; retry later")

    def release(self, policy_id: str, subscription_id: str, key: str) -> bool:
        """Give back the permit ``key`` (the event id it was taken with) holds: its action was
        never taken (the fix plan wrote nothing, or ARM refused the write), so it no longer counts
        against the window. Etag-conditioned like every change; an open breaker stays open (only
        ``reset`` closes it), and the event's redelivery asks for a permit again. False when there
        was none to give back. Call it only for a permit the caller's own ``acquire`` counted: an
        earlier delivery's permit may stand for a fix that was made."""
        table = self._t.table(self._t.breakers_name)
        pk, rk = self._keys(policy_id, subscription_id)
        try:
            for _attempt in range(self.MAX_ATTEMPTS):
                try:
                    current = table.get_entity(pk, rk)
                except ResourceNotFoundError:
                    self._remember(pk, None, gave=key)
                    return False              # reset meanwhile: nothing counts it any more
                left = give_back(_times_of(current), _keys_of(current), key)
                if left is None:
                    self._remember(pk, None, gave=key)
                    return False
                times, keys = left
                is_open = bool(current.get("open"))
                entity = self._entity(pk, rk, policy_id, subscription_id, times, keys, is_open, self._clock(),
                                      opened_at=str(current.get("opened_at") or ""))
                try:
                    meta = table.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                               match_condition=MatchConditions.IfNotModified)
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue
                self._remember(pk, None if is_open else (times, keys, meta.get("etag")), gave=key)
                return True
        except AzureError as exc:
            raise _store_error("breaker release", exc) from exc
        raise StoreError("breaker release kept conflicting; retry later")

    def is_open(self, policy_id: str, subscription_id: str) -> bool:
        pk, rk = self._keys(policy_id, subscription_id)
        try:
            return bool(self._t.table(self._t.breakers_name).get_entity(pk, rk).get("open"))
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise _store_error("breaker read", exc) from exc

    def reset(self, policy_id: str, subscription_id: str) -> bool:
        """Close the breaker and forget its window. Returns whether there was state to reset."""
        pk, rk = self._keys(policy_id, subscription_id)
        with self._lock:
            self._known.pop(pk, None)
            self._mine.pop(pk, None)
        return delete_existing(self._t.table(self._t.breakers_name), pk, rk, "breaker reset")


# ---------------------------------------------------------------------------------------
class TablePendingFixes:
    """Fixes whose long-running operation was still running when the delivery's budget ran
    out (verdict ``requested``): confirmed when the guardrail's own write event arrives."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    MAX_PARTS = 15     # 15 x 30,000 characters: well inside an entity's 1 MiB (strings are UTF-16)

    def add(self, resource_id: str, event_id: str, record: dict[str, Any]) -> None:
        """Keep ``record`` whole: its JSON in ``record`` when it fits one property, else in
        ``record_0..n`` (``record_parts`` = n), never cut (a cut record would not parse)."""
        body = json.dumps(record, sort_keys=True, default=str)
        if len(body) <= _MAX_STRING:
            parts: dict[str, Any] = {"record": body}
        else:
            chunks = [body[o:o + _MAX_STRING] for o in range(0, len(body), _MAX_STRING)]
            if len(chunks) > self.MAX_PARTS:
                raise StoreError(f"pending fix record too large for one table row ({len(body)} characters)")
            parts = {"record": "", "record_parts": len(chunks), **{f"record_{i}": c for i, c in enumerate(chunks)}}
        try:
            self._t.table(self._t.pending_name).upsert_entity({
                "PartitionKey": resource_partition(resource_id), "RowKey": _sha(event_id)[:32],
                "resource_id": resource_id[:4000], "event_id": event_id[:256], **parts}, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise _store_error("pending fix write", exc) from exc

    def stale(self, before: datetime, *, limit: int = 200) -> list[tuple[str, list[tuple[str, dict[str, Any]]], datetime]]:
        """Pending fixes written before ``before``, by resource, oldest first, at most ``limit``
        resources: (resource id, those fixes only, when the oldest was written). A fix of the same
        resource written since is not among them: it may still be running. These are the fixes
        whose own write event never settled them (it came before the record was written, or was
        lost)."""
        try:
            rows = list(self._t.table(self._t.pending_name).query_entities(
                "Timestamp lt @t", parameters={"t": before},
                select=["PartitionKey", "RowKey", "resource_id", "Timestamp"]))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise _store_error("pending fix read", exc) from exc
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        rows.sort(key=lambda r: r.metadata.get("timestamp") or epoch)
        picked: dict[str, tuple[str, set[str], datetime]] = {}
        for r in rows:
            rid = str(r.get("resource_id") or "")
            if not rid:
                continue
            if r["PartitionKey"] not in picked:
                if len(picked) >= limit:
                    continue
                picked[r["PartitionKey"]] = (rid, set(), r.metadata.get("timestamp") or epoch)
            picked[r["PartitionKey"]][1].add(r["RowKey"])
        return [(rid, [(k, rec) for k, rec in self.list(rid) if k in keys], oldest)
                for rid, keys, oldest in picked.values()]

    def list(self, resource_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Every pending fix of the resource. A record that does not parse (one an older version
        cut at 30,000 characters) comes back with no ``changes`` (logged): its fix cannot be
        confirmed, and the row is removed like any other once the resource's write event came."""
        try:
            rows = list(self._t.table(self._t.pending_name).query_entities(
                "PartitionKey eq @pk", parameters={"pk": resource_partition(resource_id)}))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise _store_error("pending fix read", exc) from exc
        out = []
        for r in rows:
            n = int(r.get("record_parts") or 0)
            body = "".join(str(r.get(f"record_{i}", "")) for i in range(n)) if n else str(r.get("record") or "")
            try:
                record = json.loads(body)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                emit(_log, logging.WARNING, "pending_fix_unreadable", row_key=r["RowKey"],
                     event_id=str(r.get("event_id", "")))
                record = {"event_id": str(r.get("event_id", "")), "changes": []}
            out.append((r["RowKey"], record))
        return out

    def remove(self, resource_id: str, key: str) -> None:
        try:
            self._t.table(self._t.pending_name).delete_entity(resource_partition(resource_id), key)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _store_error("pending fix delete", exc) from exc
