"""The coverage check's operator-facing answers (review of 2026-11-25): a run that checked no
source at all is not "every source covered" (exit 0 would pass a deployment gate that checked
nothing), and the deletions gap does not promise that the sweep cleans the report (it decides
only resources it lists; a deleted one never is)."""

from __future__ import annotations

import pytest

from guardrails import settings as S
from guardrails.adapters import arm, listing
from guardrails.cli import main as cli_main
from tests.unit.test_coverage_deletions import _assess
from guardrails.local.eventgrid_world import event_subscription
from tests.unit.test_coverage_deletions import APP, SUB


def test_a_coverage_run_that_checked_no_source_fails_and_says_why(monkeypatch, capsys):
    monkeypatch.setenv(S.FUNCTION_APP_ID, APP)
    for name in (S.SWEEP_SUBSCRIPTIONS, S.GOVERNED_VAULT_IDS, S.GOVERNED_ML_WORKSPACE_IDS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(arm, "build_credential", lambda settings: object())
    monkeypatch.setattr(listing.ArmLister, "list_subscriptions", lambda self: [])   # the login sees none
    assert cli_main(["coverage"]) == 2
    err = capsys.readouterr().err
    assert "no source to check" in err and "--subscription" in err


def test_the_deletions_gap_does_not_promise_the_sweep_ends_a_deleted_resource():
    message = _assess(event_subscription(SUB, APP)).message()
    assert "until the sweep" not in message
    assert "reads its 404" in message and "may never come" in message
