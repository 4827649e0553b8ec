"""Token buckets for ARM's request limits, with an injectable clock and sleep.

ARM throttles per subscription, per principal (and region) with token buckets: reads refill at
25/s with a bucket of 250, writes and deletes at 10/s with 200 (AZURE-FACTS.md). A sweep reads a
whole estate, so it must pace itself below that, or every event the guardrail handles in the same
subscription meanwhile would meet 429s. ``RateLimiter`` keeps one bucket per key (subscription id,
or ``"tenant"`` for management-group and tenant scopes) and blocks until a token is there.

A 429 is ARM saying our bucket is empty: ``RateLimiter.penalize(key, seconds)`` empties that key's
bucket and grants no token before ``Retry-After`` has passed, so every thread reading the same
subscription waits instead of collecting its own 429. The adapters' retry loop
(``adapters.retry.BudgetedCaller``) does not know the key; it reports the 429 through
``throttled(seconds)`` to whichever limiter and key the calling thread opened with
``RateLimiter.penalizing(key)`` around the call (``ThrottledArm`` / ``ThrottledAuthorization`` do).

Clock and sleep are injected: tests and the emulator share a fake clock that only moves when
somebody sleeps, so a 5,000-resource sweep "takes" minutes of simulated time and no real waiting.
"""

from __future__ import annotations

import contextvars
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Callable, ContextManager, Iterator

TENANT_KEY = "tenant"
# ARM's documented buckets per subscription per principal (AZURE-FACTS.md)
ARM_READS_PER_SECOND, ARM_READ_BURST = 25.0, 250.0
ARM_WRITES_PER_SECOND, ARM_WRITE_BURST = 10.0, 200.0


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``rate`` per second; starts full."""

    def __init__(self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a token bucket needs rate > 0 and capacity >= 1")
        self.rate, self.capacity = float(rate), float(capacity)
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock()
        self._closed_until = float("-inf")       # penalize(): no token before then
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def try_take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens now and return 0.0, or take nothing and return the seconds until
        ``n`` tokens will be there."""
        with self._lock:
            self._refill()
            closed = self._closed_until - self._clock()
            if closed > 0:
                return closed
            if self._tokens >= n - 1e-9:
                self._tokens -= n
                return 0.0
            return (n - self._tokens) / self.rate

    def penalize(self, seconds: float) -> None:
        """The service answered 429 with ``Retry-After: seconds``: its bucket is empty. Ours is
        emptied too and grants nothing for ``seconds`` (refilling at ``rate`` meanwhile, as
        ARM's does). A shorter penalty never cuts a longer one short."""
        with self._lock:
            self._refill()
            self._tokens = 0.0
            self._closed_until = max(self._closed_until, self._clock() + max(0.0, float(seconds)))

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens


class RateLimiter:
    """One bucket per key; ``acquire(key)`` blocks (through ``sleep``) until a token is taken.

    ``waited`` (seconds slept) and ``taken`` (tokens granted) are kept for the sweep summary and
    the benchmark."""

    def __init__(self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        TokenBucket(rate, capacity, clock=clock)     # validate once, early
        self.rate, self.capacity = rate, capacity
        self.clock, self._sleep = clock, sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self.taken = 0
        self.waited = 0.0
        self.penalties = 0    # 429s reported (penalize)

    def bucket(self, key: str) -> TokenBucket:
        key = (key or TENANT_KEY).lower()
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = self._buckets[key] = TokenBucket(self.rate, self.capacity, clock=self.clock)
            return found

    def acquire(self, key: str, *, until: float | None = None) -> None:
        """``until`` (a deadline on this limiter's ``clock``; the sweep's lister passes its run's,
        the paced gateways their caller's, moved onto this clock): a token that would come only
        after it (a bucket a 429's ``Retry-After`` closed) is not waited for: ``ArmThrottled`` at
        once."""
        bucket = self.bucket(key)
        while True:
            wait = bucket.try_take()
            if wait <= 0.0:
                with self._lock:
                    self.taken += 1
                return
            if until is not None and self.clock() + wait > until:
                from .errors import ArmThrottled
                raise ArmThrottled(f"no ARM token for {key[:80]} before the deadline (throttled; "
                                   f"{wait:.0f} s to wait)", status=429)
            with self._lock:
                self.waited += wait
            self._sleep(wait)

    def penalize(self, key: str, seconds: float) -> None:
        """No token for ``key`` for ``seconds`` (a 429's ``Retry-After``), for every thread."""
        self.bucket(key).penalize(seconds)
        with self._lock:
            self.penalties += 1

    @contextmanager
    def penalizing(self, key: str) -> Iterator[None]:
        """Within the block, a 429 that the calling thread's retry loop reports through
        ``throttled(seconds)`` penalizes ``key`` here (the innermost block wins)."""
        token = _ON_THROTTLE.set(lambda seconds: self.penalize(key, seconds))
        try:
            yield
        finally:
            _ON_THROTTLE.reset(token)


# who to tell about a 429 seen in this thread (context): set by RateLimiter.penalizing
_ON_THROTTLE: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar(
    "guardrails_on_throttle", default=None)


def throttled(seconds: float) -> None:
    """A 429 with ``Retry-After: seconds`` was answered: penalize the limiter and key of the
    innermost ``penalizing`` block around this call, if any (else nothing)."""
    hook = _ON_THROTTLE.get()
    if hook is not None:
        hook(seconds)


def _penalizing(limiter: RateLimiter | None, key: str) -> ContextManager[None]:
    return nullcontext() if limiter is None else limiter.penalizing(key)


def limit_key(resource_id: str) -> str:
    """The bucket of an ARM id or scope: its subscription, else the tenant."""
    parts = [p for p in resource_id.split("/") if p]
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1].lower()
    return TENANT_KEY


class FakeClock:
    """A monotonic clock that moves only when ``sleep`` is called (thread-safe). For tests and
    the emulator's throttle in tests: rate limits are proven without waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)


class _Paced:
    """Pacing shared by the gateways: a token of ``limiter`` for ``key`` before the call, never
    waited for past the call's ``deadline`` (on ``clock``, the caller's clock; moved onto the
    limiter's, which tests may fake independently): a bucket a 429 closed beyond it fails the call
    at once (``ArmThrottled``) instead of sleeping the Retry-After past the decision's budget."""

    def __init__(self, reads: RateLimiter, writes: RateLimiter | None, clock: Callable[[], float]) -> None:
        self.reads, self.writes, self._caller_clock = reads, writes, clock

    def _take(self, limiter: RateLimiter | None, key: str, deadline: float | None) -> None:
        if limiter is None:
            return
        until = None if deadline is None else limiter.clock() + (deadline - self._caller_clock())
        limiter.acquire(key, until=until)


class ThrottledArm(_Paced):
    """A ``ResourceGateway`` whose reads take a read token and writes a write token of the
    resource's subscription first. Used by the sweep's own service instance only: the event path
    keeps its time budget and is never held up by a sweep's pacing. ``clock``: the clock of the
    ``deadline`` its callers pass (the service's)."""

    def __init__(self, inner, reads: RateLimiter, writes: RateLimiter | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(reads, writes, clock)
        self.inner = inner

    @property
    def calls(self) -> int:
        return getattr(self.inner, "calls", 0)

    def get_resource(self, resource_id: str, **kw):
        key = limit_key(resource_id)
        self._take(self.reads, key, kw.get("deadline"))
        with self.reads.penalizing(key):
            return self.inner.get_resource(resource_id, **kw)

    def patch_resource(self, resource_id: str, body, **kw):
        key = limit_key(resource_id)
        self._take(self.writes, key, kw.get("deadline"))
        with _penalizing(self.writes, key):
            return self.inner.patch_resource(resource_id, body, **kw)

    def put_resource(self, resource_id: str, body, **kw):
        key = limit_key(resource_id)
        self._take(self.writes, key, kw.get("deadline"))
        with _penalizing(self.writes, key):
            return self.inner.put_resource(resource_id, body, **kw)


class ThrottledAuthorization(_Paced):
    """The role guardrail's ``AuthorizationGateway`` with the same pacing (reads: assignment,
    list at scope, custom role definition; delete: a write token) and deadlines."""

    def __init__(self, inner, reads: RateLimiter, writes: RateLimiter | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(reads, writes, clock)
        self.inner = inner

    def __getattr__(self, name: str):         # anything else (calls, caches) as the inner has it
        return getattr(self.inner, name)

    def get_assignment(self, assignment_id: str, **kw):
        key = limit_key(assignment_id)
        self._take(self.reads, key, kw.get("deadline"))
        with self.reads.penalizing(key):
            return self.inner.get_assignment(assignment_id, **kw)

    def list_assignments_at_scope(self, scope: str, **kw):
        key = limit_key(scope)
        self._take(self.reads, key, kw.get("deadline"))
        with self.reads.penalizing(key):
            return self.inner.list_assignments_at_scope(scope, **kw)

    def get_role_definition(self, role_definition_id: str, **kw):
        from .model.roles import BUILTIN_ROLES, role_guid
        key = limit_key(role_definition_id)
        if role_guid(role_definition_id) not in BUILTIN_ROLES:   # built-ins cost no call
            self._take(self.reads, key, kw.get("deadline"))
        with self.reads.penalizing(key):
            return self.inner.get_role_definition(role_definition_id, **kw)

    def delete_assignment(self, assignment_id: str, **kw):
        key = limit_key(assignment_id)
        self._take(self.writes, key, kw.get("deadline"))
        with _penalizing(self.writes, key):
            return self.inner.delete_assignment(assignment_id, **kw)
