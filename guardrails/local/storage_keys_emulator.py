"""Storage account access keys on the emulated ARM control plane (host ``management``):

    POST {account id}/listKeys?api-version=<catalogue version>
        -> 200 {"keys": [{"keyName": "key1", "value", "permissions": "FULL", "creationTime"}, ...]}
    POST {account id}/regenerateKey?api-version=...   {"keyName": "key1"}
        -> 200 the new list; event Microsoft.Resources.ResourceActionSuccess with operationName
           Microsoft.Storage/storageAccounts/regenerateKey/action (the caller's identity, as for writes)

The account must exist in the ARM store (else 404 ``ResourceNotFound``, as ARM answers). Its keys
come from the world's ``storageKeys`` (``{"<account id>": [{"keyName", "value", "creationTime"}]}``;
a missing or ``"<redacted>"`` value is generated), else ``key1``/``key2`` are generated at first use.
Values are 64 random bytes, base64 (88 characters), made at run time. listKeys emits no event here
(real ARM may deliver ``ResourceActionSuccess`` for ``listKeys/action`` too).
"""

from __future__ import annotations

import base64
import copy
import secrets
from typing import TYPE_CHECKING, Any

from guardrails.local.arm_emulator_events import event_time, resource_event
from guardrails.local.arm_emulator_http import ArmError, EmuRequest, EmuResponse
from guardrails.local.arm_emulator_routes import authenticate, require_object_body
from guardrails.local.arm_emulator_state import ArmTarget, not_found, resolve_target
from guardrails.local.keyvault_emulator import REDACTED

if TYPE_CHECKING:
    from guardrails.local.arm_emulator_state import ArmStore
    from guardrails.local.emulator import AzureEmulator

STORAGE_TYPE = "Microsoft.Storage/storageAccounts"
ACTIONS = {"listkeys": "listKeys", "regeneratekey": "regenerateKey"}
KEY_NAMES = ("key1", "key2")


def new_key_value() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode("ascii")


def _norm(account_id: str) -> str:
    return "/" + "/".join(s for s in account_id.lower().split("/") if s)


class StorageKeys:
    """Keys per storage account id (lower-cased). Thread-safety: the ARM store's lock."""

    def __init__(self, arm: "ArmStore", seeded: dict[str, list[dict]] | None = None) -> None:
        self.arm = arm
        self._keys: dict[str, list[dict]] = {}
        self._ids: dict[str, str] = {}                # normalised -> as given
        for account_id, keys in (seeded or {}).items():
            self.seed(account_id, keys)

    def seed(self, account_id: str, keys: list[dict]) -> None:
        if not isinstance(account_id, str) or not isinstance(keys, list):
            raise ValueError("storageKeys maps a storage account id to a list of keys")
        out = []
        for key in keys:
            if not isinstance(key, dict) or not isinstance(key.get("keyName"), str):
                raise ValueError(f"a storage key of {account_id!r} needs a 'keyName'")
            value = key.get("value")
            out.append({"keyName": key["keyName"],
                        "value": value if isinstance(value, str) and value and value != REDACTED else new_key_value(),
                        "permissions": key.get("permissions", "FULL"),
                        "creationTime": key.get("creationTime") or event_time()})
        with self.arm.lock:
            self._keys[_norm(account_id)] = out
            self._ids[_norm(account_id)] = account_id

    def keys(self, account_id: str, *, create: bool = True) -> list[dict]:
        """The account's keys (generated when the account has none yet and ``create``)."""
        with self.arm.lock:
            norm = _norm(account_id)
            if norm not in self._keys and create:
                self._keys[norm] = [{"keyName": n, "value": new_key_value(), "permissions": "FULL",
                                     "creationTime": event_time()} for n in KEY_NAMES]
                self._ids[norm] = account_id
            return copy.deepcopy(self._keys.get(norm, []))

    def regenerate(self, account_id: str, key_name: str) -> list[dict]:
        with self.arm.lock:
            self.keys(account_id)
            entries = self._keys[_norm(account_id)]
            key = next((k for k in entries if k["keyName"].lower() == key_name.lower()), None)
            if key is None:
                raise ArmError(400, "InvalidValuesForRequestParameters",
                               f"Values for request parameters are invalid: keyName ('{key_name}'; the account "
                               f"has {[k['keyName'] for k in entries]}).")
            key["value"], key["creationTime"] = new_key_value(), event_time()
            return copy.deepcopy(entries)

    def to_world(self, include_values: bool = False) -> dict[str, list[dict]]:
        with self.arm.lock:
            return {self._ids[n]: [{"keyName": k["keyName"], "value": k["value"] if include_values else REDACTED,
                                    "creationTime": k["creationTime"]} for k in self._keys[n]]
                    for n in sorted(self._keys)}


class StorageKeysRoute:
    """``POST /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}/listKeys|regenerateKey``."""

    host = "management"

    def claims(self, req: EmuRequest) -> bool:
        s = [x.lower() for x in req.segments]
        return (len(s) == 9 and s[0] == "subscriptions" and s[2] == "resourcegroups" and s[4] == "providers"
                and s[5] == "microsoft.storage" and s[6] == "storageaccounts" and s[8] in ACTIONS)

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        authenticate(req, emu.tenant_id)
        target = resolve_target(req.segments[:8])
        action = ACTIONS[req.segments[8].lower()]
        version = req.query.get("api-version")
        if version != target.rtype.api_version:
            raise ArmError(400, "InvalidApiVersionParameter" if not version else "NoRegisteredProviderFound",
                           f"API version '{version}' is not supported for '{STORAGE_TYPE}/{action}'. "
                           f"The supported api-versions are '{target.rtype.api_version}'.")
        if req.method != "POST":
            raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported for '{action}'.")
        with emu.store.lock:
            account = emu.store.find(target.url_id)
            if account is None:
                raise not_found(target)
            if action == "listKeys":
                return EmuResponse(200, {"keys": emu.storage.keys(account["id"])})
            body = require_object_body(req)
            key_name = body.get("keyName")
            if not isinstance(key_name, str) or not key_name:
                raise ArmError(400, "InvalidValuesForRequestParameters",
                               "Values for request parameters are invalid: keyName (required).")
            keys = emu.storage.regenerate(account["id"], key_name)
            _record_key_time(account, key_name, keys)
            emu.store.emit(_action_event(emu, target, account["id"], action, req))
        return EmuResponse(200, {"keys": keys})


def _record_key_time(account: dict, key_name: str, keys: list[dict]) -> None:
    """Keep ``properties.keyCreationTime`` (when the account shows it) in step, as ARM does."""
    times = (account.get("properties") or {}).get("keyCreationTime")
    if isinstance(times, dict):
        key = next(k for k in keys if k["keyName"].lower() == key_name.lower())
        times[key["keyName"]] = key["creationTime"]


def _action_event(emu: "AzureEmulator", target: ArmTarget, account_id: str, action: str, req: EmuRequest) -> dict[str, Any]:
    return resource_event("action", resource_id=account_id, type_name=STORAGE_TYPE,
                          subscription_id=target.subscription_id, claims=req.claims,
                          correlation_id=req.header("x-ms-correlation-request-id"),
                          tenant_id=emu.tenant_id, action=action)
