"""An ML fix whose write went through but whose read-back failed is a pending fix (remediation
review, session 22): its own write event confirms it. Before, the ML path kept the write's
correlation id as settled and added no pending record, so the own event was ignored and the
row stayed ``requested`` for good; and a long-running ML fix's pending record had no
correlation id, so its own failure event could never settle it. Real SDK clients on the HTTPS
emulator and Azurite."""

from __future__ import annotations

import re

import pytest

from guardrails.local.ml_emulator import model_version
from guardrails.policy.model_rules import RULE_REQUIRED_TAGS
from tests import builders as b

pytestmark = pytest.mark.integration

WS = b.rid("Microsoft.MachineLearningServices", "workspaces", "mlw-prod")


def test_a_failed_read_back_is_confirmed_by_the_fix_s_own_write_event(harness, monkeypatch):
    v = model_version(WS, "fraud-clf", 12, tags={"owner": "ds_team@contoso.com"})
    h = harness([v])
    put = h.service.arm.put_resource

    def put_then_arm_stumbles(*args, **kwargs):
        out = put(*args, **kwargs)                 # the archive is written ...
        h.emu.add_fault(method="GET", path_regex=re.escape(v["id"].split("/providers/")[1]) + "$",
                        status=429, retry_after=60, times=1)      # ... and its read-back is throttled
        return out

    monkeypatch.setattr(h.service.arm, "put_resource", put_then_arm_stumbles)
    row = h.deliver(b.write_event(v["id"]))
    recs = [r for r in row.violations if r.rule == RULE_REQUIRED_TAGS]      # one per missing tag
    assert recs and {r.outcome for r in recs} == {"requested"} and "read-back failed" in recs[0].message
    assert h.resource(v["id"])["properties"]["isArchived"] is True
    (pending,) = h.service.pending.list(v["id"])
    assert pending[1]["correlation_id"] and pending[1]["event_time"]
    (confirm,) = h.deliver_emitted()               # the archive's own write event
    assert confirm.verdict == "remediated" and "confirmed" in confirm.violations[0].message
    assert len(confirm.violations) == len(recs)
    assert h.service.pending.list(v["id"]) == []


def test_a_long_running_ml_fix_keeps_its_correlation_id(harness):
    v = model_version(WS, "fraud-clf", 13, tags={"owner": "ds_team@contoso.com"})
    h = harness([v], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"}, lro_seconds=2.5)
    row = h.deliver(b.write_event(v["id"]))
    assert {r.outcome for r in row.violations if r.rule == RULE_REQUIRED_TAGS} == {"requested"}
    (pending,) = h.service.pending.list(v["id"])
    assert len(pending[1]["correlation_id"]) == 36 and pending[1]["event_time"] == row.event_time


def test_an_mlflow_model_version_with_user_data_keys_is_archived(harness):
    """MLflow model versions carry user data in snake_case (``flavors.python_function.data.
    loader_module``, an asset's ``properties.properties``); ARM takes any casing there, and the
    guardrail's full PUT sends the body back as read. The emulator refused it (400), so archiving
    an MLflow model was never proven (emulator review, session 22)."""
    v = model_version(WS, "churn-mlflow", 3, tags={})
    v["properties"]["modelType"] = "mlflow_model"
    v["properties"]["flavors"] = {"python_function": {"data": {"loader_module": "mlflow.sklearn",
                                                               "python_version": "3.11.9"}}}
    v["properties"]["properties"] = {"mlflow.source_run_id": "run-1", "training_run_id": "run-1"}
    h = harness([v])
    row = h.deliver(b.write_event(v["id"]))
    assert {r.outcome for r in row.violations if r.rule == RULE_REQUIRED_TAGS} == {"remediated"}, row.message
    stored = h.resource(v["id"])["properties"]
    assert stored["isArchived"] is True
    assert stored["flavors"]["python_function"]["data"]["loader_module"] == "mlflow.sklearn"
    assert stored["properties"]["training_run_id"] == "run-1"
