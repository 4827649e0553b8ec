"""Review (session 36) of what the product writes for people and machines outside the audit table:
structured log lines, decision events, the CLI, ``simulate`` and the demo.

Each test that is not labelled a control fails on the code as reviewed, for the defect its
docstring names. Azurite and the local HTTPS emulator through the real SDK clients (``harness``).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from guardrails import bootstrap
from guardrails.cli import main as cli_main
from tests import builders as b
from tests.integration.test_expiry import NOW, _exempt

pytestmark = pytest.mark.integration


def _use_env(h, monkeypatch) -> None:
    """The CLI reads its settings from the environment: point it at the harness's deployment."""
    for k, v in h.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(bootstrap, "_service", None)
    monkeypatch.setattr(bootstrap, "_sweeper", None)


# ---- CLI: `sweep --expiry --dry-run` changes things ---------------------------------------------
def test_sweep_expiry_dry_run_changes_nothing(harness, tmp_path, monkeypatch, capsys):
    """``sweep --dry-run`` is "decide and audit, change nothing" (cli help, README). With
    ``--expiry`` the flag is dropped on the floor (``sweep.cli_main`` calls
    ``ExpiryReEnforcer(sweeper).run()`` without it): the operator's dry run re-enforces every
    expired exemption for real, PATCHing live resources. Expected: no ARM write, the summary
    ``dry_run: true`` (or the combination refused as a usage error, exit 2, nothing written)."""
    res = b.storage("stexpdry", blob=False)
    h = harness([res], extra_metadata=[_exempt(tmp_path, res["id"], NOW - timedelta(minutes=2))])
    _use_env(h, monkeypatch)
    rc = cli_main(["sweep", "--expiry", "--dry-run"])
    out = capsys.readouterr().out
    assert h.writes() == [], f"a dry run wrote to ARM: {[(q['method'], q['path']) for q in h.writes()]}"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    if rc != 2:
        assert json.loads(out)["dry_run"] is True



# ---- simulate: an input file that is not UTF-8 is a traceback, exit 1 ------------------------------
def test_simulate_world_file_in_utf16_is_an_input_error_not_a_traceback(tmp_path):
    """``simulate`` promises exit 2 and one ``error:`` line for an input-file error, and exit 1 only
    when a delivery ended ``failed`` (README "simulate", cli.py docstring). A world (or events) file
    saved as UTF-16 — PowerShell's ``Out-File``/``>`` default on Windows — makes
    ``simulate._read_json`` raise ``UnicodeDecodeError`` (a ValueError, not the OSError it catches)
    out of ``main``: a Python traceback and exit 1, which a pipeline reads as "a delivery failed".
    Expected: exit 2 and an ``error: ... world file ...`` line. Fix: catch ``UnicodeDecodeError``
    (or ``ValueError``) around ``read_text`` in ``_read_json``."""
    world = tmp_path / "w.json"
    world.write_text(json.dumps({"resources": []}), encoding="utf-16")
    events = tmp_path / "e.json"
    events.write_text("[]", encoding="utf-8")
    try:
        rc = cli_main(["simulate", "--world", str(world), "--events", str(events), "--out", str(tmp_path / "r.json")])
    except UnicodeDecodeError as exc:        # the defect: it escapes main() as a traceback
        pytest.fail(f"simulate raised {type(exc).__name__} for a UTF-16 world file: {exc}")
    assert rc == 2


# ---- logs: the sweep's event-coverage decision line cannot be joined to its audit row ----------------
def test_coverage_decision_log_line_names_its_delivery(harness, caplog):
    """Every ``guardrail_decision`` line carries the ``delivery_id`` of the audit row it reports
    (bound once per invocation, ``logs.bound``; DESIGN "context bound once"), which is how an
    operator goes from an Application Insights trace to its row and its decision event (whose id
    is that delivery id). The sweep's event-coverage rows (``TimerDecisions.record_coverage``) are
    written without ``bound(...)``: their WARNING line (verdict ``violation``, notify) names no
    delivery, so the one log line that says a subscription's events no longer reach the
    guardrails cannot be tied to its row or its published event. Seen in ``make demo``'s log.
    Expected: the line's ``delivery_id`` is the row's. Fix: wrap ``record_coverage``'s
    ``_finish`` in ``bound(delivery_id=ctx.delivery_id, resource_id=coverage.resource_id)``."""
    from guardrails.coverage import Coverage, Gap, subscription_expectation

    h = harness([])
    cov = Coverage(subscription_expectation(b.SUB, ("Microsoft.Storage/storageAccounts/write",)),
                   gaps=(Gap("no_system_topic", f"no system topic has source /subscriptions/{b.SUB}"),))
    with caplog.at_level(logging.INFO, logger="guardrails"):
        row = h.service.record_coverage(cov, sweep_id="sweep-s36", verdict="violation", notify=True)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "guardrails"
             and '"guardrail_decision"' in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].get("delivery_id") == row.delivery_id, lines[0]


def test_control_a_sweep_resource_decision_line_names_its_delivery(harness, caplog):
    """Control (passes): a sweep's decision on a resource (``reconcile``) binds its delivery id."""
    res = b.storage("stcovctl", blob=False)
    h = harness([res])
    with caplog.at_level(logging.INFO, logger="guardrails"):
        row = h.service.reconcile(res["id"], None, sweep_id="sweep-s36")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "guardrails"
             and '"guardrail_decision"' in r.getMessage()]
    assert lines and lines[-1].get("delivery_id") == row.delivery_id


def test_sweep_expiry_dry_run_saves_no_window_and_the_next_run_enforces(harness, tmp_path, monkeypatch, capsys):
    """Follow-up (the fix): the dry run audits what it would do (``dry_run`` rows, its run id) and
    saves neither the window nor retries, so the next (real) run still re-enforces the exemption."""
    from guardrails.expiry import SCOPE_TIMER, TIMER

    res = b.storage("stexpdry2", blob=False)
    h = harness([res], extra_metadata=[_exempt(tmp_path, res["id"], NOW - timedelta(minutes=2))])
    _use_env(h, monkeypatch)
    assert cli_main(["sweep", "--expiry", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    rows = [r for r in h.stored_rows() if r.correlation_id == dry["sweep_id"]]
    assert dry["dry_run"] is True and [(r.resource_id, r.verdict) for r in rows] == [(res["id"], "dry_run")]
    state = bootstrap.build_sweeper(h.settings).state
    assert state.last_run(TIMER) is None and state.retry(TIMER) == [] and state.retry(SCOPE_TIMER) == []
    monkeypatch.setattr(bootstrap, "_sweeper", None)
    assert cli_main(["sweep", "--expiry"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is False
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


@pytest.mark.parametrize("flag", [["--subscription", b.SUB], ["--management-group", "mg-ml"]])
def test_sweep_expiry_refuses_the_flags_it_cannot_honour(harness, monkeypatch, capsys, flag):
    """Follow-up (the fix): ``--expiry`` re-enforces each exemption's own scope; a narrowing flag
    is a usage error (exit 2, one ``error:`` line), never silently ignored; nothing is decided."""
    h = harness([b.storage("stexpflag", blob=False)])
    _use_env(h, monkeypatch)
    assert cli_main(["sweep", "--expiry", *flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--expiry" in err and len(err.strip().splitlines()) == 1
    assert h.writes() == [] and h.stored_rows() == []
