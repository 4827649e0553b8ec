"""A long-running fix that ends ``Failed`` after its delivery's budget: ARM delivers
``ResourceWriteFailure`` with the write's correlation id, and the guardrail audits the fix
``failed`` (``not_confirmed``, owner told) and forgets its pending record (emulator review, session
22: the emulator never emitted the failure event, so this path was only proven with fakes). Real
SDK clients on Azurite and the HTTPS emulator."""

from __future__ import annotations

import time

import pytest

from tests import builders as b

pytestmark = pytest.mark.integration


def test_a_long_running_fix_that_fails_is_audited_failed_by_its_own_failure_event(harness):
    res = b.storage(name="stlrofail", blob=False)
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"}, lro_seconds=2.0)
    h.emu.fail_operations("stlrofail$", code="StorageAccountOperationInProgress", times=1)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "requested"
    (pending,) = h.service.pending.list(res["id"])
    time.sleep(1.0)
    events = h.emu.drain_events()
    assert [e["eventType"] for e in events] == ["Microsoft.Resources.ResourceWriteFailure"]
    assert events[0]["data"]["correlationId"] == pending[1]["correlation_id"]
    assert events[0]["data"]["status"] == "Failed"
    (failed,) = [h.deliver(e) for e in events]
    assert (failed.verdict, failed.reason, failed.notify) == ("failed", "not_confirmed", True)
    assert failed.event_time == row.event_time            # measured from the drift
    assert h.service.pending.list(res["id"]) == []
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    # Event Grid redelivers the drift's event later, or the sweep finds it: a new attempt fixes it
    assert h.deliver(b.write_event(res["id"])).verdict in ("remediated", "requested")
