"""Private endpoint connections of emulated resources (host "management").

A covered resource lists its connections in ``properties.privateEndpointConnections`` (read-only
on the parent: a PUT/PATCH of the parent keeps the service's own list, as ARM does). Each
connection is also addressable as a child:

    GET    {parent}/privateEndpointConnections/{name}     one connection
    GET    {parent}/privateEndpointConnections            {"value": [...]}
    PUT    {parent}/privateEndpointConnections/{name}     approve / reject: body
           {"properties": {"privateLinkServiceConnectionState": {"status": "Approved", "description": ...}}}
    DELETE {parent}/privateEndpointConnections/{name}

with the parent's api-version. A world seeds connections inside the parent body; helper
``connection(...)`` builds one in the REST shape.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from guardrails.local.arm_emulator_http import ArmError, EmuRequest, EmuResponse
from guardrails.local.arm_emulator_routes import authenticate, require_object_body
from guardrails.local.arm_emulator_state import new_etag, resolve_target

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

SEGMENT = "privateendpointconnections"
STATUSES = ("Pending", "Approved", "Rejected", "Disconnected")


def connection(parent_id: str, name: str, *, status: str = "Approved", endpoint_id: str | None = None) -> dict:
    """One private endpoint connection as ARM returns it inside the parent."""
    sub_rg = parent_id.split("/providers/", 1)[0]
    return {
        "id": f"{parent_id}/privateEndpointConnections/{name}",
        "name": name,
        "type": f"{_parent_type(parent_id)}/privateEndpointConnections",
        "properties": {
            "privateEndpoint": {"id": endpoint_id or f"{sub_rg}/providers/Microsoft.Network/privateEndpoints/{name}"},
            "privateLinkServiceConnectionState": {"status": status, "description": "", "actionsRequired": "None"},
            "provisioningState": "Succeeded",
        },
    }


def _parent_type(parent_id: str) -> str:
    after = parent_id.split("/providers/", 1)[1].split("/")
    return "/".join([after[0], *after[1::2]])


class PrivateEndpointConnectionRoute:
    host = "management"

    def claims(self, req: EmuRequest) -> bool:
        segs = [s.lower() for s in req.segments]
        return (len(segs) >= 9 and (segs[-1] == SEGMENT or (len(segs) >= 10 and segs[-2] == SEGMENT))
                and segs[0] == "subscriptions")

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        authenticate(req, emu.tenant_id)
        listing = req.segments[-1].lower() == SEGMENT
        parent_segments = req.segments[:-1] if listing else req.segments[:-2]
        target = resolve_target(parent_segments)
        if req.query.get("api-version") != target.rtype.api_version:
            raise ArmError(400, "InvalidApiVersionParameter",
                           f"api-version '{req.query.get('api-version')}' is not supported for private endpoint "
                           f"connections of '{target.rtype.name}'; use '{target.rtype.api_version}'.")
        with emu.store.lock:
            parent = emu.store.find(target.url_id)
            if parent is None:
                raise ArmError(404, "ResourceNotFound", f"The Resource '{target.relative}' under resource group "
                                                        f"'{target.resource_group}' was not found.")
            conns = parent.setdefault("properties", {}).setdefault("privateEndpointConnections", [])
            if listing:
                if req.method != "GET":
                    raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported.")
                return EmuResponse(200, {"value": copy.deepcopy(conns)})
            name = req.segments[-1]
            index = next((i for i, c in enumerate(conns) if str(c.get("name", "")).lower() == name.lower()), None)
            if req.method == "GET":
                if index is None:
                    raise _missing(name)
                return EmuResponse(200, copy.deepcopy(conns[index]))
            if req.method == "DELETE":
                if index is not None:
                    conns.pop(index)
                    parent["etag"] = new_etag()
                return EmuResponse(200 if index is not None else 204)
            if req.method == "PUT":
                if index is None:
                    raise _missing(name)   # connections are made from the private endpoint's side
                body = require_object_body(req)
                state = (body.get("properties") or {}).get("privateLinkServiceConnectionState")
                status = state.get("status") if isinstance(state, dict) else None
                if status not in STATUSES:
                    raise ArmError(400, "InvalidRequestContent",
                                   f"properties.privateLinkServiceConnectionState.status must be one of {list(STATUSES)}")
                conn: dict[str, Any] = conns[index]
                conn["properties"]["privateLinkServiceConnectionState"] = {
                    "status": status, "description": str(state.get("description", "")),
                    "actionsRequired": state.get("actionsRequired", "None")}
                parent["etag"] = new_etag()
                return EmuResponse(200, copy.deepcopy(conn))
            raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported.")


def _missing(name: str) -> ArmError:
    return ArmError(404, "PrivateEndpointConnectionNotFound", f"Private endpoint connection '{name[:80]}' was not found.")


__all__ = ["PrivateEndpointConnectionRoute", "connection", "STATUSES"]
