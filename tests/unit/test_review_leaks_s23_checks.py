"""Review s23 (secret leaks), the check service and ``guardrails check``: a credential-shaped
string sent where a name belongs is never echoed — not in the answer (its subject, its reasons),
not in the audit row, not in a log line, not on the CLI's stdout or stderr. The CLI refuses and
describes as the HTTP API does. Over in-memory stores (``tests.functional.fakes``); the HTTP API
through its framework-free ``CheckApi`` (no ``azure.functions`` here).
"""

from __future__ import annotations

import argparse
import json
import logging

import pytest

from guardrails import bootstrap
from guardrails.checks import cli as ckcli
from guardrails.checks.api import CheckApi, HttpIn
from guardrails.checks.principal import encode_principal
from guardrails.checks.service import Caller, CheckService
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory
from guardrails.secrets.credentials import classify, looks_like_credential
from guardrails.service import GuardrailsService
from guardrails.settings import Settings
from guardrails.sync import metadata_dirs
from tests import builders as b
from tests.functional.fakes import (
    FakeArm, MemoryAudit, MemoryBreakers, MemoryIdempotency, MemoryPending, MemoryPolicyRepo,
)

TOKEN = "Qx7Zk2Pm9Lw4Rt6Yv8aB3cD5eF7gH9jK1mN3pQ5rS7tU9"      # opaque key: no known format, no separator
PAT = "ghp_" + "Qx7Zk2Pm9Lw4Rt6Yv8a1B2c3D4e5F6g7H8"            # a classic GitHub token
STORAGE_KEY = "Qx7Zk2Pm9Lw4Rt6Yv8+abcDEF/0123456789abcdefGHIJKLmnopqrSTUVwxyz0123456789+ABCDEFghijklmnop=="
KEY = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEf"
ZONE = "pe-databricks-eastus"
SEED_JOB = {"job_id": 201, "network_zone": ZONE, "permissions": ["execute_inference"],
            "secret_references": [{"vault": "ml-vault", "secret": "databricks-token"}]}
GOOD_TAGS = {"data_version": "2026-11-01", "git_sha": "3f2a9c1", "metric_summary": "auc=0.93", "owner": "ds_team"}
JOB_NAME = "Train_ResNet50_ImageNet_Baseline_Experiment_Run1"      # a long name: a name, not a key


class _Groups:
    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = {g.lower(): {m.lower() for m in ms} for g, ms in groups.items()}

    def is_member(self, principal_id: str, group_id: str) -> bool:
        return principal_id.lower() in self.groups.get(group_id.lower(), set())


class _World:
    def __init__(self, resources=(), docs=()) -> None:
        by_id = {p.id: (p.source, p.to_document()) for p in load_directory(*metadata_dirs())}
        for d in docs:
            by_id[d["id"]] = (f"test:{d['id']}", d)
        self.arm, self.audit = FakeArm(resources), MemoryAudit()
        self.service = GuardrailsService(
            Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")})),
            policies=PolicyCache(MemoryPolicyRepo(list(by_id.values())), ttl_seconds=60), arm=self.arm,
            idempotency=MemoryIdempotency(), audit=self.audit, breakers=MemoryBreakers(), pending=MemoryPending())
        self.checks = CheckService(self.service, groups=_Groups({b.DS_GROUP: [b.ALICE]}), trust_principal_header=True)
        self.api = CheckApi(lambda: self.checks)

    def post(self, route: str, body: dict) -> tuple[int, dict]:
        headers = {"content-type": "application/json",
                   "x-ms-client-principal": encode_principal(b.ALICE, tenant_id=b.TENANT, upn="alic@contoso.com")}
        out = getattr(self.api, route)(HttpIn("POST", json.dumps(body).encode(), headers))
        return out.status, json.loads(out.body)

    def rows(self) -> str:
        return "".join(json.dumps(r.to_dict(), default=str) for r in self.audit.rows)


@pytest.fixture
def world(monkeypatch):
    made: list[_World] = []

    def make(*args, **kw) -> _World:
        w = _World(*args, **kw)
        bootstrap._service, bootstrap._checks = w.service, w.checks       # what the CLI's get_checks() returns
        made.append(w)
        return w

    monkeypatch.setattr(ckcli, "_acting_as", lambda: None)
    yield make
    bootstrap.reset_service()
    bootstrap._checks = None


def _cli(**kw) -> int:
    return ckcli.main(argparse.Namespace(**kw))


def _logged(caplog) -> str:
    return "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)


# ---------------------------------------------------------------- 3. the CLI as the HTTP API
def test_cli_refuses_a_resource_id_holding_a_token_before_reading_or_auditing(world, capsys):
    # GIVEN a well-formed ARM id whose resource group is a GitHub token
    w = world()
    rid = f"{b.rg_id(PAT)}/providers/Microsoft.Storage/storageAccounts/stmlprod"
    assert classify(PAT)
    # WHEN the CLI is asked to check it
    rc = _cli(action="resource", resource_id=rid, remediate=False)
    out, err = capsys.readouterr()
    # THEN it is refused as the API refuses it: by its field, never echoed, nothing read; one
    # ``invalid`` row as the API writes, that does not hold the token either
    assert rc == 2 and "resource_id: looks like a credential" in err
    assert PAT[4:20] not in out + err
    assert w.arm.calls == [] and [(r.verdict, r.reason) for r in w.audit.rows] == [("invalid", "invalid_value")]
    status, answer = w.post("resource", {"resource_id": rid})
    assert (status, answer["error"]["code"]) == (400, "invalid_value") and PAT[4:20] not in json.dumps(answer)
    assert len(w.audit.rows) == 2 and all(PAT[4:20] not in json.dumps(r.to_dict()) for r in w.audit.rows)


def test_cli_describes_a_tag_key_that_is_a_pasted_key_as_the_api_does(world, capsys):
    # GIVEN a tag "KEY=VALUE" that is a storage key (split at its first '=')
    w = world()
    # WHEN the CLI is asked to check the promotion
    rc = _cli(action="model-promotion", model="fraud-classifier", version="7", from_stage=None,
              to_stage="production", tag=[STORAGE_KEY])
    err = capsys.readouterr().err
    # THEN the validation error names the tag by "<key not shown>", as the API's field does
    assert rc == 2 and "tags.<key not shown>" in err
    assert STORAGE_KEY[:16] not in err and STORAGE_KEY[-40:-2] not in err
    status, answer = w.post("model_promotion", {"model": "fraud-classifier", "version": "7", "to_stage": "production",
                                                "tags": {STORAGE_KEY[:-2]: "="}})
    assert status == 400 and answer["error"]["details"][0]["field"] == "tags.<key not shown>"


def test_cli_describes_a_tag_argument_without_a_separator_that_is_a_key(world, capsys):
    world()
    rc = _cli(action="model-promotion", model="fraud-classifier", version="7", from_stage=None,
              to_stage="production", tag=[KEY + "0123456789abcdef0123"])
    err = capsys.readouterr().err
    assert rc == 2 and "expected KEY=VALUE" in err and KEY[:20] not in err


# ---------------------------------------------------------------- 4. names from the request
def test_an_opaque_job_id_is_described_in_the_answer_the_row_and_the_logs(world, caplog):
    # GIVEN an opaque key sent as the job id (no known format: the name gate admits it)
    caplog.set_level(logging.DEBUG)
    w = world()
    assert looks_like_credential(TOKEN) and classify(TOKEN) is None
    # WHEN the job is checked over HTTP
    status, answer = w.post("job", {**SEED_JOB, "job_id": TOKEN})
    # THEN it is denied (no policy for it) and the id is described, never written
    assert status == 200 and answer["allowed"] is False
    assert answer["subject"] == "job:<a job id of 45 characters, not shown: it looks like a credential>"
    assert "no job policy in force for job <a job id of 45" in answer["reasons"][0]["message"]
    (row,) = w.audit.rows
    assert row.resource_id == answer["subject"] and row.verdict == "violation"
    assert TOKEN[:20] not in json.dumps(answer) + w.rows() + _logged(caplog)


def test_an_opaque_job_id_is_described_by_the_cli_too(world, capsys):
    w = world()
    rc = _cli(action="job", job_id=TOKEN, identity=b.ALICE, zone=ZONE, permission=["execute_inference"],
              secret=["ml-vault/databricks-token"], role=None)
    out, err = capsys.readouterr()
    assert rc == 1 and json.loads(out)["subject"].startswith("job:<a job id of 45 characters")
    assert TOKEN[:20] not in out + err + w.rows()


def test_an_opaque_model_name_and_version_are_described_when_allowed(world):
    # GIVEN a promotion the registry policy allows, of a model and a version named by opaque keys
    w = world()
    status, answer = w.post("model_promotion", {"model": TOKEN, "version": KEY, "from_stage": "validated",
                                                "to_stage": "production", "tags": GOOD_TAGS})
    # THEN the subject and the row's message describe both
    assert status == 200 and answer["allowed"] is True, answer
    assert answer["subject"] == ("model:<a model name of 45 characters, not shown: it looks like a credential>"
                                 "/versions/<a version of 42 characters, not shown: it looks like a credential>")
    (row,) = w.audit.rows
    assert row.resource_id == answer["subject"] and "may move to production" in row.message
    assert TOKEN[:20] not in json.dumps(answer) + w.rows() and KEY[:20] not in json.dumps(answer) + w.rows()


def test_a_long_job_name_a_policy_declares_is_still_shown(world):
    # GIVEN a job policy whose job id is a long snake_case name (it looks like a key, but the
    # metadata names it): unchanged, its subject and row name it
    base = next(p for p in load_directory(*metadata_dirs()) if p.id == "job-201").to_document()
    w = world(docs=[{**base, "id": "job-train", "job_id": JOB_NAME}])
    status, answer = w.post("job", {**SEED_JOB, "job_id": JOB_NAME})
    assert status == 200 and answer["allowed"] is True and answer["subject"] == f"job:{JOB_NAME}"
    assert JOB_NAME in w.audit.rows[0].message


# ---------------------------------------------------------------- 6. the check service's messages
class _Decided:
    """The event path's decision, as the check service receives it (``service.check_resource``)."""

    def __init__(self, world: _World, row: AuditRow) -> None:
        self.policies, self.audit, self._row = world.service.policies, world.audit, row

    def check_resource(self, resource_id: str, **kw) -> AuditRow:
        return self._row


@pytest.mark.parametrize("before, message", [
    ("x" * 40 + KEY, "the value differs"),                        # repr cut at 77 characters: no closing quote
    ("owner", f"the owner's value '{KEY}' is refused"),          # an apostrophe before the quoted value
    ("owner", f"refused: {KEY} (unquoted)"),                      # not quoted at all
], ids=["repr-cut-short", "apostrophe", "unquoted"])
def test_a_resource_reason_never_carries_a_key_however_it_is_quoted(world, before, message):
    w = world()
    rid = f"{b.rg_id()}/providers/Microsoft.Storage/storageAccounts/stmlprod"
    row = AuditRow(event_id="d1", event_type="Guardrails.CheckResource", resource_id=rid, verdict="violation",
                   policies=["storage-private@1"],
                   violations=[ViolationRecord(policy="storage-private@1", rule="tags", property="tags.owner",
                                               before=before, after=None, outcome="violation", message=message)])
    checks = CheckService(_Decided(w, row), groups=_Groups({}))
    out = checks.check_resource(rid, remediate=False, caller=Caller(trusted=True), decision_id="d1")
    text = json.dumps(out.response.model_dump())
    assert out.response.reasons and out.response.reasons[0].rule == "storage-private/tags"
    assert KEY[:20] not in text and "not shown" in text


def test_an_invalid_answers_row_message_goes_through_the_safe_path(world):
    w = world()
    w.checks.record("job", "d2", Caller(), verdict="invalid", reason="invalid_value",
                    message=f"job_id: {TOKEN} is not a job id")
    (row,) = w.audit.rows
    assert row.verdict == "invalid" and TOKEN[:20] not in row.message
