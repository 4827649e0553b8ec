"""The built-in role catalogue, role definition bodies and ARM's action wildcards."""

from __future__ import annotations

import pytest

from guardrails.model.roles import (
    BUILTIN_ROLES, RoleDefinition, action_matches, builtin_by_id, builtin_by_name, grants, grants_pattern,
    normalize_guid, role_guid,
)

# name -> GUID as published in Microsoft's "Azure built-in roles" reference
PUBLISHED = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Key Vault Administrator": "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "Key Vault Contributor": "f25e0fa2-a7c8-4377-a976-54943a77a395",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "AcrPush": "8311e382-0749-4cb8-b61a-304f252e45ec",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
    "AzureML Compute Operator": "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815",
}
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"


# ---------------------------------------------------------------- catalogue

def test_catalogue_holds_the_published_guids_and_names():
    # GIVEN the published list WHEN each name is looked up THEN the catalogue agrees exactly
    assert {r.role_name: r.id for r in BUILTIN_ROLES.values()} == PUBLISHED
    for name, guid in PUBLISHED.items():
        role = BUILTIN_ROLES[guid]
        assert role.role_name == name and role.role_type == "BuiltInRole" and role.assignable_scopes == ("/",)
        assert builtin_by_name(name.upper()) is role and builtin_by_name(f"  {name.lower()} ") is role
        assert role.description


def test_unknown_names_and_ids_are_not_in_the_catalogue():
    assert builtin_by_name("Ownr") is None and builtin_by_name("") is None
    assert builtin_by_id("00000000-0000-0000-0000-000000000000") is None
    assert builtin_by_id("not-a-guid") is None


def test_published_permissions_of_the_privileged_roles():
    owner, contrib, uaa = (builtin_by_name(n) for n in ("Owner", "Contributor", "User Access Administrator"))
    assert owner.actions == ("*",) and owner.not_actions == ()
    assert contrib.actions == ("*",) and "Microsoft.Authorization/*/Write" in contrib.not_actions
    assert uaa.actions == ("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*")
    kv = builtin_by_name("Key Vault Administrator")
    assert kv.data_actions == ("Microsoft.KeyVault/vaults/*",)


# ---------------------------------------------------------------- ids

@pytest.mark.parametrize("form", [
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "8E3AF657-A8FF-443C-A75C-2FE8C4BCB635",
    "8e3af657a8ff443ca75c2fe8c4bcb635",
    "/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/8E3AF657-A8FF-443C-A75C-2FE8C4BCB635",
    "/providers/Microsoft.Management/managementGroups/mg1/providers/Microsoft.Authorization/roleDefinitions/"
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
])
def test_role_guid_reads_every_id_form(form):
    assert role_guid(form) == "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
    assert builtin_by_id(form).role_name == "Owner"


def test_role_guid_rejects_an_id_without_a_guid():
    with pytest.raises(ValueError, match="does not end in a GUID"):
        role_guid("/providers/Microsoft.Authorization/roleDefinitions/owner")
    assert normalize_guid("{8E3AF657-A8FF-443C-A75C-2FE8C4BCB635}") == "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
    assert normalize_guid(42) is None


# ---------------------------------------------------------------- wildcard matching

@pytest.mark.parametrize("pattern, action, expected", [
    ("*", "Microsoft.Compute/virtualMachines/write", True),
    ("Microsoft.Authorization/*", "Microsoft.Authorization/roleAssignments/write", True),
    ("Microsoft.Authorization/*", "Microsoft.AuthorizationX/roleAssignments/write", False),
    ("*/read", "Microsoft.Storage/storageAccounts/read", True),
    ("*/read", "Microsoft.Storage/storageAccounts/write", False),
    ("Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/secrets/read", True),
    ("Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/read", False),
    ("microsoft.keyvault/VAULTS/*/READ", "Microsoft.KeyVault/vaults/keys/versions/read", True),
    ("Microsoft.Authorization/*/Write", "microsoft.authorization/roleassignments/write", True),
    ("Microsoft.Storage/storageAccounts/read", "Microsoft.Storage/storageAccounts/read", True),
    ("Microsoft.Storage/storageAccounts.read", "Microsoft.Storage/storageAccountsXread", False),  # '.' is literal
])
def test_action_matches_uses_arm_wildcards_case_insensitively(pattern, action, expected):
    assert action_matches(pattern, action) is expected


def test_grants_honours_not_actions():
    # GIVEN Contributor (* minus Microsoft.Authorization/*/Write) and User Access Administrator
    contrib, uaa = builtin_by_name("Contributor"), builtin_by_name("User Access Administrator")
    # THEN Contributor writes resources but not role assignments; UAA the other way round
    assert grants(contrib, "Microsoft.Compute/virtualMachines/write")
    assert not grants(contrib, "Microsoft.Authorization/roleAssignments/write")
    assert grants(uaa, "Microsoft.Authorization/roleAssignments/write")
    assert not grants(uaa, "Microsoft.Compute/virtualMachines/write")
    assert grants(uaa, "Microsoft.Compute/virtualMachines/read")
    # AND AzureML Data Scientist cannot write the workspace itself
    ds = builtin_by_name("AzureML Data Scientist")
    assert grants(ds, "Microsoft.MachineLearningServices/workspaces/jobs/write")
    assert not grants(ds, "Microsoft.MachineLearningServices/workspaces/write")
    assert not grants(ds, "Microsoft.MachineLearningServices/workspaces/computes/ci1/write")


def test_grants_pattern_matches_both_ways_and_honours_not_actions():
    kv = builtin_by_name("Key Vault Contributor")
    contrib = builtin_by_name("Contributor")
    rbac = builtin_by_name("Role Based Access Control Administrator")
    # role pattern covers the policy action
    assert grants_pattern(kv, "Microsoft.KeyVault/vaults/accessPolicies/write")
    # policy pattern covers the role action
    assert grants_pattern(rbac, "Microsoft.Authorization/*/write")
    # notActions remove it
    assert not grants_pattern(contrib, "Microsoft.Authorization/*/write")
    assert not grants_pattern(builtin_by_name("Reader"), "Microsoft.Authorization/*/write")
    custom = RoleDefinition("11111111-1111-1111-1111-111111111111", "kv ops", "CustomRole",
                            actions=("Microsoft.KeyVault/*",),
                            not_actions=("Microsoft.KeyVault/vaults/accessPolicies/*",))
    assert not grants_pattern(custom, "Microsoft.KeyVault/vaults/accessPolicies/write")


# ---------------------------------------------------------------- ARM bodies

def test_to_arm_is_the_rest_shape_and_round_trips():
    # GIVEN a built-in WHEN rendered THEN it is ARM's GET body, at tenant level or under a scope
    owner = builtin_by_name("Owner")
    body = owner.to_arm()
    assert body["id"] == "/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
    assert body["name"] == owner.id and body["type"] == "Microsoft.Authorization/roleDefinitions"
    assert body["properties"]["roleName"] == "Owner" and body["properties"]["type"] == "BuiltInRole"
    assert body["properties"]["permissions"] == [
        {"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}]
    assert owner.to_arm(f"/subscriptions/{SUB}")["id"] == (
        f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{owner.id}")
    for role in BUILTIN_ROLES.values():
        assert RoleDefinition.from_arm(role.to_arm()) == role


def test_custom_role_lives_under_its_first_assignable_scope():
    custom = RoleDefinition("22222222-2222-2222-2222-222222222222", "Ops", "CustomRole", actions=("*",),
                            assignable_scopes=(f"/subscriptions/{SUB}/resourceGroups/rg",),
                            created_on="2026-01-01T00:00:00Z")
    body = custom.to_arm()
    assert body["id"].startswith(f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/")
    assert body["properties"]["createdOn"] == "2026-01-01T00:00:00Z"
    assert RoleDefinition.from_arm(body) == custom


def test_from_arm_is_tolerant_of_missing_lists_and_flattened_bodies():
    # GIVEN a custom role body with no notActions/dataActions and the CLI's flattened shape
    rest = {"id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/"
                  "33333333-3333-3333-3333-333333333333",
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {"roleName": "Everything", "type": "CustomRole",
                           "permissions": [{"actions": ["*"]}]}}
    flat = {"name": "33333333-3333-3333-3333-333333333333", "roleName": "Everything", "roleType": "CustomRole",
            "type": "Microsoft.Authorization/roleDefinitions", "permissions": [{"actions": ["*"]}]}
    for body in (rest, flat):
        role = RoleDefinition.from_arm(body)
        assert role.id == "33333333-3333-3333-3333-333333333333" and role.actions == ("*",)
        assert role.not_actions == () and role.assignable_scopes == ("/",) and not role.is_builtin


@pytest.mark.parametrize("body, message", [
    ([], "must be an object"),
    ({"type": "Microsoft.Authorization/roleAssignments", "name": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
      "properties": {"roleName": "x"}}, "not a role definition"),
    ({"name": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "properties": {}}, "no 'roleName'"),
    ({"name": "nope", "properties": {"roleName": "x"}}, "neither a GUID"),
    ({"name": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
      "properties": {"roleName": "x", "permissions": [{"actions": "*"}]}}, "list of strings"),
    ({"name": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
      "properties": {"roleName": "x", "type": "Magic"}}, "BuiltInRole or CustomRole"),
])
def test_from_arm_rejects_what_is_not_a_role_definition(body, message):
    with pytest.raises(ValueError, match=message):
        RoleDefinition.from_arm(body)


def test_several_permission_blocks_never_under_grant():
    # GIVEN two blocks where only the first excludes role assignment writes
    body = {"name": "44444444-4444-4444-4444-444444444444",
            "properties": {"roleName": "split", "type": "CustomRole", "permissions": [
                {"actions": ["Microsoft.Authorization/*"], "notActions": ["Microsoft.Authorization/*/write"]},
                {"actions": ["Microsoft.Authorization/roleAssignments/write"]}]}}
    # THEN the flattened role still grants it (a notAction only subtracts within its block)
    assert grants(RoleDefinition.from_arm(body), "Microsoft.Authorization/roleAssignments/write")
