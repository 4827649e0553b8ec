"""The sweep's notice gate on its own (``guardrails.sweep_notices``): which decisions are news."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from guardrails.errors import StoreError
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.sweep_notices import NoticeGate, signature

RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
T0 = datetime(2026, 11, 25, 8, tzinfo=timezone.utc)


class _State:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.fail = False

    def _check(self) -> None:
        if self.fail:
            raise StoreError("table storage read finding state failed (ServiceRequestError, status None)")

    def finding_state(self, rid):
        self._check()
        return self.rows.get(rid)

    def set_finding_state(self, rid, state, **_kw):
        self._check()
        self.rows[rid] = dict(state)

    def delete_finding_state(self, rid):
        self._check()
        self.rows.pop(rid, None)

    def finding_states(self):
        self._check()
        return [{"resource_id": rid, "seen": st.get("seen", ""), "key": rid} for rid, st in self.rows.items()]

    def delete_finding_key(self, key):
        self._check()
        self.rows.pop(key, None)


def _row(*recs: tuple[str, object, str], verdict: str = "violation", notify: bool = True) -> AuditRow:
    return AuditRow(event_id="e", event_type="Guardrails.Sweep", resource_id=RID, verdict=verdict, notify=notify,
                    violations=[ViolationRecord(policy="p@1", rule=r, property=f"properties.{r}", before=v, after=None,
                                                outcome=o, message="") for r, v, o in recs])


def _gate(state, previous=T0, now=T0 + timedelta(hours=1), hours=24.0):
    return NoticeGate(state, previous_start=previous, remind_after=timedelta(hours=hours), now=lambda: now)


def test_signature_is_the_open_findings_only_in_any_order():
    a = _row(("rbac", False, "violation"), ("pna", "Enabled", "remediated"))
    b = _row(("rbac", False, "violation"))
    c = _row(("purge", False, "violation"), ("rbac", False, "violation"))
    d = _row(("rbac", False, "violation"), ("purge", False, "violation"))
    assert signature(a) == signature(b) and signature(c) == signature(d) and signature(b) != signature(c)
    assert signature(_row(("rbac", None, "violation"))) != signature(b)


def test_first_sight_is_news_and_the_same_set_next_run_is_a_repeat():
    state = _State()
    assert _gate(state, previous=None)(_row(("rbac", False, "violation"))) is None
    note = _gate(state, now=T0 + timedelta(hours=2))(_row(("rbac", False, "violation")))
    assert note and "unchanged since the owner was told at 2026-11-25T09:00:00Z" in note


def test_a_state_store_that_fails_never_silences_a_notice():
    state = _State()
    _gate(state, previous=None)(_row(("rbac", False, "violation")))
    state.fail = True
    assert _gate(state, now=T0 + timedelta(hours=2))(_row(("rbac", False, "violation"))) is None


def test_failed_and_quiet_rows_are_never_gated_and_a_quiet_row_clears_the_state():
    state = _State()
    _gate(state, previous=None)(_row(("rbac", False, "violation")))
    assert _gate(state)(_row(("rbac", False, "failed"), verdict="failed")) is None
    assert RID in state.rows
    assert _gate(state)(_row(("pna", "Enabled", "remediated"), verdict="remediated", notify=False)) is None
    assert state.rows == {}


def test_a_previous_run_that_did_not_see_it_or_a_reminder_due_makes_it_news():
    state = _State()
    _gate(state, previous=None, now=T0)(_row(("rbac", False, "violation")))
    # the previous run began after the last sighting: that run did not see it
    assert _gate(state, previous=T0 + timedelta(minutes=30))(_row(("rbac", False, "violation"))) is None
    # told at T0+1h above; 24 h later: reminder
    assert _gate(state, now=T0 + timedelta(hours=25, seconds=1))(_row(("rbac", False, "violation"))) is None


def test_prune_drops_states_no_run_has_seen_for_a_week_and_keeps_the_rest():
    state = _State()
    state.rows = {"old": {"signature": "s", "told": "2026-11-10T08:00:00Z", "seen": "2026-11-17T07:59:59Z"},
                  "recent": {"signature": "s", "told": "2026-11-10T08:00:00Z", "seen": "2026-11-24T08:00:00Z"},
                  "junk": {"signature": "s", "told": "", "seen": "not a time"}}
    assert _gate(state, now=T0)._now() == T0
    assert _gate(state, now=T0).prune() == 2
    assert set(state.rows) == {"recent"}
    # a reminder interval longer than a week keeps states twice that long
    state.rows["older"] = {"signature": "s", "told": "", "seen": "2026-11-12T08:00:00Z"}
    assert _gate(state, now=T0, hours=24 * 10).prune() == 0 and "older" in state.rows


def test_prune_never_raises_when_the_store_fails():
    state = _State()
    state.rows = {"old": {"seen": "2026-01-01T00:00:00Z"}}
    state.fail = True
    assert _gate(state, now=T0).prune() == 0
