"""``BoundRotationIO.wrote``: whether a rotation may have changed something, which decides whether
its circuit-breaker permit is given back (``refused_outright``)."""

from __future__ import annotations

import pytest

from guardrails.errors import ArmError, ArmThrottled, ArmTransient, ResourceNotFound, StoreError
from guardrails.secrets.rotation import BoundRotationIO, refused_outright


class _Gateway:
    """Key Vault / storage-key gateway whose every call raises ``error`` (None: answers)."""

    def __init__(self, error=None):
        self.error = error

    def _go(self, *_a, **_k):
        if self.error is not None:
            raise self.error
        return {"key1": "x"}

    set_secret = update_version = list_keys = regenerate_key = _go


def _after_retry(exc):
    exc.attempts = 2
    return exc


@pytest.mark.parametrize("exc, refused", [
    (ArmError("bad request", status=400), True),
    (ArmError("unauthenticated", status=401), True),
    (ArmError("no role", status=403, reason="forbidden"), True),
    (ResourceNotFound("gone", status=404), True),
    (ArmError("conflict", status=409), False),             # another operation: perhaps the write's own
    (ArmThrottled("429", status=429), True),                # its only attempt throttled: never processed
    (_after_retry(ArmThrottled("429", status=429)), False),  # a 429 after a retry: the first may have landed
    (ArmTransient("503", status=503), False),
    (ArmTransient("answer cut off"), False),               # sent, no whole answer
    (ArmError("unexpected answer shape"), False),          # answered 2xx, unreadable: it was made
    (StoreError("not ours"), False),
    (ValueError("anything else"), False),
])
def test_only_an_outright_refusal_says_nothing_was_written(exc, refused):
    assert refused_outright(exc) is refused
    writes = {"set_secret": lambda io: io.set_secret("v", "n", "x", tags={}, expires_on=None, content_type=None),
              "regenerate_storage_key": lambda io: io.regenerate_storage_key("acc", "key1"),
              "set_tags": lambda io: io.set_tags("v", "n", "1", {})}
    for name, write in writes.items():
        g = _Gateway(exc)
        io = BoundRotationIO(g, g, deadline=0.0)       # one each: ``wrote`` never goes back to False
        with pytest.raises(type(exc)):
            write(io)
        assert io.wrote is (not refused), name


def test_a_refusal_after_a_retry_may_follow_a_write_that_landed():
    exc = ArmError("no role", status=403, reason="forbidden")
    exc.attempts = 2                                    # the first attempt's answer was lost
    assert refused_outright(exc) is False
    g = _Gateway(exc)
    io = BoundRotationIO(g, g, deadline=0.0)
    with pytest.raises(ArmError):
        io.regenerate_storage_key("acc", "key1")
    assert io.wrote is True


def test_the_caller_says_how_many_attempts_a_failed_call_sent():
    from azure.core.exceptions import HttpResponseError, ServiceResponseError

    from guardrails.adapters.retry import BudgetedCaller

    class _Resp:
        def __init__(self, status):
            self.status_code, self.reason, self.headers = status, "x", {}

        def text(self):
            return ""

    answers = [ServiceResponseError("read timeout"), HttpResponseError(response=_Resp(403))]

    def fn():
        raise answers.pop(0)

    caller = BudgetedCaller(timeout=1.0, sleep=lambda s: None)
    with pytest.raises(ArmError) as info:
        caller.call(fn, deadline=10 ** 12, what="POST rotate")
    assert (info.value.status, info.value.attempts) == (403, 2)
    assert refused_outright(info.value) is False
    with pytest.raises(ArmError) as info:
        caller.call(lambda: (_ for _ in ()).throw(HttpResponseError(response=_Resp(403))), deadline=10 ** 12,
                    what="POST rotate")
    assert info.value.attempts == 1 and refused_outright(info.value) is True


def test_a_read_writes_nothing_and_an_answered_write_is_written():
    g = _Gateway(ArmTransient("503", status=503))
    io = BoundRotationIO(g, g, deadline=0.0)
    with pytest.raises(ArmTransient):
        io.list_storage_keys("acc")
    assert io.wrote is False
    g.error = None
    io.regenerate_storage_key("acc", "key1")
    assert io.wrote is True
    g.error = ArmError("no role", status=403)            # a later refusal does not undo an earlier write
    with pytest.raises(ArmError):
        io.set_secret("v", "n", "x", tags={}, expires_on=None, content_type=None)
    assert io.wrote is True
