"""Review of 0afa038 (a rotation that changed nothing gives its breaker permit back).

Each test here shows a permit given back although a change WAS made, so the vault's breaker lets
more rotations through than ``max_actions``: with one rotation per window, the next rotation must
be ``circuit_open``.

1. ``refused_outright`` judges a write by the error of its LAST attempt. An attempt whose answer
   was lost (read timeout) may have landed; a later attempt (or the version list ``_landed`` makes
   before resending a PUT, which is another request needing another permission) answered 403 does
   not say the first one did nothing.
2. Scanner exposure reports choose their own ids; two reports with one id about two secrets of a
   vault are two decisions (``exposure_scope``) but were one breaker key: the second rode the
   first's permit (not counted), and the first, refused, released it by that key: the second's
   rotation then counted nothing. (Fixed: the key of an exposure's permit carries its scope.)"""

from __future__ import annotations

import textwrap
import threading
import time

import pytest

from guardrails import settings as S
from guardrails.service import DeliveryFailed
from guardrails.simulate import to_function_event
from guardrails.triggers.resource_events import resource_events
from tests import builders as b
from tests.integration.test_secret_exposure_and_hygiene import _edit_policy, _exposure, _keys
from tests.integration.test_secret_guardrail import (ACCOUNT, POLICY, VAULT, _bundle, _event, _expire,  # noqa: F401
                                                     planted)

pytestmark = pytest.mark.integration

ONE_PER_WINDOW = "breaker: {max_actions: 1, window_seconds: 600}\nsecrets:\n"


def _fast_harness(harness, tmp_path, planted, *, arm_timeout: str = "1"):
    """As ``test_secret_guardrail._harness``, with a short read timeout (a delayed answer is lost)."""
    d = tmp_path / "secrets"
    d.mkdir(exist_ok=True)
    (d / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY.format(mode="enforce")))
    world = {
        "keyvault_private_access": True,
        "secrets": [_bundle("storage-connection", planted["conn"]), _bundle("api-token", planted["api"]),
                    _bundle("databricks-token", planted["dbx"])],
        "keys": [{"key": {"kid": f"https://{VAULT}.vault.azure.net/keys/{n}/{c * 32}", "kty": "RSA",
                          "key_ops": ["wrapKey", "unwrapKey"]},
                  "attributes": {"enabled": True, "exp": int(time.time()) + 10 * 86400}}
                 for n, c in (("cmk-storage", "a"), ("cmk-two", "b"))],
        "storageKeys": {ACCOUNT: [{"keyName": "key1", "value": planted["key1"], "creationTime": "2026-01-01T00:00:00Z"},
                                  {"keyName": "key2", "value": planted["key2"], "creationTime": "2026-01-01T00:00:00Z"}]},
    }
    resources = [b.storage(pna="Disabled", blob=False), b.key_vault(pna="Disabled", rbac=True)]
    h = harness(resources, world=world, extra_metadata=[d], env={S.ARM_TIMEOUT_SECONDS: arm_timeout})
    _edit_policy(h, tmp_path, "secrets:\n", ONE_PER_WINDOW)
    return h


def _deliver_quietly(raw: dict) -> None:
    try:
        resource_events(to_function_event(raw))
    except DeliveryFailed:            # a failed row is audited; Event Grid would redeliver
        pass


def _until(cond, seconds: float = 6.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_a_lost_put_then_a_refused_version_list_does_not_give_the_permit_back(harness, tmp_path, planted):
    h = _fast_harness(harness, tmp_path, planted)
    # the PUT lands after 1.5 s; the client gave up after 1 s (its answer is lost) ...
    h.emu.add_fault(method="PUT", path_regex=f"/vaults/{VAULT}/secrets/api-token$", delay_ms=1500, times=1)
    # ... and the version list ``_landed`` makes before resending is refused (no list permission)
    h.emu.add_fault(method="GET", path_regex=f"/vaults/{VAULT}/secrets/api-token/versions", status=403, times=1)
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert row.verdict == "failed", (row.reason, row.message)
    assert _until(lambda: len(h.emu.secret_versions(VAULT, "api-token")) == 2)      # the rotation was made
    # it spent the window's one rotation
    nxt = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert (nxt.verdict, nxt.reason) == ("dry_run", "circuit_open"), (nxt.verdict, nxt.reason, nxt.message)
    assert "before any change" not in row.violations[0].message, row.violations[0].message


def test_a_lost_rotate_key_then_a_403_retry_does_not_give_the_permit_back(harness, tmp_path, planted):
    h = _fast_harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "keys:\n",
                 f"keys:\n  - {{vault: {VAULT}, name: cmk-two, owner: secops@contoso.com, rotate: true}}\n")
    h.emu.add_fault(method="POST", path_regex="/keys/cmk-storage/rotate", delay_ms=1500, times=1)   # lands, lost
    h.emu.add_fault(method="POST", path_regex="/keys/cmk-storage/rotate", status=403, times=1)      # the retry
    row = h.deliver(_event(h, "KeyNearExpiry", "cmk-storage"))
    assert row.verdict == "failed", (row.reason, row.message)
    assert _until(lambda: len(h.emu.key_versions(VAULT, "cmk-storage")) == 2)      # a new key version exists
    nxt = h.deliver(_event(h, "KeyNearExpiry", "cmk-two"))
    assert (nxt.verdict, nxt.reason) == ("dry_run", "circuit_open"), (nxt.verdict, nxt.reason, nxt.message)


def test_a_lost_regenerate_key_then_a_403_retry_does_not_give_the_permit_back(harness, tmp_path, planted):
    h = _fast_harness(harness, tmp_path, planted)
    h.emu.add_fault(method="POST", path_regex="regenerateKey", delay_ms=1500, times=1)   # key2 regenerated, lost
    h.emu.add_fault(method="POST", path_regex="regenerateKey", status=403, times=1)
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert row.verdict == "failed", (row.reason, row.message)
    assert _until(lambda: _keys(h)["key2"] != planted["key2"])                          # a change was made
    nxt = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (nxt.verdict, nxt.reason) == ("dry_run", "circuit_open"), (nxt.verdict, nxt.reason, nxt.message)
    assert "before any change" not in row.violations[0].message, row.violations[0].message


def test_a_refused_exposure_does_not_release_the_permit_another_secret_rotated_on(harness, tmp_path, planted):
    """Two scanner reports, one id, two secrets of the vault (two workers: no shared lock stripe).
    Each takes its own permit (two per window here); the refused one gives back its own only."""
    h = _fast_harness(harness, tmp_path, planted, arm_timeout="5")
    _edit_policy(h, tmp_path, ONE_PER_WINDOW, ONE_PER_WINDOW.replace("max_actions: 1", "max_actions: 2"))
    locks: dict[str, threading.RLock] = {}
    h.service._resource_lock = lambda rid: locks.setdefault(rid.lower(), threading.RLock())   # two instances
    # report A (storage-connection) takes a permit, then its listKeys is refused after 3 s
    h.emu.add_fault(method="POST", path_regex="listKeys", status=403, delay_ms=3000, times=1)
    a = threading.Thread(target=_deliver_quietly, args=(_exposure("storage-connection", "scan-7"),))
    a.start()
    assert _until(lambda: any("listKeys" in q["path"] for q in h.emu.requests))
    # report B (api-token), same id: its own permit, rotated
    _deliver_quietly(_exposure("api-token", "scan-7"))
    a.join()
    rows = {r.resource_id.rsplit("/", 1)[-1]: r for r in h.recorder.rows if r.event_id == "scan-7"}
    assert rows["api-token"].verdict == "remediated", rows["api-token"].message
    assert rows["storage-connection"].verdict == "failed", rows["storage-connection"].message
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2
    # one rotation was made in the window of two: one more goes through, the one after waits
    nxt = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert nxt.verdict == "remediated", (nxt.verdict, nxt.reason, nxt.message)
    _expire(h, "api-token")
    last = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (last.verdict, last.reason) == ("dry_run", "circuit_open"), (last.verdict, last.reason, last.message)
