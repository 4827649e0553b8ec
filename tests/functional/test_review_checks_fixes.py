"""Review fixes of the check API and the exposure report, over the in-memory world of
``test_http_checks``: role-definition ids refused by the resource check, credentials sent where a
name belongs refused without being echoed, model-promotion findings audited under the policy that
found them, and control / format characters refused in model versions, tag values and an
exposure's ``source``."""

from __future__ import annotations

import json
import re

import azure.functions as func
import pytest

from guardrails.checks.openapi import openapi_document
from guardrails.checks.service import Caller
from guardrails.policy.loader import load_directory
from guardrails.sync import metadata_dirs
from guardrails.triggers.secrets_http import parse_exposure
from tests import builders as b
from tests.functional.test_http_checks import ACCESS, GOOD_TAGS, REMEDIATOR, SEED_JOB, request, world  # noqa: F401

TOKEN = "dapi" + "0123456789abcdef" * 2                                      # a Databricks PAT's shape
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmNkZWYxMjM0In0.c2lnbmF0dXJlMTIzNDU2"
ROLE_DEFINITION = f"{b.rg_id()}/providers/Microsoft.Authorization/roleDefinitions/c0ffee00-0000-4000-8000-0000000000e1"


class Published:
    """The decision publisher's seat: what would go out as ``Guardrails.Decision.*`` events."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def publish(self, row) -> str:
        self.events.append(json.dumps(row.to_dict()))
        return "published"


# ---------------------------------------------------------------- D2: role definitions are not checked on demand
@pytest.mark.parametrize("rid", [
    ROLE_DEFINITION,                                                               # under the granted rg
    f"/subscriptions/{b.SUB}/providers/Microsoft.Authorization/roleDefinitions/c0ffee00-0000-4000-8000-0000000000e1",
    "/providers/microsoft.authorization/ROLEDEFINITIONS/c0ffee00-0000-4000-8000-0000000000e1",   # any spelling
])
@pytest.mark.parametrize("params", [{}, {"remediate": "true"}])
def test_a_role_definition_id_is_a_400_audited_invalid_before_any_call(world, rid, params):
    w = world(docs=[ACCESS])
    status, body, resp = request("checks/resource", {"resource_id": rid}, principal=REMEDIATOR, params=params)
    assert (status, body["error"]["code"]) == (400, "invalid_resource_id")
    assert "judged through its assignments" in body["error"]["message"] and "roleAssignments" in body["error"]["message"]
    assert body["error"]["details"][0]["field"] == "resource_id"
    (row,) = w.audit.rows
    assert (row.verdict, row.reason, row.delivery_id) == ("invalid", "invalid_resource_id", resp.headers["X-Decision-Id"])
    assert row.event_type == "Guardrails.CheckResource" and w.arm.calls == []


def test_the_cli_refuses_a_role_definition_id_too(world, capsys):
    from guardrails.cli import main

    w = world()
    assert main(["check", "resource", ROLE_DEFINITION, "--remediate"]) == 2
    assert "role assignment id" in capsys.readouterr().err and w.arm.calls == []


def test_a_role_assignment_id_is_still_checked(world):
    w = world()
    rid = f"{b.rg_id()}/providers/Microsoft.Authorization/roleAssignments/0b0b0000-0000-4000-8000-0000000000c1"
    status, body, _ = request("checks/resource", {"resource_id": rid})
    assert status == 200 and body["verdict"] != "invalid" and w.audit.rows[0].verdict != "invalid"


# ---------------------------------------------------------------- D3: credentials where a name belongs
@pytest.mark.parametrize("route, body, field", [
    ("checks/job", {**SEED_JOB, "secret_references": [{"vault": "ml-vault", "secret": TOKEN}]},
     "secret_references.0.secret"),
    ("checks/job", {**SEED_JOB, "permissions": ["execute_inference", JWT]}, "permissions.1"),
    ("checks/model-promotion", {"model": "fraud-clf", "version": "7", "to_stage": "candidate",
                                "tags": {**GOOD_TAGS, "owner": f"Bearer {JWT}"}}, "tags.owner"),
    ("checks/model-promotion", {"model": "fraud-clf", "version": "7", "to_stage": "candidate",
                                "tags": {**GOOD_TAGS, TOKEN: "x"}}, "tags.<key not shown>"),
])
def test_a_credential_value_is_a_400_naming_the_field_never_the_value(world, route, body, field):
    w = world()
    w.service.publisher = published = Published()
    status, answer, _ = request(route, body)
    assert (status, answer["error"]["code"]) == (400, "invalid_value")
    assert [d["field"] for d in answer["error"]["details"]] == [field] and field in answer["error"]["message"]
    (row,) = w.audit.rows
    assert (row.verdict, row.reason, row.violations) == ("invalid", "invalid_value", [])
    stored = json.dumps(row.to_dict()) + json.dumps(answer) + "".join(published.events)
    assert TOKEN not in stored and JWT not in stored and "dapi0123" not in stored


def test_a_credential_in_an_unknown_field_name_is_not_echoed(world):
    w = world()
    status, answer, _ = request("checks/job", {**SEED_JOB, TOKEN: 1})
    assert (status, answer["error"]["code"]) == (400, "unknown_field")
    assert TOKEN not in json.dumps(answer) + json.dumps(w.audit.rows[0].to_dict())


def test_finding_messages_are_redacted_when_a_request_reaches_the_decision(world):
    """Defence in depth: a request that is not screened (the service called directly) still
    writes no credential into the answer, the audit row or the decision event."""
    from guardrails.checks.models import JobCheckRequest

    w = world()
    w.service.publisher = published = Published()
    req = JobCheckRequest.model_validate({**SEED_JOB, "identity": {"object_id": b.ALICE},
                                          "permissions": ["execute_inference", JWT],
                                          "secret_references": [{"vault": "ml-vault", "secret": TOKEN}]})
    out = w.checks.check_job(req, Caller(trusted=True), "d-1")
    assert out.response.allowed is False and {r.rule for r in out.response.reasons} == {"permissions", "secret-references"}
    (row,) = w.audit.rows
    stored = out.response.model_dump_json() + json.dumps(row.to_dict()) + "".join(published.events)
    assert TOKEN not in stored and JWT not in stored and "looks like a credential" in stored


def test_the_cli_refuses_a_credential_as_a_secret_name(world, capsys):
    from guardrails.cli import main

    w = world()
    assert main(["check", "job", "--job-id", "201", "--identity", b.ALICE, "--zone", "pe-databricks-eastus",
                 "--permission", "execute_inference", "--secret", f"ml-vault/{TOKEN}"]) == 2
    err = capsys.readouterr().err
    assert "secret_references.0.secret" in err and TOKEN not in err
    # one ``invalid`` row, as the API writes for it, without the token
    assert [r.verdict for r in w.audit.rows] == ["invalid"] and TOKEN not in repr(w.audit.rows)


# ---------------------------------------------------------------- D4: each finding under its own policy
def _registry(**change) -> dict:
    base = next(p for p in load_directory(*metadata_dirs()) if p.id == "model-registry").to_document()
    return {**base, **change}


def test_model_promotion_findings_carry_the_policy_and_mode_that_found_them(world):
    strict = _registry(id="model-registry-strict", version=1, mode="audit",
                       required_tags=[*_registry()["required_tags"], "approved_by"])
    w = world(docs=[strict])
    req = {"model": "fraud", "version": "latest", "from_stage": "validated", "to_stage": "production", "tags": GOOD_TAGS}
    # the enforcing policy is broken (latest) and the audit-mode one (approved_by missing)
    status, body, _ = request("checks/model-promotion", req)
    assert status == 200 and body["allowed"] is False and body["verdict"] == "violation"
    assert [r["rule"] for r in body["reasons"]] == ["explicit-version"]          # the denial's reasons only
    (row,) = w.audit.rows
    assert sorted((v.rule, v.policy, v.outcome) for v in row.violations) == [
        ("explicit-version", "model-registry-strict@1", "dry_run"),     # it holds the same rule, in audit mode
        ("explicit-version", "model-registry@1", "violation"),
        ("required-tags", "model-registry-strict@1", "dry_run")]
    assert row.reason == "explicit-version" and "approved_by" not in row.message
    # only the audit-mode policy broken: allowed, dry_run, reported under its own ref
    _, body, _ = request("checks/model-promotion", {**req, "version": "7"})
    assert body["allowed"] is True and body["verdict"] == "dry_run"
    assert [r["rule"] for r in body["reasons"]] == ["required-tags"]
    assert [(v.policy, v.outcome) for v in w.audit.rows[-1].violations] == [("model-registry-strict@1", "dry_run")]


def test_an_enforcing_policy_listed_second_still_owns_its_finding(world):
    w = world(docs=[_registry(mode="audit"), _registry(id="model-registry-strict", version=3,
                                                       required_tags=["approved_by"])])
    _, body, _ = request("checks/model-promotion", {"model": "fraud", "version": "7", "from_stage": "validated",
                                                    "to_stage": "production", "tags": GOOD_TAGS})
    assert body["allowed"] is False and [r["rule"] for r in body["reasons"]] == ["required-tags"]
    assert [(v.policy, v.outcome) for v in w.audit.rows[0].violations] == [("model-registry-strict@3", "violation")]


# ---------------------------------------------------------------- D5: versions and tag values
@pytest.mark.parametrize("change", [
    {"version": "7\r\n[ALLOWED] model:other"}, {"version": "7\x85"}, {"version": "7 8"}, {"version": "../7"},
    {"version": ""}, {"version": "v" * 65},
    {"tags": {**GOOD_TAGS, "owner": "ds_team\n[ALLOWED]"}}, {"tags": {**GOOD_TAGS, "owner": "ds\x9bteam"}},
    {"tags": {**GOOD_TAGS, "owner": "ds\u2028team"}}, {"tags": {**GOOD_TAGS, "owner": "ds\u202eteam"}},
    {"tags": {**GOOD_TAGS, "owner": "ds\u200bteam"}},
])
def test_control_and_format_characters_in_a_version_or_tag_value_are_a_400(world, change):
    w = world()
    body = {"model": "fraud-clf", "version": "7", "from_stage": "candidate", "to_stage": "validated",
            "tags": GOOD_TAGS, **change}
    status, answer, _ = request("checks/model-promotion", body)
    assert (status, answer["error"]["code"]) == (400, "invalid_value")
    (row,) = w.audit.rows
    assert (row.verdict, row.resource_id) == ("invalid", "")


@pytest.mark.parametrize("version", ["7", "1.2.3", "2026-11-01_rc.1", "latest", 7])
def test_azure_ml_asset_versions_are_accepted(world, version):
    world()
    status, body, _ = request("checks/model-promotion", {"model": "fraud-clf", "version": version,
                                                         "from_stage": "candidate", "to_stage": "validated",
                                                         "tags": {**GOOD_TAGS, "metric_summary": "auc=0.93; f1 0.8 ✓"}})
    assert status == 200 and body["subject"] == f"model:fraud-clf/versions/{version}"


def test_the_document_states_the_version_and_tag_value_grammar():
    schema = openapi_document()["components"]["schemas"]["ModelPromotionRequest"]["properties"]
    (text,) = [s for s in schema["version"]["anyOf"] if s["type"] == "string"]
    assert text["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"      # ml_guardrail's asset grammar
    (value,) = schema["tags"]["patternProperties"].values()
    rx = re.compile(value["pattern"])
    assert rx.match("auc=0.93") and not any(rx.match(f"a{c}b") for c in "\n\x7f\x85\x9b\u2028\u2029")


# ---------------------------------------------------------------- D6: exposure reports
@pytest.mark.parametrize("source", ["scanner\x9b31mFAKE", "scanner\x85verdict=compliant", "a\u2028b", "a\u2029b",
                                    "gitleaks\u202e", "a\x7fb"])
def test_an_exposure_source_with_control_or_format_characters_is_a_400(source):
    req = func.HttpRequest("POST", "https://x/api/secrets/exposed", headers={},
                           body=json.dumps({"vault": "ml-vault", "name": "tok", "source": source}).encode())
    out = parse_exposure(req)
    assert isinstance(out, func.HttpResponse) and out.status_code == 400
    assert json.loads(out.get_body())["error"]["reason"] == "invalid_value"


def test_a_printable_exposure_source_is_accepted():
    body = {"vault": "ml-vault", "name": "tok", "source": "GitHub secret scanning — é"}
    req = func.HttpRequest("POST", "https://x/api/secrets/exposed", headers={}, body=json.dumps(body).encode())
    assert parse_exposure(req)["source"] == "GitHub secret scanning — é"


@pytest.mark.parametrize("source", ["incident\x85forged", "incident\u2028forged", "incident\u200bforged"])
def test_an_exposure_event_with_such_a_source_is_audited_invalid(world, source):
    w = world()
    raw = {"id": "exp-1", "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/leaks",
           "subject": "api-token", "eventType": "Guardrails.SecretExposed", "eventTime": "2026-11-24T10:00:00Z",
           "dataVersion": "1", "data": {"VaultName": "kv-ml-prod", "ObjectName": "api-token", "Source": source}}
    row = w.service.handle_event(raw)
    assert (row.verdict, row.reason) == ("invalid", "invalid_value") and source not in row.message


# ---------------------------------------------------------------- who is asking is never on trial
def test_a_principal_from_another_identity_provider_is_a_400(world):
    from guardrails.checks.principal import encode_principal

    w = world()
    header = encode_principal(REMEDIATOR, auth_type="github", tenant_id=b.TENANT)   # an oid claim, not Entra's
    status, body, _ = request("checks/job", SEED_JOB, principal=None, headers={"X-MS-CLIENT-PRINCIPAL": header})
    assert status == 400 and "Entra" in json.dumps(body)
    assert [r.verdict for r in w.audit.rows] == ["invalid"]


def test_an_audit_mode_job_policy_still_denies_a_caller_with_no_verified_identity(world):
    from tests.functional.test_http_checks import ORCHESTRATOR

    doc = {**next(p for p in load_directory(*metadata_dirs()) if p.id == "job-201").to_document(), "mode": "audit"}
    w = world(docs=[doc])
    # no X-MS-CLIENT-PRINCIPAL at all
    _, body, _ = request("checks/job", SEED_JOB, principal=None)
    assert body["allowed"] is False and [r["rule"] for r in body["reasons"]] == ["identity"]
    # an on-behalf request no check-access grant covers
    _, body, _ = request("checks/job", {**SEED_JOB, "identity": {"object_id": b.ALICE}}, principal=ORCHESTRATOR[:-1] + "1")
    assert body["allowed"] is False and [r["rule"] for r in body["reasons"]] == ["identity"]
    assert [r.verdict for r in w.audit.rows] == ["violation", "violation"]
    # the policy's own conditions are still only trialled
    _, body, _ = request("checks/job", {**SEED_JOB, "network_zone": "elsewhere"})
    assert body["allowed"] is True and body["verdict"] == "dry_run"
