"""``ArmGateway`` through the real ``azure-mgmt-resource`` client against the local emulator:
reads and writes hand back what ARM sent (REST-shaped body, ETag) without the SDK building a
``GenericResource`` model nobody reads, and long-running writes still poll with ARM's algorithms."""

from __future__ import annotations

import time

import pytest
from azure.mgmt.resource.resources import models

from guardrails.adapters.arm import ArmGateway
from guardrails.errors import ArmThrottled, ResourceNotFound
from guardrails.local.credential import LocalTokenCredential
from guardrails.local.emulator import AzureEmulator
from guardrails.model.resource import lookup_type

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/rg1"
ST = f"{RG}/providers/Microsoft.Storage/storageAccounts/st1"
MLREG = f"{RG}/providers/Microsoft.MachineLearningServices/registries/reg1"
V_ST = lookup_type("Microsoft.Storage/storageAccounts").api_version
V_REG = lookup_type("Microsoft.MachineLearningServices/registries").api_version


def _world() -> list[dict]:
    return [{"id": ST, "name": "st1", "type": "Microsoft.Storage/storageAccounts", "location": "eastus",
             "kind": "StorageV2", "sku": {"name": "Standard_LRS"}, "tags": {"owner": "ml"},
             "properties": {"publicNetworkAccess": "Enabled", "minimumTlsVersion": "TLS1_2"}},
            {"id": MLREG, "name": "reg1", "type": "Microsoft.MachineLearningServices/registries",
             "location": "eastus", "tags": {}, "sku": {"name": "Standard"},
             "properties": {"publicNetworkAccess": "Enabled", "regionDetails": []}}]


@pytest.fixture
def emu():
    with AzureEmulator(_world()) as e:
        yield e


@pytest.fixture
def gateway(emu):
    cred = LocalTokenCredential(object_id="6a1f5c3e-0d7b-4a8e-9c2f-51e0d1a9b7c4")
    return ArmGateway(cred, endpoint=emu.base_url, ca_bundle=emu.ca_path, sleep=lambda _s: None)


@pytest.fixture
def no_models(monkeypatch):
    """Building a GenericResource fails: the gateway must not need one."""
    built = []

    def refuse(cls, *_a, **_k):
        built.append(cls.__name__)
        raise AssertionError("the gateway built a GenericResource model")
    monkeypatch.setattr(models.GenericResource, "_deserialize", classmethod(refuse))
    yield
    assert built == []


def _put_private_registry(gateway, *, within: float):
    """A full PUT of the registry with public access disabled, If-Match its current etag."""
    snap = gateway.get_resource(MLREG, api_version=V_REG)
    body = {k: v for k, v in snap.body.items() if k not in ("etag", "systemData")}
    body["properties"] = {**body["properties"], "publicNetworkAccess": "Disabled"}
    return gateway.put_resource(MLREG, body, api_version=V_REG, etag=snap.etag, deadline=time.monotonic() + within)


def test_get_returns_the_rest_body_and_the_etag_header_without_a_model(emu, gateway, no_models):
    snap = gateway.get_resource(ST, api_version=V_ST)
    stored = emu.get(ST)
    assert snap.body["properties"] == stored["properties"]
    assert snap.body["tags"] == {"owner": "ml"}
    assert snap.type == "Microsoft.Storage/storageAccounts"
    assert snap.etag and snap.etag == stored["etag"]


def test_patch_lands_and_returns_done_without_a_model(emu, gateway, no_models):
    result = gateway.patch_resource(ST, {"properties": {"publicNetworkAccess": "Disabled"}}, api_version=V_ST,
                                    deadline=time.monotonic() + 10, correlation_id="c0ffee00-0000-4000-8000-000000000001")
    assert result.state == "done"
    assert emu.get(ST)["properties"]["publicNetworkAccess"] == "Disabled"
    patch = [q for q in emu.requests if q["method"] == "PATCH"]
    assert patch[-1]["correlation_id"] == "c0ffee00-0000-4000-8000-000000000001"


def test_a_long_running_put_is_polled_to_completion_within_the_deadline(emu, gateway, no_models):
    emu.lro_seconds = 0.3
    result = _put_private_registry(gateway, within=10)
    assert result.state == "done"
    assert emu.get(MLREG)["properties"]["publicNetworkAccess"] == "Disabled"
    polls = [q for q in emu.requests if q["method"] == "GET" and "operation" in q["path"].lower()]
    assert polls, "the write was answered 201/202 and polled"


def test_a_long_running_put_past_the_deadline_is_reported_requested(emu, gateway):
    emu.lro_seconds = 5
    result = _put_private_registry(gateway, within=0.5)
    assert result.state == "requested"


def test_read_errors_keep_their_meaning(emu, gateway):
    with pytest.raises(ResourceNotFound):
        gateway.get_resource(ST.replace("st1", "nope"), api_version=V_ST)
    emu.add_fault(method="GET", path_regex="storageAccounts/st1$", status=429, retry_after=30, times=1)
    with pytest.raises(ArmThrottled):
        gateway.get_resource(ST, api_version=V_ST, deadline=time.monotonic() + 2)
    emu.add_fault(method="GET", path_regex="storageAccounts/st1$", status=503, times=1)
    assert gateway.get_resource(ST, api_version=V_ST, deadline=time.monotonic() + 10).body["name"] == "st1"
