"""Session 25: a resource fix ARM refuses (or the resource gone before it) gives its circuit-breaker
permit back, as the ML guardrail's do: the breaker counts remediations made, and refused writes
had opened it for a whole subscription with nothing fixed. On Azurite + the HTTPS emulator with
the real SDK clients, through the trigger function."""

from __future__ import annotations

import pytest

from tests import builders as b

pytestmark = pytest.mark.integration

POLICY = """
id: storage-private
version: 50
description: storage private, at most 2 fixes an hour per subscription
mode: enforce
selector: {resource_types: [Microsoft.Storage/storageAccounts]}
breaker: {max_actions: 2, window_seconds: 3600}
rules:
  - id: public-network-access-disabled
    property: properties.publicNetworkAccess
    expect: {equals: Disabled}
    action: {type: set-property, value: Disabled}
"""


def test_refused_fixes_give_their_permits_back_and_the_breaker_stays_closed(harness, tmp_path):
    d = tmp_path / "extra"
    d.mkdir()
    (d / "storage-private.yaml").write_text(POLICY)
    accounts = [b.storage(name=f"stacct{i}", blob=False) for i in range(3)]
    refused = {"method": "PATCH", "path_regex": "storageAccounts/stacct0", "status": 400, "times": 3}
    h = harness(accounts, extra_metadata=[d], world={"faults": [refused]})
    # three changes to one account, each fix refused by the resource provider (400: never made)
    for _ in range(3):
        row = h.deliver(b.write_event(accounts[0]["id"]))
        assert row.verdict == "failed"
    assert h.resource(accounts[0]["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    # the breaker (2 an hour) counted none of them: the next two accounts are fixed
    for acct in accounts[1:]:
        row = h.deliver(b.write_event(acct["id"]))
        assert (row.verdict, row.reason) == ("remediated", ""), row.message
        assert h.resource(acct["id"])["properties"]["publicNetworkAccess"] == "Disabled"
