"""The secret guardrail where a review found it wanting (2026-11-25), end to end on the emulator's
vault and storage account: what an exposure revokes, that it is answered once, that a short
validity does not rotate forever, that the guardrail's tag exempts nothing, that an audit-mode
policy never silences an enforcing one, and what the exposure endpoint records and refuses."""

from __future__ import annotations

import re

import json
import logging
import textwrap
import time
from datetime import datetime, timedelta, timezone

import azure.functions as func
import pytest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.checks.principal import encode_principal
from guardrails.ratelimit import FakeClock
from guardrails.secrets.values import MARKER_TAG
from guardrails.sync import metadata_dirs, sync_metadata
from tests import builders as b
from tests.integration.test_secret_guardrail import (ACCOUNT, VAULT, _bundle, _event, _harness, _no_leak,  # noqa: F401
                                                     _val, planted)

pytestmark = pytest.mark.integration


def _exposure(name: str, event_id: str = "exp-1", version: str | None = None) -> dict:
    data = {"VaultName": VAULT, "ObjectName": name, "Source": "incident-42"}
    if version:
        data["Version"] = version
    return {"id": event_id, "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/leaks",
            "subject": name, "eventType": "Guardrails.SecretExposed", "eventTime": "2026-11-24T10:00:00Z",
            "dataVersion": "1", "data": data}


def _keys(h) -> dict[str, str]:
    return {k["keyName"]: k["value"] for k in h.emu.storage_keys(ACCOUNT)}


def _valid(value: str, keys: dict[str, str]) -> bool:
    return any(f"AccountKey={k};" in value for k in keys.values())


def _edit_policy(h, tmp_path, old: str, new: str) -> None:
    f = tmp_path / "secrets" / "ml-secrets.yaml"
    text = f.read_text()
    assert old in text
    # a changed policy is synced at a new version (sync refuses other content at the same version)
    text = re.sub(r"^version: (\d+)$", lambda m: f"version: {int(m.group(1)) + 1}", text.replace(old, new),
                  count=1, flags=re.M)
    f.write_text(text)
    sync_metadata(h.repo, metadata_dirs([tmp_path / "secrets"]))
    h.service.policies.invalidate()


def _sweep(h):
    return bootstrap.build_sweeper(S.Settings.from_env(h.env), clock=FakeClock(), sleep=lambda s: None).run(
        subscriptions=[b.SUB])


def _post(body: dict | bytes, headers: dict | None = None) -> tuple[int, dict]:
    from guardrails.triggers.secrets_http import secrets_exposed

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = secrets_exposed(func.HttpRequest("POST", "/api/secrets/exposed", body=raw, headers=headers or {}))
    return resp.status_code, json.loads(resp.get_body())


# -- an exposed storage key is revoked, not left valid ---------------------------------------------
def test_an_exposed_storage_account_key_no_longer_works_anywhere(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted)                # the secret holds key1, which leaked
    row = h.deliver(_exposure("storage-connection"))
    assert row.verdict == "remediated", row.message
    keys = _keys(h)
    assert keys["key1"] != planted["key1"], "the leaked key is still valid at the storage account"
    assert keys["key2"] != planted["key2"]
    versions = h.emu.secret_versions(VAULT, "storage-connection")
    assert [v["attributes"]["enabled"] for v in versions] == [False, True]
    assert _valid(versions[-1]["value"], keys)               # consumers reading the secret get a working key
    assert not _valid(versions[0]["value"], keys)
    _no_leak(h, planted, caplog)


# -- one exposure, one rotation -------------------------------------------------------------------
def test_a_redelivered_exposure_after_a_partial_failure_finishes_without_rotating_again(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    old = h.emu.secret_versions(VAULT, "storage-connection")[-1]["id"].rsplit("/", 1)[-1]
    # disabling the exposed version fails (not the PATCH that clears the new version's revoke tag)
    h.emu.add_fault(method="PATCH", path_regex=f"/secrets/storage-connection/{old}", status=403, times=2)
    event = _exposure("storage-connection", "exp-7")
    first = h.deliver(event)                               # rotated, but disabling the old version failed
    assert first.verdict == "failed"
    stored = h.emu.secret_versions(VAULT, "storage-connection")[-1]["value"]
    second = h.deliver(event)                              # Event Grid redelivers: the disable fails again
    assert second.verdict == "failed"
    third = h.deliver(event)
    assert third.verdict == "remediated", third.message
    assert "already answered" in third.message
    versions = h.emu.secret_versions(VAULT, "storage-connection")
    assert len(versions) == 2, "each redelivery rotated again"
    assert [v["attributes"]["enabled"] for v in versions] == [False, True]
    assert _valid(stored, _keys(h)), "the value handed out by the first attempt was revoked by a later one"
    again = h.deliver({**event, "id": "exp-8"})            # another report of the same (old) exposure
    assert again.verdict == "compliant" and len(h.emu.secret_versions(VAULT, "storage-connection")) == 2


def test_the_same_exposure_reported_twice_over_http_rotates_once(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    exposed = h.emu.secret_versions(VAULT, "api-token")[-1]["id"].rsplit("/", 1)[-1]
    body = {"vault": VAULT, "name": "api-token", "version": exposed, "source": "github-secret-scanning"}
    status, first = _post(body)
    assert status == 200 and first["verdict"] == "remediated"
    status, second = _post(body)                            # a scanner retry, a second scanner
    assert status == 200 and second["verdict"] == "compliant", second
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert [v["attributes"]["enabled"] for v in versions] == [False, True]


def test_an_exposure_the_breaker_stops_is_a_violation_that_notifies(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.INFO)
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "keys:", "breaker: {max_actions: 1, window_seconds: 600}\nkeys:")
    assert h.deliver(_exposure("api-token", "exp-b0")).verdict == "remediated"
    row = h.deliver(_exposure("storage-connection", "exp-b1"))
    assert (row.verdict, row.reason, row.notify) == ("violation", "circuit_open", True)
    assert [v["attributes"]["enabled"] for v in h.emu.secret_versions(VAULT, "storage-connection")] == [True]
    assert any(r.levelno == logging.ERROR and "guardrail_circuit_open" in r.getMessage() for r in caplog.records)


# -- a short validity rotates once per validity, not on every sweep ---------------------------------
def test_a_validity_shorter_than_key_vaults_warning_does_not_rotate_on_every_sweep(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "max_validity_days: 90", "max_validity_days: 20")
    # the seeded versions expire in 20 days: with a 20-day validity, rotation is due at 10 days left
    _sweep(h)
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 1
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1
    current = h.emu.secret_versions(VAULT, "storage-connection")[-1]["id"].rsplit("/", 1)[-1]
    h.service.secrets.store.update_version(VAULT, "storage-connection", current,       # 5 days left: due
                                           expires_on=datetime.now(timezone.utc) + timedelta(days=5),
                                           deadline=time.monotonic() + 10)
    _sweep(h)
    _sweep(h)
    _sweep(h)
    versions = h.emu.secret_versions(VAULT, "storage-connection")
    assert len(versions) == 2, "the guardrail's own version was rotated again"
    assert _valid(versions[-1]["value"], _keys(h))
    # Key Vault warns for the new version at once (it expires within 30 days): not yet due
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection", versions[-1]["id"].rsplit("/", 1)[-1]))
    assert row.verdict == "compliant" and "not yet due" in row.message
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 2


# -- the guardrail's tag exempts nothing ------------------------------------------------------------
def test_a_version_carrying_the_guardrails_tag_is_still_held_to_the_hygiene_rules(harness, tmp_path, planted):
    forged = [_bundle("shadow-cred", _val(), exp_days=None, tags={MARKER_TAG: "true"}),
              _bundle("shadow-cred-2", _val(), exp_days=None, tags={MARKER_TAG: "true"})]
    h = _harness(harness, tmp_path, planted, extra_secrets=forged)
    version = h.emu.secret_versions(VAULT, "shadow-cred")[-1]["id"].rsplit("/", 1)[-1]
    row = h.deliver(_event(h, "SecretNewVersionCreated", "shadow-cred", version))
    assert row.verdict == "remediated" and row.violations[0].rule == "expiry-required"
    assert h.emu.secret_versions(VAULT, "shadow-cred")[-1]["attributes"].get("exp")
    _sweep(h)                                               # the sweep does not trust the tag either
    assert h.emu.secret_versions(VAULT, "shadow-cred-2")[-1]["attributes"].get("exp")


def test_the_guardrails_own_rotated_version_is_still_ignored_without_a_write(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    h.deliver(_exposure("api-token"))
    own = h.emu.secret_versions(VAULT, "api-token")[-1]
    h.emu.clear_requests()
    row = h.deliver(_event(h, "SecretNewVersionCreated", "api-token", own["id"].rsplit("/", 1)[-1]))
    assert (row.verdict, row.reason) == ("ignored", "own_write")
    assert not [q for q in h.emu.requests if q["method"] != "GET"]


# -- an audit-mode policy never silences an enforcing one -------------------------------------------
def test_an_audit_mode_policy_beside_an_enforcing_one_does_not_stop_it(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted, extra_secrets=[_bundle("legacy-password", _val(), exp_days=None),
                                                            _bundle("legacy-password-2", _val(), exp_days=None)])
    (tmp_path / "secrets" / "a-org-baseline.yaml").write_text(textwrap.dedent("""\
        id: a-org-baseline
        version: 1
        kind: secrets
        description: org-wide baseline, observed only
        mode: audit
        hygiene: {require_expiry: true, max_validity_days: 365}
        """))
    sync_metadata(h.repo, metadata_dirs([tmp_path / "secrets"]))
    h.service.policies.invalidate()
    version = h.emu.secret_versions(VAULT, "legacy-password")[-1]["id"].rsplit("/", 1)[-1]
    row = h.deliver(_event(h, "SecretNewVersionCreated", "legacy-password", version))
    assert row.verdict == "remediated", [(v.policy, v.outcome) for v in row.violations]
    assert row.violations[0].policy.startswith("ml-secrets")
    assert h.emu.secret_versions(VAULT, "legacy-password")[-1]["attributes"].get("exp")
    _sweep(h)
    assert h.emu.secret_versions(VAULT, "legacy-password-2")[-1]["attributes"].get("exp")


# -- the exposure endpoint: who reported it, and input it refuses -----------------------------------
def test_the_verified_caller_and_the_source_are_on_the_exposure_audit_row(harness, tmp_path, planted, monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    h = _harness(harness, tmp_path, planted)
    headers = {"X-MS-CLIENT-PRINCIPAL": encode_principal(b.ALICE, tenant_id=b.TENANT, upn="alice@contoso.com")}
    status, body = _post({"vault": VAULT, "name": "api-token", "source": "gitleaks"}, headers)
    assert status == 200 and body["verdict"] == "remediated"
    stored = [r for r in h.stored_rows() if r.delivery_id == body["decision_id"]]
    assert len(stored) == 1
    assert stored[0].actor.object_id == b.ALICE and stored[0].actor.upn == "alice@contoso.com"
    assert "gitleaks" in stored[0].message


def test_a_principal_header_is_refused_unless_app_service_authentication_vouches_for_it(harness, tmp_path, planted,
                                                                                        monkeypatch):
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    h = _harness(harness, tmp_path, planted)
    headers = {"X-MS-CLIENT-PRINCIPAL": encode_principal(b.ALICE, tenant_id=b.TENANT)}
    status, body = _post({"vault": VAULT, "name": "api-token", "source": "gitleaks"}, headers)
    assert status == 400 and body["error"]["reason"] == "invalid_principal_header"
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1


@pytest.mark.parametrize("body, reason", [
    ({"vault": VAULT, "name": "api-token", "source": "gitleaks\nrepo=ml-pipelines"}, "invalid_value"),
    ({"vault": VAULT, "name": "api-token", "source": "tab\there"}, "invalid_value"),
    ({"vault": VAULT, "name": "api-token", "source": "   "}, "invalid_value"),
    (b"[" * 2000 + b"]" * 2000, "malformed_json"),
])
def test_exposure_reports_the_event_parser_would_refuse_are_400_and_nothing_changes(harness, tmp_path, planted,
                                                                                    body, reason):
    h = _harness(harness, tmp_path, planted)
    status, answer = _post(body)
    assert status == 400 and answer["error"]["reason"] == reason
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1
