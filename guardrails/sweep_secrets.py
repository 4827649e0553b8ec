"""The sweep's secrets and keys referenced by a secrets policy (``Sweeper.run``): rotation must not
hang on the one near-expiry event Key Vault sends."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from .errors import ArmError, ResourceNotFound
from .logs import emit

log = logging.getLogger("guardrails")
NEAR_EXPIRY = timedelta(days=30)       # when Key Vault sends …NearExpiry (not configurable)


def sweep_secrets(sw, tally, compiled, sweep_id: str, dry_run: bool, deadline: float) -> None:
    """Secrets and keys a secrets policy references, whose ``…NearExpiry`` / ``…Expired`` event
    was lost (Event Grid gives up after 24 h; the warning comes once, 30 days ahead): one list of
    each vault's secret properties (no values), one read of each referenced key; one whose
    current version expires within ``NEAR_EXPIRY`` (or has expired) goes through the secret
    guardrail, which rotates it unless it is no longer the current version. Others are counted
    compliant; a secret without expiry is the hygiene check's (on each new version)."""
    secrets = getattr(sw.service, "secrets", None)
    policies = [p for p in getattr(compiled, "secret_policies", ()) if p.mode != "off"]
    if secrets is None or not policies:
        return
    by_vault: dict[str, dict[str, str]] = {}
    keys: dict[tuple[str, str], str] = {}
    for p in policies:
        for ref in p.secrets:
            if p.governs(ref.vault):
                by_vault.setdefault(ref.vault.lower(), {})[ref.name.lower()] = ref.name
        for kref in p.keys:
            if p.governs(kref.vault):
                keys[(kref.vault.lower(), kref.name.lower())] = kref.name
    now = sw._wall()
    for vault, names in sorted(by_vault.items()):
        try:
            listed = {str(v.name).lower(): v for v in secrets.store.list_secrets(vault, deadline=deadline)}
        except ArmError as exc:
            tally.error(f"list secrets of vault {vault}: {exc}")
            emit(log, logging.ERROR, "guardrail_sweep_list_failed", vault=vault, reason=exc.reason)
            continue
        for key, name in sorted(names.items()):
            props = listed.get(key)
            if props is not None:
                expiring(sw, tally, vault, name, "Secret", props.expires_on, props.enabled, now, sweep_id,
                               dry_run, deadline)
    for (vault, _), name in sorted(keys.items()):    # a key's properties carry no secret: read each
        try:
            k = secrets.store.get_key(vault, name, deadline=deadline)
        except ResourceNotFound:
            continue
        except ArmError as exc:
            tally.error(f"key {vault}/{name}: {exc}")
            continue
        expiring(sw, tally, vault, name, "Key", k.expires_on, k.enabled, now, sweep_id, dry_run, deadline)

def expiring(sw, tally, vault: str, name: str, object_type: str, expires_on, enabled: bool,
              now: datetime, sweep_id: str, dry_run: bool, deadline: float) -> None:
    """One referenced secret or key: compliant while its expiry is further than ``NEAR_EXPIRY``
    (absent, disabled or without expiry: nothing a rotation would fix); else decided by the
    secret guardrail on the version current now."""
    if expires_on is None or not enabled:
        return
    if sw._clock() > deadline:
        tally.truncate()
        return
    if expires_on - now > NEAR_EXPIRY:
        tally.seen(compliant=1)
        return
    tally.seen()
    store = sw.service.secrets.store
    try:
        version = (store.get_secret(vault, name, deadline=deadline) if object_type == "Secret"
                   else store.get_key(vault, name, deadline=deadline)).version
        row = sw.service.reconcile_secret(vault, name, version, expired=expires_on <= now, sweep_id=sweep_id,
                                            remediate=not dry_run, object_type=object_type)
    except ArmError as exc:
        tally.error(f"{object_type.lower()} {vault}/{name}: {exc}")
        return
    tally.decided(row.verdict)
