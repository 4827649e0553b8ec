"""Review s31 fixes, beyond the reviewer's own tests (``test_review_secrets_s31``), on the
emulator's vault and storage account, Azurite and the real triggers:

* a policy row an earlier release synced with two secrets rotating ONE storage account's keys (in
  one policy, or in two) still loads, and neither secret is rotated: a notifying ``violation``
  (``shared_storage_account``), no key regenerated, for a near-expiry warning and an exposure;
* an exposure of a missing secret notifies on the HTTP path too (which still answers 404), and
  for a secret no policy references;
* a key rotation's noted intent: a worker that died before ``rotate_key`` is followed by one
  rotation, and an event naming no version is not rotated twice after a death.
"""

from __future__ import annotations

import textwrap

import pytest
import yaml

from guardrails.errors import IdempotencyError
from guardrails.policy.loader import load_directory
from guardrails.simulate import to_function_event
from guardrails.sync import metadata_dirs
from guardrails.triggers.keyvault_events import keyvault_events
from tests.integration.test_review_secrets_s31 import SHARED, Killed, _later, _resources, _token_gone, _world
from tests.integration.test_secret_exposure_and_hygiene import _exposure, _keys, _post
from tests.integration.test_secret_guardrail import (ACCOUNT, VAULT, _bundle, _event, _harness,  # noqa: F401
                                                     planted)

pytestmark = pytest.mark.integration

OTHER_VAULT = "kv-ml-apps"


def _legacy_rows(h, *docs) -> None:
    """Rows as an earlier release's ``metadata sync`` wrote them (it did not refuse this shape)."""
    shipped = [(p.source, p.to_document()) for p in load_directory(*metadata_dirs())]
    h.repo.replace_all(shipped + [(f"legacy:{d['id']}", d) for d in docs])
    h.service.policies.invalidate()


def _shared_harness(harness, planted):
    return harness(_resources(), world=_world(planted, [_bundle("storage-connection", planted["conn"]),
                                                        _bundle("storage-key", planted["key1"])]))


def _untouched(h, planted, versions=1) -> None:
    assert _keys(h) == {"key1": planted["key1"], "key2": planted["key2"]}, "a storage key was regenerated"
    for name in ("storage-connection", "storage-key"):
        assert len(h.emu.secret_versions(VAULT, name)) == versions, f"{name} was written"


# -- 1. two secrets of one account in a row an earlier release synced ----------------------------
def test_a_synced_row_with_two_secrets_of_one_account_rotates_neither(harness, planted, caplog):
    h = _shared_harness(harness, planted)
    _legacy_rows(h, yaml.safe_load(textwrap.dedent(SHARED)))
    for name in ("storage-connection", "storage-key"):
        row = h.deliver(_event(h, "SecretNearExpiry", name))
        assert (row.verdict, row.reason, row.notify) == ("violation", "shared_storage_account", True), row.message
        other = "storage-key" if name == "storage-connection" else "storage-connection"
        assert f"{VAULT}/{other} (policy shared-account)" in row.message and ACCOUNT in row.message
        assert row.policies == ["shared-account@1"]
        (stored,) = [r for r in h.stored_rows() if r.event_id == row.event_id]
        assert (stored.verdict, stored.reason, stored.notify) == ("violation", "shared_storage_account", True)
    _untouched(h, planted)
    assert "policy_row_rejected" not in caplog.text          # the row loaded: other decisions go on


def test_an_exposure_of_such_a_secret_is_not_rotated_and_says_so(harness, planted):
    h = _shared_harness(harness, planted)
    _legacy_rows(h, yaml.safe_load(textwrap.dedent(SHARED)))
    row = h.deliver(_exposure("storage-key", "exp-shared-s31"))
    assert (row.verdict, row.reason, row.notify) == ("violation", "shared_storage_account", True), row.message
    assert "NOT rotated: the exposed value still works" in row.message
    status, body = _post({"vault": VAULT, "name": "storage-connection", "source": "scanner"})
    assert status == 422 and body["error"]["reason"] == "shared_storage_account", body
    _untouched(h, planted)


def test_two_synced_policies_sharing_an_account_across_vaults_rotate_neither(harness, planted):
    h = harness(_resources(), world=_world(planted, [_bundle("storage-connection", planted["conn"]),
                                                     _bundle("storage-key", planted["key1"], vault=OTHER_VAULT)]))
    shared = yaml.safe_load(textwrap.dedent(SHARED))
    conn, key = shared["secrets"]
    key = {**key, "vault": OTHER_VAULT}
    a = {**shared, "id": "app-a", "secrets": [conn]}
    b = {**shared, "id": "app-b", "mode": "audit", "selector": {"vaults": [OTHER_VAULT]}, "secrets": [key]}
    _legacy_rows(h, a, b)
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert (row.verdict, row.reason, row.notify) == ("violation", "shared_storage_account", True), row.message
    assert f"{OTHER_VAULT}/storage-key (policy app-b)" in row.message
    assert _keys(h) == {"key1": planted["key1"], "key2": planted["key2"]}
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 1


# -- 2. an exposure of a missing secret ------------------------------------------------------------
def test_an_http_report_of_a_referenced_secret_that_is_gone_answers_404_and_notifies(harness, tmp_path, planted):
    h = _token_gone(harness, tmp_path, planted)
    status, body = _post({"vault": VAULT, "name": "api-token", "source": "scanner"})
    assert status == 404 and body["error"]["reason"] == "unknown_secret", body
    (stored,) = [r for r in h.stored_rows() if r.delivery_id == body["decision_id"]]
    assert (stored.verdict, stored.reason, stored.notify) == ("ignored", "secret_not_found", True)
    assert stored.policies == ["ml-secrets@1"]


def test_an_exposure_event_for_a_secret_nobody_references_that_is_gone_notifies(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    row = h.deliver(_exposure("never-referenced", "exp-gone-unref-s31"))
    assert (row.verdict, row.reason, row.notify) == ("ignored", "secret_not_found", True), row.message
    assert "revoke it by hand" in row.message and row.policies == []


def test_a_warning_for_a_secret_that_is_gone_stays_quiet(harness, tmp_path, planted):
    """Only an exposure notifies: a near-expiry warning of a deleted secret needs nobody."""
    h = _harness(harness, tmp_path, planted)
    row = h.deliver(_event(h, "SecretNearExpiry", "no-such-secret", "b" * 32))
    assert (row.verdict, row.reason, row.notify) == ("ignored", "secret_not_found", False)


# -- 3. a key rotation's noted intent --------------------------------------------------------------
def _kill_then_take_over(h, ev, *, before_rotate: bool):
    store, idem = h.service.secrets.store, h.service.idempotency
    real_rotate, real_release = store.rotate_key, idem.release

    def die(*a, **kw):
        if not before_rotate:
            real_rotate(*a, **kw)
        raise Killed()

    def nothing_released(*a, **kw):
        raise Killed()

    store.rotate_key, idem.release = die, nothing_released
    with pytest.raises(Killed):
        keyvault_events(to_function_event(ev))
    store.rotate_key, idem.release = real_rotate, real_release
    with pytest.raises(IdempotencyError):
        keyvault_events(to_function_event(ev))
    _later(idem, 600)
    return h.deliver(ev)


def test_a_key_worker_that_died_before_rotate_key_is_followed_by_one_rotation(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    v1 = h.emu.key_versions(VAULT, "cmk-storage")[-1]["key"]["kid"].rsplit("/", 1)[-1]
    row = _kill_then_take_over(h, _event(h, "KeyNearExpiry", "cmk-storage", v1), before_rotate=True)
    assert len(h.emu.key_versions(VAULT, "cmk-storage")) == 2
    assert row.verdict == "remediated" and "rotated with Key Vault's rotate_key" in row.violations[0].message


def test_a_key_event_naming_no_version_is_not_rotated_twice_after_a_death(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    row = _kill_then_take_over(h, _event(h, "KeyNearExpiry", "cmk-storage"), before_rotate=False)
    assert len(h.emu.key_versions(VAULT, "cmk-storage")) == 2, "rotated twice"
    assert row.verdict == "remediated", row.message
    assert "stopped before its audit row" in row.violations[0].message
