"""One rotation of a secret at a time, across workers and the sweep.

The event path and the sweep run in different service instances (each its own in-process locks),
and Key Vault's 30-day warning and the sweep's rotation lead coincide: without a shared claim both
read the same current version and both rotate it (with ``storage-account-key`` both regenerate the
same account key, so the version the first one stored holds a key that no longer works).

The lease is a record in the idempotency store under ``rotate:<vault>/<name>``: acquired before the
current version is read, always released (never completed) after. A lease held by another live
holder raises ``IdempotencyError`` (the event path lets it propagate: Event Grid redelivers; the
sweep skips the secret this run); one whose holder died is taken over once it is stale.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from ..errors import IdempotencyError, StoreError
from ..logs import emit

log = logging.getLogger("guardrails")


def lease_key(vault: str, name: str, kind: str = "rotate") -> str:
    return f"{kind}:{vault.lower()}/{name.lower()}"


WAIT_STEP_SECONDS = 0.25


@contextmanager
def rotation_lease(idempotency, vault: str, name: str, *, holder: str, kind: str = "rotate",
                   wait_until: float | None = None, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold the lease on ``vault``/``name`` for the body. Raises IdempotencyError (held by another)
    or StoreError (the store is unavailable) before the body runs; a release the store refuses is
    logged, and the lease then lapses at its expiry. ``wait_until`` (a ``clock`` time): while
    another holds it, try again every ``WAIT_STEP_SECONDS`` until then (a rotation takes about a
    second: an exposure reported during the sweep's routine rotation of the same secret waits for
    it and answers, instead of a 503 nobody may retry)."""
    key = lease_key(vault, name, kind)
    while True:
        try:
            claim = idempotency.acquire(key, holder=holder)
            break
        except IdempotencyError:
            if wait_until is None or clock() + WAIT_STEP_SECONDS > wait_until:
                raise
            sleep(WAIT_STEP_SECONDS)
    if claim.previous_holder:
        emit(log, logging.WARNING, "guardrail_rotation_lease_taken_over", vault=vault, object=name,
             previous_holder=claim.previous_holder[:64])
    try:
        yield
    finally:
        if claim.state == "acquired":        # never completed, so never anything else; defensive
            try:
                idempotency.release(key, claim)
            except StoreError as exc:
                emit(log, logging.WARNING, "guardrail_rotation_lease_not_released", vault=vault, object=name,
                     error=str(exc)[:200])
