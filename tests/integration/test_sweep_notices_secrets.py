"""The sweep's notice gate on secrets (``sweep_secrets`` → ``service.reconcile_secret``): a
notify-only secret near expiry is told once, not on every run. Azurite + the emulator's vault."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from tests import builders as b
from tests.integration.test_secret_guardrail import _harness, planted  # noqa: F401 (fixture)
from tests.integration.test_sweep_notices import NOTIFY_EVENT, _sweeper, _Wall

pytestmark = pytest.mark.integration


def test_a_notify_only_secret_is_told_once_by_the_sweep(harness, tmp_path, planted, caplog):
    h = _harness(harness, tmp_path, planted)
    wall = _Wall()
    sw = _sweeper(h, wall)
    seen = []
    for _ in range(3):
        wall.now += timedelta(hours=1)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="guardrails"):
            s = sw.run(subscriptions=[b.SUB])
        told = [json.loads(r.getMessage()) for r in caplog.records if NOTIFY_EVENT in r.getMessage()]
        rows = [r for r in h.stored_rows() if r.correlation_id == s.sweep_id and "databricks" in r.resource_id]
        seen.append(([(r.verdict, r.notify) for r in rows], sum(1 for t in told if t.get("object") == "databricks-token")))
    assert seen[0] == ([("violation", True)], 1)
    assert seen[1] == seen[2] == ([("violation", False)], 0)
