"""The dead-letter replay's state per blob (``guardrails.replay``), in ``<prefix>TimerState``
partition ``deadletter`` (RK sha256 of the blob name): mixed into ``TableTimerState``, whose
``_t``, ``name``, ``_partition`` and ``_delete`` it uses."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from azure.core.exceptions import AzureError, ResourceNotFoundError

from .table_text import MAX_PROPERTY_CHARS, TRANSACTION_ROWS, _cut_ranges, bounded_json
from .tables import _store_error


def _next_offset(v: dict[str, Any]) -> list[int]:
    """A failing event's next try as whole seconds after its first failure (a short number: 500
    clocks must fit one property), or nothing."""
    from ..coverage import _parse_time
    first, nxt = _parse_time(v.get("first")), _parse_time(v.get("next"))
    return [max(0, int((nxt - first).total_seconds()))] if first is not None and nxt is not None else []


def _next_from(first: str, offset: Any) -> str:
    from datetime import timedelta

    from ..coverage import _parse_time
    start = _parse_time(first)
    try:
        seconds = int(offset)
    except (TypeError, ValueError):
        return ""
    return "" if start is None else (start + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _failing_columns(state: dict[str, Any]) -> dict[str, Any]:
    """A blob's give-up clocks (``replay``): per failing event ``[tries, first failure, next try]`` in one
    property, never degraded to something that reads back empty; an event that does not fit is
    dropped (those that started failing last are kept) and then runs on the blob's own clock
    (``failing_since``, ``failing_runs``), which ``failing_untracked`` says."""
    entries = sorted(((str(k), [int(v.get("attempts", 0)), str(v.get("first", ""))[:40]] + _next_offset(v))
                      for k, v in dict(state.get("failing") or {}).items() if isinstance(v, dict)),
                     key=lambda kv: (kv[1][1], kv[0].zfill(12)), reverse=True)
    untracked = bool(state.get("failing_untracked"))
    text = json.dumps(dict(entries), sort_keys=True)
    while len(text) > MAX_PROPERTY_CHARS:        # replay keeps at most 500 (~25,000 characters): never expected
        entries = entries[:len(entries) * 3 // 4]
        untracked = True
        text = json.dumps(dict(entries), sort_keys=True)
    return {"failing": text, "failing_since": str(state.get("failing_since") or "")[:40],
            "failing_runs": int(state.get("failing_runs") or 0), "failing_untracked": untracked}


def _failing_from(text: Any) -> tuple[dict[str, dict[str, Any]], bool]:
    """The per-event clocks back (``[tries, first]``, or the older ``{attempts, first, error}``),
    and whether some were lost (a row an older version stored degraded to a string)."""
    try:
        value = json.loads(str(text or "{}"))
    except ValueError:
        return {}, True
    if not isinstance(value, dict):
        return {}, True
    out: dict[str, dict[str, Any]] = {}
    lost = False
    for k, v in value.items():
        try:
            if isinstance(v, list) and len(v) in (2, 3):       # [tries, first] (+ next try: replay's back-off)
                out[str(k)] = {"attempts": int(v[0]), "first": str(v[1]),
                               **({"next": _next_from(str(v[1]), v[2])} if len(v) == 3 else {})}
            elif isinstance(v, dict):
                out[str(k)] = {"attempts": int(v.get("attempts", 0)), "first": str(v.get("first", ""))}
            else:
                lost = True
        except (TypeError, ValueError):
            lost = True
    return out, lost


class DeadLetterStates:
    DEADLETTER = "deadletter"

    @staticmethod
    def _blob_key(blob: str) -> str:
        """Row key of a blob name (case-sensitive, as blob names are)."""
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]

    @staticmethod
    def _deadletter(e: dict[str, Any]) -> dict[str, Any]:
        try:
            events = json.loads(str(e.get("events") or "[]"))
        except ValueError:
            events = []
        failing, lost = _failing_from(e.get("failing"))
        return {"outcome": str(e.get("outcome") or ""), "attempts": int(e.get("attempts") or 0),
                "at": str(e.get("at") or ""), "detail": str(e.get("detail") or ""),
                "events": events if isinstance(events, list) else [],
                "done": str(e.get("done") or ""), "abandoned": str(e.get("abandoned") or ""),
                "failing": failing, "failing_since": str(e.get("failing_since") or ""),
                "failing_runs": int(e.get("failing_runs") or 0),
                "failing_untracked": bool(e.get("failing_untracked")) or lost}

    def deadletter_states(self) -> dict[str, dict[str, Any]]:
        """Every dead-letter blob's replay state, by blob name (``deadletter list``; a replay run
        reads ``deadletter_outcomes`` and each blob it replays with ``deadletter_state``)."""
        return {str(e["blob"]): self._deadletter(e) for e in self._partition(self.DEADLETTER, "dead-letter")
                if e.get("blob")}

    def deadletter_outcomes(self) -> dict[str, str]:
        """Every dead-letter blob's outcome alone, by blob name: one query of two properties (the
        events and clocks stay on the table), what a replay run needs to pick the blobs to replay
        and find the states of blobs gone from the container."""
        try:
            rows = self._t.table(self.name).query_entities("PartitionKey eq @pk", parameters={"pk": self.DEADLETTER},
                                                           select=["blob", "outcome"])
            out: dict[str, str] = {}
            outcomes: dict[str, str] = {}          # one string per outcome, however many rows share it
            for e in rows:
                if e.get("blob"):
                    outcome = str(e.get("outcome") or "")
                    out[str(e["blob"])] = outcomes.setdefault(outcome, outcome)
            return out
        except AzureError as exc:
            raise _store_error("read dead-letter state", exc) from exc

    def deadletter_state(self, blob: str) -> dict[str, Any] | None:
        """One blob's replay state (point read), or None."""
        try:
            e = self._t.table(self.name).get_entity(self.DEADLETTER, self._blob_key(blob))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _store_error("read dead-letter state", exc) from exc
        return self._deadletter(e)

    def set_deadletter_state(self, blob: str, state: dict[str, Any]) -> None:
        try:
            self._t.table(self.name).upsert_entity(
                {"PartitionKey": self.DEADLETTER, "RowKey": self._blob_key(blob), "blob": blob[:1024],
                 "outcome": str(state["outcome"]), "attempts": int(state.get("attempts", 0)),
                 "at": str(state.get("at", "")), "detail": str(state.get("detail", ""))[:4000],
                 "events": bounded_json(list(state.get("events", ()))),
                 "done": _cut_ranges(str(state.get("done", ""))),
                 "abandoned": _cut_ranges(str(state.get("abandoned", ""))),
                 **_failing_columns(state)})
        except AzureError as exc:
            raise _store_error("write dead-letter state", exc) from exc

    def delete_deadletter_state(self, blob: str) -> None:
        self._delete(self.DEADLETTER, self._blob_key(blob), "dead-letter")

    def delete_deadletter_states(self, blobs: Iterable[str]) -> None:
        """Delete these blobs' states, ``TRANSACTION_ROWS`` to an entity-group transaction (one
        partition, one round trip); a transaction that meets a row already gone is done row by row."""
        from azure.data.tables import TableTransactionError

        keys = sorted({self._blob_key(b) for b in blobs})
        table = self._t.table(self.name)
        for i in range(0, len(keys), TRANSACTION_ROWS):
            chunk = keys[i:i + TRANSACTION_ROWS]
            try:
                table.submit_transaction([("delete", {"PartitionKey": self.DEADLETTER, "RowKey": k}) for k in chunk])
            except TableTransactionError:          # one row gone meanwhile (a 404 fails the whole transaction)
                for k in chunk:
                    self._delete(self.DEADLETTER, k, "dead-letter")
            except AzureError as exc:
                raise _store_error("delete dead-letter state", exc) from exc
