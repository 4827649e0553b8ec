"""Policies as the worker sees them: read from Table Storage, never from files, through a
short TTL cache so an admin's change takes effect within the TTL without a restart.

A row that does not validate (edited by hand, a corrupt document, a schema this code does not
know during a rolling deploy) is never trusted, and never silently dropped either: dropping it
would switch its policy off (every event of its types ``ignored``/``no_policy``). The worker keeps
the last good version of that policy it loaded and says so; with none, ``get`` raises
``PolicyUnreadable`` and the event is audited ``failed`` (reason ``policy_unreadable``) and
redelivered until ``metadata sync`` rewrites the row. A row deleted from the table is gone: an
admin's removal takes effect."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ..errors import PolicyError, PolicyUnreadable
from ..logs import emit
from ..model.policy import Policy
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
        self._last_good: dict[str, Policy] = {}     # row key -> the last version that validated
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
        last_good = self._last_good
        policies: list[Policy] = []
        good: dict[str, Policy] = {}
        unreadable: list[str] = []
        for source, doc in self._repo.list_documents():
            try:
                policy = Policy.from_document(doc, source=source)
            except (PolicyError, ValueError, TypeError, RecursionError) as exc:
                # a row that fails validation was not written by `metadata sync`: never trust it
                key = _row_key(source)
                kept = last_good.get(key)
                emit(log, logging.ERROR, "policy_row_rejected", source=source, error=str(exc)[:500],
                     kept=kept.ref if kept is not None else None)
                if kept is None:
                    unreadable.append(source)
                else:
                    policies.append(kept)
                    good[key] = kept
                continue
            policies.append(policy)
            good[_row_key(source)] = policy
        with self._lock:
            if load.ticket > self._good_from:           # an older read never replaces a newer one
                self._last_good, self._good_from = good, load.ticket
        if unreadable:
            raise PolicyUnreadable(
                f"{len(unreadable)} policy row(s) do not validate and this worker has no earlier version "
                f"of them ({', '.join(unreadable[:5])}): no decision until `metadata sync` rewrites them")
        if not policies:
            # a wrong table prefix, a sync never run: every event would be ``ignored`` (no_policy)
            emit(log, logging.WARNING, "policy_set_empty",
                 detail="no policy in force: every event is ignored until `metadata sync` runs")
        compiled = compile_policies(policies)
        with self._lock:
            self.loads += 1
            if load.generation == self._generation and load.ticket > self._installed:
                self._value, self._loaded_at, self._installed = compiled, load.started, load.ticket
        load.value = compiled
        return compiled


def _row_key(source: str) -> str:
    """The row a policy came from (``table:<name>/<row key>``; a repository's own label else)."""
    return source.rsplit("/", 1)[-1].lower()
