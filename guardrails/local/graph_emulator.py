"""Microsoft Graph (directory) on the local Azure emulator's server: host label ``graph`` in the
request log, paths under ``/v1.0``, no ``api-version``.

How a product client reaches it: base URL = ``emu.base_url`` (instead of
``https://graph.microsoft.com``), path prefix ``/v1.0``, a bearer token from the same
:class:`~guardrails.local.credential.LocalTokenCredential` (whatever scope is asked, e.g.
``https://graph.microsoft.com/.default``), TLS verified against ``emu.ca_path``::

    POST {emu.base_url}/v1.0/directoryObjects/{object id}/checkMemberGroups
    Authorization: Bearer <token>
    {"groupIds": ["<group id>", ...]}          (at most 20, as in Graph)
    -> 200 {"@odata.context": ..., "value": ["<the requested groups the object is a transitive member of>"]}

``users|groups|servicePrincipals|devices`` work in place of ``directoryObjects``, and
``getMemberGroups`` (``{"securityEnabledOnly": bool}``) returns every transitive group.

The directory comes from the world: ``{"groups": {"<group id>": ["<member id>", ...]},
"objects": {"<object id>": "User" | "Group" | "ServicePrincipal" | ...}}``. A group listed as a
member of another makes its members transitive members of that one. ``objects`` is optional: when
present it (with every group and member id) is the full directory, and an unknown object answers
404 ``Request_ResourceNotFound``; without it the emulator cannot tell, and an unknown object is
simply in no group.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable

from guardrails.local.arm_emulator_http import EmuRequest, EmuResponse

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

_ODATA_STRINGS = "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)"
_COLLECTIONS = {"directoryobjects", "users", "groups", "serviceprincipals", "devices"}
MAX_CHECK_GROUP_IDS = 20


class Directory:
    """Group membership, thread-safety left to the caller (the emulator's lock)."""

    def __init__(self, data: dict | None = None) -> None:
        data = data or {}
        self._groups: dict[str, list[str]] = {}     # group id as given -> member ids as given
        self._objects: dict[str, str] | None = None
        for gid, members in (data.get("groups") or {}).items():
            self.set_group(gid, members)
        if data.get("objects") is not None:
            objects = data["objects"]
            if isinstance(objects, list):
                objects = {oid: "" for oid in objects}
            self._objects = {str(k): str(v or "") for k, v in dict(objects).items()}

    def set_group(self, group_id: str, members: Iterable[str]) -> None:
        if not isinstance(group_id, str) or isinstance(members, str):
            raise ValueError("directory groups map a group id to a list of member ids")
        self._groups = {k: v for k, v in self._groups.items() if k.lower() != group_id.lower()}
        self._groups[group_id] = [str(m) for m in members]

    def object_type(self, object_id: str) -> str | None:
        """``Group`` for a listed group, else the type ``objects`` gives, else None."""
        key = object_id.lower()
        if any(g.lower() == key for g in self._groups):
            return "Group"
        return next((v for k, v in (self._objects or {}).items() if k.lower() == key and v), None)

    def knows(self, object_id: str) -> bool | None:
        """True/False when the directory is complete (``objects`` given), else None (cannot tell)."""
        if self._objects is None:
            return None
        key = object_id.lower()
        return (any(k.lower() == key for k in self._objects) or any(g.lower() == key for g in self._groups)
                or any(m.lower() == key for ms in self._groups.values() for m in ms))

    def member_of(self, object_id: str) -> set[str]:
        """Lower-cased ids of every group the object is a transitive member of (cycles are safe)."""
        parents: dict[str, set[str]] = {}
        for gid, members in self._groups.items():
            for m in members:
                parents.setdefault(m.lower(), set()).add(gid.lower())
        seen: set[str] = set()
        todo = [object_id.lower()]
        while todo:
            for gid in parents.get(todo.pop(), ()):
                if gid not in seen:
                    seen.add(gid)
                    todo.append(gid)
        return seen

    def to_world(self) -> dict:
        out: dict[str, Any] = {"groups": {g: list(self._groups[g]) for g in sorted(self._groups, key=str.lower)}}
        if self._objects is not None:
            out["objects"] = {k: self._objects[k] for k in sorted(self._objects, key=str.lower)}
        return copy.deepcopy(out)


def graph_error(status: int, code: str, message: str, req: EmuRequest | None = None) -> EmuResponse:
    inner = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": str(uuid.uuid4()),
             "client-request-id": (req.header("client-request-id") if req else None) or str(uuid.uuid4())}
    return EmuResponse(status, {"error": {"code": code, "message": message, "innerError": inner}})


class GraphRoute:
    """``/v1.0/{directoryObjects|users|groups|servicePrincipals|devices}/{id}/checkMemberGroups|getMemberGroups``."""

    host = "graph"

    def claims(self, req: EmuRequest) -> bool:
        return bool(req.segments) and req.segments[0].lower() == "v1.0"

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        auth = req.header("Authorization") or ""
        if not auth.strip():
            return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.", req)
        if auth[:7].lower() != "bearer " or not req.claims or not (req.claims.get("oid") or req.claims.get("appid")):
            return graph_error(401, "InvalidAuthenticationToken", "Access token validation failure.", req)
        s = req.segments
        if len(s) != 4 or s[1].lower() not in _COLLECTIONS or s[3].lower() not in ("checkmembergroups",
                                                                                   "getmembergroups"):
            return graph_error(400, "BadRequest", f"Resource not found for the segment '{s[-1] if s else ''}'.", req)
        if req.method != "POST":
            return graph_error(405, "Request_BadRequest", f"The HTTP method '{req.method}' is not allowed.", req)
        if not req.body_is_json or not isinstance(req.body, dict):
            return graph_error(400, "Request_BadRequest", "The request body must be a JSON object.", req)
        object_id = s[2]
        with emu.store.lock:
            directory = emu.directory
            if directory.knows(object_id) is False:
                return graph_error(404, "Request_ResourceNotFound",
                                   f"Resource '{object_id}' does not exist or one of its queried "
                                   "reference-property objects are not present.", req)
            groups = directory.member_of(object_id)
            if s[3].lower() == "getmembergroups":
                value = sorted(groups)
            else:
                ids = req.body.get("groupIds")
                if not isinstance(ids, list) or not all(isinstance(g, str) for g in ids):
                    return graph_error(400, "Request_BadRequest",
                                       "Invalid value for 'groupIds': an array of strings is required.", req)
                if len(ids) > MAX_CHECK_GROUP_IDS:
                    return graph_error(400, "Request_BadRequest", "The number of groupIds in the request "
                                       f"exceeds the maximum of {MAX_CHECK_GROUP_IDS}.", req)
                value = list(dict.fromkeys(g for g in ids if g.lower() in groups))
        return EmuResponse(200, {"@odata.context": _ODATA_STRINGS, "value": value})
