"""Where the s22 review found the local emulator unlike real Azure, end to end through the real SDK
clients: built-in roles outside the product's catalogue (real ARM serves every built-in), a vault
whose public network access is disabled (real Key Vault refuses a public caller with 403
``ForbiddenByConnection``), and the order Key Vault lists a secret's versions in (undocumented; a
captured answer is sorted by version id) with ``created`` in whole seconds."""

from __future__ import annotations

import copy
import json
import logging
import textwrap
import time
import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import (
    Permission, RoleAssignmentCreateParameters, RoleDefinition,
)

from guardrails.local.credential import LocalTokenCredential
from guardrails.local.emulator import AzureEmulator
from guardrails.model.roles import BUILTIN_ROLES
from tests import builders as b
from tests.integration.test_secret_guardrail import POLICY, VAULT, _bundle, _event, _val, planted  # noqa: F401

pytestmark = pytest.mark.integration

SUB_SCOPE = f"/subscriptions/{b.SUB}"
DEFS = "/providers/Microsoft.Authorization/roleDefinitions/"

# ---- 1. built-in roles outside the catalogue ------------------------------------------------------
# Both as ARM GET (api-version 2022-04-01) answers them at the tenant root, permissions as Microsoft
# publishes them ("Azure built-in roles": Storage, Security).
SAC = "17d1049b-9a84-46fb-8f53-869881c3d3ab"           # Storage Account Contributor
STORAGE_ACCOUNT_CONTRIBUTOR = {
    "properties": {
        "roleName": "Storage Account Contributor", "type": "BuiltInRole",
        "description": "Lets you manage storage accounts, including accessing storage account keys which provide "
                       "full access to storage account data.",
        "assignableScopes": ["/"],
        "permissions": [{"actions": ["Microsoft.Authorization/*/read", "Microsoft.Insights/alertRules/*",
                                     "Microsoft.Insights/diagnosticSettings/*",
                                     "Microsoft.Network/virtualNetworks/subnets/joinViaServiceEndpoint/action",
                                     "Microsoft.ResourceHealth/availabilityStatuses/read",
                                     "Microsoft.Resources/deployments/*",
                                     "Microsoft.Resources/subscriptions/resourceGroups/read",
                                     "Microsoft.Storage/storageAccounts/*", "Microsoft.Support/*"],
                         "notActions": [], "dataActions": [], "notDataActions": []}],
        "createdOn": "2015-06-02T00:18:27.354Z", "updatedOn": "2021-11-11T20:13:54.236Z",
        "createdBy": None, "updatedBy": None},
    "id": f"{DEFS}{SAC}", "type": "Microsoft.Authorization/roleDefinitions", "name": SAC}
KVDAA = "8b54135c-b56d-4d72-a534-26097cfdc8d8"          # Key Vault Data Access Administrator
KEY_VAULT_DATA_ACCESS_ADMINISTRATOR = {
    "properties": {
        "roleName": "Key Vault Data Access Administrator", "type": "BuiltInRole",
        "description": "Manage access to Azure Key Vault by adding or removing role assignments for the Key Vault "
                       "Administrator, Key Vault Certificates Officer, Key Vault Crypto Officer, Key Vault Crypto "
                       "Service Encryption User, Key Vault Crypto User, Key Vault Reader, Key Vault Secrets Officer, "
                       "or Key Vault Secrets User roles. Includes an ABAC condition to constrain role assignments.",
        "assignableScopes": ["/"],
        "permissions": [{"actions": ["Microsoft.Authorization/roleAssignments/write",
                                     "Microsoft.Authorization/roleAssignments/delete",
                                     "Microsoft.Authorization/*/read", "Microsoft.Resources/deployments/*",
                                     "Microsoft.Resources/subscriptions/resourceGroups/read",
                                     "Microsoft.Management/managementGroups/read", "Microsoft.Support/*",
                                     "Microsoft.KeyVault/vaults/*/read"],
                         "notActions": [], "dataActions": [], "notDataActions": []}],
        "createdOn": "2023-11-01T00:00:00.000Z", "updatedOn": "2024-01-01T00:00:00.000Z",
        "createdBy": None, "updatedBy": None},
    "id": f"{DEFS}{KVDAA}", "type": "Microsoft.Authorization/roleDefinitions", "name": KVDAA}
# a second Owner at subscription scope, so the last-Owner rail never enters these decisions
BREAK_GLASS_OWNER = b.role_assignment("Owner", b.BREAK_GLASS, name="00000000-0000-4000-8000-00000000b1ea")


def _authz(emu: AzureEmulator) -> AuthorizationManagementClient:
    return AuthorizationManagementClient(LocalTokenCredential(object_id=b.ALICE), b.SUB, base_url=emu.base_url,
                                         connection_verify=emu.ca_path, retry_total=0)


def test_a_seeded_builtin_outside_the_catalogue_is_served_like_arm_serves_it():
    assert SAC not in BUILTIN_ROLES
    with AzureEmulator(role_definitions=[STORAGE_ACCOUNT_CONTRIBUTOR]) as emu:
        client = _authz(emu)
        at_root = client.role_definitions.get("/", SAC)
        assert at_root.id == f"{DEFS}{SAC}" and at_root.role_type == "BuiltInRole"
        assert at_root.role_name == "Storage Account Contributor" and at_root.assignable_scopes == ["/"]
        assert "Microsoft.Storage/storageAccounts/*" in at_root.permissions[0].actions
        at_sub = client.role_definitions.get_by_id(f"{SUB_SCOPE}{DEFS}{SAC}")      # the id an assignment carries
        assert at_sub.id == f"{SUB_SCOPE}{DEFS}{SAC}" and at_sub.role_type == "BuiltInRole"
        assert client.role_definitions.get(b.rg_id(), SAC).id == f"{SUB_SCOPE}{DEFS}{SAC}"
        assert [d.name for d in client.role_definitions.list(
            SUB_SCOPE, filter="roleName eq 'Storage Account Contributor'")] == [SAC]
        assert SAC in {d.name for d in client.role_definitions.list(SUB_SCOPE, filter="type eq 'BuiltInRole'")}

        made = client.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), parameters=RoleAssignmentCreateParameters(
            role_definition_id=f"{SUB_SCOPE}{DEFS}{SAC}", principal_id=b.BOB, principal_type="User"))
        assert emu.get_role_assignment(made.id)["properties"]["roleDefinitionId"].endswith(SAC)

        with pytest.raises(HttpResponseError) as exc:                  # built-ins cannot be changed
            client.role_definitions.create_or_update(SUB_SCOPE, SAC, RoleDefinition(
                role_name="Storage Account Contributor", permissions=[Permission(actions=["*"])],
                assignable_scopes=[SUB_SCOPE]))
        assert exc.value.status_code == 400 and exc.value.error.code == "RoleDefinitionUpdateNotPermitted"
        with pytest.raises(ResourceExistsError):                       # nor their names taken
            client.role_definitions.create_or_update(SUB_SCOPE, str(uuid.uuid4()), RoleDefinition(
                role_name="storage account contributor", permissions=[Permission(actions=["*/read"])],
                assignable_scopes=[SUB_SCOPE]))
        assert emu.world()["roleDefinitions"] == [STORAGE_ACCOUNT_CONTRIBUTOR]   # a world round-trips
        client.close()


def test_seeding_a_builtin_refuses_what_arm_never_answers():
    with AzureEmulator() as emu:
        with pytest.raises(ValueError, match="catalogue"):             # the catalogue's own: always served
            emu.put_role_definition(BUILTIN_ROLES[b.ROLE_IDS["Owner"]].to_arm())
        narrow = copy.deepcopy(STORAGE_ACCOUNT_CONTRIBUTOR)
        narrow["properties"]["assignableScopes"] = [SUB_SCOPE]
        with pytest.raises(ValueError, match="assignableScopes"):
            emu.put_role_definition(narrow)


def _role_harness(harness, tmp_path, assignments, *, extra_policy: str | None = None):
    world = {"roleAssignments": [BREAK_GLASS_OWNER, *assignments],
             "roleDefinitions": [STORAGE_ACCOUNT_CONTRIBUTOR, KEY_VAULT_DATA_ACCESS_ADMINISTRATOR]}
    extra = []
    if extra_policy:
        d = tmp_path / "rbac"
        d.mkdir(exist_ok=True)
        (d / "extra.yaml").write_text(textwrap.dedent(extra_policy))
        extra.append(d)
    return harness([], world=world, extra_metadata=extra)


def _definition_reads(h) -> list[str]:
    return [q["path"] for q in h.arm_requests("GET") if "/roleDefinitions/" in q["path"]]


def test_storage_account_contributor_at_subscription_scope_is_judged_by_its_permissions_and_removed(harness, tmp_path):
    """The shipped least-privilege policy: Storage Account Contributor is not in ``privileged.roles``,
    but its permissions (``Microsoft.Storage/storageAccounts/*``) reach ``listKeys/action``, which
    ``custom_role_actions`` names since version 2 (a storage account's key opens all of its data;
    at subscription scope, every account's): removed. Its definition is read from ARM (the
    catalogue does not hold it), the path "built-ins the catalogue does not hold are judged by their
    permissions" exercised on ARM's own definition."""
    grant = b.role_assignment("", b.BOB, role_id=SAC)
    h = _role_harness(harness, tmp_path, [grant])
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "remediated", row.message
    (v,) = row.violations
    assert v.policy.startswith("rbac-least-privilege@5") and v.rule == "privileged-at-subscription"
    assert v.before["role_name"] == "Storage Account Contributor" and v.before["role_id"] == SAC
    assert h.emu.get_role_assignment(grant["id"]) is None                          # removed
    assert [q["method"] for q in h.writes()] == ["DELETE"]
    assert _definition_reads(h) == [f"{SUB_SCOPE}{DEFS}{SAC}"]                     # read from ARM, not the catalogue


def test_storage_account_contributor_on_one_resource_group_is_kept(harness, tmp_path):
    """Below subscription scope the privileged lists do not apply: the same role on one resource
    group (its accounts' keys only) stays."""
    grant = b.role_assignment("", b.BOB, role_id=SAC, scope=b.rg_id())
    h = _role_harness(harness, tmp_path, [grant])
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "compliant", row.message
    assert h.emu.get_role_assignment(grant["id"]) is not None and not h.writes()


def test_a_builtin_outside_the_catalogue_that_writes_role_assignments_is_removed(harness, tmp_path):
    grant = b.role_assignment("", b.BOB, role_id=KVDAA)
    h = _role_harness(harness, tmp_path, [grant])
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "remediated", row.message
    (v,) = row.violations
    assert v.rule == "privileged-at-subscription" and v.before["role_name"] == "Key Vault Data Access Administrator"
    assert h.emu.get_role_assignment(grant["id"]) is None
    assert h.emu.get_role_assignment(BREAK_GLASS_OWNER["id"]) is not None


# ---- 2. Key Vault behind "public network access: Disabled" ----------------------------------------
def _secret_client(emu: AzureEmulator, vault: str = VAULT) -> SecretClient:
    return SecretClient(vault_url=emu.vault_url(vault), credential=LocalTokenCredential(object_id=b.GUARDRAIL_OID),
                        connection_verify=emu.ca_path, verify_challenge_resource=False, retry_total=0)


def test_a_vault_with_public_network_access_disabled_refuses_a_public_caller_as_key_vault_does():
    value = _val()
    with AzureEmulator([b.key_vault(VAULT, pna="disabled")],
                       secrets=[_bundle("api-token", value)]) as emu:
        client = _secret_client(emu)
        with pytest.raises(HttpResponseError) as exc:
            client.get_secret("api-token")
        err = exc.value
        assert err.status_code == 403 and err.error.code == "Forbidden"
        assert err.error.innererror == {"code": "ForbiddenByConnection"}
        assert err.error.message.startswith("Public network access is disabled and request is not from a trusted "
                                            "service nor via an approved private link.")
        assert f"oid={b.GUARDRAIL_OID}" in err.error.message and f"Vault: {VAULT};location=eastus" in err.error.message
        with pytest.raises(HttpResponseError) as exc:                  # every data-plane call, lists too
            list(client.list_properties_of_secret_versions("api-token"))
        assert exc.value.status_code == 403
        assert len(emu.secret_versions(VAULT, "api-token")) == 1
        emu.vaults.private_access = True                           # the caller comes through a private endpoint
        assert client.get_secret("api-token").value == value
        client.close()


def _locked_vault_harness(harness, tmp_path, planted):
    d = tmp_path / "secrets"
    d.mkdir(exist_ok=True)
    (d / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY.format(mode="enforce")))
    world = {"secrets": [_bundle("api-token", planted["api"])]}
    return harness([b.key_vault(VAULT, pna="Enabled", rbac=True)], world=world, extra_metadata=[d])


def test_a_vault_the_guardrails_rotate_in_is_not_closed_without_a_private_endpoint(harness, tmp_path, planted, caplog):
    """keyvault-private would close the vault's public endpoint; the guardrails rotate secrets in it
    (a secrets policy governs it) and, with no private endpoint, reach it over that endpoint: the fix
    is held and the owner told. Closed by hand anyway, the vault refuses the rotation for the network
    (``network_forbidden``, not a missing role). With an approved private endpoint, the fix is made."""
    caplog.set_level(logging.DEBUG)
    h = _locked_vault_harness(harness, tmp_path, planted)
    vault_id = b.key_vault(VAULT)["id"]
    held = h.deliver(b.write_event(vault_id, "Microsoft.KeyVault/vaults"))
    (pna,) = [v for v in held.violations if v.rule == "public-network-access-disabled"]
    assert (held.verdict, pna.outcome, held.notify) == ("violation", "violation", True)
    assert "lock them out" in pna.message and h.writes() == []
    assert h.resource(vault_id)["properties"]["publicNetworkAccess"] == "Enabled"

    live = h.resource(vault_id)                       # someone closes it anyway
    live["properties"]["publicNetworkAccess"] = "Disabled"
    h.emu.put(live)
    event = _event(h, "SecretNearExpiry", "api-token")
    row = h.deliver(event)
    assert row.verdict == "failed" and row.reason == "network_forbidden", (row.verdict, row.reason, row.message)
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1                     # nothing rotated
    texts = [json.dumps(r.to_dict(), default=str) for r in (*h.recorder.rows, *h.stored_rows())]
    texts += [r.getMessage() for r in caplog.records]
    assert all(planted["api"] not in t for t in texts)                             # no secret value anywhere

    h.emu.vaults.private_access = True           # deployed with private networking: the same event, redelivered
    row = h.deliver(event)
    assert row.verdict == "remediated", row.message
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert len(versions) == 2 and versions[-1]["value"] != planted["api"]

    # a private endpoint is approved: the guardrail may now close the public endpoint (reopened meanwhile)
    live = h.resource(vault_id)
    live["properties"]["publicNetworkAccess"] = "Enabled"
    live["properties"]["privateEndpointConnections"] = [{
        "id": f"{vault_id}/privateEndpointConnections/pe-kv", "name": "pe-kv",
        "properties": {"privateEndpoint": {"id": b.rid("Microsoft.Network", "privateEndpoints", "pe-kv")},
                       "privateLinkServiceConnectionState": {"status": "Approved", "description": ""},
                       "provisioningState": "Succeeded"}}]
    h.emu.put(live)
    fixed = h.deliver(b.write_event(vault_id, "Microsoft.KeyVault/vaults"))
    assert [v.outcome for v in fixed.violations if v.rule == "public-network-access-disabled"] == ["remediated"]
    assert h.resource(vault_id)["properties"]["publicNetworkAccess"] == "Disabled"


# ---- 3. the order Key Vault lists versions in, and whole-second timestamps ------------------------
def test_versions_are_listed_by_version_id_not_creation_order():
    now = int(time.time())
    newest_first = ["f" * 32, "0" * 32, "8" * 32]                  # created in this order, a second apart
    bundles = [{"value": _val(), "id": f"https://{VAULT}.vault.azure.net/secrets/s/{v}",
                "attributes": {"enabled": True, "created": now - 10 + i, "updated": now - 10 + i}}
               for i, v in enumerate(newest_first)]
    with AzureEmulator(secrets=bundles) as emu:
        client = _secret_client(emu)
        listed = [p.version for p in client.list_properties_of_secret_versions("s", max_page_size=2)]
        assert listed == sorted(newest_first)
        assert client.get_secret("s").properties.version == "8" * 32               # the current: the newest
        made = client.set_secret("s", _val())
        assert made.properties.created_on.microsecond == 0                         # whole seconds
        assert [p.version for p in client.list_properties_of_secret_versions("s")] == sorted(
            newest_first + [made.properties.version])
        assert emu.secret_versions(VAULT, "s")[-1]["id"] == made.id                # creation order kept inside
        client.close()


def test_a_seeded_timestamp_is_whole_seconds_as_key_vault_keeps_it():
    with AzureEmulator() as emu:
        with pytest.raises(ValueError, match="whole seconds"):
            emu.put_secret({"value": "x", "id": f"https://{VAULT}.vault.azure.net/secrets/s/{'a' * 32}",
                            "attributes": {"enabled": True, "created": time.time()}})


def _same_second_harness(harness, tmp_path, planted):
    """``api-token`` with two versions created in the same second: the older enabled, the newest (the
    current one) disabled, their ids chosen so that listing by version id puts the newest first."""
    d = tmp_path / "secrets"
    d.mkdir(exist_ok=True)
    (d / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY.format(mode="enforce")))
    older = _bundle("api-token", planted["api"], version="f" * 32)
    newest = _bundle("api-token", _val(), version="0" * 32)
    newest["attributes"] = {**older["attributes"], "enabled": False}               # same created second
    h = harness([b.key_vault(VAULT, pna="Enabled", rbac=True)], world={"secrets": [older, newest]},
                extra_metadata=[d])
    assert [v["id"][-32:] for v in h.emu.secret_versions(VAULT, "api-token")] == ["f" * 32, "0" * 32]
    return h




def test_a_disabled_current_version_made_in_the_same_second_as_the_previous_one_is_not_rotated(
        harness, tmp_path, planted):
    h = _same_second_harness(harness, tmp_path, planted)
    row = h.deliver(_event(h, "SecretNearExpiry", "api-token", "0" * 32))
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2                     # no version written
    assert (row.verdict, row.reason) == ("ignored", "secret_disabled"), row.message


def test_the_older_version_of_a_same_second_pair_is_not_taken_for_the_current_one(harness, tmp_path, planted):
    """NearExpiry for the older, enabled version: the current one is the newer (disabled) version,
    so the event is already answered; taking the older for the current would rotate a secret
    someone took out of service."""
    h = _same_second_harness(harness, tmp_path, planted)
    row = h.deliver(_event(h, "SecretNearExpiry", "api-token", "f" * 32))
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2                     # no version written
    assert row.verdict == "compliant", (row.verdict, row.reason, row.message)
