"""Token buckets on an injected clock: ARM's read budget without waiting."""

from __future__ import annotations

import threading

import pytest

from guardrails.ratelimit import FakeClock, RateLimiter, TokenBucket, limit_key

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"


def test_bucket_starts_full_then_refills_at_the_rate_up_to_capacity():
    clock = FakeClock()
    b = TokenBucket(25, 250, clock=clock)
    assert all(b.try_take() == 0.0 for _ in range(250))
    assert b.try_take() == pytest.approx(1 / 25)          # empty: one token in 40 ms
    clock.sleep(2.0)
    assert b.tokens == pytest.approx(50)
    clock.sleep(3600)
    assert b.tokens == 250                                  # never above capacity


def test_limiter_paces_to_the_rate_after_the_burst():
    clock = FakeClock(0.0)
    lim = RateLimiter(25, 250, clock=clock, sleep=clock.sleep)
    for _ in range(1250):
        lim.acquire(SUB)
    # 250 at once, then 1,000 more at 25/s: 40 s of (simulated) time, no more
    assert clock() == pytest.approx(40.0)
    assert lim.taken == 1250 and lim.waited == pytest.approx(40.0)


def test_buckets_are_per_subscription_and_the_tenant_has_its_own():
    clock = FakeClock(0.0)
    lim = RateLimiter(1, 2, clock=clock, sleep=clock.sleep)
    for key in (SUB, SUB, "0b7c2d4e-1f3a-4b5c-8d9e-6f7a8b9c0d1e", "tenant", "tenant"):
        lim.acquire(key)
    assert clock() == 0.0 and lim.waited == 0.0
    lim.acquire(SUB.upper())                               # same bucket, case-insensitive
    assert clock() == pytest.approx(1.0)


def test_limit_key_of_ids_and_scopes():
    assert limit_key(f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a") == SUB
    assert limit_key(f"/SUBSCRIPTIONS/{SUB.upper()}") == SUB
    assert limit_key("/providers/Microsoft.Management/managementGroups/mg") == "tenant"
    assert limit_key("/") == "tenant"


def test_threads_together_never_exceed_the_budget():
    clock = FakeClock(0.0)
    lim = RateLimiter(25, 25, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []
    lock = threading.Lock()

    def work():
        for _ in range(100):
            lim.acquire(SUB)
            with lock:
                stamps.append(clock())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert len(stamps) == 400
    # in any window from the start, at most burst + rate * elapsed tokens were granted
    for i, t in enumerate(stamps):
        assert i + 1 <= 25 + 25 * t + 1e-6


def test_invalid_buckets_are_refused():
    with pytest.raises(ValueError):
        TokenBucket(0, 10)
    with pytest.raises(ValueError):
        RateLimiter(25, 0.5)
