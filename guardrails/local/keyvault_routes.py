"""Key Vault data-plane routes on the local Azure emulator's server.

Addressing: real vault URLs are ``https://<vault>.vault.azure.net``; here each vault is served at
``{emu.base_url}/vaults/<vault>`` (``emu.vault_url(vault)``). The Key Vault SDKs keep a path prefix
of ``vault_url`` (``{vaultBaseUrl}`` is formatted with ``skip_quote=True`` and the operation path is
appended), so ``SecretClient(vault_url=emu.vault_url("kv1"), ...)`` sends
``/vaults/kv1/secrets/<name>/<version>``. The request log's ``host`` is the (lower-cased) vault name,
its ``path`` the wire path (``/vaults/<vault>/secrets/...``), so faults can target one vault.

Challenge: a request without ``Authorization`` gets 401 with
``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
resource="https://vault.azure.net"`` (a body-carrying first request arrives without its body).
The SDK then checks that the vault host ends with ``.vault.azure.net``, which ``127.0.0.1`` never
does: clients of the emulator are built with ``verify_challenge_resource=False`` (a product setting,
True in production). The SDK caches the challenge per host:port and per package (secrets and keys
each keep their own cache), so only a client's first request in the process is unauthenticated.
Faults are not applied to these unauthenticated requests, so ``times`` counts real operations.

Network: an authenticated request to a vault whose ARM resource has ``publicNetworkAccess``
``Disabled`` gets Key Vault's 403 ``Forbidden`` / innererror ``ForbiddenByConnection`` unless the
emulator's callers are declared private (``emu.vaults.private_access``; see
``VaultStore.check_network``).

Routes (``api-version``: one of :data:`KEYVAULT_API_VERSIONS`, the installed SDKs' defaults among them)::

    GET   /secrets                       list (current versions, no values), paged
    GET   /secrets/{name}[/]             current version (403 SecretDisabled if disabled)
    PUT   /secrets/{name}                set: new version, event SecretNewVersionCreated
    GET   /secrets/{name}/versions       list versions (no values), paged, by version id
    GET   /secrets/{name}/{version}
    PATCH /secrets/{name}/[{version}]    update properties (no value in the answer, no event)
    GET   /keys, /keys/{name}[/{version}], /keys/{name}/versions   (versions by version id)
    PATCH /keys/{name}/[{version}]       update properties
    POST  /keys/{name}/rotate            new version, event KeyNewVersionCreated

Lists answer ``{"value": [...], "nextLink": url | null}`` with ``maxresults`` (1..25, default 25) per
page; ``nextLink`` points at the emulator (the SDK follows it as given). Anything else answers 501.
"""

from __future__ import annotations

import base64
import binascii
import copy
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from guardrails.local.arm_emulator_http import EmuRequest, EmuResponse
from guardrails.local.keyvault_emulator import KeyVaultError, VaultObject, bad_parameter, bundle_id

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

KEYVAULT_API_VERSIONS = ("7.5", "7.6", "2025-07-01", "2026-04-01")
MAX_PAGE = 25
VAULT_RESOURCE = "https://vault.azure.net"


def challenge_header(tenant_id: str) -> str:
    return f'Bearer authorization="https://login.microsoftonline.com/{tenant_id}", resource="{VAULT_RESOURCE}"'


class KeyVaultRoute:
    host = "keyvault"   # the log shows the vault name instead (host_for)

    def claims(self, req: EmuRequest) -> bool:
        return len(req.segments) >= 2 and req.segments[0].lower() == "vaults"

    def host_for(self, req: EmuRequest) -> str:
        return req.segments[1].lower()

    def faultable(self, req: EmuRequest) -> bool:
        return bool(req.header("Authorization"))

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        self._authenticate(emu, req)
        vault, rest = req.segments[1].lower(), req.segments[2:]
        with emu.store.lock:
            emu.vaults.check_network(vault, req.claims)
        self._check_api_version(req)
        collection = rest[0].lower() if rest else ""
        if collection not in ("secrets", "keys"):
            raise KeyVaultError(501, "NotImplemented",
                                f"'{req.method} {req.path}' is not emulated (secrets and keys only).")
        with emu.store.lock:
            if collection == "secrets":
                return self._secrets(emu, req, vault, rest[1:])
            return self._keys(emu, req, vault, rest[1:])

    # ---- secrets ---------------------------------------------------------------------
    def _secrets(self, emu: "AzureEmulator", req: EmuRequest, vault: str, rest: list[str]) -> EmuResponse:
        kv = emu.vaults
        m = req.method
        if not rest and m == "GET":
            items = [_item("secrets", kv, o, o.versions[-1], versioned=False) for o in kv.objects("secrets", vault)]
            return _page(emu, req, vault, items)
        if len(rest) == 1 and m == "GET":
            return EmuResponse(200, _readable_secret(kv.get("secrets", vault, rest[0])))
        if len(rest) == 1 and m == "PUT":
            return EmuResponse(200, copy.deepcopy(kv.set_secret(vault, rest[0], req.body)))
        if len(rest) == 2 and rest[1].lower() == "versions" and m == "GET":
            obj = kv.find("secrets", vault, rest[0])
            if obj is None or not obj.versions:
                return _page(emu, req, vault, [])       # Key Vault lists nothing for an unknown name
            return _page(emu, req, vault, [_item("secrets", kv, obj, b, versioned=True) for b in obj.listed()])
        if len(rest) == 2 and m == "GET":
            return EmuResponse(200, _readable_secret(kv.get("secrets", vault, rest[0], rest[1])))
        if len(rest) in (1, 2) and m == "PATCH":          # no version: the current one
            updated = kv.update("secrets", vault, rest[0], rest[1] if len(rest) == 2 else None, req.body)
            return EmuResponse(200, {k: copy.deepcopy(v) for k, v in updated.items() if k != "value"})
        raise _unsupported(req)

    # ---- keys ------------------------------------------------------------------------
    def _keys(self, emu: "AzureEmulator", req: EmuRequest, vault: str, rest: list[str]) -> EmuResponse:
        kv = emu.vaults
        m = req.method
        if not rest and m == "GET":
            items = [_item("keys", kv, o, o.versions[-1], versioned=False) for o in kv.objects("keys", vault)]
            return _page(emu, req, vault, items)
        if len(rest) == 1 and m == "GET":
            return EmuResponse(200, copy.deepcopy(kv.get("keys", vault, rest[0])))
        if len(rest) == 2 and rest[1].lower() == "versions" and m == "GET":
            obj = kv.find("keys", vault, rest[0])
            items = [_item("keys", kv, obj, b, versioned=True) for b in obj.listed()] if obj else []
            return _page(emu, req, vault, items)
        if len(rest) == 2 and rest[1].lower() == "rotate" and m == "POST":
            return EmuResponse(200, copy.deepcopy(kv.rotate_key(vault, rest[0])))
        if len(rest) == 2 and m == "GET":
            return EmuResponse(200, copy.deepcopy(kv.get("keys", vault, rest[0], rest[1])))
        if len(rest) in (1, 2) and m == "PATCH":
            version = rest[1] if len(rest) == 2 else None
            return EmuResponse(200, copy.deepcopy(kv.update("keys", vault, rest[0], version, req.body)))
        raise _unsupported(req)

    # ---- checks ----------------------------------------------------------------------
    @staticmethod
    def _authenticate(emu: "AzureEmulator", req: EmuRequest) -> None:
        headers = {"WWW-Authenticate": challenge_header(emu.tenant_id)}
        auth = req.header("Authorization")
        if not auth:
            raise KeyVaultError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.",
                                headers=headers)
        if auth[:7].lower() != "bearer " or not req.claims or not (req.claims.get("oid") or req.claims.get("appid")):
            raise KeyVaultError(401, "Unauthorized", "AKV10022: Invalid token (not a local emulator token).",
                                headers=headers)

    @staticmethod
    def _check_api_version(req: EmuRequest) -> None:
        version = req.query.get("api-version")
        if not version:
            raise bad_parameter("The api-version query parameter is missing.")
        if version not in KEYVAULT_API_VERSIONS:
            raise bad_parameter(f"The specified version ({version}) is not recognized. Consider using the "
                                f"latest supported version ({KEYVAULT_API_VERSIONS[-1]}).")


def _readable_secret(bundle: dict) -> dict:
    if (bundle.get("attributes") or {}).get("enabled") is False:
        raise KeyVaultError(403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
    return copy.deepcopy(bundle)


def _item(kind: str, kv: Any, obj: VaultObject, bundle: dict, *, versioned: bool) -> dict:
    """A list entry: the id (versionless for the collection list), attributes, tags, contentType; no value."""
    ident = bundle_id(kind, bundle) if versioned else kv.object_url(kind, obj.vault, obj.name)
    item: dict[str, Any] = {"kid" if kind == "keys" else "id": ident,
                            "attributes": copy.deepcopy(bundle.get("attributes") or {})}
    for key in ("tags", "contentType", "managed"):
        if bundle.get(key) is not None:
            item[key] = copy.deepcopy(bundle[key])
    return item


def _page(emu: "AzureEmulator", req: EmuRequest, vault: str, items: list[dict]) -> EmuResponse:
    raw_max = req.query.get("maxresults")
    try:
        size = MAX_PAGE if raw_max in (None, "") else int(raw_max)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE:
        raise bad_parameter(f"invalid maxresults '{raw_max}': must be between 1 and {MAX_PAGE}.")
    token = req.query.get("$skiptoken")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii").removeprefix("kv:"))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise bad_parameter(f"The skip token '{token}' is not valid.") from None
    next_link = None
    if start + size < len(items):
        skip = base64.urlsafe_b64encode(f"kv:{start + size}".encode()).decode("ascii").rstrip("=")
        query = urlencode({"api-version": req.query["api-version"], "$skiptoken": skip, "maxresults": size},
                          quote_via=quote, safe="$")
        rel = "/".join(quote(s, safe="") for s in req.segments[2:])
        next_link = f"{emu.vault_url(vault)}/{rel}?{query}"
    return EmuResponse(200, {"value": items[start:start + size], "nextLink": next_link})


def _unsupported(req: EmuRequest) -> KeyVaultError:
    return KeyVaultError(501, "NotImplemented", f"'{req.method} {req.path}' is not emulated.")
