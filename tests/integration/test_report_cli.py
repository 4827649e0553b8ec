"""``python -m guardrails report`` on Azurite: the fixed audit table of tests/unit/test_report.py
written through the real audit sink, read back by the CLI day by day, printed as JSON, as a
terminal table and as a self-contained HTML page."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from guardrails import settings as S
from guardrails.adapters.audit_tables import TableAuditSink
from guardrails.adapters.tables import Tables
from guardrails.cli import main as cli_main
from tests.unit.test_report import EXPECTED, FIXED_ROWS

pytestmark = pytest.mark.integration


@pytest.fixture
def audit_table(azurite, monkeypatch):
    """A fresh table prefix holding FIXED_ROWS; the CLI finds it through the environment."""
    monkeypatch.setenv(S.TABLES_CONNECTION, azurite.connection_string)
    monkeypatch.setenv(S.TABLE_PREFIX, "R" + uuid.uuid4().hex[:12])
    settings = S.Settings.from_env()
    tables = Tables.from_settings(settings)
    tables.ensure()
    sink = TableAuditSink(tables, shards=settings.audit_shards)
    for row in FIXED_ROWS:
        sink.write(row)
    return sink


def test_report_json_matches_the_hand_computed_expectation(audit_table, capsys):
    # --until as a date means through the end of that day: [2026-11-01, 2026-11-04)
    assert cli_main(["report", "--since", "2026-11-01", "--until", "2026-11-03", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED


def test_report_table_and_html_page(audit_table, capsys, tmp_path):
    page = tmp_path / "out" / "report.html"
    assert cli_main(["report", "--since", "2026-11-01T00:00:00Z", "--until", "2026-11-04T00:00:00Z",
                     "--html", str(page)]) == 0
    text = capsys.readouterr().out
    assert "3 of 8 (37.5%)" in text and "storage-private" in text and "4.2 min" in text
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=|https?://|<script|<link""", html, re.IGNORECASE)
    assert "37.5%" in html and "<svg" in html and html.count("<rect") == 3


def test_report_over_an_empty_period(audit_table, capsys):
    assert cli_main(["report", "--since", "2025-01-01", "--until", "2025-01-02", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 0 and out["compliance"] is None and len(out["remediations_per_day"]) == 2


@pytest.mark.parametrize("argv", [["--since", "yesterday"], ["--since", "2026-11-05", "--until", "2026-11-01"],
                                  ["--days", "0"], ["--days", "1000"]])
def test_report_usage_errors_exit_2(audit_table, capsys, argv):
    assert cli_main(["report", *argv]) == 2
    assert capsys.readouterr().err.startswith("error:")
