"""Fixes left ``requested`` whose own write event never settled them (remediation review,
session 22). A fix whose read-back failed is recorded as pending after its write; its own
``ResourceWriteSuccess`` can reach another worker before that record exists (and is then
ignored as an own write), or be lost. The reconciling sweep confirms such records once they are
an hour old: the resource read back, each fix audited, the record gone. Real SDK clients on
Azurite and the HTTPS emulator; asserted on the audit table, the pending table and the emulator."""

from __future__ import annotations

import re

import pytest

from guardrails import bootstrap, sweep as sweep_module
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
