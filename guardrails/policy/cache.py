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


class PolicyCache:
    def __init__(self, repo: PolicyRepository, *, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._repo = repo
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._value: CompiledPolicySet | None = None
        self._loaded_at = float("-inf")
        self._last_good: dict[str, Policy] = {}     # row key -> the last version that validated
        self.loads = 0

    def invalidate(self) -> None:
        with self._lock:
            self._value = None

    def get(self) -> CompiledPolicySet:
        now = self._clock()
        with self._lock:
            if self._value is not None and now - self._loaded_at < self._ttl:
                return self._value
        policies: list[Policy] = []
        good: dict[str, Policy] = {}
        unreadable: list[str] = []
        for source, doc in self._repo.list_documents():
            try:
                policy = Policy.from_document(doc, source=source)
            except (PolicyError, ValueError, TypeError, RecursionError) as exc:
                # a row that fails validation was not written by `metadata sync`: never trust it
                key = _row_key(source)
                kept = self._last_good.get(key)
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
            self._last_good = good
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
            self._value, self._loaded_at = compiled, now
            self.loads += 1
        return compiled


def _row_key(source: str) -> str:
    """The row a policy came from (``table:<name>/<row key>``; a repository's own label else)."""
    return source.rsplit("/", 1)[-1].lower()
