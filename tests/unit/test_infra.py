"""infra/ (Bicep) says what the issue asks, parsed here with pycep (the parser checkov uses; no Bicep
compiler is reachable): the roles grant exactly what the code declares, Event Grid delivers exactly the
covered operations, identity everywhere, no keys, HTTPS/TLS 1.2, dead letters, explicit retries.

pycep gives literals and identifiers both as plain strings; ``resolve`` looks a string up as a module
parameter (passed by the parent), then a variable, and otherwise keeps it as a literal.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import pycep

from guardrails import permissions

INFRA = Path(__file__).resolve().parents[2] / "infra"


@lru_cache(maxsize=None)
def doc(rel: str) -> dict:
    return pycep.BicepParser().parse(text=(INFRA / rel).read_text(encoding="utf-8"))


def resolve(d: dict, expr: Any, env: dict | None = None) -> Any:
    env = env or {}
    if isinstance(expr, str):
        if expr in env:
            return env[expr]
        if expr in d.get("variables", {}):
            return resolve(d, d["variables"][expr]["value"], env)
        return expr
    if isinstance(expr, list):
        return [resolve(d, e, env) for e in expr]
    if isinstance(expr, dict) and not ({"function", "operator", "loop_type"} & expr.keys()):
        return {k: resolve(d, v, env) for k, v in expr.items()}
    return expr


def body(resource: dict) -> dict:
    """A resource's or module's config, past a loop and/or a condition."""
    cfg = resource["config"]
    while "config" in cfg and ("loop_type" in cfg or "condition" in cfg):
        cfg = cfg["config"]
    return cfg


def resources(d: dict, rtype: str) -> list[tuple[str, dict]]:
    return [(n, body(r)) for n, r in d.get("resources", {}).items() if r["type"].lower() == rtype.lower()]


def one(d: dict, rtype: str) -> dict:
    found = resources(d, rtype)
    assert len(found) == 1, f"expected one {rtype}, found {[n for n, _ in found]}"
    return found[0][1]


def module_env(parent: str, module: str, parent_env: dict | None = None) -> dict:
    """The parameters ``parent`` passes to its module ``module``, resolved in the parent."""
    d = doc(parent)
    return {k: resolve(d, v, parent_env) for k, v in body(d["modules"][module])["params"].items()}


def principal_of(assignment: dict) -> str:
    """The resource whose identity a role assignment is for (``identity.properties.principalId`` ->
    ``identity``), or the parameter it names."""
    pid = assignment["properties"]["principalId"]
    return pid["operator"]["operands"]["operand_1"] if isinstance(pid, dict) else pid


def all_docs() -> dict[str, dict]:
    return {str(p.relative_to(INFRA)): doc(str(p.relative_to(INFRA))) for p in sorted(INFRA.rglob("*.bicep"))}


# ---- least privilege --------------------------------------------------------------------------
def test_every_custom_role_grants_exactly_the_declared_permissions():
    req = permissions.required()
    main = doc("main.bicep")
    roles = {n: resolve(main, b["properties"]["permissions"]) for n, b in resources(main, "Microsoft.Authorization/roleDefinitions")}
    assert roles == {
        "remediatorRole": [{"actions": list(req.actions), "notActions": [], "dataActions": [], "notDataActions": []}],
        "rotatorRole": [{"actions": [], "notActions": [], "dataActions": list(req.data_actions), "notDataActions": []}],
    }, "infra/main.bicep drifted from the code: paste `python -m guardrails permissions --bicep`"
    # and no role is defined anywhere else but the management-group template's remediator
    others = [f for f, d in all_docs().items() if f not in ("main.bicep", "management-group.bicep")
              and resources(d, "Microsoft.Authorization/roleDefinitions")]
    assert not others


def test_no_wildcard_anywhere_in_a_role():
    for name, d in all_docs().items():
        for rname, b in resources(d, "Microsoft.Authorization/roleDefinitions"):
            text = json.dumps(resolve(d, b["properties"]["permissions"]))
            assert "*" not in text, f"{name}:{rname}"


def test_the_roles_are_assigned_where_the_issue_says():
    main = doc("main.bicep")
    sub_env = module_env("main.bicep", "subscriptions")
    assert sub_env["roleDefinitionGuid"]["operator"]["operands"]["operand_1"] == "remediatorRole"
    assignment = one(doc("modules/subscription.bicep"), "Microsoft.Authorization/roleAssignments")
    assert assignment["properties"]["principalId"] == "principalId" and "scope" not in assignment  # the subscription
    vault_env = module_env("main.bicep", "vaults")
    assert vault_env["roleDefinitionGuid"]["operator"]["operands"]["operand_1"] == "rotatorRole"
    kv = one(doc("modules/vault.bicep"), "Microsoft.Authorization/roleAssignments")
    assert kv["scope"] == "vault"          # the governed vault only, never its subscription
    assert body(main["modules"]["subscriptions"])["scope"]["function"]["type"] == "subscription"


def test_own_resources_are_covered_by_the_built_in_roles_assigned_to_the_identity():
    """Tables, the dead-letter container and the decision topic: the built-in roles assigned to the
    identity grant every ``own_permissions`` declaration (their documented actions and data actions)."""
    granted_by = {   # built-in role id -> what it grants (Microsoft's built-in role reference)
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": {   # Storage Table Data Contributor
            *(f"Microsoft.Storage/storageAccounts/tableServices/tables/{a}" for a in (
                "read", "write", "delete", "entities/read", "entities/write", "entities/delete",
                "entities/add/action", "entities/update/action"))},
        "d5a91429-5739-47e2-a06b-3470a27159e7": {"Microsoft.EventGrid/events/send/action"},  # EventGrid Data Sender
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": {   # Storage Blob Data Owner (blobServices/containers/*)
            *(f"Microsoft.Storage/storageAccounts/blobServices/containers/{a}" for a in (
                "read", "write", "delete", "blobs/read", "blobs/write", "blobs/delete", "blobs/add/action",
                "blobs/move/action"))},
    }
    app = doc("modules/app.bicep")
    assigned = set()
    for _, b in resources(app, "Microsoft.Authorization/roleAssignments"):
        if principal_of(b) == "identity":
            assigned.add(resolve(app, b["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]))
    own = set(permissions.required().own)
    grants = set().union(*(granted_by.get(r, set()) for r in assigned))
    assert own and own <= grants, f"not granted to the identity: {sorted(own - grants)}"


def test_the_management_group_template_defines_and_assigns_the_same_remediator_at_the_group():
    mg = doc("management-group.bicep")
    assert mg["globals"]["scope"]["value"] == "managementGroup"
    (name, role), = resources(mg, "Microsoft.Authorization/roleDefinitions")
    assert resolve(mg, role["properties"]["permissions"]) == [
        {"actions": list(permissions.required().actions), "notActions": [], "dataActions": [], "notDataActions": []}
    ], "infra/management-group.bicep drifted from the code: paste `python -m guardrails permissions --bicep`"
    (scope,) = role["properties"]["assignableScopes"]
    assert scope["function"]["type"] == "management_group" and scope["function"]["property_name"] == "id"  # only it
    assignment = one(mg, "Microsoft.Authorization/roleAssignments")
    assert "scope" not in assignment                                   # the group itself
    assert assignment["properties"]["principalId"] == "principalId"
    assert assignment["properties"]["principalType"] == "ServicePrincipal"
    assert assignment["properties"]["roleDefinitionId"]["operator"]["operands"] == {"operand_1": name, "operand_2": "id"}
    # every listed subscription gets the subscription topic with the covered operations, no second assignment
    env = module_env("management-group.bicep", "subscriptions")
    assert env["assignRole"] is False and env["coveredOperations"] == permissions.covered_operations()
    assert body(mg["modules"]["subscriptions"])["scope"]["function"]["type"] == "subscription"
    assert module_env("main.bicep", "subscriptions").get("assignRole", True) is not False
    sub = doc("modules/subscription.bicep")["resources"]["remediator"]["config"]
    assert sub["condition"] == "assignRole"


def test_main_outputs_what_the_management_group_template_takes_and_passes_the_groups_to_the_sweep():
    main, mg = doc("main.bicep"), doc("management-group.bicep")
    taken = {"principalId": "GUARDRAILS_IDENTITY_PRINCIPAL_ID", "functionAppId": "GUARDRAILS_FUNCTION_APP_ID",
             "eventGridIdentityId": "GUARDRAILS_EVENTGRID_IDENTITY_ID",
             "storageAccountId": "GUARDRAILS_STORAGE_ACCOUNT_ID",
             "deadLetterContainer": "GUARDRAILS_DEAD_LETTER_CONTAINER"}
    assert set(taken) <= set(mg["parameters"]) and set(taken.values()) <= set(main["outputs"])
    settings = {e["name"]: e["value"] for e in one(doc("modules/app.bicep"), "Microsoft.Web/sites")["properties"][
        "siteConfig"]["appSettings"]}
    from guardrails import settings as S
    assert S.SWEEP_MANAGEMENT_GROUPS in settings
    assert module_env("main.bicep", "app")["sweepManagementGroupIds"] == "sweepManagementGroupIds"
    # the sweep's event-coverage check knows which function app the topics must deliver to: this site
    site = one(doc("modules/app.bicep"), "Microsoft.Web/sites")
    assert settings[S.FUNCTION_APP_ID]["function"]["parameters"] == {
        "resource_type": "Microsoft.Web/sites", "resource_name_1": site["name"], "resource_name_2": None,
        "resource_group_name": None, "subscription_id": None}
    for name, param in ((S.GOVERNED_VAULT_IDS, "governedVaultIds"), (S.GOVERNED_ML_WORKSPACE_IDS, "governedMlWorkspaceIds")):
        assert param in json.dumps(settings[name]) and "join" in json.dumps(settings[name]), name
        assert module_env("main.bicep", "app")[param] == param


# ---- the function app ----------------------------------------------------------------------------
def test_function_app_flex_consumption_user_assigned_identity_https_tls_no_ftp():
    app = doc("modules/app.bicep")
    plan = one(app, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = one(app, "Microsoft.Web/sites")
    assert site["identity"]["type"] == "UserAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    fac = props["functionAppConfig"]
    assert fac["runtime"] == {"name": "python", "version": "3.11"}
    assert fac["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert {"instanceMemoryMB", "maximumInstanceCount"} <= fac["scaleAndConcurrency"].keys()
    cfg = props["siteConfig"]
    assert cfg["minTlsVersion"] == "1.2" and cfg["ftpsState"] == "Disabled"
    policies = {b["name"]: b["properties"]["allow"] for _, b in resources(app, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")}
    assert policies == {"ftp": False, "scm": False}


def test_host_storage_and_tables_are_identity_based_no_keys():
    app = doc("modules/app.bicep")
    settings = {s["name"]: s["value"] for s in one(app, "Microsoft.Web/sites")["properties"]["siteConfig"]["appSettings"]}
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__clientId", "GUARDRAILS_TABLES_ENDPOINT",
            "GUARDRAILS_OWN_PRINCIPAL_IDS", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"} <= settings.keys()
    assert "AzureWebJobsStorage" not in settings and "GUARDRAILS_TABLES_CONNECTION" not in settings
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].startswith("Authorization=AAD;ClientId=")
    text = json.dumps(all_docs())
    assert '"type": "list_func"' not in text and "AccountKey=" not in text   # no listKeys() / list*() in a template
    storage = one(app, "Microsoft.Storage/storageAccounts")["properties"]
    assert storage["allowSharedKeyAccess"] is False and storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2" and storage["supportsHttpsTrafficOnly"] is True
    insights = one(app, "Microsoft.Insights/components")["properties"]
    assert insights["DisableLocalAuth"] is True
    assert one(app, "Microsoft.EventGrid/topics")["properties"]["disableLocalAuth"] is True


def test_the_tables_are_the_ones_the_code_uses():
    from guardrails.adapters.tables import Tables

    prefix = "Guardrails"
    code = {v for k, v in vars(Tables(None, prefix)).items() if k.endswith("_name")}
    app = doc("modules/app.bicep")
    suffixes = resolve(app, "tableSuffixes")
    assert {f"{prefix}{s}" for s in suffixes} == code
    assert resources(app, "Microsoft.Storage/storageAccounts/tableServices/tables")[0][1]["name"] == "${tablePrefix}${suffix}"


def test_function_names_in_the_bicep_are_functions_the_app_registers():
    import runpy

    # a fresh app object: ``FunctionApp.get_functions()`` may be called only once per app
    app = runpy.run_path(str(Path(__file__).resolve().parents[2] / "function_app.py"))["app"]
    registered = {f.get_function_name() for f in app.get_functions()}
    for rel, module in (("modules/subscription.bicep", "topic"), ("modules/vault.bicep", "topic")):
        name = module_env(rel, module)["functionName"]
        assert name in registered, f"{rel} delivers to {name!r}, not a function of function_app.py"
    assert body(doc("modules/topic.bicep")["resources"]["subscription"])["properties"]["destination"]["properties"][
        "resourceId"] == "${functionAppId}/functions/${functionName}"


def test_every_app_setting_a_binding_names_is_set_in_azure_and_locally():
    """A ``%NAME%`` in a binding (the timers' schedules) is resolved by the Functions host from the
    app settings; unset, the host cannot index that function and it never runs."""
    import re
    import runpy

    root = Path(__file__).resolve().parents[2]
    app = runpy.run_path(str(root / "function_app.py"))["app"]
    named = {m for f in app.get_functions() for m in re.findall(r"%([A-Za-z0-9_]+)%", f.get_function_json())}
    assert {"GUARDRAILS_SWEEP_SCHEDULE", "GUARDRAILS_EXPIRY_SCHEDULE", "GUARDRAILS_DECISION_OUTBOX_SCHEDULE"} <= named
    settings = {e["name"]: e["value"] for e in one(doc("modules/app.bicep"), "Microsoft.Web/sites")["properties"][
        "siteConfig"]["appSettings"]}
    local = json.loads((root / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    from guardrails import settings as S
    for name in sorted(named):
        assert name in settings, f"{name} is not an app setting in infra/modules/app.bicep"
        assert local.get(name), f"{name} has no value in local.settings.sample.json"
        assert name in S.ALL_SETTINGS, name
    # each schedule is a parameter with a default: six NCRONTAB fields
    app_bicep = doc("modules/app.bicep")
    for name in sorted(named):
        value = settings[name]
        assert value in app_bicep["parameters"], f"{name}: {value!r} is not a parameter"
        assert len(str(app_bicep["parameters"][value]["default"]).split()) == 6, name


def test_the_replay_reads_the_container_event_grid_dead_letters_to():
    """Every event subscription dead-letters into ``deadLetterContainer`` of the app's storage account;
    the replay is pointed at exactly that container, with the identity (no connection string)."""
    app = doc("modules/app.bicep")
    settings = {e["name"]: e["value"] for e in one(app, "Microsoft.Web/sites")["properties"]["siteConfig"]["appSettings"]}
    from guardrails import settings as S
    assert settings[S.DEAD_LETTER_CONTAINER] == "deadLetterContainer"
    assert resolve(app, "deadLetterContainer") == S.Settings().dead_letter_container
    assert "storage" in json.dumps(settings[S.DEAD_LETTER_ENDPOINT]) and "blob" in json.dumps(settings[S.DEAD_LETTER_ENDPOINT])
    assert S.DEAD_LETTER_CONNECTION not in settings
    # the container's lifecycle deletes old dead letters, and only them
    [rule] = one(app, "Microsoft.Storage/storageAccounts/managementPolicies")["properties"]["policy"]["rules"]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${deadLetterContainer}/"]
    assert rule["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"] == \
        "deadLetterRetentionDays"
    assert app["parameters"]["deadLetterRetentionDays"]["default"] >= 30
    for rel, module in (("main.bicep", "subscriptions"), ("main.bicep", "vaults")):
        assert module_env(rel, module)["deadLetterContainer"] == "app.outputs.deadLetterContainer" or \
            "deadLetterContainer" in json.dumps(module_env(rel, module)["deadLetterContainer"]), (rel, module)


def test_the_host_timeout_outlasts_the_sweep_and_event_handling():
    """host.json's ``functionTimeout`` is one limit for every function of the app: the timers
    included. The sweep stops itself (``GUARDRAILS_SWEEP_MAX_SECONDS``) before the host would
    abandon it; an event delivery keeps its own budget under Event Grid's 30 s."""
    from guardrails import settings as S

    root = Path(__file__).resolve().parents[2]
    host = json.loads((root / "host.json").read_text(encoding="utf-8"))
    h, m, sec = (int(x) for x in host["functionTimeout"].split(":"))
    timeout = h * 3600 + m * 60 + sec
    local = json.loads((root / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    for env in ({}, local):
        cfg = S.Settings.from_env(env)
        assert cfg.sweep_max_seconds + 30 <= timeout, (cfg.sweep_max_seconds, timeout)
        assert cfg.time_budget_seconds < 30


def test_with_private_networking_the_decision_topic_is_published_to_through_a_private_endpoint_only():
    app = doc("modules/app.bicep")
    topic = body(app["resources"]["decisions"])["properties"]
    access = topic["publicNetworkAccess"]["operator"]
    assert access["type"] == "conditional" and access["operands"]["condition"] == "enablePrivateNetworking"
    assert (access["operands"]["true_value"], access["operands"]["false_value"]) == ("Disabled", "Enabled")
    assert topic["disableLocalAuth"] is True
    endpoint = app["modules"]["decisionsEndpoint"]["config"]
    assert endpoint["condition"] == "enablePrivateNetworking"
    params = body(app["modules"]["decisionsEndpoint"])["params"]
    assert params["groupId"] == "topic" and "decisions" in json.dumps(params["targetId"])
    assert "topicZoneId" in json.dumps(params["dnsZoneId"])
    zones = doc("modules/network.bicep")["variables"]["zones"]["value"]
    assert zones["topic"] == "privatelink.eventgrid.azure.net"


# ---- Event Grid ---------------------------------------------------------------------------------
def test_subscription_topic_filters_exactly_the_covered_operations():
    main_env = module_env("main.bicep", "subscriptions")
    assert main_env["coveredOperations"] == permissions.covered_operations(), \
        "paste `python -m guardrails permissions --bicep` (coveredOperations) into infra/main.bicep"
    topic_env = module_env("modules/subscription.bicep", "topic", main_env)
    assert topic_env["topicType"] == "Microsoft.Resources.Subscriptions"
    assert topic_env["includedEventTypes"] == list(permissions.RESOURCE_EVENT_TYPES_DELIVERED)
    assert topic_env["advancedFilters"] == [
        {"operatorType": "StringIn", "key": "data.operationName", "values": permissions.covered_operations()}]
    assert len(permissions.covered_operations()) <= 25      # Event Grid: 25 filter values per subscription


def test_vault_topics_deliver_the_key_vault_events_the_code_acts_on():
    main_env = module_env("main.bicep", "vaults")
    assert main_env["keyVaultEventTypes"] == permissions.keyvault_event_types()
    topic_env = module_env("modules/vault.bicep", "topic", main_env)
    assert topic_env["topicType"] == "Microsoft.KeyVault.vaults"
    assert topic_env["includedEventTypes"] == permissions.keyvault_event_types()


def test_ml_workspace_topics_deliver_the_ml_events_the_code_acts_on():
    main_env = module_env("main.bicep", "mlWorkspaces")
    assert main_env["mlWorkspaceEventTypes"] == permissions.ml_event_types()
    topic_env = module_env("modules/ml-workspace.bicep", "topic", main_env)
    assert topic_env["topicType"] == "Microsoft.MachineLearningServices.Workspaces"
    assert topic_env["includedEventTypes"] == permissions.ml_event_types()
    assert topic_env["functionName"] == "resource_events"


def test_event_subscription_dead_letters_with_identity_and_retries_explicitly():
    sub = body(doc("modules/topic.bicep")["resources"]["subscription"])["properties"]
    assert sub["destination"]["endpointType"] == "AzureFunction"
    assert sub["destination"]["properties"]["maxEventsPerBatch"] == 1
    retry = sub["retryPolicy"]
    assert 1 <= retry["maxDeliveryAttempts"] <= 30 and 1 <= retry["eventTimeToLiveInMinutes"] <= 1440
    dl = sub["deadLetterWithResourceIdentity"]
    assert dl["identity"]["type"] == "UserAssigned"
    assert dl["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert "deadLetterDestination" not in sub            # never a key- or SAS-based dead letter
    topic = one(doc("modules/topic.bicep"), "Microsoft.EventGrid/systemTopics")
    assert topic["identity"]["type"] == "UserAssigned"
    # Event Grid's identity may write the dead-letter container and nothing else
    app = doc("modules/app.bicep")
    eg = [b for _, b in resources(app, "Microsoft.Authorization/roleAssignments")
          if principal_of(b) == "eventGridIdentity"]
    assert len(eg) == 1 and eg[0]["scope"] == "deadLetters"


# ---- checkov suppressions -----------------------------------------------------------------------
def test_every_checkov_suppression_carries_a_reason():
    import re

    for path in INFRA.rglob("*.bicep"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "checkov:skip" in line:
                m = re.search(r"checkov:skip=(CKV2?_[A-Z]+_\d+):\s*(.+)", line)
                assert m and len(m.group(2).split()) >= 5, f"{path.name}: suppression without a reason: {line.strip()}"
