"""The sweep's paced gateways (``ThrottledArm`` / ``ThrottledAuthorization``) never wait for a token
past the deadline their caller passes: a subscription's bucket closed by a 429's Retry-After beyond
it fails the call at once (``ArmThrottled``). The caller's deadline is on the service's clock, the
limiter's on its own (tests fake them independently): the remaining time is what carries over."""

from __future__ import annotations

import pytest

from guardrails.errors import ArmThrottled
from guardrails.ratelimit import FakeClock, RateLimiter, ThrottledArm, ThrottledAuthorization

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
RID = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"
AID = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/a1"
CUSTOM = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/9b2e4f1a-3c5d-4e6f-8a7b-1c2d3e4f5a6b"


class _Inner:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def _note(self, what: str):
        self.sent.append(what)
        return what

    def get_resource(self, rid, **kw):
        return self._note("GET")

    def patch_resource(self, rid, body, **kw):
        return self._note("PATCH")

    def put_resource(self, rid, body, **kw):
        return self._note("PUT")

    def get_assignment(self, aid, **kw):
        return self._note("GET assignment")

    def list_assignments_at_scope(self, scope, **kw):
        return self._note("LIST")

    def get_role_definition(self, rdid, **kw):
        return self._note("GET definition")

    def delete_assignment(self, aid, **kw):
        return self._note("DELETE")


def _limiters():
    limiter_clock = FakeClock(50_000.0)       # far from the caller's: only the remaining time carries
    reads = RateLimiter(25, 25, clock=limiter_clock, sleep=limiter_clock.sleep)
    writes = RateLimiter(10, 10, clock=limiter_clock, sleep=limiter_clock.sleep)
    return limiter_clock, reads, writes


def _paced(caller_start: float):
    """Both paced gateways over one inner gateway, limiters on their own clock, the caller on its."""
    limiter_clock, reads, writes = _limiters()
    caller_clock = FakeClock(caller_start)
    inner = _Inner()
    return (limiter_clock, reads, writes, caller_clock, inner,
            ThrottledArm(inner, reads, writes, clock=caller_clock),
            ThrottledAuthorization(inner, reads, writes, clock=caller_clock))


@pytest.mark.parametrize("call", [
    lambda arm, authz, d: arm.get_resource(RID, api_version="2023-05-01", deadline=d),
    lambda arm, authz, d: authz.get_assignment(AID, deadline=d),
    lambda arm, authz, d: authz.list_assignments_at_scope(f"/subscriptions/{SUB}", deadline=d),
    lambda arm, authz, d: authz.get_role_definition(CUSTOM, deadline=d),
], ids=["arm read", "assignment read", "list at scope", "custom role read"])
def test_a_read_whose_bucket_reopens_only_after_the_deadline_fails_at_once(call):
    limiter_clock, reads, writes, caller_clock, inner, arm, authz = _paced(100.0)
    reads.penalize(SUB, 55)                   # a 429 with Retry-After: 55 on this subscription

    with pytest.raises(ArmThrottled) as raised:
        call(arm, authz, caller_clock() + 5)  # 5 s of the decision's budget left

    assert raised.value.status == 429
    assert limiter_clock() == 50_000.0 and inner.sent == []    # nothing slept, nothing sent
    call(arm, authz, caller_clock() + 60)     # 60 s left: the penalty is waited out, the call made
    assert limiter_clock() >= 50_055.0 and len(inner.sent) == 1


@pytest.mark.parametrize("call", [
    lambda arm, authz, d: arm.patch_resource(RID, {}, api_version="2023-05-01", deadline=d),
    lambda arm, authz, d: arm.put_resource(RID, {}, api_version="2023-05-01", deadline=d),
    lambda arm, authz, d: authz.delete_assignment(AID, deadline=d),
], ids=["patch", "put", "delete assignment"])
def test_a_write_whose_bucket_reopens_only_after_the_deadline_is_not_sent(call):
    limiter_clock, reads, writes, caller_clock, inner, arm, authz = _paced(7.0)
    writes.penalize(SUB, 30)

    with pytest.raises(ArmThrottled):
        call(arm, authz, caller_clock() + 10)
    assert inner.sent == [] and limiter_clock() == 50_000.0
    reads.penalize(SUB, 300)                  # the read bucket does not hold a write
    call(arm, authz, caller_clock() + 40)
    assert len(inner.sent) == 1


def test_without_a_deadline_or_a_write_limiter_the_pacing_is_as_before():
    limiter_clock, reads, _ = _limiters()
    inner = _Inner()
    arm = ThrottledArm(inner, reads, None, clock=FakeClock())
    reads.penalize(SUB, 20)
    arm.get_resource(RID, api_version="2023-05-01")       # no deadline: waits the penalty out
    assert limiter_clock() >= 50_020.0
    arm.patch_resource(RID, {}, api_version="2023-05-01", deadline=0.0)   # no write limiter: not paced
    assert inner.sent == ["GET", "PATCH"]


def test_a_built_in_role_costs_no_token_and_is_not_held():
    limiter_clock, reads, writes = _limiters()
    caller_clock = FakeClock()
    inner = _Inner()
    authz = ThrottledAuthorization(inner, reads, writes, clock=caller_clock)
    reads.penalize(SUB, 55)
    owner = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
    authz.get_role_definition(owner, deadline=caller_clock() + 1)
    assert inner.sent == ["GET definition"] and limiter_clock() == 50_000.0
