"""Real-shaped Event Grid / CloudEvents payloads, shared by every test tier.

Copies of ``/work/shared/azure-samples/{eventgrid,cloudevents,keyvault}`` with the ``{placeholders}``
replaced by the fake identities below (the published mistakes are kept: a ``ResourceWriteFailure``
with ``status: Succeeded``; CloudEvents with ``specVersion``), plus captured-delivery variants:

    *.captured-pascalcase.eventgrid.json          PascalCase ``authorization`` keys, dashless GUIDs
                                                  in ``Evidence``, ``httpRequest: {}``
    *.captured-service-principal.eventgrid.json   a service principal caller (no upn), no httpRequest
    *.roleAssignment-subscription.eventgrid.json  ``Microsoft.Authorization/roleAssignments/write``
    *.roleAssignment-resource-group.eventgrid.json   … at resource-group scope
    *.roleAssignment-storage-account.cloudevents.json … at storage-account scope (CloudEvents)

``ResourceWriteSuccess.eventgrid.json`` itself has no ``httpRequest`` (absent). Files whose name
ends in ``.eventgrid.json`` may hold one event or a list (as delivered).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent

SUBSCRIPTION_ID = "3f2b8c1d-6a4e-4b7f-9c0d-2e5a1b7c8d90"
TENANT_ID = "e7a4c2b9-1d3f-4a6e-8b5c-9d0e1f2a3b4c"
RESOURCE_GROUP = "rg-guardrails-demo"
STORAGE_ACCOUNT = "stguardrailsdemo01"
STORAGE_ACCOUNT_ID = (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
                      f"/providers/Microsoft.Storage/storageAccounts/{STORAGE_ACCOUNT}")
USER_OBJECT_ID = "5c1d9a2e-8b3f-4e6a-a7d0-9f1e2c3b4a58"
USER_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
USER_UPN = "alex.martin@contoso.onmicrosoft.com"
SP_OBJECT_ID = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
SP_APP_ID = "c4a1e7b2-3d5f-4a6b-9c8d-7e6f5a4b3c2d"
CORRELATION_ID = "6a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d"

RESOURCE_EVENT_SAMPLES = (
    "Microsoft.Resources.ResourceActionSuccess.eventgrid",
    "Microsoft.Resources.ResourceActionSuccess.cloudevents",
    "Microsoft.Resources.ResourceDeleteSuccess.eventgrid",
    "Microsoft.Resources.ResourceDeleteSuccess.cloudevents",
    "Microsoft.Resources.ResourceWriteFailure.eventgrid",
    "Microsoft.Resources.ResourceWriteFailure.cloudevents",
    "Microsoft.Resources.ResourceWriteSuccess.eventgrid",
    "Microsoft.Resources.ResourceWriteSuccess.cloudevents",
    "Microsoft.Resources.ResourceWriteSuccess.subscription-topic.docs.eventgrid",
    "Microsoft.Resources.ResourceWriteSuccess.captured-pascalcase.eventgrid",
    "Microsoft.Resources.ResourceWriteSuccess.captured-service-principal.eventgrid",
    "Microsoft.Resources.ResourceWriteSuccess.roleAssignment-subscription.eventgrid",
    "Microsoft.Resources.ResourceWriteSuccess.roleAssignment-resource-group.eventgrid",
    "Microsoft.Resources.ResourceWriteSuccess.roleAssignment-storage-account.cloudevents",
)


def _path(name: str) -> Path:
    path = (FIXTURES / (name if name.endswith(".json") else f"{name}.json")).resolve()
    if path.parent != FIXTURES or not path.is_file():
        raise FileNotFoundError(f"no event fixture named {name!r} in {FIXTURES}")
    return path


def load(name: str) -> dict[str, Any] | list[Any]:
    """A fresh copy of fixture ``name`` (with or without ``.json``): mutate it freely."""
    return json.loads(_path(name).read_text(encoding="utf-8"))


def load_event(name: str) -> dict[str, Any]:
    """Fixture ``name`` as one event: the only element when the file holds a list."""
    obj = load(name)
    if isinstance(obj, list):
        if len(obj) != 1:
            raise ValueError(f"fixture {name!r} holds {len(obj)} events")
        obj = obj[0]
    return obj


def names(pattern: str = "*") -> list[str]:
    """Fixture names (without ``.json``) matching a glob pattern."""
    return sorted(p.name[: -len(".json")] for p in FIXTURES.glob(f"{pattern}.json"))
