"""Table-backed audit rows: the ``AuditRow`` <-> entity mapping and ``TableAuditSink``.

  <prefix>Audit             PK "YYYYMMDD-SS"       RK "<time>-<delivery>"   one row per delivery
  <prefix>AuditByResource   PK sha256(resource)[:32] RK "<time>-<delivery>" same row, per resource

One day's audit is one PartitionKey range query over ``YYYYMMDD-*`` (no table scan), whatever
the shard count: a reader whose ``audit_shards`` differs from the writer's (an operator's CLI, a
deployment that changed it) still reads every row; a resource's history is one partition query;
writes spread over ``audit_shards`` partitions per day, so 2,000 rows/s stays under Table
Storage's per-partition limit with room to spare.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import date, datetime, timezone
from typing import Any

from azure.core.exceptions import AzureError

from ..logs import emit
from ..model.decision import AuditRow
from .tables import _MAX_STRING, Tables, _log, _sha, _store_error, resource_partition

_JSON_FIELDS = ("violations", "actor", "policies")


def _row_key(row: AuditRow) -> str:
    t = row.time.replace("-", "").replace(":", "").replace(".", "")
    return f"{t}-{row.delivery_id}"


def audit_partition(row_time: str, delivery_id: str, shards: int) -> str:
    day = row_time[:10].replace("-", "")
    shard = int(_sha(delivery_id)[:8], 16) % shards
    return f"{day}-{shard:02d}"


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
        """Every row of one UTC day, in ``(time, delivery_id)`` order: one range query over the
        day's partitions ``YYYYMMDD-00`` .. (``"."`` follows ``"-"``), paged by the SDK, so rows
        written with any shard count are read, not only this sink's ``shards``."""
        prefix = day.strftime("%Y%m%d")
        table = self._t.table(self._t.audit_name)
        try:
            rows = [_from_entity(e) for e in table.query_entities(
                "PartitionKey ge @lo and PartitionKey lt @hi", parameters={"lo": f"{prefix}-", "hi": f"{prefix}."})]
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

    def rows_of_event(self, resource_id: str, event_id: str) -> list[AuditRow]:
        """The rows every delivery of one event wrote for ``resource_id``, oldest first (its
        partition of the resource index, filtered by the event id)."""
        table = self._t.table(self._t.audit_index_name)
        try:
            rows = [_from_entity(e) for e in table.query_entities(
                "PartitionKey eq @pk and event_id eq @e",
                parameters={"pk": resource_partition(resource_id), "e": event_id})]
        except AzureError as exc:
            raise _store_error("audit read", exc) from exc
        return sorted(rows, key=lambda r: (r.time, r.delivery_id))

    def settled_since(self, resource_id: str, since: datetime) -> bool:
        """Whether any decision since ``since`` found ``resource_id`` compliant or fixed it (one
        query of its partition of the resource index, from ``since`` on, verdict filtered)."""
        table = self._t.table(self._t.audit_index_name)
        after = since.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        try:
            for e in table.query_entities(
                    "PartitionKey eq @pk and RowKey gt @rk and (verdict eq 'compliant' or verdict eq 'remediated')",
                    parameters={"pk": resource_partition(resource_id), "rk": after},
                    select=["resource_id", "verdict"]):
                if str(e.get("resource_id") or "").lower() == resource_id.lower():
                    return True
        except AzureError as exc:
            raise _store_error("audit read", exc) from exc
        return False

    def read_resource(self, resource_id: str) -> list[AuditRow]:
        table = self._t.table(self._t.audit_index_name)
        try:
            rows = [_from_entity(e) for e in table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": resource_partition(resource_id)})]
        except AzureError as exc:
            raise _store_error("audit read", exc) from exc
        return sorted(rows, key=lambda r: (r.time, r.delivery_id))
