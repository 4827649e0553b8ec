"""The resource guardrail end to end: real event objects -> trigger -> Table Storage policy ->
real SDK -> HTTPS emulator -> audit table. Every test asserts the emulator's resulting state
and the audit rows, not which methods were called."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from tests import builders as b

pytestmark = pytest.mark.integration


def _v(row, rule):
    return next(v for v in row.violations if v.rule == rule)


# ---- every baseline row flipped -> fixed, read back, audited ---------------------------------
@pytest.mark.parametrize("make, props", [
    (b.workspace, {"publicNetworkAccess": "Disabled"}),
    (b.storage, {"publicNetworkAccess": "Disabled", "allowBlobPublicAccess": False}),
    (b.key_vault, {"publicNetworkAccess": "Disabled"}),
    (b.container_registry, {"publicNetworkAccess": "Disabled", "adminUserEnabled": False}),
], ids=["workspace", "storage", "keyvault", "acr"])
def test_public_resource_is_patched_back_and_audited(harness, make, props):
    # GIVEN a resource someone made public
    res = make()
    h = harness([res])
    # WHEN its write event arrives
    row = h.deliver(b.write_event(res["id"]))
    # THEN the emulator's resource really holds the private values again
    live = h.resource(res["id"])["properties"]
    for k, v in props.items():
        assert live[k] == v
    assert row.verdict == "remediated"
    assert {v.property.split(".")[-1] for v in row.violations} == set(props)
    assert all(v.outcome == "remediated" for v in row.violations)
    # one read, one PATCH with a REST-shaped body, one confirming read
    assert [q["method"] for q in h.arm_requests()] == ["GET", "PATCH", "GET"]
    patch = h.writes()[0]
    assert patch["body"] == {"properties": props}
    assert row.actor.upn == "alice@contoso.com" and row.actor.object_id == b.ALICE
    # and the row is in the audit table, in the day partition and in the resource's history
    stored = [r for r in h.stored_rows() if r.delivery_id == row.delivery_id]
    assert len(stored) == 1 and stored[0].verdict == "remediated"
    history = h.service.audit.inner.read_resource(res["id"])
    assert [r.delivery_id for r in history] == [row.delivery_id]


def test_ml_registry_is_fixed_with_a_full_put_and_etag(harness):
    # GIVEN a public ML registry (its PATCH only takes tags/identity/sku)
    res = b.ml_registry()
    h = harness([res])
    etag_before = h.resource(res["id"])["etag"]
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    live = h.resource(res["id"])
    assert live["properties"]["publicNetworkAccess"] == "Disabled"
    # the rest of the registry survived the full PUT
    assert live["properties"]["intellectualPropertyPublisher"] == "contoso"
    assert live["sku"] == res["sku"] and live["tags"] == res["tags"]
    (put,) = h.writes()
    assert put["method"] == "PUT"
    assert "id" not in put["body"] and "systemData" not in put["body"]
    assert live["etag"] != etag_before


def test_key_vault_rbac_off_is_notify_only_while_public_access_is_fixed(harness, caplog):
    res = b.key_vault(pna="Enabled", rbac=False)
    h = harness([res])
    with caplog.at_level("WARNING", logger="guardrails"):
        row = h.deliver(b.write_event(res["id"]))
    # the most serious outcome wins: a notify-only violation outranks the remediation
    assert row.verdict == "violation"
    assert row.notify is True
    assert _v(row, "public-network-access-disabled").outcome == "remediated"
    rbac = [v for v in row.violations if v.property.endswith("enableRbacAuthorization")]
    assert rbac and rbac[0].outcome == "violation"
    live = h.resource(res["id"])["properties"]
    assert live["publicNetworkAccess"] == "Disabled" and live["enableRbacAuthorization"] is False
    notes = [json.loads(r.getMessage()) for r in caplog.records if "guardrail_violation_notify" in r.getMessage()]
    assert notes and notes[0]["owner"] == "ml-platform@contoso.com"


def test_compute_node_public_ip_is_reported_never_written(harness):
    res = b.compute(node_public_ip=None)     # absent means true: public IPs are provisioned
    h = harness([res])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "violation" and row.notify
    assert row.violations[0].before is True
    assert h.writes() == []


def test_missing_public_network_access_takes_the_platform_default_and_is_set_explicitly(harness):
    res = b.workspace(pna=None)
    h = harness([res])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    assert row.violations[0].before == "Enabled"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_compliant_resource_costs_one_read_and_no_write(harness):
    res = b.storage(pna="Disabled", blob=False)
    h = harness([res])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "compliant" and row.violations == []
    assert row.policies == ["storage-private@1"]
    assert [q["method"] for q in h.arm_requests()] == ["GET"]


# ---- modes, exemptions, several policies -----------------------------------------------------
def _policy(tmp_path, name, text):
    d = tmp_path / "extra"
    d.mkdir(exist_ok=True)
    (d / f"{name}.yaml").write_text(textwrap.dedent(text))
    return d


def test_audit_mode_records_dry_run_and_writes_nothing(harness, tmp_path):
    extra = _policy(tmp_path, "storage-private", """
        id: storage-private
        version: 2
        description: audit only while private endpoints are rolled out
        mode: audit
        selector: {resource_types: [Microsoft.Storage/storageAccounts]}
        rules:
          - id: public-network-access-disabled
            property: properties.publicNetworkAccess
            expect: {equals: Disabled}
            action: {type: set-property, value: Disabled}
        """)
    res = b.storage()
    h = harness([res], extra_metadata=[extra])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "dry_run"
    assert row.violations[0].policy == "storage-private@2"
    assert row.violations[0].after == "Disabled"
    assert h.writes() == []
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"


def _exempt_storage(tmp_path, scope, expires):
    return _policy(tmp_path, "storage-private", f"""
        id: storage-private
        version: 3
        description: storage private, with an exemption
        mode: enforce
        selector: {{resource_types: [Microsoft.Storage/storageAccounts]}}
        rules:
          - id: public-network-access-disabled
            property: properties.publicNetworkAccess
            expect: {{equals: Disabled}}
            action: {{type: set-property, value: Disabled}}
        exemptions:
          - scope: {scope}
            reason: public dataset mirror, reviewed by secops
            owner: alice@contoso.com
            expires: {expires}
        """)


def test_active_exemption_prevents_the_write(harness, tmp_path):
    res = b.storage(rg="rg-public-data", blob=False)
    h = harness([res], extra_metadata=[_exempt_storage(tmp_path, b.rg_id("rg-public-data"), "2099-01-01T00:00:00Z")])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "compliant"
    assert row.violations[0].outcome == "exempted"
    assert h.writes() == []


def test_expired_exemption_no_longer_applies(harness, tmp_path):
    res = b.storage(rg="rg-public-data", blob=False)
    h = harness([res], extra_metadata=[_exempt_storage(tmp_path, b.rg_id("rg-public-data"), "2020-01-01T00:00:00Z")])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_exemption_scope_is_segment_wise_not_a_string_prefix(harness, tmp_path):
    # the exemption names rg-public; the resource lives in rg-public-data
    res = b.storage(rg="rg-public-data", blob=False)
    h = harness([res], extra_metadata=[_exempt_storage(tmp_path, b.rg_id("rg-public"), "2099-01-01T00:00:00Z")])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"


def test_two_matching_policies_are_both_recorded(harness, tmp_path):
    extra = _policy(tmp_path, "prod-storage-tls", """
        id: prod-storage-tls
        version: 1
        description: production storage keeps TLS 1.2 and shared keys off
        mode: enforce
        selector:
          resource_types: [Microsoft.Storage/storageAccounts]
          tags: {environment: prod}
        rules:
          - id: shared-key-off
            property: properties.allowSharedKeyAccess
            expect: {equals: false}
            action: {type: set-property, value: false}
        """)
    res = b.storage(blob=False)
    h = harness([res], extra_metadata=[extra])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    assert {v.policy for v in row.violations} == {"storage-private@1", "prod-storage-tls@1"}
    assert sorted(row.policies) == ["prod-storage-tls@1", "storage-private@1"]
    live = h.resource(res["id"])["properties"]
    assert live["publicNetworkAccess"] == "Disabled" and live["allowSharedKeyAccess"] is False
    assert len(h.arm_requests("PATCH")) == 1     # one write carries both fixes


# ---- loops, duplicates, deletions, schemas ---------------------------------------------------
def test_the_guardrails_own_write_comes_back_and_is_ignored_without_arm_calls(harness):
    res = b.storage()
    h = harness([res])
    h.deliver(b.write_event(res["id"]))
    h.emu.clear_requests()
    (row,) = h.deliver_emitted()       # the event the emulator emitted for our PATCH
    assert row.verdict == "ignored" and row.reason == "own_write"
    assert row.actor.object_id == b.GUARDRAIL_OID
    assert h.emu.requests == []


def test_duplicate_delivery_is_recorded_and_writes_once(harness):
    res = b.storage()
    h = harness([res])
    event = b.write_event(res["id"])
    first = h.deliver(event)
    second = h.deliver(event)
    assert (first.verdict, second.verdict) == ("remediated", "duplicate")
    assert len(h.writes()) == 1
    assert [q["method"] for q in h.arm_requests()] == ["GET", "PATCH", "GET"]


def test_resource_gone_is_ignored(harness):
    h = harness([])
    row = h.deliver(b.write_event(b.storage()["id"]))
    assert (row.verdict, row.reason) == ("ignored", "resource_not_found")


@pytest.mark.parametrize("event_type", [
    "Microsoft.Resources.ResourceWriteFailure", "Microsoft.Resources.ResourceDeleteSuccess",
    "Microsoft.Resources.ResourceActionSuccess"])
def test_non_write_success_events_are_ignored_without_arm_calls(harness, event_type):
    res = b.storage()
    h = harness([res])
    row = h.deliver(b.write_event(res["id"], event_type=event_type))
    assert row.verdict == "ignored"
    assert h.emu.requests == []


def test_cloudevents_delivery_is_handled_the_same(harness):
    res = b.container_registry()
    h = harness([res])
    row = h.deliver(b.cloud_event(res["id"]))
    assert row.verdict == "remediated"
    assert h.resource(res["id"])["properties"]["adminUserEnabled"] is False


def test_child_resource_is_matched_exactly_not_by_prefix(harness):
    # a blob container's id starts with its storage account's id
    acct = b.storage()
    h = harness([acct])
    container = acct["id"] + "/blobServices/default/containers/raw"
    row = h.deliver(b.write_event(container, "Microsoft.Storage/storageAccounts/blobServices/containers"))
    assert (row.verdict, row.reason) == ("ignored", "not_covered")
    assert h.emu.requests == []
    assert h.resource(acct["id"])["properties"]["publicNetworkAccess"] == "Enabled"


def test_non_ascii_resource_group_and_lower_case_provider_round_trip(harness):
    res = b.storage(name="stdonnees", rg="rg-données-équipe")
    res["id"] = res["id"].replace("Microsoft.Storage", "microsoft.storage")
    h = harness([res])
    row = h.deliver(b.write_event(res["id"], "Microsoft.Storage/storageAccounts"))
    assert row.verdict == "remediated"
    assert row.resource_id == res["id"]
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert "rg-données-équipe" in h.writes()[0]["path"]


# ---- invalid input: audited, zero ARM calls, never raises ------------------------------------
_GOOD = b.storage()["id"]


@pytest.mark.parametrize("mutate, reason", [
    (lambda e: e.pop("data"), "missing_data"),
    (lambda e: e.update(data="not an object"), "wrong_type"),
    (lambda e: e.update(data=[1, 2, 3]), "wrong_type"),
    (lambda e: e["data"].pop("resourceUri"), "missing_field"),
    (lambda e: e["data"].update(resourceUri=12345), "wrong_type"),
    (lambda e: e["data"].update(resourceUri=_GOOD + "?api-version=2020-01-01"), "invalid_resource_id"),
    (lambda e: e["data"].update(resourceUri=_GOOD + "/../../../other"), "invalid_resource_id"),
    (lambda e: e["data"].update(resourceUri="/subscriptions/not-a-guid/resourceGroups/rg"), "invalid_resource_id"),
    (lambda e: e["data"].update(resourceUri=_GOOD.replace("stmlprod", "st<script>alert(1)</script>")), "invalid_resource_id"),
    (lambda e: e["data"].update(resourceUri=_GOOD + "%2F..%2Fx"), "invalid_resource_id"),
    (lambda e: e["data"].update(claims="eyJhbGciOi..."), "wrong_type"),
    (lambda e: e["data"].update(padding="x" * 100_000), "oversized"),
], ids=["no-data", "data-string", "data-list", "no-resourceUri", "resourceUri-int", "query-injection",
        "dot-dot", "bad-subscription", "script", "percent-encoded", "claims-string", "oversized"])
def test_invalid_event_data_is_audited_as_invalid_with_zero_arm_calls(harness, mutate, reason):
    h = harness([b.storage()])
    event = b.write_event(_GOOD)
    mutate(event)
    row = h.deliver(event)
    assert (row.verdict, row.reason) == ("invalid", reason)
    assert row.message
    assert h.emu.requests == []
    assert [r.delivery_id for r in h.stored_rows()] == [row.delivery_id]


# ---- policy lives in the table ---------------------------------------------------------------
def test_policy_change_in_the_table_applies_after_the_ttl_without_restart(harness, tmp_path):
    res = b.storage(blob=False)
    h = harness([res], env={"GUARDRAILS_POLICY_TTL_SECONDS": "1"})
    assert h.deliver(b.write_event(res["id"])).verdict == "remediated"
    # an admin switches the policy to audit mode and syncs; the worker is not restarted
    from guardrails.sync import metadata_dirs, sync_metadata
    extra = _policy(tmp_path, "storage-private", """
        id: storage-private
        version: 2
        description: audit only
        mode: audit
        selector: {resource_types: [Microsoft.Storage/storageAccounts]}
        rules:
          - id: public-network-access-disabled
            property: properties.publicNetworkAccess
            expect: {equals: Disabled}
            action: {type: set-property, value: Disabled}
        """)
    sync_metadata(h.repo, metadata_dirs([extra]))
    h.emu.put({**h.resource(res["id"]), "properties": {**h.resource(res["id"])["properties"], "publicNetworkAccess": "Enabled"}})
    time.sleep(1.1)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "dry_run" and row.violations[0].policy == "storage-private@2"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"


def test_invalid_metadata_is_refused_and_the_table_is_unchanged(harness, tmp_path):
    from guardrails.errors import MetadataValidationError
    from guardrails.sync import metadata_dirs, sync_metadata
    h = harness([])
    before = h.repo.list_documents()
    bad = _policy(tmp_path, "storage-private", """
        id: storage-private
        version: 9
        description: broken
        mode: enforce
        selector: {resource_types: [Microsoft.Storage/storageAccount]}
        rules: []
        """)
    with pytest.raises(MetadataValidationError) as err:
        sync_metadata(h.repo, metadata_dirs([bad]))
    assert "storage-private" in str(err.value)
    assert h.repo.list_documents() == before


def test_a_user_token_carrying_the_guardrails_app_id_is_decided_on_azurite_and_the_emulator(harness):
    # the object id decides: a delegated token with the guardrail's app id is a user's write
    res = b.storage(pna="Enabled", blob=False)
    h = harness([res])
    ev = b.write_event(res["id"], actor=b.claims(b.ALICE, app_id=b.GUARDRAIL_OID, upn="alice@contoso.com"))
    row = h.deliver(ev)
    assert row.verdict == "remediated"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_an_event_type_in_another_case_is_decided_through_the_trigger(harness):
    res = b.storage(pna="Enabled", blob=False)
    h = harness([res])
    row = h.deliver(b.write_event(res["id"], event_type="microsoft.resources.resourcewritesuccess"))
    assert (row.verdict, row.event_type) == ("remediated", "Microsoft.Resources.ResourceWriteSuccess")
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
