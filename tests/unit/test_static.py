"""Static check of the product code with pyflakes: a name used but never imported (a NameError
waiting on the one branch that reaches it), an import nobody uses, a name ``__all__`` lists that
the module does not define. The ML drift path raised NameError on a branch no test reached until
this check found it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pyflakes import checker, messages

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "guardrails").rglob("*.py"), ROOT / "function_app.py", *(ROOT / "bench").glob("*.py")])

# what fails the check; pyflakes' other findings are style, or false positives such as the
# description strings of pydantic field annotations (guardrails/checks/models.py)
FATAL = (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport, messages.UnusedImport,
         messages.ImportShadowedByLoopVar, messages.RedefinedWhileUnused, messages.DuplicateArgument,
         messages.ReturnOutsideFunction, messages.YieldOutsideFunction, messages.ContinueOutsideLoop,
         messages.BreakOutsideLoop, messages.IsLiteral, messages.FStringMissingPlaceholders)
# imports kept for their side effect (registering c7n's Azure resources before filters are built)
SIDE_EFFECT = {("bench/c7n_worker.py", "c7n_azure.provider")}


def findings(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    found = checker.Checker(ast.parse(text, filename=str(path)), filename=str(path)).messages
    rel = path.relative_to(ROOT).as_posix()
    out = []
    for m in found:
        if not isinstance(m, FATAL):
            continue
        if isinstance(m, messages.UnusedImport) and (rel, m.message_args[0]) in SIDE_EFFECT:
            continue
        out.append(f"{rel}:{m.lineno}: {m.message % m.message_args}")
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_undefined_names_or_unused_imports(path):
    assert findings(path) == []


def test_the_check_catches_an_undefined_name(tmp_path, monkeypatch):
    bad = ROOT / "guardrails" / "_static_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, **kw: "def f():\n    return policy_contact([])\n")
    assert findings(bad) == ["guardrails/_static_probe.py:2: undefined name 'policy_contact'"]
