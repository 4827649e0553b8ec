"""Policies as the worker sees them: read from Table Storage, never from files, through a
short TTL cache so an admin's change takes effect within the TTL without a restart.

A worker decides only on a policy set exactly as one ``metadata sync`` wrote it. A load in which
any row does not validate (edited by hand, a corrupt document, a schema this code does not know
during a rolling deploy), or whose set does not compile, is never used, and its bad rows are not
dropped either (dropping one would switch its policy off), nor replaced by their earlier versions
(policy A retired and its rule moved into B v2: B v1 beside A v2 is a set nobody synced, in which
nobody enforces the rule). The worker keeps the WHOLE set of its last good load and says so
(ERROR ``policy_row_rejected`` per row, ``policy_set_kept``); with none, ``get`` raises
``PolicyUnreadable`` and the event is audited ``failed`` (reason ``policy_unreadable``) and
redelivered until ``metadata sync`` rewrites the rows. A row deleted from the table is gone in the
next good load: an admin's removal takes effect."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ..errors import PolicyError, PolicyUnreadable
from ..logs import emit
from ..model.policy import AnyPolicy, Policy
from ..ports import PolicyRepository
from .evaluate import CompiledPolicySet, compile_policies

log = logging.getLogger("guardrails.policy")


class _Load:
    """One reload in flight: its ticket (loads are numbered as they start), the generation it
    started in, when it started (its set's age counts from then) and its outcome once ``done``
    is set (the compiled set or the error raised)."""

    def __init__(self, ticket: int, generation: int, started: float) -> None:
        self.ticket, self.generation, self.started = ticket, generation, started
        self.done = threading.Event()
        self.value: CompiledPolicySet | None = None
        self.error: Exception | None = None


class PolicyCache:
    """The compiled policy set, reloaded once its TTL has passed.

    Reloads are single-flight: when the cache is stale, one caller reads the table and every
    caller that arrives meanwhile waits for that read and gets its outcome, the set or the error
    (``PolicyUnreadable`` included), as if it had made the read itself; nobody decides on the
    expired set. Loads are numbered as they start and a set is installed only if no load that
    started later has been installed already, so a slow read of the table as it was can never
    replace a newer set (an admin's switch to ``audit`` undone). ``invalidate`` also discards the
    answer of a load already in flight: a caller after it waits for a load started after it.
    ``loads`` counts the loads that produced a set."""

    def __init__(self, repo: PolicyRepository, *, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._repo = repo
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._value: CompiledPolicySet | None = None
        self._loaded_at = float("-inf")
        self._last_good: CompiledPolicySet | None = None   # the set of the last load that was whole
        self._generation = 0                        # bumped by invalidate
        self._tickets = 0                           # loads started
        self._installed = 0                         # ticket of the load whose set is in ``_value``
        self._good_from = 0                         # ticket of the load ``_last_good`` comes from
        self._inflight: _Load | None = None
        self.loads = 0

    def invalidate(self) -> None:
        with self._lock:
            self._value = None
            self._generation += 1

    def get(self) -> CompiledPolicySet:
        while True:
            now = self._clock()
            with self._lock:
                if self._value is not None and now - self._loaded_at < self._ttl:
                    return self._value
                load = self._inflight
                leader = load is None or load.generation != self._generation
                if leader:
                    self._tickets += 1
                    load = self._inflight = _Load(self._tickets, self._generation, now)
            if leader:
                return self._lead(load)
            load.done.wait()
            if load.error is not None:
                raise load.error
            if load.value is not None:
                return load.value
            # the leader was stopped by something that is no error of the load: try again

    def _lead(self, load: _Load) -> CompiledPolicySet:
        try:
            compiled = self._load(load)
        except Exception as exc:
            load.error = exc
            raise
        finally:
            with self._lock:
                if self._inflight is load:
                    self._inflight = None
            load.done.set()
        return compiled

    def _load(self, load: _Load) -> CompiledPolicySet:
        policies: list[AnyPolicy] = []
        rejected: list[str] = []
        for source, doc in self._repo.list_documents():
            try:
                policies.append(Policy.from_document(doc, source=source))
            except (PolicyError, ValueError, TypeError, RecursionError) as exc:
                # a row that fails validation was not written by `metadata sync`: never trust it
                with self._lock:
                    kept = self._last_good
                same = [p.ref for p in (kept.all_policies if kept is not None else ()) if p.source == source]
                emit(log, logging.ERROR, "policy_row_rejected", source=source, error=str(exc)[:500],
                     kept=same[0] if same else None)
                rejected.append(source)
        compiled: CompiledPolicySet | None = None
        if rejected:
            problem = (f"{len(rejected)} policy row(s) do not validate ({', '.join(rejected[:5])})")
        else:
            if not policies:
                # a repository that holds nothing (the table's own adapter refuses an empty partition)
                emit(log, logging.WARNING, "policy_set_empty",
                     detail="no policy in force: every event is ignored until `metadata sync` runs")
            try:
                compiled = compile_policies(policies)
            except Exception as exc:        # noqa: BLE001 — not swallowed: the set is refused, said, audited
                # a set that validates row by row but does not compile (e.g. a generated check too
                # deeply nested): crashing here would fail every event of every kind unaudited
                problem = f"the policy set does not compile ({type(exc).__name__}: {str(exc)[:200]})"
                emit(log, logging.ERROR, "policy_set_uncompilable", error=problem)
        if compiled is None:
            with self._lock:
                kept = self._last_good
            if kept is None:
                raise PolicyUnreadable(
                    f"{problem} and this worker has no earlier policy set: no decision until "
                    "`metadata sync` rewrites them")
            # never a mix of rows from different loads: the whole set of the last good load
            emit(log, logging.ERROR, "policy_set_kept", error=problem,
                 kept=", ".join(p.ref for p in kept.all_policies)[:1000])
            compiled = kept
        else:
            with self._lock:
                if load.ticket > self._good_from:       # an older read never replaces a newer one
                    self._last_good, self._good_from = compiled, load.ticket
        with self._lock:
            self.loads += 1
            if load.generation == self._generation and load.ticket > self._installed:
                self._value, self._loaded_at, self._installed = compiled, load.started, load.ticket
        load.value = compiled
        return compiled
