"""Review (s32): does the deployed identity hold every ARM action the code USES?

The remediator role (``infra/main.bicep`` ``guardrailActions``) is exactly
``guardrails.permissions.required().actions`` (``tests/unit/test_infra.py``), so "granted" here is
that union. The local emulator does not enforce RBAC: a call the role lacks only fails in Azure
(403 ``AuthorizationFailed``). These tests run guardrail flows through the emulator, map each
request the guardrail's own identity made to the ARM action Azure authorizes it with, and assert
that action is granted.

``arm_action`` maps (method, path) the way ARM names operations (``{namespace}/{type path}/{verb}``,
https://learn.microsoft.com/azure/role-based-access-control/permissions/ai-machine-learning etc.),
with the one documented exception these flows hit: an Azure ML *registry*'s assets (models,
environments, components, code, data and their versions) are authorized as
``Microsoft.MachineLearningServices/registries/assets/{read|write|delete}`` — the resource provider
publishes no ``registries/models/*`` operation, and the built-in *AzureML Registry User* role gives
registry asset access with ``registries/read`` + ``registries/assets/*`` only. A path it does not
know is returned as ``None`` and listed, never counted as granted.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from guardrails.local.ml_emulator import model_version, online_endpoint
from guardrails.permissions import required
from tests import builders as b
from tests.integration.test_ml_guardrail import REG, WS, policy_dir

ML = "Microsoft.MachineLearningServices"
# the asset kinds an Azure ML registry holds (ARM child types of registries/{name})
REGISTRY_ASSETS = {"models", "environments", "components", "codes", "data"}
# Microsoft.MachineLearningServices/registries* operations the resource provider publishes
# (learn.microsoft.com/azure/role-based-access-control/permissions/ai-machine-learning, section
# Microsoft.MachineLearningServices): nothing under registries/models
PUBLISHED_REGISTRY_OPERATIONS = {a.lower() for a in (
    f"{ML}/registries/read", f"{ML}/registries/write", f"{ML}/registries/delete",
    f"{ML}/registries/privateEndpointConnectionsApproval/action",
    f"{ML}/registries/assets/read", f"{ML}/registries/assets/write", f"{ML}/registries/assets/delete",
    f"{ML}/registries/assets/stage/write", f"{ML}/registries/checkNameAvailability/read",
    f"{ML}/registries/connections/read", f"{ML}/registries/connections/write", f"{ML}/registries/connections/delete",
    f"{ML}/registries/privateEndpointConnectionProxies/read", f"{ML}/registries/privateEndpointConnectionProxies/write",
    f"{ML}/registries/privateEndpointConnectionProxies/delete",
    f"{ML}/registries/privateEndpointConnectionProxies/validate/action",
    f"{ML}/registries/privateEndpointConnections/read", f"{ML}/registries/privateEndpointConnections/write",
    f"{ML}/registries/privateEndpointConnections/delete", f"{ML}/registries/privateLinkResources/read")}
_VERB = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


def arm_action(method: str, path: str) -> str | None:
    """The ARM action Azure authorizes ``method path`` with (management host), or None when this
    mapping does not know the path (the caller lists those; they are never taken as granted)."""
    method = method.upper()
    segs = [s for s in urlsplit(path).path.split("/") if s]
    low = [s.lower() for s in segs]
    if low == ["subscriptions"] and method == "GET":
        return "Microsoft.Resources/subscriptions/read"
    if low == ["providers", "microsoft.resourcegraph", "resources"] and method == "POST":
        return "Microsoft.ResourceGraph/resources/read"        # "Submits a query on resources"
    if "providers" not in low:
        return None
    at = len(low) - 1 - low[::-1].index("providers")            # the last provider segment
    rest = segs[at + 1:]
    if len(rest) < 2:
        return None
    ns, tail = rest[0], rest[1:]
    # /subscriptions/{s}/providers/{ns}/locations/{loc}/{kind}/{id}: a long-running operation's status
    if tail[0].lower() == "locations" and len(tail) == 4 and at == 2 and low[0] == "subscriptions":
        return f"{ns}/locations/{tail[2]}/read" if method == "GET" else None
    types = tail[0::2]
    instance = len(tail) % 2 == 0
    if method == "POST":
        if instance or len(types) < 2:
            return None
        return f"{ns}/{'/'.join(types[:-1])}/{types[-1]}/action"
    verb = _VERB.get(method)
    if verb is None or (not instance and verb != "read"):
        return None
    if ns.lower() == ML.lower() and types[0].lower() == "registries" and len(types) > 1:
        if types[1].lower() in REGISTRY_ASSETS:
            return f"{ML}/registries/assets/{verb}"
        return None
    return f"{ns}/{'/'.join(types)}/{verb}"


def granted() -> set[str]:
    return {a.lower() for a in required().actions}


def guardrail_calls(emu) -> list[dict]:
    """The requests the guardrail's own identity made to ARM (not the test's setup calls)."""
    return [q for q in emu.requests if q["host"] == "management" and q.get("caller") == b.GUARDRAIL_OID]


def missing_actions(requests: list[dict]) -> tuple[dict[str, list[str]], list[str]]:
    """(action -> the calls that need it, for actions the role lacks; calls this mapping skips)."""
    have, missing, unknown = granted(), {}, []
    for q in requests:
        action = arm_action(q["method"], q["path"])
        if action is None:
            unknown.append(f"{q['method']} {q['path']}")
        elif action.lower() not in have:
            missing.setdefault(action, []).append(f"{q['method']} {q['path']}")
    return missing, unknown


# ------------------------------------------------------------------------- the mapping itself
def test_arm_action_maps_the_documented_operations_exactly():
    sub = f"/subscriptions/{b.SUB}"
    sa = b.rid("Microsoft.Storage", "storageAccounts", "st1")
    assert arm_action("PATCH", sa) == "Microsoft.Storage/storageAccounts/write"
    assert arm_action("GET", f"{sub}/providers/Microsoft.Storage/storageAccounts") == "Microsoft.Storage/storageAccounts/read"
    assert arm_action("POST", f"{sa}/regenerateKey") == "Microsoft.Storage/storageAccounts/regenerateKey/action"
    assert arm_action("DELETE", f"{sub}/providers/Microsoft.Authorization/roleAssignments/x") == \
        "Microsoft.Authorization/roleAssignments/delete"
    assert arm_action("GET", f"{WS}/onlineEndpoints/e/deployments/d") == \
        f"{ML}/workspaces/onlineEndpoints/deployments/read"
    assert arm_action("PUT", f"{WS}/models/m/versions/1") == f"{ML}/workspaces/models/versions/write"
    assert arm_action("PUT", f"{REG}/models/m/versions/1") == f"{ML}/registries/assets/write"
    assert arm_action("GET", f"{REG}/models") == f"{ML}/registries/assets/read"
    assert arm_action("GET", f"{sub}/providers/{ML}/locations/eastus/mfeOperationsStatus/oe:1") == \
        f"{ML}/locations/mfeOperationsStatus/read"
    assert arm_action("GET", "/subscriptions") == "Microsoft.Resources/subscriptions/read"
    assert arm_action("PUT", f"{sub}/providers/{ML}/locations/eastus/x/1") is None         # unknown: skipped
    assert arm_action("POST", sa) is None


# ------------------------------------------------------------------------- registry assets (HIGH)
def test_a_registry_model_version_is_read_and_archived_with_actions_the_role_grants(harness):
    # GIVEN an untagged model version in a governed Azure ML registry (archived by default)
    v = model_version(REG, "fraud-clf", 3, tags={"owner": "ds_team@contoso.com"})
    h = harness([v])
    row = h.deliver(b.write_event(v["id"]))
    assert row.verdict == "remediated"                 # the emulator enforces no RBAC
    missing, unknown = missing_actions(guardrail_calls(h.emu))
    # THEN every call the guardrail made is one the remediator role authorizes in Azure; today the
    # GET and the archiving PUT of .../registries/{r}/models/{m}/versions/{v} need
    # registries/assets/read and registries/assets/write, which the role does not hold (it holds
    # registries/models/versions/read|write, operations Azure ML does not publish)
    assert missing == {}, (missing, unknown)


def test_every_declared_ml_registry_action_is_an_operation_azure_ml_publishes():
    declared = {a for a in required().actions if a.lower().startswith(f"{ML}/registries".lower())}
    assert declared, "the ML registry type is declared"
    unpublished = sorted(a for a in declared if a.lower() not in PUBLISHED_REGISTRY_OPERATIONS)
    assert unpublished == [], unpublished


# ------------------------------------------------------------------------- long-running fixes (MEDIUM)
def test_a_long_running_fix_polls_its_status_with_an_action_the_role_grants(harness, tmp_path):
    # GIVEN an endpoint fix that ARM runs as a long-running operation (Azure ML answers an online
    # endpoint PUT with Azure-AsyncOperation .../providers/Microsoft.MachineLearningServices/
    # locations/{loc}/mfeOperationsStatus/{id}); the budget lets the guardrail poll it to the end
    ep = online_endpoint(WS, "fraud-scoring", auth_mode="Key", public_network_access="Enabled",
                         tags={"data_classification": "sensitive"})
    h = harness([ep], extra_metadata=[policy_dir(tmp_path, endpoint_action="enforce")], lro_seconds=0.3)
    row = h.deliver(b.write_event(ep["id"]))
    assert row.verdict == "remediated"
    polls = [q for q in guardrail_calls(h.emu) if "/locations/" in q["path"].lower() and q["method"] == "GET"]
    assert polls, "the guardrail polled the operation's status"
    have = granted()
    # THEN the role holds a status read of that resource provider (ARM authorizes the status GET
    # like any other: {namespace}/locations/{kind}/read); it holds none, so in Azure every poll is
    # 403 and every long-running fix is audited 'requested' instead of done
    ungranted = set()
    for q in polls:
        action = arm_action("GET", q["path"])
        ns = action.split("/")[0].lower()
        if not any(a.startswith(f"{ns}/locations/") and a.endswith("/read") for a in have):
            ungranted.add(action)
    ungranted = sorted(ungranted)
    assert ungranted == [], ungranted


def test_the_ml_endpoint_fix_may_read_its_documented_operation_status():
    # the status URL of an online endpoint write is .../locations/{loc}/mfeOperationsStatus/{id}
    # (Azure ML's AzureAsyncOperationUri); its operation: Microsoft.MachineLearningServices/
    # locations/mfeOperationsStatus/read ("Gets the status of a particular MFE operation")
    assert f"{ML}/workspaces/onlineEndpoints/write".lower() in granted()
    assert f"{ML}/locations/mfeOperationsStatus/read".lower() in granted()


# ------------------------------------------------------------------------- the demo, end to end
def test_the_demo_world_and_a_sweep_use_only_granted_actions():
    from guardrails.simulate import run_simulation

    root = Path(__file__).resolve().parents[2]
    world = json.loads((root / "demo/world.json").read_text())
    events = json.loads((root / "demo/events.json").read_text())
    result = run_simulation(world, events, sweep=True, env={})
    calls = [q for q in result.requests if q["host"] == "management"]      # the guardrail's only
    missing, unknown = missing_actions(calls)
    mapped = len(calls) - len(unknown)
    assert mapped > 20, unknown
    assert missing == {}, (missing, unknown)
