"""Review of the HTTP checks and the exposure endpoint (s21), in memory: the blueprint functions
called with real ``azure.functions.HttpRequest`` objects over the in-memory stores of
``test_http_checks`` (the integration file of the same name runs these on Azurite and the emulator)."""

from __future__ import annotations

import copy
import json
import logging

import azure.functions as func
import pytest

from guardrails.checks.principal import encode_principal
from guardrails.triggers.secrets_http import secrets_exposed
from tests import builders as b
from tests.functional.test_http_checks import ACCESS, ORCHESTRATOR, SEED_JOB, request, world  # noqa: F401

PAT = ("github_pat_11ABCDEFG0" + "aB3dE5fG7hJ9kL1mN3pQ5r" + "_"
       + "S7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5xY7zA9bC1dE3fG5hJ7k")
TOKEN = "dapi" + "0123456789abcdef" * 2
TLS_TRIAL = {"id": "storage-tls-trial", "version": 1, "mode": "audit",
             "description": "Trial: storage accounts should use TLS 1.3; audit mode only observes.",
             "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
             "rules": [{"id": "tls13", "description": "min TLS", "property": "properties.minimumTlsVersion",
                        "expect": {"equals": "TLS1_3"}, "action": {"type": "notify"}}]}


def _expose(body, headers=None) -> tuple[int, dict, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = secrets_exposed(func.HttpRequest("POST", "https://x/api/secrets/exposed", headers=headers or {}, body=raw))
    text = resp.get_body().decode()
    return resp.status_code, json.loads(text), text


def _everything(w, text: str) -> str:
    return text + "".join(json.dumps(r.to_dict(), default=str) for r in w.audit.rows)


# ---------------------------------------------------------------- D2
def test_a_fine_grained_pat_as_a_permission_is_a_400_naming_the_field(world):
    w = world()
    status, body, resp = request("checks/job", {**SEED_JOB, "permissions": ["execute_inference", PAT]})
    assert status == 400 and body["error"]["code"] == "invalid_value"
    assert [d["field"] for d in body["error"]["details"]] == ["permissions.1"]
    (row,) = w.audit.rows
    assert (row.verdict, row.reason) == ("invalid", "invalid_value")
    assert PAT[11:27] not in _everything(w, resp.get_body().decode())


def test_a_fine_grained_pat_as_an_unknown_key_is_never_echoed(world):
    w = world()
    status, body, resp = request("checks/job", {**SEED_JOB, PAT: 1})
    assert status == 400 and body["error"]["code"] == "unknown_field"
    assert body["error"]["details"][0]["field"] == "<key not shown>"
    assert PAT[11:27] not in _everything(w, resp.get_body().decode())


# ---------------------------------------------------------------- D3
def test_an_audit_mode_notify_rule_is_allowed_as_dry_run_on_demand(world):
    st = b.storage(pna="Disabled", blob=False, tags={"owner": "x"})
    w = world([st], docs=[TLS_TRIAL])
    status, body, _ = request("checks/resource", {"resource_id": st["id"]})
    assert status == 200 and body["allowed"] is True and body["verdict"] == "dry_run"
    assert "audit mode: would notify" in body["reasons"][0]["message"]
    (row,) = w.audit.rows
    assert row.notify is False and [(v.policy, v.outcome) for v in row.violations] == [("storage-tls-trial@1", "dry_run")]


# ---------------------------------------------------------------- D7
def test_a_denied_on_behalf_check_names_the_identity_asked_about(world):
    w = world(docs=[ACCESS])
    status, body, _ = request("checks/job", {**SEED_JOB, "identity": {"object_id": b.ALICE},
                                             "network_zone": "public-internet"}, principal=ORCHESTRATOR)
    assert status == 200 and body["allowed"] is False
    (row,) = w.audit.rows
    assert row.actor.object_id == ORCHESTRATOR
    assert b.ALICE in row.message and "zone public-internet" in row.message
    assert "secret references: ml-vault/databricks-token" in row.message


def test_an_allowed_check_names_what_it_was_about_too(world):
    w = world()
    status, body, _ = request("checks/job", SEED_JOB)
    assert body["allowed"] is True
    assert "identity: the caller's own; zone pe-databricks-eastus" in w.audit.rows[0].message


# ---------------------------------------------------------------- D8
@pytest.mark.parametrize("raw, key", [
    (b'{"job_id": 201, "network_zone": "elsewhere", "permissions": ["execute_inference"],'
     b' "network_zone": "pe-databricks-eastus"}', "network_zone"),
    (b'{"job_id": 201, "network_zone": "pe-databricks-eastus", "permissions": ["execute_inference"],'
     b' "secret_references": [{"vault": "ml-vault", "secret": "a", "secret": "databricks-token"}]}', "secret"),
])
def test_a_key_sent_twice_is_malformed_json_naming_it(world, raw, key):
    w = world()
    status, body, _ = request("checks/job", raw)
    assert status == 400 and body["error"]["code"] == "malformed_json" and f"'{key}'" in body["error"]["message"]
    assert [r.verdict for r in w.audit.rows] == ["invalid"]


def test_a_credential_key_sent_twice_is_not_named(world):
    w = world()
    raw = (b'{"job_id": 201, "network_zone": "pe-databricks-eastus", "permissions": ["execute_inference"], "%s": 1,'
           b' "%s": 2}') % (TOKEN.encode(), TOKEN.encode())
    status, body, resp = request("checks/job", raw)
    assert status == 400 and body["error"]["code"] == "malformed_json"
    assert TOKEN[:12] not in _everything(w, resp.get_body().decode())


# ---------------------------------------------------------------- the exposure endpoint over memory stores
def test_an_exposure_when_the_secret_guardrail_is_not_configured_is_422_and_notifies(world, caplog):
    w = world()                                       # this world has no secret guardrail
    with caplog.at_level(logging.ERROR, logger="guardrails"):
        status, body, _ = _expose({"vault": "ml-vault", "name": "tok", "source": "scanner"})
    assert status == 422 and body["error"]["reason"] == "not_governed"
    (row,) = w.audit.rows
    assert (row.verdict, row.reason, row.notify) == ("ignored", "not_covered", True)
    assert row.delivery_id == body["decision_id"] and "exposure_not_governed" in caplog.text


@pytest.mark.parametrize("body, reason", [
    ({"vault": "ml-vault", "name": TOKEN, "source": "scanner"}, "invalid_value"),
    ({"vault": "ml-vault", "name": "tok", PAT: 1}, "invalid_value"),
    (b'{"vault": "ml-vault", "name": "tok", "vault": "other-vault"}', "malformed_json"),
    ({"vault": "ml-vault", "name": "tok", "source": "scan\ud800ner"}, "invalid_value"),
])
def test_refused_exposure_reports_are_audited_without_the_value(world, body, reason):
    w = world()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()     # json escapes the surrogate
    status, answer, text = _expose(raw)
    assert status == 400 and answer["error"]["reason"] == reason
    (row,) = w.audit.rows
    assert (row.verdict, row.reason, row.delivery_id) == ("invalid", reason, answer["error"]["correlation_id"])
    assert TOKEN[:12] not in _everything(w, text) and PAT[11:27] not in _everything(w, text)


def test_a_refused_report_whose_row_cannot_be_written_is_a_503(world):
    w = world()
    w.audit.fail = True
    status, answer, _ = _expose(b"{not json")
    assert status == 503 and answer["error"]["reason"] == "unavailable" and answer["error"]["correlation_id"]


def test_a_forged_principal_is_refused_and_audited_without_an_actor(world, monkeypatch):
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    w = world()
    status, answer, _ = _expose({"vault": "ml-vault", "name": "tok", "source": "x"},
                                {"X-MS-CLIENT-PRINCIPAL": encode_principal(b.ALICE, tenant_id=b.TENANT)})
    assert status == 400 and answer["error"]["reason"] == "invalid_principal_header"
    (row,) = w.audit.rows
    assert row.verdict == "invalid" and row.actor.object_id is None


def test_the_shipped_seed_job_is_unchanged(world):
    w = world()
    status, body, _ = request("checks/job", copy.deepcopy(SEED_JOB))
    assert status == 200 and body["allowed"] is True and w.audit.rows[0].verdict == "compliant"
