"""Azure role definitions: a value type, the built-in catalog, and ARM's action wildcards.

Pure: no I/O. ``RoleDefinition`` mirrors what ARM returns for
``GET {scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}?api-version=2022-04-01``
(``to_arm`` / ``from_arm``). ``BUILTIN_ROLES`` holds the built-in roles the guardrail reasons
about, with the GUIDs and permissions Microsoft publishes ("Azure built-in roles").

Action patterns follow ARM: case-insensitive, ``*`` matches any run of characters including
``/`` (``*``, ``Microsoft.Authorization/*``, ``*/read``, ``Microsoft.KeyVault/vaults/*/read``).
A role grants an action when some ``actions`` pattern matches it and no ``notActions`` pattern
does (``notActions`` subtract; they are not deny assignments).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping

ROLE_DEFINITION_TYPE = "Microsoft.Authorization/roleDefinitions"
BUILT_IN = "BuiltInRole"
CUSTOM = "CustomRole"
_PROVIDER_PATH = "/providers/Microsoft.Authorization/roleDefinitions/"
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_GUID_DASHLESS = re.compile(r"[0-9a-f]{32}")


def normalize_guid(text: object) -> str | None:
    """``text`` as a lower-case dashed GUID (dashed, dashless or ``{braced}`` accepted), or None."""
    if not isinstance(text, str):
        return None
    t = text.strip().lower()
    if t.startswith("{") and t.endswith("}"):
        t = t[1:-1]
    if _GUID.fullmatch(t):
        return t
    if _GUID_DASHLESS.fullmatch(t):
        return f"{t[:8]}-{t[8:12]}-{t[12:16]}-{t[16:20]}-{t[20:]}"
    return None


def role_guid(role_definition_id: str) -> str:
    """The role's GUID, lower-case dashed, from any id form: a bare GUID,
    ``/providers/Microsoft.Authorization/roleDefinitions/{guid}`` or the same under a
    subscription / management group. Raises ``ValueError`` when the last segment is no GUID."""
    if not isinstance(role_definition_id, str):
        raise ValueError(f"role definition id must be a string, got {type(role_definition_id).__name__}")
    last = role_definition_id.rstrip("/").rsplit("/", 1)[-1]
    guid = normalize_guid(last)
    if guid is None:
        raise ValueError(f"role definition id {role_definition_id[:120]!r} does not end in a GUID")
    return guid


# -- wildcard matching --------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE | re.DOTALL)


def action_matches(pattern: str, action: str) -> bool:
    """ARM wildcard semantics, case-insensitive: ``*`` matches any characters, ``/`` included.

    ``action`` is taken literally (a ``*`` in it is just a character), so
    ``action_matches("Microsoft.Authorization/*", "Microsoft.Authorization/*/write")`` is True.
    """
    return _compile(pattern).fullmatch(action) is not None


def grants(defn: RoleDefinition, action: str) -> bool:
    """True when some ``actions`` pattern matches ``action`` and no ``notActions`` pattern does."""
    return any(action_matches(p, action) for p in defn.actions) and not any(
        action_matches(n, action) for n in defn.not_actions
    )


# -- exact overlap of '*'-globs -----------------------------------------------------------------
# A glob is a tiny automaton: state k = "the first k tokens are matched"; a '*' token loops on
# any character and may be skipped. Whether some string matches P and A but none of N1..Nk is
# decided exactly by walking the product of those automata (subset construction, one step per
# character class): the alphabet is every literal character the patterns name plus ONE other
# character standing for all the rest, since those behave alike in every pattern.
_OTHER = ""                      # the "any other character" class (never a literal of a pattern)
OVERLAP_STATE_LIMIT = 50_000     # far above any real role; past it the answer is "overlaps" (fail safe)


def _glob_tokens(pattern: str) -> tuple[str, ...]:
    out: list[str] = []
    for ch in pattern.lower():
        if ch == "*" and out and out[-1] == "*":
            continue                                   # '**' is '*'
        out.append(ch)
    return tuple(out)


def _closure(tokens: tuple[str, ...], states) -> frozenset[int]:
    out = set(states)
    stack = list(states)
    while stack:
        k = stack.pop()
        if k < len(tokens) and tokens[k] == "*" and k + 1 not in out:
            out.add(k + 1)
            stack.append(k + 1)
    return frozenset(out)


def _step(tokens: tuple[str, ...], states: frozenset[int], ch: str) -> frozenset[int]:
    nxt = set()
    for k in states:
        if k < len(tokens):
            if tokens[k] == "*":
                nxt.add(k)
            elif tokens[k] == ch:
                nxt.add(k + 1)
    return _closure(tokens, nxt) if nxt else frozenset()


def globs_overlap(include: tuple[str, ...] | list[str], exclude: tuple[str, ...] | list[str] = ()) -> bool:
    """True when some action string matches EVERY pattern of ``include`` and NO pattern of
    ``exclude`` (ARM wildcards: ``*`` = any run of characters, case-insensitive). Exact, not a
    sample of actions: ``globs_overlap(["Microsoft.Authorization/role*", "Microsoft.Authorization/*/write"])``
    is True (``…/roleAssignments/write``); ``globs_overlap(["*"], ["*"])`` is False.
    Memoised: a custom role is judged on every assignment of it (events and each sweep), and one
    walk takes ~0.1–1 ms."""
    return _globs_overlap(tuple(p.lower() for p in include), tuple(sorted({p.lower() for p in exclude})))


@lru_cache(maxsize=8192)
def _globs_overlap(include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    inc = [_glob_tokens(p) for p in include]
    exc = [_glob_tokens(p) for p in exclude]
    if not inc:
        return False
    alphabet = {c for t in (*inc, *exc) for c in t if c != "*"}
    alphabet.add(_OTHER)
    start = (tuple(_closure(t, {0}) for t in inc), tuple(_closure(t, {0}) for t in exc))
    seen = {start}
    todo = [start]
    while todo:
        ins, outs = todo.pop()
        if all(len(t) in s for t, s in zip(inc, ins)) and not any(len(t) in s for t, s in zip(exc, outs)):
            return True
        for ch in alphabet:
            nxt_in = tuple(_step(t, s, ch) for t, s in zip(inc, ins))
            if not all(nxt_in):
                continue                               # some include pattern can no longer match
            nxt = (nxt_in, tuple(_step(t, s, ch) for t, s in zip(exc, outs)))
            if nxt not in seen:
                if len(seen) >= OVERLAP_STATE_LIMIT:
                    return True
                seen.add(nxt)
                todo.append(nxt)
    return False


def provider_wildcard(pattern: str) -> bool:
    """True when ``pattern`` leaves the resource provider open: a ``*`` before its first ``/``
    (``*``, ``*/write``, ``Microsoft.*``, ``M*``), so it reaches providers it never names."""
    return "*" in pattern.split("/", 1)[0]


# every Azure operation ends in /read, /write, /delete or /action; these three change something
_CHANGES = ("*/write", "*/delete", "*/action")


def grants_pattern(defn: RoleDefinition, pattern: str, *, data: bool = False) -> bool:
    """True when the role's effective permissions (``actions`` minus ``notActions``; with
    ``data``, ``dataActions`` minus ``notDataActions``) reach ``pattern``.

    A pattern that names a namespace (``Microsoft.Authorization/*/write``) is reached when SOME
    action the role effectively grants matches it: exact glob overlap, so a role action
    ``Microsoft.Authorization/role*`` or ``Microsoft.Authorization/roleAssignments/*`` reaches it
    (witness ``…/roleAssignments/write``), unless ``notActions`` remove every such action
    (Contributor's ``Microsoft.Authorization/*/Write``).

    A pattern starting with ``*`` (``*``, ``*/write``) stands for "across every provider": it is
    reached by a role action that leaves the provider open (``provider_wildcard``: ``*``,
    ``Microsoft.*``, ``M*``, ``*/write``, ``*/action``…) when the two overlap on some action no
    ``notActions`` pattern removes and that changes something (ends in ``/write``, ``/delete``
    or ``/action``; any action when ``pattern`` itself names none of those). So ``*`` is reached
    by Owner and by a Contributor clone however its ``*`` is spelled (``Microsoft.*``, ``M*``,
    ``["*/read", "*/write", "*/delete", "*/action"]``), not by a Reader-like ``*/read`` nor by
    a role confined to providers it names (``Microsoft.Compute/*``): as a plain overlap, ``*``
    would call every role privileged.
    """
    allowed = defn.data_actions if data else defn.actions
    removed = defn.not_data_actions if data else defn.not_actions
    if pattern.startswith("*"):
        verbs = [v for v in _CHANGES if globs_overlap((pattern, v))] or ["*"]
        return any(provider_wildcard(a) and globs_overlap((a, pattern, v), removed)
                   for a in allowed for v in verbs)
    return any(globs_overlap((a, pattern), removed) for a in allowed)


# -- value type ---------------------------------------------------------------------------------
def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"role definition {where} must be a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class RoleDefinition:
    id: str                                    # the GUID (lower-case, dashed)
    role_name: str
    role_type: str                             # "BuiltInRole" | "CustomRole"
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()
    assignable_scopes: tuple[str, ...] = ("/",)
    description: str = ""
    created_on: str | None = None              # ISO timestamps as ARM reports them, if known
    updated_on: str | None = None

    @property
    def is_builtin(self) -> bool:
        return self.role_type == BUILT_IN

    def arm_id(self, scope: str | None = None) -> str:
        """``/providers/…/roleDefinitions/{guid}``, or under ``scope`` when given. A custom role
        without ``scope`` is placed under the subscription/management group of its first
        assignable scope, as ARM does."""
        if scope is None and not self.is_builtin:
            scope = _definition_home(self.assignable_scopes)
        prefix = (scope or "").rstrip("/")
        return f"{prefix}{_PROVIDER_PATH}{self.id}"

    def to_arm(self, scope: str | None = None) -> dict[str, Any]:
        """The REST body ARM GET (api-version 2022-04-01) returns for this definition."""
        props: dict[str, Any] = {
            "roleName": self.role_name,
            "type": self.role_type,
            "description": self.description,
            "assignableScopes": list(self.assignable_scopes),
            "permissions": [{
                "actions": list(self.actions),
                "notActions": list(self.not_actions),
                "dataActions": list(self.data_actions),
                "notDataActions": list(self.not_data_actions),
            }],
        }
        if self.created_on is not None:
            props["createdOn"] = self.created_on
        if self.updated_on is not None:
            props["updatedOn"] = self.updated_on
        return {"id": self.arm_id(scope), "name": self.id, "type": ROLE_DEFINITION_TYPE, "properties": props}

    @classmethod
    def from_arm(cls, body: Mapping[str, Any]) -> RoleDefinition:
        """Build from an ARM body: the REST shape (``properties``) or the flattened shape the
        SDK's ``as_dict()``/CLI print (``roleName``, ``roleType`` at top level). Missing lists
        read as empty. Raises ``ValueError`` when ``body`` is not a role definition."""
        if not isinstance(body, Mapping):
            raise ValueError(f"role definition must be an object, got {type(body).__name__}")
        typ = body.get("type")
        props = body.get("properties")
        if props is None:
            props = body
        elif not isinstance(props, Mapping):
            raise ValueError("role definition 'properties' must be an object")
        if isinstance(typ, str) and typ.lower() != ROLE_DEFINITION_TYPE.lower():
            raise ValueError(f"not a role definition: type {typ[:80]!r}")
        guid = normalize_guid(body.get("name"))
        if guid is None:
            ident = body.get("id")
            if not isinstance(ident, str):
                raise ValueError("role definition has neither a GUID 'name' nor an 'id'")
            guid = role_guid(ident)
        name = props.get("roleName")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("role definition has no 'roleName'")
        role_type = props.get("roleType", props.get("type") if props is not body else None)
        if role_type is None:
            role_type = CUSTOM
        if role_type not in (BUILT_IN, CUSTOM):
            raise ValueError(f"role definition type {str(role_type)[:40]!r} is not BuiltInRole or CustomRole")
        perms = props.get("permissions") or []
        if not isinstance(perms, (list, tuple)) or not all(isinstance(p, Mapping) for p in perms):
            raise ValueError("role definition 'permissions' must be a list of objects")
        actions, data_actions = [], []
        not_sets: list[tuple[str, ...]] = []
        not_data_sets: list[tuple[str, ...]] = []
        for i, p in enumerate(perms):
            actions += _strings(p.get("actions"), f"permissions[{i}].actions")
            data_actions += _strings(p.get("dataActions"), f"permissions[{i}].dataActions")
            not_sets.append(_strings(p.get("notActions"), f"permissions[{i}].notActions"))
            not_data_sets.append(_strings(p.get("notDataActions"), f"permissions[{i}].notDataActions"))
        scopes = _strings(props.get("assignableScopes"), "assignableScopes") or ("/",)
        description = props.get("description") or ""
        if not isinstance(description, str):
            raise ValueError("role definition 'description' must be a string")
        created, updated = props.get("createdOn"), props.get("updatedOn")
        return cls(
            id=guid, role_name=name, role_type=role_type,
            actions=_dedup(actions), not_actions=_merge_not(not_sets),
            data_actions=_dedup(data_actions), not_data_actions=_merge_not(not_data_sets),
            assignable_scopes=scopes, description=description,
            created_on=created if isinstance(created, str) else None,
            updated_on=updated if isinstance(updated, str) else None,
        )


def _dedup(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merge_not(blocks: list[tuple[str, ...]]) -> tuple[str, ...]:
    """With several permission blocks a ``notActions`` entry only subtracts within its own
    block; flattened, keep only entries every block has, so the result never under-grants."""
    if not blocks:
        return ()
    if len(blocks) == 1:
        return _dedup(list(blocks[0]))
    common = set.intersection(*({n.lower() for n in b} for b in blocks))
    return _dedup([n for n in blocks[0] if n.lower() in common])


def _definition_home(scopes: tuple[str, ...]) -> str | None:
    for s in scopes:
        parts = s.strip("/").split("/")
        if len(parts) >= 2 and parts[0].lower() == "subscriptions":
            return f"/subscriptions/{parts[1]}"
        if len(parts) >= 4 and parts[1].lower() == "microsoft.management":
            return "/" + "/".join(parts[:4])
    return None


# -- built-in catalog (GUIDs and permissions as published by Microsoft) -------------------------
def _builtin(guid: str, name: str, description: str, actions: tuple[str, ...] = (),
             not_actions: tuple[str, ...] = (), data_actions: tuple[str, ...] = (),
             not_data_actions: tuple[str, ...] = ()) -> RoleDefinition:
    return RoleDefinition(guid, name, BUILT_IN, actions, not_actions, data_actions, not_data_actions,
                          ("/",), description)


_KV_MGMT_READ = (
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
    "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read",
    "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
)

_CATALOG = (
    _builtin("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner",
             "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
             ("*",)),
    _builtin("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor",
             "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, "
             "manage assignments in Azure Blueprints, or share image galleries.",
             ("*",),
             ("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
              "Microsoft.Authorization/elevateAccess/Action", "Microsoft.Blueprint/blueprintAssignments/write",
              "Microsoft.Blueprint/blueprintAssignments/delete", "Microsoft.Compute/galleries/share/action",
              "Microsoft.Purview/consents/write", "Microsoft.Purview/consents/delete",
              "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
              "Microsoft.Subscription/cancel/action", "Microsoft.Subscription/enable/action")),
    _builtin("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader",
             "View all resources, but does not allow you to make any changes.",
             ("*/read",)),
    _builtin("18d7d88d-d35e-4fb5-a5c3-7773c20a72d9", "User Access Administrator",
             "Lets you manage user access to Azure resources.",
             ("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*")),
    _builtin("f58310d9-a9f6-439a-9e8d-f62e7b41a168", "Role Based Access Control Administrator",
             "Manage access to Azure resources by assigning roles using Azure RBAC. This role does not allow "
             "you to manage access using other ways, such as Azure Policy.",
             ("Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete",
              "*/read", "Microsoft.Support/*")),
    _builtin("00482a5a-887f-4fb3-b363-3b7fe8e74483", "Key Vault Administrator",
             "Perform all data plane operations on a key vault and all objects in it, including certificates, "
             "keys, and secrets. Cannot manage key vault resources or manage role assignments. Only works for "
             "key vaults that use the 'Azure role-based access control' permission model.",
             _KV_MGMT_READ, (), ("Microsoft.KeyVault/vaults/*",)),
    _builtin("f25e0fa2-a7c8-4377-a976-54943a77a395", "Key Vault Contributor",
             "Lets you manage key vaults, but not access to them.",
             ("Microsoft.Authorization/*/read", "Microsoft.Insights/alertRules/*", "Microsoft.KeyVault/*",
              "Microsoft.Resources/deployments/*", "Microsoft.Resources/subscriptions/resourceGroups/read",
              "Microsoft.Support/*"),
             ("Microsoft.KeyVault/locations/deletedVaults/purge/action", "Microsoft.KeyVault/hsmPools/*",
              "Microsoft.KeyVault/managedHsms/*")),
    _builtin("4633458b-17de-408a-b874-0445c86b69e6", "Key Vault Secrets User",
             "Read secret contents. Only works for key vaults that use the 'Azure role-based access control' "
             "permission model.",
             (), (), ("Microsoft.KeyVault/vaults/secrets/getSecret/action",
                      "Microsoft.KeyVault/vaults/secrets/readMetadata/action")),
    _builtin("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "Key Vault Secrets Officer",
             "Perform any action on the secrets of a key vault, except manage permissions. Only works for key "
             "vaults that use the 'Azure role-based access control' permission model.",
             _KV_MGMT_READ, (), ("Microsoft.KeyVault/vaults/secrets/*",)),
    _builtin("ba92f5b4-2d11-453d-a403-e96b0029c9fe", "Storage Blob Data Contributor",
             "Read, write, and delete Azure Storage containers and blobs.",
             ("Microsoft.Storage/storageAccounts/blobServices/containers/delete",
              "Microsoft.Storage/storageAccounts/blobServices/containers/read",
              "Microsoft.Storage/storageAccounts/blobServices/containers/write",
              "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"),
             (),
             ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
              "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
              "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action",
              "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
              "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action")),
    _builtin("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "Storage Blob Data Owner",
             "Allows for full access to Azure Storage blob containers and data, including assigning POSIX "
             "access control.",
             ("Microsoft.Storage/storageAccounts/blobServices/containers/*",
              "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"),
             (), ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*",)),
    _builtin("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", "Storage Blob Data Reader",
             "Read and list Azure Storage containers and blobs.",
             ("Microsoft.Storage/storageAccounts/blobServices/containers/read",
              "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"),
             (), ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",)),
    _builtin("7f951dda-4ed3-4680-a7ca-43fe172d538d", "AcrPull",
             "acr pull",
             ("Microsoft.ContainerRegistry/registries/pull/read",)),
    _builtin("8311e382-0749-4cb8-b61a-304f252e45ec", "AcrPush",
             "acr push",
             ("Microsoft.ContainerRegistry/registries/pull/read", "Microsoft.ContainerRegistry/registries/push/write")),
    _builtin("f6c7c914-8db3-469d-8ca1-694a8f32e121", "AzureML Data Scientist",
             "Can perform all actions within an Azure Machine Learning workspace, except for creating or "
             "deleting compute resources and modifying the workspace itself.",
             ("Microsoft.MachineLearningServices/workspaces/*/read",
              "Microsoft.MachineLearningServices/workspaces/*/action",
              "Microsoft.MachineLearningServices/workspaces/*/delete",
              "Microsoft.MachineLearningServices/workspaces/*/write"),
             ("Microsoft.MachineLearningServices/workspaces/delete",
              "Microsoft.MachineLearningServices/workspaces/write",
              "Microsoft.MachineLearningServices/workspaces/computes/*/write",
              "Microsoft.MachineLearningServices/workspaces/computes/*/delete",
              "Microsoft.MachineLearningServices/workspaces/computes/listKeys/action",
              "Microsoft.MachineLearningServices/workspaces/listKeys/action",
              "Microsoft.MachineLearningServices/workspaces/hubs/write",
              "Microsoft.MachineLearningServices/workspaces/hubs/delete",
              "Microsoft.MachineLearningServices/workspaces/featurestores/write",
              "Microsoft.MachineLearningServices/workspaces/featurestores/delete")),
    _builtin("e503ece1-11d0-4e8e-8e2c-7a6c3bf38815", "AzureML Compute Operator",
             "Can access and perform CRUD operations on Machine Learning Services managed compute resources "
             "(including Notebook VMs).",
             ("Microsoft.MachineLearningServices/workspaces/computes/*",
              "Microsoft.MachineLearningServices/workspaces/notebooks/vm/*")),
)

BUILTIN_ROLES: Mapping[str, RoleDefinition] = MappingProxyType({r.id: r for r in _CATALOG})
_BY_NAME: Mapping[str, RoleDefinition] = MappingProxyType({r.role_name.casefold(): r for r in _CATALOG})


def builtin_by_name(name: str) -> RoleDefinition | None:
    """The built-in role called ``name`` (case-insensitive, surrounding spaces ignored)."""
    if not isinstance(name, str):
        return None
    return _BY_NAME.get(name.strip().casefold())


def builtin_by_id(role_definition_id: str) -> RoleDefinition | None:
    """The built-in role for any id form (bare GUID or full id), or None."""
    try:
        return BUILTIN_ROLES.get(role_guid(role_definition_id))
    except ValueError:
        return None
