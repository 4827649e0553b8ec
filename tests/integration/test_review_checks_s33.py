"""Review s33 — the pre-flight check API (``guardrails/checks/``, ``guardrails/triggers/http_checks.py``,
the CLI ``python -m guardrails check``), end to end: the HTTP functions with real
``azure.functions.HttpRequest`` objects, policies synced to Azurite, Graph ``checkMemberGroups`` on
the local HTTPS emulator, audit rows read back from Table Storage.

Each test that is not labelled a control FAILS on the current code; its docstring says what is
wrong and what is expected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from guardrails.adapters.audit_tables import TableAuditSink
from tests import builders as b
from tests.functional.test_http_checks import ORCHESTRATOR, SEED_JOB, http_request
from tests.integration.test_http_checks import _access_dir, _call, app_service_authentication  # noqa: F401

pytestmark = pytest.mark.integration
DIRECTORY = {"directory": {"groups": {b.DS_GROUP: [b.ALICE]}}}
GRAPH_DOWN = {"faults": [{"method": "POST", "path_regex": ".*checkMemberGroups.*", "status": 503, "times": None}]}


def _history(h, resource_id: str):
    """The rows the audit index holds for one subject (what ``guardrails report`` / an operator reads)."""
    return TableAuditSink(h.tables, shards=h.settings.audit_shards).read_resource(resource_id)


# ------------------------------------------------------------------ failure rows
def test_a_job_check_graph_could_not_answer_is_audited_under_its_job_and_says_what_was_asked(harness):
    """DEFECT. README (Pre-flight checks, Audit): "Every answer — allowed, denied, bad input,
    failure — is one row: ... ``resource_id`` ``job:<id>`` ..." and "A job check's message also names
    what was asked about, whatever the answer". When Graph cannot answer, the body has already been
    validated (job id, zone, secret references are known), yet ``CheckApi._record_failure``
    (guardrails/checks/api.py) writes the ``failed`` row through ``CheckService.record`` with
    ``subject=""`` and the fixed message "the check could not be answered": the row has no
    ``resource_id``, so it is not in job:201's history at all, and it does not say which identity,
    zone or secret references the failed check was about. Expected: the failed row carries
    ``resource_id`` ``job:201`` and the "asked: ..." text, as the decided rows do."""
    from guardrails.triggers.http_checks import check_job

    h = harness([], world={**DIRECTORY, **GRAPH_DOWN})
    status, body = _call(check_job, "checks/job", SEED_JOB)
    assert status == 503 and body["error"]["code"] == "unavailable"      # fail closed: correct
    (row,) = [r for r in h.stored_rows() if r.delivery_id == body["error"]["correlation_id"]]
    assert row.verdict == "failed" and row.event_type == "Guardrails.CheckJob"
    assert row.resource_id == "job:201", f"failed row has resource_id {row.resource_id!r}"
    assert "pe-databricks-eastus" in row.message and "ml-vault/databricks-token" in row.message, row.message
    assert body["error"]["correlation_id"] in {r.delivery_id for r in _history(h, "job:201")}


def test_control_a_decided_job_check_is_in_the_jobs_history(harness):
    """CONTROL (passes): the boundary of the test above — a decided job check's row is indexed under
    ``job:201`` and names what was asked."""
    from guardrails.triggers.http_checks import check_job

    h = harness([], world=DIRECTORY)
    status, body = _call(check_job, "checks/job", SEED_JOB)
    assert status == 200 and body["allowed"] is True
    (row,) = [r for r in _history(h, "job:201") if r.delivery_id == body["decision_id"]]
    assert "pe-databricks-eastus" in row.message and "ml-vault/databricks-token" in row.message


def test_the_cli_audits_a_job_check_graph_could_not_answer(harness, capsys):
    """DEFECT. README: the CLI has the "same audit rows" as HTTP, and every answer — failure
    included — is one row. Over HTTP a Graph outage during a job check is a ``failed`` row
    (``CheckApi._record_failure``); ``guardrails/checks/cli.py`` ``main`` catches the ``ArmError``
    under ``except GuardrailsError``, prints it and returns 2, recording a row only for
    ``InvalidArmId``: the check leaves no trace in the audit table although the table is up.
    Expected: one ``failed`` row (event type ``Guardrails.CheckJob``) for the attempt."""
    from guardrails.cli import main

    h = harness([], world={**DIRECTORY, **GRAPH_DOWN})
    before = {r.delivery_id for r in h.stored_rows()}
    rc = main(["check", "job", "--job-id", "201", "--zone", "pe-databricks-eastus", "--permission",
               "execute_inference", "--identity", b.ALICE])
    err = capsys.readouterr().err
    assert rc == 2 and "503" in err                                     # an error, not an answer: correct
    new = [r for r in h.stored_rows() if r.delivery_id not in before]
    assert [(r.event_type, r.verdict) for r in new] == [("Guardrails.CheckJob", "failed")], new


# ------------------------------------------------------------------ the row's message
def test_an_on_behalf_denial_row_still_names_the_identity_it_was_asked_for(harness, tmp_path):
    """DEFECT. README: a job check's row names what was asked about, "whatever the answer: the
    identity (the one named on behalf of someone ...), the zone and the secret references".
    ``CheckService._answer`` (guardrails/checks/service.py) builds the message as
    ``<every reason>; ... (asked: ...) [caller]`` with no bound, and the audit sink keeps the first
    2,000 characters of a message (``audit_tables._entity``). A denial with many findings (here 30
    permissions the job does not grant) pushes "asked: identity <object id>; zone ...; secret
    references ..." and the caller off the stored row. The identity named on behalf of someone is
    then nowhere in the row (``actor`` is the orchestrator; no finding names the identity, which is
    in the group): the audit cannot say for whom the orchestrator asked. Expected: the asked part
    (and the caller) survive — e.g. put them first, or cut the reasons to fit."""
    from guardrails.triggers.http_checks import check_job

    h = harness([], world=DIRECTORY, extra_metadata=[_access_dir(tmp_path)])
    perms = [f"unknown_permission_{i:02d}_" + "x" * 40 for i in range(30)]
    req = {**SEED_JOB, "identity": {"object_id": b.ALICE}, "permissions": perms}
    status, body = _call(check_job, "checks/job", req, principal=ORCHESTRATOR)
    assert status == 200 and body["allowed"] is False
    assert {r["rule"] for r in body["reasons"]} == {"permissions"}       # the identity itself passes
    (row,) = [r for r in h.stored_rows() if r.delivery_id == body["decision_id"]]
    assert row.actor.object_id == ORCHESTRATOR
    assert f"identity {b.ALICE}" in row.message, f"stored message ends ...{row.message[-120:]!r}"
    assert "ml-vault/databricks-token" in row.message


# ------------------------------------------------------------------ a refused remediation is no decision
def _report(h):
    from datetime import datetime, timedelta, timezone

    from guardrails.report import build_report

    now = datetime.now(timezone.utc)
    return build_report(h.stored_rows(), since=now - timedelta(days=2), until=now + timedelta(minutes=5))


def test_a_refused_remediation_request_does_not_make_a_compliant_resource_an_open_violation(harness, tmp_path):
    """DEFECT. ``CheckService.check_resource`` (guardrails/checks/service.py) answers a caller
    without a remediate grant 403 and audits it through ``_answer`` as verdict ``violation`` with
    ``resource_id`` = the ARM id — before anything about the resource is read. The compliance report
    (README "open violations (latest decision violation ...)"; ``guardrails/report.py``) takes that
    row as the resource's latest evaluated decision, and the decision topic gets a
    ``Guardrails.Decision.Violation`` about it. So any holder of the function key can turn a
    compliant resource (or an id that does not exist) into an "open violation" and lower the
    compliance KPI with one ``?remediate=true`` call. The 403 is a judgement on the caller, not on
    the resource. Expected: the refusal is audited (one row) but not as a decision on the resource
    — e.g. verdict ``invalid``/``ignored`` with reason ``remediate-not-permitted`` — so the
    report still shows the resource compliant."""
    from guardrails.triggers.http_checks import check_resource

    res = b.storage(pna="Disabled", blob=False)
    h = harness([res], extra_metadata=[_access_dir(tmp_path)], decision_topic=True)
    status, body = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    assert status == 200 and body["verdict"] == "compliant" and body["allowed"] is True
    status, refused = _call(check_resource, "checks/resource", {"resource_id": res["id"]},
                            params={"remediate": "true"}, principal=b.BOB)
    assert status == 403 and refused["reasons"][0]["rule"] == "remediate-not-permitted"   # correct
    assert len(h.arm_requests("GET")) == 1               # the refused request read nothing
    report = _report(h)
    assert [v.resource_id for v in report.open_violations] == [], report.open_violations
    assert report.compliance == 1.0
    published = [e for e in h.emu.published_events("decisions") if e["id"] == refused["decision_id"]]
    assert [e["type"] for e in published] != ["Guardrails.Decision.Violation"], published


def test_control_an_ordinary_denied_check_is_an_open_violation(harness):
    """CONTROL (passes): a resource check that finds the live resource non-compliant is rightly the
    resource's latest decision and an open violation in the report."""
    from guardrails.triggers.http_checks import check_resource

    res = b.storage()
    h = harness([res])
    status, body = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    assert status == 200 and body["allowed"] is False
    assert [v.resource_id.lower() for v in _report(h).open_violations] == [res["id"].lower()]


# ------------------------------------------------------------------ an identity the directory does not hold
def test_a_job_check_for_an_identity_graph_does_not_know_is_denied_not_unavailable(harness, tmp_path):
    """DEFECT (low). An orchestrator with an on-behalf grant asks about an identity that is not in
    the directory (deleted, or a mistyped object id). Graph answers: 404 on checkMemberGroups.
    ``GraphGroupResolver.is_member`` raises ``PrincipalNotFound`` (an ``ArmTransient``), which
    ``CheckApi._check`` (guardrails/checks/api.py) turns into 503 "a dependency did not answer
    (transient); retry" with ``Retry-After`` — forever: the pipeline retries a question that has an
    answer, the audit shows a ``failed`` row (a Graph outage) instead of a denial, and operators are
    sent to look for an outage. Graph did answer (README: 503 is for when "Table Storage, ARM or
    Graph cannot answer"). Expected: a 200 denial naming the ``identity`` (not in the directory),
    audited ``violation`` — still fail-closed."""
    from guardrails.triggers.http_checks import check_job

    ghost = "0badc0de-0000-4000-8000-00000000dead"
    world = {"directory": {"groups": {b.DS_GROUP: [b.ALICE]}, "objects": {b.ALICE: "User", ORCHESTRATOR: "ServicePrincipal"}}}
    h = harness([], world=world, extra_metadata=[_access_dir(tmp_path)])
    status, body = _call(check_job, "checks/job", {**SEED_JOB, "identity": {"object_id": ghost}}, principal=ORCHESTRATOR)
    graph = [q for q in h.emu.requests if q["host"] == "graph"]
    assert graph and graph[-1]["status"] == 404                       # Graph answered: no such object
    assert status == 200, (status, body)
    assert body["allowed"] is False and body["verdict"] == "violation"
    assert {r["rule"] for r in body["reasons"]} <= {"identity", "access-group", "allowed-identity"}


# ------------------------------------------------------------------ the CLI and a key given twice
def test_the_cli_refuses_a_tag_given_twice_as_the_api_refuses_a_key_sent_twice(harness, capsys):
    """DEFECT (low). README: a key sent twice in one JSON object is ``malformed_json`` "where a JSON
    parser would silently keep the last"; ``guardrails/checks/cli.py`` says "What it refuses, it
    refuses as the HTTP API does". ``main`` builds the tags with ``dict(_tag(t) for t in args.tag)``:
    ``--tag owner= --tag owner=ds_team`` silently keeps the last value and the promotion is allowed,
    while the same request over HTTP (``{"owner": "", "owner": "ds_team"}``) is a 400. Expected:
    exit 2 naming the repeated tag (and an ``invalid`` row), as over HTTP."""
    from guardrails.cli import main
    from guardrails.triggers.http_checks import check_model_promotion

    harness([])
    tags = {"data_version": "2026-11-01", "git_sha": "3f2a9c1", "metric_summary": "auc=0.93"}
    raw = ('{"model": "fraud-clf", "version": "7", "from_stage": "validated", "to_stage": "production", "tags": {'
           + ", ".join(f'"{k}": "{v}"' for k, v in tags.items()) + ', "owner": "", "owner": "ds_team"}}').encode()
    status, body = _call(check_model_promotion, "checks/model-promotion", raw)
    assert status == 400 and body["error"]["code"] == "malformed_json"          # the API: refused
    args = ["check", "model-promotion", "--model", "fraud-clf", "--version", "7", "--from-stage", "validated",
            "--to-stage", "production", *[a for k, v in tags.items() for a in ("--tag", f"{k}={v}")],
            "--tag", "owner=", "--tag", "owner=ds_team"]
    rc = main(args)
    out = capsys.readouterr()
    assert rc == 2, f"exit {rc}: {out.out[:300]}"


# ------------------------------------------------------------------ controls: caching, fail-closed policy table
def test_control_a_synced_job_policy_change_takes_effect_within_the_policy_ttl(harness, tmp_path):
    """CONTROL (passes): README "GUARDRAILS_POLICY_TTL_SECONDS ... a sync reaches every warm worker
    within it": job 201 moved to another private endpoint, then switched off, is denied after the TTL."""
    import time

    from guardrails.sync import metadata_dirs, sync_metadata
    from guardrails.triggers.http_checks import check_job

    h = harness([], world=DIRECTORY, env={"GUARDRAILS_POLICY_TTL_SECONDS": "0.5"})
    assert _call(check_job, "checks/job", SEED_JOB)[1]["allowed"] is True
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "metadata/jobs/job-201.yaml").read_text())
    site = tmp_path / "site"
    site.mkdir()
    for version, change in ((2, {"network_rules": [{"service": "Databricks", "private_endpoint": "pe-other"}]}),
                            (3, {"mode": "off"})):
        doc.update(version=version, **change)
        (site / "job-201.yaml").write_text(yaml.safe_dump(doc))
        sync_metadata(h.repo, metadata_dirs([site]))
        time.sleep(0.6)
        status, body = _call(check_job, "checks/job", SEED_JOB)
        assert status == 200 and body["allowed"] is False
        assert body["reasons"][0]["rule"] == ("network-zone" if version == 2 else "job-policy")


def test_control_an_unreadable_policy_table_is_a_503_never_an_answer(harness):
    """CONTROL (passes): the policy table gone (cold cache) — 503 with Retry-After, not a decision."""
    from guardrails.triggers.http_checks import check_job

    h = harness([], world=DIRECTORY)
    h.tables.service.delete_table(h.tables.policies_name)
    resp = check_job(http_request("checks/job", SEED_JOB))
    body = json.loads(resp.get_body())
    assert resp.status_code == 503 and resp.headers.get("Retry-After") and body["error"]["code"] == "unavailable"
