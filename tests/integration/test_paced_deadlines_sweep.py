"""Through ``bootstrap.build_sweeper``: a timer decision on a subscription whose read bucket a 429
closed for longer than the decision has left ends ``failed``/``throttled`` at once (the sweep's
next run decides it) instead of sleeping the Retry-After past its deadline; with time left, the
same decision waits the penalty out and fixes the drift."""

from __future__ import annotations

from guardrails import bootstrap
from guardrails.ratelimit import FakeClock
from tests import builders as b


def test_a_timer_decision_does_not_wait_for_a_token_past_its_deadline(harness):
    account = b.storage("stpaced", pna="Enabled", blob=False)
    h = harness([account])
    rid = account["id"]
    clock = FakeClock()
    sweeper = bootstrap.build_sweeper(h.settings, clock=clock, sleep=clock.sleep)
    service = sweeper.service
    sweeper.reads.penalize(b.SUB.lower(), 8)         # a 429 on this subscription: Retry-After 8 s
    h.emu.clear_requests()
    t0 = clock()

    row = service.reconcile(rid, None, sweep_id="sweep-paced", deadline=service._clock() + 2)

    assert (row.verdict, row.reason) == ("failed", "throttled")
    assert clock() == t0                              # nothing slept on the limiter's clock
    assert not [q for q in h.emu.requests if "stpaced" in q["path"]]     # and nothing sent
    assert h.resource(rid)["properties"]["publicNetworkAccess"] == "Enabled"

    row = service.reconcile(rid, None, sweep_id="sweep-paced-2", deadline=service._clock() + 15)

    assert clock() - t0 >= 8                           # the penalty waited out, then the fix made
    assert row.verdict == "remediated", row.to_dict()
    assert h.resource(rid)["properties"]["publicNetworkAccess"] == "Disabled"
