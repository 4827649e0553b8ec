"""In-memory stand-ins that behave like the real stores (conditional create, etags, errors)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from guardrails.errors import ArmError, IdempotencyError, ResourceNotFound, StoreError
from guardrails.model.resource import ResourceSnapshot
from guardrails.ports import Claim, WriteResult


class FakeArm:
    def __init__(self, resources=()) -> None:
        self.resources = {r["id"].lower(): copy.deepcopy(r) for r in resources}
        self.calls: list[tuple[str, str]] = []
        self.errors: dict[str, Exception] = {}      # method -> error to raise
        self.write_state = "done"
        self.ignore_writes = False
        self.correlations: list[str | None] = []     # x-ms-correlation-request-id of each PATCH

    def _maybe_fail(self, method: str) -> None:
        if method in self.errors:
            raise self.errors[method]

    def get_resource(self, resource_id: str, *, api_version: str, deadline: float | None = None) -> ResourceSnapshot:
        self.calls.append(("GET", resource_id))
        self._maybe_fail("GET")
        r = self.resources.get(resource_id.lower())
        if r is None:
            raise ResourceNotFound("not found", status=404)
        return ResourceSnapshot(r["id"], r.get("type") or "", copy.deepcopy(r), r.get("etag"))

    def _merge(self, dst: dict, src: Mapping) -> None:
        for k, v in src.items():
            if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
                self._merge(dst[k], v)
            else:
                dst[k] = copy.deepcopy(v)

    def patch_resource(self, resource_id, body, *, api_version, deadline, correlation_id=None) -> WriteResult:
        self.calls.append(("PATCH", resource_id))
        self.correlations.append(correlation_id)
        self._maybe_fail("PATCH")
        if not self.ignore_writes and self.write_state == "done":
            self._merge(self.resources[resource_id.lower()], body)
        return WriteResult(self.write_state)

    def put_resource(self, resource_id, body, *, api_version, etag, deadline, correlation_id=None) -> WriteResult:
        self.calls.append(("PUT", resource_id))
        self._maybe_fail("PUT")
        cur = self.resources[resource_id.lower()]
        if etag is not None and cur.get("etag") not in (None, etag):
            raise ArmError("precondition failed", status=412)
        if not self.ignore_writes and self.write_state == "done":
            self.resources[resource_id.lower()] = {**copy.deepcopy(dict(body)), "id": cur["id"], "type": cur["type"],
                                                   "name": cur.get("name"), "etag": (cur.get("etag") or "") + "+"}
        return WriteResult(self.write_state)

    def writes(self):
        return [c for c in self.calls if c[0] != "GET"]


class MemoryIdempotency:
    def __init__(self, clock=lambda: datetime.now(timezone.utc), in_progress=timedelta(minutes=2),
                 completed=timedelta(hours=24)) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self._etags = itertools.count(1)
        self.clock, self.in_progress, self.completed = clock, in_progress, completed

    def acquire(self, key: str, *, holder: str) -> Claim:
        now = self.clock()
        rec = self.records.get(key)
        if rec is not None and rec["expires"] > now and rec["status"] != "UNAUDITED":
            if rec["status"] == "COMPLETED":
                return Claim("completed", verdict=rec["verdict"])
            raise IdempotencyError("in progress elsewhere")
        parked = rec.get("row") if rec is not None else None
        taken = rec is not None and rec["status"] == "IN_PROGRESS"     # its holder died: taken over
        intent = rec.get("intent") if taken else None
        etag = next(self._etags)
        self.records[key] = {"status": "IN_PROGRESS", "expires": now + self.in_progress, "etag": etag, "verdict": "",
                             "row": parked, "intent": intent, "holder": holder}
        return Claim("acquired", token=etag, parked=copy.deepcopy(parked), intent=intent,
                     previous_holder=(rec.get("holder") or None) if taken else None)

    def note(self, key: str, claim: Claim, intent: str) -> Claim:
        rec = self.records.get(key)
        if rec is None or rec["etag"] != claim.token:
            raise IdempotencyError("taken over")
        if len(intent) > 30_000:         # as TableIdempotencyStore: one Table Storage string property
            raise StoreError(f"intent too large to note ({len(intent)} characters)")
        rec.update(intent=intent, etag=next(self._etags))
        return dataclasses.replace(claim, token=rec["etag"])

    def park(self, key: str, claim: Claim, row: dict) -> None:
        rec = self.records.get(key)
        if rec is None or rec["etag"] != claim.token:
            raise IdempotencyError("taken over")
        rec.update(status="UNAUDITED", expires=self.clock(), verdict=row.get("verdict", ""), row=copy.deepcopy(row),
                   etag=next(self._etags))

    def complete(self, key: str, claim: Claim, *, verdict: str) -> None:
        rec = self.records.get(key)
        if rec is None or rec["etag"] != claim.token:
            raise IdempotencyError("taken over")
        rec.update(status="COMPLETED", expires=self.clock() + self.completed, verdict=verdict, etag=next(self._etags))

    def release(self, key: str, claim: Claim) -> None:
        rec = self.records.get(key)
        if rec is not None and rec["etag"] == claim.token:
            del self.records[key]

    def hand_on(self, key: str, claim: Claim) -> None:
        from guardrails.adapters.idempotency_tables import handed_on

        rec, kept = self.records.get(key), handed_on(claim)
        if kept is None:
            self.release(key, claim)
        elif rec is not None and rec["etag"] == claim.token:     # as TableIdempotencyStore: expired
            self.records[key] = {"expires": self.clock(), "etag": next(self._etags), "row": None, "verdict": "",
                                 "intent": kept.get("intent"), "holder": kept["holder"], "status": kept["status"]}


class MemoryAudit:
    def __init__(self) -> None:
        self.rows = []
        self.fail = False

    def write(self, row) -> None:
        if self.fail:
            raise StoreError("table storage audit write failed (ServiceRequestError, status None)")
        self.rows.append(copy.deepcopy(row))

    def rows_of_delivery(self, resource_id, delivery_id):
        return [copy.deepcopy(r) for r in self.rows
                if r.resource_id.lower() == resource_id.lower() and r.delivery_id == delivery_id]

    def rows_of_event(self, resource_id, event_id):
        return [copy.deepcopy(r) for r in self.rows
                if r.resource_id.lower() == resource_id.lower() and r.event_id == event_id]


class MemoryPolicyRepo:
    def __init__(self, documents=()) -> None:
        self.documents = list(documents)

    def list_documents(self):
        return list(self.documents)

    def replace_all(self, documents):
        self.documents = list(documents)
        return {"added": len(self.documents), "updated": 0, "unchanged": 0, "removed": 0}


class MemoryBreakers:
    def __init__(self) -> None:
        self.times: dict[tuple[str, str], list[float]] = {}
        self.keys: dict[tuple[str, str], list[list]] = {}
        self.open: set[tuple[str, str]] = set()
        self.now = 0.0

    def try_acquire(self, policy_id, subscription_id, *, max_actions, window_seconds, key=None) -> bool:
        from guardrails.adapters.remediation_tables import admit
        pair = (policy_id, subscription_id.lower())
        if pair in self.open:
            return False
        allowed, _counted, times, keys = admit(self.times.get(pair, []), self.keys.get(pair, []), now=self.now,
                                               window_seconds=window_seconds, max_actions=max_actions, key=key)
        if not allowed:
            self.open.add(pair)
            return False
        self.times[pair], self.keys[pair] = times, keys
        return True

    def reset(self, policy_id, subscription_id) -> bool:
        key = (policy_id, subscription_id.lower())
        had = key in self.open or key in self.times
        self.open.discard(key)
        self.times.pop(key, None)
        self.keys.pop(key, None)
        return had


class MemoryPending:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, dict]] = {}

    def stale(self, before, *, limit=200):
        from datetime import datetime, timezone
        old = datetime.min.replace(tzinfo=timezone.utc)
        return [(rid, self.list(rid), old) for rid in list(self.items)[:limit] if self.items[rid]]

    def add(self, resource_id, event_id, record) -> None:
        self.items.setdefault(resource_id.lower(), {})[event_id] = copy.deepcopy(record)

    def list(self, resource_id):
        return list(self.items.get(resource_id.lower(), {}).items())

    def remove(self, resource_id, key) -> None:
        self.items.get(resource_id.lower(), {}).pop(key, None)
