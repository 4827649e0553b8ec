"""Routes of the emulated ``Microsoft.Authorization`` provider (host "management"), the extension
resources azure-mgmt-authorization 4.0.0 reaches with its default api-version ``2022-04-01``:

    {scope}/providers/Microsoft.Authorization/roleAssignments[/{guid}]   GET (one / list), PUT, DELETE
    {scope}/providers/Microsoft.Authorization/roleDefinitions[/{guid}]   GET (one / list), PUT, DELETE

``{scope}`` is empty (tenant root), a management group, a subscription, a resource group or a
resource. Lists answer ``{"value": [...]}`` pages of ``emu.page_size`` with a ``nextLink`` carrying
``$skiptoken``. Deletes answer 200 with the deleted object, or 204 when there was none (the SDK
accepts both). Role-definition PUT answers 201 for create and update alike (the SDK accepts only 201).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from guardrails.local.arm_emulator_authz import AUTHZ_NAMESPACE, canonical_scope
from guardrails.local.arm_emulator_http import ArmError, EmuRequest, EmuResponse
from guardrails.local.arm_emulator_routes import authenticate, require_object_body

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

AUTHZ_API_VERSIONS = ("2022-04-01",)


def _query(req: EmuRequest, name: str) -> str | None:
    return next((v for k, v in req.query.items() if k.lower() == name.lower()), None)


def _key(item: dict) -> str:
    return str(item.get("id") or item.get("name") or "").lower()


def page(emu: "AzureEmulator", req: EmuRequest, items: list[dict]) -> EmuResponse:
    """One page of ``items`` (``emu.page_size``, copied, in the order of their ids) with a
    ``nextLink`` carrying ``$skiptoken`` while more follow; shared by every emulated list operation.
    The token names the last id returned and the next page starts after it, so an item deleted or
    added while a caller pages (the sweep deletes as it lists, on several threads) never makes the
    next page skip or repeat another, as ARM's continuation tokens do not."""
    token = _query(req, "$skiptoken")
    ordered = sorted(items, key=_key)
    start = 0
    if token:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raw = ""
        if not raw.startswith("k"):
            raise ArmError(400, "InvalidSkipToken", f"The skip token '{token}' is not valid.")
        start = bisect.bisect_right([_key(i) for i in ordered], raw[1:])
    size = max(1, int(emu.page_size))
    chunk = ordered[start:start + size]
    body: dict = {"value": copy.deepcopy(chunk)}
    if start + size < len(ordered):
        nxt = base64.urlsafe_b64encode(f"k{_key(chunk[-1])}".encode()).decode("ascii").rstrip("=")
        q = {k: v for k, v in req.query.items() if k.lower() not in ("$skiptoken", "api-version")}
        q.update({"api-version": req.query.get("api-version", AUTHZ_API_VERSIONS[0]), "$skiptoken": nxt})
        body["nextLink"] = f"{emu.base_url}{req.raw_path}?{urlencode(q, quote_via=quote, safe='$')}"
    return EmuResponse(200, body)


class _AuthzRoute:
    host = "management"
    collection = ""   # lower-cased last type segment

    def _split(self, req: EmuRequest) -> tuple[list[str], str | None] | None:
        """(scope segments, name or None) when the path ends in ``providers/Microsoft.Authorization/{collection}[/{name}]``."""
        s = req.segments
        for n in (3, 4):
            if len(s) >= n and [x.lower() for x in s[len(s) - n:len(s) - n + 3]] == ["providers", AUTHZ_NAMESPACE.lower(),
                                                                    self.collection]:
                return s[:-n], (s[-1] if n == 4 else None)
        return None

    def claims(self, req: EmuRequest) -> bool:
        return self._split(req) is not None

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        authenticate(req, emu.tenant_id)
        version = req.query.get("api-version")
        if not version:
            raise ArmError(400, "InvalidApiVersionParameter", "The api-version query parameter (?api-version=) "
                           f"is required for all requests. Supported: '{AUTHZ_API_VERSIONS[0]}'.")
        if version not in AUTHZ_API_VERSIONS:
            raise ArmError(400, "NoRegisteredProviderFound", f"No registered resource provider found for location "
                           f"'global' and API version '{version}' for type '{self.collection}'. The supported "
                           f"api-versions are '{', '.join(AUTHZ_API_VERSIONS)}'.")
        split = self._split(req)
        assert split is not None
        scope_segments, name = split
        scope = canonical_scope(scope_segments)
        corr = req.header("x-ms-correlation-request-id")
        with emu.store.lock:
            if name is None:
                if req.method != "GET":
                    raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported.")
                return page(emu, req, self.list(emu, scope, _query(req, "$filter")))
            method = {"GET": self.get, "PUT": self.put, "DELETE": self.delete}.get(req.method)
            if method is None:
                raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported.")
            return method(emu, req, scope, name, corr)

    def list(self, emu: "AzureEmulator", scope: str, filter_text: str | None) -> list[dict]:
        raise NotImplementedError

    def get(self, emu: "AzureEmulator", req: EmuRequest, scope: str, name: str, corr: str | None) -> EmuResponse:
        raise NotImplementedError

    def put(self, emu: "AzureEmulator", req: EmuRequest, scope: str, name: str, corr: str | None) -> EmuResponse:
        raise NotImplementedError

    def delete(self, emu: "AzureEmulator", req: EmuRequest, scope: str, name: str,
               corr: str | None) -> EmuResponse:
        raise NotImplementedError


class RoleAssignmentRoute(_AuthzRoute):
    collection = "roleassignments"

    def list(self, emu, scope, filter_text):
        return emu.authz.list_assignments(scope, filter_text)

    def get(self, emu, req, scope, name, corr):
        found = emu.authz.find_assignment(f"{scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{name}")
        if found is None:
            raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
        return EmuResponse(200, found)

    def put(self, emu, req, scope, name, corr):
        stored, created = emu.authz.put_assignment(scope, name, require_object_body(req), req.claims, corr)
        return EmuResponse(201 if created else 200, stored)

    def delete(self, emu, req, scope, name, corr):
        gone = emu.authz.delete_assignment(f"{scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{name}",
                                           req.claims, corr)
        return EmuResponse(200, gone) if gone is not None else EmuResponse(204)


class RoleDefinitionRoute(_AuthzRoute):
    collection = "roledefinitions"

    def list(self, emu, scope, filter_text):
        return emu.authz.list_definitions(scope, filter_text)

    def get(self, emu, req, scope, name, corr):
        found = emu.authz.definition_at(name, scope)
        if found is None:
            raise ArmError(404, "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{name}' "
                           "does not exist.")
        return EmuResponse(200, found)

    def put(self, emu, req, scope, name, corr):
        return EmuResponse(201, emu.authz.put_definition(scope, name, require_object_body(req), req.claims, corr))

    def delete(self, emu, req, scope, name, corr):
        gone = emu.authz.delete_definition(name, scope, req.claims, corr)
        return EmuResponse(200, gone) if gone is not None else EmuResponse(204)
