"""Two policies fixing one property with different values (remediation review, session 22):
when one value satisfies both, it is sent; only a true conflict fails, and it takes no breaker
permit (Event Grid retries it for a day: each retry taking permits would open the breaker for the
subscription). Real SDK clients on Azurite and the HTTPS emulator; asserted on the emulator's state."""

from __future__ import annotations

import pytest

from guardrails.adapters.remediation_tables import TableBreakerStore
from tests import builders as b

pytestmark = pytest.mark.integration

PERIMETER = """\
id: storage-perimeter
version: 1
description: storage behind a network security perimeter or private (test policy)
mode: enforce
selector: {{resource_types: [Microsoft.Storage/storageAccounts]}}
rules:
  - id: public-network-access-closed
    property: properties.publicNetworkAccess
    expect: {expect}
    action: {{type: set-property, value: SecuredByPerimeter}}
"""


def _dir(tmp_path, expect: str):
    d = tmp_path / "extra"
    d.mkdir()
    (d / "storage-perimeter.yaml").write_text(PERIMETER.format(expect=expect))
    return d


def test_a_value_every_policy_accepts_is_sent(harness, tmp_path):
    res = b.storage(blob=False)
    h = harness([res], extra_metadata=[_dir(tmp_path, "{in: [Disabled, SecuredByPerimeter]}")])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated", row.message
    assert {(v.policy.split("@")[0], v.after, v.outcome) for v in row.violations} == {
        ("storage-private", "Disabled", "remediated"), ("storage-perimeter", "Disabled", "remediated")}
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert len(h.arm_requests("PATCH")) == 1


def test_a_true_conflict_fails_loudly_and_takes_no_permit(harness, tmp_path):
    res = b.storage(blob=False)
    h = harness([res], extra_metadata=[_dir(tmp_path, "{equals: SecuredByPerimeter}")])
    for _ in range(3):                                   # Event Grid's retries
        row = h.deliver(b.write_event(res["id"]))
        assert (row.verdict, row.reason) == ("failed", "conflicting_policies")
    assert h.writes() == []
    breakers = h.tables.table(h.tables.breakers_name)
    for policy in ("storage-private", "storage-perimeter"):
        pk, rk = TableBreakerStore._keys(policy, b.SUB)
        assert not list(breakers.query_entities("PartitionKey eq @pk", parameters={"pk": pk})), policy
