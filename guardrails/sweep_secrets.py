"""The sweep's secrets and keys (``Sweeper.run``): rotation and expiry hygiene must not hang on
single Key Vault events, which Event Grid gives up on after 24 h.

    each vault a secrets policy names (its references' vaults, its selector's vaults), and, when a
    policy has no vault selector (it governs every vault), each ``GUARDRAILS_GOVERNED_VAULT_IDS``
    vault: the vaults whose events are wired and where the identity holds the data-plane role
    (``infra/modules/vault.bicep``); a vault outside both is neither listed nor readable:
        one list of the secret properties (no values, no version ids)
        ─▶ a referenced secret within its rotation lead of its expiry (or past it): the rotation
           path (Key Vault sends ``SecretNearExpiry`` once, 30 days ahead; the lead is those 30 days,
           or half the strictest ``max_validity_days`` of the enforcing policies on the vault when
           shorter, ``rotation.rotation_lead`` / ``rotation.strictest_validity``)
        ─▶ any other secret breaking the hygiene rules (no expiry, or one further out than
           ``max_validity_days``), whoever wrote it, enabled or not: the ``SecretNewVersionCreated``
           path, which sets the expiry (rotation alone needs the secret enabled)
    each referenced key: one read ─▶ within ``NEAR_EXPIRY``: ``rotate_key`` through the same path (a
        disabled key, readable or 403 ``KeyDisabled``, is left alone)

A certificate's backing secret (``managed``) takes the same paths, and the secret guardrail writes
nothing to it: it records a ``violation`` (``certificate_managed``) telling the owner to re-issue
the certificate, told once while unchanged (the run's notice gate).

Every decision is the secret guardrail's own (``service.reconcile_secret``), on the version current
when it runs: one rotated or fixed meanwhile comes out ``compliant``. A secret's current version is
learnt from one list of its versions' properties (``_current_versions``); two versions written in
one second (Key Vault keeps ``created`` in whole seconds) are told apart by the current version's
attributes as the vault's list showed them, and when they cannot be, a rotation names no version
(the guardrail reads the current one under its lease) and the expiry hygiene judges each. A secret
or key the sweep cannot read is an error of the run, an ERROR line and a ``failed`` row naming it;
a secret or key reference naming none the vault holds, an error of the run and an ERROR line. A secret whose rotation lease
another worker holds (an event's delivery rotating it now, ``secrets.lease``) is skipped this run
(counted ``skipped``, verdict ``duplicate``; no audit row: the holder writes one).

Each vault and the referenced keys are units of the sweep's ring (``secret_units``), spread among
the subscriptions and begun where the run's cursor says, so no vault waits behind every resource
list; nothing (a list, a decision, a key read) is begun past the sweep's deadline.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Callable

from .errors import ArmError, IdempotencyError, ResourceNotFound
from .logs import emit
from .secrets.rotation import NEAR_EXPIRY, rotation_lead, strictest_validity
from .secrets.values import SECRET_DISABLED, SecretVersion, newest_versions
from .sweep_ring import _Place

log = logging.getLogger("guardrails")
_SLACK = timedelta(minutes=5)          # as the event path: an expiry set "max_validity_days from now" a moment ago


def secret_units(sw, tally, compiled, sweep_id: str, dry_run: bool, deadline: float) -> list[tuple[str, Callable[[], None]]]:
    """This run's secret work as units of the sweep's ring (``Sweeper._units``): one per vault
    (``vault:<name>``: its property list, then its decisions) and one for the referenced keys
    (``keys``), in that order; none when no secrets policy is in force. Each begins nothing past
    ``deadline``."""
    secrets = getattr(sw.service, "secrets", None)
    # enforcing policies first, as the secret guardrail considers them (its rotation lead is theirs)
    policies = sorted((p for p in getattr(compiled, "secret_policies", ()) if p.mode != "off"),
                      key=lambda p: p.mode != "enforce")
    if secrets is None or not policies:
        return []
    # vault -> referenced secret (lower) -> (name as written, how long before expiry it is rotated)
    vaults: dict[str, dict[str, tuple[str, timedelta]]] = {}
    keys: dict[tuple[str, str], tuple[str, timedelta]] = {}
    for p in policies:
        for v in p.vaults:
            vaults.setdefault(v.lower(), {})
        if not p.vaults:                             # every vault: every one this deployment governs
            for vault_id in sw.governed_vaults:
                vaults.setdefault(vault_id.rstrip("/").rsplit("/", 1)[-1].lower(), {})
        for ref in p.secrets:
            if p.governs(ref.vault):
                # as the secret guardrail: the strictest validity of every enforcing policy on the vault
                validity = strictest_validity([q for q in policies if q.governs(ref.vault)], p)
                vaults.setdefault(ref.vault.lower(), {}).setdefault(
                    ref.name.lower(), (ref.name, rotation_lead(validity)))
        for kref in p.keys:
            if p.governs(kref.vault):
                # a key's lead is a secret's (``KeyDecisions``: the rotated version lives the strictest validity)
                validity = strictest_validity([q for q in policies if q.governs(kref.vault)], p)
                keys.setdefault((kref.vault.lower(), kref.name.lower()), (kref.name, rotation_lead(validity)))
    units: list[tuple[str, Callable[[], None]]] = [
        (f"vault:{vault}", partial(_sweep_vault, sw, tally, policies, vault, referenced, sweep_id, dry_run, deadline))
        for vault, referenced in sorted(vaults.items())]
    if keys:
        units.append(("keys", partial(_sweep_keys, sw, tally, keys, sweep_id, dry_run, deadline)))
    return units


def sweep_secrets(sw, tally, compiled, sweep_id: str, dry_run: bool, deadline: float) -> None:
    """Every vault, then the referenced keys, one after the other, until ``deadline`` (the sweep
    itself takes them as units of its ring, ``secret_units``)."""
    for _key, task in secret_units(sw, tally, compiled, sweep_id, dry_run, deadline):
        if sw._clock() > deadline:
            tally.truncate()
            return
        task()


def _sweep_vault(sw, tally, policies, vault: str, referenced: dict[str, tuple[str, timedelta]], sweep_id: str,
                 dry_run: bool, deadline: float, *, place: _Place | None = None) -> None:
    """One vault: its secret properties listed, then each one needing it decided (by name), none
    begun past ``deadline``; ``place`` (``sweep_ring._Place``): from where an earlier run that was
    cut short stopped, moved past each secret handled."""
    if sw._clock() > deadline:                   # no list begun past the deadline
        tally.truncate()
        return
    try:
        listed = sw.service.secrets.store.list_secrets(vault, deadline=deadline,
                                                       go_on=lambda: sw._clock() <= deadline)
    except ArmError as exc:
        if sw.cut_short(tally, exc, deadline, what=f"secrets of vault {vault}"):
            return
        tally.error(f"list secrets of vault {vault}: {exc}")
        emit(log, logging.ERROR, "guardrail_sweep_list_failed", vault=vault, reason=exc.reason)
        return
    governing = [p for p in policies if p.governs(vault)]
    now = sw._wall()
    _missing_references(tally, vault, referenced, listed)
    place = place or _Place(f"vault:{vault}")
    rows = [{"id": str(props.name), "props": props} for props in sorted(listed, key=lambda v: str(v.name))]
    for row in place.items(rows):
        if sw._clock() > deadline:               # before a decision, never after it
            tally.truncate()
            return
        name, props = row["id"], row["props"]
        ref = referenced.get(name.lower())
        if ref is not None and _near(props.expires_on, props.enabled, now, ref[1]):
            _decide(sw, tally, vault, name, "Secret", props.expires_on <= now, sweep_id, dry_run, deadline,
                    listed=props)
        # the guardrail's tag is writable by anyone who can write the secret: never a reason to skip;
        # a disabled version too, as on its ``SecretNewVersionCreated`` (enabled later, by an
        # attribute update that sends no event, it would be a credential that never expires)
        elif _breaks_hygiene(props.expires_on, governing, now):
            _decide(sw, tally, vault, name, "Secret", None, sweep_id, dry_run, deadline, listed=props)
        elif name.lower() in referenced or governing:
            tally.seen(compliant=1)
        place.handled(name)


def _missing_references(tally, vault: str, referenced: dict[str, tuple[str, timedelta]], listed) -> None:
    """A reference naming no secret of the vault (a typo in the policy, a secret deleted or
    re-created under another name): nothing rotates the secret actually in use, so every run says
    so until the policy is corrected, as for a key (``_sweep_key``). The list is the vault's whole
    one (Key Vault lists no deleted secret), whichever secret an earlier run stopped at."""
    present = {str(props.name).lower() for props in listed}
    for name_lower, (name, _lead) in sorted(referenced.items()):
        if name_lower not in present:
            tally.error(f"secret {vault}/{name}: a secrets policy references it, the vault has no such secret")
            emit(log, logging.ERROR, "guardrail_sweep_secret_not_found", vault=vault, object=name)


def _sweep_keys(sw, tally, keys: dict[tuple[str, str], tuple[str, timedelta]], sweep_id: str, dry_run: bool,
                deadline: float, *,
                place: _Place | None = None) -> None:
    """Each referenced key: one read (its properties carry no secret), none begun past ``deadline``;
    ``place`` as for a vault."""
    store = sw.service.secrets.store
    now = sw._wall()
    place = place or _Place("keys")
    rows = [{"id": f"{vault}/{name}", "vault": vault, "name": name, "lead": lead}
            for (vault, _), (name, lead) in sorted(keys.items())]
    for row in place.items(rows):
        if sw._clock() > deadline:
            tally.truncate()
            return
        vault, name = row["vault"], row["name"]
        _sweep_key(sw, tally, store, vault, name, now, sweep_id, dry_run, deadline, lead=row["lead"])
        place.handled(row["id"])


def _sweep_key(sw, tally, store, vault: str, name: str, now: datetime, sweep_id: str, dry_run: bool,
               deadline: float, *, lead: timedelta = NEAR_EXPIRY) -> None:
    """One referenced key: read, then rotated when near its expiry (a disabled key is left alone)."""
    try:
        k = store.get_key(vault, name, deadline=deadline)
    except ResourceNotFound:
        # a reference naming no key (a typo, a key re-created under another name): nothing looks at
        # the key actually in use, so every run says so until the policy is corrected
        tally.error(f"key {vault}/{name}: a secrets policy references it, the vault has no such key")
        emit(log, logging.ERROR, "guardrail_sweep_key_not_found", vault=vault, object=name)
        return
    except ArmError as exc:
        if exc.reason != SECRET_DISABLED:       # 403 KeyDisabled: a disabled key is not rotated
            # not read, so not known to be due: audited on the path a due key takes
            _unread(sw, tally, vault, name, "Key", "NearExpiry", exc, sweep_id, dry_run)
        return
    if _near(k.expires_on, k.enabled, now, lead):
        _decide(sw, tally, vault, name, "Key", k.expires_on <= now, sweep_id, dry_run, deadline)
    elif k.enabled:
        tally.seen(compliant=1)


def _near(expires_on: datetime | None, enabled: bool, now: datetime, lead: timedelta = NEAR_EXPIRY) -> bool:
    return enabled and expires_on is not None and expires_on - now <= lead


def _breaks_hygiene(expires_on: datetime | None, policies, now: datetime) -> bool:
    """As the ``SecretNewVersionCreated`` path judges a version: the first governing policy that
    requires an expiry or bounds it."""
    for p in policies:
        if expires_on is None and p.require_expiry:
            return True
        if p.max_validity_days and expires_on is not None and expires_on > now + timedelta(days=p.max_validity_days) + _SLACK:
            return True
    return False


def _decide(sw, tally, vault: str, name: str, object_type: str, expired: bool | None, sweep_id: str,
            dry_run: bool, deadline: float, *, listed: SecretVersion | None = None) -> None:
    """``expired`` True/False: the ``…Expired`` / ``…NearExpiry`` path on the version current now;
    None: the hygiene (``SecretNewVersionCreated``) path on the current version. A secret's current
    version id comes from its versions' properties (never a GET of the value: for a certificate's
    backing secret that is its PFX, private key included; and a disabled version has none), told
    apart from one of the same second by ``listed`` (its properties in the vault's list,
    ``_current_versions``). When several remain, a rotation names none (the guardrail reads the
    current version under its lease: a version rotated meanwhile is not yet due) and the hygiene
    judges each (an expiry is set per version, and setting one twice is harmless)."""
    tally.seen()
    store = sw.service.secrets.store
    kind = "NewVersionCreated" if expired is None else "Expired" if expired else "NearExpiry"
    try:
        versions: list[str | None] = (
            _current_versions(store.list_versions(vault, name, deadline=deadline), listed) if object_type == "Secret"
            else [store.get_key(vault, name, deadline=deadline).version])
    except ResourceNotFound:
        versions = []           # gone since it was listed: the guardrail's own read says so (``secret_not_found``)
    except ArmError as exc:
        _unread(sw, tally, vault, name, object_type, kind, exc, sweep_id, dry_run)
        return
    if len(versions) != 1 and (expired is not None or not versions):
        versions = [None]       # the guardrail reads the current version itself (a rotation: under its lease)
    for i, version in enumerate(versions):
        if i:
            tally.seen()        # each version of the same second judged is a decision of its own
        if not _reconcile(sw, tally, vault, name, object_type, version, kind, sweep_id, dry_run):
            return


def _reconcile(sw, tally, vault: str, name: str, object_type: str, version: str | None, kind: str,
               sweep_id: str, dry_run: bool) -> bool:
    """One decision of the secret guardrail's, counted; False when the secret is busy or it failed."""
    try:
        gate = None if dry_run else getattr(sw, "_gate", None)     # the run's NoticeGate (sweep_notices)
        row = sw.service.reconcile_secret(vault, name, version, kind=kind, sweep_id=sweep_id, remediate=not dry_run,
                                          object_type=object_type, notice_gate=gate)
    except IdempotencyError:
        # another worker (an event's delivery) holds the secret's rotation lease: it decides on the
        # version it reads under the lease; the next run sees what it left
        emit(log, logging.INFO, "guardrail_sweep_secret_busy", vault=vault, object=name, object_type=object_type)
        tally.decided("duplicate")
        return False
    except ArmError as exc:
        tally.error(f"{object_type.lower()} {vault}/{name}: {exc}")
        return False
    tally.decided(row.verdict)
    return True


def _current_versions(versions: list[SecretVersion], listed: SecretVersion | None) -> list[str]:
    """The ids of the versions that may be the current one, by their properties alone: the newest
    ``created``. Key Vault keeps ``created`` in whole seconds, so versions written in one second tie
    (and its list is sorted by version id, not by time); the tie is broken by the current version's
    attributes as the vault's list showed them (``listed``). None of them matching (written since
    the list): every tied one."""
    tied = newest_versions(versions)
    same = [v for v in tied if listed is not None and _attributes(v) == _attributes(listed)]
    return [v.version for v in same or tied]


def _attributes(v: SecretVersion) -> tuple:
    return v.enabled, v.expires_on, v.not_before, dict(v.tags or {}), v.content_type, v.managed


def _unread(sw, tally, vault: str, name: str, object_type: str, kind: str, exc: ArmError, sweep_id: str,
            dry_run: bool) -> None:
    """The sweep could not read a secret (or key) it was to decide on: an error of the run, an
    ERROR line naming it and its ``failed`` row (``reconcile_secret(unread=…)``), as the event path
    audits the same failed read; the next run reads it again. ``exc`` names the call, never a value."""
    tally.error(f"{object_type.lower()} {vault}/{name}: {exc}")
    emit(log, logging.ERROR, "guardrail_sweep_secret_unread", vault=vault, object=name, object_type=object_type,
         reason=exc.reason)
    sw.service.reconcile_secret(vault, name, None, kind=kind, sweep_id=sweep_id, remediate=not dry_run,
                                object_type=object_type, unread=exc)
