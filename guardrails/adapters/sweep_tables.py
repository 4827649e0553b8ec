"""Table Storage for the timers: one summary row per run, and each timer's last run.

  <prefix>Sweeps      PK "YYYYMM" (month started)  RK "<started ISO>-<run id>"   one summary per run
  <prefix>TimerState  PK "timer"                   RK timer name                last_run (ISO, UTC), retry (JSON:
                                                                                [{id, attempts}], expiry timer;
                                                                                longer than one property: its
                                                                                text goes on in retry_1 … retry_11)
                      PK "lease"                   RK run name                  holder, until (one run at a time)
                      PK "coverage"                RK sha256(source, lower)     source, covered, signature, since
                      PK "deadletter"              RK sha256(blob name)         (deadletter_state.py) blob, outcome (replayed, retrying, gave_up,
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
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from ..errors import FindingStateChanged

from ..logs import emit
from .deadletter_state import DeadLetterStates
from .table_text import MAX_PROPERTY_CHARS, bounded_json
from .tables import Tables, _log, _store_error


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


RETRY_PARTS = 12                # properties one timer's ``retry`` may span (an entity holds 1 MiB: 12 x 60 KB)
_JSON_FIELDS = ("subscriptions", "management_groups", "verdicts", "errors", "coverage")


def _ensure(tables: Tables, name: str) -> None:
    try:
        tables.service.create_table_if_not_exists(name)
    except AzureError as exc:
        raise _store_error(f"create table {name}", exc) from exc


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


class TableTimerState(DeadLetterStates):
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

    def _delete(self, pk: str, rk: str, what: str) -> None:
        """Delete one state row; one already gone is fine."""
        try:
            self._t.table(self.name).delete_entity(pk, rk)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _store_error(f"delete {what} state", exc) from exc

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
        """Every kept finding state: ``resource_id``, ``seen`` (one query per sweep to know the open
        ones, ``NoticeGate.holds``, and one to prune)."""
        return [{"resource_id": str(e.get("resource_id") or ""), "seen": str(e.get("seen") or ""),
                 "key": str(e.get("RowKey") or "")} for e in self._partition(self.FINDING, "finding")]

    def delete_finding_key(self, key: str) -> None:
        self._delete(self.FINDING, key, "finding")

    def delete_finding_state(self, resource_id: str) -> None:
        self._delete(self.FINDING, self._coverage_key(resource_id), "finding")
