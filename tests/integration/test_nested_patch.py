"""A fix below a member of ``properties`` on a PATCH type (Storage's ``networkAcls``) keeps the
member's other settings: the emulator replaces ``networkAcls`` whole on PATCH, as Storage does, so
what the guardrail sends is what the account ends up with."""

from __future__ import annotations

import textwrap

import pytest

from tests import builders as b

pytestmark = pytest.mark.integration

POLICY = """\
id: storage-firewall
version: 1
description: Storage firewalls deny by default (test policy).
mode: enforce
contact: ml-platform@contoso.com
selector:
  resource_types: [Microsoft.Storage/storageAccounts]
rules:
  - id: default-action-deny
    property: properties.networkAcls.defaultAction
    expect: {equals: Deny}
    action: {type: set-property, value: Deny}
"""

ACLS = {"bypass": "AzureServices", "defaultAction": "Allow",
        "ipRules": [{"value": "203.0.113.0/24", "action": "Allow"}],
        "virtualNetworkRules": [{"id": b.rid("Microsoft.Network", "virtualNetworks", "vnet-hub") + "/subnets/ml",
                                 "action": "Allow", "state": "Succeeded"}]}


def test_a_nested_fix_keeps_the_firewall_rules_and_bypass(harness, tmp_path):
    d = tmp_path / "meta"
    d.mkdir()
    (d / "storage-firewall.yaml").write_text(textwrap.dedent(POLICY))
    res = b.storage(pna="Disabled", blob=False)
    res["properties"]["networkAcls"] = dict(ACLS)
    h = harness([res], extra_metadata=[d])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated", row.message
    acls = h.resource(res["id"])["properties"]["networkAcls"]
    assert acls["defaultAction"] == "Deny"
    assert acls["ipRules"] == ACLS["ipRules"] and acls["virtualNetworkRules"] == ACLS["virtualNetworkRules"]
    assert acls["bypass"] == "AzureServices"


def test_the_emulator_replaces_network_acls_whole_on_patch(harness):
    """What the test above relies on: a bare defaultAction PATCH loses the rules."""
    import time

    res = b.storage(pna="Disabled", blob=False)
    res["properties"]["networkAcls"] = dict(ACLS)
    h = harness([res])
    api = "2025-06-01"
    h.service.arm.patch_resource(res["id"], {"properties": {"networkAcls": {"defaultAction": "Deny"}}},
                                 api_version=api, deadline=time.monotonic() + 10)
    assert h.resource(res["id"])["properties"]["networkAcls"] == {"defaultAction": "Deny"}


def test_a_nested_fix_on_a_reused_read_reads_the_member_again(harness, tmp_path):
    """A burst's later event reuses the first decision's read (up to
    ``GUARDRAILS_SNAPSHOT_REUSE_SECONDS``). Sending ``networkAcls`` whole from that read would
    drop an IP rule an admin added since; the member is read again right before the PATCH."""
    import copy
    d = tmp_path / "meta"
    d.mkdir()
    (d / "storage-firewall.yaml").write_text(textwrap.dedent(POLICY))
    res = b.storage(pna="Disabled", blob=False)
    res["properties"]["networkAcls"] = copy.deepcopy(ACLS)
    h = harness([res], extra_metadata=[d], env={"GUARDRAILS_CLOCK_SKEW_SECONDS": "0"})
    burst = b.write_event(res["id"])                       # happened before the read below
    h.service.check_resource(res["id"], remediate=False)   # reads (and keeps) the violating state
    live = h.resource(res["id"])
    added = {"value": "198.51.100.7", "action": "Allow"}
    live["properties"]["networkAcls"]["ipRules"].append(added)   # the admin, no event yet
    h.emu.put(live)
    h.emu.clear_requests()
    row = h.deliver(burst)
    assert row.verdict == "remediated", row.message
    acls = h.resource(res["id"])["properties"]["networkAcls"]
    assert acls["defaultAction"] == "Deny" and added in acls["ipRules"] and len(acls["ipRules"]) == 2
    assert [q["method"] for q in h.arm_requests()] == ["GET", "PATCH", "GET"]
