"""The check API end to end: the HTTP functions with real ``azure.functions.HttpRequest`` objects,
policies synced to Azurite, the live resource read (and fixed) on the HTTPS emulator through the
real ARM SDK, group membership through Graph ``checkMemberGroups`` on the emulator, audit rows
read back from Table Storage. And the CLI, in its own process, against the same emulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import builders as b
from tests.functional.test_http_checks import ACCESS, REMEDIATOR, SEED_JOB, http_request

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DIRECTORY = {"directory": {"groups": {b.DS_GROUP: [b.ALICE]}}}


@pytest.fixture(autouse=True)
def app_service_authentication(monkeypatch):
    """Deployed behind App Service authentication, which sets this for the app."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")


def _access_dir(tmp_path) -> Path:
    d = tmp_path / "site"
    d.mkdir(exist_ok=True)
    (d / "check-access.yaml").write_text(yaml.safe_dump(ACCESS))
    return d


def _call(fn, route, body, **kw):
    resp = fn(http_request(route, body, **kw))
    return resp.status_code, json.loads(resp.get_body())


def _graph(h) -> list[dict]:
    return [q for q in h.emu.requests if q["host"] == "graph"]


def test_job_201_through_http_with_graph_membership_and_audit_in_table_storage(harness):
    from guardrails.triggers.http_checks import check_job

    h = harness([], world=DIRECTORY)
    status, allowed = _call(check_job, "checks/job", SEED_JOB)
    assert status == 200 and allowed["allowed"] is True and allowed["policy_version"] == "job-201@1"
    status, denied = _call(check_job, "checks/job", SEED_JOB, principal=b.BOB)
    assert status == 200 and [r["rule"] for r in denied["reasons"]] == ["access-group"]
    # one checkMemberGroups call per identity (then cached), with the group's object id
    calls = _graph(h)
    assert [c["method"] for c in calls] == ["POST", "POST"] and all("checkMemberGroups" in c["path"] for c in calls)
    _call(check_job, "checks/job", SEED_JOB)
    assert len(_graph(h)) == 2
    stored = {r.delivery_id: r for r in h.stored_rows()}
    assert stored[allowed["decision_id"]].verdict == "compliant"
    assert stored[denied["decision_id"]].verdict == "violation"
    assert stored[denied["decision_id"]].actor.object_id == b.BOB
    assert stored[denied["decision_id"]].event_type == "Guardrails.CheckJob"


def test_resource_check_reads_the_live_resource_and_remediates_only_for_allowed_callers(harness, tmp_path):
    from guardrails.triggers.http_checks import check_resource

    res = b.workspace()
    h = harness([res], extra_metadata=[_access_dir(tmp_path)])
    status, body = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    assert status == 200 and body["verdict"] == "dry_run" and body["allowed"] is False
    assert [q["method"] for q in h.arm_requests()] == ["GET"]
    h.emu.clear_requests()
    status, body = _call(check_resource, "checks/resource", {"resource_id": res["id"]}, params={"remediate": "true"})
    assert status == 403 and body["reasons"][0]["rule"] == "remediate-not-permitted" and h.arm_requests() == []
    status, body = _call(check_resource, "checks/resource", {"resource_id": res["id"]}, params={"remediate": "true"},
                         principal=REMEDIATOR)
    assert status == 200 and body["verdict"] == "remediated" and body["allowed"] is True
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert [q["method"] for q in h.arm_requests()] == ["GET", "PATCH", "GET"]
    stored = {r.delivery_id: r for r in h.stored_rows()}
    assert stored[body["decision_id"]].verdict == "remediated"
    assert stored[body["decision_id"]].actor.object_id == REMEDIATOR


def test_a_bad_arm_id_is_rejected_before_any_request_and_audited(harness):
    from guardrails.triggers.http_checks import check_resource

    h = harness([])
    status, body = _call(check_resource, "checks/resource",
                         {"resource_id": f"/subscriptions/{b.SUB}/resourceGroups/rg/../../providers/x"})
    assert status == 400 and body["error"]["code"] == "invalid_resource_id" and h.emu.requests == []
    (row,) = [r for r in h.stored_rows() if r.delivery_id == body["error"]["correlation_id"]]
    assert row.verdict == "invalid" and row.reason == "invalid_resource_id"


def test_arm_unavailable_is_a_503_with_a_correlation_id(harness):
    from guardrails.triggers.http_checks import check_resource

    res = b.storage()
    h = harness([res], world={"faults": [{"method": "GET", "path_regex": ".*storageAccounts.*", "status": 503,
                                          "times": None}]})
    status, body = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    assert status == 503 and body["error"]["code"] == "unavailable"
    assert "Traceback" not in json.dumps(body) and "azure" not in json.dumps(body).lower()
    (row,) = [r for r in h.stored_rows() if r.delivery_id == body["error"]["correlation_id"]]
    assert row.verdict == "failed"


def test_cli_checks_in_their_own_process(harness):
    h = harness([b.storage()], world=DIRECTORY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAILS_")}
    env.update(h.env)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "guardrails", "check", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    job = ["job", "--job-id", "201", "--zone", "pe-databricks-eastus", "--permission", "execute_inference",
           "--secret", "ml-vault/databricks-token"]
    ok = run(*job, "--identity", b.ALICE)
    assert ok.returncode == 0, ok.stderr
    decision = json.loads(ok.stdout)
    assert decision["allowed"] is True
    no = run(*job, "--identity", b.BOB)
    assert no.returncode == 1 and json.loads(no.stdout)["reasons"][0]["rule"] == "access-group"
    res = run("resource", b.storage()["id"])
    assert res.returncode == 1 and json.loads(res.stdout)["verdict"] == "dry_run"
    bad = run("resource", "not-an-id")
    assert bad.returncode == 2 and "error:" in bad.stderr
    stored = {r.delivery_id: r for r in h.stored_rows()}
    row = stored[decision["decision_id"]]
    assert row.event_type == "Guardrails.CheckJob"
    # the row names who ran the CLI: the identity of its credential (here the local one)
    assert row.actor.object_id == h.env["GUARDRAILS_LOCAL_OBJECT_ID"]
    assert row.message.endswith("[cli as guardrails-local]")
    # a resource check's row too (it ended with the decision alone)
    (res_row,) = [r for r in h.stored_rows() if r.event_type == "Guardrails.CheckResource"
                  and r.delivery_id == json.loads(res.stdout)["decision_id"]]
    assert res_row.message.endswith("[cli as guardrails-local]") and res_row.verdict == "dry_run"


def test_a_denied_job_check_is_published_as_a_decision_event_and_an_allowed_one_is_not(harness):
    from guardrails.triggers.http_checks import check_job

    h = harness([], world=DIRECTORY, decision_topic=True)
    _status, allowed = _call(check_job, "checks/job", SEED_JOB)
    _status, denied = _call(check_job, "checks/job", SEED_JOB, principal=b.BOB)
    assert allowed["allowed"] is True and denied["allowed"] is False
    (event,) = h.emu.published_events("decisions")
    assert event["id"] == denied["decision_id"] and event["type"] == "Guardrails.Decision.Violation"
    assert [v["rule"] for v in event["data"]["violations"]] == ["access-group"]
    assert event["data"]["event_type"] == "Guardrails.CheckJob"


def test_a_resource_check_row_carries_the_callers_correlation_id(harness):
    from guardrails.triggers.http_checks import check_resource

    res = b.storage()
    h = harness([res])
    status, answer = _call(check_resource, "checks/resource", {"resource_id": res["id"]},
                           headers={"x-correlation-id": "pipeline-run-4711"})
    assert status == 200 and answer["verdict"] == "dry_run"
    (row,) = [r for r in h.stored_rows() if r.delivery_id == answer["decision_id"]]
    assert row.correlation_id == "pipeline-run-4711" and row.actor.object_id == b.ALICE
