"""The reconciling sweep and a secrets policy's references that name no secret of the vault (a typo
in the policy, a secret deleted or re-created under another name): nothing would rotate the secret
actually in use, so every run says so, as it does for a key reference naming no key (session 34).
End to end on Azurite (tables) and the HTTPS emulator's vault through the real Key Vault clients."""

from __future__ import annotations

import logging

import pytest

from tests.integration.test_secret_exposure_and_hygiene import _edit_policy, _sweep
from tests.integration.test_secret_guardrail import VAULT, _harness, planted  # noqa: F401

pytestmark = pytest.mark.integration


def _not_found_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "guardrail_sweep_secret_not_found" in r.getMessage()]


def test_a_secret_reference_naming_no_secret_is_reported_on_every_run(harness, tmp_path, planted,  # noqa: F811
                                                                        caplog):
    """``api-token`` (``strategy: random``) misspelt in the policy: the vault's ``api-token`` is
    never rotated by the sweep, and until this session the run said nothing (clean summary, no log
    line). Now each run has an error naming the reference and an ERROR line, and no audit row is
    made up for a secret that does not exist."""
    caplog.set_level(logging.INFO, logger="guardrails")
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "name: api-token", "name: api-tokn")
    for _run in range(2):
        caplog.clear()
        summary = _sweep(h)
        assert [e for e in summary.errors if "api-tokn" in e] == [
            f"secret {VAULT}/api-tokn: a secrets policy references it, the vault has no such secret"], summary.errors
        assert len(_not_found_lines(caplog)) == 1
    assert not [r for r in h.stored_rows() if r.resource_id.lower().endswith("/secrets/api-tokn")]


def test_control_references_naming_the_vaults_secrets_are_no_error(harness, tmp_path, planted,  # noqa: F811
                                                                   caplog):
    """Control: with every reference naming a secret the vault holds (in any letter case: Key Vault
    names are case-insensitive), the run has no such error and no such line."""
    caplog.set_level(logging.INFO, logger="guardrails")
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "name: api-token", "name: API-Token")
    summary = _sweep(h)
    assert not [e for e in summary.errors if "no such secret" in e], summary.errors
    assert not _not_found_lines(caplog)
