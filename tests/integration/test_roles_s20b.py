"""Role-assignment review fixes (s20b), end to end on the emulator and Azurite:

1. re-grants of one grant removed within the breaker window take no new breaker permit, so a
   grant repeated past ``max_actions`` neither opens the breaker nor stays in place; distinct
   principals still take one permit each;
2. an assignment judged compliant at subscription scope on a custom role this instance holds in
   its definition cache is judged on the definition read again (another instance handled the
   widening)."""

from __future__ import annotations

import pytest

from tests import builders as b
from tests.integration.test_role_definition_change import DEFINITION_ID, _definition_event
from tests.integration.test_role_guardrail import SUB_SCOPE, _exists, _harness
from tests.integration.test_role_review_fixes import custom_role

pytestmark = pytest.mark.integration

CAROL = "ca401000-0000-4000-8000-0000000000c1"
DAVE = "da7e0000-0000-4000-8000-0000000000d1"
SMALL_BREAKER = "breaker: {max_actions: 2, window_seconds: 600}\nflip_flop: {max_reverts: 50, window_minutes: 60}\n"


def _owner(principal: str, n: int) -> dict:
    return b.role_assignment("Owner", principal, name=f"0b0b0000-0000-4000-8000-{n:012d}")


def test_one_grant_repeated_past_the_breaker_is_removed_every_time(harness, tmp_path):
    grants = [_owner(b.BOB, n) for n in range(1, 6)]          # five re-grants of one grant, breaker of 2
    h = _harness(harness, tmp_path, grants, extra=SMALL_BREAKER)
    rows = [h.deliver(b.role_event(g)) for g in grants]
    assert [(r.verdict, r.reason) for r in rows] == [("remediated", "")] * 5, [r.message for r in rows]
    assert not any(_exists(h, g) for g in grants)
    # the fight took one permit: a second principal's grant is still removed ...
    carol = _owner(CAROL, 11)
    h.emu.put_role_assignment(carol)
    assert h.deliver(b.role_event(carol)).verdict == "remediated" and not _exists(h, carol)


def test_distinct_principals_still_open_the_breaker_and_a_regrant_is_still_removed(harness, tmp_path):
    bob, carol, dave = _owner(b.BOB, 21), _owner(CAROL, 22), _owner(DAVE, 23)
    h = _harness(harness, tmp_path, [bob, carol, dave], extra=SMALL_BREAKER)
    assert h.deliver(b.role_event(bob)).verdict == "remediated"
    assert h.deliver(b.role_event(carol)).verdict == "remediated"
    row = h.deliver(b.role_event(dave))                      # a third grant: the breaker's purpose
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open") and _exists(h, dave)
    # BOB granted again while the breaker is open: the grant removed minutes ago goes again
    again = _owner(b.BOB, 24)
    h.emu.put_role_assignment(again)
    row = h.deliver(b.role_event(again))
    assert row.verdict == "remediated" and not _exists(h, again), row.message


def test_a_custom_role_widened_on_another_instance_is_not_judged_on_this_ones_cache(harness, tmp_path):
    from guardrails import bootstrap

    a1 = b.role_assignment("Reader", b.BOB, name="0b0b0000-0000-4000-8000-0000000000c1")
    a1["properties"]["roleDefinitionId"] = DEFINITION_ID
    h = _harness(harness, tmp_path, [a1], definitions=[custom_role(["*/read"])])
    other = bootstrap.build_service(h.settings)                         # instance 2 of the function app
    assert h.deliver(b.role_event(a1)).verdict == "compliant"           # instance 1 caches the reader role
    h.emu.put_role_definition(custom_role(["*"]))                       # widened to everything
    other.handle_event(_definition_event())                             # the definition event: instance 2
    a2 = b.role_assignment("Reader", b.BOB, name="0b0b0000-0000-4000-8000-0000000000c2")
    a2["properties"]["roleDefinitionId"] = DEFINITION_ID
    h.emu.put_role_assignment(a2)                                       # BOB assigns the '*' role again
    row = h.deliver(b.role_event(a2))                                   # judged on instance 1
    assert row.verdict == "remediated" and not _exists(h, a2), row.message


def test_a_custom_role_below_a_subscription_costs_no_second_read(harness, tmp_path):
    rg = b.role_assignment("Reader", b.BOB, scope=b.rg_id(), name="0b0b0000-0000-4000-8000-0000000000c3")
    rg["properties"]["roleDefinitionId"] = DEFINITION_ID
    sub = b.role_assignment("Reader", b.ALICE, name="0b0b0000-0000-4000-8000-0000000000c4")
    sub["properties"]["roleDefinitionId"] = DEFINITION_ID
    h = _harness(harness, tmp_path, [rg, sub], definitions=[custom_role(["*/read"])])
    assert h.deliver(b.role_event(rg)).verdict == "compliant"
    before = len(h.arm_requests())
    assert h.deliver(b.role_event(rg)).verdict == "compliant"
    assert [q["method"] for q in h.arm_requests()[before:]] == ["GET"]          # the assignment only
    before = len(h.arm_requests())
    assert h.deliver(b.role_event(sub)).verdict == "compliant"
    assert [q["method"] for q in h.arm_requests()[before:]] == ["GET", "GET"]   # + the definition again
    assert SUB_SCOPE in sub["id"]


def test_a_sweep_judges_custom_roles_on_definitions_read_in_its_own_run(harness, tmp_path):
    """The sweep's worker cached the reader role on an earlier run; the role is widened (its
    definition event handled elsewhere) and an assignment of it made with its event lost: the next
    run judges both assignments on what the role grants now."""
    from tests.integration.test_sweep import FakeClock, _sweeper

    a1 = b.role_assignment("Reader", b.BOB, name="0b0b0000-0000-4000-8000-0000000000d1")
    a1["properties"]["roleDefinitionId"] = DEFINITION_ID
    h = _harness(harness, tmp_path, [a1], definitions=[custom_role(["*/read"])])
    sweeper = _sweeper(h, FakeClock())
    assert sweeper.run(subscriptions=[b.SUB]).remediated == 0 and _exists(h, a1)
    h.emu.put_role_definition(custom_role(["*"]))
    a2 = b.role_assignment("Reader", b.ALICE, name="0b0b0000-0000-4000-8000-0000000000d2")
    a2["properties"]["roleDefinitionId"] = DEFINITION_ID
    h.emu.put_role_assignment(a2)
    summary = sweeper.run(subscriptions=[b.SUB])
    assert summary.remediated == 2 and not _exists(h, a1) and not _exists(h, a2)
