"""A ``Guardrails.SecretExposed`` event (Event Grid, not the HTTP endpoint) for a vault no
secrets policy governs: nothing will rotate the leaked value, so the row tells its owner and the
log says so at ERROR — never a quiet ``ignored``. Azurite + the emulator, through the trigger."""

from __future__ import annotations

import json
import logging

import pytest

from tests.integration.test_secret_exposure_and_hygiene import _exposure
from tests.integration.test_secret_guardrail import _harness, planted  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def test_an_exposure_event_for_a_vault_no_policy_governs_notifies_and_logs_an_error(harness, tmp_path, planted,
                                                                                      caplog):
    h = _harness(harness, tmp_path, planted)
    event = _exposure("api-token", "exp-ungoverned")
    event["data"]["VaultName"] = "kv-nobody-governs"
    with caplog.at_level(logging.INFO, logger="guardrails"):
        row = h.deliver(event)
    assert (row.verdict, row.reason, row.notify) == ("ignored", "no_policy", True)
    assert "rotate it by hand" in row.message
    errors = [json.loads(r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR]
    assert [e["event"] for e in errors] == ["exposure_not_governed"]
    assert errors[0]["vault"] == "kv-nobody-governs" and errors[0]["object"] == "api-token"
    # the stored row says so too, and the governed vault's secret was not touched
    (stored,) = [r for r in h.stored_rows() if r.event_id == "exp-ungoverned"]
    assert stored.notify is True
    assert len(h.emu.secret_versions("kv-ml-prod", "api-token")) == 1


def test_other_key_vault_events_for_an_ungoverned_vault_stay_quiet(harness, tmp_path, planted, caplog):
    h = _harness(harness, tmp_path, planted)
    event = h.emu.keyvault_event("Microsoft.KeyVault.SecretNearExpiry", "kv-ml-prod", "api-token", None)
    other = "kv-nobody-governs"
    event["topic"] = event["topic"].replace("/kv-ml-prod", f"/{other}")
    event["data"].update(VaultName=other, Id=event["data"]["Id"].replace("kv-ml-prod", other))
    with caplog.at_level(logging.INFO, logger="guardrails"):
        row = h.deliver(event)
    assert (row.verdict, row.reason, row.notify) == ("ignored", "no_policy", False)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_redelivered_ungoverned_exposure_is_a_duplicate_not_a_second_alarm(harness, tmp_path, planted, caplog):
    h = _harness(harness, tmp_path, planted)
    event = _exposure("api-token", "exp-ungoverned-twice")
    event["data"]["VaultName"] = "kv-nobody-governs"
    first = h.deliver(event)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="guardrails"):
        again = h.deliver(event)
    assert (first.verdict, first.notify) == ("ignored", True)
    assert (again.verdict, again.notify) == ("duplicate", False)
    assert not [r for r in caplog.records if "exposure_not_governed" in r.getMessage()]


def test_an_exposure_event_naming_a_token_is_refused_without_storing_or_logging_it(harness, tmp_path, planted,
                                                                                     caplog):
    """A scanner misconfigured to send the leaked value as ``ObjectName`` (a Databricks token passes
    a secret name's grammar): refused ``invalid`` by field and length as the HTTP endpoint refuses
    it; the token in neither the row (its resource id, its message) nor a log line."""
    h = _harness(harness, tmp_path, planted)
    token = "dapi" + "0123456789abcdef" * 2
    event = _exposure("api-token", "exp-token")
    event["data"]["ObjectName"] = token
    event["data"].pop("Id", None)
    with caplog.at_level(logging.DEBUG):
        row = h.deliver(event)
    assert (row.verdict, row.reason) == ("invalid", "invalid_value")
    assert "ObjectName" in row.message and "36 characters" in row.message
    (stored,) = [r for r in h.stored_rows() if r.event_id == "exp-token"]
    assert token not in json.dumps(stored.to_dict()) and token not in caplog.text
    assert len(h.emu.secret_versions("kv-ml-prod", "api-token")) == 1
