"""Writes whose answer is not a plain 200, through the real SDK pipeline against the emulator:
a Container Registry PATCH answered 201 + Azure-AsyncOperation (as real ACR answers it), a write
whose status polling fails after ARM accepted it, and a conditional PUT whose answer was lost
after it was applied. Each is audited by what happened to the resource, never ``failed`` for a fix
that went through; and nothing polls ARM after the delivery's budget ended."""

from __future__ import annotations

import time

import pytest

from guardrails import settings as S
from guardrails.adapters.arm import ArmGateway
from guardrails.local.credential import LocalTokenCredential
from guardrails.local.emulator import AzureEmulator
from guardrails.model.resource import lookup_type
from tests import builders as b

pytestmark = pytest.mark.integration

V_ACR = lookup_type("Microsoft.ContainerRegistry/registries").api_version


def _status_polls(emu) -> list[dict]:
    return [q for q in emu.requests if q["method"] == "GET" and "/operationstatuses/" in q["path"].lower()]


# ---- 1. ACR PATCH answered 201 + Azure-AsyncOperation ------------------------------------------
def test_the_emulator_answers_a_registry_patch_that_takes_time_like_acr():
    """GIVEN a world whose operations take time WHEN a registry is PATCHed THEN 201, only
    Azure-AsyncOperation to poll, and the registry reads Updating until the operation ends."""
    res = b.container_registry()
    with AzureEmulator([res], lro_seconds=1.0) as emu:
        gw = ArmGateway(LocalTokenCredential(object_id=b.GUARDRAIL_OID), endpoint=emu.base_url,
                        ca_bundle=emu.ca_path)
        result = gw.patch_resource(res["id"], {"properties": {"adminUserEnabled": False}}, api_version=V_ACR,
                                   deadline=time.monotonic() + 0.2)
        assert result.state == "requested"
        (patch,) = [q for q in emu.requests if q["method"] == "PATCH"]
        assert patch["status"] == 201
        during = emu.get(res["id"])["properties"]
        assert (during["provisioningState"], during["adminUserEnabled"]) == ("Updating", True)
        time.sleep(1.0)
        after = emu.get(res["id"])["properties"]
        assert (after["provisioningState"], after["adminUserEnabled"]) == ("Succeeded", False)


def test_an_acr_fix_answered_201_is_polled_to_remediated(harness):
    res = b.container_registry()
    h = harness([res], env={S.TIME_BUDGET_SECONDS: "5"}, lro_seconds=0.3)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated", (row.reason, row.violations)
    assert {v.property: v.outcome for v in row.violations} == {
        "properties.publicNetworkAccess": "remediated", "properties.adminUserEnabled": "remediated"}
    assert [q["status"] for q in h.arm_requests("PATCH")] == [201]
    assert _status_polls(h.emu), "the 201 was polled through its Azure-AsyncOperation"
    props = h.resource(res["id"])["properties"]
    assert (props["adminUserEnabled"], props["publicNetworkAccess"], props["provisioningState"]) == (
        False, "Disabled", "Succeeded")


def test_an_acr_fix_still_updating_at_the_deadline_is_requested_then_confirmed(harness):
    res = b.container_registry()
    h = harness([res], env={S.TIME_BUDGET_SECONDS: "1.5"}, lro_seconds=2.5)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "requested" and {v.outcome for v in row.violations} == {"requested"}
    assert h.resource(res["id"])["properties"]["provisioningState"] == "Updating"
    time.sleep(1.5)
    (confirm,) = h.deliver_emitted()
    assert confirm.verdict == "remediated" and all("confirmed" in v.message for v in confirm.violations)
    props = h.resource(res["id"])["properties"]
    assert (props["adminUserEnabled"], props["publicNetworkAccess"]) == (False, "Disabled")


# ---- 2. polling fails after ARM accepted the write -----------------------------------------------
def test_a_write_whose_status_polls_fail_is_requested_and_its_own_event_confirms_it(harness):
    res = b.workspace()
    h = harness([res], env={S.TIME_BUDGET_SECONDS: "2"}, lro_seconds=0.8)
    h.emu.add_fault(method="GET", path_regex="operationStatuses", status=503)
    row = h.deliver(b.write_event(res["id"]))
    assert (row.verdict, [v.outcome for v in row.violations]) == ("requested", ["requested"])
    assert len(_status_polls(h.emu)) >= 2, "a 503 on the status URL is polled again while the budget allows"
    time.sleep(0.3)
    (confirm,) = h.deliver_emitted()
    assert confirm.verdict == "remediated" and "confirmed" in confirm.violations[0].message
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_a_status_url_that_is_gone_is_requested_at_once(harness):
    res = b.workspace()
    h = harness([res], env={S.TIME_BUDGET_SECONDS: "5"}, lro_seconds=0.5)
    h.emu.add_fault(method="GET", path_regex="operationStatuses", status=404)
    started = time.monotonic()
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "requested"
    assert time.monotonic() - started < 3
    assert len(_status_polls(h.emu)) == 1


def test_an_operation_that_ends_failed_is_audited_failed(harness):
    """The operation itself fails (the registry was moved to Basic while it ran, which cannot
    disable public network access): a terminal failure stays an error."""
    res = b.container_registry(admin=False, pna="Enabled")
    h = harness([res], env={S.TIME_BUDGET_SECONDS: "5"}, lro_seconds=0.6)
    store, add_operation = h.emu.store, h.emu.store.add_operation

    def accepted_then_downgraded(*args, **kwargs):      # the PATCH is accepted on a Premium registry ...
        op = add_operation(*args, **kwargs)
        store.find(res["id"])["sku"] = {"name": "Basic", "tier": "Basic"}     # ... which then becomes Basic
        return op
    store.add_operation = accepted_then_downgraded
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "failed", (row.reason, row.violations)
    assert "Failed" in row.violations[0].message
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"


# ---- 2b. a conditional PUT applied, its answer lost ----------------------------------------------
def test_a_conditional_put_whose_answer_was_lost_after_it_applied_is_requested_not_failed(harness):
    """The ML registry's fix is a full PUT with If-Match. Its first attempt is applied but the answer
    never arrives (read timeout); the retry's If-Match then fails (412) because of that very write.
    The outcome is unknown, not a failure: ``requested``, confirmed by the write's own event."""
    res = b.ml_registry()
    h = harness([res], env={S.TIME_BUDGET_SECONDS: "10", S.ARM_TIMEOUT_SECONDS: "1"})
    h.emu.add_fault(method="PUT", path_regex="registries/mlreg-shared", delay_ms=1500, times=2)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "requested", (row.reason, row.violations)
    statuses = [q["status"] for q in h.arm_requests("PUT")]
    assert 412 in statuses
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    events = h.emu.drain_events()
    assert events, "the first attempt was applied"
    confirm = [h.deliver(e) for e in events]
    assert confirm[0].verdict == "remediated" and "confirmed" in confirm[0].violations[0].message


# ---- 4. a regenerateKey that hangs is bounded by the deadline -------------------------------------
def test_a_hung_regenerate_key_returns_by_its_deadline_not_after_azure_cores_300_s():
    """The rotation holds a 120 s lease: a regenerateKey left waiting on azure-core's default read
    timeout (300 s) would outlive it and a second rotation would regenerate the same key."""
    from guardrails.adapters.keyvault import StorageKeysGateway
    from guardrails.errors import ArmTransient

    res = b.storage()
    with AzureEmulator([res]) as emu:
        before = {k["keyName"]: k["value"] for k in emu.storage_keys(res["id"])}
        emu.add_fault(method="POST", path_regex="regenerateKey", delay_ms=3000, times=1)
        keys = StorageKeysGateway(LocalTokenCredential(object_id=b.GUARDRAIL_OID), endpoint=emu.base_url,
                                  ca_bundle=emu.ca_path, timeout=10)
        started = time.monotonic()
        with pytest.raises(ArmTransient):
            keys.regenerate_key(res["id"], "key1", deadline=started + 1.0)
        assert time.monotonic() - started < 2.0
        time.sleep(2.6)                                # the hung request lands late, once
        after = {k["keyName"]: k["value"] for k in emu.storage_keys(res["id"])}
        assert after["key2"] == before["key2"] and after["key1"] != before["key1"]
        assert len([q for q in emu.requests if q["method"] == "POST"]) == 1


# ---- 5. nothing polls after the delivery's budget ---------------------------------------------
@pytest.mark.parametrize("res, body", [
    (b.storage(), {"properties": {"publicNetworkAccess": "Disabled"}}),           # 202 + Location
    (b.container_registry(), {"properties": {"adminUserEnabled": False}}),       # 201, ACR's way
], ids=["accepted-202", "created-201"])
def test_a_write_still_running_at_the_deadline_leaves_nothing_polling(res, body):
    with AzureEmulator([res], lro_seconds=5) as emu:
        gw = ArmGateway(LocalTokenCredential(object_id=b.GUARDRAIL_OID), endpoint=emu.base_url,
                        ca_bundle=emu.ca_path)
        started = time.monotonic()
        result = gw.patch_resource(res["id"], body, api_version=lookup_type(res["type"]).api_version,
                                   deadline=started + 1.6)
        assert result.state == "requested" and time.monotonic() - started < 2.0
        polls = len(_status_polls(emu))
        assert 1 <= polls <= 3, "Retry-After: 0 is not a busy loop: at least 0.5 s between status requests"
        time.sleep(1.0)
        assert len(_status_polls(emu)) == polls, "no status request after the write returned"
        stored = emu.get(res["id"])["properties"]
        assert all(stored.get(k) != v for k, v in body["properties"].items()), "still running: not applied yet"
