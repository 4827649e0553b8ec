"""Platform facts the catalogue holds (``guardrails/model/resource.py``), end to end: a registry
below Premium cannot disable public network access, so that fix is reported and the admin-user
fix is written on its own; absent settings that leave a resource open count as open. Azurite +
the HTTPS emulator; assertions on the emulator's resulting state and the audit rows."""

from __future__ import annotations

import pytest

from tests import builders as b
from tests.integration.test_ml_guardrail import user_client

pytestmark = pytest.mark.integration
ACR_API = "2025-04-01"


def test_a_standard_registry_has_its_admin_user_disabled_and_its_public_access_reported(harness):
    # GIVEN a Standard registry, public, with the admin user on
    acr = b.container_registry(sku="Standard")
    h = harness([acr])
    # WHEN its write event is handled
    row = h.deliver(b.write_event(acr["id"]))
    # THEN the admin user is off (the fix Azure accepts), public access is left and reported
    props = h.resource(acr["id"])["properties"]
    assert (props["adminUserEnabled"], props["publicNetworkAccess"]) == (False, "Enabled")
    (patch,) = h.writes()
    assert patch["status"] == 200 and patch["body"]["properties"] == {"adminUserEnabled": False}
    got = {v.rule: (v.outcome, v.message) for v in row.violations}
    assert got["admin-user-disabled"][0] == "remediated"
    outcome, message = got["public-network-access-disabled"]
    assert outcome == "violation" and "Premium" in message and "'Standard'" in message
    assert row.notify and row.verdict == "violation"


def test_a_premium_registry_still_has_its_public_access_disabled(harness):
    acr = b.container_registry()
    h = harness([acr])
    assert h.deliver(b.write_event(acr["id"])).verdict == "remediated"
    props = h.resource(acr["id"])["properties"]
    assert (props["adminUserEnabled"], props["publicNetworkAccess"]) == (False, "Disabled")


def test_the_emulator_refuses_what_a_standard_registry_refuses(harness):
    acr = b.container_registry(sku="Standard")
    h = harness([acr])
    from azure.core.rest import HttpRequest

    def patch(c, props: dict):
        resp = c.send_request(HttpRequest("PATCH", f"{h.emu.base_url}{acr['id']}?api-version={ACR_API}",
                                          json={"properties": props}))
        return resp.status_code, resp.json()

    with user_client(h) as c:
        status, body = patch(c, {"publicNetworkAccess": "Disabled"})
        assert status == 400 and body["error"]["code"] == "DisablingPublicNetworkAccessNotSupported"
        assert patch(c, {"adminUserEnabled": False})[0] == 200
    assert h.resource(acr["id"])["properties"]["publicNetworkAccess"] == "Enabled"


def test_a_storage_account_that_does_not_return_allow_blob_public_access_gets_it_set_false(harness):
    # GIVEN an account created before late 2023: private network, no allowBlobPublicAccess returned
    res = b.storage(pna="Disabled", blob=None)
    h = harness([res])
    row = h.deliver(b.write_event(res["id"]))
    # THEN it counts as anonymous access allowed, and false is written and read back
    assert row.verdict == "remediated"
    (v,) = row.violations
    assert (v.rule, v.before, v.after) == ("blob-public-access-off", True, False)
    assert h.resource(res["id"])["properties"]["allowBlobPublicAccess"] is False


def test_anonymous_pull_on_a_private_registry_is_turned_off(harness):
    acr = b.container_registry(pna="Disabled", admin=False)
    acr["properties"]["anonymousPullEnabled"] = True
    h = harness([acr])
    row = h.deliver(b.write_event(acr["id"]))
    assert row.verdict == "remediated" and [v.rule for v in row.violations] == ["anonymous-pull-disabled"]
    (patch,) = h.writes()
    assert patch["body"]["properties"] == {"anonymousPullEnabled": False}
    assert h.resource(acr["id"])["properties"]["anonymousPullEnabled"] is False


def test_a_site_network_rule_on_a_standard_registry_is_reported_and_the_admin_user_still_fixed(harness, tmp_path):
    """Network rules exist on Premium only: a site policy denying by default on a Standard registry
    is reported (as public network access is), never merged into the PATCH that disables the admin
    user: Azure refused that PATCH whole and the admin user stayed on, retried for 24 hours."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acr-network-rules.yaml").write_text(
        "id: acr-network-rules\nversion: 1\ndescription: registries deny by default\nmode: enforce\n"
        "selector: {resource_types: [Microsoft.ContainerRegistry/registries]}\nrules:\n"
        "  - id: network-default-deny\n    property: properties.networkRuleSet.defaultAction\n"
        "    expect: {equals: Deny}\n    action: {type: set-property, value: Deny}\n")
    acr = b.container_registry(sku="Standard")
    acr["properties"]["networkRuleSet"] = {"defaultAction": "Allow"}      # as a Standard registry answers
    h = harness([acr], extra_metadata=[site])

    row = h.deliver(b.write_event(acr["id"]))

    props = h.resource(acr["id"])["properties"]
    assert props["adminUserEnabled"] is False and props["networkRuleSet"] == {"defaultAction": "Allow"}
    (patch,) = h.writes()
    assert patch["status"] == 200 and patch["body"]["properties"] == {"adminUserEnabled": False}
    got = {v.rule: (v.outcome, v.message) for v in row.violations}
    assert got["admin-user-disabled"][0] == "remediated"
    outcome, message = got["network-default-deny"]
    assert outcome == "violation" and "Premium" in message
    assert row.verdict == "violation" and row.notify
