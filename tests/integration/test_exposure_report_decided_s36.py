"""``POST /api/secrets/exposed`` sent again with its ``report_id`` after its first attempt was
decided (the reporter never got that answer: a timeout, a dropped connection). Until session 36
the retry was answered 200 ``duplicate``, whatever the first decision was: an exposure an
``audit``-mode policy left unrotated (422 ``not_enforced`` the first time) read as handled to a
scanner. The retry is now answered as the first decision was, naming that decision's row. On the
emulator's vault through the real Key Vault clients, Azurite for the tables; the function is called
with real ``azure.functions`` requests."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.test_secret_exposure_and_hygiene import _post
from tests.integration.test_secret_guardrail import VAULT, _harness, planted  # noqa: F401

pytestmark = pytest.mark.integration


def test_a_report_left_unrotated_and_sent_again_is_never_a_2xx(harness, tmp_path, planted):  # noqa: F811
    h = _harness(harness, tmp_path, planted, mode="audit")
    body = {"vault": VAULT, "name": "api-token", "source": "gitleaks", "report_id": str(uuid.uuid4())}
    status, first = _post(body)
    assert (status, first["error"]["reason"]) == (422, "not_enforced"), first
    status, again = _post(body)
    assert (status, again["error"]["reason"]) == (422, "not_enforced"), again
    assert again["decision_id"] == first["decision_id"]          # the row that decided it
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert len(versions) == 1 and versions[0]["attributes"]["enabled"] is True
    # the retry has its own row (a duplicate), the first decision stays the only violation
    rows = [r for r in h.stored_rows() if r.resource_id.endswith("/secrets/api-token")]
    assert sorted(r.verdict for r in rows) == ["duplicate", "violation"]


def test_control_a_rotated_report_sent_again_is_answered_as_rotated_once(harness, tmp_path, planted):  # noqa: F811
    h = _harness(harness, tmp_path, planted)
    body = {"vault": VAULT, "name": "api-token", "source": "gitleaks", "report_id": str(uuid.uuid4())}
    status, first = _post(body)
    assert (status, first["verdict"]) == (200, "remediated"), first
    status, again = _post(body)
    assert (status, again["verdict"], again["decision_id"]) == (200, "remediated", first["decision_id"]), again
    assert again["actions"] == first["actions"]
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2          # rotated once
