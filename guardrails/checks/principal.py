"""The caller's verified identity: App Service authentication's ``X-MS-CLIENT-PRINCIPAL``.

With App Service authentication (Easy Auth) in front of the function app, the platform validates
the caller's Entra token and injects the principal as base64 JSON; callers cannot set the header
themselves (the platform strips it). Decoded shape::

    {"auth_typ": "aad", "name_typ": "<claim type of the name>", "role_typ": "<claim type of roles>",
     "claims": [{"typ": "<claim type>", "val": "<value>"}, ...]}

Claim types come mapped (``http://schemas.microsoft.com/identity/claims/objectidentifier``) or
raw (``oid``); both are read. The object id must be a GUID; ``X-MS-CLIENT-PRINCIPAL-ID``, when
sent too, must name the same object. Anything else is rejected as ``invalid_principal_header``:
a malformed principal means a misconfigured or bypassed front end, never "anonymous".

The header is trusted only where App Service authentication runs in front of the app (App
Service sets ``WEBSITE_AUTH_ENABLED=True`` there): without it anyone holding a function key could
send any principal, so the header is then refused, not believed (``platform_auth_enabled``).

Pure: strings in, ``Principal`` out. Raises ``InvalidPrincipal``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Mapping

from guardrails.errors import GuardrailsError
from guardrails.model.roles import normalize_guid

# set to "True" by App Service on an app whose authentication (Easy Auth) is enabled: only then does
# the platform strip caller-supplied X-MS-* headers, so only then is the principal header trusted
PLATFORM_AUTH_ENABLED = "WEBSITE_AUTH_ENABLED"
HEADER = "x-ms-client-principal"
ID_HEADER = "x-ms-client-principal-id"
MAX_HEADER_CHARS = 64 * 1024          # a token with ~200 group claims stays well under this
MAX_CLAIMS = 1000
MAX_CLAIM_CHARS = 4096

OID_TYPES = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
TID_TYPES = ("http://schemas.microsoft.com/identity/claims/tenantid", "tid")
APPID_TYPES = ("appid", "azp")
UPN_TYPES = ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn", "preferred_username")


class InvalidPrincipal(GuardrailsError):
    reason = "invalid_principal_header"


@dataclass(frozen=True)
class Principal:
    """A verified caller. ``object_id``/``tenant_id`` lower-case dashed GUIDs."""

    object_id: str
    auth_type: str
    tenant_id: str | None = None
    app_id: str | None = None
    upn: str | None = None
    name: str | None = None
    roles: tuple[str, ...] = ()

    def __str__(self) -> str:     # for messages: identifiers only
        return self.upn or self.name or self.object_id


def platform_auth_enabled(env: Mapping[str, str]) -> bool:
    """True when App Service authentication is enabled for this app (``WEBSITE_AUTH_ENABLED``)."""
    return (env.get(PLATFORM_AUTH_ENABLED) or "").strip().lower() == "true"


def _first(claims: list[tuple[str, str]], types: tuple[str, ...]) -> str | None:
    wanted = {t.lower() for t in types}
    return next((v for t, v in claims if t.lower() in wanted), None)


def decode_principal(header: str | None, *, principal_id: str | None = None) -> Principal | None:
    """``None`` when the header is absent (no platform identity); a ``Principal`` when it is
    valid; raises ``InvalidPrincipal`` otherwise."""
    if header is None:
        if principal_id is not None and principal_id.strip():
            raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL-ID without X-MS-CLIENT-PRINCIPAL")
        return None
    text = header.strip()
    if not text:
        raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL is empty")
    if len(text) > MAX_HEADER_CHARS:
        raise InvalidPrincipal(f"X-MS-CLIENT-PRINCIPAL is longer than {MAX_HEADER_CHARS} characters")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL is not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL must decode to a JSON object")
    auth_type = data.get("auth_typ")
    if not isinstance(auth_type, str) or not auth_type.strip() or len(auth_type) > 64:
        raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL has no auth_typ")
    if auth_type.strip().lower() != "aad":
        # grants name Entra object ids: a principal from another provider (GitHub, a custom
        # OpenID Connect one) would name whatever "oid" its claims carry
        raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL is not from Microsoft Entra ID (auth_typ 'aad'); "
                               "only Entra principals are accepted")
    for key in ("name_typ", "role_typ"):
        if data.get(key) is not None and not isinstance(data.get(key), str):
            raise InvalidPrincipal(f"X-MS-CLIENT-PRINCIPAL {key} must be a string")
    raw_claims = data.get("claims")
    if not isinstance(raw_claims, list) or len(raw_claims) > MAX_CLAIMS:
        raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL claims must be a list of {typ, val}")
    claims: list[tuple[str, str]] = []
    for c in raw_claims:
        if not isinstance(c, dict) or not isinstance(c.get("typ"), str) or not isinstance(c.get("val"), str):
            raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL claims must be a list of {typ, val} strings")
        if len(c["typ"]) > MAX_CLAIM_CHARS or len(c["val"]) > MAX_CLAIM_CHARS:
            raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL has an oversized claim")
        claims.append((c["typ"], c["val"]))
    oid = normalize_guid(_first(claims, OID_TYPES))
    if oid is None:
        raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL has no object id claim (oid) holding a GUID")
    if principal_id is not None and principal_id.strip() and normalize_guid(principal_id) != oid:
        raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL-ID does not match the principal's object id")
    tid_raw = _first(claims, TID_TYPES)
    tid = normalize_guid(tid_raw)
    if tid_raw is not None and tid is None:
        raise InvalidPrincipal("X-MS-CLIENT-PRINCIPAL tenant id claim is not a GUID")
    name_typ = data.get("name_typ") or "name"
    role_typ = data.get("role_typ") or "roles"
    return Principal(
        object_id=oid, auth_type=auth_type.strip(), tenant_id=tid,
        app_id=(_first(claims, APPID_TYPES) or None), upn=_first(claims, UPN_TYPES),
        name=_first(claims, (name_typ,)),
        roles=tuple(v for t, v in claims if t.lower() == role_typ.lower()))


def principal_from_token(token: str, *, auth_type: str = "credential") -> Principal | None:
    """The identity a bearer token of this process's own credential names: its ``oid``, ``tid``,
    ``appid``/``azp``, ``upn``/``preferred_username``/``unique_name`` and ``name`` claims. The
    token is read, not verified: this records whom the process acts as (the CLI's audit rows),
    never whom to trust. A JWT or the local emulator's token; None when it names no object id."""
    if not isinstance(token, str):
        return None
    if token.startswith("local."):
        from guardrails.local.credential import decode_local_token
        claims = decode_local_token(token)
    else:
        parts = token.split(".")
        claims = None
        if len(parts) == 3 and len(parts[1]) <= MAX_HEADER_CHARS:
            try:
                claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode("utf-8"))
            except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
                claims = None
    if not isinstance(claims, dict):
        return None

    def text(*names: str) -> str | None:
        for n in names:
            v = claims.get(n)
            if isinstance(v, str) and v.strip() and len(v) <= MAX_CLAIM_CHARS:
                return v.strip()
        return None

    oid = normalize_guid(text("oid"))
    if oid is None:
        return None
    return Principal(object_id=oid, auth_type=auth_type, tenant_id=normalize_guid(text("tid")),
                     app_id=text("appid", "azp"), upn=text("upn", "preferred_username", "unique_name"),
                     name=text("name"))


def encode_principal(object_id: str, *, auth_type: str = "aad", tenant_id: str | None = None,
                     app_id: str | None = None, upn: str | None = None, roles: tuple[str, ...] = ()) -> str:
    """The header value App Service would send for such a caller (tests, local tools)."""
    claims = [{"typ": OID_TYPES[0], "val": object_id}]
    if tenant_id:
        claims.append({"typ": TID_TYPES[0], "val": tenant_id})
    if app_id:
        claims.append({"typ": "appid", "val": app_id})
    if upn:
        claims.append({"typ": UPN_TYPES[0], "val": upn})
        claims.append({"typ": "name", "val": upn})
    claims.extend({"typ": "roles", "val": r} for r in roles)
    body = {"auth_typ": auth_type, "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(body).encode()).decode()
