"""Table Storage: the policy repository (``TablePolicyRepository``). Workers read the synced policy
rows (``list_documents``, one sync's set or ``PolicyUnreadable``); ``metadata sync`` writes a whole
policy set (``replace_all``: one sync at a time under a lease row, every change conditional on the
row as read, all or nothing; a first load into an empty partition in steps under a loading mark).

Table layout (keys may not contain ``/ \\ # ?``):

  <prefix>Policies          PK "policy"            RK policy id         document (JSON), version, sha256
                                                   RK "!loading"        only while a first load runs in steps
                            PK "sync"              RK "lease"           held by the one running ``metadata sync``

The table's name, its client and the helpers every table adapter shares: ``tables``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator, Mapping, Sequence

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from ..errors import PolicyUnreadable, StoreError
from ..logs import emit
from .tables import NO_CONTENT, _MAX_STRING, Tables, _log, _sha, _store_error


class TablePolicyRepository:
    PARTITION = "policy"

    # ``metadata sync`` holds this row (another partition: workers read PartitionKey "policy" only,
    # so an earlier release never meets it) from reading the table to its last write
    SYNC_PARTITION, SYNC_LEASE = "sync", "lease"
    SYNC_LEASE_SECONDS = 300         # a sync that died holding it is waited for at most this long
    SYNC_WAIT_SECONDS = 60.0         # how long a sync waits for another one to finish

    def __init__(self, tables: Tables, *, sync_wait_seconds: float | None = None) -> None:
        self._t = tables
        self._sync_wait = self.SYNC_WAIT_SECONDS if sync_wait_seconds is None else sync_wait_seconds

    # Present only while ``replace_all`` loads a policy set into an EMPTY partition in several
    # transactions (``_load_in_steps``): no policy id spells it (ids start with [a-z0-9]) and "!"
    # sorts before every id, so a paged read meets it on its first page.
    LOADING_KEY = "!loading"

    def list_documents(self) -> list[tuple[str, dict]]:
        """The synced documents. Fails closed: a missing table, or a partition holding no policy
        row (a sync never run, a mistyped ``GUARDRAILS_TABLE_PREFIX``, rows deleted by hand; a sync
        never writes an empty set), is ``PolicyUnreadable`` (audited ``failed``, redelivered), never
        "no policy". A row ``_parse_row`` does not trust (not written by a sync) is logged (ERROR
        ``policy_row_tampered``) and handed on as corrupt: the loader rejects it. A first load in
        several transactions under way (or stopped half-way): ``PolicyUnreadable``."""
        name = self._t.policies_name
        try:
            rows = self._snapshot(self._t.table(name))
        except ResourceNotFoundError:
            raise PolicyUnreadable(f"policy table {name} does not exist: no decision until `python -m guardrails "
                                   "metadata sync` writes it (check GUARDRAILS_TABLE_PREFIX)") from None
        except AzureError as exc:
            raise _store_error("read policies", exc) from exc
        if any(r.get("RowKey") == self.LOADING_KEY for r in rows):
            raise PolicyUnreadable(
                f"policy table {name} holds a policy set that `metadata sync` is still loading "
                f"({len(rows) - 1} row(s) so far): no decision on part of it; if that sync failed, run it again")
        if not rows:
            raise PolicyUnreadable(
                f"policy table {name} holds no policy: `metadata sync` never wrote it (or its rows were deleted "
                "by hand): no decision until it runs (check GUARDRAILS_TABLE_PREFIX)")
        out = []
        for r in sorted(rows, key=lambda e: e["RowKey"]):
            source = f"table:{name}/{r['RowKey']}"
            doc, why = _parse_row(r)
            if why is not None:
                emit(_log, logging.ERROR, "policy_row_tampered", source=source,
                     detail=f"{why}: not written by metadata sync")
                doc = {"id": r.get("RowKey"), "__corrupt__": True}
            out.append((source, doc))
        return out

    SNAPSHOT_ROUNDS = 3

    def _snapshot(self, table: TableClient) -> list:
        """The partition's rows as one sync left them. A query answers at most 1,000 entities per
        page (fewer when the service cuts a page short), and a sync's transaction can land between
        two page reads: rows read before it beside rows read after it make a set no sync wrote (a
        policy retired, its rule moved into another: the old version of the one beside the absence
        of the other enforces the rule nowhere). So the read is followed by a second one, of the row
        keys and etags alone. A first read that mixes two sets met, before the sync landed, a row the
        sync then changed; the second read, all of it later, meets that row with another etag (or
        without it, or with it new). Equal keys and etags: the first read is one sync's set. Else
        both are made again, ``SNAPSHOT_ROUNDS`` times, then ``PolicyUnreadable`` (redelivered)."""
        query = {"query_filter": "PartitionKey eq @pk", "parameters": {"pk": self.PARTITION}}
        for _round in range(self.SNAPSHOT_ROUNDS):
            rows = list(table.query_entities(**query))
            read = {r["RowKey"]: r.metadata.get("etag") for r in rows}
            again = {r["RowKey"]: r.metadata.get("etag") for r in table.query_entities(**query, select=["RowKey"])}
            if again == read:
                return rows
        raise PolicyUnreadable(
            f"policy table {self._t.policies_name} changed while it was read, {self.SNAPSHOT_ROUNDS} times in a row "
            "(metadata syncs under way): no decision on a set no sync wrote; the event is redelivered")

    MAX_OPERATIONS = 100        # one entity-group transaction (one partition): all or nothing
    _INT32 = (-2**31, 2**31 - 1)   # the ``version`` column is an Edm.Int32

    def replace_all(self, documents: Sequence[tuple[str, dict]], *,
                    guard: Callable[[Mapping[str, dict | None]], None] | None = None) -> dict[str, int]:
        """Make the table hold exactly ``documents``, all or nothing (the table created if absent:
        only a sync creates it). ``guard`` (``metadata sync``'s version check) gets the rows as read
        under the lease (``{row key: document}``, None for one not written by a sync) before any
        write, and raises to refuse. Every row is built and checked
        (size, an Int32 ``version``) before anything is written; the changes then go as ONE
        entity-group transaction (one partition, at most 100 operations), which Table Storage
        applies whole or not at all, and a reader's query sees the partition before or after it.
        A change to an existing set that needs more rows is refused before any write (``StoreError``
        saying how to split it): batches in several transactions could leave a narrowed policy live
        without its companion when a later batch fails. A first load into an empty partition (a new
        deployment, ``simulate``) of any size goes in steps instead (``_load_in_steps``). A row whose
        stored document differs from the new one is rewritten even when its ``sha256`` column
        matches (a row edited in place is put back). One sync at a time (``_sync_lease``), every
        change conditional on the row as read (``_replace_under_lease``)."""
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
            version = doc.get("version", 0)
            if type(version) is not int or not self._INT32[0] <= version <= self._INT32[1]:
                raise StoreError(f"{source}: policy '{pid}': version {str(version)[:40]} does not fit the table's "
                                 f"version column (an integer up to {self._INT32[1]}); nothing was written")
            wanted[pid] = (source, doc, body)
        self._create_table()
        with self._sync_lease(table):
            return self._replace_under_lease(table, wanted, counts, guard)

    def _create_table(self) -> None:
        """The policy table, when it does not exist yet. A 403 is let through: a deployer's role on
        the one table ``infra/`` made may not create tables; the read that follows says if it is absent."""
        try:
            self._t.ensure([self._t.policies_name])
        except StoreError as exc:
            if exc.status != 403:
                raise _then(exc, "; nothing was written") from exc

    def _replace_under_lease(self, table: TableClient, wanted: dict[str, tuple[str, dict, str]],
                             counts: dict[str, int],
                             guard: Callable[[Mapping[str, dict | None]], None] | None = None) -> dict[str, int]:
        """Every change is conditional on the row as read: an update or a delete on its ETag, an
        added row a create. A row changed between the read and the write (an earlier release's sync,
        an edit by hand, a sync whose lease ran out) fails the whole transaction: nothing written."""
        try:
            existing = {e["RowKey"]: e for e in table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": self.PARTITION})}
        except AzureError as exc:
            raise _store_error("read policies", exc) from exc
        loading = existing.pop(self.LOADING_KEY, None) is not None   # an earlier first load stopped half-way
        if guard is not None:
            guard({pid: _parse_row(e)[0] for pid, e in existing.items()})
        ops: list[tuple] = []
        for pid, (source, doc, body) in wanted.items():
            digest = _sha(body)
            old = existing.get(pid)
            if old is not None and old.get("sha256") == digest and old.get("document") == body:
                counts["unchanged"] += 1
                continue
            row = {"PartitionKey": self.PARTITION, "RowKey": pid, "document": body, "sha256": digest,
                   "version": doc.get("version", 0), "source": source[-500:],
                   "synced_at": datetime.now(timezone.utc)}
            if old is None:
                ops.append(("create", row))
            else:
                ops.append(("update", row, {"mode": UpdateMode.REPLACE, **_as_read(old)}))
            counts["updated" if old is not None else "added"] += 1
        for pid, old in existing.items():
            if pid not in wanted:
                ops.append(("delete", {"PartitionKey": self.PARTITION, "RowKey": pid}, _as_read(old)))
                counts["removed"] += 1
        if loading or (not existing and len(ops) > self.MAX_OPERATIONS):
            self._load_in_steps(table, ops, resume=loading)
            return counts
        if not ops:
            return counts
        if len(ops) > self.MAX_OPERATIONS:
            raise StoreError(
                f"this sync would change {len(ops)} policy rows ({counts['added']} added, {counts['updated']} "
                f"updated, {counts['removed']} removed), more than the {self.MAX_OPERATIONS} one all-or-nothing "
                "Table Storage transaction holds; nothing was written: sync in steps of at most "
                f"{self.MAX_OPERATIONS} changed policies, each step a complete metadata set (e.g. first sync "
                "with the new files added beside the old ones, then again with the old files removed)")
        self._submit(table, ops, "nothing was written (one transaction)")
        return counts

    @contextmanager
    def _sync_lease(self, table: TableClient) -> Iterator[None]:
        """One ``metadata sync`` at a time. Two syncs that each read the table and then wrote their
        own changes left the union of both policy sets: a policy one of them removed stayed live.
        A sync takes the lease row before it reads and gives it back after its last write; a second
        sync waits for it (``sync_wait_seconds``) and then makes the table hold ITS set (the later
        sync wins, as it would had they run one after the other), or gives up writing nothing. A
        lease left by a sync that died is taken over once it has run out (``SYNC_LEASE_SECONDS``)."""
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + self._sync_wait
        key = {"PartitionKey": self.SYNC_PARTITION, "RowKey": self.SYNC_LEASE}
        while True:
            now = datetime.now(timezone.utc)
            mine = {**key, "holder": holder, "host": f"{socket.gethostname()[:200]} pid {os.getpid()}",
                    "taken_at": now, "expires_at": now + timedelta(seconds=self.SYNC_LEASE_SECONDS)}
            try:
                try:
                    etag = table.create_entity(mine, **NO_CONTENT)["etag"]
                    break
                except ResourceExistsError:
                    pass
                try:
                    held = table.get_entity(self.SYNC_PARTITION, self.SYNC_LEASE)
                except ResourceNotFoundError:
                    continue                                  # given back meanwhile
                if held.get("holder") == holder:
                    # this sync's own: an insert (or takeover) applied whose answer was lost, and
                    # the SDK's retry met the row it wrote (409 / 412)
                    etag = held.metadata["etag"]
                    break
                expires = held.get("expires_at")
                if not isinstance(expires, datetime) or expires <= now:   # its sync died holding it
                    try:
                        etag = table.update_entity(mine, mode=UpdateMode.REPLACE, **_as_read(held))["etag"]
                        emit(_log, logging.WARNING, "policy_sync_lease_taken_over",
                             detail=f"a sync on {str(held.get('host'))[:200]} took the lease at "
                                    f"{held.get('taken_at')} and never gave it back")
                        break
                    except (ResourceModifiedError, ResourceNotFoundError):
                        continue                              # another sync took it first
            except AzureError as exc:
                raise _then(_store_error('take the policy sync lease', exc), "; nothing was written") from exc
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"another metadata sync is writing the policy table (on {str(held.get('host'))[:200]}, since "
                    f"{held.get('taken_at')}; its lease runs out at {held.get('expires_at')}); waited "
                    f"{self._sync_wait:g} s, nothing was written: run the sync again when it has finished")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        try:
            yield
        finally:
            try:
                table.delete_entity(self.SYNC_PARTITION, self.SYNC_LEASE, etag=etag,
                                    match_condition=MatchConditions.IfNotModified)
            except AzureError as exc:      # it runs out by itself; never hide the sync's own outcome
                emit(_log, logging.WARNING, "policy_sync_lease_not_given_back",
                     detail=f"{type(exc).__name__}: the next sync waits until it runs out "
                            f"({self.SYNC_LEASE_SECONDS} s)")

    def _load_in_steps(self, table: TableClient, ops: list[tuple], *, resume: bool) -> None:
        """Load a policy set into a partition no reader can take a policy from, in transactions of
        at most ``MAX_OPERATIONS``.

        Why this is safe. A partial set is not harmless even when every row it holds is a whole,
        final policy: policies act on each other across rows (a ``break_glass`` principal of one
        role policy is never removed by another; two policies demanding different values write
        neither; the last-Owner rule counts what the other policies keep), so a worker deciding on
        the first batches could remove a break-glass principal's assignment that the complete set
        protects. Hence the ``LOADING_KEY`` row: written alone BEFORE the first policy row (only
        when the partition holds no policy row, so nothing a worker could use is hidden), removed
        alone AFTER the last batch landed. While it is there ``list_documents`` raises
        ``PolicyUnreadable``: events fail and are redelivered (before the load they were ``ignored``,
        no policy), and they are decided on the complete set once it is gone. A load that stops
        half-way leaves the row: workers still decide nothing, and the next sync (``resume``) sees
        the row and finishes the load in steps whatever it has to change, then removes it. A
        partition that already holds a policy set never gets the row (workers decide on that set
        meanwhile): its changes stay one all-or-nothing transaction (``replace_all``)."""
        if not resume:
            try:
                table.upsert_entity({"PartitionKey": self.PARTITION, "RowKey": self.LOADING_KEY,
                                     "started_at": datetime.now(timezone.utc)}, mode=UpdateMode.REPLACE)
            except AzureError as exc:
                raise _then(_store_error('write policies', exc), "; nothing was written") from exc
        step = self.MAX_OPERATIONS
        for i in range(0, len(ops), step):
            self._submit(table, ops[i:i + step],
                         f"{i} of {len(ops)} policy row changes were written in earlier transactions; the "
                         "table is marked as loading, so workers decide nothing on the partial set: run the sync again")
        try:
            table.delete_entity(self.PARTITION, self.LOADING_KEY)
        except AzureError as exc:
            raise _then(_store_error('write policies', exc), ": every policy row was written but the loading "
                             "mark was not removed, so workers decide nothing yet: run the sync again") from exc

    @staticmethod
    def _submit(table: TableClient, ops: list[tuple], written: str) -> None:
        """One entity-group transaction; ``written`` says what the table holds when it fails. A
        failure is no proof that nothing was written (an applied transaction's answer lost; the SDK's
        retry of it meeting its own rows: 412), so the partition is read again: every change there ->
        applied (WARNING ``policy_sync_answer_lost``); else an answered refusal, or no answer with
        every row as read, -> ``written``; else (or no re-read) the outcome is unknown, said so."""
        try:
            table.submit_transaction(ops)
            return
        except (TypeError, ValueError) as exc:   # a value the SDK cannot encode, refused before sending
            raise StoreError(f"table storage write policies failed: a row could not be encoded "
                             f"({type(exc).__name__}: {str(exc)[:200]}); {written}") from exc
        except AzureError as exc:
            failure = exc
        outcome = _outcome(table, ops)
        if outcome == "written":
            emit(_log, logging.WARNING, "policy_sync_answer_lost",
                 detail=f"{type(failure).__name__} (status {getattr(failure, 'status_code', None)}) after the "
                        "transaction, but a re-read shows every change written")
            return
        err = _store_error("write policies", failure)
        if isinstance(failure, TableTransactionError):      # answered: the transaction was refused whole
            if failure.status_code in (409, 412):     # a row added, changed or removed since it was read
                raise _then(err, f": policy row '{_failed_key(failure, ops)}' changed after this sync read "
                                 f"the table (another sync, or an edit by hand); {written}") from failure
            raise _then(err, f"; {written}") from failure
        if outcome == "unchanged":
            raise _then(err, f"; {written}") from failure
        raise _then(err, "; the outcome is unknown (no answer, and a re-read of the policy table shows "
                         "neither the rows as this sync read them nor all its changes): check the table and "
                         "run the sync again (a sync of the same set is safe to repeat)") from failure


_MAX_DOCUMENT = 32_768      # a Table Storage string holds 32K UTF-16 characters: a longer one is no row a sync wrote
_MAX_DEPTH = 64             # a policy document nests about 8 deep; json.loads recurses once per level


def _parse_row(row: Mapping) -> tuple[dict | None, str | None]:
    """A policy row's document, or (None, why it is not trusted). Before parsing: its ``sha256``,
    length and nesting (``json.loads`` recurses per level: a hand-edited ``[[[[…`` raised
    RecursionError out of the load); then its RowKey is its id (``<id>@shadow`` for a shadow)."""
    text = row.get("document")
    if not isinstance(text, str):
        return None, "no document"
    if row.get("sha256") != _sha(text):
        return None, "document does not match its sha256"
    if len(text) > _MAX_DOCUMENT or _too_deep(text, _MAX_DEPTH):
        return None, f"document longer than {_MAX_DOCUMENT} characters or nested deeper than {_MAX_DEPTH} levels"
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None, "document is not JSON"
    pid = doc.get("id") if isinstance(doc, dict) else None
    key = f"{pid}@shadow" if isinstance(pid, str) and doc.get("mode") == "shadow" else pid
    if key != row.get("RowKey"):
        return None, "document does not match its row key"
    return doc, None


def _too_deep(text: str, limit: int) -> bool:
    """``text`` (JSON) opens more than ``limit`` arrays/objects inside each other. Brackets inside
    strings do not count; a document with fewer brackets than ``limit`` is not scanned at all."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for m in _BRACKETS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth -= 1
    return False


_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _outcome(table: TableClient, ops: list[tuple]) -> str:
    """After a failed transaction: ``written`` when the partition holds every change of ``ops``,
    ``unchanged`` when it holds every row as this sync read it, else (or unreadable) ``unknown``."""
    try:
        rows = {e["RowKey"]: e for e in table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": TablePolicyRepository.PARTITION})}
    except AzureError:
        return "unknown"
    applied = unchanged = True
    for op in ops:
        kind, entity = op[0], op[1]
        now = rows.get(entity["RowKey"])
        if kind == "delete":
            applied &= now is None
            unchanged &= now is not None and now.metadata.get("etag") == op[2]["etag"]
        else:
            applied &= now is not None and now.get("document") == entity.get("document") and \
                now.get("sha256") == entity.get("sha256") and \
                (kind == "create" or now.metadata.get("etag") != op[2]["etag"])
            unchanged &= (now is None) if kind == "create" else \
                (now is not None and now.metadata.get("etag") == op[2]["etag"])
    return "written" if applied else "unchanged" if unchanged else "unknown"


def _as_read(entity) -> dict:
    """Keyword arguments making a write conditional on ``entity``'s ETag as read."""
    return {"etag": entity.metadata["etag"], "match_condition": MatchConditions.IfNotModified}


def _failed_key(exc: TableTransactionError, ops: list[tuple]) -> str:
    """The RowKey of the operation Table Storage names as the one that failed, if it says."""
    index = getattr(exc, "index", None)
    if isinstance(index, int) and 0 <= index < len(ops):
        return str(ops[index][1].get("RowKey"))[:200]
    return "?"


def _then(err: StoreError, tail: str) -> StoreError:
    """``err`` with ``tail`` added to its message, keeping Table Storage's status (a caller such as
    ``metadata sync --wait-for-access`` tells a 403 from the rest by it)."""
    out = StoreError(f"{err}{tail}")
    out.status = err.status
    return out
