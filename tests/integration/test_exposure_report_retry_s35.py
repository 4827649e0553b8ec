"""``POST /api/secrets/exposed`` retried after a 503: HTTP has no redelivery, so the reporter sends
the report again. Until session 35 a report without a version, sent again after its rotation had
landed (older versions left enabled when the delivery's time budget ran out), was newer than the
rotated version and rotated it again, revoking the value just handed out. With the same
``report_id`` it is now that report's redelivery. On the emulator's vault through the real Key Vault
clients, Azurite for the tables; the function is called with real ``azure.functions`` requests."""

from __future__ import annotations

import time
import uuid

import pytest

from guardrails import settings as S
from tests.integration.test_secret_exposure_and_hygiene import _post
from tests.integration.test_secret_guardrail import VAULT, _harness, planted  # noqa: F401
from tests.integration.test_secrets_suspected_s34 import _older

pytestmark = pytest.mark.integration


def _slow_first_attempt(harness, tmp_path, planted):  # noqa: F811
    """19 older enabled versions, each PATCH 0.3 s, a 3 s budget: the first attempt rotates, then
    runs out of time disabling the older versions (``failed`` / ``transient``: a 503)."""
    h = _harness(lambda *a, **kw: harness(*a, **{**kw, "env": {S.TIME_BUDGET_SECONDS: "3"}}),
                 tmp_path, planted, extra_secrets=_older("api-token", 19))
    h.emu.add_fault(method="PATCH", path_regex=f"/vaults/{VAULT}/secrets/api-token/", delay_ms=300)
    return h


def test_a_report_retried_with_its_report_id_after_a_503_finishes_without_a_second_rotation(
        harness, tmp_path, planted):  # noqa: F811
    h = _slow_first_attempt(harness, tmp_path, planted)
    body = {"vault": VAULT, "name": "api-token", "source": "gitleaks", "report_id": str(uuid.uuid4()).upper()}
    status, first = _post(body)
    assert status == 503 and first["error"]["reason"] == "transient", first
    assert "report_id" in first["error"]["message"]
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 21          # rotated once, older ones partly enabled
    h.emu.clear_faults()

    status, again = _post(body)
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert len(versions) == 21, "the retry rotated again: the value just handed out is revoked"
    assert [v["attributes"]["enabled"] for v in versions] == [False] * 20 + [True]
    assert status == 200 and again["verdict"] == "remediated", again


def test_control_two_reports_without_a_report_id_are_two_findings(harness, tmp_path, planted):  # noqa: F811
    """Control: without a ``report_id`` (or a version) each report is a finding of its own: the
    second, sent after the first rotation, rotates again (erring towards the secret)."""
    h = _harness(harness, tmp_path, planted)
    body = {"vault": VAULT, "name": "api-token", "source": "gitleaks"}
    assert _post(body)[0] == 200
    time.sleep(1.1)      # Key Vault keeps whole seconds: a report in the rotation's second is taken as answered
    assert _post(body)[0] == 200
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 3


@pytest.mark.parametrize("report_id", ["finding-1", "", 42, "1" * 32 + "0", "{" + "a" * 32])
def test_a_report_id_that_is_not_a_uuid_is_refused(harness, tmp_path, planted, report_id):  # noqa: F811
    """A report id must be random per finding: a counter ("1", "finding-1") two reporters could both
    use would make the second reporter's finding the first one's retry, and nothing rotated."""
    h = _harness(harness, tmp_path, planted)
    status, answer = _post({"vault": VAULT, "name": "api-token", "source": "gitleaks", "report_id": report_id})
    assert (status, answer["error"]["reason"]) == (400, "invalid_value"), answer
    assert "report_id" in answer["error"]["message"]
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1
