"""Expiry re-enforcement whose fix fails: the resource is decided again by the next run (its PATCH
really sent again), and a resource that keeps failing neither holds back later expiries nor is
retried for ever. Azurite (timer state) + the HTTPS emulator (the storage accounts)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from guardrails import expiry
from guardrails.adapters.sweep_tables import TableTimerState
from guardrails.expiry import TIMER
from tests import builders as b
from tests.integration.test_expiry import _enforcer
from tests.integration.test_expiry import exempt_many as _exempt

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _patches(h, name: str) -> list[dict]:
    return [q for q in h.arm_requests("PATCH") if q["path"].lower().endswith(f"/storageaccounts/{name}")]


def _pna(h, res) -> str:
    return h.resource(res["id"])["properties"]["publicNetworkAccess"]


def test_a_failed_re_enforcement_is_retried_by_the_next_run(harness, tmp_path):
    # GIVEN an exemption that ran out, and ARM refusing the first fix
    res = b.storage("stpartner", blob=False)
    h = harness([res], extra_metadata=[_exempt(tmp_path, (res["id"], NOW - timedelta(minutes=2)))])
    h.emu.add_fault(method="PATCH", path_regex="storageAccounts/stpartner$", status=403, times=1)
    first = _enforcer(h).run(NOW)
    assert (first.seen, first.failed) == (1, 1) and _pna(h, res) == "Enabled"
    assert len(_patches(h, "stpartner")) == 1
    # WHEN the next run comes (its window no longer holds the expiry)
    h.emu.clear_requests()
    second = _enforcer(h).run(NOW + timedelta(minutes=5))
    # THEN the PATCH is really sent again, and this time it holds
    assert len(_patches(h, "stpartner")) == 1
    assert _pna(h, res) == "Disabled"
    assert (second.seen, second.remediated, second.failed) == (1, 1, 0)
    assert TableTimerState(h.tables).retry(TIMER) == []
    rows = [r for r in h.stored_rows() if r.event_type == "Guardrails.ExemptionExpired"]
    assert [r.verdict for r in rows] == ["failed", "remediated"]
    # AND a third run has nothing left to do
    h.emu.clear_requests()
    assert _enforcer(h).run(NOW + timedelta(minutes=10)).seen == 0 and h.arm_requests() == []


def test_a_resource_failing_for_good_holds_back_no_later_expiry_and_is_given_up(harness, tmp_path, monkeypatch):
    monkeypatch.setattr(expiry, "MAX_ATTEMPTS", 3, raising=False)
    locked = b.storage("stlocked", blob=False)
    later = b.storage("stlater", blob=False)
    start = NOW - timedelta(minutes=5)             # the runs are at start, +5, +10, +15 min
    h = harness([locked, later], extra_metadata=[_exempt(
        tmp_path, (locked["id"], start - timedelta(minutes=2)), (later["id"], NOW - timedelta(minutes=2)))])
    h.emu.add_fault(method="PATCH", path_regex="storageAccounts/stlocked$", status=403)     # every time
    state = TableTimerState(h.tables)
    # run 1: the locked account fails; the window still moves on
    assert _enforcer(h).run(start).failed == 1
    assert state.last_run(TIMER) == start
    # run 2: the later expiry is enforced, and the locked account tried again
    h.emu.clear_requests()
    s2 = _enforcer(h).run(NOW)
    assert _pna(h, later) == "Disabled" and (s2.remediated, s2.failed) == (1, 1)
    assert len(_patches(h, "stlocked")) == 1
    assert state.last_run(TIMER) == NOW
    assert [(r["id"], r["attempts"]) for r in state.retry(TIMER)] == [(locked["id"], 2)]
    # run 3: the third failure is the last attempt; run 4 no longer touches it
    assert _enforcer(h).run(NOW + timedelta(minutes=5)).failed == 1
    assert state.retry(TIMER) == []
    h.emu.clear_requests()
    assert _enforcer(h).run(NOW + timedelta(minutes=10)).seen == 0 and h.arm_requests() == []
    assert _pna(h, locked) == "Enabled"            # left to the reconciling sweep
