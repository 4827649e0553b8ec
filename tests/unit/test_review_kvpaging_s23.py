"""A 429's ``Retry-After`` reaches the rate limiter: ``RateLimiter.penalize(key, seconds)`` holds
every thread reading that subscription, and ``BudgetedCaller`` reports the 429 to the limiter and
key of the ``penalizing`` block around the call (``ThrottledArm`` / ``ThrottledAuthorization``).
Fake clocks throughout: nothing waits."""

from __future__ import annotations

import threading

import pytest
from azure.core.exceptions import HttpResponseError

from guardrails.adapters.retry import BudgetedCaller
from guardrails.ratelimit import FakeClock, RateLimiter, ThrottledArm, ThrottledAuthorization, TokenBucket

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
OTHER = "0b7c2d4e-1f3a-4b5c-8d9e-6f7a8b9c0d1e"
RID = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"


class _Answer:
    reason, content_type = "Too Many Requests", "application/json"

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code, self.headers = status, headers

    def text(self, encoding=None) -> str:
        return '{"error": {"code": "TooManyRequests", "message": "Too many requests."}}'

    def body(self) -> bytes:
        return self.text().encode()


def _refusal(status: int = 429, retry_after: str | None = "5") -> HttpResponseError:
    return HttpResponseError(response=_Answer(status, {"Retry-After": retry_after} if retry_after else {}))


def _caller() -> BudgetedCaller:
    """Its own clock and a sleep that only records: the limiter's clock moves only when it waits."""
    own = FakeClock(0.0)
    return BudgetedCaller(timeout=5.0, sleep=own.sleep, clock=own)


def _flaky(*refusals: HttpResponseError):
    left = list(refusals)

    def fn():
        if left:
            raise left.pop(0)
        return "ok"
    return fn


def _limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(25, 250, clock=clock, sleep=clock.sleep)


# ---- the limiter ------------------------------------------------------------------------

def test_penalize_grants_no_token_for_the_key_until_retry_after_has_passed():
    clock = FakeClock(0.0)
    lim = _limiter(clock)
    lim.penalize(SUB, 7.0)
    lim.acquire(OTHER)                      # another subscription's bucket is untouched
    assert clock() == 0.0
    lim.acquire(SUB)
    assert clock() == pytest.approx(7.0) and lim.waited == pytest.approx(7.0)
    assert lim.penalties == 1 and lim.taken == 2


def test_a_penalized_bucket_restarts_empty_and_a_shorter_penalty_never_cuts_a_longer_one():
    clock = FakeClock(0.0)
    bucket = TokenBucket(10, 100, clock=clock)
    bucket.penalize(4.0)
    bucket.penalize(1.0)
    assert bucket.try_take() == pytest.approx(4.0)
    clock.sleep(4.0)
    assert bucket.tokens == pytest.approx(40.0)    # refilled at the rate from empty, not full
    assert bucket.try_take() == 0.0


# ---- the retry loop tells the limiter ---------------------------------------------------

def test_a_429_with_retry_after_inside_penalizing_holds_the_key_for_everyone():
    clock = FakeClock(0.0)
    lim = _limiter(clock)
    with lim.penalizing(SUB):
        assert _caller().call(_flaky(_refusal(retry_after="5")), deadline=100.0, what="GET x") == "ok"
    assert lim.penalties == 1
    lim.acquire(SUB)                        # another thread reading the same subscription
    assert clock() == pytest.approx(5.0)


def test_only_a_429_with_retry_after_and_only_inside_a_block_is_reported():
    clock = FakeClock(0.0)
    lim = _limiter(clock)
    with lim.penalizing(SUB):
        _caller().call(_flaky(_refusal(503, "5"), _refusal(429, None)), deadline=100.0, what="GET x")
    _caller().call(_flaky(_refusal(429, "5")), deadline=100.0, what="GET x")   # no block: nobody to tell
    assert lim.penalties == 0


def test_a_block_in_one_thread_does_not_catch_another_threads_429():
    lim = _limiter(FakeClock(0.0))
    done = threading.Event()

    def other():
        _caller().call(_flaky(_refusal()), deadline=100.0, what="GET y")
        done.set()
    with lim.penalizing(SUB):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert done.is_set() and lim.penalties == 0


def test_a_429_that_exhausts_the_budget_still_penalizes():
    from guardrails.errors import ArmThrottled
    lim = _limiter(FakeClock(0.0))
    with lim.penalizing(SUB), pytest.raises(ArmThrottled):
        _caller().call(_flaky(_refusal(retry_after="30")), deadline=10.0, what="GET x")
    assert lim.bucket(SUB).try_take() == pytest.approx(30.0)


# ---- the throttled gateways open the block for the id's subscription ------------------

class _Arm:
    def __init__(self) -> None:
        self.caller = _caller()

    def get_resource(self, resource_id, **kw):
        return self.caller.call(_flaky(_refusal(retry_after="5")), deadline=100.0, what="GET")

    def patch_resource(self, resource_id, body, **kw):
        return self.caller.call(_flaky(_refusal(retry_after="9")), deadline=100.0, what="PATCH")

    put_resource = patch_resource

    def get_assignment(self, assignment_id, **kw):
        return self.get_resource(assignment_id)

    list_assignments_at_scope = get_assignment
    get_role_definition = get_assignment

    def delete_assignment(self, assignment_id, **kw):
        return self.patch_resource(assignment_id, None)


def test_throttled_arm_reads_penalize_the_read_bucket_of_the_subscription():
    clock = FakeClock(0.0)
    reads, writes = _limiter(clock), _limiter(clock)
    ThrottledArm(_Arm(), reads, writes).get_resource(RID)
    assert reads.bucket(SUB).try_take() == pytest.approx(5.0)
    assert reads.bucket(OTHER).try_take() == 0.0 and writes.penalties == 0


def test_throttled_arm_writes_penalize_the_write_bucket_only():
    clock = FakeClock(0.0)
    reads, writes = _limiter(clock), _limiter(clock)
    arm = ThrottledArm(_Arm(), reads, writes)
    arm.patch_resource(RID, {})
    arm.put_resource(RID, {})
    assert writes.bucket(SUB).try_take() == pytest.approx(9.0) and writes.penalties == 2
    assert reads.penalties == 0
    ThrottledArm(_Arm(), reads, None).patch_resource(RID, {})     # no write limiter: nothing to tell
    assert reads.penalties == 0


def test_throttled_authorization_penalizes_per_subscription():
    clock = FakeClock(0.0)
    reads, writes = _limiter(clock), _limiter(clock)
    authz = ThrottledAuthorization(_Arm(), reads, writes)
    aid = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/a1"
    authz.get_assignment(aid)
    authz.list_assignments_at_scope(f"/subscriptions/{SUB}")
    authz.get_role_definition(f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/9b2e4f1a-3c5d-4e6f-8a7b-1c2d3e4f5a6b")
    authz.delete_assignment(aid)
    assert reads.penalties == 3 and writes.penalties == 1
    assert reads.bucket(SUB).try_take() == pytest.approx(5.0)


def test_a_token_that_comes_only_after_the_callers_deadline_is_not_waited_for():
    """A penalized bucket (Retry-After 55 s) and a sweep page with 5 s left: the lister's acquire
    fails at once instead of sleeping past its run's deadline (the run then writes its summary)."""
    from guardrails.errors import ArmThrottled
    from guardrails.ratelimit import FakeClock, RateLimiter

    clock = FakeClock()
    limiter = RateLimiter(25, 25, clock=clock, sleep=clock.sleep)
    limiter.penalize("sub-a", 55)
    t0 = clock()
    with pytest.raises(ArmThrottled):
        limiter.acquire("sub-a", until=t0 + 5)
    assert clock() == t0                                     # nothing slept
    limiter.acquire("sub-b", until=t0 + 5)                   # another subscription is not held
    limiter.acquire("sub-a")                                 # no deadline: waits the penalty out
    assert clock() - t0 >= 55
