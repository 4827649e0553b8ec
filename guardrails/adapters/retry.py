"""Retries bounded by the delivery's time budget, shared by every Azure adapter.

429 and 5xx are retried with backoff that honours ``Retry-After``, but only while the next wait
still fits before the deadline; otherwise the caller gets ``ArmThrottled`` / ``ArmTransient``
at once, the delivery is audited ``failed`` and Event Grid redelivers later. The SDK clients run
with ``retry_total=0`` so this is the only retry loop.

A 429's ``Retry-After`` is also reported (``ratelimit.throttled``) to the rate limiter and key the
caller opened with ``RateLimiter.penalizing(key)`` around the call, so other threads pacing on
that key wait too instead of each collecting its own 429; without such a block nothing is told.
That penalty is bounded by the caller's remaining budget, or ``MAX_RETRY_AFTER`` when that is
longer (a Retry-After past a short budget still holds the other threads back): a huge one
(``1e300``) would close the key for the life of the process, or put a thread without a deadline to
sleep for ever (``time.sleep`` raises ``OverflowError`` on it). The call itself never waits past its
budget. A ``Retry-After`` that is no finite number (``inf``, ``nan``) is taken as absent: the
backoff is waited.

An answer lost on the way is transient too: no answer at all (``ServiceResponseError``: a read
timeout, a connection dropped before the status line) or an answer cut off mid-body (an
``HttpResponseError`` without a status: ``IncompleteReadError``). Both mean the request may have
been carried out; sending it again is safe for reads and idempotent writes. A caller whose write
is not (a conditional PUT whose ``If-Match`` the first attempt may have used up) learns about the
loss from ``lost_answer`` and decides what a later refusal means (``adapters.arm``).

The guardrails' own identity failing to get a token (a ``ClientAuthenticationError`` without a
status, raised by the credential before anything is sent) is neither: it is no lost answer. Under
``DefaultAzureCredential`` it cannot tell a misconfigured identity (no managed identity, a
federated credential refused) from its token endpoint not answering: the chain raises a new error
without the status, and Functions' managed identity reports an endpoint answering 5xx as
"unavailable". azure-identity has retried the endpoint already, so the token is asked for once more
(when the budget has room for the wait), then the call ends in an ``ArmError`` with the reason
``unauthenticated``, as a 401 from the service does (``errors.refusal_reason``). Its ``attempts``
count only requests sent.
"""

from __future__ import annotations

import math
import random
import re
import time
from typing import Callable, TypeVar

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceNotFoundError,
                                   ServiceRequestError, ServiceResponseError)

from ..errors import UNAUTHENTICATED, ArmError, ArmThrottled, ArmTransient, ResourceNotFound, refusal_reason
from ..ratelimit import throttled

T = TypeVar("T")
MAX_BACKOFF = 8.0
# the longest a 429's Retry-After holds the limiter's key back beyond the caller's own budget: ARM's
# and Key Vault's are seconds, and one past the budget fails the call at once anyway
MAX_RETRY_AFTER = 300.0


def retry_after(exc: HttpResponseError) -> float | None:
    resp = getattr(exc, "response", None)
    if resp is None:
        return None
    return retry_after_header(resp.headers)


def retry_after_header(headers) -> float | None:
    """``Retry-After`` in seconds (a non-negative number), else None. ``inf`` / ``nan`` (which
    ``float`` accepts) say nothing of when to come back: None, as an absent header (a ``nan``
    compared with a deadline is never past it, an ``inf`` always is). A huge finite one is the
    caller's to bound (``BudgetedCaller``: by its remaining budget)."""
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def lost_answer(exc: BaseException) -> bool:
    """Whether the request may have reached Azure although no (whole) answer came back: a
    ``ServiceResponseError`` (sent, then a read timeout or a dropped connection) or an
    ``HttpResponseError`` without a status (the body broke off: ``IncompleteReadError``).
    A ``ServiceRequestError`` means the request never left, and so does a
    ``ClientAuthenticationError`` without a status (the credential gave no token: nothing was sent,
    or only a request the service refused 401 to challenge it)."""
    if isinstance(exc, ServiceResponseError):
        return True
    return (isinstance(exc, HttpResponseError) and exc.status_code is None
            and not isinstance(exc, ClientAuthenticationError))


def credential_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the guardrails' credential failing to give a token (nothing was sent): a
    ``ClientAuthenticationError`` that is not the service's 401 nor a 429 / 5xx (retried like any
    other; only a credential used on its own, not a ``DefaultAzureCredential``, keeps one)."""
    if not isinstance(exc, ClientAuthenticationError):
        return False
    status = exc.status_code
    return status is None or not (status in (401, 429) or status >= 500)


_AADSTS = re.compile(r"\bAADSTS\d{4,6}\b")


def no_token_text(exc: ClientAuthenticationError) -> str:
    """What to say of a credential that gave no token. The identity platform's text is not
    copied (it names tenants, clients, subjects and trace ids); its ``AADSTS`` error code, which
    says what to fix, is."""
    code = _AADSTS.search(str(getattr(exc, "message", "") or exc))
    return (f"the guardrails' identity got no token ({type(exc).__name__}{', ' + code.group(0) if code else ''}): "
            "the identity or its federation misconfigured, or its token endpoint not answering; nothing was sent")


def no_token(exc: ClientAuthenticationError, what: str) -> ArmError:
    """The ``ArmError`` for a credential that gave no token: ``unauthenticated``, no status (the
    identity platform's is not the service's), no request sent."""
    err = ArmError(f"{what}: {no_token_text(exc)}", reason=UNAUTHENTICATED)
    err.attempts = 0
    return err


def error_code(exc: HttpResponseError) -> str | None:
    """The ``error.code`` of Azure's answer, when it names one."""
    code = getattr(getattr(exc, "error", None), "code", None)
    return str(code) if code else None


def describe(exc: HttpResponseError) -> str:
    code = error_code(exc)
    return f"answered {exc.status_code or 0}{' ' + code if code else ''}"


class BudgetedCaller:
    def __init__(self, *, timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock
        self.calls = 0        # requests sent (for benchmarks and tests)

    def timeout_for(self, deadline: float | None) -> float:
        if deadline is None:
            return self.timeout
        return max(0.5, min(self.timeout, deadline - self.clock()))

    def _backoff(self, attempt: int) -> float:
        return min(MAX_BACKOFF, 0.25 * (2 ** (attempt - 1))) * (0.5 + random.random() / 2)

    def call(self, fn: Callable[[], T], *, deadline: float | None, what: str,
             answers: list[int | None] | None = None) -> T:
        """``fn`` until it answers, retried on throttling, 5xx and lost connections within
        ``deadline``. The ``ArmError`` it ends with says how many requests were sent (``attempts``;
        an attempt that got no token sent none) and what each was answered (``answers``: its
        status, None for no whole answer or a connection that failed): a refusal after a retry may
        follow an attempt that was applied, unless every attempt was refused
        (``refused_outright``). A caller that passes its own ``answers`` list also learns, when
        ``fn`` finally answers, what the attempts before were answered (a retried DELETE that
        finds nothing to delete: ``adapters.authorization``)."""
        state = [0, 0]         # attempts made, attempts that got no token
        answers = [] if answers is None else answers
        try:
            return self._call(fn, deadline=deadline, what=what, state=state, answers=answers)
        except ArmError as exc:
            exc.attempts = state[0] - state[1]
            exc.answers = tuple(answers)
            raise

    def _budget_left(self, deadline: float | None) -> float:
        """Seconds until ``deadline`` (none left, or no deadline: 0)."""
        return 0.0 if deadline is None else max(0.0, deadline - self.clock())

    def _call(self, fn: Callable[[], T], *, deadline: float | None, what: str, state: list[int],
              answers: list[int | None]) -> T:
        attempt = 0
        while True:
            attempt += 1
            state[0] = attempt
            self.calls += 1
            try:
                return fn()
            except ResourceNotFoundError as exc:
                answers.append(404)
                raise ResourceNotFound(f"{what}: not found", status=404) from exc
            except HttpResponseError as exc:
                if credential_failure(exc):
                    state[1] += 1
                    self.calls -= 1                  # nothing was sent
                    wait = self._backoff(1)
                    if state[1] > 1 or deadline is None or self.clock() + wait >= deadline:
                        raise no_token(exc, what) from exc
                    self.sleep(wait)                 # once more: the token endpoint may have blinked
                    continue
                status = exc.status_code
                answers.append(status)
                if status is None:
                    # no status: the answer broke off mid-body (IncompleteReadError), never a refusal
                    wait = self._backoff(attempt)
                    if deadline is None or self.clock() + wait >= deadline:
                        raise ArmTransient(f"{what}: answer cut off ({type(exc).__name__}); retry budget "
                                           f"exhausted after {attempt} attempt(s)") from exc
                    self.sleep(wait)
                    continue
                if status == 429 or status >= 500:
                    wait = retry_after(exc)
                    if wait is not None:
                        # one past the budget fails the call at once below whatever its size; the
                        # limiter is told at most the budget left, or MAX_RETRY_AFTER when longer
                        wait = min(wait, max(MAX_RETRY_AFTER, self._budget_left(deadline)))
                    if status == 429 and wait is not None:
                        throttled(wait)         # the caller's limiter holds every thread on that key
                    if wait is None:
                        wait = self._backoff(attempt)
                    kind = ArmThrottled if status == 429 else ArmTransient
                    if deadline is None or self.clock() + wait >= deadline:
                        raise kind(f"{what}: {describe(exc)}; retry budget exhausted after {attempt} attempt(s)",
                                   status=status) from exc
                    self.sleep(wait)
                    continue
                if status == 404:
                    raise ResourceNotFound(f"{what}: not found", status=404) from exc
                raise ArmError(f"{what}: {describe(exc)}", status=status,
                               reason=refusal_reason(status, error_code(exc))) from exc
            except (ServiceRequestError, ServiceResponseError) as exc:
                answers.append(None)
                wait = self._backoff(attempt)
                if deadline is None or self.clock() + wait >= deadline:
                    raise ArmTransient(f"{what}: connection failed ({type(exc).__name__})") from exc
                self.sleep(wait)
