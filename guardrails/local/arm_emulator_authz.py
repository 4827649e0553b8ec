"""State of the emulated ``Microsoft.Authorization`` provider: role assignments and role definitions,
with scope and ``$filter`` logic.

Built-in role definitions: the product catalogue's (:mod:`guardrails.model.roles`) always, plus any
other built-in a world seeds (``roleType``/``properties.type`` ``BuiltInRole``, as ARM GET returns
it). Real ARM answers a GET of ANY built-in role (Storage Account Contributor, Key Vault Data Access
Administrator …) at every scope with 200 and its permissions, and accepts assignments of it; the
catalogue holds only the roles the product names, so without seeded built-ins the product's path
for "a built-in the catalogue does not hold, judged by its permissions" could not be exercised.

Assignments are stored exactly as ARM GET (api-version 2022-04-01) returns them, keyed by the
lower-cased id; definitions likewise, keyed by the lower-cased GUID (seeded built-ins with their
tenant-level id ``/providers/Microsoft.Authorization/roleDefinitions/<guid>``, re-rooted under the
subscription / management group of the scope a GET names, as for the catalogue's). Scopes compare
segment-wise and case-insensitively. Writes at or under a subscription queue the Event Grid event
the subscription's system topic would deliver (tenant and management-group scopes emit none).
Every method expects ``self.lock`` (the ARM store's re-entrant lock) to be held.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from guardrails.local.arm_emulator_events import OWNER_ROLE_DEFINITION, resource_event
from guardrails.local.arm_emulator_http import ArmError

if TYPE_CHECKING:
    from guardrails.local.arm_emulator_state import ArmStore
    from guardrails.local.graph_emulator import Directory

AUTHZ_NAMESPACE = "Microsoft.Authorization"
ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"
DEFINITION_TYPE = "Microsoft.Authorization/roleDefinitions"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DEFINITION_ID = re.compile(r"^(/.*)?/providers/Microsoft\.Authorization/roleDefinitions/([^/]+)/?$", re.IGNORECASE)
_KEYWORDS = {"subscriptions": "subscriptions", "resourcegroups": "resourceGroups", "providers": "providers"}
_FILTER_TERM = re.compile(r"""^(?:(?P<at>atScope\(\))|principalId\s+eq\s+'(?P<pid>[^']*)'|assignedTo\('(?P<to>[^']*)'\)
                              |roleName\s+eq\s+'(?P<rname>[^']*)'|type\s+eq\s+'(?P<rtype>[^']*)')$""",
                          re.IGNORECASE | re.VERBOSE)


def iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def is_guid(text: Any) -> bool:
    return isinstance(text, str) and bool(_GUID.match(text))


# ---- scopes ------------------------------------------------------------------------------
def canonical_scope(segments: list[str]) -> str:
    """``/`` for the tenant root, else ``/seg/...`` with ``subscriptions``/``resourceGroups``/``providers``
    keywords canonically spelled (names kept as given, non-ASCII included)."""
    out = [_KEYWORDS.get(s.lower(), s) if i in (0, 2, 4) else s for i, s in enumerate(segments)]
    return "/" + "/".join(out) if out else "/"


def scope_parts(scope: str) -> list[str]:
    return [s.lower() for s in scope.split("/") if s]


def contains(outer: str, inner: str) -> bool:
    """``outer`` is ``inner`` or one of its ancestors (segment-wise, case-insensitive)."""
    o, i = scope_parts(outer), scope_parts(inner)
    return i[:len(o)] == o


def subscription_of(scope: str) -> str | None:
    parts = [s for s in scope.split("/") if s]
    return parts[1] if len(parts) >= 2 and parts[0].lower() == "subscriptions" else None


def definition_scope(scope: str) -> str | None:
    """Where a definition GET at ``scope`` roots the returned id: the subscription (or management
    group) of the scope, None at the tenant root."""
    sub = subscription_of(scope)
    if sub:
        return f"/subscriptions/{sub}"
    parts = [s for s in scope.split("/") if s]
    return "/" + "/".join(parts[:4]) if len(parts) >= 4 else None


def parse_filter(text: str | None, allowed: set[str]) -> dict[str, str]:
    """``$filter`` terms joined by ``and`` → {"at": "", "pid": id, "to": id, "rname": n, "rtype": t}."""
    out: dict[str, str] = {}
    if not text or not text.strip():
        return out
    for term in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        m = _FILTER_TERM.match(term.strip())
        key = next((k for k, v in (m.groupdict() if m else {}).items() if v is not None), None)
        if key is None or key not in allowed:
            raise ArmError(400, "UnsupportedQuery", f"The filter '{text}' is not supported. Supported: "
                           + ", ".join(sorted(allowed)) + " (joined by 'and').")
        out[key] = m.group(key)
    return out


def _roles():
    from guardrails.model import roles  # lazy: the model module is optional for resource-only use
    return roles


class AuthzStore:
    def __init__(self, arm: "ArmStore", directory: "Directory") -> None:
        self.arm = arm
        self.lock = arm.lock
        self.directory = directory
        self._assignments: dict[str, dict] = {}
        self._definitions: dict[str, dict] = {}      # custom roles
        self._builtins: dict[str, dict] = {}         # seeded built-ins outside the catalogue
        # the management groups above a scope (lower-cased scopes): the emulator's hierarchy
        self.groups_above: Callable[[str], set[str]] = lambda scope: set()

    # ---- seeding and snapshots ------------------------------------------------------------
    def seed_assignment(self, obj: dict) -> None:
        """Store an assignment as ARM GET returns it (deep copy; ``name``/``type``/``scope`` filled if absent)."""
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            raise ValueError("a role assignment needs a string 'id'")
        segs = [s for s in obj["id"].split("/") if s]
        if len(segs) < 4 or [s.lower() for s in segs[-4:-1]] != ["providers", "microsoft.authorization",
                                                                 "roleassignments"]:
            raise ValueError(f"not a role assignment id: {obj['id']!r}")
        ra = copy.deepcopy(obj)
        ra.setdefault("name", segs[-1])
        ra.setdefault("type", ASSIGNMENT_TYPE)
        props = ra.setdefault("properties", {})
        props.setdefault("scope", canonical_scope(segs[:-4]))
        if not isinstance(props.get("principalId"), str) or not isinstance(props.get("roleDefinitionId"), str):
            raise ValueError(f"role assignment {obj['id']!r} needs properties.principalId and roleDefinitionId")
        with self.lock:
            self._assignments[ra["id"].lower()] = ra

    def seed_definition(self, obj: dict) -> None:
        """Store a role definition as ARM GET returns it (validated by ``RoleDefinition.from_arm``):
        a custom role, or a built-in the catalogue does not hold (see ``_seed_builtin``)."""
        defn = _roles().RoleDefinition.from_arm(obj)
        if defn.is_builtin:
            self._seed_builtin(obj, defn)
            return
        body = copy.deepcopy(obj) if isinstance(obj.get("id"), str) else defn.to_arm()
        body.setdefault("name", defn.id)
        body.setdefault("type", DEFINITION_TYPE)
        with self.lock:
            if defn.id in self._builtins:
                raise ValueError(f"role definition {defn.id} is a seeded built-in role")
            self._definitions[defn.id] = body

    def _seed_builtin(self, obj: dict, defn: Any) -> None:
        """A built-in outside the catalogue, stored as ARM GET at the tenant root answers it: id
        ``/providers/Microsoft.Authorization/roleDefinitions/<guid>`` (whatever scope the seed's id
        names), ``properties.type`` ``BuiltInRole``, assignable at ``/`` (every built-in is), all four
        permission lists in every block, ``createdBy``/``updatedBy`` null (Microsoft's roles)."""
        roles = _roles()
        if defn.id in roles.BUILTIN_ROLES:
            raise ValueError(f"{defn.role_name!r} ({defn.id}) is the catalogue's built-in, always served from "
                             "guardrails.model.roles: do not seed it")
        if tuple(defn.assignable_scopes) != ("/",):
            raise ValueError(f"built-in role {defn.role_name!r} must have assignableScopes ['/'] (every built-in "
                             f"role is assignable everywhere), not {list(defn.assignable_scopes)}")
        clash = roles.builtin_by_name(defn.role_name)
        if clash is not None:
            raise ValueError(f"built-in role name {defn.role_name!r} is the catalogue's ({clash.id})")
        body = copy.deepcopy(obj) if isinstance(obj.get("properties"), dict) else defn.to_arm()
        props = body["properties"]
        props.pop("roleType", None)
        props["type"] = roles.BUILT_IN
        props["assignableScopes"] = ["/"]
        props["permissions"] = [{k: list(p.get(k) or []) for k in ("actions", "notActions", "dataActions",
                                                                   "notDataActions")}
                                for p in (props.get("permissions") or [])]
        props.setdefault("description", defn.description)
        for key in ("createdBy", "updatedBy"):
            props.setdefault(key, None)
        stored = {"id": f"/providers/{DEFINITION_TYPE}/{defn.id}", "name": defn.id, "type": DEFINITION_TYPE,
                  "properties": props}
        with self.lock:
            if defn.id in self._definitions:
                raise ValueError(f"role definition {defn.id} is a seeded custom role")
            if any(g != defn.id and str(d["properties"].get("roleName", "")).lower() == defn.role_name.lower()
                   for g, d in (*self._builtins.items(), *self._definitions.items())):
                raise ValueError(f"a role definition named {defn.role_name!r} is already seeded")
            self._builtins[defn.id] = stored

    def assignments(self) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(v) for _, v in sorted(self._assignments.items())]

    def definitions(self) -> list[dict]:
        """Seeded definitions (custom roles and built-ins outside the catalogue), as seeded back."""
        with self.lock:
            return [copy.deepcopy(v) for v in sorted((*self._definitions.values(), *self._builtins.values()),
                                                     key=lambda d: d["id"].lower())]

    def is_builtin(self, guid: str) -> bool:
        """A built-in role: the catalogue's or a seeded one."""
        key = guid.lower()
        return key in _roles().BUILTIN_ROLES or key in self._builtins

    def find_assignment(self, assignment_id: str) -> dict | None:
        return self._assignments.get(assignment_id.lower())

    # ---- role definitions ----------------------------------------------------------------
    def definition_at(self, guid: str, scope: str) -> dict | None:
        """A definition as GET at ``scope`` answers it: built-ins anywhere, custom ones at the tenant
        root and at scopes related to (above or below) one of their assignable scopes."""
        key = guid.lower()
        builtin = _roles().BUILTIN_ROLES.get(key)
        if builtin is not None:
            return builtin.to_arm(definition_scope(scope))
        seeded = self._builtins.get(key)
        if seeded is not None:   # as the catalogue's: under the scope's subscription / management group
            body = copy.deepcopy(seeded)
            body["id"] = f"{definition_scope(scope) or ''}/providers/{DEFINITION_TYPE}/{key}"
            return body
        custom = self._definitions.get(key)
        if custom is None:
            return None
        scopes = (custom.get("properties") or {}).get("assignableScopes") or ["/"]
        if any(contains(a, scope) or contains(scope, a) for a in scopes):
            return copy.deepcopy(custom)
        return None

    def list_definitions(self, scope: str, filter_text: str | None) -> list[dict]:
        f = parse_filter(filter_text, {"rname", "rtype"})
        guids = list(_roles().BUILTIN_ROLES) + sorted(self._builtins) + sorted(self._definitions)
        out = []
        for guid in guids:
            d = self.definition_at(guid, scope)
            if d is None:
                continue
            props = d.get("properties") or {}
            if "rname" in f and str(props.get("roleName", "")).lower() != f["rname"].lower():
                continue
            if "rtype" in f and str(props.get("type", "")).lower() != f["rtype"].lower():
                continue
            out.append(d)
        return out

    def put_definition(self, scope: str, guid: str, body: dict, claims: dict | None,
                       correlation_id: str | None) -> dict:
        roles = _roles()
        if not is_guid(guid):
            raise ArmError(400, "InvalidRoleDefinitionId", f"The role definition ID '{guid}' is not valid: "
                           "it must be a GUID.")
        if self.is_builtin(guid):
            raise ArmError(400, "RoleDefinitionUpdateNotPermitted", "Built-in role definitions cannot be changed.")
        props = body.get("properties")
        if not isinstance(props, dict):
            raise ArmError(400, "InvalidRoleDefinition", "The request body needs 'properties'.")
        if props.get("type", roles.CUSTOM) != roles.CUSTOM:
            raise ArmError(400, "InvalidRoleDefinition", "Only 'CustomRole' definitions can be written.")
        if not props.get("assignableScopes"):
            raise ArmError(400, "InvalidRoleDefinition", "'assignableScopes' must name at least one scope.")
        name = props.get("roleName")
        clash = roles.builtin_by_name(name) if isinstance(name, str) else None
        clash = clash.id if clash else next(
            (g for g, d in (*self._builtins.items(), *self._definitions.items()) if g != guid.lower()
             and str(d["properties"].get("roleName", "")).lower() == str(name).lower()), None)
        if clash:
            raise ArmError(409, "RoleDefinitionWithSameNameExists",
                           f"A role definition cannot be updated with a name that already exists ('{name}').")
        existing = self._definitions.get(guid.lower())
        who = (claims or {}).get("oid")
        now = iso_now()
        stored = {"id": existing["id"] if existing else f"{scope.rstrip('/')}/providers/{DEFINITION_TYPE}/{guid}",
                  "name": guid, "type": DEFINITION_TYPE,
                  "properties": {k: copy.deepcopy(v) for k, v in props.items()
                                 if k not in ("createdOn", "updatedOn", "createdBy", "updatedBy")}}
        stored["properties"]["type"] = roles.CUSTOM
        stored["properties"]["permissions"] = [  # ARM answers all four lists in every block
            {k: list(p.get(k) or []) for k in ("actions", "notActions", "dataActions", "notDataActions")}
            if isinstance(p, dict) else p for p in (props.get("permissions") or [])]
        old = (existing or {}).get("properties") or {}
        stored["properties"].update(createdOn=old.get("createdOn", now), updatedOn=now,
                                    createdBy=old.get("createdBy", who), updatedBy=who)
        try:
            roles.RoleDefinition.from_arm(stored)
        except ValueError as exc:
            raise ArmError(400, "InvalidRoleDefinition", str(exc)) from None
        self._definitions[guid.lower()] = stored
        self._emit("write", stored["id"], DEFINITION_TYPE, scope, claims, correlation_id)
        return copy.deepcopy(stored)

    def delete_definition(self, guid: str, scope: str, claims: dict | None,
                          correlation_id: str | None) -> dict | None:
        existing = self._definitions.get(guid.lower())
        if existing is None:
            return None
        used = [a["id"] for a in self._assignments.values() if self._assignment_guid(a) == guid.lower()]
        if used:
            raise ArmError(409, "RoleDefinitionHasAssignments", "There are existing role assignments referencing "
                           f"role (code: RoleDefinitionHasAssignments): {used[0]}")
        del self._definitions[guid.lower()]
        self._emit("delete", existing["id"], DEFINITION_TYPE, scope, claims, correlation_id)
        return copy.deepcopy(existing)

    # ---- role assignments ----------------------------------------------------------------
    @staticmethod
    def _assignment_guid(a: dict) -> str | None:
        m = _DEFINITION_ID.match(str((a.get("properties") or {}).get("roleDefinitionId", "")))
        return m.group(2).lower() if m else None

    def list_assignments(self, scope: str, filter_text: str | None) -> list[dict]:
        """No filter: at, above and below ``scope``; ``atScope()``: at and above (the management
        groups above it in the hierarchy too: ``groups_above``); ``principalId eq`` and
        ``assignedTo`` (the principal or a group it is transitively in) narrow either."""
        f = parse_filter(filter_text, {"at", "pid", "to"})
        principals: set[str] | None = None
        if "pid" in f:
            principals = {f["pid"].lower()}
        if "to" in f:
            to = {f["to"].lower()} | self.directory.member_of(f["to"])
            principals = to if principals is None else principals & to
        above = self.groups_above(scope)
        out = []
        for key in sorted(self._assignments):
            a = self._assignments[key]
            props = a.get("properties") or {}
            at = str(props.get("scope", "/"))
            if not (contains(at, scope) or at.rstrip("/").lower() in above or ("at" not in f and contains(scope, at))):
                continue
            if principals is not None and str(props.get("principalId", "")).lower() not in principals:
                continue
            out.append(copy.deepcopy(a))
        return out

    def put_assignment(self, scope: str, name: str, body: dict, claims: dict | None,
                       correlation_id: str | None) -> tuple[dict, bool]:
        props = body.get("properties")
        if not isinstance(props, dict):
            raise ArmError(400, "InvalidCreateRoleAssignmentRequest", "The request body needs 'properties'.")
        if not is_guid(name):
            raise ArmError(400, "InvalidRoleAssignmentId", f"The role assignment ID '{name}' is not valid. "
                           "The role assignment ID must be a GUID.")
        principal, rdef = props.get("principalId"), props.get("roleDefinitionId")
        if not is_guid(principal):
            raise ArmError(400, "InvalidPrincipalId", f"The principal ID '{principal}' is not valid. "
                           "Principal ID must be a GUID.")
        m = _DEFINITION_ID.match(rdef) if isinstance(rdef, str) else None
        if m is None or not is_guid(m.group(2)):
            raise ArmError(400, "InvalidRoleDefinitionId", f"The role definition ID '{rdef}' is not valid.")
        guid = m.group(2).lower()
        if not self.is_builtin(guid) and guid not in self._definitions:
            raise ArmError(400, "RoleDefinitionDoesNotExist",
                           f"The specified role definition with ID '{m.group(2)}' does not exist.")
        ptype = props.get("principalType") or "User"  # the REST spec's default
        if ptype not in PRINCIPAL_TYPES:
            raise ArmError(400, "InvalidPrincipalType", f"The principal type '{ptype}' is not valid. "
                           f"Supported: {', '.join(PRINCIPAL_TYPES)}.")
        if self.directory.knows(principal) is False:
            raise ArmError(400, "PrincipalNotFound", f"Principal {principal.replace('-', '')} does not exist "
                           "in the directory.")
        rid = f"{scope.rstrip('/')}/providers/{ASSIGNMENT_TYPE}/{name}"
        existing = self.find_assignment(rid)
        for a in self._assignments.values():
            p = a.get("properties") or {}
            if (a is not existing and self._assignment_guid(a) == guid
                    and str(p.get("principalId", "")).lower() == principal.lower()
                    and scope_parts(str(p.get("scope", "/"))) == scope_parts(scope)):
                raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
        old = (existing or {}).get("properties") or {}
        if existing is not None and (self._assignment_guid(existing) != guid
                                     or str(old.get("principalId", "")).lower() != principal.lower()):
            raise ArmError(400, "RoleAssignmentUpdateNotPermitted", "Tenant ID, application ID, principal ID, "
                           "and scope are not allowed to be updated.")
        condition = props.get("condition")
        who = (claims or {}).get("oid")
        now = iso_now()
        stored = {
            "properties": {
                "roleDefinitionId": rdef, "principalId": principal, "principalType": ptype,
                "scope": existing["properties"]["scope"] if existing else scope,
                "condition": condition,
                "conditionVersion": props.get("conditionVersion") or ("2.0" if condition else None),
                "createdOn": old.get("createdOn", now), "updatedOn": now,
                "createdBy": old.get("createdBy", who), "updatedBy": who,
                "delegatedManagedIdentityResourceId": props.get("delegatedManagedIdentityResourceId"),
                "description": props.get("description"),
            },
            "id": existing["id"] if existing else rid,
            "type": ASSIGNMENT_TYPE,
            "name": existing["name"] if existing else name,
        }
        self._assignments[rid.lower()] = stored
        self._emit("write", stored["id"], ASSIGNMENT_TYPE, scope, claims, correlation_id)
        return copy.deepcopy(stored), existing is None

    def delete_assignment(self, assignment_id: str, claims: dict | None, correlation_id: str | None) -> dict | None:
        existing = self._assignments.pop(assignment_id.lower(), None)
        if existing is not None:
            scope = str((existing.get("properties") or {}).get("scope", "/"))
            self._emit("delete", existing["id"], ASSIGNMENT_TYPE, scope, claims, correlation_id)
        return copy.deepcopy(existing) if existing is not None else None

    # ---- events --------------------------------------------------------------------------
    def _emit(self, kind: str, resource_id: str, type_name: str, scope: str, claims: dict | None,
              correlation_id: str | None) -> None:
        sub = subscription_of(scope)
        if sub is None:  # tenant / management-group writes never reach a subscription's topic
            return
        self.arm.emit(resource_event(kind, resource_id=resource_id, type_name=type_name,  # type: ignore[arg-type]
                                     subscription_id=sub, claims=claims, correlation_id=correlation_id,
                                     tenant_id=self.arm.tenant_id, evidence_role=("Owner", OWNER_ROLE_DEFINITION)))
