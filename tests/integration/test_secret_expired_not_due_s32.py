"""A ``SecretExpired`` event whose version's expiry was moved out after Key Vault reported it
(the event redelivered, or handled late) is not rotated again: the same "not yet due" rule as a
``SecretNearExpiry`` warning; a version that is still expired is rotated (control)."""

from __future__ import annotations

import pytest

from tests.integration.test_secret_guardrail import VAULT, _event, _expire, _harness, planted  # noqa: F401

pytestmark = pytest.mark.integration


def test_an_expired_event_for_a_version_whose_expiry_was_moved_out_is_not_rotated(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    version = _expire(h, "api-token", days=200)
    row = h.deliver(_event(h, "SecretExpired", "api-token", version))
    assert row.verdict == "compliant", (row.verdict, row.reason, row.message)
    assert "not yet due" in row.message and "moved" in row.message
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1, "a version valid for 200 more days was rotated"


def test_an_expired_event_for_a_version_still_expired_is_rotated(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    version = _expire(h, "api-token")
    row = h.deliver(_event(h, "SecretExpired", "api-token", version))
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)
    assert row.violations[0].rule == "expired-secret"
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2
