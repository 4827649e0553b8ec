"""Session 36: one rule for "was the fix's write made?" on every path that takes a breaker permit.

The resource and ML guardrails gave a permit back on any failed write but a 412, a 5xx included,
while the role and secrets paths keep it unless the write was refused outright
(``errors.refused_outright``). A write ARM answered 5xx may have been applied (a gateway timing
out on a provider that went on), so the breaker, which counts the remediations made, must count
it; a redelivery of the same event reuses the permit, so it is counted once. A write refused
outright (400, 429 on every attempt) or never sent, and a long-running write whose operation ARM
reports ``Failed``, still give it back. On Azurite + the HTTPS emulator with the real SDK clients,
through the trigger function."""

from __future__ import annotations

import pytest

from guardrails.errors import ArmError, ArmOperationFailed, ArmTransient, refused_outright
from guardrails.local.ml_emulator import model_version
from tests import builders as b
from tests.integration.test_ml_guardrail import WS
from tests.integration.test_review_ml_s25 import window
from tests.integration.test_review_resource_s25 import POLICY

pytestmark = pytest.mark.integration


def _storage_policy(tmp_path):
    d = tmp_path / "extra"
    d.mkdir()
    (d / "storage-private.yaml").write_text(POLICY)      # 2 fixes an hour per subscription
    return d


def test_a_resource_fix_answered_5xx_keeps_its_permit_once_across_redeliveries(harness, tmp_path):
    # GIVEN a breaker of 2 an hour, and one account's PATCH answered 500 past the decision's budget
    accounts = [b.storage(name=f"st5xx{i}", blob=False) for i in range(3)]
    h = harness(accounts, extra_metadata=[_storage_policy(tmp_path)])
    h.emu.add_fault(method="PATCH", path_regex="st5xx0$", status=500, retry_after=60, times=2)
    event = b.write_event(accounts[0]["id"])
    # WHEN the change is delivered, and redelivered (Event Grid), both writes answered 500
    rows = [h.deliver(event) for _ in range(2)]
    # THEN each is failed, and the permit stays counted (the PATCH may have been applied), once
    assert [(r.verdict, r.reason) for r in rows] == [("failed", "transient")] * 2
    assert window(h, "storage-private") == (1, [event["id"]])
    # AND the third delivery gets through on the same permit: the breaker's second is still free
    assert h.deliver(event).verdict == "remediated"
    assert h.deliver(b.write_event(accounts[1]["id"])).verdict == "remediated"
    row = h.deliver(b.write_event(accounts[2]["id"]))
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open")


def test_control_a_resource_fix_throttled_past_its_budget_gives_its_permit_back(harness, tmp_path):
    accounts = [b.storage(name="st429", blob=False)]
    h = harness(accounts, extra_metadata=[_storage_policy(tmp_path)])
    h.emu.add_fault(method="PATCH", path_regex="st429$", status=429, retry_after=60, times=1)
    row = h.deliver(b.write_event(accounts[0]["id"]))
    assert (row.verdict, row.reason) == ("failed", "throttled")
    assert window(h, "storage-private") == (0, [])


def test_an_ml_fix_answered_5xx_keeps_its_permit(harness):
    # GIVEN a model version without the required tags, its archiving PUT answered 503 past the budget
    v = model_version(WS, "fraud-clf", 7, tags={"owner": "ds_team@contoso.com"})
    h = harness([v])
    h.emu.add_fault(method="PUT", path_regex=r"/versions/7$", status=503, retry_after=60, times=1)
    event = b.write_event(v["id"])
    row = h.deliver(event)
    # THEN the fix is failed and its permit stays counted (the PUT may have been applied)
    assert (row.verdict, row.reason) == ("failed", "transient")
    assert window(h, "model-registry") == (1, [event["id"]])


def test_control_an_ml_fix_refused_gives_its_permit_back(harness):
    v = model_version(WS, "fraud-clf", 7, tags={"owner": "ds_team@contoso.com"})
    h = harness([v])
    h.emu.add_fault(method="PUT", path_regex=r"/versions/7$", status=400, times=1)
    row = h.deliver(b.write_event(v["id"]))
    assert row.verdict == "failed"
    assert window(h, "model-registry") == (0, [])


def test_the_rule_reads_an_ended_operation_as_refused_and_a_5xx_as_unknown():
    assert refused_outright(ArmOperationFailed("PUT x: the operation ended Failed"))
    assert not refused_outright(ArmTransient("PUT x: answered 503", status=503))
    assert refused_outright(ArmError("PUT x: answered 400", status=400))
