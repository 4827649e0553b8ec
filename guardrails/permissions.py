"""Least privilege, derived from the code (Cloud Custodian's ``permissions = (...)``).

Every class that talks to Azure declares, beside the calls, what they need:

    permissions        ARM control-plane actions at the governed scopes  -> the custom role's ``actions``
                       (but a storage account's key actions, ``STORAGE_KEY_ACTIONS``, go to a role
                       assigned on each rotated account only: never at a governed scope)
    data_permissions   data-plane actions on the governed Key Vaults     -> the vault role's ``dataActions``
    graph_permissions  Microsoft Graph application permissions           -> admin consent (not an Azure role;
                       the README's "Microsoft Graph" recipe grants exactly these)
    own_permissions    data actions on the deployment's own resources    -> built-in roles in ``infra/``
                       (its storage account's tables, its Event Grid topic)

The declaring classes are found, not listed: every class in ``guardrails/adapters/*`` and every
registered remediation action (plus ``EXTRA_MODULES`` for gateways living elsewhere). A declaration
may be a tuple or a callable returning one (``ArmGateway`` derives ``{type}/read`` and
``{type}/write`` from the resource catalogue, so a type added there is covered automatically).
A derived (callable) declaration never yields the write of a catalogue type with nothing a fix
can set (every property the catalogue knows of it is immutable, e.g. a compute's
``enableNodePublicIp``: ``set-property`` refuses immutable properties, so only ``notify`` can
act on it): ``settable``, ``unwritable_catalogue_writes``. The ML lifecycle guardrail reads and
writes its types through that gateway and declares them itself.

``tests/unit/test_permissions.py`` checks that every class constructing an Azure SDK client
declares something; ``tests/unit/test_infra.py`` that the roles in ``infra/`` grant exactly this
union and the Event Grid filters deliver exactly the covered operations.
``python -m guardrails permissions [--json | --bicep]`` prints it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Iterable

KINDS = ("permissions", "data_permissions", "graph_permissions", "own_permissions")
# modules outside guardrails/adapters that hold Azure-calling classes (issues may add gateways here)
EXTRA_MODULES: tuple[str, ...] = ("guardrails.ml_guardrail",)

# the resource events the guardrails act on (others are audited as ignored: don't pay for them): a
# write, and the failure or cancellation of one, which ends a long-running fix of the guardrail's
# own left ``requested`` (anyone else's is audited ignored; the coverage check asks for the write only)
RESOURCE_EVENT_TYPES_DELIVERED = ("Microsoft.Resources.ResourceWriteSuccess",
                                  "Microsoft.Resources.ResourceWriteFailure",
                                  "Microsoft.Resources.ResourceWriteCancel")
# a storage account's keys open all of its data: read or regenerated only on the accounts a secrets
# policy rotates (``rotation.account`` of a ``storage-account-key`` rotation), by a role assigned on each
# of them (infra/main.bicep ``rotatedStorageAccountIds``), never with the governed scopes' role
STORAGE_KEY_ACTIONS = ("Microsoft.Storage/storageAccounts/listKeys/action",
                       "Microsoft.Storage/storageAccounts/regenerateKey/action")
ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"
ROLE_DEFINITION_WRITE = "Microsoft.Authorization/roleDefinitions/write"
RESOURCE_GROUP_DELETE = "Microsoft.Resources/subscriptions/resourceGroups/delete"
DELETE_EVENT_TYPE = "Microsoft.Resources.ResourceDeleteSuccess"


@dataclass(frozen=True)
class Required:
    """The union of every declaration, sorted; ``sources`` maps a permission to its declarers."""

    actions: tuple[str, ...]
    data_actions: tuple[str, ...]
    graph: tuple[str, ...]
    own: tuple[str, ...]
    storage_key_actions: tuple[str, ...] = ()     # declared ``permissions`` in STORAGE_KEY_ACTIONS
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"actions": list(self.actions), "data_actions": list(self.data_actions),
                "storage_key_actions": list(self.storage_key_actions),
                "graph_app_permissions": list(self.graph), "own_data_actions": list(self.own),
                "resource_operations": covered_operations(), "keyvault_event_types": keyvault_event_types(),
                "ml_workspace_event_types": ml_event_types()}


def declared(cls: type, kind: str) -> tuple[str, ...]:
    """One class's own declaration of ``kind`` (not inherited: each class states its needs)."""
    value = cls.__dict__.get(kind, ())
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if callable(value):
        value = value()
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise TypeError(f"{cls.__module__}.{cls.__qualname__}.{kind} must be a tuple of non-empty strings")
    return tuple(value)


def derived(cls: type, kind: str) -> bool:
    """Whether ``cls`` computes its ``kind`` declaration (from the resource catalogue) rather
    than stating it."""
    value = cls.__dict__.get(kind, ())
    return isinstance(value, (staticmethod, classmethod)) or callable(value)


def settable(rtype: Any) -> frozenset[str]:
    """The catalogue properties of ``rtype`` (a ``ResourceType``) a fix can write: the ones the
    catalogue knows (documented defaults, write preconditions, applicability), lower-case, less
    the immutable ones (``set-property`` refuses those: ``remediation.actions.SetProperty``)."""
    known = {p.lower() for p in (*rtype.defaults, *rtype.write_requires, *rtype.applies_when)}
    return frozenset(known - {p.lower() for p in rtype.immutable})


def unwritable_catalogue_writes() -> frozenset[str]:
    """``{type}/write`` of each catalogue type with nothing settable: no shipped code path writes
    one, so a derived declaration does not grant it (its writes by others are still delivered
    and judged: ``covered_operations``; a violation can only be reported)."""
    from guardrails.model.resource import CATALOG

    return frozenset(f"{t.name}/write" for t in CATALOG.values() if not settable(t))


def declares(cls: type) -> bool:
    return any(k in cls.__dict__ for k in KINDS)


def _modules() -> list[Any]:
    import guardrails.adapters as adapters

    names = [f"{adapters.__name__}.{m.name}" for m in pkgutil.iter_modules(adapters.__path__)]
    return [importlib.import_module(n) for n in (*sorted(names), *EXTRA_MODULES)]


def candidate_classes() -> list[type]:
    """Classes defined in the adapter modules (and ``EXTRA_MODULES``) and every registered action."""
    from guardrails.remediation.actions import actions

    found: dict[str, type] = {}
    for module in _modules():
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    for name in actions:
        cls = actions.get(name)
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


def required(classes: Iterable[type] | None = None) -> Required:
    """The union of every declaration of ``classes`` (default: all candidates)."""
    buckets: dict[str, set[str]] = {k: set() for k in KINDS}
    sources: dict[str, set[str]] = {}
    unwritable = {w.lower() for w in unwritable_catalogue_writes()}
    for cls in candidate_classes() if classes is None else classes:
        for kind in KINDS:
            skip = unwritable if kind == "permissions" and derived(cls, kind) else set()
            for perm in declared(cls, kind):
                if perm.lower() in skip:
                    continue
                buckets[kind].add(perm)
                sources.setdefault(perm, set()).add(cls.__qualname__)
    for perm in buckets["permissions"] | buckets["data_permissions"]:
        if "*" in perm:
            raise ValueError(f"permission {perm!r} is a wildcard: declare the exact action")
    key_actions = {a.lower() for a in STORAGE_KEY_ACTIONS}
    storage_keys = {p for p in buckets["permissions"] if p.lower() in key_actions}
    buckets["permissions"] -= storage_keys
    ordered = [tuple(sorted(buckets[k], key=str.lower)) for k in KINDS]
    return Required(*ordered, storage_key_actions=tuple(sorted(storage_keys, key=str.lower)),
                    sources={p: tuple(sorted(s)) for p, s in sources.items()})


def covered_operations() -> list[str]:
    """``data.operationName`` values the resource guardrails act on: a write of a catalogue type,
    a role assignment, or a custom role definition (its assignments are re-judged). The
    subscription's Event Grid filter delivers exactly these."""
    from guardrails.ml_guardrail import ML_TYPE_NAMES
    from guardrails.model.resource import CATALOG

    ops = ({f"{t.name}/write" for t in CATALOG.values()} | {f"{t}/write" for t in ML_TYPE_NAMES}
           | {ROLE_ASSIGNMENT_WRITE, ROLE_DEFINITION_WRITE})
    return sorted(ops, key=str.lower)


def covered_delete_operations() -> list[str]:
    """``data.operationName`` values of the deletions that end a covered resource's record: each
    type whose writes are covered (not custom role definitions: their assignments end with
    them), and resource groups (everything in one goes with it). A second event subscription of
    the same topic delivers their ``ResourceDeleteSuccess``: audited ``ignored``, they take a
    deleted resource out of the compliance report (``guardrails.report``) without a read."""
    ops = {op.rsplit("/", 1)[0] + "/delete" for op in covered_operations() if op != ROLE_DEFINITION_WRITE}
    return sorted(ops | {RESOURCE_GROUP_DELETE}, key=str.lower)


def ml_event_types() -> list[str]:
    """Azure ML workspace system-topic event types the ML lifecycle guardrail acts on."""
    from guardrails.model.ml_events import ML_EVENT_TYPES

    return sorted(ML_EVENT_TYPES)


def keyvault_event_types() -> list[str]:
    """Key Vault system-topic event types the secret guardrail acts on (certificate events are
    only recorded, so they are not subscribed)."""
    from guardrails.model.keyvault_events import KEYVAULT_EVENT_TYPES, PREFIX

    return sorted(t for t in KEYVAULT_EVENT_TYPES if t.startswith(PREFIX) and ".Certificate" not in t)


def bicep_array(values: Iterable[str], indent: int = 2) -> str:
    pad = " " * indent
    return "[\n" + "".join(f"{pad}'{v}'\n" for v in values) + "]"


def render(req: Required, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(req.as_dict(), indent=2)
    if fmt == "bicep":
        parts = [("guardrailActions", req.actions), ("guardrailVaultDataActions", req.data_actions),
                 ("guardrailStorageKeyActions", req.storage_key_actions),
                 ("coveredOperations", covered_operations()), ("coveredDeleteOperations", covered_delete_operations()),
                 ("keyVaultEventTypes", keyvault_event_types()),
                 ("mlWorkspaceEventTypes", ml_event_types())]
        return "\n".join(f"var {name} = {bicep_array(values)}" for name, values in parts)
    lines = []
    for title, values in (("ARM actions (custom role at the governed scopes)", req.actions),
                          ("Key Vault data actions (role on each governed vault)", req.data_actions),
                          ("storage account key actions (role on each rotated storage account only)",
                           req.storage_key_actions),
                          ("Microsoft Graph application permissions (admin consent)", req.graph),
                          ("own resources (built-in roles on the deployment's storage / topic)", req.own)):
        lines.append(f"{title}:")
        lines += [f"  {v:<70} {', '.join(req.sources.get(v, ()))}" for v in values] or ["  (none)"]
    lines.append("Event Grid operationName filter (covered operations):")
    lines += [f"  {op}" for op in covered_operations()]
    lines.append("Event Grid operationName filter of the deletions subscription (ResourceDeleteSuccess):")
    lines += [f"  {op}" for op in covered_delete_operations()]
    return "\n".join(lines)
