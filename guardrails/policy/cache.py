"""Policies as the worker sees them: read from Table Storage, never from files, through a
short TTL cache so an admin's change takes effect within the TTL without a restart."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ..errors import PolicyError
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
        for source, doc in self._repo.list_documents():
            try:
                policies.append(Policy.from_document(doc, source=source))
            except (PolicyError, ValueError, TypeError, RecursionError) as exc:
                # a row that fails validation was not written by `metadata sync`: never trust it
                emit(log, logging.ERROR, "policy_row_rejected", source=source, error=str(exc)[:500])
        if not policies:
            # a wrong table prefix, a sync never run: every event would be ``ignored`` (no_policy)
            emit(log, logging.WARNING, "policy_set_empty",
                 detail="no policy in force: every event is ignored until `metadata sync` runs")
        compiled = compile_policies(policies)
        with self._lock:
            self._value, self._loaded_at = compiled, now
            self.loads += 1
        return compiled
