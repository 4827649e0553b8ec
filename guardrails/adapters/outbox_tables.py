"""Table-backed decision-event outbox (``outbox.OutboxStore``): ``TableOutbox``."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from .tables import _MAX_STRING, Tables, _sha, _store_error


class TableOutbox:
    """Decision events the topic did not take (``outbox.OutboxStore``), kept until the outbox
    timer delivers them, and timer decisions' intents (``outbox.DecisionPublisher.intend``).
    ``<prefix>Outbox``: PK ``decision``, RK sha256(event id)[:40] (adding the same event twice
    keeps one); the event's JSON in ``event_0..n`` (strings <= 30,000 chars), ``attempts``,
    ``last_error`` (a reason code only), ``due_at`` (not listed before: the query filters on it),
    ``intent``, ``rejections`` (times the topic rejected the event sent on its own) and ``parked``
    (``parked_at``): a parked event stays in the table with ``due_at`` at the end of time, so
    ``list`` never returns it again; adding the same event id again starts it afresh. The table is
    created on first use: it is written while the topic is failing, and by timer runs."""

    PARTITION = "decision"
    PARKED_DUE = datetime(9999, 12, 31, tzinfo=timezone.utc)     # never due: parked

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
                  "queued_at": now, "due_at": now + timedelta(seconds=max(0.0, hold_seconds)), "intent": intent,
                  "rejections": 0, "parked": False}
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
                                  intent=bool(e.get("intent")), rejections=int(e.get("rejections") or 0)))
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

    def rejected(self, item, *, park: bool) -> None:
        entity: dict[str, Any] = {"PartitionKey": self.PARTITION, "RowKey": item.key, "attempts": item.attempts + 1,
                                  "rejections": item.rejections + 1, "last_error": "rejected", "intent": item.intent}
        if park:
            entity.update(parked=True, parked_at=datetime.now(timezone.utc), due_at=self.PARKED_DUE)
        try:
            self._table().update_entity(entity, mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _store_error("outbox update", exc) from exc

    def parked_count(self) -> int:
        """Parked events kept in the table (their keys only are read)."""
        try:
            return sum(1 for _e in self._table().query_entities(
                "PartitionKey eq @pk and parked eq true", parameters={"pk": self.PARTITION}, select=["RowKey"]))
        except ResourceNotFoundError:
            return 0
        except AzureError as exc:
            raise _store_error("outbox read", exc) from exc
