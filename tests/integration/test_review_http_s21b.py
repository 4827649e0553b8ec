"""Review of the HTTP checks and the exposure endpoint (s21b), end to end: a long CamelCase or
snake_case name where a name belongs is a name — the exposure of such a secret rotates it, a job,
a zone and a resource group so named are checked and decided — while a credential in a known
format in those same fields is still refused, never echoed, never stored. The real trigger
functions with real ``azure.functions.HttpRequest`` objects, policies synced to Azurite, Key Vault
and ARM on the HTTPS emulator through the real SDK clients, audit rows read back from Table Storage."""

from __future__ import annotations

import json
import logging
import textwrap

import azure.functions as func
import pytest
import yaml

from guardrails.errors import MetadataValidationError
from guardrails.sync import metadata_dirs, sync_metadata
from tests import builders as b
from tests.functional.test_http_checks import SEED_JOB, http_request
from tests.integration.test_secret_guardrail import VAULT, _bundle, _no_leak, _val, planted  # noqa: F401

pytestmark = pytest.mark.integration

JOB_NAME = "Train_ResNet50_ImageNet_Baseline_Experiment_Run1"
ZONE = "ContosoCorpNet_Internal_Zone_WestEurope01"
RG = "MC_MLPlatformProd_AksInference01_westeurope"
SECRET = "StorageAccountConnectionStringForProduction2024"

DAPI = "dapi" + "0123456789abcdef" * 2
PAT = ("github_pat_11ABCDEFG0" + "aB3dE5fG7hJ9kL1mN3pQ5r" + "_"
       + "S7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5xY7zA9bC1dE3fG5hJ7k")
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
JWT = "eyJhbGciOiJIUzI1NiJ9" + "." + "eyJzdWIiOiJhbGljZSJ9" + "." + "c2lnbmF0dXJlX2hlcmU"
CREDENTIALS = {"dapi": DAPI, "github-pat": PAT, "aws": AWS, "jwt": JWT}

POLICY = f"""
id: ml-secrets
version: 1
kind: secrets
description: ML platform secrets, one of them named the long way
mode: enforce
selector: {{vaults: [{VAULT}]}}
secrets:
  - vault: {VAULT}
    name: {SECRET}
    owner: ml-platform@contoso.com
    rotation: {{strategy: random, length: 48, alphabet: urlsafe}}
  - vault: {VAULT}
    name: api-token
    owner: ml-platform@contoso.com
    rotation: {{strategy: random, length: 48, alphabet: urlsafe}}
"""


def _marker(value: str) -> str:
    return value[4:20] if not value.startswith("github_pat_") else value[11:27]


def _secrets_harness(harness, tmp_path, planted):
    d = tmp_path / "secrets"
    d.mkdir(exist_ok=True)
    (d / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY))
    world = {"keyvault_private_access": True,
             "secrets": [_bundle(SECRET, planted["api"]), _bundle("api-token", planted["dbx"])]}
    return harness([b.key_vault(pna="Disabled", rbac=True)], world=world, extra_metadata=[d])


def _post(body: dict | bytes) -> tuple[int, dict, str]:
    from guardrails.triggers.secrets_http import secrets_exposed

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = secrets_exposed(func.HttpRequest("POST", "/api/secrets/exposed", body=raw, headers={}))
    text = resp.get_body().decode()
    return resp.status_code, json.loads(text), text


def _call(fn, route, body):
    resp = fn(http_request(route, body))
    text = resp.get_body().decode()
    return resp.status_code, json.loads(text), text


def _stored(h, decision_id: str):
    rows = [r for r in h.stored_rows() if r.delivery_id == decision_id]
    assert len(rows) == 1, f"expected one stored row for {decision_id}, found {len(rows)}"
    return rows[0]


def _texts(h, caplog, *extra: str) -> list[str]:
    return ([r.getMessage() for r in caplog.records] + [json.dumps(r.to_dict(), default=str) for r in h.recorder.rows]
            + [json.dumps(r.to_dict(), default=str) for r in h.stored_rows()] + list(extra))


@pytest.fixture
def app_service_authentication(monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")


# ---------------------------------------------------------------- the exposure endpoint
def test_the_exposure_of_a_long_camel_case_secret_name_rotates_it(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.DEBUG)
    h = _secrets_harness(harness, tmp_path, planted)
    exposed = h.emu.secret_versions(VAULT, SECRET)[0]
    # WHEN a scanner reports the leak of the secret named the long way
    status, answer, text = _post({"vault": VAULT, "name": SECRET, "source": "gitleaks"})
    # THEN it is rotated: a new version in the vault, the exposed one disabled, the row stored
    assert status == 200 and answer["verdict"] == "remediated", text
    versions = h.emu.secret_versions(VAULT, SECRET)
    assert len(versions) == 2 and versions[-1]["value"] != planted["api"]
    assert next(v for v in versions if v["id"] == exposed["id"])["attributes"]["enabled"] is False
    row = _stored(h, answer["decision_id"])
    assert row.verdict == "remediated" and row.resource_id == f"https://{VAULT}.vault.azure.net/secrets/{SECRET}"
    assert "exposed-secret" in [v.rule for v in row.violations]
    _no_leak(h, planted, caplog, text)
    assert all(versions[-1]["value"] not in t for t in _texts(h, caplog, text))


@pytest.mark.parametrize("field", ["vault", "name", "version"])
def test_a_credential_sent_as_vault_name_or_version_is_refused_never_echoed_nor_stored(
        harness, tmp_path, planted, caplog, field):
    caplog.set_level(logging.DEBUG)
    h = _secrets_harness(harness, tmp_path, planted)
    for kind, value in CREDENTIALS.items():
        status, answer, text = _post({"vault": VAULT, "name": SECRET, "source": "scanner", field: value})
        assert status == 400 and answer["error"]["reason"] == "invalid_value", (kind, text)
        assert f"'{field}' looks like a credential" in answer["error"]["message"]
        row = _stored(h, answer["error"]["correlation_id"])
        assert (row.verdict, row.reason, row.resource_id) == ("invalid", "invalid_value", "")
        assert all(_marker(value) not in t for t in _texts(h, caplog, text)), f"{kind} was echoed or stored"
    assert len(h.emu.secret_versions(VAULT, SECRET)) == 1                     # nothing rotated


def test_a_version_that_is_a_long_opaque_run_is_an_unknown_version_never_echoed(harness, tmp_path, planted, caplog):
    # GIVEN a version field holding an opaque run (no known format, so not refused at the boundary)
    caplog.set_level(logging.DEBUG)
    opaque = _val(48)
    h = _secrets_harness(harness, tmp_path, planted)
    status, answer, text = _post({"vault": VAULT, "name": SECRET, "version": opaque, "source": "gitleaks"})
    # THEN no such version: 404, nothing rotated, and neither the answer nor the row repeats it
    assert status == 404 and answer["error"]["reason"] == "unknown_version", text
    assert "not shown" in answer["error"]["message"]
    assert _stored(h, answer["decision_id"]).reason == "version_not_found"
    assert len(h.emu.secret_versions(VAULT, SECRET)) == 1
    assert all(opaque not in t for t in _texts(h, caplog, text))


def test_a_vault_with_a_trailing_line_break_is_refused(harness, tmp_path, planted):
    h = _secrets_harness(harness, tmp_path, planted)
    status, answer, _ = _post({"vault": VAULT + "\n", "name": SECRET, "source": "gitleaks"})
    assert status == 400 and answer["error"]["message"] == "'vault' is not a valid Key Vault vault"
    assert _stored(h, answer["error"]["correlation_id"]).verdict == "invalid"
    assert len(h.emu.secret_versions(VAULT, SECRET)) == 1


def test_a_secrets_policy_with_a_block_scalar_name_is_refused_by_sync_and_the_synced_one_still_acts(
        harness, tmp_path, planted):
    h = _secrets_harness(harness, tmp_path, planted)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY).replace(f"name: {SECRET}", f"name: |\n      {SECRET}"))
    with pytest.raises(MetadataValidationError) as exc:
        sync_metadata(h.repo, metadata_dirs([bad]))
    assert any("$.secrets[0].name" in f for f in exc.value.findings), exc.value.findings
    # nothing was written: the policy in the table still governs and references the secret
    status, answer, text = _post({"vault": VAULT, "name": SECRET, "source": "gitleaks"})
    assert status == 200 and answer["verdict"] == "remediated", text


# ---------------------------------------------------------------- the check API
def _job_dir(tmp_path, **doc) -> object:
    d = tmp_path / "jobs"
    d.mkdir(exist_ok=True)
    base = yaml.safe_load(open(metadata_dirs()[0] / "jobs" / "job-201.yaml"))
    (d / f"{doc.get('id', 'job-201')}.yaml").write_text(yaml.safe_dump({**base, **doc}))
    return d


def test_a_long_named_job_and_zone_are_checked_and_allowed(harness, tmp_path, app_service_authentication):
    from guardrails.triggers.http_checks import check_job

    d = _job_dir(tmp_path, id="job-train", job_id=JOB_NAME, network_zones=[ZONE])
    h = harness([], extra_metadata=[d], world={"directory": {"groups": {b.DS_GROUP: [b.ALICE]}}})
    status, answer, text = _call(check_job, "checks/job", {**SEED_JOB, "job_id": JOB_NAME, "network_zone": ZONE})
    assert status == 200 and answer["allowed"] is True and answer["verdict"] == "compliant", text
    assert answer["policy_version"] == "job-train@1" and answer["subject"] == f"job:{JOB_NAME}"
    row = _stored(h, answer["decision_id"])
    assert row.verdict == "compliant" and JOB_NAME in row.message


def test_a_resource_in_an_aks_node_resource_group_is_read_and_decided(harness, app_service_authentication):
    from guardrails.triggers.http_checks import check_resource

    res = b.storage(pna="Disabled", blob=False, rg=RG, tags={"owner": "ml-platform@contoso.com"})
    h = harness([res])
    status, answer, text = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    assert status == 200 and answer["verdict"] == "compliant" and answer["allowed"] is True, text
    assert [q["path"] for q in h.arm_requests("GET")] and RG.lower() in h.arm_requests("GET")[0]["path"].lower()
    assert _stored(h, answer["decision_id"]).resource_id == res["id"]


def test_credentials_in_the_check_api_name_fields_are_refused_never_echoed_nor_stored(
        harness, tmp_path, app_service_authentication, caplog):
    from guardrails.triggers.http_checks import check_job, check_resource

    caplog.set_level(logging.DEBUG)
    h = harness([b.storage()], world={"directory": {"groups": {b.DS_GROUP: [b.ALICE]}}})
    cases = [(check_job, "checks/job", "job_id", lambda v: {**SEED_JOB, "job_id": v}),
             (check_job, "checks/job", "network_zone", lambda v: {**SEED_JOB, "network_zone": v}),
             (check_resource, "checks/resource", "resource_id",
              lambda v: {"resource_id": f"/subscriptions/{b.SUB}/resourceGroups/{v}/providers/Microsoft.Storage/"
                                        "storageAccounts/st01"})]
    for fn, route, field, body in cases:
        for kind, value in CREDENTIALS.items():
            status, answer, text = _call(fn, route, body(value))
            assert status == 400 and answer["error"]["code"] == "invalid_value", (field, kind, text)
            assert [d["field"] for d in answer["error"]["details"]] == [field]
            row = _stored(h, answer["error"]["correlation_id"])
            assert (row.verdict, row.reason) == ("invalid", "invalid_value")
            assert all(_marker(value) not in t for t in _texts(h, caplog, text)), f"{kind} in {field} leaked"
    assert h.arm_requests() == []
