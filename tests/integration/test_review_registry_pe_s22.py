"""ML registries list their private endpoint connections as ``registryPrivateEndpointConnections``
with ``registryPrivateLinkServiceConnectionState`` (api-version 2025-09-01, the documented PATCH
response in ``azure-samples``): "private endpoint first" must see them, or a registry with an
approved connection is never made private (``when_missing: notify``). Real SDK clients on the
HTTPS emulator; asserted on the emulator's state."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from guardrails.model.resource import ResourceSnapshot
from guardrails.resource_guardrail import approved_private_endpoints
from tests import builders as b

pytestmark = pytest.mark.integration

SAMPLE = (Path(__file__).resolve().parents[3] / "shared" / "azure-samples" / "arm"
          / "Microsoft.MachineLearningServices_registries.PATCH-response.2025-09-01.json")
POLICY = """\
id: aml-registry-private
version: 2
description: registries private, a private endpoint first (test variant)
mode: enforce
selector: {resource_types: [Microsoft.MachineLearningServices/registries]}
rules:
  - id: public-network-access-disabled
    property: properties.publicNetworkAccess
    expect: {equals: Disabled}
    action: {type: set-property, value: Disabled}
    private_endpoint: {required: true, when_missing: notify}
"""


def _connection(registry_id: str, status: str) -> dict:
    return {"id": f"{registry_id}/privateEndpointConnections/pe1", "location": "eastus",
            "properties": {"provisioningState": "Succeeded",
                           "privateEndpoint": {"id": f"/subscriptions/{b.SUB}/resourceGroups/rg-net/providers/"
                                                     "Microsoft.Network/privateEndpoints/pe1"},
                           "registryPrivateLinkServiceConnectionState": {"status": status, "description": "",
                                                                         "actionsRequired": "None"},
                           "groupIds": ["amlregistry"]}}


def test_the_documented_registry_body_has_one_approved_connection():
    if SAMPLE.exists():
        body = json.loads(SAMPLE.read_text())
    else:                                      # ../shared is beside the clone in CI; keep the shape here
        body = b.ml_registry()
        body["properties"]["registryPrivateEndpointConnections"] = [_connection(body["id"], "Approved")]
    assert approved_private_endpoints(ResourceSnapshot(body["id"], body["type"], body)) == 1


@pytest.mark.parametrize("status, verdict, pna", [("Approved", "remediated", "Disabled"),
                                                  ("Pending", "violation", "Enabled")])
def test_a_registry_is_made_private_once_its_connection_is_approved(harness, tmp_path, status, verdict, pna):
    d = tmp_path / "meta"
    d.mkdir()
    (d / "aml-registry-private.yaml").write_text(POLICY)
    reg = b.ml_registry()
    reg["properties"]["registryPrivateEndpointConnections"] = [_connection(reg["id"], status)]
    h = harness([copy.deepcopy(reg)], extra_metadata=[d])
    row = h.deliver(b.write_event(reg["id"]))
    assert row.verdict == verdict
    assert h.resource(reg["id"])["properties"]["publicNetworkAccess"] == pna
