"""Secret values and versions as the core sees them. A value is wrapped in ``Redacted`` from the
moment it leaves the SDK until it goes back into it: ``str``/``repr``/format/JSON of it never
show the value, so it cannot reach a log line, an audit row, an exception or an HTTP response."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

MARKER_TAG = "guardrails-rotated"        # on every version the guardrail writes
LIVE_KEY_TAG = "guardrails-live-key"     # storage-account-key: which account key the version holds
REASON_TAG = "guardrails-reason"
EXPOSURE_TAG = "guardrails-exposure"     # an exposure's answer: the id of the event (report) it answers
REVOKE_PENDING_TAG = "guardrails-revoke-pending"   # storage-account-key exposure: keys still to regenerate
ORIGIN_TAG = "guardrails-origin"         # "<delivery id> <event id>" of the decision that wrote the version
MAX_TAGS = 15                            # Key Vault's limit on one version's tags (400 BadParameter beyond)
SECRET_DISABLED = "secret_disabled"      # reason: Key Vault's 403 SecretDisabled (a disabled version's value)
CERTIFICATE_MANAGED = "certificate_managed"   # reason: a certificate's backing secret (``managed``): never written
NOT_ENFORCED = "not_enforced"            # reason: an exposure only an ``audit``-mode policy governs: not rotated
SHARED_STORAGE_ACCOUNT = "shared_storage_account"   # reason: another secret rotates the same storage account's keys


class Redacted:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<redacted>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redacted) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("redacted", len(self._value)))

    def __reduce__(self):  # never pickled/serialised with its value
        raise TypeError("Redacted values are not serialisable")


@dataclass(frozen=True)
class SecretVersion:
    vault: str
    name: str
    version: str
    enabled: bool = True
    expires_on: datetime | None = None
    not_before: datetime | None = None
    created_on: datetime | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    value: Redacted | None = field(default=None, repr=False, compare=False)
    # Key Vault manages the secret's lifetime: it backs a certificate (its PFX/PEM with the private
    # key); only re-issuing the certificate changes it, and a version written to it would break
    # every consumer of the certificate
    managed: bool = False

    @property
    def written_by_guardrail(self) -> bool:
        return (self.tags or {}).get(MARKER_TAG) == "true"

    def describe(self) -> dict:
        """Audit-safe description (no value)."""
        return {"vault": self.vault, "name": self.name, "version": self.version, "enabled": self.enabled,
                "expires_on": self.expires_on.isoformat() if self.expires_on else None}


@dataclass(frozen=True)
class KeyVersion:
    vault: str
    name: str
    version: str
    enabled: bool = True
    expires_on: datetime | None = None
    created_on: datetime | None = None


def newest_versions(versions) -> list[SecretVersion]:
    """The versions that may be a secret's current one by their properties alone: those with the
    newest ``created``. Key Vault keeps ``created`` in whole seconds and lists versions in no
    documented order (a real answer is sorted by version id), so versions written in one second
    tie; telling them apart is the caller's (an event's version, the vault list's attributes)."""
    versions = list(versions)
    newest = max((v.created_on for v in versions if v.created_on is not None), default=None)
    return [v for v in versions if v.created_on == newest]

