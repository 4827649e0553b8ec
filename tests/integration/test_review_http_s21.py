"""Review of the HTTP on-demand checks and the exposure endpoint (s21), end to end: the real trigger
functions with real ``azure.functions.HttpRequest`` objects, policies synced to Azurite, Key Vault
and ARM on the HTTPS emulator through the real SDK clients, and the audit rows read back from
Table Storage. Assertions are on the answers, the rows stored and the state the emulator holds."""

from __future__ import annotations

import json
import logging

import azure.functions as func
import pytest
import yaml

from guardrails.checks.principal import encode_principal
from tests import builders as b
from tests.functional.test_http_checks import ACCESS, ORCHESTRATOR, SEED_JOB, http_request
from tests.integration.test_secret_guardrail import VAULT, _bundle, _harness, _no_leak, _val, planted  # noqa: F401

pytestmark = pytest.mark.integration

TOKEN = "dapi" + "0123456789abcdef" * 2                        # a Databricks PAT's shape (classify knows it)
# a GitHub fine-grained PAT's shape (``classify`` knows it since the review's second pass)
PAT = ("github_pat_11ABCDEFG0" + "aB3dE5fG7hJ9kL1mN3pQ5r" + "_"
       + "S7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5xY7zA9bC1dE3fG5hJ7k")
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"                       # 20 characters: a legal vault name


def _post(body: dict | bytes, headers: dict | None = None) -> tuple[int, dict, str]:
    from guardrails.triggers.secrets_http import secrets_exposed

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = secrets_exposed(func.HttpRequest("POST", "/api/secrets/exposed", body=raw, headers=headers or {}))
    text = resp.get_body().decode()
    return resp.status_code, json.loads(text), text


def _stored(h, decision_id: str):
    rows = [r for r in h.stored_rows() if r.delivery_id == decision_id]
    assert len(rows) == 1, f"expected one stored row for {decision_id}, found {len(rows)}"
    return rows[0]


def _versions(h, name: str = "api-token") -> int:
    return len(h.emu.secret_versions(VAULT, name))


def _texts(h, caplog, *extra: str) -> list[str]:
    return ([r.getMessage() for r in caplog.records] + [json.dumps(r.to_dict(), default=str) for r in h.recorder.rows]
            + [json.dumps(r.to_dict(), default=str) for r in h.stored_rows()] + list(extra))


# ---------------------------------------------------------------- D1: credentials sent as names
@pytest.mark.parametrize("body, field, value", [
    ({"vault": VAULT, "name": TOKEN, "source": "scanner"}, "'name'", TOKEN),
    ({"vault": AWS_KEY, "name": "api-token", "source": "scanner"}, "'vault'", AWS_KEY),
    ({"vault": VAULT, "name": "api-token", "version": TOKEN, "source": "scanner"}, "'version'", TOKEN),
    ({"vault": VAULT, "name": "api-token", "source": "scanner", TOKEN: 1}, "field's name", TOKEN),
    ({"vault": VAULT, "name": "api-token", "source": "scanner", PAT: "x"}, "field's name", PAT),
], ids=["name", "vault", "version", "unknown-key", "unknown-key-fine-grained-pat"])
def test_a_credential_sent_as_a_name_is_refused_by_field_never_echoed_nor_stored(harness, tmp_path, planted,
                                                                                caplog, body, field, value):
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted)
    status, answer, text = _post(body)
    assert status == 400 and answer["error"]["reason"] == "invalid_value", text
    assert field in answer["error"]["message"]
    # the row of the refusal: audited ``invalid``, and neither it nor the answer nor a log line holds the value
    row = _stored(h, answer["error"]["correlation_id"])
    assert (row.verdict, row.reason, row.event_type) == ("invalid", "invalid_value", "Guardrails.SecretExposed")
    assert all(value[:16] not in t for t in _texts(h, caplog, text)), "the credential was echoed or stored"
    assert _versions(h) == 1                                       # nothing rotated on a refused report
    _no_leak(h, planted, caplog, text)


# ---------------------------------------------------------------- D2: the check API, same rule
@pytest.fixture
def app_service_authentication(monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")


def _call(fn, route, body, **kw):
    resp = fn(http_request(route, body, **kw))
    text = resp.get_body().decode()
    return resp.status_code, json.loads(text), text


@pytest.mark.parametrize("route, body, code, field", [
    ("checks/job", {**SEED_JOB, "permissions": [PAT]}, "invalid_value", "permissions.0"),
    ("checks/job", {**SEED_JOB, PAT: 1}, "unknown_field", "<key not shown>"),
    ("checks/resource", {"resource_id": "/subscriptions/" + PAT}, "invalid_value", "resource_id"),
], ids=["permission", "unknown-key", "resource-id"])
def test_a_token_classify_misses_is_neither_answered_nor_audited_by_the_check_api(
        harness, app_service_authentication, caplog, route, body, code, field):
    from guardrails.triggers.http_checks import check_job, check_resource

    caplog.set_level(logging.DEBUG)
    h = harness([b.storage()], world={"directory": {"groups": {b.DS_GROUP: [b.ALICE]}}})
    fn = check_job if route == "checks/job" else check_resource
    status, answer, text = _call(fn, route, body)
    assert status == 400 and answer["error"]["code"] == code, text
    assert field in [d["field"] for d in answer["error"]["details"]]
    row = _stored(h, answer["error"]["correlation_id"])
    assert (row.verdict, row.reason) == ("invalid", code)
    assert all(PAT[11:27] not in t for t in _texts(h, caplog, text)), "the token was echoed or stored"
    assert h.arm_requests() == []


# ---------------------------------------------------------------- D3: audit-mode notify rules
TLS_TRIAL = {"id": "storage-tls-trial", "version": 1, "mode": "audit",
             "description": "Trial: storage accounts should use TLS 1.3; audit mode only observes.",
             "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
             "rules": [{"id": "tls13", "description": "min TLS", "property": "properties.minimumTlsVersion",
                        "expect": {"equals": "TLS1_3"}, "action": {"type": "notify"}}]}
PE_TRIAL = {"id": "storage-pe-trial", "version": 1, "mode": "audit",
            "description": "Trial: storage is private, private endpoint first; audit mode only observes.",
            "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
            "rules": [{"id": "pna-off", "description": "public network access off",
                       "property": "properties.publicNetworkAccess", "expect": {"equals": "Disabled"},
                       "action": {"type": "set-property", "value": "Disabled"},
                       "private_endpoint": {"required": True, "when_missing": "notify"}}]}


def _policies(tmp_path, *docs: dict):
    d = tmp_path / "trial"
    d.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        (d / f"{doc['id']}.yaml").write_text(yaml.safe_dump(doc))
    return d


def test_an_audit_mode_notify_rule_is_dry_run_on_the_event_path_and_allowed_on_demand(
        harness, tmp_path, app_service_authentication, caplog):
    from guardrails.triggers.http_checks import check_resource

    # GIVEN a compliant account (for the shipped policies) and two policies trialled in audit mode:
    # a notify rule, and a private-endpoint-first rule with no approved connection
    res = b.storage(pna="Disabled", blob=False, tags={"owner": "team-vision@contoso.com"})
    h = harness([res], extra_metadata=[_policies(tmp_path, TLS_TRIAL)])
    # WHEN the pipeline asks whether it may use the account
    status, answer, text = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    # THEN it is allowed: audit mode observes, it never denies
    assert status == 200 and answer["allowed"] is True and answer["verdict"] == "dry_run", text
    row = _stored(h, answer["decision_id"])
    assert row.verdict == "dry_run" and row.notify is False
    (v,) = row.violations                         # AND the finding is on the row, as what it would have done
    assert (v.policy, v.rule, v.outcome) == ("storage-tls-trial@1", "tls13", "dry_run")
    assert v.message.startswith("audit mode: would notify")
    # AND on the event path: dry_run, nobody notified, nothing written
    caplog.set_level(logging.WARNING, logger="guardrails")
    event_row = h.deliver(b.write_event(res["id"]))
    assert event_row.verdict == "dry_run" and event_row.notify is False
    assert [x.outcome for x in event_row.violations] == ["dry_run"]
    assert "guardrail_violation_notify" not in caplog.text
    assert h.writes() == []


def test_an_audit_mode_private_endpoint_first_rule_is_dry_run(harness, tmp_path, app_service_authentication):
    from guardrails.triggers.http_checks import check_resource

    res = b.storage(pna="Enabled", blob=False)
    h = harness([res], extra_metadata=[_policies(tmp_path, PE_TRIAL)])
    status, answer, _ = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    stored = _stored(h, answer["decision_id"])
    trial = [v for v in stored.violations if v.policy == "storage-pe-trial@1"]
    assert [v.outcome for v in trial] == ["dry_run"] and "no approved private endpoint" in trial[0].message
    # the shipped, enforcing storage-private finds publicNetworkAccess too: denied for that one only
    assert answer["allowed"] is False
    assert {r["rule"] for r in answer["reasons"]} == {"storage-private/public-network-access-disabled",
                                                      "storage-pe-trial/pna-off"}
    assert not stored.notify


def test_an_enforcing_notify_rule_is_still_a_violation_that_notifies_and_denies(
        harness, tmp_path, app_service_authentication):
    from guardrails.triggers.http_checks import check_resource

    res = b.storage(pna="Disabled", blob=False)
    h = harness([res], extra_metadata=[_policies(tmp_path, {**TLS_TRIAL, "id": "storage-tls-enforced",
                                                            "mode": "enforce"})])
    status, answer, _ = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    assert status == 200 and answer["allowed"] is False and answer["verdict"] == "violation"
    row = _stored(h, answer["decision_id"])
    assert row.notify is True and [v.outcome for v in row.violations] == ["violation"]
    assert h.deliver(b.write_event(res["id"])).verdict == "violation"


# ---------------------------------------------------------------- D4: nothing governs the vault
def test_an_exposure_in_a_vault_no_policy_governs_is_422_notified_and_logged_at_error(harness, tmp_path, planted,
                                                                                    caplog):
    caplog.set_level(logging.DEBUG)
    leaked = _val()
    h = _harness(harness, tmp_path, planted, extra_secrets=[_bundle("leaked", leaked, vault="kv-other")])
    status, answer, text = _post({"vault": "kv-other", "name": "leaked", "source": "gitleaks"})
    assert status == 422 and answer["error"]["reason"] == "not_governed", text
    assert "rotate it by hand" in answer["error"]["message"]
    row = _stored(h, answer["decision_id"])
    assert row.notify is True and row.verdict == "ignored" and row.reason == "no_policy"
    assert row.event_type == "Guardrails.SecretExposed" and "rotate it by hand" in row.message
    assert row.resource_id == "https://kv-other.vault.azure.net/secrets/leaked"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR and "exposure_not_governed" in r.getMessage()]
    assert len(h.emu.secret_versions("kv-other", "leaked")) == 1
    assert all(leaked not in t for t in _texts(h, caplog, text))


# ---------------------------------------------------------------- D5: refused reports are audited
@pytest.mark.parametrize("body, headers, status, reason", [
    (b'{"vault": "kv-ml-prod", "name": ', {}, 400, "malformed_json"),
    (b'{"vault": "kv-ml-prod", "name": "api-token", "value": "x"}', {}, 400, "unknown_field"),
    (b'{"vault": "kv-ml-prod", "name": "api-token", "source": "x"}',
     {"X-MS-CLIENT-PRINCIPAL": encode_principal(b.ALICE, tenant_id=b.TENANT)}, 400, "invalid_principal_header"),
    (b'{"vault": "kv-ml-prod", "name": "api-token", "source": "x"}' + b" " * 5000, {}, 413, "body_too_large"),
], ids=["malformed", "unknown-field", "forged-principal", "too-large"])
def test_every_refused_exposure_report_is_one_invalid_row_named_by_its_correlation_id(
        harness, tmp_path, planted, monkeypatch, body, headers, status, reason):
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    h = _harness(harness, tmp_path, planted)
    before = len(h.stored_rows())
    got, answer, text = _post(body, headers)
    assert got == status and answer["error"]["reason"] == reason, text
    cid = answer["error"]["correlation_id"]
    assert answer["decision_id"] == cid
    row = _stored(h, cid)
    assert (row.verdict, row.reason, row.event_type) == ("invalid", reason, "Guardrails.SecretExposed")
    assert row.actor.object_id is None                              # the forged header is not believed
    assert len(h.stored_rows()) == before + 1 and _versions(h) == 1


def test_a_refused_report_names_the_verified_caller(harness, tmp_path, planted, monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    h = _harness(harness, tmp_path, planted)
    headers = {"X-MS-CLIENT-PRINCIPAL": encode_principal(b.ALICE, tenant_id=b.TENANT, upn="alice@contoso.com")}
    status, answer, _ = _post(b'{"vault": "kv-ml-prod"}', headers)
    assert status == 400 and answer["error"]["reason"] == "missing_field"
    row = _stored(h, answer["error"]["correlation_id"])
    assert row.verdict == "invalid" and row.actor.object_id == b.ALICE


# ---------------------------------------------------------------- D6: a version the secret never had
def test_an_exposure_naming_a_version_the_secret_never_had_is_404_and_rotates_nothing(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    status, first, _ = _post({"vault": VAULT, "name": "api-token", "source": "gitleaks"})
    assert status == 200 and first["verdict"] == "remediated" and _versions(h) == 2
    status, answer, text = _post({"vault": VAULT, "name": "api-token", "version": "0" * 32, "source": "gitleaks-2"})
    assert status == 404 and answer["error"]["reason"] == "unknown_version", text
    row = _stored(h, answer["decision_id"])
    assert (row.verdict, row.reason, row.notify) == ("ignored", "version_not_found", True)
    assert _versions(h) == 2
    # a report of the version that was exposed (older than the answer) is still answered once
    exposed = h.emu.secret_versions(VAULT, "api-token")[0]["id"].rsplit("/", 1)[-1]
    status, again, _ = _post({"vault": VAULT, "name": "api-token", "version": exposed, "source": "gitleaks-3"})
    assert status == 200 and again["verdict"] == "compliant" and _versions(h) == 2


def test_a_first_report_naming_an_unknown_version_is_404_and_rotates_nothing(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    status, answer, _ = _post({"vault": VAULT, "name": "api-token", "version": "f" * 32, "source": "gitleaks"})
    assert status == 404 and answer["error"]["reason"] == "unknown_version"
    assert _versions(h) == 1 and _stored(h, answer["decision_id"]).reason == "version_not_found"


# ---------------------------------------------------------------- D7: who a job check was about
def test_a_denied_on_behalf_job_check_records_the_identity_zone_and_secret_references(
        harness, tmp_path, app_service_authentication):
    from guardrails.triggers.http_checks import check_job

    d = tmp_path / "site"
    d.mkdir()
    (d / "check-access.yaml").write_text(yaml.safe_dump(ACCESS))
    h = harness([], extra_metadata=[d], world={"directory": {"groups": {b.DS_GROUP: [b.ALICE]}}})
    body = {**SEED_JOB, "identity": {"object_id": b.ALICE}, "network_zone": "public-internet"}
    status, answer, _ = _call(check_job, "checks/job", body, principal=ORCHESTRATOR)
    assert status == 200 and answer["allowed"] is False
    row = _stored(h, answer["decision_id"])
    assert row.actor.object_id == ORCHESTRATOR
    assert b.ALICE in row.message and "public-internet" in row.message and "ml-vault/databricks-token" in row.message
    # a caller with no on-behalf grant: denied (identity), and the row still says who it asked about
    status, answer, _ = _call(check_job, "checks/job", {**SEED_JOB, "identity": {"object_id": b.ALICE}},
                              principal=b.BOB)
    row = _stored(h, answer["decision_id"])
    assert answer["reasons"][0]["rule"] == "identity" and b.ALICE in row.message


# ---------------------------------------------------------------- D8: duplicate keys
def test_a_job_check_naming_a_key_twice_is_malformed_and_audited(harness, app_service_authentication):
    from guardrails.triggers.http_checks import check_job

    h = harness([], world={"directory": {"groups": {b.DS_GROUP: [b.ALICE]}}})
    raw = (b'{"job_id": 999, "network_zone": "pe-databricks-eastus", "permissions": ["execute_inference"],'
           b' "job_id": 201}')
    status, answer, _ = _call(check_job, "checks/job", raw)
    assert status == 400 and answer["error"]["code"] == "malformed_json"
    assert "job_id" in answer["error"]["message"]
    assert _stored(h, answer["error"]["correlation_id"]).verdict == "invalid"


def test_an_exposure_report_naming_a_key_twice_is_malformed_and_rotates_nothing(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    raw = b'{"vault": "kv-other", "name": "api-token", "source": "x", "vault": "%s"}' % VAULT.encode()
    status, answer, _ = _post(raw)
    assert status == 400 and answer["error"]["reason"] == "malformed_json" and "'vault'" in answer["error"]["message"]
    assert _stored(h, answer["error"]["correlation_id"]).reason == "malformed_json"
    assert _versions(h) == 1
