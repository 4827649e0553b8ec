"""Review s23 (secret leaks), end to end: ``guardrails check`` in its own process refuses a
resource id holding a token as the HTTP API does (nothing read from ARM, nothing audited, nothing
echoed), and an opaque key sent as a job id or a model name reaches neither the HTTP answer nor
the audit row read back from Table Storage. Azurite, the HTTPS emulator, the real SDK clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import builders as b
from tests.functional.test_http_checks import GOOD_TAGS, SEED_JOB, http_request

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PAT = "ghp_" + "Qx7Zk2Pm9Lw4Rt6Yv8a1B2c3D4e5F6g7H8"
TOKEN = "Qx7Zk2Pm9Lw4Rt6Yv8aB3cD5eF7gH9jK1mN3pQ5rS7tU9"
DIRECTORY = {"directory": {"groups": {b.DS_GROUP: [b.ALICE]}}}


@pytest.fixture(autouse=True)
def app_service_authentication(monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")


def test_cli_refuses_a_resource_id_holding_a_token_without_reading_or_echoing_it(harness):
    h = harness([b.storage()], world=DIRECTORY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAILS_")}
    env.update(h.env)
    rid = f"{b.rg_id(PAT)}/providers/Microsoft.Storage/storageAccounts/stmlprod"
    run = subprocess.run([sys.executable, "-m", "guardrails", "check", "resource", rid], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "resource_id: looks like a credential" in run.stderr
    assert PAT[4:20] not in run.stdout + run.stderr
    assert h.arm_requests("GET") == [] and all(PAT[4:20] not in r.resource_id for r in h.stored_rows())


def test_an_opaque_job_id_and_model_name_are_not_stored_or_answered(harness):
    from guardrails.triggers.http_checks import check_job, check_model_promotion

    h = harness([], world=DIRECTORY)
    job = check_job(http_request("checks/job", {**SEED_JOB, "job_id": TOKEN}))
    model = check_model_promotion(http_request("checks/model-promotion", {
        "model": TOKEN, "version": "7", "from_stage": "validated", "to_stage": "production", "tags": GOOD_TAGS}))
    answers = [json.loads(r.get_body()) for r in (job, model)]
    assert [a["allowed"] for a in answers] == [False, True]
    ids = {a["decision_id"] for a in answers}
    rows = [r for r in h.stored_rows() if r.delivery_id in ids]
    assert len(rows) == 2 and {r.resource_id for r in rows} == {a["subject"] for a in answers}
    stored = "".join(json.dumps(r.to_dict(), default=str) for r in rows)
    assert TOKEN[:20] not in json.dumps(answers) + stored
