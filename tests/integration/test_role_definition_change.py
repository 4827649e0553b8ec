"""A custom role widened after its assignments were judged (``roleDefinitions/write``): the cached
definition is dropped and every assignment of it is re-judged, end to end on the emulator's
authorization API (real azure-mgmt-authorization client) and Azurite's audit table."""

from __future__ import annotations

import pytest

from guardrails.role_definitions import DEFINITION_CHANGE_EVENT_TYPE
from tests import builders as b
from tests.integration.test_role_guardrail import SUB_SCOPE, _exists
from tests.integration.test_role_review_fixes import CUSTOM, _world, custom_role

pytestmark = pytest.mark.integration

DEFINITION_ID = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM}"


def _assignment(principal: str, name: str) -> dict:
    a = b.role_assignment("Reader", principal, name=name)
    a["properties"]["roleDefinitionId"] = DEFINITION_ID
    return a


def _definition_event() -> dict:
    return b.write_event(DEFINITION_ID, "Microsoft.Authorization/roleDefinitions")


def _deliver(h, raw: dict):
    """Through the trigger; the definition event's row (the re-judged assignments write their own)."""
    from guardrails.simulate import to_function_event
    from guardrails.triggers.resource_events import resource_events

    resource_events(to_function_event(raw))
    (row,) = [r for r in h.recorder.rows if r.event_id == raw["id"]]
    return row


def test_a_custom_role_widened_to_everything_has_its_assignments_removed(harness, tmp_path):
    bob = _assignment(b.BOB, "0b0b0000-0000-4000-8000-0000000000b1")
    alice = _assignment(b.ALICE, "0b0b0000-0000-4000-8000-0000000000b2")
    h = _world(harness, tmp_path, [bob, alice], definitions=[custom_role(["*/read"])])
    # judged (and the definition cached) while it only read
    assert h.deliver(b.role_event(bob)).verdict == "compliant"
    # someone widens the role: the guardrail's cache still holds the reader version
    h.emu.put_role_definition(custom_role(["*"]))
    row = _deliver(h, _definition_event())
    assert row.verdict == "remediated", row.message
    assert "2 assignment(s)" in row.message
    assert not _exists(h, bob) and not _exists(h, alice)
    rejudged = [r for r in h.recorder.rows if r.event_type == DEFINITION_CHANGE_EVENT_TYPE]
    assert sorted(r.resource_id.lower() for r in rejudged) == sorted(a["id"].lower() for a in (bob, alice))
    assert {r.verdict for r in rejudged} == {"remediated"}
    assert {r.correlation_id for r in rejudged} == {f"roledefinition:{row.event_id}"}
    # who widened the role is on the re-judged rows too (their flip-flop counts, an escalation)
    assert row.actor.object_id and {r.actor.object_id for r in rejudged} == {row.actor.object_id}


def test_a_custom_role_changed_but_still_unprivileged_keeps_its_assignments(harness, tmp_path):
    bob = _assignment(b.BOB, "0b0b0000-0000-4000-8000-0000000000b3")
    h = _world(harness, tmp_path, [bob], definitions=[custom_role(["*/read"])])
    h.emu.put_role_definition(custom_role(["*/read", "Microsoft.Storage/storageAccounts/listKeys/action"]))
    row = _deliver(h, _definition_event())
    assert row.verdict == "compliant" and "stand as judged" in row.message
    assert _exists(h, bob)
    assert not [r for r in h.recorder.rows if r.event_type == DEFINITION_CHANGE_EVENT_TYPE]
