"""Review of the HTTP checks and the exposure endpoint (s21b), in memory: a long CamelCase or
snake_case name where a name belongs is a name (answered, decided, audited), while a credential in a
known format there is still refused without being echoed or stored. The blueprint functions are
called with real ``azure.functions.HttpRequest`` objects over the in-memory stores of
``test_http_checks`` (the integration file of the same name runs these on Azurite and the emulator)."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from guardrails.policy.loader import load_directory
from guardrails.sync import metadata_dirs
from guardrails.triggers.secrets_http import parse_exposure, secrets_exposed
from tests import builders as b
from tests.functional.test_http_checks import SEED_JOB, request, world  # noqa: F401

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


def _job_201(**over) -> dict:
    doc = next(p for p in load_directory(*metadata_dirs()) if p.id == "job-201").to_document()
    return {**doc, **over}


def _expose(body) -> tuple[int, dict, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = secrets_exposed(func.HttpRequest("POST", "https://x/api/secrets/exposed", headers={}, body=raw))
    text = resp.get_body().decode()
    return resp.status_code, json.loads(text), text


def _everything(w, text: str) -> str:
    return text + "".join(json.dumps(r.to_dict(), default=str) for r in w.audit.rows)


def _marker(value: str) -> str:
    """A part of ``value`` no message would hold by chance (past a prefix such as ``github_pat_``)."""
    return value[4:20] if not value.startswith("github_pat_") else value[11:27]


# ---------------------------------------------------------------- names are names
def test_a_job_with_a_long_snake_case_id_is_checked_and_allowed(world):
    # GIVEN a job policy whose job id is a long mixed-case name
    w = world(docs=[_job_201(id="job-train", job_id=JOB_NAME)])
    # WHEN the orchestrator asks THEN the job is decided on its policy, not refused as a credential
    status, body, _ = request("checks/job", {**SEED_JOB, "job_id": JOB_NAME})
    assert status == 200 and body["allowed"] is True, body
    assert (body["verdict"], body["policy_version"], body["subject"]) == ("compliant", "job-train@1", f"job:{JOB_NAME}")
    (row,) = w.audit.rows
    assert row.verdict == "compliant" and JOB_NAME in row.message


def test_a_job_run_from_a_long_named_zone_is_allowed_when_its_policy_names_that_zone(world):
    w = world(docs=[_job_201(network_zones=[ZONE])])
    status, body, _ = request("checks/job", {**SEED_JOB, "network_zone": ZONE})
    assert status == 200 and body["allowed"] is True and body["verdict"] == "compliant", body
    assert [r.verdict for r in w.audit.rows] == ["compliant"]


def test_a_job_run_from_another_long_named_zone_is_denied_by_the_zone_rule_not_refused(world):
    world()
    status, body, _ = request("checks/job", {**SEED_JOB, "network_zone": ZONE})
    assert status == 200 and body["allowed"] is False and [r["rule"] for r in body["reasons"]] == ["network-zone"]


def test_a_resource_in_an_aks_node_resource_group_is_checked(world):
    # GIVEN a compliant storage account in AKS's node resource group (``MC_<rg>_<cluster>_<region>``)
    res = b.storage(pna="Disabled", blob=False, rg=RG, tags={"owner": "ml-platform@contoso.com"})
    w = world([res])
    # WHEN checked THEN it is read and decided
    status, body, _ = request("checks/resource", {"resource_id": res["id"]})
    assert status == 200 and body["allowed"] is True and body["verdict"] == "compliant", body
    assert body["subject"] == res["id"] and RG in res["id"]
    (row,) = w.audit.rows
    assert row.verdict == "compliant" and row.resource_id == res["id"]


def test_an_exposure_of_a_long_camel_case_secret_name_reaches_the_guardrail(world):
    # GIVEN no secret guardrail in this world: the report gets past the boundary to the governance
    # check (422 not_governed, notified), never a 400 that leaves the leak unreported
    w = world()
    status, body, _ = _expose({"vault": "ml-vault", "name": SECRET, "source": "gitleaks"})
    assert status == 422 and body["error"]["reason"] == "not_governed", body
    (row,) = w.audit.rows
    assert (row.verdict, row.notify) == ("ignored", True)
    assert row.resource_id == f"https://ml-vault.vault.azure.net/secrets/{SECRET}"


def test_the_exposure_parser_keeps_the_name_as_sent():
    req = func.HttpRequest("POST", "https://x/api/secrets/exposed", headers={},
                           body=json.dumps({"vault": "ml-vault", "name": SECRET, "source": "s"}).encode())
    assert parse_exposure(req) == {"vault": "ml-vault", "name": SECRET, "version": None, "source": "s",
                                  "report_id": None}


# ---------------------------------------------------------------- credentials are still refused
@pytest.mark.parametrize("kind", list(CREDENTIALS))
@pytest.mark.parametrize("route, field, body", [
    ("checks/job", "job_id", lambda v: {**SEED_JOB, "job_id": v}),
    ("checks/job", "network_zone", lambda v: {**SEED_JOB, "network_zone": v}),
    ("checks/resource", "resource_id",
     lambda v: {"resource_id": f"/subscriptions/{b.SUB}/resourceGroups/{v}/providers/Microsoft.Storage/"
                               "storageAccounts/st01"}),
])
def test_a_credential_in_a_name_field_of_the_check_api_is_refused_unechoed(world, kind, route, field, body):
    value = CREDENTIALS[kind]
    res = b.storage()
    w = world([res])
    status, answer, resp = request(route, body(value))
    assert status == 400 and answer["error"]["code"] == "invalid_value", answer
    assert [d["field"] for d in answer["error"]["details"]] == [field]
    (row,) = w.audit.rows
    assert (row.verdict, row.reason) == ("invalid", "invalid_value")
    assert _marker(value) not in _everything(w, resp.get_body().decode())
    assert w.arm.calls == []                                        # nothing was read for it


@pytest.mark.parametrize("kind", list(CREDENTIALS))
@pytest.mark.parametrize("field", ["vault", "name", "version"])
def test_a_credential_sent_as_vault_name_or_version_is_refused_unechoed(world, kind, field):
    value = CREDENTIALS[kind]
    w = world()
    status, answer, text = _expose({"vault": "ml-vault", "name": "tok", "source": "scanner", field: value})
    assert status == 400 and answer["error"]["reason"] == "invalid_value", answer
    assert f"'{field}' looks like a credential" in answer["error"]["message"]
    (row,) = w.audit.rows
    assert (row.verdict, row.reason, row.resource_id) == ("invalid", "invalid_value", "")
    assert _marker(value) not in _everything(w, text)


def test_a_field_name_that_looks_like_a_key_is_still_refused(world):
    # unknown keys keep the free-text test (an opaque run, no known format)
    opaque = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3"
    w = world()
    status, answer, text = _expose({"vault": "ml-vault", "name": "tok", opaque: 1})
    assert status == 400 and answer["error"]["reason"] == "invalid_value"
    assert opaque[:16] not in _everything(w, text)


@pytest.mark.parametrize("field, value", [("vault", "ml-vault\n"), ("name", "tok\n"), ("version", "a" * 32 + "\n")])
def test_a_name_with_a_trailing_line_break_is_not_a_key_vault_name(world, field, value):
    w = world()
    status, answer, _ = _expose({"vault": "ml-vault", "name": "tok", "source": "scanner", field: value})
    assert status == 400 and answer["error"]["reason"] == "invalid_value"
    assert f"'{field}' is not a valid Key Vault {field}" == answer["error"]["message"]
    assert [r.verdict for r in w.audit.rows] == ["invalid"]


def test_an_exposure_whose_vault_lost_its_policy_during_the_check_is_one_error_and_one_clear_message(
        world, caplog, monkeypatch):
    """The race the trigger's pre-check cannot close: the service decides ``not governed`` after
    the trigger found a policy. One ERROR line (the service's), one 422 whose message says once
    what to do."""
    import json as _json
    import logging as _logging

    from guardrails.triggers import secrets_http
    from tests.functional.test_review_http_s21 import _expose

    world()
    monkeypatch.setattr(secrets_http, "_ungoverned", lambda svc, vault: None)
    with caplog.at_level(_logging.INFO, logger="guardrails"):
        status, body, _text = _expose({"vault": "kv-nobody", "name": "api-token", "source": "scanner"})
    errors = [_json.loads(r.getMessage())["event"] for r in caplog.records if r.levelno >= _logging.ERROR]
    assert status == 422 and errors == ["exposure_not_governed"]
    assert body["error"]["message"].count("rotate it by hand") == 1
