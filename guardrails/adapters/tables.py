"""Table Storage adapters: policy repository, idempotency records, audit rows.

Table layout (keys may not contain ``/ \\ # ?``; every key here is a hash or a date):

  <prefix>Policies          PK "policy"            RK policy id         document (JSON), version, sha256
  <prefix>Idempotency       PK sha[:2]             RK sha256(event id)  status, expires_at, verdict, holder
  <prefix>Audit             PK "YYYYMMDD-SS"       RK "<time>-<delivery>"   one row per delivery
  <prefix>AuditByResource   PK sha256(resource)[:32] RK "<time>-<delivery>" same row, per resource
  <prefix>Breakers          PK sha(policy|sub)[:32] RK "breaker"        action times in window, open flag
  <prefix>PendingFixes      PK sha256(resource)[:32] RK sha(event id)   fixes still running (requested)
  <prefix>Escalations       PK sha256(resource)[:32] RK "flipflop"      revert times in window, actors, escalated

One day's audit is ``audit_shards`` partition queries (no table scan); a resource's history is
one partition query; writes spread over ``audit_shards`` partitions per day, so 2,000 rows/s
stays under Table Storage's per-partition limit with room to spare.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
from datetime import date, datetime, timedelta, timezone
from typing import Any, Sequence

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from ..errors import IdempotencyError, StoreError
from ..logs import emit
from ..model.decision import AuditRow
from ..ports import Claim

# Insert Entity answers 201 with the whole entity unless asked not to; the guardrail needs only the
# ETag header, so creates ask for 204 (less to send, nothing to parse)
NO_CONTENT = {"response_preference": "return-no-content"}
_log = logging.getLogger("guardrails")
_MAX_STRING = 30_000  # Table Storage strings are <= 64 KiB (32K UTF-16 chars)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _store_error(what: str, exc: Exception) -> StoreError:
    status = getattr(exc, "status_code", None)
    return StoreError(f"table storage {what} failed ({type(exc).__name__}, status {status})")


class Tables:
    """Owns the TableServiceClient and the product's table names."""

    # guardrails.permissions: on the deployment's own storage account (Storage Table Data Contributor)
    own_permissions = tuple(f"Microsoft.Storage/storageAccounts/tableServices/tables/{a}" for a in (
        "write", "entities/read", "entities/write", "entities/add/action", "entities/update/action", "entities/delete"))

    def __init__(self, service: TableServiceClient, prefix: str = "Guardrails") -> None:
        self.service = service
        self.prefix = prefix
        self.policies_name = f"{prefix}Policies"
        self.idempotency_name = f"{prefix}Idempotency"
        self.audit_name = f"{prefix}Audit"
        self.audit_index_name = f"{prefix}AuditByResource"
        self.breakers_name = f"{prefix}Breakers"
        self.pending_name = f"{prefix}PendingFixes"
        self.escalations_name = f"{prefix}Escalations"
        self._clients: dict[str, TableClient] = {}

    @classmethod
    def from_settings(cls, settings, credential=None) -> "Tables":
        from .transport import client_options
        kwargs = client_options(retry_total=2, connection_timeout=5, read_timeout=10)
        if settings.tables_connection:
            conn = settings.tables_connection
            if conn.replace(" ", "").lower() == "usedevelopmentstorage=true":
                from ..local.azurite import connection_string
                conn = connection_string(10002)  # Azurite's fixed default port
            service = TableServiceClient.from_connection_string(conn, **kwargs)
        elif settings.tables_endpoint:
            service = TableServiceClient(endpoint=settings.tables_endpoint, credential=credential, **kwargs)
        else:
            from ..errors import ConfigError
            raise ConfigError("no table storage configured: set GUARDRAILS_TABLES_CONNECTION or "
                              "GUARDRAILS_TABLES_ENDPOINT (or AzureWebJobsStorage)")
        return cls(service, settings.table_prefix)

    def table(self, name: str) -> TableClient:
        client = self._clients.get(name)
        if client is None:
            client = self.service.get_table_client(name)
            self._clients[name] = client
        return client

    def ensure(self) -> None:
        try:
            for name in (self.policies_name, self.idempotency_name, self.audit_name, self.audit_index_name,
                         self.breakers_name, self.pending_name, self.escalations_name):
                self.service.create_table_if_not_exists(name)
        except AzureError as exc:
            raise _store_error("create tables", exc) from exc


# ---------------------------------------------------------------------------------------
class TablePolicyRepository:
    PARTITION = "policy"

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def list_documents(self) -> list[tuple[str, dict]]:
        """The synced documents. A missing table is an error, never "no policy" (every event would
        be ``ignored`` with nothing said). A row whose ``document`` does not match its ``sha256``, or
        whose RowKey is not its document's id, was not written by ``metadata sync``: it is not
        trusted (ERROR ``policy_row_tampered``; the loader then rejects it)."""
        try:
            rows = list(self._t.table(self._t.policies_name).query_entities(
                "PartitionKey eq @pk", parameters={"pk": self.PARTITION}))
        except ResourceNotFoundError:
            raise StoreError(f"policy table {self._t.policies_name} does not exist: run "
                             "`python -m guardrails metadata sync` (check GUARDRAILS_TABLE_PREFIX)") from None
        except AzureError as exc:
            raise _store_error("read policies", exc) from exc
        out = []
        for r in sorted(rows, key=lambda e: e["RowKey"]):
            source = f"table:{self._t.policies_name}/{r['RowKey']}"
            try:
                doc = json.loads(r["document"])
            except (KeyError, TypeError, ValueError):
                doc = {"id": r.get("RowKey"), "__corrupt__": True}
            else:
                pid = doc.get("id") if isinstance(doc, dict) else None
                key = f"{pid}@shadow" if isinstance(pid, str) and doc.get("mode") == "shadow" else pid
                if r.get("sha256") != _sha(str(r["document"])) or key != r["RowKey"]:
                    emit(_log, logging.ERROR, "policy_row_tampered", source=source,
                         detail="document does not match its sha256 or its row key: not written by metadata sync")
                    doc = {"id": r.get("RowKey"), "__corrupt__": True}
            out.append((source, doc))
        return out

    def replace_all(self, documents: Sequence[tuple[str, dict]]) -> dict[str, int]:
        """Make the table hold exactly ``documents``. Every row is built and size-checked before
        anything is written; the writes then go as one entity-group transaction (one partition,
        all or nothing) when they fit in one (100 operations), else in order. A row whose stored
        document differs from the new one is rewritten even when its ``sha256`` column matches (a
        row edited in place is put back)."""
        table = self._t.table(self._t.policies_name)
        counts = {"added": 0, "updated": 0, "unchanged": 0, "removed": 0}
        wanted: dict[str, tuple[str, dict, str]] = {}
        for source, doc in documents:
            # a ``mode: shadow`` version has its own row beside the enforced one
            pid = doc["id"] + ("@shadow" if doc.get("mode") == "shadow" else "")
            body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
            if len(body) > _MAX_STRING:
                raise StoreError(f"{source}: policy '{pid}' is too large for one table row "
                                 f"({len(body)} > {_MAX_STRING} characters); nothing was written")
            wanted[pid] = (source, doc, body)
        try:
            existing = {e["RowKey"]: e for e in table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": self.PARTITION})}
            ops: list[tuple] = []
            for pid, (source, doc, body) in wanted.items():
                digest = _sha(body)
                old = existing.get(pid)
                if old is not None and old.get("sha256") == digest and old.get("document") == body:
                    counts["unchanged"] += 1
                    continue
                ops.append(("upsert", {
                    "PartitionKey": self.PARTITION, "RowKey": pid, "document": body, "sha256": digest,
                    "version": int(doc.get("version", 0)), "source": source[-500:],
                    "synced_at": datetime.now(timezone.utc),
                }, {"mode": UpdateMode.REPLACE}))
                counts["updated" if old is not None else "added"] += 1
            for pid in existing:
                if pid not in wanted:
                    ops.append(("delete", {"PartitionKey": self.PARTITION, "RowKey": pid}))
                    counts["removed"] += 1
            for i in range(0, len(ops), 100):
                table.submit_transaction(ops[i:i + 100])
        except AzureError as exc:
            raise _store_error("write policies", exc) from exc
        return counts


def _parked_row(text: Any) -> dict | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        row = json.loads(text)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("verdict"), str) else None


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
            raise IdempotencyError("event is being handled by another delivery; retry later")
        parked = _parked_row(current.get("row"))
        if parked is not None:
            entity["row"] = current.get("row")        # carried until it is audited
        # expired (or parked): take it over, exactly one taker wins the etag race
        try:
            meta = table.update_entity(entity, mode=UpdateMode.REPLACE,
                                       etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified)
            previous = current.get("holder") if current.get("status") == "IN_PROGRESS" else None
            return Claim("acquired", token=meta.get("etag"), previous_holder=previous or None, parked=parked)
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

    def release(self, key: str, claim: Claim) -> None:
        table = self._t.table(self._t.idempotency_name)
        pk, rk = self._keys(key)
        try:
            table.delete_entity(pk, rk, etag=claim.token, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # someone else owns it now, or it is gone already: nothing of ours to release
        except AzureError as exc:
            raise _store_error("idempotency release", exc) from exc


# ---------------------------------------------------------------------------------------
_JSON_FIELDS = ("violations", "actor", "policies")


def _row_key(row: AuditRow) -> str:
    t = row.time.replace("-", "").replace(":", "").replace(".", "")
    return f"{t}-{row.delivery_id}"


def audit_partition(row_time: str, delivery_id: str, shards: int) -> str:
    day = row_time[:10].replace("-", "")
    shard = int(_sha(delivery_id)[:8], 16) % shards
    return f"{day}-{shard:02d}"


def resource_partition(resource_id: str) -> str:
    return _sha(resource_id.lower())[:32]


# a ``violations`` record standing for the records an audit row could not hold, or could not read back
OMITTED_POLICY = "guardrails"
OMITTED_RULE = "violations-omitted"            # written: records left out so the row fits
UNREADABLE_RULE = "stored-value-unreadable"    # read: a stored value that does not parse (cut by an older version)
_MARKER_RESERVE = 1_000                        # room kept for the marker record (its message is <= 300 chars)


def _fit_list(items: list[Any], marker, limit: int = _MAX_STRING) -> tuple[str, int]:
    """``items`` as a JSON list of at most ``limit`` characters that always parses: whole items in
    their order while they fit, then ``marker(left_out)`` (one more item) saying what was left
    out. Returns the text and how many items were left out. The common case is one ``dumps``."""
    text = json.dumps(items, sort_keys=True, default=str)
    if len(text) <= limit:
        return text, 0
    kept: list[tuple[Any, str]] = []
    left_out: list[Any] = []
    used = 2
    for item in items:
        part = json.dumps(item, sort_keys=True, default=str)
        n = len(part) + (2 if kept else 0)            # json.dumps separates list items with ", "
        if used + n <= limit - _MARKER_RESERVE:
            kept.append((item, part))
            used += n
        else:
            left_out.append(item)
    while True:
        tail = json.dumps(marker(left_out, len(items)), sort_keys=True, default=str)
        if used + len(tail) + 2 <= limit or not kept:  # the marker fits its reserve (always, as written)
            return "[" + ", ".join([*(p for _i, p in kept), tail]) + "]", len(left_out)
        item, part = kept.pop()
        left_out.append(item)
        used -= len(part) + (2 if kept else 0)


def _omitted_record(left_out: list[dict[str, Any]], total: int) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    for v in left_out:
        o = str(v.get("outcome", "?"))[:40] if isinstance(v, dict) else "?"
        outcomes[o] = outcomes.get(o, 0) + 1
    counts = ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items()))
    return {"policy": OMITTED_POLICY, "rule": OMITTED_RULE, "property": "violations", "before": total,
            "after": total - len(left_out), "outcome": "omitted",
            "message": (f"{len(left_out)} of {total} violation records did not fit in the audit row "
                        f"({_MAX_STRING} characters) and are not stored (outcomes: {counts})")[:300]}


def _entity(row: AuditRow) -> dict[str, Any]:
    """The row as a table entity. Its JSON values always parse: ``violations`` too long for one
    property keeps its whole records that fit and ends with an ``omitted`` record saying how many
    were left out (also in the integer column ``violations_omitted``, present only then)."""
    d = row.to_dict()
    d["violations"], omitted = _fit_list(d["violations"], _omitted_record)
    if omitted:
        d["violations_omitted"] = omitted
    d["policies"], _ = _fit_list(d["policies"], lambda left, total: f"… {len(left)} more")
    actor = json.dumps(d["actor"], sort_keys=True, default=str)
    if len(actor) > _MAX_STRING:                     # three ids: never expected; still parses
        actor = json.dumps({k: (str(v)[:1000] if v is not None else None) for k, v in d["actor"].items()},
                           sort_keys=True)
    d["actor"] = actor
    d["message"] = d["message"][:2000]
    d["resource_id"] = d["resource_id"][:4000]
    for f in ("event_id", "event_type", "correlation_id", "reason", "time", "delivery_id", "event_time"):
        d[f] = str(d[f])[:512]
    return d


_RECORD_FIELDS = frozenset(("policy", "rule", "property", "before", "after", "outcome", "message"))
_RECORD_REQUIRED = _RECORD_FIELDS - {"message"}
_warned: set[tuple[str, str]] = set()          # (row key, field) already logged by this process
_WARNED_MAX = 1_000


def _salvage_list(text: str) -> list[Any]:
    """The whole items at the start of a JSON list whose text was cut off."""
    decoder = json.JSONDecoder()
    out: list[Any] = []
    i = text.find("[") + 1
    if i <= 0:
        return out
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return out
        try:
            item, i = decoder.raw_decode(text, i)
        except ValueError:
            return out
        out.append(item)


def _unreadable(e: dict[str, Any], field: str, recovered: int) -> dict[str, Any]:
    """Log (once per row and field in this process) and describe a stored value that does not parse."""
    key = (str(e.get("RowKey", "")), field)
    if key not in _warned:
        if len(_warned) >= _WARNED_MAX:
            _warned.clear()
        _warned.add(key)
        emit(_log, logging.WARNING, "audit_row_value_unreadable", partition=str(e.get("PartitionKey", "")),
             row_key=key[0], field=field, recovered=recovered)
    return {"policy": OMITTED_POLICY, "rule": UNREADABLE_RULE, "property": field, "before": None,
            "after": recovered, "outcome": "omitted",
            "message": f"the stored {field} could not all be read back (older versions cut long values at "
                       f"{_MAX_STRING} characters): {recovered} whole item(s) recovered, the rest is lost"}


def _from_entity(e: dict[str, Any]) -> AuditRow:
    """A stored row back. Never raises on a JSON value that does not parse (a row an older version
    cut at 30,000 characters): its whole leading items are kept, ``actor`` is left empty, and an
    ``omitted`` record in ``violations`` says so (logged once per row)."""
    d = {k: v for k, v in e.items() if k not in ("PartitionKey", "RowKey", "violations_omitted")}
    flags: list[dict[str, Any]] = []
    for f in _JSON_FIELDS:
        raw = d.get(f) or ("{}" if f == "actor" else "[]")
        want = dict if f == "actor" else list
        try:
            value = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            value = None
        if not isinstance(value, want):
            value = {} if want is dict else (_salvage_list(raw) if isinstance(raw, str) else [])
            flags.append(_unreadable(e, f, len(value)))
        d[f] = value
    records = d["violations"]
    good = [v for v in records if isinstance(v, dict) and _RECORD_REQUIRED <= v.keys() <= _RECORD_FIELDS]
    if len(good) != len(records) and not any(x["property"] == "violations" for x in flags):
        flags.append(_unreadable(e, "violations", len(good)))
    d["violations"] = good + flags
    d["actor"] = {k: v for k, v in d["actor"].items() if k in ("object_id", "app_id", "upn")}
    d["policies"] = [str(p) for p in d["policies"]]
    return AuditRow.from_dict(d)


class TableAuditSink:
    """Each row twice: the day shard (``read_day``) and the resource's partition (``read_resource``).

    The two upserts go to different tables, so they cannot share a batch; they are independent,
    so they run at the same time (the index row on a small shared pool), and a delivery waits one
    round trip for its audit instead of two. ``write`` returns once both are stored and raises
    if either failed (the delivery is then retried, as when one of two sequential writes failed)."""

    _pool = None                        # shared by every sink: threads for the index row
    _pool_lock = threading.Lock()
    POOL_THREADS = 8

    def __init__(self, tables: Tables, *, shards: int = 16) -> None:
        self._t = tables
        self._shards = shards

    @classmethod
    def _executor(cls):
        if cls._pool is None:
            with cls._pool_lock:
                if cls._pool is None:
                    from concurrent.futures import ThreadPoolExecutor
                    cls._pool = ThreadPoolExecutor(max_workers=cls.POOL_THREADS, thread_name_prefix="audit-index")
        return cls._pool

    def write(self, row: AuditRow) -> None:
        entity = _entity(row)
        rk = _row_key(row)
        index = None
        if row.resource_id:
            index = self._executor().submit(self._t.table(self._t.audit_index_name).upsert_entity,
                                            {"PartitionKey": resource_partition(row.resource_id), "RowKey": rk, **entity})
        try:
            try:
                self._t.table(self._t.audit_name).upsert_entity(
                    {"PartitionKey": audit_partition(row.time, row.delivery_id, self._shards), "RowKey": rk, **entity})
            finally:                    # never return (or fail) with the index row still in flight
                failed = index.exception() if index is not None else None
            if failed is not None:
                raise failed
        except AzureError as exc:
            raise _store_error("audit write", exc) from exc

    def read_day(self, day: date) -> list[AuditRow]:
        prefix = day.strftime("%Y%m%d")
        rows: list[AuditRow] = []
        table = self._t.table(self._t.audit_name)
        try:
            for s in range(self._shards):
                rows.extend(_from_entity(e) for e in table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": f"{prefix}-{s:02d}"}))
        except AzureError as exc:
            raise _store_error("audit read", exc) from exc
        return sorted(rows, key=lambda r: (r.time, r.delivery_id))

    def rows_of_delivery(self, resource_id: str, delivery_id: str) -> list[AuditRow]:
        """The rows one delivery wrote for ``resource_id`` (its partition of the resource index)."""
        table = self._t.table(self._t.audit_index_name)
        try:
            return [_from_entity(e) for e in table.query_entities(
                "PartitionKey eq @pk and delivery_id eq @d",
                parameters={"pk": resource_partition(resource_id), "d": delivery_id})]
        except AzureError as exc:
            raise _store_error("audit read", exc) from exc

    def read_resource(self, resource_id: str) -> list[AuditRow]:
        table = self._t.table(self._t.audit_index_name)
        try:
            rows = [_from_entity(e) for e in table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": resource_partition(resource_id)})]
        except AzureError as exc:
            raise _store_error("audit read", exc) from exc
        return sorted(rows, key=lambda r: (r.time, r.delivery_id))




# ---------------------------------------------------------------------------------------
class TableBreakerStore:
    """Sliding-window remediation counter per (policy, subscription), shared by every worker.

    One entity per pair holds the action times inside the window; every change is an
    etag-conditioned update (optimistic concurrency), so concurrent workers never both take
    the last slot. Once tripped the breaker stays open until ``reset``.
    """

    MAX_ATTEMPTS = 20

    def __init__(self, tables: Tables, *, clock=lambda: datetime.now(timezone.utc)) -> None:
        self._t = tables
        self._clock = clock
        self._known: dict[str, tuple[list[float], str | None]] = {}   # pk -> (times, etag) last written here
        self._lock = threading.Lock()

    @staticmethod
    def _keys(policy_id: str, subscription_id: str) -> tuple[str, str]:
        return _sha(f"{policy_id}|{subscription_id.lower()}")[:32], "breaker"

    def _entity(self, pk, rk, policy_id, subscription_id, times, is_open, now) -> dict[str, Any]:
        return {"PartitionKey": pk, "RowKey": rk, "policy": policy_id, "subscription": subscription_id,
                "times": json.dumps(times), "open": is_open, "opened_at": now.isoformat() if is_open else ""}

    def _fast_path(self, table, pk, rk, policy_id, subscription_id, max_actions, window_seconds) -> bool | None:
        """Update from this worker's last known state with its etag: one call instead of two.
        None when there is no usable cached state or another worker changed it meanwhile."""
        with self._lock:
            cached = self._known.get(pk)
        if cached is None:
            return None
        times, etag = cached
        now = self._clock()
        times = [t for t in times if t > now.timestamp() - window_seconds]
        if len(times) >= max_actions:
            return None          # about to trip: decide on a fresh read
        times.append(now.timestamp())
        try:
            meta = table.update_entity(self._entity(pk, rk, policy_id, subscription_id, times, False, now),
                                       mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            with self._lock:
                self._known.pop(pk, None)
            return None
        with self._lock:
            self._known[pk] = (times, meta.get("etag"))
        return True

    def try_acquire(self, policy_id: str, subscription_id: str, *, max_actions: int, window_seconds: int) -> bool:
        table = self._t.table(self._t.breakers_name)
        pk, rk = self._keys(policy_id, subscription_id)
        try:
            fast = self._fast_path(table, pk, rk, policy_id, subscription_id, max_actions, window_seconds)
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
                    entity = {"PartitionKey": pk, "RowKey": rk, "policy": policy_id, "subscription": subscription_id,
                              "times": json.dumps([now.timestamp()]), "open": max_actions < 1, "opened_at": ""}
                    try:
                        meta = table.create_entity(entity, **NO_CONTENT)
                        if not entity["open"]:
                            with self._lock:
                                self._known[pk] = ([now.timestamp()], meta.get("etag"))
                        return True
                    except ResourceExistsError:
                        continue
                if current.get("open"):
                    return False
                horizon = now.timestamp() - window_seconds
                times = [t for t in json.loads(current.get("times") or "[]") if t > horizon]
                allowed = len(times) < max_actions
                entity = {"PartitionKey": pk, "RowKey": rk, "policy": policy_id, "subscription": subscription_id,
                          "times": json.dumps(times + [now.timestamp()] if allowed else times),
                          "open": not allowed, "opened_at": "" if allowed else now.isoformat()}
                try:
                    meta = table.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                               match_condition=MatchConditions.IfNotModified)
                    with self._lock:
                        if allowed:
                            self._known[pk] = (json.loads(entity["times"]), meta.get("etag"))
                        else:
                            self._known.pop(pk, None)
                    return allowed
                except ResourceModifiedError:
                    continue
            except AzureError as exc:
                raise _store_error("breaker update", exc) from exc
        raise StoreError("breaker update kept conflicting; retry later")

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
        try:
            self._t.table(self._t.breakers_name).delete_entity(pk, rk)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise _store_error("breaker reset", exc) from exc
        return True


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


# ---------------------------------------------------------------------------------------
class TableOutbox:
    """Decision events the topic did not take (``outbox.OutboxStore``), kept until the outbox
    timer delivers them, and timer decisions' intents (``outbox.DecisionPublisher.intend``).
    ``<prefix>Outbox``: PK ``decision``, RK sha256(event id)[:40] (adding the same event twice
    keeps one); the event's JSON in ``event_0..n`` (strings <= 30,000 chars), ``attempts``,
    ``last_error`` (a reason code only), ``due_at`` (not listed before: the query filters on it),
    ``intent``. The table is
    created on first use: it is written while the topic is failing, and by timer runs."""

    PARTITION = "decision"

    def __init__(self, tables: Tables) -> None:
        self._t = tables
        self.name = f"{tables.prefix}Outbox"
        self._created = False

    def _table(self, create: bool = False) -> TableClient:
        if create and not self._created:
            try:
                self._t.service.create_table_if_not_exists(self.name)
            except AzureError as exc:
                raise _store_error("create outbox table", exc) from exc
            self._created = True
        return self._t.table(self.name)

    def add(self, event: dict[str, Any], *, error: str, hold_seconds: float = 0.0, intent: bool = False) -> None:
        body = json.dumps(event, sort_keys=True, default=str)
        parts = {f"event_{i}": body[o:o + _MAX_STRING] for i, o in enumerate(range(0, len(body), _MAX_STRING))}
        now = datetime.now(timezone.utc)
        entity = {"PartitionKey": self.PARTITION, "RowKey": self._key(str(event["id"])), "parts": len(parts),
                  **parts, "event_id": str(event["id"])[:512], "attempts": 0, "last_error": error[:200],
                  "queued_at": now, "due_at": now + timedelta(seconds=max(0.0, hold_seconds)), "intent": intent}
        try:
            self._table(create=True).upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise _store_error("outbox write", exc) from exc

    PAGE = 1_000       # Table Storage's largest page

    def list(self, limit: int, *, after: str | None = None):
        """At most ``limit`` due events (``due_at`` <= now, filtered by the service), in row-key
        order, i.e. the order of sha256(event id), not of time: ordering by time would need a
        time-ordered row key, and the key is what makes adding one event twice keep one. ``after``:
        a row key to go on from (``drain``'s cursor). Reads pages of ``limit`` (<= 1,000) rows and
        stops at ``limit``: never the whole outbox."""
        from ..outbox import OutboxItem
        if limit <= 0:
            return []
        query = "PartitionKey eq @pk and due_at le @now"
        params: dict[str, Any] = {"pk": self.PARTITION, "now": datetime.now(timezone.utc)}
        if after is not None:
            query += " and RowKey gt @after"
            params["after"] = after
        try:
            rows = list(itertools.islice(self._table().query_entities(
                query, parameters=params, results_per_page=min(limit, self.PAGE)), limit))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise _store_error("outbox read", exc) from exc
        out = []
        for e in rows:
            body = "".join(e.get(f"event_{i}", "") for i in range(int(e.get("parts") or 0)))
            out.append(OutboxItem(key=e["RowKey"], event=json.loads(body), attempts=int(e.get("attempts") or 0),
                                  intent=bool(e.get("intent"))))
        return out

    @staticmethod
    def _key(event_id: str) -> str:
        return _sha(event_id)[:40]

    def discard(self, event_id: str) -> None:
        self.remove(self._key(event_id))

    def remove(self, key: str) -> None:
        try:
            self._table().delete_entity(self.PARTITION, key)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _store_error("outbox delete", exc) from exc

    def failed(self, item, *, error: str) -> None:
        try:
            self._table().update_entity({"PartitionKey": self.PARTITION, "RowKey": item.key,
                                         "attempts": item.attempts + 1, "last_error": error[:200],
                                         "intent": item.intent}, mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _store_error("outbox update", exc) from exc
