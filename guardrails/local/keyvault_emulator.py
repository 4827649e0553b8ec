"""State of the emulated Key Vault data plane: secrets and keys of any number of vaults, every
version kept as the bundle Key Vault GET returns, and the events their writes emit.

Ids stay in the REAL vault form (``https://<vault>.vault.azure.net/secrets/<name>/<version>``, or
whatever host the world's ids use): the emulator never rewrites them to its own URL. That is what the
world and the events carry, and the SDK needs it: ``KeyVaultSecretIdentifier`` / ``parse_key_vault_id``
accept only ``/<collection>/<name>[/<version>]`` paths and would reject an id under ``/vaults/<vault>``.

Versions are kept in creation order; the last one is the current one (what ``GET /secrets/{name}``
answers). Listing them (``GET /secrets/{name}/versions``) is another matter: real Key Vault
documents no order, and a captured answer lists them sorted by version id, so the emulator lists
them by version id too (:meth:`VaultObject.listed`), never in creation order: a product that took
the last listed version for the newest would be right here only by accident. Timestamps
(``created``, ``updated``, ``nbf``, ``exp``) are whole seconds since the epoch, as Key Vault keeps
them: two versions written within one second carry the same ``created``.

Network lockdown: a vault whose ARM resource (same name, in the ARM store) has
``properties.publicNetworkAccess`` ``Disabled`` refuses a public caller's data-plane requests
with Key Vault's 403 (:meth:`VaultStore.check_network`); ``private_access`` (world flag
``keyvault_private_access``) declares the callers to come through an approved private endpoint.

Names compare case-insensitively (as in Key Vault); vault names are lower-cased. Key
material is public only (``n``/``e`` or ``crv``/``x``/``y``), generated with ``cryptography`` when a
key version is created or first read without it; no private key is ever kept. Every method expects
``self.lock`` (the emulator's one re-entrant lock) to be held, or takes it.
"""

from __future__ import annotations

import base64
import copy
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import urlsplit

from guardrails.local.arm_emulator_http import ArmError
from guardrails.local.keyvault_events import EVENT_OBJECT_TYPES, keyvault_event, short_event_type, vault_arm_id

if TYPE_CHECKING:
    from guardrails.local.arm_emulator_state import ArmStore

REDACTED = "<redacted>"
VAULT_DNS_SUFFIX = "vault.azure.net"
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
KEY_MATERIAL = frozenset({"n", "e", "d", "dp", "dq", "qi", "p", "q", "x", "y", "k", "t"})
DEFAULT_KEY_OPS = {"RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"], "EC": ["sign", "verify"]}
NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
SECRET_SET_KEYS = frozenset({"value", "contentType", "attributes", "tags"})
SECRET_PATCH_KEYS = frozenset({"contentType", "attributes", "tags"})
KEY_PATCH_KEYS = frozenset({"key_ops", "attributes", "tags", "release_policy"})
WRITABLE_ATTRIBUTES = {"secrets": frozenset({"enabled", "nbf", "exp"}),
                       "keys": frozenset({"enabled", "nbf", "exp", "exportable"})}
_SINGULAR = {"secrets": "secret", "keys": "key"}
TIMESTAMP_ATTRIBUTES = ("created", "updated", "nbf", "exp")   # seconds since the epoch, integers


class KeyVaultError(ArmError):
    """Key Vault's error shape: ``{"error": {"code", "message", "innererror"?: {"code"}}}``."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, message, headers)
        self.inner = inner

    def to_error(self) -> dict:
        err = super().to_error()
        if self.inner:
            err["innererror"] = {"code": self.inner}
        return err


def bad_parameter(message: str) -> KeyVaultError:
    return KeyVaultError(400, "BadParameter", message)


def not_found(kind: str, name: str, version: str | None = None) -> KeyVaultError:
    what = _SINGULAR[kind]
    ref = f"{name}/{version}" if version else name
    return KeyVaultError(404, f"{what.capitalize()}NotFound",
                         f"A {what} with (name/id) {ref} was not found in this key vault. If you recently deleted "
                         f"this {what} you may be able to recover it using the correct recovery command. For help "
                         "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182")


def parse_object_url(url: Any) -> tuple[str, str, str, str, str | None]:
    """(base URL, vault, collection, name, version) of ``https://<vault>.<suffix>/<collection>/<name>[/<version>]``."""
    parts = urlsplit(url) if isinstance(url, str) else None
    segs = [s for s in parts.path.split("/") if s] if parts else []
    if not parts or not parts.hostname or parts.scheme != "https" or not 2 <= len(segs) <= 3:
        raise ValueError(f"not a Key Vault object id: {url!r}")
    base = f"https://{parts.netloc}"
    return base, parts.hostname.split(".")[0].lower(), segs[0].lower(), segs[1], segs[2] if len(segs) == 3 else None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64url_len(text: Any) -> int:
    return len(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))) if isinstance(text, str) and text else 0


def generate_public_material(kty: str, *, key_size: int = 2048, crv: str | None = None) -> dict:
    """Fresh public JWK fields for ``kty`` (RSA: ``n``/``e``; EC: ``crv``/``x``/``y``; oct: none)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    family = kty.upper().removesuffix("-HSM")
    if family == "RSA":
        pub = rsa.generate_private_key(public_exponent=65537, key_size=key_size).public_key().public_numbers()
        return {"n": _b64url(pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")), "e": _b64url(pub.e.to_bytes(3, "big"))}
    if family == "EC":
        curves = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1, "P-256K": ec.SECP256K1}
        crv = crv or "P-256"
        curve = curves[crv]()
        pub = ec.generate_private_key(curve).public_key().public_numbers()
        size = (curve.key_size + 7) // 8
        return {"crv": crv, "x": _b64url(pub.x.to_bytes(size, "big")), "y": _b64url(pub.y.to_bytes(size, "big"))}
    return {}


@dataclass(eq=False)
class VaultObject:
    kind: str                     # "secrets" | "keys"
    vault: str                    # lower-cased vault name
    name: str                     # as first written
    versions: list[dict] = field(default_factory=list)   # bundles, creation order, current last

    def find(self, version: str | None) -> dict | None:
        if not version:
            return self.versions[-1] if self.versions else None
        return next((b for b in self.versions if version_of(self.kind, b).lower() == version.lower()), None)

    def listed(self) -> list[dict]:
        """The versions in the order ``GET .../versions`` lists them: by version id (what a real
        Key Vault answer shows; the service documents no order), not creation order."""
        return sorted(self.versions, key=lambda b: version_of(self.kind, b).lower())


def bundle_id(kind: str, bundle: dict) -> str:
    return bundle["key"]["kid"] if kind == "keys" else bundle["id"]


def version_of(kind: str, bundle: dict) -> str:
    return parse_object_url(bundle_id(kind, bundle))[4] or ""


class VaultStore:
    def __init__(self, arm: "ArmStore", default_scope: str) -> None:
        self.arm = arm
        self.lock = arm.lock
        self.default_scope = default_scope.rstrip("/")   # /subscriptions/<sub>/resourceGroups/<rg>
        self._objects: dict[tuple[str, str, str], VaultObject] = {}
        self._bases: dict[str, str] = {}                 # vault -> "https://<vault>.vault.azure.net"
        # the callers reach every vault through an approved private endpoint (world flag
        # ``keyvault_private_access``): a vault with public network access disabled still serves them
        self.private_access = False

    # ---- addressing ------------------------------------------------------------------
    def base(self, vault: str) -> str:
        return self._bases.get(vault.lower(), f"https://{vault.lower()}.{VAULT_DNS_SUFFIX}")

    def object_url(self, kind: str, vault: str, name: str, version: str | None = None) -> str:
        return f"{self.base(vault)}/{kind}/{name}" + (f"/{version}" if version else "")

    def topic(self, vault: str) -> str:
        """The vault's ARM id: from the ARM store's ``Microsoft.KeyVault/vaults`` resource, else the default scope."""
        res = self.arm.find_by_type_and_name("Microsoft.KeyVault/vaults", vault)
        if res is not None:
            return res["id"]
        parts = [p for p in self.default_scope.split("/") if p]
        return vault_arm_id(parts[1], parts[3], vault.lower())

    # ---- network ---------------------------------------------------------------------
    def check_network(self, vault: str, claims: dict | None) -> None:
        """Key Vault's firewall for a public caller: when the vault's ARM resource has
        ``publicNetworkAccess`` ``Disabled`` (any case) and ``private_access`` is off, every
        data-plane request (after the bearer challenge: the message names the caller from its
        token) is refused as real Key Vault refuses it (the message's three lines joined by CRLF)::

            403 {"error": {"code": "Forbidden", "message": "Public network access is disabled and
                 request is not from a trusted service nor via an approved private link.
                 Caller: appid=…;oid=…;iss=https://sts.windows.net/<tenant>/
                 Vault: <vault>;location=<region>", "innererror": {"code": "ForbiddenByConnection"}}}

        Key Vault's other firewall refusal (``networkAcls`` ``defaultAction: Deny`` and a caller
        outside its rules: innererror ``ForbiddenByFirewall``) is not emulated.

        A vault without an ARM resource in the store is not locked down (nothing says it is)."""
        if self.private_access:
            return
        res = self.arm.find_by_type_and_name("Microsoft.KeyVault/vaults", vault)
        props = (res or {}).get("properties")
        access = props.get("publicNetworkAccess") if isinstance(props, dict) else None
        if not isinstance(access, str) or access.lower() != "disabled":
            return
        c = claims or {}
        raise KeyVaultError(
            403, "Forbidden",
            "Public network access is disabled and request is not from a trusted service nor via an approved "
            f"private link.\r\nCaller: appid={c.get('appid') or ''};oid={c.get('oid') or ''};"
            f"iss=https://sts.windows.net/{self.arm.tenant_id}/\r\nVault: {vault.lower()};"
            f"location={str((res or {}).get('location') or '')}",
            "ForbiddenByConnection")

    # ---- reads -----------------------------------------------------------------------
    def find(self, kind: str, vault: str, name: str) -> VaultObject | None:
        return self._objects.get((kind, vault.lower(), name.lower()))

    def get(self, kind: str, vault: str, name: str, version: str | None = None) -> dict:
        """The bundle (current version when ``version`` is empty), or 404 in Key Vault's shape."""
        obj = self.find(kind, vault, name)
        bundle = obj.find(version) if obj else None
        if bundle is None:
            raise not_found(kind, name, version)
        if kind == "keys":
            self.ensure_material(bundle)
        return bundle

    def objects(self, kind: str, vault: str) -> list[VaultObject]:
        return sorted((o for (k, v, _), o in self._objects.items() if k == kind and v == vault.lower() and o.versions),
                      key=lambda o: o.name.lower())

    def ensure_material(self, bundle: dict) -> None:
        key = bundle.setdefault("key", {})
        kty = str(key.get("kty") or "RSA")
        family = kty.upper().removesuffix("-HSM")
        if (family == "RSA" and not key.get("n")) or (family == "EC" and not key.get("x")):
            key.update(generate_public_material(kty, crv=key.get("crv")))
        key.setdefault("key_ops", list(DEFAULT_KEY_OPS.get(family, [])))

    # ---- seeding ---------------------------------------------------------------------
    def seed(self, kind: str, bundles: Iterable[dict]) -> None:
        """Bundles as Key Vault GET returns them, one per version; per object the versions are ordered
        by ``attributes.created`` (stable), the newest becoming the current one."""
        with self.lock:
            touched: set[VaultObject] = set()
            for bundle in bundles:
                if not isinstance(bundle, dict):
                    raise ValueError(f"a {_SINGULAR[kind]} bundle must be an object")
                try:
                    base, vault, collection, name, version = parse_object_url(bundle_id(kind, bundle))
                except (KeyError, TypeError) as exc:
                    raise ValueError(f"a {_SINGULAR[kind]} bundle needs {'key.kid' if kind == 'keys' else 'id'}") from exc
                if collection != kind or not version:
                    raise ValueError(f"{bundle_id(kind, bundle)!r} is not a versioned {_SINGULAR[kind]} id")
                _check_seconds(bundle)
                self._bases.setdefault(vault, base)
                obj = self._objects.setdefault((kind, vault, name.lower()), VaultObject(kind, vault, name))
                obj.versions = [b for b in obj.versions if version_of(kind, b).lower() != version.lower()]
                obj.versions.append(copy.deepcopy(bundle))
                touched.add(obj)
            for obj in touched:
                obj.versions.sort(key=lambda b: int((b.get("attributes") or {}).get("created") or 0))

    # ---- writes ----------------------------------------------------------------------
    def set_secret(self, vault: str, name: str, body: Any) -> dict:
        if not NAME.match(name):
            raise bad_parameter(f"The request URI contains an invalid name: {name}")
        body = _check_body(body, SECRET_SET_KEYS, "secrets")
        if not isinstance(body.get("value"), str):
            raise bad_parameter("Property 'value' is required and must be a string.")
        now = int(time.time())
        obj = self._objects.setdefault(("secrets", vault.lower(), name.lower()),
                                       VaultObject("secrets", vault.lower(), name))
        version = uuid.uuid4().hex
        attrs = {"enabled": True, **(body.get("attributes") or {}), "created": now, "updated": now,
                 "recoveryLevel": RECOVERY_LEVEL, "recoverableDays": RECOVERABLE_DAYS}
        bundle: dict[str, Any] = {"value": body["value"]}
        if body.get("contentType") is not None:
            bundle["contentType"] = body["contentType"]
        bundle["id"] = self.object_url("secrets", vault, obj.name, version)
        bundle["attributes"] = attrs
        if body.get("tags") is not None:
            bundle["tags"] = dict(body["tags"])
        obj.versions.append(bundle)
        self.arm.emit(self.event("SecretNewVersionCreated", vault, obj.name, version))
        return bundle

    def update(self, kind: str, vault: str, name: str, version: str | None, body: Any) -> dict:
        """PATCH of one version's properties (attributes merged; tags, contentType, key_ops replaced). No event."""
        body = _check_body(body, SECRET_PATCH_KEYS if kind == "secrets" else KEY_PATCH_KEYS, kind)
        bundle = self.get(kind, vault, name, version)
        attrs = bundle.setdefault("attributes", {})
        for key, value in (body.get("attributes") or {}).items():
            if value is None:
                attrs.pop(key, None)
            else:
                attrs[key] = value
        attrs["updated"] = int(time.time())
        if body.get("tags") is not None:
            bundle["tags"] = dict(body["tags"])
        if kind == "secrets" and body.get("contentType") is not None:
            bundle["contentType"] = body["contentType"]
        if kind == "keys" and body.get("key_ops") is not None:
            bundle["key"]["key_ops"] = list(body["key_ops"])
        if kind == "keys" and body.get("release_policy") is not None:
            bundle["release_policy"] = copy.deepcopy(body["release_policy"])
        return bundle

    def rotate_key(self, vault: str, name: str) -> dict:
        """A new version of the same key type, size/curve and operations (tags kept, no expiry)."""
        current = self.get("keys", vault, name)
        obj = self.find("keys", vault, name)
        assert obj is not None
        old_key, old_attrs = current["key"], current.get("attributes") or {}
        version = uuid.uuid4().hex
        kty = str(old_key.get("kty") or "RSA")
        size = _b64url_len(old_key.get("n")) * 8 or 2048
        key = {"kid": self.object_url("keys", vault, obj.name, version), "kty": kty,
               "key_ops": list(old_key.get("key_ops") or DEFAULT_KEY_OPS.get(kty.upper().removesuffix("-HSM"), [])),
               **generate_public_material(kty, key_size=size, crv=old_key.get("crv"))}
        now = int(time.time())
        attrs: dict[str, Any] = {"enabled": True, "created": now, "updated": now,
                                 "recoveryLevel": old_attrs.get("recoveryLevel", RECOVERY_LEVEL),
                                 "recoverableDays": old_attrs.get("recoverableDays", RECOVERABLE_DAYS)}
        if "exportable" in old_attrs:
            attrs["exportable"] = old_attrs["exportable"]
        bundle: dict[str, Any] = {"key": key, "attributes": attrs}
        if current.get("tags") is not None:
            bundle["tags"] = dict(current["tags"])
        obj.versions.append(bundle)
        self.arm.emit(self.event("KeyNewVersionCreated", vault, obj.name, version))
        return bundle

    # ---- events ----------------------------------------------------------------------
    def event(self, event_type: str, vault: str, name: str | None = None, version: str | None = None) -> dict:
        """A Key Vault event for an object of this store (version: the given one, else the current;
        ``NBF``/``EXP`` from its attributes). An unknown object needs an explicit version (null NBF/EXP)."""
        short = short_event_type(event_type)
        object_type = EVENT_OBJECT_TYPES[short]
        vault = vault.lower()
        if object_type == "Vault":
            return keyvault_event(short, topic=self.topic(vault), vault=vault, object_name=vault,
                                  object_id=self.base(vault), version=None, nbf=None, exp=None)
        if not name:
            raise ValueError(f"{short} needs an object name")
        kind = {"Secret": "secrets", "Key": "keys"}.get(object_type)
        obj = self.find(kind, vault, name) if kind else None
        bundle = obj.find(version) if obj else None
        if bundle is None:
            if not version:
                raise ValueError(f"no {object_type.lower()} {name!r} in vault {vault!r}: pass the version")
            collection = kind or "certificates"
            return keyvault_event(short, topic=self.topic(vault), vault=vault, object_name=name,
                                  object_id=self.object_url(collection, vault, name, version),
                                  version=version, nbf=None, exp=None)
        attrs = bundle.get("attributes") or {}
        assert obj is not None and kind is not None
        return keyvault_event(short, topic=self.topic(vault), vault=vault, object_name=obj.name,
                              object_id=bundle_id(kind, bundle), version=version_of(kind, bundle),
                              nbf=attrs.get("nbf"), exp=attrs.get("exp"))

    # ---- world -----------------------------------------------------------------------
    def to_world(self, include_values: bool = False) -> dict:
        out: dict[str, list[dict]] = {"secrets": [], "keys": []}
        with self.lock:
            for (kind, vault, lname) in sorted(self._objects):
                for bundle in self._objects[(kind, vault, lname)].versions:
                    b = copy.deepcopy(bundle)
                    if not include_values:
                        if kind == "secrets" and "value" in b:
                            b["value"] = REDACTED
                        if kind == "keys" and isinstance(b.get("key"), dict):
                            b["key"] = {k: v for k, v in b["key"].items() if k not in KEY_MATERIAL}
                    out[kind].append(b)
        return out


def _check_seconds(bundle: dict) -> None:
    """A seeded bundle's timestamps are whole seconds since the epoch, as Key Vault answers them
    (``"created": 1700000000``): a fraction would order versions the real service cannot tell apart."""
    attrs = bundle.get("attributes") or {}
    for key in TIMESTAMP_ATTRIBUTES:
        value = attrs.get(key) if isinstance(attrs, dict) else None
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            ident = bundle_id("keys" if "key" in bundle else "secrets", bundle)
            raise ValueError(f"{ident!r}: attributes.{key} must be whole seconds since the epoch (an integer), "
                             f"as Key Vault answers, not {value!r}")


def _check_body(body: Any, allowed: frozenset[str], kind: str) -> dict:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a JSON object.")
    extra = sorted(k for k in body if k not in allowed)
    if extra:
        raise bad_parameter(f"Unknown propert{'ies' if len(extra) > 1 else 'y'} {extra} in the request body; "
                            f"allowed: {sorted(allowed)} (Key Vault property names as in the REST API).")
    attrs = body.get("attributes")
    if attrs is not None:
        if not isinstance(attrs, dict):
            raise bad_parameter("Property 'attributes' must be an object.")
        bad = sorted(k for k in attrs if k not in WRITABLE_ATTRIBUTES[kind])
        if bad:
            raise bad_parameter(f"Unknown or read-only attributes {bad}; writable: {sorted(WRITABLE_ATTRIBUTES[kind])}.")
        for k in ("nbf", "exp"):
            if attrs.get(k) is not None and (isinstance(attrs[k], bool) or not isinstance(attrs[k], int)):
                raise bad_parameter(f"Attribute '{k}' must be a number of seconds since the epoch.")
        if attrs.get("enabled") is not None and not isinstance(attrs["enabled"], bool):
            raise bad_parameter("Attribute 'enabled' must be a boolean.")
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())):
        raise bad_parameter("Property 'tags' must be an object of strings.")
    if tags is not None and len(tags) > 15:
        raise bad_parameter("A maximum of 15 tags is allowed.")
    return body
