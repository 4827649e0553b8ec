"""Table-backed idempotency records (``<prefix>Idempotency``: PK sha[:2], RK sha256(event id)):
one per delivered event, so a redelivery is recognised and a dead attempt taken over."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from ..errors import IdempotencyError, StoreError
from ..ports import Claim
from .audit_tables import _fit_list, _omitted_record
from .tables import NO_CONTENT, _MAX_STRING, Tables, _sha, _store_error


def _parked_row(text: Any) -> dict | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        row = json.loads(text)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("verdict"), str) else None


def handed_on(claim: Claim) -> dict | None:
    """What a failed attempt's claim leaves for the next attempt (``hand_on``): when it took over an attempt that died
    holding the event (``previous_holder``), that attempt's record as it found it, expired (status
    IN_PROGRESS, its holder, its noted intent), so the next attempt takes it over in turn and can
    still record what the dead one did (its fix, its deletion); None (the record deleted) otherwise.
    A takeover that itself failed (a refused or throttled read) would otherwise delete the only
    trace of a change made and never audited."""
    if not claim.previous_holder:
        return None
    return {"status": "IN_PROGRESS", "holder": claim.previous_holder, "verdict": "",
            **({"intent": claim.intent} if claim.intent else {})}


# ---------------------------------------------------------------------------------------
class TableIdempotencyStore:
    """Conditional create (IN_PROGRESS) -> etag-conditioned update (COMPLETED) -> delete on
    failure. Expiry is computed on read: Table Storage has no TTL. A decision that was acted on
    but whose audit row could not be written is parked (UNAUDITED, the row as JSON): the next
    attempt takes the record over with it, and carries it until that row is written."""

    LOCAL_COMPLETED_MAX = 10_000

    def __init__(self, tables: Tables, *, completed_ttl: timedelta, in_progress_ttl: timedelta,
                 clock=lambda: datetime.now(timezone.utc)) -> None:
        self._t = tables
        self._completed_ttl = completed_ttl
        self._in_progress_ttl = in_progress_ttl
        self._clock = clock
        self._completed: dict[str, tuple[str, datetime]] = {}   # this worker's completed claims
        self._lock = threading.Lock()

    def forget_completed(self) -> None:
        """Drop this worker's memory of completed claims: what another instance knows of them
        (nothing; the table answers). For the benchmark's cross-instance redeliveries."""
        with self._lock:
            self._completed.clear()

    @staticmethod
    def _keys(key: str) -> tuple[str, str]:
        h = _sha(key)
        return h[:2], h

    def _remember(self, key: str, verdict: str, expires: datetime) -> None:
        with self._lock:
            if len(self._completed) >= self.LOCAL_COMPLETED_MAX:
                self._completed.pop(next(iter(self._completed)))
            self._completed[key] = (verdict, expires)

    def acquire(self, key: str, *, holder: str) -> Claim:
        now = self._clock()
        with self._lock:
            local = self._completed.get(key)
        if local is not None and local[1] > now:
            # COMPLETED is terminal until it expires: a redelivery to this worker needs no table call
            return Claim("completed", verdict=local[0] or None)
        table = self._t.table(self._t.idempotency_name)
        pk, rk = self._keys(key)
        entity = {"PartitionKey": pk, "RowKey": rk, "status": "IN_PROGRESS", "holder": holder,
                  "expires_at": now + self._in_progress_ttl, "verdict": ""}
        try:
            meta = table.create_entity(entity, **NO_CONTENT)
            return Claim("acquired", token=meta.get("etag"))
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise _store_error("idempotency create", exc) from exc
        try:
            current = table.get_entity(pk, rk)
        except ResourceNotFoundError:
            # released between our create and read: the retry will create it
            raise IdempotencyError("idempotency record changed concurrently; retry later") from None
        except AzureError as exc:
            raise _store_error("idempotency read", exc) from exc
        expires = current.get("expires_at")
        live = isinstance(expires, datetime) and expires > now
        if current.get("status") == "COMPLETED" and live:
            self._remember(key, current.get("verdict") or "", expires)
            return Claim("completed", verdict=current.get("verdict") or None)
        if current.get("status") == "IN_PROGRESS" and live:
            if current.get("holder") == holder:
                # our own create: it committed, its answer was lost (a 500/timeout) and the
                # client's retry of the POST met it as a conflict. The claim is ours.
                return Claim("acquired", token=current.metadata["etag"])
            raise IdempotencyError("event is being handled by another delivery; retry later")
        parked = _parked_row(current.get("row"))
        if parked is not None:
            entity["row"] = current.get("row")        # carried until it is audited
        intent = current.get("intent") if current.get("status") == "IN_PROGRESS" else None
        if isinstance(intent, str) and intent:
            entity["intent"] = intent                 # carried until an attempt notes its own or finishes
        else:
            intent = None
        # expired (or parked): take it over, exactly one taker wins the etag race
        try:
            meta = table.update_entity(entity, mode=UpdateMode.REPLACE,
                                       etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified)
            previous = current.get("holder") if current.get("status") == "IN_PROGRESS" else None
            return Claim("acquired", token=meta.get("etag"), previous_holder=previous or None, parked=parked,
                         intent=intent)
        except ResourceModifiedError:
            raise IdempotencyError("expired idempotency record taken over by another delivery") from None
        except AzureError as exc:
            raise _store_error("idempotency takeover", exc) from exc

    def complete(self, key: str, claim: Claim, *, verdict: str) -> None:
        table = self._t.table(self._t.idempotency_name)
        pk, rk = self._keys(key)
        expires = self._clock() + self._completed_ttl
        entity = {"PartitionKey": pk, "RowKey": rk, "status": "COMPLETED", "holder": "",
                  "expires_at": expires, "verdict": verdict}
        try:
            table.update_entity(entity, mode=UpdateMode.REPLACE, etag=claim.token,
                                match_condition=MatchConditions.IfNotModified)
            self._remember(key, verdict, expires)
        except ResourceModifiedError:
            raise IdempotencyError("idempotency record was taken over before completion") from None
        except AzureError as exc:
            raise _store_error("idempotency complete", exc) from exc

    def park(self, key: str, claim: Claim, row: dict) -> None:
        text = json.dumps(row, sort_keys=True, default=str)
        if len(text) > _MAX_STRING and isinstance(row.get("violations"), list):
            # as the audit row will: the whole records that fit, then an ``omitted`` record
            others = len(text) - len(json.dumps(row["violations"], sort_keys=True, default=str))
            kept, _ = _fit_list(row["violations"], _omitted_record, limit=_MAX_STRING - others)
            text = json.dumps({**row, "violations": json.loads(kept)}, sort_keys=True, default=str)
        if len(text) > _MAX_STRING:
            raise StoreError(f"decision too large to park ({len(text)} characters)")
        table = self._t.table(self._t.idempotency_name)
        pk, rk = self._keys(key)
        entity = {"PartitionKey": pk, "RowKey": rk, "status": "UNAUDITED", "holder": "",
                  "expires_at": self._clock(), "verdict": str(row.get("verdict") or ""), "row": text}
        try:
            table.update_entity(entity, mode=UpdateMode.REPLACE, etag=claim.token,
                                match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            raise IdempotencyError("idempotency record was taken over before the decision was parked") from None
        except AzureError as exc:
            raise _store_error("idempotency park", exc) from exc

    def note(self, key: str, claim: Claim, intent: str) -> Claim:
        if len(intent) > _MAX_STRING:
            raise StoreError(f"intent too large to note ({len(intent)} characters)")
        table = self._t.table(self._t.idempotency_name)
        pk, rk = self._keys(key)
        try:
            meta = table.update_entity({"PartitionKey": pk, "RowKey": rk, "intent": intent}, mode=UpdateMode.MERGE,
                                       etag=claim.token, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            raise IdempotencyError("idempotency record was taken over before the intent was noted") from None
        except AzureError as exc:
            raise _store_error("idempotency note", exc) from exc
        return replace(claim, token=meta.get("etag"))

    def release(self, key: str, claim: Claim) -> None:
        table = self._t.table(self._t.idempotency_name)
        pk, rk = self._keys(key)
        try:
            table.delete_entity(pk, rk, etag=claim.token, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # someone else owns it now, or it is gone already: nothing of ours to release
        except AzureError as exc:
            raise _store_error("idempotency release", exc) from exc

    def hand_on(self, key: str, claim: Claim) -> None:
        """``release`` for an attempt that failed: a claim that took over a dead attempt leaves that
        attempt's record for the next one (``handed_on``) instead of deleting it."""
        kept = handed_on(claim)
        if kept is None:
            return self.release(key, claim)
        table = self._t.table(self._t.idempotency_name)
        pk, rk = self._keys(key)
        try:
            table.update_entity({"PartitionKey": pk, "RowKey": rk, "expires_at": self._clock(), **kept},
                                mode=UpdateMode.REPLACE, etag=claim.token, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # someone else owns it now, or it is gone already: nothing of ours to hand on
        except AzureError as exc:
            raise _store_error("idempotency release", exc) from exc
