"""Secret guardrail end to end: Key Vault events and exposure reports through the real
azure-keyvault-secrets/-keys clients against the emulator's vault, storage keys over ARM,
decisions in the audit table. Credential-shaped values are generated at run time."""

from __future__ import annotations

import json
import logging
import secrets as rng
import textwrap
import time

import azure.functions as func
import pytest

from guardrails.secrets.values import LIVE_KEY_TAG, MARKER_TAG
from tests import builders as b

pytestmark = pytest.mark.integration

VAULT = "kv-ml-prod"
ACCOUNT = b.storage(pna="Disabled", blob=False)["id"]
POLICY = f"""
id: ml-secrets
version: 1
kind: secrets
description: ML platform secrets and how each is rotated
mode: {{mode}}
selector: {{{{vaults: [{VAULT}]}}}}
hygiene: {{{{require_expiry: true, max_validity_days: 90}}}}
secrets:
  - vault: {VAULT}
    name: storage-connection
    owner: ml-platform@contoso.com
    rotation: {{{{strategy: storage-account-key, account: {ACCOUNT}, format: connection-string}}}}
  - vault: {VAULT}
    name: api-token
    owner: ml-platform@contoso.com
    rotation: {{{{strategy: random, length: 48, alphabet: urlsafe}}}}
  - vault: {VAULT}
    name: databricks-token
    owner: data-eng@contoso.com
    rotation: {{{{strategy: notify-only}}}}
keys:
  - {{{{vault: {VAULT}, name: cmk-storage, owner: secops@contoso.com, rotate: true}}}}
"""


def _val(n=40) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def _bundle(name: str, value: str, *, version: str | None = None, exp_days: float | None = 20, tags=None,
            vault: str = VAULT) -> dict:
    version = version or rng.token_hex(16)
    now = int(time.time())
    attrs = {"enabled": True, "created": now - 86400, "updated": now - 86400, "recoveryLevel": "Recoverable+Purgeable"}
    if exp_days is not None:
        attrs["exp"] = now + int(exp_days * 86400)
    return {"value": value, "id": f"https://{vault}.vault.azure.net/secrets/{name}/{version}", "attributes": attrs,
            "tags": tags or {}}


@pytest.fixture
def planted():
    """Known secret values: every test scans logs and audit rows for them."""
    key1, key2 = _val(86) + "==", _val(86) + "=="
    return {"key1": key1, "key2": key2, "api": _val(), "dbx": "dapi" + rng.token_hex(16),
            "conn": f"DefaultEndpointsProtocol=https;AccountName=stmlprod;AccountKey={key1};EndpointSuffix=core.windows.net"}


def _harness(harness, tmp_path, planted, *, mode="enforce", extra_secrets=()):
    d = tmp_path / "secrets"
    d.mkdir(exist_ok=True)
    (d / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY.format(mode=mode)))
    world = {
        "keyvault_private_access": True,     # the vault is private: the guardrail reaches it through its endpoint
        "secrets": [_bundle("storage-connection", planted["conn"]), _bundle("api-token", planted["api"]),
                    _bundle("databricks-token", planted["dbx"]), *extra_secrets],
        "keys": [{"key": {"kid": f"https://{VAULT}.vault.azure.net/keys/cmk-storage/{'a' * 32}", "kty": "RSA",
                          "key_ops": ["wrapKey", "unwrapKey"]},
                  "attributes": {"enabled": True, "exp": int(time.time()) + 10 * 86400}}],
        "storageKeys": {ACCOUNT: [{"keyName": "key1", "value": planted["key1"], "creationTime": "2026-01-01T00:00:00Z"},
                                  {"keyName": "key2", "value": planted["key2"], "creationTime": "2026-01-01T00:00:00Z"}]},
    }
    resources = [b.storage(pna="Disabled", blob=False), b.key_vault(pna="Disabled", rbac=True)]
    return harness(resources, world=world, extra_metadata=[d])


def _event(h, event_type, name, version=None):
    return h.emu.keyvault_event(f"Microsoft.KeyVault.{event_type}", VAULT, name, version)


def _expire(h, name: str, days: float = -1 / 24) -> str:
    """Move the current version of ``name`` to expire ``days`` from now (past by default, so a
    ``SecretExpired`` event for it is due); returns that version."""
    from datetime import datetime, timedelta, timezone
    version = h.emu.secret_versions(VAULT, name)[-1]["id"].rsplit("/", 1)[-1]
    h.service.secrets.store.update_version(VAULT, name, version, deadline=time.monotonic() + 10,
                                           expires_on=datetime.now(timezone.utc) + timedelta(days=days))
    return version


def _no_leak(h, planted, caplog, *extra_texts):
    texts = [r.getMessage() for r in caplog.records] + [json.dumps(r.to_dict(), default=str) for r in h.recorder.rows]
    texts += [json.dumps(r.to_dict(), default=str) for r in h.stored_rows()]
    texts += list(extra_texts)
    for name, value in planted.items():
        assert all(value not in t for t in texts), f"{name} leaked"
    for v in h.emu.secret_versions(VAULT, "storage-connection") + h.emu.secret_versions(VAULT, "api-token"):
        assert all(v["value"] not in t for t in texts), "a rotated value leaked"


def test_near_expiry_rotates_with_the_two_key_pattern(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted)
    current = h.emu.secret_versions(VAULT, "storage-connection")[-1]
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection", current["id"].rsplit("/", 1)[-1]))
    assert row.verdict == "remediated"
    versions = h.emu.secret_versions(VAULT, "storage-connection")
    assert len(versions) == 2
    new = versions[-1]
    keys = {k["keyName"]: k["value"] for k in h.emu.storage_keys(ACCOUNT)}
    assert keys["key1"] == planted["key1"]                     # the live key was not touched
    assert keys["key2"] != planted["key2"]                     # the other one was regenerated …
    assert f"AccountKey={keys['key2']};" in new["value"]       # … and stored as the new version
    assert new["tags"][LIVE_KEY_TAG] == "key2" and new["tags"][MARKER_TAG] == "true"
    assert new["attributes"].get("exp")                        # the new version expires per policy
    assert versions[0]["attributes"]["enabled"] is True        # plain expiry: the old one keeps working
    _no_leak(h, planted, caplog)


def test_near_expiry_rotates_a_random_secret_and_notify_only_is_reported(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted)
    row = h.deliver(_event(h, "SecretNearExpiry", "api-token"))
    assert row.verdict == "remediated"
    new = h.emu.secret_versions(VAULT, "api-token")[-1]["value"]
    assert new != planted["api"] and len(new) == 48
    row = h.deliver(_event(h, "SecretExpired", "databricks-token"))
    assert row.verdict == "violation" and row.notify
    assert len(h.emu.secret_versions(VAULT, "databricks-token")) == 1
    _no_leak(h, planted, caplog)


def test_duplicate_near_expiry_makes_one_version(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    ev = _event(h, "SecretNearExpiry", "api-token")
    assert [h.deliver(ev).verdict, h.deliver(ev).verdict] == ["remediated", "duplicate"]
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2


def test_near_expiry_of_a_version_already_rotated_is_compliant_without_a_write(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    old = h.emu.secret_versions(VAULT, "api-token")[-1]["id"].rsplit("/", 1)[-1]
    h.deliver(_event(h, "SecretNearExpiry", "api-token", old))
    row = h.deliver(_event(h, "SecretNearExpiry", "api-token", old))     # a second warning for the old version
    assert row.verdict == "compliant"
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2


def test_the_guardrails_own_new_version_is_ignored(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    h.deliver(_event(h, "SecretNearExpiry", "api-token"))
    emitted = [e for e in h.emu.drain_events() if e["eventType"].endswith("SecretNewVersionCreated")]
    assert emitted
    rows = [h.deliver(e) for e in emitted]
    assert [(r.verdict, r.reason) for r in rows] == [("ignored", "own_write")]


def test_a_new_version_without_expiry_gets_one(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    bundle = _bundle("api-token", _val(), exp_days=None)
    h.emu.put_secret(bundle)
    version = bundle["id"].rsplit("/", 1)[-1]
    row = h.deliver(_event(h, "SecretNewVersionCreated", "api-token", version))
    assert row.verdict == "remediated" and row.violations[0].rule == "expiry-required"
    exp = h.emu.get_secret(VAULT, "api-token", version)["attributes"]["exp"]
    assert abs(exp - (time.time() + 90 * 86400)) < 3600


def test_exposure_reported_over_http_rotates_and_disables_the_exposed_version(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.DEBUG)
    from guardrails.triggers.secrets_http import secrets_exposed
    h = _harness(harness, tmp_path, planted)
    exposed = h.emu.secret_versions(VAULT, "api-token")[-1]["id"].rsplit("/", 1)[-1]
    req = func.HttpRequest("POST", "/api/secrets/exposed", body=json.dumps(
        {"vault": VAULT, "name": "api-token", "version": exposed, "source": "github-secret-scanning"}).encode())
    resp = secrets_exposed(req)
    body = resp.get_body().decode()
    assert resp.status_code == 200, body
    assert json.loads(body)["verdict"] == "remediated"
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert len(versions) == 2
    assert versions[0]["attributes"]["enabled"] is False and versions[1]["attributes"]["enabled"] is True
    _no_leak(h, planted, caplog, body)


def test_exposure_event_from_the_custom_topic_is_handled_the_same(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    event = {"id": "exp-1", "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/leaks",
             "subject": "storage-connection", "eventType": "Guardrails.SecretExposed", "eventTime": "2026-11-24T10:00:00Z",
             "dataVersion": "1", "data": {"VaultName": VAULT, "ObjectName": "storage-connection", "Source": "incident-42"}}
    row = h.deliver(event)
    assert row.verdict == "remediated"
    versions = h.emu.secret_versions(VAULT, "storage-connection")
    assert [v["attributes"]["enabled"] for v in versions] == [False, True]


def test_unknown_secret_gets_a_clear_404_and_is_audited(harness, tmp_path, planted):
    from guardrails.triggers.secrets_http import secrets_exposed
    h = _harness(harness, tmp_path, planted)
    req = func.HttpRequest("POST", "/api/secrets/exposed", body=json.dumps(
        {"vault": VAULT, "name": "no-such-secret", "source": "scanner"}).encode())
    resp = secrets_exposed(req)
    assert resp.status_code == 404
    assert json.loads(resp.get_body())["error"]["reason"] == "unknown_secret"
    assert h.recorder.rows[-1].reason == "secret_not_found"


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "malformed_json"), (b"[]", "wrong_type"), (b'{"vault": "kv-ml-prod"}', "missing_field"),
    (b'{"vault": "kv-ml-prod", "name": "a", "value": "x"}', "unknown_field"),
    (b'{"vault": "../x", "name": "a"}', "invalid_value"),
])
def test_bad_exposure_reports_are_400_with_a_reason(harness, tmp_path, planted, body, reason):
    from guardrails.triggers.secrets_http import secrets_exposed
    _harness(harness, tmp_path, planted)
    resp = secrets_exposed(func.HttpRequest("POST", "/api/secrets/exposed", body=body))
    assert resp.status_code == 400 and json.loads(resp.get_body())["error"]["reason"] == reason


def test_key_near_expiry_rotates_the_key(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    row = h.deliver(_event(h, "KeyNearExpiry", "cmk-storage"))
    assert row.verdict == "remediated"
    assert len(h.emu.key_versions(VAULT, "cmk-storage")) == 2


def test_vault_access_policy_changed_re_reads_the_vault_and_reports_rbac_off(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    vault = h.resource(b.key_vault()["id"])
    h.emu.put({**vault, "properties": {**vault["properties"], "enableRbacAuthorization": False}})
    row = h.deliver(h.emu.keyvault_event("Microsoft.KeyVault.VaultAccessPolicyChanged", VAULT))
    assert row.verdict == "violation" and row.notify
    assert row.resource_id.lower() == b.key_vault()["id"].lower()
    assert h.resource(b.key_vault()["id"])["properties"]["enableRbacAuthorization"] is False   # notify only


def test_key_vault_429_is_retried_and_500_fails(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    h.emu.add_fault(method="PUT", path_regex="/secrets/api-token", status=429, retry_after=0, times=1)
    assert h.deliver(_event(h, "SecretNearExpiry", "api-token")).verdict == "remediated"
    h.emu.add_fault(method="GET", path_regex="/secrets/databricks-token", status=500)
    row = h.deliver(_event(h, "SecretExpired", "databricks-token"))
    assert row.verdict == "failed" and row.reason == "transient"


def test_cloudevents_schema_key_vault_event_is_handled(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    ev = h.emu.keyvault_event("Microsoft.KeyVault.SecretNearExpiry", VAULT, "api-token", schema="cloudevents")
    assert ev.get("specversion") == "1.0"
    assert h.deliver(ev).verdict == "remediated"
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2


def test_vault_moved_off_rbac_is_put_back_when_a_policy_opts_in(harness, tmp_path, planted):
    d = tmp_path / "optin"
    d.mkdir()
    (d / "keyvault-private.yaml").write_text(textwrap.dedent("""
        id: keyvault-private
        version: 2
        description: vaults stay private and on RBAC; this platform opted in to enforce RBAC
        mode: enforce
        selector: {resource_types: [Microsoft.KeyVault/vaults]}
        rules:
          - id: rbac-authorization-enabled
            property: properties.enableRbacAuthorization
            expect: {equals: true}
            action: {type: set-property, value: true}
        """))
    h = _harness(harness, tmp_path, planted)
    from guardrails.sync import metadata_dirs, sync_metadata
    sync_metadata(h.repo, metadata_dirs([tmp_path / "secrets", d]))
    vault = h.resource(b.key_vault()["id"])
    h.emu.put({**vault, "properties": {**vault["properties"], "enableRbacAuthorization": False}})
    row = h.deliver(h.emu.keyvault_event("Microsoft.KeyVault.VaultAccessPolicyChanged", VAULT))
    assert row.verdict == "remediated"
    assert h.resource(b.key_vault()["id"])["properties"]["enableRbacAuthorization"] is True


def test_sweep_rotates_referenced_secrets_whose_expiry_warning_was_lost(harness, tmp_path, planted, caplog):
    """No SecretNearExpiry / KeyNearExpiry / SecretNewVersionCreated event arrives (lost, or
    dead-lettered after Event Grid's 24 h): the sweep lists the vault's secret properties (no
    values), reads the referenced key, rotates those within 30 days of expiry and sets the expiry
    of secrets breaking the hygiene rules, through the same paths; the rest is left alone; the
    next sweep finds nothing to do."""
    from guardrails import bootstrap
    from guardrails import settings as S
    from guardrails.ratelimit import FakeClock

    caplog.set_level(logging.DEBUG)
    far = _bundle("far-token", _val(), exp_days=60)                       # within max_validity_days (90)
    legacy = _bundle("legacy-password", _val(), exp_days=None)            # unreferenced, no expiry
    forever = _bundle("forever-key", _val(), exp_days=365)                # unreferenced, expiry too far out
    h = _harness(harness, tmp_path, planted, extra_secrets=[far, legacy, forever])
    # a fourth reference, far from expiry
    d = tmp_path / "secrets" / "ml-secrets.yaml"
    d.write_text(d.read_text().replace("keys:\n", textwrap.dedent(f"""\
          - vault: {VAULT}
            name: far-token
            owner: ml-platform@contoso.com
            rotation: {{strategy: random, length: 32, alphabet: urlsafe}}
        keys:
        """), 1).replace("version: 1\n", "version: 2\n", 1))     # a changed policy: a new version
    from guardrails.sync import metadata_dirs, sync_metadata
    sync_metadata(h.repo, metadata_dirs([tmp_path / "secrets"]))
    before = {n: h.emu.secret_versions(VAULT, n)[-1]["id"] for n in ("api-token", "storage-connection", "far-token")}

    def sweep():
        return bootstrap.build_sweeper(S.Settings.from_env(h.env), clock=FakeClock(), sleep=lambda s: None).run(
            subscriptions=[b.SUB])

    summary = sweep()
    after = {n: h.emu.secret_versions(VAULT, n)[-1] for n in before}
    assert after["api-token"]["id"] != before["api-token"] and after["storage-connection"]["id"] != before["storage-connection"]
    assert after["far-token"]["id"] == before["far-token"]
    rows = {r.resource_id.rsplit("/", 1)[-1]: r for r in h.stored_rows() if r.correlation_id == summary.sweep_id
            and "vault.azure.net" in r.resource_id}
    assert {n: r.verdict for n, r in rows.items()} == {"api-token": "remediated", "storage-connection": "remediated",
                                                      "databricks-token": "violation", "cmk-storage": "remediated",
                                                      "legacy-password": "remediated", "forever-key": "remediated"}
    # hygiene, as on SecretNewVersionCreated: the expiry set on the current version, no new version
    assert [v.rule for v in rows["legacy-password"].violations] == ["expiry-required"]
    assert [v.rule for v in rows["forever-key"].violations] == ["expiry-too-far"]
    for n in ("legacy-password", "forever-key"):
        versions = h.emu.secret_versions(VAULT, n)
        assert len(versions) == 1 and 89 * 86400 < versions[0]["attributes"]["exp"] - time.time() <= 90 * 86400
    assert len(h.emu.key_versions(VAULT, "cmk-storage")) == 2           # the key (10 days left) rotated too
    assert {r.event_type for r in rows.values()} == {"Guardrails.Sweep"}
    assert [v.rule for v in rows["api-token"].violations] == ["expiring-secret"]
    assert rows["databricks-token"].notify                      # notify-only: the owner rotates by hand
    # the listing carries no values: one list of the vault, then a read of only the three near expiry
    kv = [q for q in h.emu.requests if q["host"] == VAULT.lower() and q["method"] == "GET" and q["status"] == 200]
    assert sum(1 for q in kv if q["path"].rstrip("/").endswith("/secrets")) == 1
    assert not any(q["path"].rstrip("/").endswith("/far-token") for q in kv)
    # the rotated versions expire in 90 days: the next sweep decides nothing but the notify-only one
    second = sweep()
    again = [r for r in h.stored_rows() if r.correlation_id == second.sweep_id and "vault.azure.net" in r.resource_id]
    assert [(r.resource_id.rsplit("/", 1)[-1], r.verdict) for r in again] == [("databricks-token", "violation")]
    _no_leak(h, planted, caplog)


def test_sweep_holds_every_governed_vault_to_a_policy_without_a_vault_selector(harness, tmp_path, planted, caplog):
    """A secrets policy with no vault selector governs every vault. Key Vault cannot be listed
    for "every vault" with data-plane access, so the sweep covers every vault this deployment
    governs (``GUARDRAILS_GOVERNED_VAULT_IDS``: events wired, the identity holds the data-plane
    role there) beside the vaults policies name; a vault outside both is never read."""
    from guardrails import bootstrap
    from guardrails import settings as S
    from guardrails.ratelimit import FakeClock

    caplog.set_level(logging.DEBUG)
    team, other = "kv-team-features", "kv-not-governed"
    h = _harness(harness, tmp_path, planted, extra_secrets=[
        _bundle("team-token", _val(), exp_days=None, vault=team),            # no expiry
        _bundle("team-cert-pass", _val(), exp_days=400, vault=team),         # beyond max_validity_days
        _bundle("team-fine", _val(), exp_days=30, vault=team),
        _bundle("stray-token", _val(), exp_days=None, vault=other)])
    d = tmp_path / "everywhere"
    d.mkdir()
    (d / "hygiene.yaml").write_text(textwrap.dedent("""
        id: every-vault-hygiene
        version: 1
        kind: secrets
        description: every secret in every vault expires within a year
        mode: enforce
        hygiene: {require_expiry: true, max_validity_days: 365}
        """))
    from guardrails.sync import metadata_dirs, sync_metadata
    sync_metadata(h.repo, metadata_dirs([tmp_path / "secrets", d]))
    ids = [f"/subscriptions/{b.SUB}/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/{v}" for v in (VAULT, team)]
    sweeper = bootstrap.build_sweeper(S.Settings.from_env({**h.env, S.GOVERNED_VAULT_IDS: ",".join(ids)}),
                                      clock=FakeClock(), sleep=lambda s: None)
    summary = sweeper.run(subscriptions=[b.SUB])
    rows = {r.resource_id.split("//", 1)[1].split(".", 1)[0] + "/" + r.resource_id.rsplit("/", 1)[-1]: r
            for r in h.stored_rows() if r.correlation_id == summary.sweep_id and "vault.azure.net" in r.resource_id}
    assert rows[f"{team}/team-token"].verdict == "remediated"
    assert [v.rule for v in rows[f"{team}/team-token"].violations] == ["expiry-required"]
    assert [v.rule for v in rows[f"{team}/team-cert-pass"].violations] == ["expiry-too-far"]
    for name in ("team-token", "team-cert-pass"):
        versions = h.emu.secret_versions(team, name)
        assert len(versions) == 1 and 364 * 86400 < versions[0]["attributes"]["exp"] - time.time() <= 365 * 86400
    assert f"{team}/team-fine" not in rows and "exp" in h.emu.secret_versions(team, "team-fine")[0]["attributes"]
    # the vault no policy names and this deployment does not govern: not read, not changed
    assert not [k for k in rows if k.startswith(other)]
    assert "exp" not in h.emu.secret_versions(other, "stray-token")[0]["attributes"]
    assert not [q for q in h.emu.requests if q["host"] == other]
    assert summary.errors == []
    _no_leak(h, planted, caplog)


def test_a_sweep_decision_on_a_version_rotated_meanwhile_changes_nothing(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    old = h.emu.secret_versions(VAULT, "api-token")[-1]["id"].rsplit("/", 1)[-1]
    h.deliver(_event(h, "SecretNearExpiry", "api-token", old))            # the event path rotated it
    current = h.emu.secret_versions(VAULT, "api-token")[-1]["id"]
    row = h.service.reconcile_secret(VAULT, "api-token", old, kind="NearExpiry", sweep_id="sweep-x")
    assert (row.verdict, row.event_type) == ("compliant", "Guardrails.Sweep") and "already rotated" in row.message
    assert h.emu.secret_versions(VAULT, "api-token")[-1]["id"] == current


def test_a_new_version_is_found_on_the_first_pages_of_a_long_version_list(harness, tmp_path, planted):
    """A secret rotated for years has hundreds of versions, 25 to a page: the properties of the
    version an event names are read up to the page that holds it, not the whole list."""
    h = _harness(harness, tmp_path, planted)
    for i in range(60):
        h.emu.put_secret(_bundle("api-token", _val(), version=f"{i + 1:02d}" + rng.token_hex(15)))
    bundle = _bundle("api-token", _val(), version="00" + rng.token_hex(15), exp_days=None)   # listed first
    h.emu.put_secret(bundle)
    h.emu.clear_requests()
    row = h.deliver(_event(h, "SecretNewVersionCreated", "api-token", bundle["id"].rsplit("/", 1)[-1]))
    assert row.verdict == "remediated" and row.violations[0].rule == "expiry-required"
    lists = [q for q in h.emu.requests if q["method"] == "GET" and q["status"] == 200
             and q["path"].rstrip("/").endswith("/versions")]       # (a 401 first: Key Vault's auth challenge)
    assert len(lists) == 1, [(q["status"], q["path"], q["query"]) for q in lists]             # 61 versions: 3 pages before
