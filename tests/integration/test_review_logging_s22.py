"""Log levels (session 22): ``GUARDRAILS_LOG_LEVEL`` was read and never applied, and the Azure
SDK logged every request's headers at INFO, the level the Functions worker's root logger takes:
~0.1 ms of CPU per call and one log record per call shipped to the host and Application Insights.
Real SDK clients on Azurite and the HTTPS emulator, with a root logger like the worker's."""

from __future__ import annotations

import logging

import pytest

from guardrails.errors import ConfigError
from guardrails.settings import Settings
from tests import builders as b

pytestmark = pytest.mark.integration


def test_a_fix_logs_no_azure_sdk_request_at_the_workers_info_level(harness, caplog):
    res = b.storage(name="stlogs", blob=False)
    h = harness([res])
    with caplog.at_level(logging.INFO):                 # the root logger, as the Functions worker sets it
        assert h.deliver(b.write_event(res["id"])).verdict == "remediated"
    azure = [r for r in caplog.records if r.name.startswith("azure")]
    assert azure == [], [r.getMessage()[:80] for r in azure[:3]]
    assert any(r.name == "guardrails" for r in caplog.records)


def test_the_levels_are_applied_when_the_service_is_built(harness):
    h = harness([], env={"GUARDRAILS_LOG_LEVEL": "warning", "GUARDRAILS_AZURE_LOG_LEVEL": "ERROR"})
    assert h.settings.log_level == "WARNING"
    assert logging.getLogger("guardrails").level == logging.WARNING
    assert logging.getLogger("azure").level == logging.ERROR
    default = Settings.from_env({})
    assert (default.log_level, default.azure_log_level) == ("INFO", "WARNING")
    with pytest.raises(ConfigError, match="GUARDRAILS_AZURE_LOG_LEVEL"):
        Settings.from_env({"GUARDRAILS_AZURE_LOG_LEVEL": "LOUD"})
    logging.getLogger("guardrails").setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(logging.WARNING)
