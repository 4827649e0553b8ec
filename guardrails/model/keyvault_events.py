"""Key Vault events (Key Vault system topic), after the envelope: a typed, read-only view.

    Microsoft.KeyVault.SecretNearExpiry / SecretExpired / SecretNewVersionCreated
    Microsoft.KeyVault.KeyNearExpiry / KeyExpired / KeyNewVersionCreated
    Microsoft.KeyVault.CertificateNearExpiry / CertificateExpired / CertificateNewVersionCreated
    Microsoft.KeyVault.VaultAccessPolicyChanged
    Guardrails.SecretExposed     (custom topic: a scanner or responder reports a leak)

Real deliveries vary: ``NBF``/``EXP`` are strings in the docs, numbers in real deliveries, or
null; a published sample has keys and values with stray spaces (``"ObjectName "``); the subject
is the bare object name; Key Vault events carry no caller identity. Every rejection is an
``InvalidEvent`` with a stable reason, as for resource events.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from guardrails.errors import InvalidEvent
from guardrails.model.arm_id import ArmId, parse_arm_id
from guardrails.model.events import Envelope, data_object

PREFIX = "Microsoft.KeyVault."
SECRET_EXPOSED = "Guardrails.SecretExposed"
KEYVAULT_EVENT_TYPES = frozenset({
    f"{PREFIX}{kind}{what}"
    for kind in ("Secret", "Key", "Certificate")
    for what in ("NearExpiry", "Expired", "NewVersionCreated")
} | {f"{PREFIX}VaultAccessPolicyChanged", SECRET_EXPOSED})

# vault names: 3-24 alphanumerics and dashes, start with a letter, no consecutive dashes
_VAULT = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
# object names: 1-127 alphanumerics and dashes
_OBJECT = re.compile(r"^[A-Za-z0-9-]{1,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9]{1,64}$")
_ID_URL = re.compile(r"^https://([A-Za-z0-9-]{3,24})\.vault\.(?:azure\.net|azure\.cn|usgovcloudapi\.net|microsoftazure\.de)"
                     r"(?::443)?/(secrets|keys|certificates)/([A-Za-z0-9-]{1,127})(?:/([A-Za-z0-9]{0,64}))?/?$")
_MAX_TEXT = 256
# control (C0, DEL, C1), format (bidi overrides, zero-width) and line/paragraph separators: none
# of them belongs in a name or in who reported a leak, and each can forge or hide audit text
UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def has_unprintable(text: str) -> bool:
    """True when ``text`` holds a character of ``UNPRINTABLE_CATEGORIES``."""
    return any(unicodedata.category(c) in UNPRINTABLE_CATEGORIES for c in text)


@dataclass(frozen=True, repr=False)
class KeyVaultEvent:
    envelope: Envelope
    event_id: str
    event_type: str
    vault_name: str
    object_type: str | None          # "Secret" | "Key" | "Certificate" | None (vault events)
    object_name: str | None
    version: str | None
    not_before: datetime | None
    expires: datetime | None
    vault_id: ArmId | None            # the vault's ARM id, from the topic/source, when given
    exposure_source: str | None = None   # Guardrails.SecretExposed only: who reported it

    @property
    def kind(self) -> str:
        """``NearExpiry`` / ``Expired`` / ``NewVersionCreated`` / ``VaultAccessPolicyChanged`` / ``Exposed``."""
        if self.event_type == SECRET_EXPOSED:
            return "Exposed"
        tail = self.event_type[len(PREFIX):]
        for t in ("Secret", "Key", "Certificate"):
            if tail.startswith(t):
                return tail[len(t):]
        return tail

    def __str__(self) -> str:
        return (f"KeyVaultEvent({self.event_id!r}, {self.event_type!r}, vault={self.vault_name!r}, "
                f"object={self.object_name!r}, version={self.version!r})")

    __repr__ = __str__


def _strip_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(k, str):
            out[k.strip().lower()] = v.strip() if isinstance(v, str) else v
    return out


def _text(d: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    v = d.get(key.lower())
    if v is None or v == "":
        if required:
            raise InvalidEvent(f"data.{key} is missing", reason="missing_field")
        return None
    if not isinstance(v, str):
        raise InvalidEvent(f"data.{key} must be a string, got {type(v).__name__}", reason="wrong_type")
    if len(v) > _MAX_TEXT or has_unprintable(v):
        raise InvalidEvent(f"data.{key} is not a usable value", reason="invalid_value")
    return v


def _epoch(d: Mapping[str, Any], key: str) -> datetime | None:
    v = d.get(key.lower())
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise InvalidEvent(f"data.{key} must be epoch seconds", reason="wrong_type")
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise InvalidEvent(f"data.{key} must be epoch seconds", reason="invalid_value") from None
    if not isinstance(v, (int, float)) or v != v or not (0 <= v < 253402300800):   # NaN, year 10000
        raise InvalidEvent(f"data.{key} must be epoch seconds", reason="invalid_value")
    return datetime.fromtimestamp(float(v), tz=timezone.utc)


def _length(value: str) -> str:
    """How a refused name field is described: never its text. An exposure report's fields are
    where a scanner misconfigured to send the leaked value puts it, and the refusal is audited."""
    return f"{len(value)} character{'s' if len(value) != 1 else ''}"


def _no_credentials(env: Envelope, d: Mapping[str, Any]) -> None:
    """An exposure report's names are where a scanner misconfigured to send the leaked value puts
    it (a Databricks ``dapi…`` token, a Slack ``xoxb-…`` one pass a name's grammar): a field in a
    known credential format is refused by its name and length, as the HTTP endpoint refuses it,
    never taken into the row's resource id, its message or a log line."""
    if env.event_type != SECRET_EXPOSED:
        return
    from guardrails.secrets.credentials import classify

    for key in ("VaultName", "ObjectName", "Version", "Id"):
        v = d.get(key.lower())
        if isinstance(v, str) and classify(v) is not None:
            raise InvalidEvent(f"data.{key} ({_length(v)}, not shown) looks like a credential: an exposure "
                               "report names the secret, never its value", reason="invalid_value")


def parse_keyvault_event(env: Envelope) -> KeyVaultEvent:
    raw = data_object(env, KEYVAULT_EVENT_TYPES, "a Key Vault event")
    d = _strip_keys(raw)
    _no_credentials(env, d)
    vault = _text(d, "VaultName", required=True)
    if not _VAULT.match(vault):
        raise InvalidEvent(f"data.VaultName ({_length(vault)}, not shown) is not a vault name: 3-24 letters, "
                           "digits and dashes", reason="invalid_value")
    vault_id = None
    if env.source and env.source.lower().startswith("/subscriptions/"):
        try:
            vault_id = parse_arm_id(env.source)
        except InvalidEvent:
            vault_id = None
        if vault_id is not None and (vault_id.resource_type.lower() != "microsoft.keyvault/vaults"
                                     or (vault_id.name or "").lower() != vault.lower()):
            vault_id = None
    if env.event_type.endswith("VaultAccessPolicyChanged"):
        return KeyVaultEvent(env, env.id, env.event_type, vault, None, None, None, None, None, vault_id)
    object_type = _text(d, "ObjectType")
    name = _text(d, "ObjectName", required=True)
    if not _OBJECT.match(name):
        raise InvalidEvent(f"data.ObjectName ({_length(name)}, not shown) is not a Key Vault object name: 1-127 "
                           "letters, digits and dashes", reason="invalid_value")
    version = _text(d, "Version")
    if version is not None and not _VERSION.match(version):
        raise InvalidEvent("data.Version is not a Key Vault version", reason="invalid_value")
    id_url = _text(d, "Id")
    if id_url is not None:
        m = _ID_URL.match(id_url)
        if not m or m.group(1).lower() != vault.lower() or m.group(3).lower() != name.lower():
            raise InvalidEvent("data.Id does not name the same vault and object", reason="invalid_value")
        if version is None and m.group(4):
            version = m.group(4)
    tail = env.event_type[len(PREFIX):] if env.event_type.startswith(PREFIX) else "Secret"
    expected = next(t for t in ("Secret", "Key", "Certificate") if tail.startswith(t))
    if object_type is None:
        object_type = expected
    elif object_type.lower() != expected.lower():
        raise InvalidEvent(f"data.ObjectType ({_length(object_type)}, not shown) is not {expected!r}, which the "
                           "event type names", reason="invalid_value")
    source = _text(d, "Source") if env.event_type == SECRET_EXPOSED else None
    return KeyVaultEvent(env, env.id, env.event_type, vault, object_type.capitalize(), name, version,
                         _epoch(d, "NBF"), _epoch(d, "EXP"), vault_id, source)


def exposure_scope(ev: KeyVaultEvent) -> str:
    """What, beside its id, makes an exposure report one (its idempotency claim): its publisher
    and the secret it names. Scanners publishing to one custom topic choose their own ids
    (CloudEvents makes only source + id unique), and two reports with one id about different
    secrets are not duplicates. Any other Key Vault event's id is Azure's own GUID: "" (its id alone)."""
    if ev.kind != "Exposed":
        return ""
    return "|".join((ev.envelope.source or "", ev.vault_name.lower(), (ev.object_name or "").lower(),
                     (ev.version or "").lower()))
