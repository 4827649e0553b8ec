"""Review s22, deployment and permissions: what infra/ grants and deploys, and what a local run does.

1. A storage account's keys (listKeys / regenerateKey) are never granted at a governed scope: a role of
   their own, assigned on each storage account a secrets policy rotates (``rotatedStorageAccountIds``).
2. No ``{type}/write`` for a catalogue type a fix can never write (every property the catalogue knows
   of it is immutable: a compute's node public IP).
3. The deployer's table role covers the policy table only, not the audit, breaker or escalation rows.
4. The deployment's own governed resources (its storage account) are named in
   GUARDRAILS_OWN_RESOURCE_IDS, and the account meets every baseline rule it can.
5. ``local.settings.sample.json`` runs no timer: copied as the README says, ``func start`` does not
   sweep every subscription the developer's login reaches.
6. Optional App Service authentication (authsettingsV2) that leaves Event Grid's webhook reachable.

GIVEN the templates as pycep parses them (tests/unit/test_infra.py's helpers) and the code's
declarations, WHEN compared, THEN they agree.
"""

from __future__ import annotations

import json
from pathlib import Path

from guardrails import permissions
from guardrails.model import resource
from guardrails.model.resource import ResourceType
from tests.unit.test_infra import (INFRA, SUB_A, SUB_B, SUB_C, SUBSCRIPTION, all_docs, body, doc, evaluate,
                                   module_env, one, resolve, resources)

ROOT = Path(__file__).resolve().parents[2]
KEY_ACTIONS = {"Microsoft.Storage/storageAccounts/listKeys/action",
               "Microsoft.Storage/storageAccounts/regenerateKey/action"}
COMPUTE_WRITE = "Microsoft.MachineLearningServices/workspaces/computes/write"


def _account(sub: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/rg-{name}/providers/Microsoft.Storage/storageAccounts/{name}"


def _role_actions(template: str, role: str) -> list[str]:
    d = doc(template)
    (block,) = resolve(d, body(d["resources"][role])["properties"]["permissions"])
    return block["actions"]


def _app_settings() -> dict:
    site = one(doc("modules/app.bicep"), "Microsoft.Web/sites")
    return {e["name"]: e["value"] for e in site["properties"]["siteConfig"]["appSettings"]}


def _sample() -> dict:
    return json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]


def _parameters() -> dict:
    return json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]


# ---- 1. storage account keys: per rotated account only ---------------------------------------------
def test_storage_key_actions_are_not_in_the_role_of_the_governed_scopes():
    req = permissions.required()
    assert set(req.storage_key_actions) == KEY_ACTIONS
    assert not KEY_ACTIONS & set(req.actions)
    assert not KEY_ACTIONS & set(_role_actions("main.bicep", "remediatorRole"))
    assert not KEY_ACTIONS & set(_role_actions("management-group.bicep", "remediatorRole"))
    # the generated block carries them as their own array, which only the key rotator uses
    assert resolve(doc("main.bicep"), "guardrailStorageKeyActions") == list(req.storage_key_actions)
    assert _role_actions("main.bicep", "storageKeyRotatorRole") == list(req.storage_key_actions)
    bicep = permissions.render(req, "bicep")
    assert "var guardrailStorageKeyActions = [\n" + "".join(f"  '{a}'\n" for a in req.storage_key_actions) + "]" \
        in bicep
    assert "listKeys" not in bicep.split("var guardrailActions = [", 1)[1].split("]", 1)[0]


def test_a_key_action_goes_to_the_per_account_role_whoever_declares_it():
    class Rotator:
        permissions = ("Microsoft.Storage/storageAccounts/read", "Microsoft.Storage/storageAccounts/listKeys/action")

    req = permissions.required([Rotator])
    assert req.actions == ("Microsoft.Storage/storageAccounts/read",)
    assert req.storage_key_actions == ("Microsoft.Storage/storageAccounts/listKeys/action",)
    assert req.as_dict()["storage_key_actions"] == ["Microsoft.Storage/storageAccounts/listKeys/action"]
    text = permissions.render(req)
    governed, per_account = text.split("storage account key actions", 1)
    assert "listKeys" not in governed and "listKeys" in per_account.split("Microsoft Graph", 1)[0]


def test_the_key_rotator_is_assigned_on_each_rotated_account_and_nowhere_else():
    main = doc("main.bicep")
    assert main["parameters"]["rotatedStorageAccountIds"]["default"] == []
    assert _parameters()["rotatedStorageAccountIds"] == {"value": []}
    module = body(main["modules"]["rotatedStorageAccounts"])
    assert main["modules"]["rotatedStorageAccounts"]["config"]["loop_type"]["detail"]["array_name"] == \
        "rotatedStorageAccountIds"
    account = _account(SUB_B, "stsecrets")
    scope = evaluate(main, module["scope"], {"id": account})
    assert (scope["subscriptionId"], scope["name"]) == (SUB_B, "rg-stsecrets")
    assert evaluate(main, module["params"]["accountName"], {"id": account}) == "stsecrets"
    env = module_env("main.bicep", "rotatedStorageAccounts")
    assert env["roleDefinitionGuid"]["operator"]["operands"]["operand_1"] == "storageKeyRotatorRole"
    keys = doc("modules/storage-keys.bicep")
    target = keys["resources"]["account"]
    assert target["existing"] and target["type"] == "Microsoft.Storage/storageAccounts"
    assert target["config"]["name"] == "accountName"
    assignment = one(keys, "Microsoft.Authorization/roleAssignments")
    assert assignment["scope"] == "account"
    assert assignment["properties"]["principalId"] == "principalId"
    assert assignment["properties"]["principalType"] == "ServicePrincipal"
    # the key rotator's role id is handed to that module only: no other template assigns it
    handed = [(rel, name) for rel, d in all_docs().items() for name, m in d.get("modules", {}).items()
              if "storageKeyRotatorRole" in json.dumps(body(m).get("params", {}))]
    assert handed == [("main.bicep", "rotatedStorageAccounts")]


def test_the_key_rotator_is_assignable_at_every_account_it_is_assigned_at():
    main = doc("main.bicep")
    scopes_expr = body(main["resources"]["storageKeyRotatorRole"])["properties"]["assignableScopes"]
    for accounts in ([], [_account(SUB_A, "st1")], [_account(SUB_C, "st2"), _account(SUB_C.upper(), "st3")]):
        scopes = evaluate(main, scopes_expr, {"rotatedStorageAccountIds": accounts, "governedSubscriptionIds": [SUB_A]})
        assert f"/subscriptions/{SUBSCRIPTION}" in scopes
        for account in accounts:
            assert any(account.lower().startswith(s.lower() + "/") for s in scopes), (account, scopes)
        assert len(scopes) == len({s.lower() for s in scopes}) == 1 + len({a.split("/")[2].lower() for a in accounts})


# ---- 2. no write of a type nothing can be written on --------------------------------------------
def test_no_write_is_granted_for_a_catalogue_type_whose_properties_are_all_immutable():
    compute = resource.lookup_type("Microsoft.MachineLearningServices/workspaces/computes")
    assert compute is not None and not permissions.settable(compute)
    assert COMPUTE_WRITE in permissions.unwritable_catalogue_writes()
    assert COMPUTE_WRITE not in permissions.required().actions
    for template in ("main.bicep", "management-group.bicep"):
        actions = _role_actions(template, "remediatorRole")
        assert COMPUTE_WRITE not in actions, template
        assert "Microsoft.MachineLearningServices/workspaces/computes/read" in actions, template
    # anyone else's write of a compute is still delivered and judged (notify)
    assert COMPUTE_WRITE in permissions.covered_operations()


def test_the_write_follows_what_the_catalogue_lets_a_fix_set(monkeypatch):
    frozen = ResourceType("Microsoft.Example/frozen", "2024-01-01", "patch",
                          {"properties.mode": "Open"}, frozenset({"properties.Mode"}))
    open_ = ResourceType("Microsoft.Example/open", "2024-01-01", "patch",
                         {"properties.mode": "Open", "properties.sku": "x"}, frozenset({"properties.sku"}))
    monkeypatch.setitem(resource.CATALOG, frozen.key, frozen)
    monkeypatch.setitem(resource.CATALOG, open_.key, open_)
    actions = set(permissions.required().actions)
    assert {"Microsoft.Example/frozen/read", "Microsoft.Example/open/read", "Microsoft.Example/open/write"} <= actions
    assert "Microsoft.Example/frozen/write" not in actions

    class ExplicitWriter:      # a stated (not derived) need is kept: its class knows it writes one
        permissions = ("Microsoft.Example/frozen/write",)

    assert permissions.required([ExplicitWriter]).actions == ("Microsoft.Example/frozen/write",)


def test_every_shipped_set_property_fix_has_the_write_it_needs():
    """A shipped policy fixing a type by ``set-property`` must find that type's write in the role."""
    from guardrails.model.policy import Policy
    from guardrails.policy.loader import load_directory
    from guardrails.sync import metadata_dirs

    actions = {a.lower() for a in permissions.required().actions}
    fixes = [(p.id, t) for p in load_directory(*metadata_dirs()) if isinstance(p, Policy)
             for r in p.rules if r.action.get("type") == "set-property" for t in p.selector.resource_types]
    assert fixes
    for policy_id, rtype in fixes:
        assert f"{rtype}/write".lower() in actions, (policy_id, rtype)


# ---- 3. the deployer: the policy table only ------------------------------------------------------
def test_the_deployers_table_role_is_scoped_to_the_policy_table():
    from guardrails.adapters.tables import Tables

    app = doc("modules/app.bicep")
    deployer = [(n, b) for n, b in resources(app, "Microsoft.Authorization/roleAssignments")
                if b["properties"]["principalId"] == "deployerPrincipalId"]
    assert [n for n, _ in deployer] == ["deployerTableRole"]
    role = deployer[0][1]
    assert role["scope"] == "policiesTable"
    table = app["resources"]["policiesTable"]
    assert table["existing"] and table["type"] == "Microsoft.Storage/storageAccounts/tableServices/tables"
    assert table["config"]["parent"] == "tableService"
    for prefix in ("Guardrails", "Gr2"):
        name = evaluate(app, table["config"]["name"], {"tablePrefix": prefix})
        assert name == Tables(None, prefix).policies_name
        assert name in {f"{prefix}{s}" for s in resolve(app, "tableSuffixes")}    # deployed by `tables`
    assert "tables" in role["dependsOn"]                 # assigned once the table exists
    assert resolve(app, role["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]) == \
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"           # Storage Table Data Contributor, on that table


def test_azd_syncs_the_policy_table_waiting_for_the_new_role_to_apply():
    """The table role is assigned moments before the postprovision hook runs; it takes minutes to apply."""
    import re

    import yaml

    hook = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))["hooks"]["postprovision"]
    for shell in ("posix", "windows"):
        (wait,) = re.findall(r"-m guardrails metadata sync --wait-for-access (\d+)$", hook[shell]["run"])
        assert int(wait) >= 300, shell


# ---- 4. the deployment's own resources ---------------------------------------------------------------
def test_the_deployments_own_governed_resources_are_named_in_own_resource_ids():
    from guardrails import settings as S
    from guardrails.ml_guardrail import ML_TYPE_NAMES

    name = getattr(S, "OWN_RESOURCE_IDS", "GUARDRAILS_OWN_RESOURCE_IDS")
    assert name == "GUARDRAILS_OWN_RESOURCE_IDS"
    value = json.dumps(_app_settings()[name])
    governed = {t.lower() for t in (*resource.CATALOG, *ML_TYPE_NAMES)}
    deployed = [(rel, n) for rel, d in all_docs().items() for n, r in d.get("resources", {}).items()
                if r["type"].lower() in governed and not r.get("existing")]
    assert deployed == [("modules/app.bicep", "storage")]
    for _, symbol in deployed:
        assert symbol in value, f"{symbol} is governed by the guardrail but not in {name}"
    assert _sample()[name] == ""


def test_the_storage_account_meets_every_baseline_rule_but_public_network_access():
    """The shipped storage policy fixes with set-property; the account the deployment creates must
    meet every rule it can, so that only what it needs (a public endpoint) remains a finding."""
    from guardrails.model.policy import Policy
    from guardrails.model.resource import get_path
    from guardrails.policy import operators
    from guardrails.policy.loader import load_directory
    from guardrails.sync import metadata_dirs

    storage = {"properties": one(doc("modules/app.bicep"), "Microsoft.Storage/storageAccounts")["properties"]}
    rules = [r for p in load_directory(*metadata_dirs()) if isinstance(p, Policy)
             if "microsoft.storage/storageaccounts" in {t.lower() for t in p.selector.resource_types}
             for r in p.rules]
    assert rules
    unmet = [r.property for r in rules
             if not operators.satisfies(r.expect, get_path(storage, r.property,
                                                           resource.CATALOG["microsoft.storage/storageaccounts"]
                                                           .defaults.get(r.property)))]
    assert unmet == ["properties.publicNetworkAccess"]


# ---- 5. a local run acts on nothing by itself --------------------------------------------------------
def test_the_local_sample_disables_every_timer():
    import runpy

    app = runpy.run_path(str(ROOT / "function_app.py"))["app"]
    timers = sorted(f.get_function_name() for f in app.get_functions()
                    if any(b.get("type") == "timerTrigger" for b in json.loads(f.get_function_json())["bindings"]))
    assert {"reconciling_sweep", "exemption_expiry"} <= set(timers)
    sample = _sample()
    for name in timers:
        assert sample.get(f"AzureWebJobs.{name}.Disabled") == "true", f"{name} runs on its own under `func start`"
    # and nothing else is disabled: the Event Grid and HTTP functions stay callable
    disabled = {k.split(".")[1] for k in sample if k.startswith("AzureWebJobs.") and k.endswith(".Disabled")}
    assert disabled == set(timers)


# ---- 6. optional App Service authentication -------------------------------------------------------------
def test_app_service_authentication_is_optional_and_lets_event_grid_through():
    main, app = doc("main.bicep"), doc("modules/app.bicep")
    assert main["parameters"]["appAuthClientId"]["default"] == ""
    assert module_env("main.bicep", "app")["authClientId"] == "appAuthClientId"
    assert _parameters()["appAuthClientId"] == {"value": "${GUARDRAILS_AUTH_CLIENT_ID}"}
    auth_module = app["modules"]["siteAuth"]["config"]
    assert evaluate(app, auth_module["condition"], {"authClientId": ""}) is False      # off by default
    assert evaluate(app, auth_module["condition"], {"authClientId": "b1c0ffee"}) is True
    assert body(app["modules"]["siteAuth"])["params"]["clientId"] == "authClientId"
    (name, cfg), = resources(doc("modules/site-auth.bicep"), "Microsoft.Web/sites/config")
    assert cfg["name"] == "authsettingsV2"
    props = cfg["properties"]
    assert props["platform"] == {"enabled": True}
    # requests without a token (Event Grid's webhook deliveries, function-key callers) still get through
    assert props["globalValidation"] == {"requireAuthentication": False, "unauthenticatedClientAction": "AllowAnonymous"}
    assert props["httpSettings"]["requireHttps"] is True
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True and aad["registration"]["clientId"] == "clientId"
    assert set(aad["validation"]["allowedAudiences"]) == {"clientId", "api://${clientId}"}
    assert "clientSecretSettingName" not in aad["registration"]     # validates tokens only: no secret
    assert props["login"]["tokenStore"]["enabled"] is False
    assert set(props["identityProviders"]) == {"azureActiveDirectory"}      # only Entra principals (auth_typ aad)


def test_a_policy_cannot_set_a_property_on_a_type_the_role_cannot_write(tmp_path):
    """The remediator role grants no ``{type}/write`` for a type nothing can set (ML computes): a
    ``set-property`` on such a type would get 403 at runtime, so the loader refuses it."""
    from guardrails.errors import MetadataValidationError
    from guardrails.policy.loader import load_directory
    (tmp_path / "compute.yaml").write_text("""\
id: compute-sku
version: 1
description: computes (test policy)
mode: enforce
selector: {resource_types: [Microsoft.MachineLearningServices/workspaces/computes]}
rules:
  - id: sku
    property: properties.properties.vmPriority
    allow_unlisted_property: true
    expect: {equals: Dedicated}
    action: {type: set-property, value: Dedicated}
""")
    import pytest
    with pytest.raises(MetadataValidationError) as err:
        load_directory(tmp_path)
    assert "does not grant Microsoft.MachineLearningServices/workspaces/computes/write" in str(err.value.findings)
