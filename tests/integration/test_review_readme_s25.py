"""Session 25's README walk-through findings, on Azurite + the HTTPS emulator with the real SDK
clients: a ``sweep --dry-run`` (a preview: "decide and audit, change nothing") keeps no event-coverage
state, so the real sweep after it still notifies the gap's owner."""

from __future__ import annotations

import json

import pytest

from guardrails.adapters.sweep_tables import TableTimerState
from tests.integration.test_coverage_sweep import SUB2, _coverage_rows, _estate, _sweeper

pytestmark = pytest.mark.integration


def test_a_dry_run_sweep_keeps_no_coverage_state_and_the_real_sweep_still_notifies(harness):
    h = harness(_estate(), decision_topic=True)
    preview = _sweeper(h).run(dry_run=True)
    assert preview.uncovered == 2
    rows = _coverage_rows(h, preview.sweep_id)
    assert rows[f"/subscriptions/{SUB2}"].notify is True          # the preview says it as it stands
    table = h.tables.table(TableTimerState(h.tables).name)
    assert list(table.query_entities("PartitionKey eq 'coverage'")) == []     # and keeps nothing
    real = _sweeper(h).run()
    row = _coverage_rows(h, real.sweep_id)[f"/subscriptions/{SUB2}"]
    assert (row.verdict, row.notify) == ("violation", True)       # the owner is told by the real run
    kept = {e["source"].lower() for e in table.query_entities("PartitionKey eq 'coverage'")}
    assert f"/subscriptions/{SUB2}".lower() in kept                 # the real run keeps its state


def test_python_m_guardrails_local_serves_the_cli_with_the_world_until_stopped(tmp_path):
    """README: the CLI's ARM-reading commands (sweep, coverage, check resource, deadletter) run from
    a fresh clone against ``python -m guardrails.local``: its env file points them at Azurite and the
    emulator (the demo world here), the policy already synced; stopping it removes the file."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.integration.test_review_readme_s33 import running_local

    env_file = tmp_path / "guardrails.env"
    with running_local(env_file) as (got, done):
        text = env_file.read_text(encoding="utf-8")
        assert "export GUARDRAILS_ARM_ENDPOINT=" in text and "export GUARDRAILS_TABLES_CONNECTION=" in text
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAILS_")}
        env.update(got)
        root = Path(__file__).resolve().parents[2]

        def cli(*args):
            return subprocess.run([sys.executable, "-m", "guardrails", *args], cwd=root, env=env,
                                  capture_output=True, text=True, timeout=180)

        sweep = cli("sweep", "--dry-run")
        assert sweep.returncode in (0, 1), sweep.stderr
        summary = json.loads(sweep.stdout)
        assert summary["dry_run"] is True and summary["seen"] > 0
        sub = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
        check = cli("check", "resource",
                    f"/subscriptions/{sub}/resourceGroups/rg-ml-prod/providers/Microsoft.Storage/storageAccounts/stmlprod")
        assert check.returncode in (0, 1), check.stderr
        assert json.loads(check.stdout)["subject"].endswith("/stmlprod")
        dl = cli("deadletter", "list", "--json")
        assert dl.returncode == 0, dl.stderr
    assert done.get("rc") == 0 and not env_file.exists()
