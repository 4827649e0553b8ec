"""Route families of the emulated ARM control plane (host "management").

A route family has ``host``, ``claims(req) -> bool`` and ``handle(emu, req) -> EmuResponse``
(raising ``ArmError`` is fine). The emulator tries its routes in order; add new families
(Key Vault data plane, ``Microsoft.Authorization/roleAssignments`` extension resources)
by putting them before the catch-all :class:`ArmResourceRoute`.
"""

from __future__ import annotations

import copy
import re
import time
from typing import TYPE_CHECKING, Any

from guardrails.local.arm_emulator_http import ArmError, EmuRequest, EmuResponse
from guardrails.local.arm_emulator_state import PATCH_ANSWERS_CREATED, ArmTarget, Operation, not_found, resolve_target

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
_POLL_THROTTLE_S = 0.05  # an InProgress answer waits up to this long, so Retry-After: 0 does not spin


def authenticate(req: EmuRequest, tenant_id: str) -> None:
    auth = req.header("Authorization")
    if not auth:
        raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
                       {"WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/{tenant_id}", '
                                           'error="invalid_token", error_description="The authentication failed because of missing \'Authorization\' header."'})
    if not auth[:7].lower() == "bearer " or not req.claims or not (req.claims.get("oid") or req.claims.get("appid")):
        raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.",
                       {"WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/{tenant_id}", '
                                           'error="invalid_token", error_description="The access token is invalid."'})


# maps whose keys (and everything below) are user data, not ARM property names: ``tags``, an ML
# asset's ``properties.properties``, an MLflow model's ``flavors`` (``python_function.data.
# loader_module``), a deployment's ``environmentVariables``. ARM takes any casing there.
_OPEN_MAPS = frozenset({"tags", "flavors", "environmentvariables"})


def find_snake_case_key(value: Any, path: str = "") -> str | None:
    """Dotted path of the first snake_case key in a body, user-data maps (``_OPEN_MAPS``, an
    asset's ``properties.properties``) left alone."""
    if isinstance(value, dict):
        for key, child in value.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and SNAKE_CASE.match(key):
                return here
            if isinstance(key, str) and isinstance(child, dict) and (
                    key.lower() in _OPEN_MAPS or here.lower().endswith("properties.properties")):
                continue
            found = find_snake_case_key(child, here)
            if found:
                return found
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found = find_snake_case_key(child, f"{path}[{i}]")
            if found:
                return found
    return None


def require_object_body(req: EmuRequest) -> dict:
    if not req.body_is_json or not isinstance(req.body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       "deserialized: the body must be a JSON object.")
    bad = find_snake_case_key(req.body)
    if bad:
        raise ArmError(400, "InvalidRequestContent",
                       f"The request content was invalid: unknown property '{bad}' "
                       "(ARM property names are camelCase; was a snake_case dict sent verbatim?).")
    return req.body


def _etag_header(res: dict) -> dict[str, str]:
    """``ETag`` of a resource that has one (an ``etaglessTypes`` resource has none)."""
    return {"ETag": res["etag"]} if res.get("etag") else {}


def check_preconditions(req: EmuRequest, existing: dict | None) -> None:
    if_match = req.header("If-Match")
    if if_match is not None:
        if_match = if_match.strip()
        if existing is None or (if_match != "*" and if_match != existing.get("etag")):
            raise ArmError(412, "PreconditionFailed", f"The specified precondition 'If-Match = {if_match}' failed.")
    if_none_match = req.header("If-None-Match")
    if if_none_match is not None and existing is not None:
        if_none_match = if_none_match.strip()
        if if_none_match == "*" or if_none_match == existing.get("etag"):
            raise ArmError(412, "PreconditionFailed",
                           f"The specified precondition 'If-None-Match = {if_none_match}' failed.")


def _operation_urls(emu: "AzureEmulator", op: Operation) -> tuple[str, str]:
    t = op.target
    base = f"{emu.base_url}/subscriptions/{t.subscription_id}/providers/{t.namespace}/locations/local"
    query = f"?api-version={t.rtype.api_version}"
    return f"{base}/operationStatuses/{op.op_id}{query}", f"{base}/operationResults/{op.op_id}{query}"


def _accepted(emu: "AzureEmulator", op: Operation) -> EmuResponse:
    status_url, result_url = _operation_urls(emu, op)
    return EmuResponse(202, None, {"Azure-AsyncOperation": status_url, "Location": result_url, "Retry-After": "0"})


def _updating(emu: "AzureEmulator", op: Operation, body: dict) -> EmuResponse:
    """A Container Registry's answer to a PATCH that takes time: 201, the resource ``Updating``,
    and only ``Azure-AsyncOperation`` to poll (no Location)."""
    status_url, _result_url = _operation_urls(emu, op)
    return EmuResponse(201, body, {"Azure-AsyncOperation": status_url, "Retry-After": "0"})


class ArmOperationRoute:
    """``/subscriptions/{sub}/providers/{ns}/locations/{loc}/operationStatuses|operationResults/{id}``."""

    host = "management"

    def claims(self, req: EmuRequest) -> bool:
        s = [x.lower() for x in req.segments]
        return (len(s) == 8 and s[0] == "subscriptions" and s[2] == "providers" and s[4] == "locations"
                and s[6] in ("operationstatuses", "operationresults"))

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        authenticate(req, emu.tenant_id)
        if req.method != "GET":
            raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported.")
        with emu.store.lock:
            emu.store.complete_due()
            op = emu.store.operation(req.segments[7])
            if op is None:
                raise ArmError(404, "OperationNotFound", f"The operation '{req.segments[7]}' was not found.")
            status, error, result, method = op.status, op.error, op.result, op.method
            body: dict[str, Any] = {"id": req.path, "name": op.op_id, "status": status, "startTime": op.start_time}
            if op.end_time:
                body["endTime"] = op.end_time
            if error:
                body["error"] = dict(error)
            remaining = op.due_at - time.monotonic()
        if status == "InProgress":
            time.sleep(min(max(remaining, 0.0), _POLL_THROTTLE_S))
        if req.segments[6].lower() == "operationstatuses":
            return EmuResponse(200, body, {"Retry-After": "0"} if status == "InProgress" else {})
        # operationResults (the Location URL): 202 until done, then the outcome
        if status == "InProgress":
            status_url, result_url = _operation_urls(emu, op)
            return EmuResponse(202, None, {"Location": result_url, "Retry-After": "0"})
        if status == "Failed":
            return EmuResponse(400, {"error": error})
        if method == "DELETE" or result is None:
            return EmuResponse(204)
        return EmuResponse(200, result, _etag_header(result))


class ArmResourceRoute:
    """Catch-all: ``/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{child}/{name}]``."""

    host = "management"

    def claims(self, req: EmuRequest) -> bool:
        return True

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        authenticate(req, emu.tenant_id)
        target = resolve_target(req.segments)
        self._check_api_version(req, target)
        handler = {"GET": self._get, "PUT": self._put, "PATCH": self._patch, "DELETE": self._delete}.get(req.method)
        if handler is None:
            raise ArmError(405, "MethodNotAllowed",
                           f"The HTTP method '{req.method}' is not supported for resource type '{target.rtype.name}'.")
        return handler(emu, req, target)

    @staticmethod
    def _check_api_version(req: EmuRequest, target: ArmTarget) -> None:
        version = req.query.get("api-version")
        expected = target.rtype.api_version
        if not version:
            raise ArmError(400, "InvalidApiVersionParameter",
                           f"The api-version query parameter (?api-version=) is required for all requests. "
                           f"Supported for '{target.rtype.name}': '{expected}'.")
        if version != expected:
            raise ArmError(400, "NoRegisteredProviderFound",
                           f"No registered resource provider found for location 'local' and API version "
                           f"'{version}' for type '{target.rtype.name.split('/', 1)[1]}'. "
                           f"The supported api-versions are '{expected}'.")

    @staticmethod
    def _get(emu: "AzureEmulator", req: EmuRequest, target: ArmTarget) -> EmuResponse:
        with emu.store.lock:
            res = emu.store.find(target.url_id)
            if res is None:
                raise not_found(target)
            return EmuResponse(200, copy.deepcopy(res), _etag_header(res))

    @staticmethod
    def _put(emu: "AzureEmulator", req: EmuRequest, target: ArmTarget) -> EmuResponse:
        body = require_object_body(req)
        corr = req.header("x-ms-correlation-request-id")
        store = emu.store
        with store.lock:
            check_preconditions(req, store.find(target.url_id))
            resource, created = store.prepare_put(target, body, req.claims)  # validates even when deferred
            if emu.lro_seconds > 0:
                return _accepted(emu, store.add_operation("PUT", target, body, req.claims, corr, emu.lro_seconds))
            stored = store.commit(resource, target, req.claims, corr)
        return EmuResponse(201 if created else 200, stored, _etag_header(stored))

    @staticmethod
    def _patch(emu: "AzureEmulator", req: EmuRequest, target: ArmTarget) -> EmuResponse:
        body = require_object_body(req)
        corr = req.header("x-ms-correlation-request-id")
        store = emu.store
        with store.lock:
            existing = store.find(target.url_id)
            if existing is None:
                raise not_found(target)
            check_preconditions(req, existing)
            resource = store.prepare_patch(target, body, req.claims)
            if emu.lro_seconds > 0:
                op = store.add_operation("PATCH", target, body, req.claims, corr, emu.lro_seconds)
                if target.rtype.key in PATCH_ANSWERS_CREATED:
                    return _updating(emu, op, store.begin_update(op, resource))
                return _accepted(emu, op)
            stored = store.commit(resource, target, req.claims, corr)
        return EmuResponse(200, stored, _etag_header(stored))

    @staticmethod
    def _delete(emu: "AzureEmulator", req: EmuRequest, target: ArmTarget) -> EmuResponse:
        corr = req.header("x-ms-correlation-request-id")
        store = emu.store
        with store.lock:
            existing = store.find(target.url_id)
            if existing is None:
                return EmuResponse(204)
            check_preconditions(req, existing)
            if emu.lro_seconds > 0:
                return _accepted(emu, store.add_operation("DELETE", target, None, req.claims, corr, emu.lro_seconds))
            store.remove(target, req.claims, corr)
        return EmuResponse(200)
