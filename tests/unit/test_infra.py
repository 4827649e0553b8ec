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
    """The resources of ``rtype`` the template deploys (an ``existing`` reference deploys nothing)."""
    return [(n, body(r)) for n, r in d.get("resources", {}).items()
            if r["type"].lower() == rtype.lower() and not r.get("existing")]


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


# ---- a small evaluator: what an expression comes to for given parameter values ---------------------
SUBSCRIPTION = "00000000-0000-4000-8000-00000000dep0"      # subscription() (env "__subscription" overrides)
RESOURCE_GROUP = "rg-of-the-deployment"                     # resourceGroup() (env "__resource_group" overrides)


def _expression(text: str) -> Any:
    return pycep.BicepParser().parse(text=f"var v = {text}\n")["variables"]["v"]["value"]


def _interpolate(d: dict, text: str, env: dict) -> str:
    """A string literal with ``${...}`` holes, each hole parsed and evaluated."""
    out, i = [], 0
    while (start := text.find("${", i)) >= 0:
        out.append(text[i:start])
        j, depth, quoted = start + 2, 1, False
        while depth:
            c = text[j]
            if c == "'":
                quoted = not quoted
            elif not quoted:
                depth += {"{": 1, "}": -1}.get(c, 0)
            j += 1
        out.append(str(evaluate(d, _expression(text[start + 2:j - 1]), env)))
        i = j
    return "".join(out) + text[i:]


def evaluate(d: dict, expr: Any, env: dict) -> Any:
    """``expr`` of document ``d`` with the parameters (and loop variables) ``env``: a string is a
    parameter, else a variable, else a literal; the functions and operators the templates use."""
    if isinstance(expr, str):
        if expr in env:
            return env[expr]
        if expr in d.get("variables", {}):
            return evaluate(d, d["variables"][expr]["value"], env)
        return _interpolate(d, expr, env)
    if not isinstance(expr, (list, dict)):
        return expr
    if isinstance(expr, list):
        return [evaluate(d, e, env) for e in expr]
    if "loop_type" in expr:
        loop = expr["loop_type"]["detail"]
        return [evaluate(d, expr["config"], {**env, loop["item_name"]: item})
                for item in evaluate(d, loop["array_name"], env)]
    if "operator" in expr:
        op, a = expr["operator"]["type"], expr["operator"]["operands"]
        if op == "conditional":
            return evaluate(d, a["true_value"] if evaluate(d, a["condition"], env) else a["false_value"], env)
        if op == "not":
            return not evaluate(d, a["bool_value"], env)
        if op == "index_accessor":
            container, key = evaluate(d, a["operand_1"], env), evaluate(d, a["operand_2"], env)
            if isinstance(container, dict):     # ARM: object keys are case-insensitive
                return next(v for k, v in container.items() if k.lower() == str(key).lower())
            return container[key]
        raise NotImplementedError(op)
    if "function" in expr:
        f = expr["function"]
        p = {k: evaluate(d, v, env) for k, v in f["parameters"].items()}
        kind = f["type"]
        if kind == "subscription":
            sid = p["subscription_id"] or env.get("__subscription", SUBSCRIPTION)
            value: Any = {"id": f"/subscriptions/{sid}", "subscriptionId": sid}
        elif kind == "resource_group":
            value = {"subscriptionId": p["subscription_id"] or env.get("__subscription", SUBSCRIPTION),
                     "name": p["resource_group_name"] or env.get("__resource_group", RESOURCE_GROUP)}
        elif kind == "replace":
            value = p["original_string"].replace(p["old_string"], p["new_string"])
        elif kind == "split":
            value = p["input_string"].split(p["delimiter"])
        elif kind == "to_lower":
            value = p["string_to_change"].lower()
        elif kind == "last":
            value = p["arg_1"][-1]
        elif kind == "empty":
            value = not p["item_to_test"]
        elif kind == "contains":
            container, item = p["container"], p["item_to_find"]
            value = (item.lower() in (k.lower() for k in container)) if isinstance(container, dict) else item in container
        elif kind == "union":
            value = list(dict.fromkeys(x for arg in p.values() for x in arg))
        else:
            raise NotImplementedError(kind)
        if "index" in f:
            value = value[f["index"]]
        if f.get("property_name"):
            value = value[f["property_name"]]
        return value
    return {k: evaluate(d, v, env) for k, v in expr.items()}


def module_arg(parent: str, module: str, param: str, env: dict) -> Any:
    """The value ``parent`` passes to its module ``module`` as ``param``, for the parameters ``env``."""
    d = doc(parent)
    return evaluate(d, body(d["modules"][module])["params"][param], env)


# ---- least privilege --------------------------------------------------------------------------
def test_every_custom_role_grants_exactly_the_declared_permissions():
    req = permissions.required()
    main = doc("main.bicep")
    roles = {n: resolve(main, b["properties"]["permissions"]) for n, b in resources(main, "Microsoft.Authorization/roleDefinitions")}
    assert roles == {
        "remediatorRole": [{"actions": list(req.actions), "notActions": [], "dataActions": [], "notDataActions": []}],
        "rotatorRole": [{"actions": [], "notActions": [], "dataActions": list(req.data_actions), "notDataActions": []}],
        "storageKeyRotatorRole": [{"actions": list(req.storage_key_actions), "notActions": [], "dataActions": [],
                                   "notDataActions": []}],
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
    keys_env = module_env("main.bicep", "rotatedStorageAccounts")
    assert keys_env["roleDefinitionGuid"]["operator"]["operands"]["operand_1"] == "storageKeyRotatorRole"
    keys = one(doc("modules/storage-keys.bicep"), "Microsoft.Authorization/roleAssignments")
    assert keys["scope"] == "account"      # the rotated storage account only, never its subscription
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
    assert cfg["minTlsVersion"] == "1.2"
    # ARM refuses ftpsState on a Flex Consumption site (400, ExtendedCode 51021); FTP is off through
    # the publishing credentials policies below
    assert "ftpsState" not in cfg
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


def test_subscription_topics_deliver_the_deletions_of_covered_resources_by_a_second_subscription():
    """A deleted resource leaves the compliance report on its ResourceDeleteSuccess (audited
    ``ignored``, no read): a second event subscription of the same topic, so that each stays under
    Event Grid's 25 advanced-filter values."""
    deletes = permissions.covered_delete_operations()
    assert len(deletes) <= 25 and all(op.endswith("/delete") for op in deletes)
    assert "Microsoft.Resources/subscriptions/resourceGroups/delete" in deletes
    assert {op.rsplit("/", 1)[0] for op in deletes} - {"Microsoft.Resources/subscriptions/resourceGroups"} == {
        op.rsplit("/", 1)[0] for op in permissions.covered_operations()} - {"Microsoft.Authorization/roleDefinitions"}
    for template in ("main.bicep", "management-group.bicep"):
        env = module_env(template, "subscriptions")
        assert env["coveredDeleteOperations"] == deletes, \
            f"paste `python -m guardrails permissions --bicep` (coveredDeleteOperations) into infra/{template}"
        assert module_env("modules/subscription.bicep", "topic", env)["deleteOperations"] == deletes
    topic = doc("modules/topic.bicep")
    twin = topic["resources"]["deletions"]
    props = body(twin)["properties"]
    assert props["filter"]["includedEventTypes"] == ["Microsoft.Resources.ResourceDeleteSuccess"]
    (flt,) = props["filter"]["advancedFilters"]
    assert (flt["operatorType"], flt["key"]) == ("StringIn", "data.operationName")
    main = body(topic["resources"]["subscription"])["properties"]
    # delivered, retried and dead-lettered exactly like the writes
    assert props["destination"] == main["destination"] and props["retryPolicy"] == main["retryPolicy"]
    assert props["deadLetterWithResourceIdentity"] == main["deadLetterWithResourceIdentity"]
    # vault and workspace topics have no deletions twin
    for rel in ("modules/vault.bicep", "modules/ml-workspace.bicep"):
        assert "deleteOperations" not in module_env(rel, "topic")


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
    t = doc("modules/topic.bicep")
    assert t["parameters"]["deadLetterWithSystemIdentity"]["default"] is False
    plain = {"deadLetterWithSystemIdentity": False, "eventGridIdentityId": "uai"}
    assert evaluate(t, dl["identity"], plain) == {"type": "UserAssigned", "userAssignedIdentity": "uai"}
    assert dl["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert "deadLetterDestination" not in sub            # never a key- or SAS-based dead letter
    topic = one(t, "Microsoft.EventGrid/systemTopics")
    assert evaluate(t, topic["identity"]["type"], plain) == "UserAssigned"
    # Event Grid's identity may write the dead-letter container and nothing else
    app = doc("modules/app.bicep")
    eg = [b for _, b in resources(app, "Microsoft.Authorization/roleAssignments")
          if principal_of(b) == "eventGridIdentity"]
    assert len(eg) == 1 and eg[0]["scope"] == "deadLetters"


SUB_A = "11111111-1111-4111-8111-111111111111"
SUB_B = "22222222-2222-4222-8222-222222222222"
SUB_C = "33333333-3333-4333-8333-333333333333"


def _vault(sub: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/rg-{name}/providers/Microsoft.KeyVault/vaults/{name}"


def _workspace(sub: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/rg-{name}/providers/Microsoft.MachineLearningServices/workspaces/{name}"


def _topic_id(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.EventGrid/systemTopics/{name}"


def _topic_callers() -> list[tuple[str, str]]:
    """(template, module name) of every module that deploys modules/topic.bicep."""
    return [(rel, name) for rel, d in all_docs().items() for name, m in d.get("modules", {}).items()
            if (INFRA / rel).parent.joinpath(m["detail"]["path"]).resolve() == INFRA / "modules" / "topic.bicep"]


def test_behind_a_storage_firewall_each_topic_dead_letters_with_its_own_system_identity():
    """Event Grid passes a storage firewall (``bypass: AzureServices``) as a trusted service with a
    system-assigned identity only; a user-assigned one is refused. With enablePrivateNetworking (the
    product's storage then denies public traffic) every event subscription dead-letters with its topic's
    system-assigned identity, and that identity, and only it, gets the dead-letter container."""
    t = doc("modules/topic.bicep")
    private = {"deadLetterWithSystemIdentity": True, "eventGridIdentityId": "uai"}
    for name in ("subscription", "deletions"):
        dl = body(t["resources"][name])["properties"]["deadLetterWithResourceIdentity"]
        assert evaluate(t, dl["identity"], private) == {"type": "SystemAssigned"}, name
    topic = one(t, "Microsoft.EventGrid/systemTopics")
    assert evaluate(t, topic["identity"]["type"], private) == "SystemAssigned, UserAssigned"
    assert "deadLetterPrincipalId" in t["outputs"]
    # the storage denies public traffic exactly when the topics dead-letter with their own identity
    app = doc("modules/app.bicep")
    acls = one(app, "Microsoft.Storage/storageAccounts")["properties"]["networkAcls"]
    assert acls["bypass"] == "AzureServices"
    assert evaluate(app, acls["defaultAction"], {"enablePrivateNetworking": True}) == "Deny"
    # every caller passes the flag through; main.bicep sets it from enablePrivateNetworking
    for rel in ("modules/subscription.bicep", "modules/vault.bicep", "modules/ml-workspace.bicep"):
        d = doc(rel)
        assert body(d["modules"]["topic"])["params"]["deadLetterWithSystemIdentity"] == "deadLetterWithSystemIdentity", rel
        assert d["parameters"]["deadLetterWithSystemIdentity"]["default"] is False, rel
        assert "deadLetterPrincipalId" in d["outputs"], rel
    main = doc("main.bicep")
    for module in ("subscriptions", "vaults", "mlWorkspaces"):
        assert module_arg("main.bicep", module, "deadLetterWithSystemIdentity",
                          {"enablePrivateNetworking": True}) is True, module
    # one writer per topic, only then, granting Storage Blob Data Contributor on the container alone
    writer = doc("modules/deadletter-writer.bicep")
    grants = resources(writer, "Microsoft.Authorization/roleAssignments")
    assert len(grants) == 1 and grants[0][1]["scope"] == "deadLetters"
    assert "ba92f5b4-2d11-453d-a403-e96b0029c9fe" in json.dumps(writer["variables"])
    assert principal_of(grants[0][1]) == "principalId"
    for parent, writers in (("main.bicep", {"subscriptionDeadLetterWriters": "subscriptions",
                                            "vaultDeadLetterWriters": "vaults",
                                            "mlWorkspaceDeadLetterWriters": "mlWorkspaces"}),
                            ("management-group.bicep", {"deadLetterWriters": "subscriptions"})):
        d = doc(parent)
        for name, topics in writers.items():
            m = d["modules"][name]
            assert m["detail"]["path"] == "modules/deadletter-writer.bicep", name
            loop = m["config"]
            flag = "enablePrivateNetworking" if parent == "main.bicep" else "deadLetterWithSystemIdentity"
            assert loop["condition"] == flag, (parent, name)
            # over the same list as the topics, each writer for the topic at its index
            assert loop["loop_type"]["detail"]["array_name"] == \
                d["modules"][topics]["config"]["loop_type"]["detail"]["array_name"], (parent, name)
            pid = json.dumps(body(m)["params"]["principalId"])
            assert f'"{topics}"' in pid and '"i"' in pid and "deadLetterPrincipalId" in pid, (parent, name)
    assert main["outputs"]["GUARDRAILS_PRIVATE_NETWORKING"]["value"] == "enablePrivateNetworking"


def test_log_analytics_takes_entra_id_only():
    logs = one(doc("modules/app.bicep"), "Microsoft.OperationalInsights/workspaces")
    assert logs["properties"]["features"]["disableLocalAuth"] is True


def test_every_event_subscription_name_the_bicep_can_produce_is_valid_for_event_grid():
    """Microsoft.EventGrid eventSubscriptions: 3-64 characters, alphanumerics and hyphens only; the
    function names (``resource_events``) have underscores, so the name cannot be ``guardrails-{function}``."""
    import re

    from guardrails.local.eventgrid_world import event_subscription_name

    valid = re.compile(r"^[A-Za-z0-9-]{3,64}$")
    subs = [(rel, n) for rel, d in all_docs().items() for n, _ in resources(d, "Microsoft.EventGrid/systemTopics/eventSubscriptions")]
    # named in one place only: the function's subscription and its deletions twin
    assert sorted(subs) == [("modules/topic.bicep", "deletions"), ("modules/topic.bicep", "subscription")]
    topic = doc("modules/topic.bicep")
    name_expr = body(topic["resources"]["subscription"])["name"]
    deletions = evaluate(topic, body(topic["resources"]["deletions"])["name"], {"functionName": "resource_events"})
    assert valid.match(deletions) and deletions == "guardrails-resource-events-deletes"
    callers = _topic_callers()
    assert {rel for rel, _ in callers} == {"modules/subscription.bicep", "modules/vault.bicep", "modules/ml-workspace.bicep"}
    produced = set()
    for rel, module in callers:
        function = module_env(rel, module)["functionName"]
        name = evaluate(topic, name_expr, {"functionName": function})
        assert valid.match(name), f"{rel} -> event subscription {name!r}: Event Grid rejects it"
        assert name == event_subscription_name(function)               # the emulator's world names it alike
        produced.add(name)
    assert produced == {"guardrails-resource-events", "guardrails-keyvault-events"}


def test_the_rotator_role_is_assignable_at_every_vault_it_is_assigned_at():
    """The rotator is assigned on each governed vault (in the vault's own subscription): that
    subscription must be one of the role's assignable scopes, governed or not."""
    main = doc("main.bicep")
    scopes_expr = body(main["resources"]["rotatorRole"])["properties"]["assignableScopes"]
    cases = [
        ([], [_vault(SUB_B, "kv1")]),                                           # the management-group recipe
        ([SUB_A], [_vault(SUB_C, "kv2"), _vault(SUB_A, "kv3")]),                # a vault in an ungoverned subscription
        ([SUB_A.upper()], [_vault(SUB_A, "kv4"), _vault(SUB_B.upper(), "kv5")]),  # case differs: one scope each
    ]
    for governed, vaults in cases:
        env = {"governedSubscriptionIds": governed, "governedVaultIds": vaults}
        scopes = evaluate(main, scopes_expr, env)
        for vault in vaults:
            # the module assigning it runs in the vault's subscription and resource group
            scope = evaluate(main, body(main["modules"]["vaults"])["scope"], {**env, "id": vault})
            assert f"/subscriptions/{scope['subscriptionId']}".lower() + "/" in vault.lower() + "/"
            assert any(vault.lower().startswith(s.lower() + "/") for s in scopes), (vault, scopes)
        assert f"/subscriptions/{SUBSCRIPTION}" in scopes
        assert all(any(s.lower() == f"/subscriptions/{g}".lower() for s in scopes) for g in governed)
        assert len(scopes) == len({s.lower() for s in scopes}), scopes


def test_a_source_with_an_existing_system_topic_gets_only_the_event_subscription():
    """Azure allows one system topic per source: a source mapped in ``existingSystemTopicIds`` keeps its
    topic (referenced, never deployed) and gets the event subscription on it; others get a new topic."""
    topic = doc("modules/topic.bicep")
    # topic.bicep: the topic is created unless reused; the subscription hangs off whichever it is
    created = topic["resources"]["topic"]
    assert not created.get("existing") and created["config"]["condition"]
    sub = body(topic["resources"]["subscription"])
    parent = topic["resources"][sub["parent"]]
    assert parent["existing"] and parent["type"] == "Microsoft.EventGrid/systemTopics"
    assert "topic" in sub.get("dependsOn", [])                       # after the topic, when it is created
    for existing, expect_created, expect_parent in (("", True, "evgt-new"), ("evgt-portal", False, "evgt-portal")):
        env = {"name": "evgt-new", "existingTopicName": existing}
        assert evaluate(topic, created["config"]["condition"], env) is expect_created
        assert evaluate(topic, parent["config"]["name"], env) == expect_parent
    assert topic["parameters"]["existingTopicName"]["default"] == ""
    # each caller: deployed into the existing topic's resource group, naming it; or as before
    cases = {
        "modules/subscription.bicep": ({"environmentName": "prod", "__subscription": SUB_A},
                                       _topic_id(SUB_A, "rg-portal", "sub-topic"), (SUB_A, "rg-prod-events")),
        "modules/vault.bicep": ({"vaultName": "kv1", "__subscription": SUB_B, "__resource_group": "rg-kv1"},
                                _topic_id(SUB_B, "rg-events-kv", "kv-topic"), (SUB_B, "rg-kv1")),
        "modules/ml-workspace.bicep": ({"workspaceName": "mlw", "__subscription": SUB_C, "__resource_group": "rg-mlw"},
                                       _topic_id(SUB_C, "rg-mlw-topics", "mlw-topic"), (SUB_C, "rg-mlw")),
    }
    for rel, (env, existing_id, own_group) in cases.items():
        d = doc(rel)
        module = body(d["modules"]["topic"])
        assert d["parameters"]["existingTopicId"]["default"] == ""
        for existing, group, name in (("", own_group, ""),
                                      (existing_id, (existing_id.split("/")[2], existing_id.split("/")[4]),
                                       existing_id.rsplit("/", 1)[-1])):
            e = {**env, "existingTopicId": existing}
            scope = evaluate(d, module["scope"], e)
            assert (scope["subscriptionId"], scope["name"]) == group, (rel, existing, scope)
            assert module_arg(rel, "topic", "existingTopicName", e) == name, rel
        if rel == "modules/subscription.bicep":     # no empty rg-<env>-events beside a reused topic
            events = d["resources"]["events"]["config"]["condition"]
            assert evaluate(d, events, {**env, "existingTopicId": ""}) is True
            assert evaluate(d, events, {**env, "existingTopicId": existing_id}) is False
            assert "events" in module["dependsOn"]
    # main.bicep and management-group.bicep look each source up in existingSystemTopicIds (keys: the
    # source's id, case-insensitive as ARM compares object keys); unmapped sources create their topic
    portal = {f"/subscriptions/{SUB_A}": _topic_id(SUB_A, "rg-portal", "t1"),
              _vault(SUB_B, "kv1").upper(): _topic_id(SUB_B, "rg-kv1", "t2"),
              _workspace(SUB_C, "mlw"): _topic_id(SUB_C, "rg-mlw", "t3")}
    for parent, module, source_id, key in (
            ("main.bicep", "subscriptions", SUB_A, f"/subscriptions/{SUB_A}"),
            ("management-group.bicep", "subscriptions", SUB_A, f"/subscriptions/{SUB_A}"),
            ("main.bicep", "vaults", _vault(SUB_B, "kv1"), _vault(SUB_B, "kv1").upper()),
            ("main.bicep", "mlWorkspaces", _workspace(SUB_C, "mlw"), _workspace(SUB_C, "mlw"))):
        assert doc(parent)["parameters"]["existingSystemTopicIds"]["default"] == {}
        mapped = module_arg(parent, module, "existingTopicId", {"existingSystemTopicIds": portal, "id": source_id})
        assert mapped == portal[key], (parent, module)
        other = SUB_C if module == "subscriptions" else source_id.replace("kv1", "kv9").replace("mlw", "mlw9")
        assert module_arg(parent, module, "existingTopicId", {"existingSystemTopicIds": portal, "id": other}) == ""
    assert json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"][
        "existingSystemTopicIds"] == {"value": {}}


def test_azd_passes_the_deployers_principal_type():
    """azd signed in as a service principal: the deployer's role assignment must say ServicePrincipal
    (ARM: UnmatchedPrincipalType otherwise); AZURE_PRINCIPAL_TYPE maps to it, default User."""
    main = doc("main.bicep")
    mapped = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(mapped) <= set(main["parameters"]), "main.parameters.json maps a parameter main.bicep lacks"
    assert mapped["deployerPrincipalId"] == {"value": "${AZURE_PRINCIPAL_ID}"}
    assert mapped["deployerPrincipalType"] == {"value": "${AZURE_PRINCIPAL_TYPE=User}"}
    param = main["parameters"]["deployerPrincipalType"]
    allowed = next(dec["argument"] for dec in param["decorators"] if dec["type"] == "allowed")
    assert {"User", "ServicePrincipal"} <= set(allowed)
    assert module_env("main.bicep", "app")["deployerPrincipalType"] == "deployerPrincipalType"
    deployer = body(doc("modules/app.bicep")["resources"]["deployerTableRole"])
    assert deployer["properties"]["principalType"] == "deployerPrincipalType"


# ---- checkov suppressions -----------------------------------------------------------------------
def test_every_checkov_suppression_carries_a_reason():
    import re

    for path in INFRA.rglob("*.bicep"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "checkov:skip" in line:
                m = re.search(r"checkov:skip=(CKV2?_[A-Z]+_\d+):\s*(.+)", line)
                assert m and len(m.group(2).split()) >= 5, f"{path.name}: suppression without a reason: {line.strip()}"
