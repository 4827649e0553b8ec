"""Least privilege derived from the code: every Azure-calling class declares what it needs, and the
union is what ``python -m guardrails permissions`` prints (infra/ is checked against it in
test_infra.py)."""

from __future__ import annotations

import ast
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from guardrails import permissions
from guardrails.model import resource
from guardrails.model.resource import ResourceType
from guardrails.remediation.actions import actions

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "guardrails"
SKIP_DIRS = {"local"}      # the local emulator and its launcher are test infrastructure, not the product


def _sdk_client_names(tree: ast.Module) -> set[str]:
    """Names imported from ``azure.*`` (anywhere in the module) that are SDK clients."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("azure."):
            names |= {a.asname or a.name for a in node.names if a.name.endswith("Client")}
    return names


def client_constructions() -> list[tuple[str, str | None, int]]:
    """(module, outermost class or None, line) of every call constructing an Azure SDK client."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in SKIP_DIRS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        clients = _sdk_client_names(tree)
        if not clients:
            continue
        module = "guardrails." + ".".join(rel.with_suffix("").parts)

        def visit(node: ast.AST, cls: str | None) -> None:
            for child in ast.iter_child_nodes(node):
                inner = cls or (child.name if isinstance(child, ast.ClassDef) else None)
                if isinstance(child, ast.Call):
                    f = child.func
                    target = f.id if isinstance(f, ast.Name) else f.value.id if (
                        isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)) else None
                    if target in clients:
                        found.append((module, inner, child.lineno))
                visit(child, inner)
        visit(tree, None)
    return found


def test_the_walk_finds_the_known_gateways():
    """GIVEN the product WHEN walked THEN the gateways known today are found (the walk works)."""
    classes = {(m, c) for m, c, _ in client_constructions()}
    for known in [("guardrails.adapters.arm", "ArmGateway"), ("guardrails.adapters.keyvault", "KeyVaultGateway"),
                  ("guardrails.adapters.keyvault", "StorageKeysGateway"), ("guardrails.adapters.tables", "Tables"),
                  ("guardrails.adapters.authorization", "AuthorizationGateway"),
                  ("guardrails.adapters.authorization", "GraphGroupResolver")]:
        assert known in classes


def test_every_class_constructing_an_azure_client_declares_its_permissions():
    """A new gateway (a lister, a publisher, an ML client ...) cannot skip the declaration: it must
    live in a class that declares what it needs and that the registry finds."""
    discovered = {f"{c.__module__}.{c.__qualname__}": c for c in permissions.candidate_classes()}
    problems = []
    for module, cls, line in client_constructions():
        if cls is None:
            problems.append(f"{module}:{line} builds an Azure client outside a class: move it into a gateway class"
                            " that declares its permissions")
            continue
        found = discovered.get(f"{module}.{cls}")
        if found is None:
            problems.append(f"{module}.{cls} (line {line}) builds an Azure client but guardrails.permissions does not"
                            " find it: keep it in guardrails/adapters/ or list its module in EXTRA_MODULES")
        elif not permissions.declares(found):
            problems.append(f"{module}.{cls} builds an Azure client but declares none of {permissions.KINDS}")
    assert not problems, "\n".join(problems)


def test_every_registered_action_declares_its_permissions_even_when_none():
    missing = [name for name in actions if "permissions" not in actions.get(name).__dict__]
    assert not missing, f"actions without a `permissions` declaration: {missing}"


def test_generic_arm_access_is_derived_from_the_catalogue(monkeypatch):
    """GIVEN a type added to the catalogue WHEN the union is computed THEN its read and write are in it
    (and its write is a covered operation) with no other edit."""
    new = ResourceType("Microsoft.CognitiveServices/accounts", "2024-10-01", "patch",
                       {"properties.publicNetworkAccess": "Enabled"})
    before = permissions.required()
    assert "Microsoft.CognitiveServices/accounts/read" not in before.actions
    monkeypatch.setitem(resource.CATALOG, new.key, new)
    after = permissions.required()
    assert {"Microsoft.CognitiveServices/accounts/read", "Microsoft.CognitiveServices/accounts/write"} \
        <= set(after.actions)
    assert "Microsoft.CognitiveServices/accounts/write" in permissions.covered_operations()


def test_the_union_holds_what_the_guardrails_call():
    req = permissions.required()
    for rtype in resource.CATALOG.values():
        assert f"{rtype.name}/read" in req.actions
        # written only when a fix can set something on it (a compute's only property is immutable)
        assert (f"{rtype.name}/write" in req.actions) is bool(permissions.settable(rtype)), rtype.name
    assert {"Microsoft.Authorization/roleAssignments/read", "Microsoft.Authorization/roleAssignments/delete",
            "Microsoft.Authorization/roleDefinitions/read"} <= set(req.actions)
    # a storage account's keys: a role of their own, assigned on each rotated account (never the governed scopes)
    assert req.storage_key_actions == ("Microsoft.Storage/storageAccounts/listKeys/action",
                                       "Microsoft.Storage/storageAccounts/regenerateKey/action")
    assert not set(req.storage_key_actions) & set(req.actions)
    assert {"Microsoft.KeyVault/vaults/secrets/setSecret/action", "Microsoft.KeyVault/vaults/keys/rotate/action"} \
        <= set(req.data_actions)
    assert req.graph == ("Application.Read.All", "GroupMember.Read.All", "User.Read.All")
    # data-plane and Graph needs never leak into the ARM role, and nothing is a wildcard
    assert not set(req.actions) & (set(req.data_actions) | set(req.graph))
    assert not any("*" in a for a in req.actions + req.data_actions)
    assert req.sources["Microsoft.Authorization/roleAssignments/delete"] == ("AuthorizationGateway", "DeleteRoleAssignment")


# Graph ``POST /directoryObjects/{id}/checkMemberGroups``, application permissions, by the kind of
# object ``{id}`` is (microsoft-graph-docs api-reference/v1.0/api/directoryobject-checkmembergroups.md):
# any one of these sets suffices, least privileged first
CHECK_MEMBER_GROUPS = {
    "user": ({"User.Read.All", "GroupMember.Read.All"}, {"User.Read.All", "Group.Read.All"}, {"Directory.Read.All"}),
    "servicePrincipal": ({"Application.Read.All"}, {"Directory.Read.All"}, {"Application.ReadWrite.All"},
                         {"Directory.ReadWrite.All"}),
    "group": ({"GroupMember.Read.All"}, {"Group.Read.All"}, {"Directory.Read.All"}, {"Group.ReadWrite.All"},
              {"Directory.ReadWrite.All"}),
}


def test_graph_permissions_let_check_member_groups_answer_for_users_and_service_principals_least_privileged():
    """The subjects whose Entra group membership is checked are users and service principals (managed
    identities, pipelines; groups when nested): the declared permissions must satisfy Graph for each,
    with the least privileged set (not Directory.Read.All, which reads every directory object)."""
    from guardrails.adapters.authorization import GraphGroupResolver

    declared = set(permissions.declared(GraphGroupResolver, "graph_permissions"))
    for kind, sets in CHECK_MEMBER_GROUPS.items():
        assert any(needed <= declared for needed in sets), f"Graph refuses checkMemberGroups for a {kind}"
        assert sets[0] <= declared, f"{kind}: not the least privileged set {sorted(sets[0])}"
    assert declared == set().union(*(sets[0] for sets in CHECK_MEMBER_GROUPS.values()))   # and nothing more
    assert not any(p.startswith("Directory.") or ".ReadWrite." in p for p in declared)


def test_the_readme_grants_exactly_the_declared_graph_permissions():
    """The admin-consent recipe (README "Microsoft Graph") loops over the app roles to assign."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (granted,) = re.findall(r"^for PERM in ([A-Za-z. ]+); do$", readme, flags=re.M)
    assert tuple(sorted(granted.split())) == permissions.required().graph
    assert "appRoles[?value=='$PERM'].id" in readme


def test_a_wildcard_declaration_is_refused():
    class Greedy:
        permissions = ("Microsoft.Storage/storageAccounts/*",)

    with pytest.raises(ValueError, match="wildcard"):
        permissions.required([Greedy])


def test_a_malformed_declaration_is_refused():
    class Sloppy:
        permissions = "Microsoft.Storage/storageAccounts/read"     # a string, not a tuple

    with pytest.raises(TypeError, match="Sloppy.permissions"):
        permissions.required([Sloppy])


def test_covered_operations_are_the_catalogue_ml_and_role_assignment_writes():
    from guardrails.ml_guardrail import ML_TYPE_NAMES, ML_TYPES
    ops = permissions.covered_operations()
    assert ops == sorted({f"{t.name}/write" for t in resource.CATALOG.values()}
                         | {f"{t}/write" for t in ML_TYPE_NAMES}
                         | {"Microsoft.Authorization/roleAssignments/write",
                            "Microsoft.Authorization/roleDefinitions/write"}, key=str.lower)
    assert {t.lower() for t in ML_TYPE_NAMES} == set(ML_TYPES)      # one list, two spellings
    # the ML guardrail reads every type it judges and writes what it fixes
    req = permissions.required()
    from guardrails.ml_guardrail import _action
    assert {_action(t, "read") for t in ML_TYPE_NAMES} <= set(req.actions)
    # a registry's models and versions are authorized as its assets: Azure ML publishes no
    # registries/models/* operation (the built-in AzureML Registry User: registries/read + assets/*)
    assert not [a for a in req.actions if "/registries/models" in a.lower()]
    assert {"Microsoft.MachineLearningServices/registries/assets/read",
            "Microsoft.MachineLearningServices/registries/assets/write"} <= set(req.actions)
    assert "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write" in req.actions
    assert "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/write" not in req.actions
    assert permissions.ml_event_types() == sorted(
        f"Microsoft.MachineLearningServices.{n}"
        for n in ("ModelRegistered", "ModelDeployed", "DatasetDriftDetected", "RunCompleted", "RunStatusChanged"))
    kv = permissions.keyvault_event_types()
    assert "Microsoft.KeyVault.SecretNearExpiry" in kv and "Microsoft.KeyVault.VaultAccessPolicyChanged" in kv
    assert not [t for t in kv if "Certificate" in t or not t.startswith("Microsoft.KeyVault.")]


def _cli(*argv: str) -> tuple[int, str]:
    from guardrails.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["permissions", *argv])
    return code, out.getvalue()


def test_cli_prints_the_union_as_json_text_and_bicep():
    req = permissions.required()
    code, out = _cli("--json")
    assert code == 0 and json.loads(out) == req.as_dict()
    code, text = _cli()
    assert code == 0 and "GroupMember.Read.All" in text and "ArmGateway" in text
    code, bicep = _cli("--bicep")
    assert code == 0
    assert "var guardrailActions = [\n" + "".join(f"  '{a}'\n" for a in req.actions) + "]" in bicep
