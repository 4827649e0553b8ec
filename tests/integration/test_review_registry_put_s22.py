"""An ML registry is fixed by a full PUT of what was read. Its documented bodies carry no etag
(the emulator's ``etaglessTypes``), so the PUT cannot be conditional: sent from a reused read (a
burst within ``GUARDRAILS_SNAPSHOT_REUSE_SECONDS``) it would silently revert whatever changed
since. Such a PUT is made from a read taken right before it (remediation review, session 22).
Real SDK clients on the HTTPS emulator; asserted on the emulator's state and request log."""

from __future__ import annotations

import pytest

from tests import builders as b

pytestmark = pytest.mark.integration

REGISTRY = "Microsoft.MachineLearningServices/registries"


def test_a_registry_put_without_an_etag_is_made_from_a_fresh_read(harness):
    reg = b.ml_registry()
    h = harness([reg], world={"etaglessTypes": [REGISTRY]}, env={"GUARDRAILS_CLOCK_SKEW_SECONDS": "0"})
    assert "etag" not in h.resource(reg["id"])
    burst = b.write_event(reg["id"])                        # happened before the read below
    h.service.check_resource(reg["id"], remediate=False)    # reads (and keeps) the public registry
    live = h.resource(reg["id"])
    live["tags"] = {**live.get("tags", {}), "cost-center": "4711"}   # someone else's change, no event yet
    h.emu.put(live)
    h.emu.clear_requests()
    row = h.deliver(burst)
    assert row.verdict == "remediated", row.message
    after = h.resource(reg["id"])
    assert after["properties"]["publicNetworkAccess"] == "Disabled"
    assert after["tags"]["cost-center"] == "4711", "the PUT from the reused read reverted a change"
    (put,) = h.arm_requests("PUT")
    assert "If-Match" not in {k.title() for k in put.get("headers", {})}
    assert [q["method"] for q in h.arm_requests()] == ["GET", "PUT", "GET"]


def test_with_an_etag_the_reused_read_is_enough(harness):
    """Where the registry has an etag, the PUT is conditional on it: no second read (a change
    since makes ARM refuse it with 412, and Event Grid's redelivery decides again)."""
    reg = b.ml_registry()
    h = harness([reg], env={"GUARDRAILS_CLOCK_SKEW_SECONDS": "0"})
    burst = b.write_event(reg["id"])
    h.service.check_resource(reg["id"], remediate=False)
    h.emu.clear_requests()
    assert h.deliver(burst).verdict == "remediated"
    assert [q["method"] for q in h.arm_requests()] == ["PUT", "GET"]
