"""The check API's functions, called with real ``azure.functions.HttpRequest`` objects, over
in-memory stores (policy table, audit sink, ARM) and an in-memory directory for group membership.

Helpers here (``CheckWorld``, ``FakeDirectory``, ``request``) are reused by the API fuzz test.
"""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from guardrails import bootstrap
from guardrails.checks.openapi import MAX_BODY_BYTES, openapi_document
from guardrails.checks.principal import encode_principal
from guardrails.checks.service import CheckService
from guardrails.errors import ArmThrottled, ArmTransient
from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory
from guardrails.service import GuardrailsService
from guardrails.settings import Settings
from guardrails.sync import metadata_dirs
from guardrails.triggers import http_checks as H
from tests import builders as b
from tests.functional.fakes import (
    FakeArm, MemoryAudit, MemoryBreakers, MemoryIdempotency, MemoryPending, MemoryPolicyRepo,
)

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATOR = "0a0c0000-0000-4000-8000-00000000adf0"      # e.g. Data Factory's managed identity
PIPELINES = "9a000000-0000-4000-8000-0000000000a9"         # a group of orchestrator identities
REMEDIATOR = "4e000000-0000-4000-8000-0000000000e4"
ZONE = "pe-databricks-eastus"
SEED_JOB = {"job_id": 201, "network_zone": ZONE, "permissions": ["execute_inference"],
            "secret_references": [{"vault": "ml-vault", "secret": "databricks-token"}]}
GOOD_TAGS = {"data_version": "2026-11-01", "git_sha": "3f2a9c1", "metric_summary": "auc=0.93", "owner": "ds_team"}

ACCESS = {
    "id": "check-access", "version": 2, "kind": "check-access", "mode": "enforce",
    "description": "Test grants: the orchestrators may check on behalf of job identities; one operator may remediate rg-ml-prod.",
    "on_behalf": [{"principals": [ORCHESTRATOR], "groups": [PIPELINES], "checks": ["job"]}],
    "remediate": [{"principals": [REMEDIATOR], "groups": [], "scopes": [b.rg_id()]}],
}


class FakeDirectory:
    """Group membership like Graph's checkMemberGroups: transitive membership is listed flat."""

    def __init__(self, groups: dict[str, list[str]] | None = None) -> None:
        self.groups = {g.lower(): {m.lower() for m in ms} for g, ms in (groups or {}).items()}
        self.calls = 0
        self.error: Exception | None = None

    def is_member(self, principal_id: str, group_id: str) -> bool:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return principal_id.lower() in self.groups.get(group_id.lower(), set())


@dataclass
class CheckWorld:
    service: GuardrailsService
    checks: CheckService
    audit: MemoryAudit
    arm: FakeArm
    directory: FakeDirectory
    repo: MemoryPolicyRepo

    def install(self) -> "CheckWorld":
        bootstrap._service, bootstrap._checks = self.service, self.checks
        return self


def make_world(resources=(), *, docs: list[dict] = (), groups: dict | None = None,
               platform_auth: bool = True) -> CheckWorld:
    """The shipped metadata (with ``docs`` replacing same-id policies) over in-memory stores."""
    by_id = {p.id: (p.source, p.to_document()) for p in load_directory(*metadata_dirs())}
    for d in docs:
        by_id[d["id"]] = (f"test:{d['id']}", d)
    repo = MemoryPolicyRepo(list(by_id.values()))
    arm, audit = FakeArm(resources), MemoryAudit()
    directory = FakeDirectory({b.DS_GROUP: [b.ALICE], PIPELINES: []} if groups is None else groups)
    svc = GuardrailsService(Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")})),
                            policies=PolicyCache(repo, ttl_seconds=60), arm=arm, idempotency=MemoryIdempotency(),
                            audit=audit, breakers=MemoryBreakers(), pending=MemoryPending())
    # App Service authentication in front of the app, as deployed (WEBSITE_AUTH_ENABLED=True)
    checks = CheckService(svc, groups=directory, trust_principal_header=platform_auth)
    return CheckWorld(svc, checks, audit, arm, directory, repo)


@pytest.fixture
def world():
    made: list[CheckWorld] = []

    def make(*args, **kw) -> CheckWorld:
        w = make_world(*args, **kw).install()
        made.append(w)
        return w

    yield make
    bootstrap.reset_service()
    bootstrap._checks = None


def http_request(route: str, body: Any = None, *, principal: str | None = b.ALICE, method: str = "POST",
                 headers: dict | None = None, params: dict | None = None) -> func.HttpRequest:
    h = {"Content-Type": "application/json"}
    if principal is not None:
        h["X-MS-CLIENT-PRINCIPAL"] = encode_principal(principal, tenant_id=b.TENANT, upn=f"{principal[:4]}@contoso.com")
    h.update(headers or {})
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    return func.HttpRequest(method=method, url=f"https://guardrails.azurewebsites.net/api/{route}", headers=h,
                            params=params or {}, body=raw)


FUNCTIONS = {"checks/job": H.check_job, "checks/resource": H.check_resource,
             "checks/model-promotion": H.check_model_promotion, "health": H.health, "openapi.json": H.openapi}


def request(route: str, body: Any = None, **kw) -> tuple[int, dict, func.HttpResponse]:
    resp = FUNCTIONS[route](http_request(route, body, **kw))
    assert isinstance(resp, func.HttpResponse)
    return resp.status_code, json.loads(resp.get_body()), resp


# ---------------------------------------------------------------- the seed's job 201
def test_seed_job_201_is_allowed_for_a_ds_team_member_in_its_zone(world):
    w = world()
    status, body, resp = request("checks/job", SEED_JOB)
    assert status == 200 and resp.mimetype == "application/json"
    assert body["allowed"] is True and body["reasons"] == [] and body["policy_version"] == "job-201@1"
    (row,) = w.audit.rows
    assert body["decision_id"] == row.delivery_id == row.event_id == resp.headers["X-Decision-Id"]
    assert (row.verdict, row.event_type, row.resource_id) == ("compliant", "Guardrails.CheckJob", "job:201")
    assert row.actor.object_id == b.ALICE and row.policies == ["job-201@1"]


@pytest.mark.parametrize("change, rule", [
    ({"network_zone": "vnet-public-eastus"}, "network-zone"),
    ({"permissions": ["execute_inference", "delete_model"]}, "permissions"),
    ({"secret_references": [{"vault": "ml-vault", "secret": "storage-key"}]}, "secret-references"),
    ({"role": "Administrator"}, "role"),
    ({"job_id": "202"}, "job-policy"),
])
def test_each_broken_condition_is_denied_and_named(world, change, rule):
    w = world()
    status, body, _ = request("checks/job", {**SEED_JOB, **change})
    assert status == 200 and body["allowed"] is False
    assert [r["rule"] for r in body["reasons"]] == [rule]
    (row,) = w.audit.rows
    assert row.verdict == "violation" and row.reason == rule and [v.rule for v in row.violations] == [rule]


def test_a_caller_outside_ds_team_is_denied_by_the_access_group(world):
    world()
    status, body, _ = request("checks/job", SEED_JOB, principal=b.BOB)
    assert [r["rule"] for r in body["reasons"]] == ["access-group"]
    assert "ds_team" not in body["reasons"][0]["message"] and b.BOB in body["reasons"][0]["message"]


def test_without_a_platform_identity_there_is_nobody_to_allow(world):
    w = world()
    status, body, _ = request("checks/job", SEED_JOB, principal=None)
    assert status == 200 and body["allowed"] is False and [r["rule"] for r in body["reasons"]] == ["identity"]
    assert w.directory.calls == 0 and w.audit.rows[0].actor.object_id is None


def test_a_named_identity_is_honoured_only_for_callers_with_an_on_behalf_grant(world):
    w = world(docs=[ACCESS], groups={b.DS_GROUP: [b.ALICE], PIPELINES: [b.BOB]})
    on_behalf = {**SEED_JOB, "identity": {"object_id": b.ALICE}}
    # a caller without a grant naming someone else: denied, nothing about Alice is looked up
    status, body, _ = request("checks/job", on_behalf, principal=b.WORKSPACE_MI)
    assert body["allowed"] is False and [r["rule"] for r in body["reasons"]] == ["identity"]
    # the orchestrator (listed) and a member of the pipelines group: Alice is checked
    for caller in (ORCHESTRATOR, b.BOB):
        status, body, _ = request("checks/job", on_behalf, principal=caller)
        assert body["allowed"] is True and body["policy_version"] == "job-201@1, check-access@2"
    # the same grant does not cover someone outside ds_team
    status, body, _ = request("checks/job", {**SEED_JOB, "identity": {"object_id": b.WORKSPACE_MI}},
                              principal=ORCHESTRATOR)
    assert [r["rule"] for r in body["reasons"]] == ["access-group"]
    assert [r.actor.object_id for r in w.audit.rows] == [b.WORKSPACE_MI, ORCHESTRATOR, b.BOB, ORCHESTRATOR]


def test_on_behalf_grants_are_limited_to_their_checks(world):
    world(docs=[{**ACCESS, "on_behalf": [{"principals": [ORCHESTRATOR], "checks": ["model-promotion"]}]}])
    _, body, _ = request("checks/job", {**SEED_JOB, "identity": {"object_id": b.ALICE}}, principal=ORCHESTRATOR)
    assert [r["rule"] for r in body["reasons"]] == ["identity"]


def test_a_job_policy_in_audit_mode_allows_and_reports(world):
    doc = {**next(p for p in load_directory(*metadata_dirs()) if p.id == "job-201").to_document(), "mode": "audit"}
    w = world(docs=[doc])
    _, body, _ = request("checks/job", {**SEED_JOB, "network_zone": "elsewhere"})
    assert body["allowed"] is True and body["verdict"] == "dry_run" and body["reasons"][0]["rule"] == "network-zone"
    assert w.audit.rows[0].violations[0].outcome == "dry_run"


# ---------------------------------------------------------------- bad input: 400, audited invalid
@pytest.mark.parametrize("raw, code", [
    (b'{"job_id": 201,', "malformed_json"),
    (b"", "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    (b"[1, 2]", "wrong_type"),
    (json.dumps({**SEED_JOB, "job_id": True}).encode(), "wrong_type"),
    (json.dumps({**SEED_JOB, "permissions": "execute_inference"}).encode(), "wrong_type"),
    (json.dumps({**SEED_JOB, "zone": ZONE}).encode(), "unknown_field"),
    (json.dumps({**SEED_JOB, "secret_references": [{"vault": "ml-vault", "secret": "t", "value": "s3cr3t"}]}).encode(),
     "unknown_field"),
    (json.dumps({"job_id": 201, "permissions": ["x"]}).encode(), "missing_field"),
    (json.dumps({**SEED_JOB, "network_zone": "../../etc"}).encode(), "invalid_value"),
    (json.dumps({**SEED_JOB, "permissions": []}).encode(), "invalid_value"),
    (b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}', "body_too_large"),
])
def test_bad_input_is_a_400_with_a_machine_readable_reason(world, raw, code):
    w = world()
    status, body, resp = request("checks/job", raw)
    assert status == 400 and body["error"]["code"] == code
    assert body["error"]["correlation_id"] == resp.headers["X-Decision-Id"]
    (row,) = w.audit.rows
    assert (row.verdict, row.reason, row.delivery_id) == ("invalid", code, body["error"]["correlation_id"])
    assert "s3cr3t" not in json.dumps(body) + row.message


def test_wrong_media_type_and_method_are_rejected(world):
    world()
    status, body, _ = request("checks/job", SEED_JOB, headers={"Content-Type": "text/plain"})
    assert (status, body["error"]["code"]) == (400, "unsupported_media_type")
    status, body, _ = request("checks/job", SEED_JOB, method="GET")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")


@pytest.mark.parametrize("header", [
    "not base64!", "e30=",                                              # junk; {} (no auth_typ)
    encode_principal("not-a-guid"),
    encode_principal(b.ALICE)[:-8],                                      # truncated
    "eyJhdXRoX3R5cCI6ICJhYWQiLCAiY2xhaW1zIjogW119",                      # no object id claim
])
def test_a_malformed_principal_header_is_rejected_not_treated_as_anonymous(world, header):
    w = world()
    status, body, _ = request("checks/job", SEED_JOB, principal=None, headers={"X-MS-CLIENT-PRINCIPAL": header})
    assert (status, body["error"]["code"]) == (400, "invalid_principal_header")
    assert w.audit.rows[0].verdict == "invalid" and w.directory.calls == 0


def test_without_app_service_authentication_the_header_is_refused_not_believed(world):
    w = world(platform_auth=False)
    status, body, _ = request("checks/job", SEED_JOB)                    # a forged principal, say
    assert (status, body["error"]["code"]) == (400, "invalid_principal_header")
    assert "WEBSITE_AUTH_ENABLED" in body["error"]["message"] and w.directory.calls == 0
    status, body, _ = request("checks/job", SEED_JOB, principal=None)
    assert status == 200 and [r["rule"] for r in body["reasons"]] == ["identity"]


def test_bootstrap_trusts_the_header_only_where_app_service_says_authentication_is_on(monkeypatch):
    from guardrails.checks.principal import platform_auth_enabled

    assert platform_auth_enabled({"WEBSITE_AUTH_ENABLED": "True"}) is True
    assert platform_auth_enabled({"WEBSITE_AUTH_ENABLED": "False"}) is False and platform_auth_enabled({}) is False
    w = make_world(platform_auth=False)
    bootstrap._service, bootstrap._checks = w.service, None
    try:
        monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
        assert bootstrap.get_checks().trust_principal_header is True
        bootstrap._checks = None
        monkeypatch.delenv("WEBSITE_AUTH_ENABLED")
        assert bootstrap.get_checks().trust_principal_header is False
    finally:
        bootstrap.reset_service()
        bootstrap._checks = None


def test_principal_id_header_must_match_the_principal(world):
    world()
    status, body, _ = request("checks/job", SEED_JOB, headers={"X-MS-CLIENT-PRINCIPAL-ID": b.BOB})
    assert (status, body["error"]["code"]) == (400, "invalid_principal_header")


# ---------------------------------------------------------------- internal failures
def _no_internals(body: dict) -> None:
    text = json.dumps(body)
    for leak in ("Traceback", "File \"", "RuntimeError", "azure-", "python", "pydantic", "boom"):
        assert leak not in text


def test_graph_unavailable_is_a_503_with_a_correlation_id_and_a_failed_row(world):
    w = world()
    w.directory.error = ArmTransient("Graph checkMemberGroups failed (ServiceRequestError)")
    status, body, resp = request("checks/job", SEED_JOB)
    assert status == 503 and body["error"]["code"] == "unavailable" and resp.headers["Retry-After"]
    assert w.audit.rows[-1].verdict == "failed" and w.audit.rows[-1].delivery_id == body["error"]["correlation_id"]
    _no_internals(body)


def test_audit_store_down_is_a_503_and_never_an_unaudited_allow(world):
    w = world()
    w.audit.fail = True
    status, body, _ = request("checks/job", SEED_JOB)
    assert status == 503 and body["error"]["code"] == "unavailable" and "allowed" not in body


def test_an_unexpected_error_is_a_500_without_details(world, monkeypatch, caplog):
    w = world()
    monkeypatch.setattr("guardrails.checks.service.evaluate_job", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    status, body, _ = request("checks/job", SEED_JOB)
    assert status == 500 and set(body["error"]) == {"code", "message", "correlation_id", "details"}
    assert body["error"]["code"] == "internal_error" and body["error"]["details"] == []
    _no_internals(body)
    assert w.audit.rows[-1].verdict == "failed"
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)   # the stack goes to the log


# ---------------------------------------------------------------- resources
def test_resource_check_reports_without_writing(world):
    res = b.storage()
    w = world([res])
    status, body, _ = request("checks/resource", {"resource_id": res["id"]})
    assert status == 200 and body["allowed"] is False and body["verdict"] == "dry_run"
    assert {r["rule"] for r in body["reasons"]} == {"storage-private/public-network-access-disabled",
                                                   "storage-private/blob-public-access-off"}
    assert w.arm.writes() == [] and w.arm.calls == [("GET", res["id"])]
    (row,) = w.audit.rows
    assert row.event_type == "Guardrails.CheckResource" and row.delivery_id == body["decision_id"]
    assert row.actor.object_id == b.ALICE


def test_resource_check_answers_audit_mode_as_the_other_checks_do(world):
    """``dry_run`` because the only policy that would deny is in audit mode: allowed (as the job
    check answers); ``dry_run`` of an enforcing policy asked without remediate: denied."""
    from guardrails.policy.loader import load_directory

    shipped = {p.id: p for p in load_directory(*metadata_dirs())}
    res = b.storage()
    world([res], docs=[{**shipped["storage-private"].to_document(), "mode": "audit"}])
    status, body, _ = request("checks/resource", {"resource_id": res["id"]})
    assert status == 200 and body["verdict"] == "dry_run" and body["allowed"] is True
    assert {r["rule"] for r in body["reasons"]} == {"storage-private/public-network-access-disabled",
                                                   "storage-private/blob-public-access-off"}


def test_resource_check_of_a_compliant_resource_is_allowed(world):
    res = b.storage(pna="Disabled", blob=False)
    world([res])
    _, body, _ = request("checks/resource", {"resource_id": res["id"]})
    assert body["allowed"] is True and body["verdict"] == "compliant" and body["policy_version"] == "storage-private@1"


def test_remediate_only_for_callers_policy_allows_at_that_scope(world):
    res = b.workspace()
    w = world([res], docs=[ACCESS])
    status, body, _ = request("checks/resource", {"resource_id": res["id"]}, params={"remediate": "true"})
    assert status == 403 and body["allowed"] is False and body["reasons"][0]["rule"] == "remediate-not-permitted"
    assert w.arm.calls == [] and w.audit.rows[-1].verdict == "invalid"
    assert w.audit.rows[-1].reason == "remediate-not-permitted"
    status, body, _ = request("checks/resource", {"resource_id": res["id"]}, params={"remediate": "true"},
                              principal=REMEDIATOR)
    assert status == 200 and body["verdict"] == "remediated" and body["allowed"] is True
    assert w.arm.resources[res["id"].lower()]["properties"]["publicNetworkAccess"] == "Disabled"
    elsewhere = b.workspace("mlw-lab", rg="rg-lab")
    w.arm.resources[elsewhere["id"].lower()] = elsewhere
    status, _, _ = request("checks/resource", {"resource_id": elsewhere["id"]}, params={"remediate": "true"},
                           principal=REMEDIATOR)
    assert status == 403


@pytest.mark.parametrize("rid", ["/subscriptions/x/../../etc", "/subscriptions/" + b.SUB + "/providers",
                                 "/subscriptions/" + b.SUB + "/resourceGroups/rg/providers/Microsoft.Storage"])
def test_a_bad_arm_id_is_a_400_before_any_call(world, rid):
    w = world()
    status, body, _ = request("checks/resource", {"resource_id": rid})
    assert (status, body["error"]["code"]) == (400, "invalid_resource_id") and w.arm.calls == []


@pytest.mark.parametrize("value", ["yes", "", "1", "True", " true"])
def test_remediate_query_must_be_a_boolean(world, value):
    w = world([b.storage()])
    status, body, _ = request("checks/resource", {"resource_id": b.storage()["id"]}, params={"remediate": value})
    assert (status, body["error"]["code"]) == (400, "invalid_query") and w.arm.calls == []


def test_arm_throttling_is_a_503(world):
    res = b.storage()
    w = world([res])
    w.arm.errors["GET"] = ArmThrottled("GET: ARM answered 429; retry budget exhausted", status=429)
    status, body, _ = request("checks/resource", {"resource_id": res["id"]})
    assert status == 503 and body["error"]["code"] == "unavailable"
    assert w.audit.rows[-1].verdict == "failed" and w.audit.rows[-1].delivery_id == body["error"]["correlation_id"]


def test_a_resource_no_policy_covers_is_not_allowed(world):
    world()
    rid = b.rid("Microsoft.Compute", "virtualMachines", "vm1")
    _, body, _ = request("checks/resource", {"resource_id": rid})
    assert body["allowed"] is False and body["verdict"] == "ignored" and body["reasons"][0]["rule"] == "not_covered"


# ---------------------------------------------------------------- model promotion
def test_model_promotion_to_production_needs_tags_order_and_an_explicit_version(world):
    w = world()
    ok = {"model": "fraud-clf", "version": "7", "from_stage": "validated", "to_stage": "production", "tags": GOOD_TAGS}
    _, body, _ = request("checks/model-promotion", ok)
    assert body["allowed"] is True and body["policy_version"] == "model-registry@1"
    _, body, _ = request("checks/model-promotion", {**ok, "version": "latest"})
    assert [r["rule"] for r in body["reasons"]] == ["explicit-version"]
    _, body, _ = request("checks/model-promotion", {**ok, "from_stage": "candidate"})
    assert [r["rule"] for r in body["reasons"]] == ["stage-order"]
    _, body, _ = request("checks/model-promotion", {**ok, "tags": {k: v for k, v in GOOD_TAGS.items() if k != "git_sha"}})
    assert [r["rule"] for r in body["reasons"]] == ["required-tags"] and "git_sha" in body["reasons"][0]["message"]
    assert [r.event_type for r in w.audit.rows] == ["Guardrails.CheckModelPromotion"] * 4


def test_no_model_registry_policy_in_force_denies(world):
    world(docs=[{**next(p for p in load_directory(*metadata_dirs()) if p.id == "model-registry").to_document(),
                 "mode": "off"}])
    _, body, _ = request("checks/model-promotion", {"model": "m", "version": 1, "to_stage": "candidate", "tags": GOOD_TAGS})
    assert body["allowed"] is False and body["reasons"][0]["rule"] == "model-registry-policy"


# ---------------------------------------------------------------- health, document
def test_health_is_anonymous_and_says_nothing_else(world):
    world()
    status, body, resp = request("health", method="GET", principal=None, headers={"Content-Type": ""})
    assert (status, body) == (200, {"status": "ok"})


def app_functions() -> list:
    """The app's functions as the host indexes them, from a fresh run of ``function_app.py``
    (``FunctionApp.get_functions()`` may be called only once per app object)."""
    return runpy.run_path(str(ROOT / "function_app.py"))["app"].get_functions()


def test_the_served_document_is_the_built_one_and_matches_the_app(world):
    world()
    status, body, _ = request("openapi.json", method="GET")
    assert status == 200 and body == openapi_document()
    served = {(f"/{b_['route']}", m.lower()) for f in app_functions()
              for b_ in [json.loads(f.get_function_json())["bindings"][0]]
              if b_["type"] == "httpTrigger" and (b_["route"].startswith("checks/") or b_["route"] in ("health", "openapi.json"))
              for m in b_["methods"]}
    documented = {(path, method) for path, ops in body["paths"].items() for method in ops}
    assert documented == served


def test_every_answer_is_one_audit_row_with_its_decision_id(world):
    res = b.storage()
    w = world([res])
    ids = [request("checks/job", SEED_JOB)[1]["decision_id"],
           request("checks/job", b"{")[1]["error"]["correlation_id"],
           request("checks/resource", {"resource_id": res["id"]})[1]["decision_id"],
           request("checks/model-promotion", {"model": "m", "version": 1, "to_stage": "candidate"})[1]["decision_id"]]
    assert [r.delivery_id for r in w.audit.rows] == ids and len(set(ids)) == 4


# ---------------------------------------------------------------- CLI
def test_cli_check_commands_exit_0_allowed_1_denied_2_error(world, capsys):
    from guardrails.cli import main

    res = b.workspace()
    w = world([res])
    job = ["check", "job", "--job-id", "201", "--identity", b.ALICE, "--zone", ZONE, "--permission", "execute_inference",
           "--secret", "ml-vault/databricks-token"]
    assert main(job) == 0 and json.loads(capsys.readouterr().out)["allowed"] is True
    assert main([*job[:-2], "--secret", "ml-vault/other"]) == 1
    assert "secret-references" in capsys.readouterr().out
    assert main(["check", "job", "--job-id", "201", "--identity", "nobody", "--zone", ZONE, "--permission", "x"]) == 2
    assert main(["check", "model-promotion", "--model", "m", "--version", "latest", "--from-stage", "validated",
                 "--to-stage", "production", *sum((["--tag", f"{k}={v}"] for k, v in GOOD_TAGS.items()), [])]) == 1
    assert main(["check", "resource", res["id"]]) == 1 and w.arm.writes() == []
    assert main(["check", "resource", res["id"], "--remediate"]) == 0 and len(w.arm.writes()) == 1
    assert main(["check", "resource", "/subscriptions/x/../y"]) == 2
    w.arm.errors["GET"] = ArmThrottled("throttled", status=429)
    assert main(["check", "resource", res["id"]]) == 2
    # the bad job request is audited as over HTTP: one ``invalid`` row (with the two decisions)
    assert [r.event_type for r in w.audit.rows].count("Guardrails.CheckJob") == 3
