"""Which subscriptions the sweep covers when none are configured: every visible one that can
still drift. ``Warned`` and ``PastDue`` (billing trouble: resources still run and take writes)
are swept; ``Disabled``, ``Deleted`` and ``Expired`` are not. The emulator's ``GET /subscriptions``
answers the states; assertions are on the resources it holds afterwards and its request log."""

from __future__ import annotations

import pytest

from guardrails.local.arm_emulator_list import ArmListRoute
from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_sweep import _sweeper

pytestmark = pytest.mark.integration

STATES = {"Enabled": "0e0a0000-0000-4000-8000-000000000001", "Warned": "0e0a0000-0000-4000-8000-000000000002",
          "PastDue": "0e0a0000-0000-4000-8000-000000000003", "Disabled": "0e0a0000-0000-4000-8000-000000000004",
          "Deleted": "0e0a0000-0000-4000-8000-000000000005", "Expired": "0e0a0000-0000-4000-8000-000000000006"}


def _drifted(state: str) -> dict:
    sub = STATES[state]
    res = b.storage(f"st{state.lower()}", pna="Enabled", blob=False)
    return {**res, "id": res["id"].replace(b.SUB, sub)}


@pytest.fixture
def subscription_states(monkeypatch):
    """The emulator answers each subscription with the state its id stands for."""
    by_id = {sub: state for state, sub in STATES.items()}
    listed = ArmListRoute._subscriptions

    def with_states(emu):
        return [{**s, "state": by_id.get(s["subscriptionId"], "Enabled")} for s in listed(emu)]

    monkeypatch.setattr(ArmListRoute, "_subscriptions", staticmethod(with_states))


def test_the_sweep_covers_warned_and_past_due_subscriptions_and_skips_inactive_ones(harness, subscription_states):
    # GIVEN one drifted storage account in a subscription of each state, none configured to sweep
    resources = {state: _drifted(state) for state in STATES}
    h = harness(list(resources.values()))
    # WHEN the sweep runs over every visible subscription
    summary = _sweeper(h, FakeClock()).run()
    # THEN active subscriptions (Enabled, Warned, PastDue) are swept and fixed
    pna = {state: h.resource(r["id"])["properties"]["publicNetworkAccess"] for state, r in resources.items()}
    assert pna == {"Enabled": "Disabled", "Warned": "Disabled", "PastDue": "Disabled",
                   "Disabled": "Enabled", "Deleted": "Enabled", "Expired": "Enabled"}
    assert sorted(summary.subscriptions) == sorted(STATES[s] for s in ("Enabled", "Warned", "PastDue"))
    assert summary.remediated == 3
    # AND nothing is even listed in the inactive ones
    listed = {q["path"].split("/")[2] for q in h.arm_requests("GET") if q["path"].startswith("/subscriptions/")
              and q["path"].count("/") > 1}
    assert not listed & {STATES[s] for s in ("Disabled", "Deleted", "Expired")}
