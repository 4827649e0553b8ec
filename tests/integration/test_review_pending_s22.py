"""Fixes left ``requested`` whose own write event never settled them (remediation review,
session 22). A fix whose read-back failed is recorded as pending after its write; its own
``ResourceWriteSuccess`` can reach another worker before that record exists (and is then
ignored as an own write), or be lost. The reconciling sweep confirms such records once they are
an hour old: the resource read back, each fix audited, the record gone. Real SDK clients on
Azurite and the HTTPS emulator; asserted on the audit table, the pending table and the emulator."""

from __future__ import annotations

import re

import pytest

from guardrails import bootstrap, pending_confirm as sweep_module   # the stale-fix timings live there
from guardrails.ratelimit import FakeClock
from guardrails.settings import Settings
from tests import builders as b

pytestmark = pytest.mark.integration


def _fix_with_lost_confirmation(h, res):
    patch = h.service.arm.patch_resource

    def patch_then_arm_stumbles(*args, **kwargs):
        out = patch(*args, **kwargs)
        h.emu.add_fault(method="GET", path_regex=re.escape(res["name"]) + "$", status=429, retry_after=60, times=1)
        return out

    h.service.arm.patch_resource = patch_then_arm_stumbles
    try:
        row = h.deliver(b.write_event(res["id"]))
    finally:
        h.service.arm.patch_resource = patch
    assert row.verdict == "requested" and "read-back failed" in row.violations[0].message
    h.emu.drain_events()              # its own write event: gone to a worker that saw no record yet
    assert len(h.service.pending.list(res["id"])) == 1
    return row


def _sweep(h):
    return bootstrap.build_sweeper(Settings.from_env(h.env), clock=FakeClock(), sleep=lambda s: None).run()


def test_the_sweep_confirms_a_fix_its_write_event_never_settled(harness, monkeypatch):
    res = b.storage(name="storphan", blob=False)
    h = harness([res])
    first = _fix_with_lost_confirmation(h, res)
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"

    fresh = _sweep(h)                                  # an hour has not passed: the record waits
    assert len(h.service.pending.list(res["id"])) == 1
    assert not [r for r in h.stored_rows() if r.correlation_id == fresh.sweep_id and "confirmed" in r.message]

    monkeypatch.setattr(sweep_module, "PENDING_STALE_SECONDS", -5.0)
    summary = _sweep(h)
    (confirm,) = [r for r in h.stored_rows() if r.correlation_id == summary.sweep_id and r.resource_id == res["id"]
                  and "confirmed by the sweep" in r.message + "".join(v.message for v in r.violations)]
    assert confirm.verdict == "remediated" and confirm.event_time == first.event_time
    assert [v.rule for v in confirm.violations] == [first.violations[0].rule]
    assert h.service.pending.list(res["id"]) == []


def test_a_fix_still_running_is_left_for_a_later_sweep(harness, monkeypatch):
    res = b.storage(name="stslow", blob=False)
    h = harness([res])
    _fix_with_lost_confirmation(h, res)
    live = h.resource(res["id"])
    live["properties"]["provisioningState"] = "Updating"
    h.emu.put(live)
    monkeypatch.setattr(sweep_module, "PENDING_STALE_SECONDS", -5.0)
    summary = _sweep(h)
    assert len(h.service.pending.list(res["id"])) == 1
    assert not [r for r in h.stored_rows() if r.correlation_id == summary.sweep_id and "confirmed" in r.message]


def test_only_the_old_fixes_of_a_resource_are_confirmed_a_fresh_one_waits(harness, monkeypatch):
    """Diff review: ``stale`` picked resources by their old records and then confirmed every record
    of them, a fix written seconds before (still running) included: audited failed, its own event
    then dropped."""
    import time
    res = b.storage(name="stoldnew", blob=False)
    h = harness([res])
    _fix_with_lost_confirmation(h, res)
    (old_key, _rec), = h.service.pending.list(res["id"])
    monkeypatch.setattr(sweep_module, "PENDING_STALE_SECONDS", 1.0)
    time.sleep(1.5)
    h.service.pending.add(res["id"], "evt-running", {"event_id": "evt-running", "correlation_id": "c" * 36,
                                                    "changes": [{"policy": "p@1", "rule": "r", "property":
                                                                 "properties.allowBlobPublicAccess",
                                                                 "before": True, "after": False}]})
    summary = _sweep(h)
    confirmed = [r for r in h.stored_rows() if r.correlation_id == summary.sweep_id and r.resource_id == res["id"]
                 and any("confirmed by the sweep" in v.message or "read-back shows" in v.message for v in r.violations)]
    assert len(confirmed) == 1 and [v.rule for v in confirmed[0].violations] == ["public-network-access-disabled"]
    assert [k for k, _r in h.service.pending.list(res["id"])] != [old_key]
    assert [r["event_id"] for _k, r in h.service.pending.list(res["id"])] == ["evt-running"]


def test_a_fix_the_sweep_cannot_confirm_for_two_days_is_forgotten_once(harness, monkeypatch):
    res = b.storage(name="stgone", blob=False)
    h = harness([res])
    _fix_with_lost_confirmation(h, res)
    h.emu.add_fault(method="GET", path_regex="stgone$", status=403)          # the role was taken away
    monkeypatch.setattr(sweep_module, "PENDING_STALE_SECONDS", -5.0)
    first = _sweep(h)
    assert len(h.service.pending.list(res["id"])) == 1                       # tried, kept
    monkeypatch.setattr(sweep_module, "PENDING_GIVE_UP_SECONDS", -5.0)
    second = _sweep(h)
    (gone,) = [r for r in h.stored_rows() if r.correlation_id == second.sweep_id and r.resource_id == res["id"]
               and "never confirmed, forgotten" in r.message]
    assert gone.verdict == "failed" and h.service.pending.list(res["id"]) == []
    third = _sweep(h)
    assert not [r for r in h.stored_rows() if r.correlation_id == third.sweep_id and "forgotten" in r.message]
    assert first.sweep_id != second.sweep_id


def test_records_of_a_type_no_guardrail_covers_are_dropped(harness, monkeypatch):
    h = harness([])
    rid = f"/subscriptions/{b.SUB}/resourceGroups/rg-x/providers/Microsoft.Web/sites/app1"
    h.service.pending.add(rid, "evt-web", {"event_id": "evt-web", "changes": []})
    monkeypatch.setattr(sweep_module, "PENDING_STALE_SECONDS", -5.0)
    _sweep(h)
    assert h.service.pending.list(rid) == []


def test_a_late_own_success_of_an_earlier_fix_leaves_a_newer_running_fix_alone(harness):
    """Dead-letter review: an own ResourceWriteSuccess settled every pending fix of the resource.
    Fix A's success, delivered late (a dead letter's replay, another worker), audited fix B, still
    running, as failed and deleted its record; B's own success was then ignored."""
    import time
    from guardrails.caches import SettledWrites
    res = b.storage(name="stlate", blob=False)
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"})
    assert h.deliver(b.write_event(res["id"])).verdict == "remediated"          # fix A, synchronous
    (a_success,) = h.emu.drain_events()
    live = h.resource(res["id"])
    live["properties"]["publicNetworkAccess"] = "Enabled"                        # drifts again
    h.emu.put(live)
    h.emu.lro_seconds = 2.5                                                      # fix B takes long
    assert h.deliver(b.write_event(res["id"])).verdict == "requested"
    h.service.settled = SettledWrites()                 # another worker: no memory of fix A
    late = h.deliver(a_success)
    assert (late.verdict, late.reason) == ("ignored", "own_write")
    assert len(h.service.pending.list(res["id"])) == 1                           # B's record stays
    time.sleep(2.0)
    (b_success,) = h.emu.drain_events()
    confirm = h.deliver(b_success)
    assert confirm.verdict == "remediated" and h.service.pending.list(res["id"]) == []
