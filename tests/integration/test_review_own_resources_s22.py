"""The guardrails' own resources (``GUARDRAILS_OWN_RESOURCE_IDS``, set by ``infra/`` to the
deployment's storage account): findings are reported and the owner told, never fixed: disabling
public network access on its own storage would take the app down (host storage, the policy and
audit tables, dead-lettering). On Azurite + the HTTPS emulator with the real SDK clients."""

from __future__ import annotations

import pytest

from guardrails.errors import ConfigError
from guardrails.settings import Settings
from tests import builders as b

pytestmark = pytest.mark.integration


def test_the_own_storage_account_is_reported_not_fixed_by_event_and_by_sweep(harness):
    own, other = b.storage(name="stguardrailsown", blob=False), b.storage(name="stteam", blob=False)
    h = harness([own, other], env={"GUARDRAILS_OWN_RESOURCE_IDS": own["id"].upper()})
    row = h.deliver(b.write_event(own["id"]))
    assert (row.verdict, row.notify) == ("violation", True)
    assert "own resources" in row.violations[0].message
    assert h.resource(own["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    assert h.writes() == []
    assert h.deliver(b.write_event(other["id"])).verdict == "remediated"

    from guardrails import bootstrap
    from guardrails.ratelimit import FakeClock
    sweeper = bootstrap.build_sweeper(Settings.from_env(h.env), clock=FakeClock(), sleep=lambda s: None)
    summary = sweeper.run()
    assert summary.failed == 0
    assert h.resource(own["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    assert [w["path"] for w in h.writes()] == [other["id"]]       # the event's fix only


def test_the_setting_takes_top_level_resource_ids_only():
    ok = Settings.from_env({"GUARDRAILS_OWN_RESOURCE_IDS": f" {b.storage()['id']} , {b.key_vault('kvown')['id']}"})
    assert len(ok.own_resource_ids) == 2 and all(i == i.lower() for i in ok.own_resource_ids)
    for bad in ("stguardrails", f"/subscriptions/{b.SUB}/resourceGroups/rg", b.storage()["id"] + "/blobServices/default"):
        with pytest.raises(ConfigError, match="GUARDRAILS_OWN_RESOURCE_IDS"):
            Settings.from_env({"GUARDRAILS_OWN_RESOURCE_IDS": bad})
