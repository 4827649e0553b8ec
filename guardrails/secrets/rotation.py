"""Rotation strategies behind one small interface.

    strategy.rotate(ref, current, io, reason) -> Rotated   (new version written, tagged as ours)

``storage-account-key`` — the two-key pattern: regenerate the account key that is NOT live (the
one the current value does not hold, compared with the account's listed keys; the live-key tag is
anyone's to edit and only records it; a value holding none is refused, nothing regenerated),
store it as the new secret version, tag which key is live. Consumers keep working throughout:
the old value stays valid until the next rotation regenerates it. For an exposure (``revoke``)
every key of the account is regenerated: the leaked value is one of them, and leaving it valid
would leave the leak open. The new live key first, stored in the secret (tagged with the keys
still to regenerate, ``REVOKE_PENDING_TAG``), then the others, then the tag is cleared: a failure
part way leaves a secret that works and a tag that says what is left (``finish_revoke``), never
a secret holding a key that was already revoked. A ``connection-string`` secret keeps its current
string with only ``AccountKey=`` replaced (a sovereign cloud's suffix, custom endpoints); a fresh
public-cloud string only when no current value is readable.
A certificate's backing secret (``managed``) is never written by either strategy.
``random`` — a new random value of the policy's length and alphabet.
``notify-only`` — nothing can be rotated: the caller records and notifies the owner.
"""

from __future__ import annotations

import secrets as _rng
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from ..errors import GuardrailsError, refused_outright   # the product's one rule for a write certainly not made
from .policy import ALPHABETS, SecretReference
from .values import (LIVE_KEY_TAG, MARKER_TAG, MAX_TAGS, ORIGIN_TAG, REASON_TAG, REVOKE_PENDING_TAG, Redacted,
                     SecretVersion)


class RotationError(GuardrailsError):
    """``new``: the version stored before the failure, when there is one (the rotation is partly done)."""

    reason = "rotation_failed"

    def __init__(self, message: str, *, new: SecretVersion | None = None) -> None:
        super().__init__(message)
        self.new = new


class RotationIO(Protocol):
    def set_secret(self, vault: str, name: str, value: Redacted, *, tags: dict[str, str],
                   expires_on: datetime | None, content_type: str | None) -> SecretVersion: ...

    def list_storage_keys(self, account_id: str) -> dict[str, Redacted]: ...

    def regenerate_storage_key(self, account_id: str, key_name: str) -> dict[str, Redacted]: ...

    def set_tags(self, vault: str, name: str, version: str, tags: dict[str, str]) -> SecretVersion: ...


@dataclass(frozen=True)
class Rotated:
    new: SecretVersion
    detail: str           # audit-safe: what happened (never a value)


_OPTIONAL_TAGS = (ORIGIN_TAG,)     # the guardrail's tags that give way first when the set is full


def fit_tags(current: SecretVersion | None, reason: str,
             extra: dict[str, str] | None = None) -> tuple[dict[str, str], int]:
    """The new version's tags: the secret's own (user) tags, then the guardrail's, within Key Vault's
    ``MAX_TAGS``; returns ``(tags, how many user tags were left out)``.

    The guardrail's tags are what later decisions rely on (its own write, the live key, keys still
    to revoke, the exposure answered) and the rotation must not fail on a full tag set: an exposure
    would stay open, and a storage key regenerated before the write would be lost. So past the
    limit the user tags that come last are left out (they stay on the previous version, whose tags
    Key Vault keeps), after the one guardrail tag that is only an audit aid (``ORIGIN_TAG``)."""
    user = {k: v for k, v in dict(current.tags if current else {}).items() if not k.startswith("guardrails-")}
    ours = {MARKER_TAG: "true", REASON_TAG: reason, **(extra or {})}
    optional = {k: ours.pop(k) for k in _OPTIONAL_TAGS if k in ours}
    room = max(MAX_TAGS - len(ours), 0)
    kept = dict(list(user.items())[:room])
    room -= len(kept)
    return {**kept, **ours, **dict(list(optional.items())[:room])}, len(user) - len(kept)


def _tags_note(current: SecretVersion | None, dropped: int) -> str:
    """For the audit: how many of the secret's own tags the new version does not carry (never
    which values)."""
    if not dropped:
        return ""
    where = f"version {current.version}" if current is not None else "the previous version"
    return (f"; {dropped} of the secret's own tags not carried to the new version (Key Vault allows "
            f"{MAX_TAGS} tags and the guardrail's take precedence): they remain on {where}")


class RandomStrategy:
    name = "random"

    def __init__(self, choice: Callable[[str], str] = _rng.choice) -> None:
        self._choice = choice

    def rotate(self, ref: SecretReference, current: SecretVersion | None, io: RotationIO, *,
               reason: str, expires_on: datetime | None, revoke: bool = False,
               tags: dict[str, str] | None = None) -> Rotated:
        """``revoke`` changes nothing here: a random value is only valid where its consumer checks
        it; disabling the exposed versions is the caller's part. Needs no old value."""
        refuse_managed(current)
        alphabet = ALPHABETS[ref.rotation.alphabet]
        value = Redacted("".join(self._choice(alphabet) for _ in range(ref.rotation.length)))
        fitted, dropped = fit_tags(current, reason, tags)
        new = io.set_secret(ref.vault, ref.name, value, tags=fitted, expires_on=expires_on,
                            content_type=current.content_type if current else None)
        return Rotated(new, f"new random value ({ref.rotation.length} characters, {ref.rotation.alphabet})"
                            + _tags_note(current, dropped))


def _account_key_of(value: str) -> str:
    for part in value.split(";"):
        k, _, v = part.partition("=")
        if k.strip().lower() == "accountkey":
            return v.strip()
    return value.strip()


def _field_of(value: str, name: str) -> str | None:
    """One ``Name=value`` field of a connection string (name compared case-insensitively)."""
    for part in value.split(";"):
        k, sep, v = part.partition("=")
        if sep and k.strip().lower() == name.lower():
            return v.strip()
    return None


def with_account_key(value: str, key: str, account_name: str) -> str | None:
    """``value``, a storage connection string, with only its ``AccountKey=`` replaced by ``key``:
    its endpoint suffix (a sovereign cloud's), custom endpoints (``BlobEndpoint=`` …), protocol and
    the order of its fields are what its consumers rely on and are kept. None when it is no
    connection string for ``account_name`` holding an account key (a bare key, a SAS string,
    another account's): the caller builds a fresh one."""
    parts = value.split(";")
    named = _field_of(value, "AccountName")
    if named is not None and named.lower() != account_name.lower():
        return None
    for i, part in enumerate(parts):
        k, sep, _ = part.partition("=")
        if sep and k.strip().lower() == "accountkey":
            parts[i] = f"{k}={key}"
            return ";".join(parts)
    return None


def _connection_string(current: SecretVersion | None, account: str, key: Redacted) -> Redacted:
    """The new value of a ``connection-string`` secret: the current value with the new key (when it
    can be read), else a fresh string for the public cloud."""
    name = account_name_of(account)
    if current is not None and current.value is not None:
        kept = with_account_key(current.value.reveal(), key.reveal(), name)
        if kept is not None:
            return Redacted(kept)
    return Redacted(f"DefaultEndpointsProtocol=https;AccountName={name};AccountKey={key.reveal()};"
                    "EndpointSuffix=core.windows.net")


def refuse_managed(current: SecretVersion | None) -> None:
    """A certificate's backing secret (``managed``) is never written: a new version of it would
    break every consumer of the certificate. The guardrail decides before it gets here; this is
    the strategies' own guard (before a storage key is regenerated)."""
    if current is not None and current.managed:
        raise RotationError(f"{current.vault}/{current.name} backs a certificate (managed by Key Vault): not "
                            "written; re-issue the certificate instead")


class StorageAccountKeyStrategy:
    name = "storage-account-key"

    def rotate(self, ref: SecretReference, current: SecretVersion | None, io: RotationIO, *,
               reason: str, expires_on: datetime | None, revoke: bool = False,
               tags: dict[str, str] | None = None) -> Rotated:
        """Which key is live is what the current value holds, compared with the account's keys:
        ``LIVE_KEY_TAG`` is writable by anyone who may write the secret, and a tag naming the wrong
        key would have the key in use regenerated. Without ``revoke``, a value that holds none of
        the keys (or none readable) is refused (``RotationError``): nothing regenerated. With
        ``revoke`` every key is regenerated anyway: the first, stored, is the one not held."""
        refuse_managed(current)
        account = ref.rotation.account or ""
        keys = io.list_storage_keys(account)
        names = sorted(keys)
        if len(names) < 2:
            raise RotationError(f"storage account {account} does not expose two keys")
        live = None
        if current is not None and current.value is not None:
            held = _account_key_of(current.value.reveal())
            live = next((n for n in names if keys[n].reveal() == held), None)
        if live is None and not revoke:
            raise RotationError(live_key_unknown(account, current))
        # regenerate the key consumers are NOT using (an exposure regenerates them all)
        target = next((n for n in names if n != live), names[1]) if live else names[1]
        # an exposure: every other key as well (one of them may be the leaked one), AFTER the new
        # live key is stored, so that a failure part way never leaves the secret holding a revoked key
        revoked = [n for n in names if n != target] if revoke else []
        fresh = io.regenerate_storage_key(account, target)[target]
        # a connection string keeps what the current one says (endpoint suffix, custom endpoints)
        value = _connection_string(current, account, fresh) if ref.rotation.format == "connection-string" else fresh
        extra = {**(tags or {}), LIVE_KEY_TAG: target}
        if revoked:
            extra[REVOKE_PENDING_TAG] = ",".join(revoked)
        fitted, dropped = fit_tags(current, reason, extra)
        try:
            new = io.set_secret(ref.vault, ref.name, value, tags=fitted,
                                expires_on=expires_on, content_type=current.content_type if current else None)
        except GuardrailsError as exc:
            if revoke:
                raise RotationError(
                    f"{target} of {account_name_of(account)} was regenerated but the secret was not updated "
                    f"({exc.reason}); {', '.join(revoked)} NOT regenerated yet: the exposed value still works; "
                    f"the secret still holds {live or 'the other key'}: a retry completes") from exc
            raise RotationError(
                f"{target} of {account_name_of(account)} was regenerated but the secret was not updated "
                f"({exc.reason}); the secret still holds {live or 'the other key'}, which stays valid: "
                f"a retry regenerates {target} again and completes") from exc
        if revoke:
            new, detail = finish_revoke(ref, new, io)
            return Rotated(new, f"exposure: regenerated {target} (stored, now live), then {detail}"
                                + _tags_note(current, dropped))
        return Rotated(new, f"regenerated {target} (not in use); {target} is now live, "
                            f"{live or 'the other key'} stays valid until the next rotation"
                            + _tags_note(current, dropped))


def live_key_unknown(account: str, current: SecretVersion | None) -> str:
    """Why a rotation regenerated nothing: which key is in use is not established. Never a value,
    nor the tag's (anyone may write it)."""
    name = account_name_of(account)
    why = ("its value cannot be read" if current is None or current.value is None
           else f"its value holds none of the keys of {name}")
    return (f"NOT rotated: the key of {name} in use is not established ({why}; the live-key tag is not "
            f"taken on trust): nothing regenerated; store the key in use in the secret, or rotate by hand")


def finish_revoke(ref: SecretReference, version: SecretVersion, io: RotationIO) -> tuple[SecretVersion, str]:
    """Regenerate the keys ``version`` is tagged as still to revoke (``REVOKE_PENDING_TAG``), then
    clear the tag. Each one regenerated is regenerated for good: nobody holds it (the secret holds
    the live key). ``RotationError(new=version)`` names what was and was not done."""
    account = ref.rotation.account or ""
    pending = [n for n in (version.tags or {}).get(REVOKE_PENDING_TAG, "").split(",") if n]
    done: list[str] = []
    for key_name in pending:
        try:
            io.regenerate_storage_key(account, key_name)
        except GuardrailsError as exc:
            left = [n for n in pending if n not in done]
            raise RotationError(
                f"the secret holds a new key (version {version.version}, {(version.tags or {}).get(LIVE_KEY_TAG)} "
                f"live); regenerated so far: {', '.join(done) or 'none of the others'}; NOT regenerated: "
                f"{', '.join(left)} ({exc.reason}): the exposed value may still work at "
                f"{account_name_of(account)}; a retry regenerates what is left", new=version) from exc
        done.append(key_name)
    tags = {k: v for k, v in dict(version.tags or {}).items() if k != REVOKE_PENDING_TAG}
    try:
        version = io.set_tags(ref.vault, ref.name, version.version, tags)
    except GuardrailsError:
        pass        # the tag only makes a retry regenerate keys nobody holds again: harmless
    return version, (f"regenerated {', '.join(done)}, so no earlier value of the account's keys works any more"
                     if done else "no other key to regenerate")


def account_name_of(account_id: str) -> str:
    return account_id.rstrip("/").rsplit("/", 1)[-1]


STRATEGIES = {"random": RandomStrategy(), "storage-account-key": StorageAccountKeyStrategy()}


def expiry_for(now: datetime, max_validity_days: int | None, default_days: int = 90) -> datetime:
    return now + timedelta(days=max_validity_days or default_days)


NEAR_EXPIRY = timedelta(days=30)       # when Key Vault sends …NearExpiry (not configurable)


def strictest_validity(policies, primary=None) -> int | None:
    """The shortest ``max_validity_days`` among ``primary`` (the policy acting) and every enforcing
    policy in ``policies`` (those governing the vault): what a version the guardrail writes may live,
    and what its rotation lead is computed from. Anything longer is cut by the stricter policy's
    hygiene to inside the lead, and the next sweep would rotate it again."""
    days = [p.max_validity_days for p in policies if p.mode == "enforce" and p.max_validity_days]
    if primary is not None and primary.max_validity_days:
        days.append(primary.max_validity_days)
    return min(days) if days else None


def rotation_lead(max_validity_days: int | None) -> timedelta:
    """How long before its expiry a version is rotated: Key Vault's 30-day warning, or half the
    policy's validity when that is shorter. A version the guardrail writes lives
    ``max_validity_days``, so with a validity of 30 days or less it would be "near expiry" the
    moment it is written, and every sweep (and Key Vault's warning for it) would rotate it again."""
    if max_validity_days and timedelta(days=max_validity_days) / 2 < NEAR_EXPIRY:
        return timedelta(days=max_validity_days) / 2
    return NEAR_EXPIRY


def not_yet_due(kind: str, expires_on: datetime | None, now: datetime, lead: timedelta) -> str | None:
    """Why a warning (``…NearExpiry``) or an expiry (``…Expired``) Key Vault reported is not acted
    on: the current version's expiry was moved out past the rotation ``lead`` since (the sweep
    rotates it once it is due again; the event path and the sweep agree on the lead: a secret's
    ``rotation_lead``, a key's ``NEAR_EXPIRY``). None when it is due (or has no expiry)."""
    if kind not in ("NearExpiry", "Expired") or expires_on is None or expires_on - now <= lead:
        return None
    moved = " (its expiry was moved after Key Vault reported it expired)" if kind == "Expired" else ""
    return f"expires {expires_on.isoformat()}{moved}: rotated {lead.days} days before, not yet due"


class BoundRotationIO:
    """``RotationIO`` over the Key Vault and storage-key gateways, every call bound to the delivery's
    deadline. ``wrote``: whether any write (a new version, a regenerated key, a version's tags) was
    made or may have been (sent, and not refused outright): a rotation that fails with it False
    changed nothing, and its circuit-breaker permit is given back."""

    def __init__(self, store, storage_keys, deadline: float) -> None:
        self.store = store
        self.storage_keys = storage_keys
        self.deadline = deadline
        self.wrote = False

    def _write(self, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except BaseException as exc:
            self.wrote = self.wrote or not refused_outright(exc)
            raise
        self.wrote = True
        return result

    def set_secret(self, vault, name, value, *, tags, expires_on, content_type):
        return self._write(lambda: self.store.set_secret(vault, name, value, tags=tags, expires_on=expires_on,
                                                         content_type=content_type, deadline=self.deadline))

    def list_storage_keys(self, account_id):
        return self.storage_keys.list_keys(account_id, deadline=self.deadline)

    def regenerate_storage_key(self, account_id, key_name):
        return self._write(lambda: self.storage_keys.regenerate_key(account_id, key_name, deadline=self.deadline))

    def set_tags(self, vault, name, version, tags):
        return self._write(lambda: self.store.update_version(vault, name, version, tags=tags, deadline=self.deadline))
