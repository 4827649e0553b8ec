"""Review s24 of the secret guardrail, end to end through the real Key Vault and ARM SDK clients
against the emulator's vault and storage account: a certificate's backing secret is never
written, an exposure only an audit-mode policy governs is not a quiet 2xx, a disabled key is left
disabled, and a connection string keeps its endpoints when its key is rotated."""

from __future__ import annotations

import logging
import secrets as rng

import pytest

from guardrails.local.keyvault_emulator import KeyVaultError
from guardrails.local.keyvault_routes import KeyVaultRoute
from tests.integration.test_secret_exposure_and_hygiene import _edit_policy, _exposure, _keys, _post, _sweep
from tests.integration.test_secret_guardrail import (VAULT, _bundle, _event, _harness, _no_leak,  # noqa: F401
                                                     planted)

pytestmark = pytest.mark.integration

CERT = "tls-web"
KEY = "cmk-storage"
KEY_ID = f"https://{VAULT}.vault.azure.net/keys/{KEY}/{'a' * 32}"
CERT_REFERENCE = f"""  - vault: {VAULT}
    name: {CERT}
    owner: web-platform@contoso.com
    rotation: {{strategy: random, length: 48, alphabet: urlsafe}}
keys:"""


def _certificate_secret(planted: dict, *, exp_days: float) -> dict:
    """A certificate's backing secret as Key Vault answers it: ``managed``, the PFX's content type,
    the certificate's validity (a year, beyond the policy's 90 days)."""
    planted["pfx"] = "MIIK" + rng.token_urlsafe(60)
    bundle = _bundle(CERT, planted["pfx"], exp_days=exp_days)
    bundle.update(managed=True, contentType="application/x-pkcs12",
                  kid=f"https://{VAULT}.vault.azure.net/keys/{CERT}/{bundle['id'].rsplit('/', 1)[-1]}")
    return bundle


def _writes_to(h, name: str) -> list[dict]:
    return [q for q in h.emu.requests if q["method"] in ("PUT", "PATCH") and f"/secrets/{name}" in q["path"]]


def _rows_for(h, name: str):
    return [r for r in h.stored_rows() if r.resource_id.rsplit("/", 1)[-1] == name]


# -- 2. a certificate's backing secret -------------------------------------------------------------
def test_the_gateway_reads_a_certificates_secret_as_managed(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted, extra_secrets=[_certificate_secret(planted, exp_days=365)])
    store = h.service.secrets.store
    assert store.get_secret(VAULT, CERT).managed is True
    assert store.get_properties(VAULT, CERT).managed is True
    assert [s.managed for s in store.list_secrets(VAULT) if s.name == CERT] == [True]
    assert store.get_secret(VAULT, "api-token").managed is False


def test_the_sweeps_hygiene_writes_nothing_to_a_certificates_secret_and_tells_the_owner(harness, tmp_path, planted,
                                                                                         caplog):
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted, extra_secrets=[_certificate_secret(planted, exp_days=365)])
    before = h.emu.secret_versions(VAULT, CERT)
    _sweep(h)                                      # a year's expiry is beyond max_validity_days: 90
    assert h.emu.secret_versions(VAULT, CERT) == before, "the certificate's PFX secret was written"
    assert not _writes_to(h, CERT)
    row, = _rows_for(h, CERT)
    assert (row.verdict, row.reason, row.notify) == ("violation", "certificate_managed", True)
    assert "re-issue the certificate" in row.message
    assert [(v.rule, v.outcome) for v in row.violations] == [("expiry-too-far", "violation")]
    _no_leak(h, planted, caplog)


def test_a_near_expiry_certificate_secret_a_policy_references_is_not_rotated(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted, extra_secrets=[_certificate_secret(planted, exp_days=10)])
    _edit_policy(h, tmp_path, "keys:", CERT_REFERENCE)
    row = h.deliver(_event(h, "SecretNearExpiry", CERT))
    assert (row.verdict, row.reason, row.notify) == ("violation", "certificate_managed", True), row.message
    versions = h.emu.secret_versions(VAULT, CERT)
    assert len(versions) == 1 and versions[0]["value"] == planted["pfx"] and versions[0]["attributes"]["enabled"]
    _sweep(h)                                      # the sweep's rotation path: the same
    assert h.emu.secret_versions(VAULT, CERT) == versions and not _writes_to(h, CERT)


def test_an_exposed_certificate_secret_is_not_overwritten_and_the_answer_is_422(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted, extra_secrets=[_certificate_secret(planted, exp_days=365)])
    _edit_policy(h, tmp_path, "keys:", CERT_REFERENCE)
    status, body = _post({"vault": VAULT, "name": CERT, "source": "gitleaks"})
    assert status == 422 and body["error"]["reason"] == "certificate_managed", body
    assert "re-issue the certificate" in body["error"]["message"]
    versions = h.emu.secret_versions(VAULT, CERT)
    assert len(versions) == 1 and versions[0]["attributes"]["enabled"] is True
    assert not _writes_to(h, CERT)
    row, = [r for r in h.stored_rows() if r.delivery_id == body["decision_id"]]
    assert (row.verdict, row.reason, row.notify) == ("violation", "certificate_managed", True)
    _no_leak(h, planted, caplog, str(body))


# -- 3. an exposure only an audit-mode policy governs ----------------------------------------------
def test_an_exposure_under_an_audit_mode_policy_notifies_and_is_never_a_2xx(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted, mode="audit")
    status, body = _post({"vault": VAULT, "name": "api-token", "source": "github-secret-scanning"})
    assert status == 422 and body["error"]["reason"] == "not_enforced", body
    assert body["decision_id"] and "NOT rotated" in body["error"]["message"]
    row, = [r for r in h.stored_rows() if r.delivery_id == body["decision_id"]]
    assert (row.verdict, row.reason, row.notify) == ("violation", "not_enforced", True)
    versions = h.emu.secret_versions(VAULT, "api-token")      # observe-only: nothing written
    assert len(versions) == 1 and versions[0]["attributes"]["enabled"] is True
    _no_leak(h, planted, caplog, str(body))


def test_an_exposure_event_under_an_audit_mode_policy_is_a_violation_that_notifies(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted, mode="audit")
    row = h.deliver(_exposure("storage-connection", "exp-audit"))
    assert (row.verdict, row.reason, row.notify) == ("violation", "not_enforced", True), row.message
    assert _keys(h) == {"key1": planted["key1"], "key2": planted["key2"]}
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 1


def test_an_exposure_the_breaker_stops_is_not_a_2xx_either(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "keys:", "breaker: {max_actions: 1, window_seconds: 600}\nkeys:")
    status, _ = _post({"vault": VAULT, "name": "api-token", "source": "gitleaks"})
    assert status == 200
    status, body = _post({"vault": VAULT, "name": "storage-connection", "source": "gitleaks"})
    assert status == 422 and body["error"]["reason"] == "circuit_open", body
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 1


def test_an_exposure_of_a_notify_only_secret_is_not_a_2xx(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    status, body = _post({"vault": VAULT, "name": "databricks-token", "source": "gitleaks"})
    assert status == 422 and body["error"]["reason"] == "not_rotated", body
    assert len(h.emu.secret_versions(VAULT, "databricks-token")) == 1
    assert body["verdict"] == "violation" and body["actions"] == [{"rule": "exposed-secret", "outcome": "violation"}]


# -- 4. a disabled key -----------------------------------------------------------------------------
def _disable_key(h) -> None:
    bundle = h.emu.get_key(VAULT, KEY)
    h.emu.put_key({**bundle, "attributes": {**bundle["attributes"], "enabled": False}})


def test_a_readable_disabled_key_is_ignored_and_not_rotated_back_to_life(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    _disable_key(h)
    row = h.deliver(_event(h, "KeyNearExpiry", KEY))
    assert (row.verdict, row.reason) == ("ignored", "secret_disabled"), row.message
    versions = h.emu.key_versions(VAULT, KEY)
    assert len(versions) == 1 and versions[0]["attributes"]["enabled"] is False
    assert not [q for q in h.emu.requests if q["method"] == "POST" and "/rotate" in q["path"]]


@pytest.fixture
def key_vault_refuses_disabled_keys(monkeypatch):
    """Key Vault answers a GET of a disabled key 403 ``KeyDisabled`` (as it answers a disabled
    secret ``SecretDisabled``); the emulator serves it: this makes it refuse as Key Vault does."""
    original = KeyVaultRoute._keys

    def keys(self, emu, req, vault, rest):
        if req.method == "GET" and len(rest) == 1:
            obj = emu.vaults.find("keys", vault, rest[0])
            if obj is not None and (obj.versions[-1].get("attributes") or {}).get("enabled") is False:
                raise KeyVaultError(403, "Forbidden", "Operation get is not allowed on a disabled key.", "KeyDisabled")
        return original(self, emu, req, vault, rest)

    monkeypatch.setattr(KeyVaultRoute, "_keys", keys)


def test_a_key_vault_403_key_disabled_is_ignored_not_retried_for_a_day(harness, tmp_path, planted,
                                                                       key_vault_refuses_disabled_keys):
    h = _harness(harness, tmp_path, planted)
    _disable_key(h)
    event = _event(h, "KeyExpired", KEY)
    row = h.deliver(event)                          # a ``failed`` row would be redelivered for 24 h
    assert (row.verdict, row.reason) == ("ignored", "secret_disabled"), row.message
    assert h.deliver(event).verdict == "duplicate"  # completed: a redelivery does nothing
    assert len(h.emu.key_versions(VAULT, KEY)) == 1
    assert _sweep(h).errors == []                   # nor is it a sweep error on every run
    assert len(h.emu.key_versions(VAULT, KEY)) == 1


# -- 5. a connection string keeps what it says ------------------------------------------------------
@pytest.mark.parametrize("tail", [
    "EndpointSuffix=core.chinacloudapi.cn",
    "BlobEndpoint=https://stmlprod.blob.contoso-edge.net/;QueueEndpoint=https://stmlprod.queue.contoso-edge.net/",
])
def test_rotating_a_connection_string_replaces_only_its_account_key(harness, tmp_path, planted, caplog, tail):
    caplog.set_level(logging.DEBUG)
    planted["conn"] = f"DefaultEndpointsProtocol=https;AccountName=stmlprod;AccountKey={planted['key1']};{tail}"
    h = _harness(harness, tmp_path, planted)
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert row.verdict == "remediated", row.message
    fresh = _keys(h)["key2"]
    assert fresh != planted["key2"]                 # the key not in use was regenerated
    new = h.emu.secret_versions(VAULT, "storage-connection")[-1]["value"]
    assert new == planted["conn"].replace(planted["key1"], fresh)
    _no_leak(h, planted, caplog)


def test_an_exposed_connection_string_keeps_its_sovereign_cloud_suffix(harness, tmp_path, planted):
    planted["conn"] = (f"DefaultEndpointsProtocol=https;AccountName=stmlprod;AccountKey={planted['key1']};"
                       "EndpointSuffix=core.usgovcloudapi.net")
    h = _harness(harness, tmp_path, planted)
    assert h.deliver(_exposure("storage-connection", "exp-gov")).verdict == "remediated"
    keys = _keys(h)
    new = h.emu.secret_versions(VAULT, "storage-connection")[-1]["value"]
    assert new == planted["conn"].replace(planted["key1"], keys["key2"])


def test_a_connection_string_with_no_readable_value_is_built_fresh(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    current = h.emu.secret_versions(VAULT, "storage-connection")[-1]
    h.emu.put_secret({**current, "attributes": {**current["attributes"], "enabled": False}})
    assert h.deliver(_exposure("storage-connection", "exp-off")).verdict == "remediated"
    new = h.emu.secret_versions(VAULT, "storage-connection")[-1]["value"]
    live = _keys(h)["key2"]
    assert new == (f"DefaultEndpointsProtocol=https;AccountName=stmlprod;AccountKey={live};"
                   "EndpointSuffix=core.windows.net")
