"""Table Storage for the timers: one summary row per run, and each timer's last run.

  <prefix>Sweeps      PK "YYYYMM" (month started)  RK "<started ISO>-<run id>"   one summary per run
  <prefix>TimerState  PK "timer"                   RK timer name                last_run (ISO, UTC), retry (JSON:
                                                                                [{id, attempts}], expiry timer;
                                                                                longer than one property: its
                                                                                text goes on in retry_1 … retry_11)
                      PK "lease"                   RK run name                  holder, until (one run at a time)
                      PK "coverage"                RK sha256(source, lower)     source, covered, signature, since
                      PK "deadletter"              RK sha256(blob name)         blob, outcome (replayed, retrying, gave_up,
                                                                                unreadable, rejected), attempts, at, detail,
                                                                                done, abandoned (index ranges),
                                                                                events (JSON: id, type, verdict …),
                                                                                failing (JSON: {index: [tries, first]}),
                                                                                failing_since, failing_runs, failing_untracked
                      PK "finding"                 RK sha256(resource id, lower)  resource_id, signature, told, seen
                                                                                (``guardrails.sweep_notices``)

A sweep's per-resource decisions are ordinary audit rows (``correlation_id`` = the run id); the
summary row counts them, and the compliant resources that got no row of their own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from ..errors import FindingStateChanged

from ..logs import emit
from .tables import Tables, _log, _store_error


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


MAX_PROPERTY_CHARS = 30000      # a Table Storage string property holds 32K UTF-16 characters
TRANSACTION_ROWS = 100          # an entity-group transaction: at most 100 entities, one partition
RETRY_PARTS = 12                # properties one timer's ``retry`` may span (an entity holds 1 MiB: 12 x 60 KB)
_JSON_FIELDS = ("subscriptions", "management_groups", "verdicts", "errors", "coverage")


def bounded_json(value: Any, limit: int = MAX_PROPERTY_CHARS) -> str:
    """``value`` as JSON of at most ``limit`` characters that still parses: a long list keeps
    its first items and ends with ``"… N more"`` (a sweep over 1,000 subscriptions lists more
    than a property holds); anything else too long becomes a JSON string saying so."""
    text = json.dumps(value, sort_keys=True)
    if len(text) <= limit:
        return text
    if isinstance(value, list):
        lo, hi = 0, len(value)               # the longest prefix that fits with its marker
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(json.dumps([*value[:mid], f"… {len(value) - mid} more"], sort_keys=True)) <= limit:
                lo = mid
            else:
                hi = mid - 1
        return json.dumps([*value[:lo], f"… {len(value) - lo} more"], sort_keys=True)
    return json.dumps(f"… {len(text)} characters, too long to keep")


def _cut_ranges(text: str, limit: int = MAX_PROPERTY_CHARS) -> str:
    """Replay progress (``deadletter.to_ranges``) cut to ``limit`` characters at a comma: a cut inside
    a number would leave another number (``123457`` -> ``1234``), naming an index never handled as
    done. What is dropped is only handled again (``duplicate`` while its dedup record lasts)."""
    return text if len(text) <= limit else text[:limit + 1].rsplit(",", 1)[0][:limit]


def _ensure(tables: Tables, name: str) -> None:
    try:
        tables.service.create_table_if_not_exists(name)
    except AzureError as exc:
        raise _store_error(f"create table {name}", exc) from exc


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


class TableSweepStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables
        self.name = f"{tables.prefix}Sweeps"
        _ensure(tables, self.name)

    def write(self, summary: dict[str, Any]) -> None:
        started = str(summary["started"])
        entity: dict[str, Any] = {"PartitionKey": started[:4] + started[5:7], "RowKey": f"{started}-{summary['sweep_id']}"}
        for k, v in summary.items():
            entity[k] = bounded_json(v) if isinstance(v, (list, dict)) else v
        try:
            self._t.table(self.name).upsert_entity(entity)
        except AzureError as exc:
            raise _store_error("write sweep summary", exc) from exc

    def read_month(self, year: int, month: int) -> list[dict[str, Any]]:
        try:
            rows = list(self._t.table(self.name).query_entities(
                "PartitionKey eq @pk", parameters={"pk": f"{year:04d}{month:02d}"}))
        except AzureError as exc:
            raise _store_error("read sweep summaries", exc) from exc
        out = []
        for r in sorted(rows, key=lambda e: e["RowKey"]):
            d = {k: v for k, v in r.items() if k not in ("PartitionKey", "RowKey")}
            for k in _JSON_FIELDS:
                if isinstance(d.get(k), str):
                    try:
                        d[k] = json.loads(d[k])
                    except ValueError:      # a row written before values were bounded: kept as text
                        pass
            out.append(d)
        return out


def _parse_iso(text: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


class TableTimerState:
    PARTITION = "timer"

    def __init__(self, tables: Tables) -> None:
        self._t = tables
        self.name = f"{tables.prefix}TimerState"
        _ensure(tables, self.name)

    def last_run(self, timer: str) -> datetime | None:
        try:
            e = self._t.table(self.name).get_entity(self.PARTITION, timer)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _store_error("read timer state", exc) from exc
        if not e.get("last_run"):          # a row holding only ``retry``: no run has finished yet
            return None
        try:
            when = datetime.fromisoformat(str(e["last_run"]).replace("Z", "+00:00"))
        except ValueError:                 # a row edited by hand: as if no run had finished (louder)
            emit(_log, logging.WARNING, "guardrail_timer_state_unreadable", timer=timer, field="last_run")
            return None
        return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)

    def set_last_run(self, timer: str, when: datetime) -> None:
        try:     # merge: the row's other properties (``retry``) are kept
            self._t.table(self.name).upsert_entity(
                {"PartitionKey": self.PARTITION, "RowKey": timer, "last_run": _iso(when)}, mode=UpdateMode.MERGE)
        except AzureError as exc:
            raise _store_error("write timer state", exc) from exc

    def take_run_lease(self, name: str, holder: str, seconds: float) -> bool:
        """One run at a time (``name``: a timer run that any instance or the CLI may start): a row
        ``lease/<name>`` naming its holder until a time, created or taken over (expired) under its
        etag. False: another run holds it."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        table = self._t.table(self.name)
        now = datetime.now(timezone.utc)
        entity = {"PartitionKey": "lease", "RowKey": name, "holder": holder[:200],
                  "until": _iso(now + timedelta(seconds=max(1.0, seconds)))}
        try:
            try:
                table.create_entity(entity)
                return True
            except ResourceExistsError:
                pass
            try:
                current = table.get_entity("lease", name)
            except ResourceNotFoundError:
                return False              # released between the two calls: the next run takes it
            until = _parse_iso(current.get("until"))
            if current.get("holder") != holder and until is not None and until > now:
                return False
            table.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                match_condition=MatchConditions.IfNotModified)
            return True
        except ResourceModifiedError:
            return False                  # another run took it over first
        except AzureError as exc:
            raise _store_error("take run lease", exc) from exc

    def release_run_lease(self, name: str, holder: str) -> None:
        """Give the lease back if this run still holds it (a failure only leaves it to expire)."""
        from azure.core import MatchConditions
        try:
            table = self._t.table(self.name)
            current = table.get_entity("lease", name)
            if current.get("holder") == holder:
                table.delete_entity("lease", name, etag=current.metadata["etag"],
                                    match_condition=MatchConditions.IfNotModified)
        except AzureError:
            pass

    def renew_run_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Keep the lease ``holder`` took (``take_run_lease``) ``seconds`` longer, under its etag:
        True only while it is still this holder's (False: it ran out and another run took it over,
        or was released, so this run's view of the state may be stale: it must not save it)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        table = self._t.table(self.name)
        try:
            try:
                current = table.get_entity("lease", name)
            except ResourceNotFoundError:
                return False
            if current.get("holder") != holder[:200]:
                return False
            table.update_entity({"PartitionKey": "lease", "RowKey": name, "holder": holder[:200],
                                 "until": _iso(datetime.now(timezone.utc) + timedelta(seconds=max(1.0, seconds)))},
                                mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                match_condition=MatchConditions.IfNotModified)
            return True
        except ResourceModifiedError:
            return False                  # taken over between the read and the update
        except AzureError as exc:
            raise _store_error("renew run lease", exc) from exc

    # What ``retry`` can hold in full (JSON characters, over ``RETRY_PARTS`` properties): a caller
    # that must not lose an item (the expiry timer's ``done`` marks) keeps what it writes below it.
    retry_chars = RETRY_PARTS * MAX_PROPERTY_CHARS

    def retry(self, timer: str) -> list[dict[str, Any]]:
        """What a timer keeps to decide again next run (``expiry``: ``[{id, attempts}]``)."""
        try:
            e = self._t.table(self.name).get_entity(self.PARTITION, timer)
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise _store_error("read timer state", exc) from exc
        text = str(e.get("retry") or "")
        for i in range(1, RETRY_PARTS):      # a row written before parts existed has only ``retry``
            text += str(e.get(f"retry_{i}") or "")
        try:
            items = json.loads(text or "[]")
        except ValueError:
            return []
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def set_retry(self, timer: str, items: list[dict[str, Any]]) -> None:
        """Keep ``items`` as one JSON text cut over ``retry``, ``retry_1`` … (every part written:
        those not needed emptied). Only a list longer than ``retry_chars`` loses its tail (``"… N
        more"``, which ``retry`` drops), with a WARNING."""
        text = json.dumps(list(items), sort_keys=True)
        if len(text) > self.retry_chars:
            emit(_log, logging.WARNING, "guardrail_timer_state_truncated", timer=timer, chars=len(text),
                 limit=self.retry_chars)
            text = bounded_json(list(items), self.retry_chars)
        parts = [text[i:i + MAX_PROPERTY_CHARS] for i in range(0, RETRY_PARTS * MAX_PROPERTY_CHARS, MAX_PROPERTY_CHARS)]
        entity: dict[str, Any] = {"PartitionKey": self.PARTITION, "RowKey": timer, "retry": parts[0]}
        entity.update({f"retry_{i}": parts[i] for i in range(1, RETRY_PARTS)})
        try:     # merge: ``last_run`` is kept
            self._t.table(self.name).upsert_entity(entity, mode=UpdateMode.MERGE)
        except AzureError as exc:
            raise _store_error("write timer state", exc) from exc

    # ---- event coverage per subscription (``guardrails.coverage.transition``) ----------------
    COVERAGE = "coverage"

    @staticmethod
    def _coverage_key(source: str) -> str:
        """Row key of an event source (``/subscriptions/{id}``, a vault's or workspace's ARM id):
        hashed, since a row key may not hold ``/``."""
        return hashlib.sha256(source.lower().rstrip("/").encode("utf-8")).hexdigest()[:40]

    def _partition(self, pk: str, what: str) -> list[dict[str, Any]]:
        try:
            return list(self._t.table(self.name).query_entities("PartitionKey eq @pk", parameters={"pk": pk}))
        except AzureError as exc:
            raise _store_error(f"read {what} state", exc) from exc

    def coverage_states(self) -> dict[str, dict[str, Any]]:
        """Every source's state, by source (lower-cased): one query per sweep."""
        rows = self._partition(self.COVERAGE, "coverage")
        return {str(e.get("source") or "").lower(): self._state(e) for e in rows if e.get("source")}

    @staticmethod
    def _state(e: dict[str, Any]) -> dict[str, Any]:
        return {"covered": bool(e.get("covered")), "signature": str(e.get("signature") or ""),
                "since": str(e.get("since") or "")}

    def coverage_state(self, source: str) -> dict[str, Any] | None:
        try:
            e = self._t.table(self.name).get_entity(self.COVERAGE, self._coverage_key(source))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _store_error("read coverage state", exc) from exc
        return self._state(e)

    def set_coverage_state(self, source: str, state: dict[str, Any]) -> None:
        try:
            self._t.table(self.name).upsert_entity(
                {"PartitionKey": self.COVERAGE, "RowKey": self._coverage_key(source), "source": source[:1024],
                 "covered": bool(state["covered"]),
                 "signature": str(state.get("signature", ""))[:4000], "since": str(state.get("since", ""))})
        except AzureError as exc:
            raise _store_error("write coverage state", exc) from exc

    # ---- dead-letter replay per blob (``guardrails.replay``) --------------------------------------
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

    def _delete(self, pk: str, rk: str, what: str) -> None:
        """Delete one state row; one already gone is fine."""
        try:
            self._t.table(self.name).delete_entity(pk, rk)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _store_error(f"delete {what} state", exc) from exc

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

    # ---- findings the sweep told an owner of (``guardrails.sweep_notices``) ----------------------
    FINDING = "finding"

    def finding_state(self, resource_id: str) -> dict[str, Any] | None:
        try:
            e = self._t.table(self.name).get_entity(self.FINDING, self._coverage_key(resource_id))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _store_error("read finding state", exc) from exc
        return {"signature": str(e.get("signature") or ""), "told": str(e.get("told") or ""),
                "seen": str(e.get("seen") or ""), "etag": e.metadata.get("etag")}

    def set_finding_state(self, resource_id: str, state: dict[str, Any], *, read: dict[str, Any] | None = None,
                          conditional: bool = False) -> None:
        """``conditional``: written only over the state as ``read`` (its etag; None read: only if
        there is still none), else ``FindingStateChanged``: another run judged this finding since."""
        entity = {"PartitionKey": self.FINDING, "RowKey": self._coverage_key(resource_id),
                  "resource_id": resource_id[:1024], "signature": str(state.get("signature", ""))[:100],
                  "told": str(state.get("told", ""))[:40], "seen": str(state.get("seen", ""))[:40]}
        table = self._t.table(self.name)
        try:
            if not conditional:
                table.upsert_entity(entity)
            elif read is None or not read.get("etag"):
                table.create_entity(entity)
            else:
                table.update_entity(entity, mode=UpdateMode.REPLACE, etag=read["etag"],
                                    match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError):
            raise FindingStateChanged(f"finding state of {resource_id[:200]} changed since it was read") from None
        except AzureError as exc:
            raise _store_error("write finding state", exc) from exc

    def finding_states(self) -> list[dict[str, Any]]:
        """Every kept finding state: ``resource_id``, ``seen`` (one query per sweep, to prune)."""
        return [{"resource_id": str(e.get("resource_id") or ""), "seen": str(e.get("seen") or ""),
                 "key": str(e.get("RowKey") or "")} for e in self._partition(self.FINDING, "finding")]

    def delete_finding_key(self, key: str) -> None:
        self._delete(self.FINDING, key, "finding")

    def delete_finding_state(self, resource_id: str) -> None:
        self._delete(self.FINDING, self._coverage_key(resource_id), "finding")
