"""The secret guardrail where the 2026-11 review (s20) found it wanting, end to end on the emulator's
vault and storage account through the real SDK clients: two policies on one vault, the expiry of a
new version, a redelivered exposure within its second, a disabled current version, a partly done
revoke, the key breaker, and a credential in an exposure's ``source``."""

from __future__ import annotations

import json
import logging
import secrets as rng
import textwrap
import time
from datetime import datetime, timezone

import pytest

from guardrails.secrets.credentials import classify
from guardrails.secrets.values import EXPOSURE_TAG, REVOKE_PENDING_TAG
from guardrails.sync import metadata_dirs, sync_metadata
from tests.integration.test_secret_exposure_and_hygiene import _edit_policy, _exposure, _keys, _post, _sweep, _valid
from tests.integration.test_secret_guardrail import (VAULT, _bundle, _event, _expire, _harness, _no_leak,  # noqa: F401
                                                     _val, planted)

pytestmark = pytest.mark.integration


def _baseline(h, tmp_path, pid: str = "every-vault-hygiene", days: int = 20) -> None:
    """A second enforcing policy for every vault, stricter than the team's 90 days (its version
    is its days: a changed policy is synced at a new version)."""
    d = tmp_path / "baseline"
    d.mkdir(exist_ok=True)
    (d / "baseline.yaml").write_text(textwrap.dedent(f"""
        id: {pid}
        version: {days}
        kind: secrets
        description: every secret expires within {days} days
        mode: enforce
        hygiene: {{require_expiry: true, max_validity_days: {days}}}
        """))
    sync_metadata(h.repo, metadata_dirs([tmp_path / "secrets", d]))
    h.service.policies.invalidate()


def _version_id(v: dict) -> str:
    return v["id"].rsplit("/", 1)[-1]


def _disable_current(h, name: str) -> str:
    cur = h.emu.secret_versions(VAULT, name)[-1]
    h.emu.put_secret({**cur, "attributes": {**cur["attributes"], "enabled": False}})
    assert h.emu.secret_versions(VAULT, name)[-1]["attributes"]["enabled"] is False
    return _version_id(cur)


# -- 1. two enforcing policies on one vault: one rotation, not one per sweep --------------------------
def test_two_policies_on_one_vault_rotate_once_not_on_every_sweep(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)          # seeded versions expire in 20 days
    _baseline(h, tmp_path, days=20)                   # lead: 10 days (half the strictest validity)
    counts = []
    for _ in range(4):
        _sweep(h)
        for e in h.emu.drain_events():                # our own versions' SecretNewVersionCreated
            if e["eventType"].endswith("NewVersionCreated"):
                h.deliver(e)
        counts.append(len(h.emu.secret_versions(VAULT, "api-token")))
    assert counts == [1, 1, 1, 1], counts            # 20 days left > the 10-day lead: not due
    current = _version_id(h.emu.secret_versions(VAULT, "api-token")[-1])
    h.service.secrets.store.update_version(VAULT, "api-token", current, deadline=time.monotonic() + 10,
                                           expires_on=datetime.fromtimestamp(time.time() + 5 * 86400, timezone.utc))
    for _ in range(3):
        _sweep(h)
        for e in h.emu.drain_events():
            if e["eventType"].endswith("NewVersionCreated"):
                h.deliver(e)
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert len(versions) == 2, "rotated again on a later sweep"
    days = (versions[-1]["attributes"]["exp"] - time.time()) / 86400
    assert 19.9 < days <= 20.01, days                 # the strictest validity, not the reference's 90


def test_near_expiry_event_uses_the_strictest_validity_for_lead_and_expiry(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    _baseline(h, tmp_path, days=20)
    row = h.deliver(_event(h, "SecretNearExpiry", "api-token"))    # 20 days left, lead 10: not due
    assert row.verdict == "compliant" and "10 days before" in row.message, row.message
    _baseline(h, tmp_path, days=30)                                 # lead 15, still not due
    _expire(h, "api-token")                                         # now expired: due
    assert h.deliver(_event(h, "SecretExpired", "api-token")).verdict == "remediated"
    exp = h.emu.secret_versions(VAULT, "api-token")[-1]["attributes"]["exp"]
    assert abs(exp - (time.time() + 30 * 86400)) < 3600


# -- 2. a new version's expiry: within every enforcing policy, whatever the id order ------------------
@pytest.mark.parametrize("pid", ["aa-baseline", "zz-baseline"])
def test_expiry_set_on_a_new_version_satisfies_every_enforcing_policy(harness, tmp_path, planted, pid):
    h = _harness(harness, tmp_path, planted)
    _baseline(h, tmp_path, pid=pid, days=20)
    bundle = _bundle("api-token", _val(), exp_days=None)
    bundle["attributes"]["created"] = int(time.time())
    h.emu.put_secret(bundle)
    version = _version_id(bundle)
    row = h.deliver(_event(h, "SecretNewVersionCreated", "api-token", version))
    assert row.verdict == "remediated"
    exp = h.emu.get_secret(VAULT, "api-token", version)["attributes"]["exp"]
    assert abs(exp - (time.time() + 20 * 86400)) < 3600
    # and nothing is left for the other policy to cut: the sweep finds the version compliant
    h.emu.drain_events()
    _sweep(h)
    assert h.emu.get_secret(VAULT, "api-token", version)["attributes"]["exp"] == exp
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2


# -- 3. a redelivered exposure within the second of its event time --------------------------------------
def test_a_redelivered_exposure_within_its_second_rotates_once(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    old = _version_id(h.emu.secret_versions(VAULT, "storage-connection")[-1])
    h.emu.add_fault(method="PATCH", path_regex=f"/secrets/storage-connection/{old}", status=403, times=1)
    while datetime.now(timezone.utc).microsecond > 200_000:        # handled within the event's second
        time.sleep(0.01)
    event = {**_exposure("storage-connection", "exp-subsecond"),
             "eventTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    first = h.deliver(event)
    assert first.verdict == "failed"                 # rotated, disabling the exposed version failed
    answer = h.emu.secret_versions(VAULT, "storage-connection")[-1]
    assert answer["tags"][EXPOSURE_TAG] == "exp-subsecond"
    second = h.deliver(event)                        # Event Grid redelivers the same event
    assert second.verdict == "remediated" and "already answered" in second.message, second.message
    versions = h.emu.secret_versions(VAULT, "storage-connection")
    assert len(versions) == 2, "the redelivery rotated again"
    assert [v["attributes"]["enabled"] for v in versions] == [False, True]
    assert _valid(answer["value"], _keys(h)), "the redelivery revoked the value the first attempt handed out"


# -- 4. a disabled version ----------------------------------------------------------------------------
def test_an_exposure_of_a_version_the_responder_already_disabled_is_rotated(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted)
    v = _disable_current(h, "api-token")
    status, body = _post({"vault": VAULT, "name": "api-token", "version": v, "source": "responder"})
    assert status == 200 and body["verdict"] == "remediated", body
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert [v["attributes"]["enabled"] for v in versions] == [False, True]
    assert versions[-1]["value"] != planted["api"]
    _no_leak(h, planted, caplog, json.dumps(body))


def test_an_exposed_disabled_storage_key_secret_revokes_every_key(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    _disable_current(h, "storage-connection")
    row = h.deliver(_exposure("storage-connection", "exp-disabled"))
    assert row.verdict == "remediated", row.message
    keys = _keys(h)
    assert planted["key1"] not in keys.values() and planted["key2"] not in keys.values()
    versions = h.emu.secret_versions(VAULT, "storage-connection")
    assert [v["attributes"]["enabled"] for v in versions] == [False, True]
    assert _valid(versions[-1]["value"], keys)
    assert REVOKE_PENDING_TAG not in versions[-1]["tags"]


def test_near_expiry_of_a_disabled_current_version_is_not_a_failure_retried_forever(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    v = _disable_current(h, "api-token")
    rows = [h.deliver(_event(h, "SecretNearExpiry", "api-token", v)),     # Key Vault's warning
            h.deliver(_event(h, "SecretExpired", "api-token"))]              # and a later one, no version
    assert [(r.verdict, r.reason) for r in rows] == [("ignored", "secret_disabled")] * 2, rows[0].message
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1      # a value taken out of service stays out


def test_a_new_version_created_disabled_without_expiry_gets_one(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    bundle = _bundle("api-token", _val(), exp_days=None)
    bundle["attributes"].update(enabled=False, created=int(time.time()))
    h.emu.put_secret(bundle)
    version = _version_id(bundle)
    row = h.deliver(_event(h, "SecretNewVersionCreated", "api-token", version))
    assert row.verdict == "remediated", (row.reason, row.message)
    assert h.emu.get_secret(VAULT, "api-token", version)["attributes"].get("exp")
    gets = [e for e in h.emu.requests if e["method"] == "GET" and e["path"].endswith(f"/{version}")]
    assert not gets, "the value of a version was read where only its properties were needed"


def test_a_403_that_is_not_a_disabled_secret_is_forbidden_not_transient(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    h.emu.add_fault(method="GET", path_regex="/secrets/api-token", status=403, times=1)
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (row.verdict, row.reason) == ("failed", "forbidden")


# -- 5. a partly done exposure revoke is audited as such, and finished by the redelivery -----------------
def test_a_partly_done_revoke_leaves_a_working_secret_and_is_finished_by_the_redelivery(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)          # the secret holds key1, which leaked
    h.emu.add_fault(method="POST", path_regex="regenerateKey", status=None, times=1)   # the first passes
    h.emu.add_fault(method="POST", path_regex="regenerateKey", status=409, times=1)    # the second refused
    event = _exposure("storage-connection", "exp-partial")
    row = h.deliver(event)
    assert row.verdict == "failed"
    message = row.violations[0].message
    assert "before any change" not in message
    assert "regenerated" in message and "NOT regenerated: key1" in message, message
    current = h.emu.secret_versions(VAULT, "storage-connection")[-1]
    assert _valid(current["value"], _keys(h)), "the secret holds a key that was already revoked"
    assert current["tags"][REVOKE_PENDING_TAG] == "key1"
    assert _keys(h)["key1"] == planted["key1"]        # the leak is still open: the row says so
    again = h.deliver(event)                          # Event Grid redelivers
    assert again.verdict == "remediated", again.message
    assert _keys(h)["key1"] != planted["key1"], "the redelivery left the leaked key valid"
    versions = h.emu.secret_versions(VAULT, "storage-connection")
    assert len(versions) == 2 and _valid(versions[-1]["value"], _keys(h))
    assert [v["attributes"]["enabled"] for v in versions] == [False, True]
    assert REVOKE_PENDING_TAG not in versions[-1]["tags"]


# -- 6. key rotation takes a breaker permit ---------------------------------------------------------------
def three_keys_one_rotation_per_window(h, tmp_path) -> None:
    """Two more keys under rotation beside ``cmk-storage``, and a breaker of one rotation per window."""
    for n in ("cmk-two", "cmk-three"):
        h.emu.put_key({"key": {"kid": f"https://{VAULT}.vault.azure.net/keys/{n}/{'b' * 32}", "kty": "RSA",
                               "key_ops": ["wrapKey", "unwrapKey"]},
                       "attributes": {"enabled": True, "exp": int(time.time()) + 10 * 86400}})
    _edit_policy(h, tmp_path, "keys:\n", "breaker: {max_actions: 1, window_seconds: 600}\nkeys:\n"
                 f"  - {{vault: {VAULT}, name: cmk-two, owner: secops@contoso.com, rotate: true}}\n"
                 f"  - {{vault: {VAULT}, name: cmk-three, owner: secops@contoso.com, rotate: true}}\n")


def test_key_rotation_takes_a_circuit_breaker_permit(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.INFO)
    h = _harness(harness, tmp_path, planted)
    three_keys_one_rotation_per_window(h, tmp_path)
    rows = [h.deliver(_event(h, "KeyNearExpiry", n)) for n in ("cmk-storage", "cmk-two", "cmk-three")]
    assert [(r.verdict, r.reason) for r in rows] == [("remediated", ""), ("dry_run", "circuit_open"),
                                                      ("dry_run", "circuit_open")]
    assert any(r.levelno == logging.ERROR and "guardrail_circuit_open" in r.getMessage() for r in caplog.records)


# -- 7. a credential in an exposure's source is never recorded nor echoed -------------------------------
def test_a_credential_in_the_exposure_source_is_not_echoed(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted)
    leaked = "AccountKey=" + rng.token_urlsafe(40).replace("-", "A").replace("_", "b")
    source = f"trufflehog match {leaked}"
    assert classify(source)
    status, body = _post({"vault": VAULT, "name": "api-token", "source": source})
    assert status == 200 and body["verdict"] == "remediated", body     # the report is still acted on
    assert "source not shown" in body["message"]
    texts = [json.dumps(body)] + [json.dumps(r.to_dict(), default=str) for r in h.stored_rows()]
    texts += [r.getMessage() for r in caplog.records]
    assert not any(leaked in t for t in texts)
    # the same through the custom topic's event
    event = {**_exposure("storage-connection", "exp-src"), "data": {
        "VaultName": VAULT, "ObjectName": "storage-connection", "Source": f"found {leaked[:11]}{'Ab1' * 20}"}}
    row = h.deliver(event)
    assert row.verdict == "remediated" and "source not shown" in row.message
    assert not any(leaked[11:] in json.dumps(r.to_dict(), default=str) for r in h.stored_rows())
    assert not any("Ab1Ab1Ab1" in json.dumps(r.to_dict(), default=str) for r in h.stored_rows())
