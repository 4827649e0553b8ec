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


def test_the_value_sent_is_the_value_recorded_when_a_breaker_lets_only_one_policy_through(harness, tmp_path):
    """Diff review: the records took the merged value (Disabled) before the rails; with storage-
    private's breaker open only the perimeter policy went through and the write was merged again
    from its own target (SecuredByPerimeter): the row said Disabled, the resource held the other."""
    d = _dir(tmp_path, "{in: [Disabled, SecuredByPerimeter]}")
    (d / "storage-private.yaml").write_text(b.storage_private_policy(version=9, max_actions=1))
    first, res = b.storage(name="stfirst", blob=False), b.storage(name="stsecond", blob=False)
    h = harness([first, res], extra_metadata=[d])
    assert h.deliver(b.write_event(first["id"])).verdict == "remediated"     # storage-private's one fix
    row = h.deliver(b.write_event(res["id"]))
    by_policy = {v.policy.split("@")[0]: v for v in row.violations}
    assert by_policy["storage-private"].outcome == "dry_run"                  # its breaker is open
    sent = by_policy["storage-perimeter"]
    assert sent.outcome == "remediated"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == sent.after == "Disabled"
