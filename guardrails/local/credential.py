"""A TokenCredential for the local Azure emulator (never for real Azure).

The token is ``"local." + base64url(json(claims))`` without padding: unsigned, readable
by :func:`decode_local_token`, so the emulator knows who called (``oid``/``appid``/``upn``).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo

LOCAL_TOKEN_PREFIX = "local."
DEFAULT_TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
_LIFETIME_S = 3600


def encode_local_token(claims: dict[str, Any]) -> str:
    raw = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return LOCAL_TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_local_token(token: str) -> dict | None:
    """Claims of a local token (a leading ``Bearer `` is tolerated); None if not one."""
    if not isinstance(token, str):
        return None
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token.startswith(LOCAL_TOKEN_PREFIX):
        return None
    payload = token[len(LOCAL_TOKEN_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


class LocalTokenCredential:
    """Implements both ``TokenCredential.get_token`` and ``SupportsTokenInfo.get_token_info``."""

    def __init__(
        self,
        *,
        object_id: str,
        app_id: str | None = None,
        upn: str | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        name: str | None = None,
    ) -> None:
        if not object_id:
            raise ValueError("object_id is required")
        self.object_id = object_id
        self.app_id = app_id
        self.upn = upn
        self.tenant_id = tenant_id
        self.name = name

    @property
    def claims(self) -> dict[str, Any]:
        return {"oid": self.object_id, "appid": self.app_id, "upn": self.upn,
                "tid": self.tenant_id, "name": self.name}

    @property
    def token(self) -> str:
        return encode_local_token(self.claims)

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + _LIFETIME_S)

    def get_token_info(self, *scopes: str, options: dict | None = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, int(time.time()) + _LIFETIME_S, token_type="Bearer")

    def close(self) -> None:
        pass

    def __enter__(self) -> "LocalTokenCredential":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalTokenCredential(object_id={self.object_id!r}, app_id={self.app_id!r}, upn={self.upn!r})"
