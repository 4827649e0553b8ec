"""The tenant's management-group hierarchy for the local emulator, and its descendants list:

    GET /providers/Microsoft.Management/managementGroups/{groupId}/descendants?api-version=2020-05-01

(``ManagementGroups_GetDescendants``, azure-rest-api-specs ``Microsoft.Management/stable/2020-05-01``):
``{"value": [DescendantInfo …], "nextLink": …}``, every group and subscription below the group at
any depth, each ``{"id", "type", "name", "properties": {"displayName", "parent": {"id"}}}`` with
``type`` ``Microsoft.Management/managementGroups`` or ``/subscriptions``; pages of
``emu.page_size`` with a ``$skiptoken`` (``arm_emulator_authz_routes.page``).

The world names the hierarchy under ``managementGroups``:
``[{"name": "mg-corp-sandbox", "parent": "mg-corp", "subscriptions": ["<id>", …]}, …]`` (``parent``
and the entries' names are a group's name or full id; no ``parent``: directly below the tenant
root group; a group named only as a parent is a group too). A world without it, and a group it
does not name, has nothing below it: every group was that before the emulator knew of a hierarchy.
The role assignments listed at a scope (``atScope()`` or no filter) include those at the groups
above it, as ARM's do: above a group, its ancestors; above a subscription in a group (or anything
in it), that group and its ancestors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from guardrails.local.arm_emulator_authz_routes import page
from guardrails.local.arm_emulator_http import ArmError, EmuRequest, EmuResponse
from guardrails.local.arm_emulator_routes import authenticate

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

API_VERSIONS = ("2020-05-01", "2021-04-01", "2023-04-01")
GROUP_TYPE = "Microsoft.Management/managementGroups"
_PREFIX = "/providers/Microsoft.Management/managementGroups/"


def _name(text: str) -> str:
    """A group's name from its name or full id."""
    return str(text).rstrip("/").rsplit("/", 1)[-1]


class ManagementGroupTree:
    """Groups by lower-cased name: their name as spelled, their parent's (None: below the tenant
    root group) and the subscriptions directly in them."""

    def __init__(self, groups: Iterable[dict] = ()) -> None:
        self._names: dict[str, str] = {}
        self._parent: dict[str, str | None] = {}
        self._subscriptions: dict[str, list[str]] = {}
        for group in groups:
            self.seed(group)

    def seed(self, group: dict) -> None:
        if not isinstance(group, dict) or not isinstance(group.get("name"), str) or not group["name"].strip():
            raise ValueError(f"a management group needs a string 'name': {group!r}")
        name = _name(group["name"])
        parent = _name(group["parent"]) if group.get("parent") else None
        if parent is not None and parent.lower() not in self._names:
            self._add(parent, None)
        self._add(name, parent)
        self._subscriptions[name.lower()] = [str(s) for s in group.get("subscriptions") or ()]

    def _add(self, name: str, parent: str | None) -> None:
        self._names[name.lower()] = name
        self._parent[name.lower()] = parent.lower() if parent is not None else self._parent.get(name.lower())

    def descendants(self, group: str) -> list[dict]:
        """Every group and subscription below ``group`` (its name or id), at any depth, as
        ``DescendantInfo``; [] for a group the world does not name."""
        out: list[dict] = []
        todo, seen = [_name(group).lower()], set()
        while todo:
            parent = todo.pop(0)
            if parent in seen:            # a world whose parents loop ends here
                continue
            seen.add(parent)
            parent_id = f"{_PREFIX}{self._names.get(parent, parent)}"
            for sub in self._subscriptions.get(parent, ()):
                out.append({"id": f"/subscriptions/{sub}", "type": "/subscriptions", "name": sub,
                            "properties": {"displayName": f"subscription {sub[:8]}", "parent": {"id": parent_id}}})
            for child in sorted(k for k, p in self._parent.items() if p == parent):
                name = self._names[child]
                out.append({"id": f"{_PREFIX}{name}", "type": GROUP_TYPE, "name": name,
                            "properties": {"displayName": name, "parent": {"id": parent_id}}})
                todo.append(child)
        return out

    def groups_above(self, scope: str) -> set[str]:
        """Lower-cased scopes of the groups above ``scope``: a group's ancestors; for a
        subscription in a group (or anything in it), that group and its ancestors."""
        parts = [s.lower() for s in scope.split("/") if s]
        if len(parts) >= 4 and parts[:3] == ["providers", "microsoft.management", "managementgroups"]:
            at = self._parent.get(parts[3])
        elif len(parts) >= 2 and parts[0] == "subscriptions":
            at = next((g for g, subs in self._subscriptions.items() if parts[1] in {s.lower() for s in subs}), None)
        else:
            return set()
        out: set[str] = set()
        while at is not None and f"{_PREFIX.lower()}{at}" not in out:
            out.add(f"{_PREFIX.lower()}{at}")
            at = self._parent.get(at)
        return out

    def to_world(self) -> list[dict]:
        out = []
        for key in sorted(self._names):
            entry: dict = {"name": self._names[key]}
            if self._parent.get(key) is not None:
                entry["parent"] = self._names[self._parent[key]]
            if self._subscriptions.get(key):
                entry["subscriptions"] = list(self._subscriptions[key])
            out.append(entry)
        return out


class ManagementGroupDescendantsRoute:
    host = "management"

    def claims(self, req: EmuRequest) -> bool:
        s = [x.lower() for x in req.segments]
        return len(s) == 5 and s[:3] == ["providers", "microsoft.management", "managementgroups"] \
            and s[4] == "descendants"

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        authenticate(req, emu.tenant_id)
        if req.method != "GET":
            raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported.")
        if req.query.get("api-version") not in API_VERSIONS:
            raise ArmError(400, "InvalidApiVersionParameter", f"The api-version '{req.query.get('api-version')}' "
                           f"is invalid. Supported: {', '.join(API_VERSIONS)}.")
        with emu.store.lock:
            return page(emu, req, emu.management_groups.descendants(req.segments[3]))
