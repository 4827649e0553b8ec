"""The sweep's notice gate writes a finding's state over the state it read (sweep review #3): two
runs judging one finding at once (a lost timer lock; the run lease makes that rare) both read "never
told" and both told its owner. Now one write wins and the other run's decision is not news."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from guardrails.adapters.sweep_tables import TableTimerState
from guardrails.errors import FindingStateChanged
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.sweep_notices import NoticeGate

pytestmark = pytest.mark.integration

RID = "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1"
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


def _row() -> AuditRow:
    return AuditRow(event_id="e", event_type="Guardrails.Sweep", resource_id=RID, verdict="violation", notify=True,
                    violations=[ViolationRecord("p@1", "rbac", "properties.enableRbacAuthorization", False, None,
                                                "violation")])


class _Interleaved:
    """The state as run A sees it: between A's read and A's write, run B judges the same finding."""

    def __init__(self, state, other) -> None:
        self.state, self.other = state, other

    def finding_state(self, rid):
        before = self.state.finding_state(rid)
        self.other()
        return before

    def __getattr__(self, name):
        return getattr(self.state, name)


def test_two_runs_judging_one_finding_at_once_tell_its_owner_once(harness):
    h = harness([])
    state = TableTimerState(h.tables)
    state.ensure() if hasattr(state, "ensure") else None
    notes = {}
    b = NoticeGate(state, previous_start=T0, remind_after=timedelta(hours=24), now=lambda: T0 + timedelta(hours=1))
    a = NoticeGate(_Interleaved(state, lambda: notes.setdefault("b", b(_row()))), previous_start=T0,
                   remind_after=timedelta(hours=24), now=lambda: T0 + timedelta(hours=1))
    notes["a"] = a(_row())
    assert notes["b"] is None                                     # B told the owner
    assert notes["a"] and "another run judged this finding" in notes["a"]     # A did not again


def test_a_conditional_write_over_a_state_changed_since_it_was_read_is_refused(harness):
    h = harness([])
    state = TableTimerState(h.tables)
    state.set_finding_state(RID, {"signature": "s", "told": "t", "seen": "x"}, read=None, conditional=True)
    read = state.finding_state(RID)
    with pytest.raises(FindingStateChanged):
        state.set_finding_state(RID, {"signature": "s"}, read=None, conditional=True)      # it exists now
    state.set_finding_state(RID, {"signature": "s2"}, read=read, conditional=True)
    with pytest.raises(FindingStateChanged):
        state.set_finding_state(RID, {"signature": "s3"}, read=read, conditional=True)     # changed since
    assert state.finding_state(RID)["signature"] == "s2"
