"""Review (session 32) of the operator-facing CLI: a table-storage connection string that does not
parse is a configuration error (``error: ...``, exit 2, the value never echoed), as every other
bad setting is, never a Python traceback (exit 1) — for ``report`` and the other table commands."""

from __future__ import annotations

import os

import pytest

from guardrails import settings as S
from guardrails.cli import main as cli_main

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
MALFORMED = "AccountKey-Zm9vYmFyU0VDUkVUdmFsdWU9PQ"          # no key=value pairs: the SDK cannot parse it


@pytest.mark.parametrize("argv", [
    ["report", "--days", "1"],
    ["breaker", "status", "storage-private", SUB],
])
def test_a_malformed_tables_connection_string_is_an_error_line_not_a_traceback(argv, monkeypatch, capsys):
    for k in [k for k in os.environ if k.startswith("GUARDRAILS_")]:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv(S.TABLES_CONNECTION, MALFORMED)
    try:
        rc = cli_main(argv)
    except ValueError as exc:          # the defect: the SDK's ValueError escapes main()
        pytest.fail(f"{argv[0]} raised {type(exc).__name__}: {exc}")
    err = capsys.readouterr().err
    assert rc == 2 and "error:" in err
    assert MALFORMED not in err
