"""Fuzz the metadata loader: policy documents through ``load_documents`` and YAML files through
``load_directory``.

Properties, for every generated input:

* the loader returns policies or raises ``MetadataValidationError``; nothing else escapes;
* every finding is a string that starts with the source it is about (``<source>: policy …``);
* an accepted policy survives what the product does next: it round-trips through
  ``to_document``/``load_documents``, serialises to JSON (the Table Storage row) and compiles;
* the input document is not mutated, and each load finishes in bounded time (hang guard).

Seeds are the shipped ``metadata/policies/*.yaml`` (as documents and as text) and the unit
fixtures' YAML. Bugs found this way are pinned in ``test_fuzz_regressions.py``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, note
from hypothesis import strategies as st

from guardrails.errors import MetadataValidationError
from guardrails.model.resource import CATALOG
from guardrails.policy.evaluate import compile_policies
from guardrails.policy.loader import load_directory, load_documents
from tests.fuzz import _config as cfg
from tests.fuzz import strategies as s

DOC_EXAMPLES = cfg.examples(0.10)    # 2,000 in CI
FILE_EXAMPLES = cfg.examples(0.05)   # 1,000 in CI

ROOT = Path(__file__).resolve().parents[2]
BASELINE_FILES = sorted((ROOT / "metadata" / "policies").glob("*.y*ml"))
FIXTURE_FILES = sorted((ROOT / "tests" / "unit" / "fixtures_metadata").rglob("*.y*ml"))
BASELINE_TEXTS = tuple(p.read_text(encoding="utf-8") for p in BASELINE_FILES)
SEED_TEXTS = BASELINE_TEXTS + tuple(p.read_text(encoding="utf-8") for p in FIXTURE_FILES)
BASELINE_DOCS = tuple(json.dumps(yaml.safe_load(t), default=str) for t in BASELINE_TEXTS)

# Sizes past what a policy needs, and past the limits that once broke the loader (PyYAML and the
# loader's own passes recursed per level; aliases fanned out exponentially; ints past 4300 digits
# cannot be printed): each must now end as a finding, quickly.
YAML_DEPTH = 1000
INT_DIGITS = 4400
ALIAS_LEVELS = 30
DOC_DEPTHS = (10, 40, 600, 3000)


# -- document mutations ----------------------------------------------------------------------
GUID = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
HINTS: dict[str, tuple[Any, ...]] = {
    "id": ("storage-private", "a", "-x", "x" * 64, "Storage-Private", "storage private", "", "ü", 7),
    "version": (0, -1, 1, 1.0, 1.5, True, "1", 10**30, 2**63, float("nan"), float("inf")),
    "kind": ("resource", "role-assignments", "Resource", "roles", "", None),
    "mode": ("enforce", "audit", "off", "Enforce", "enforce ", "", "dry-run", True),
    "resource_types": tuple([t.name] for t in CATALOG.values()) + (
        ["microsoft.storage/storageaccounts"], ["Microsoft.Storage/storageAccounts/"], ["Microsoft.Storage"],
        ["Microsoft.Authorization/roleAssignments"], [], ["Microsoft.Storage/storageAccounts"] * 2),
    "subscriptions": ([GUID], [GUID.upper()], [GUID.replace("-", "")], ["{" + GUID + "}"], ["*"], [GUID, GUID]),
    "resource_groups": (["rg-ml-prod"], ["RG-ML-PROD", "rg-ml-prod"], ["*"], [""], ["r" * 91]),
    "tags": ({"owner": "x"}, {"Owner": "x", "owner": "y"}, {"owner": 1}, {"": ""}, {"a": None}),
    "property": ("properties.publicNetworkAccess", "properties.properties.enableNodePublicIp", "properties..x",
                 ".x", "x.", "a" * 300, "properties.publicNetworkAccess ", "tags.owner", "id", "name"),
    "expect": ({"equals": "Disabled"}, {"equals": True}, {"in": ["a", "b"]}, {"not_in": []}, {},
               {"equals": "a", "in": ["a"]}, {"matches": ".*"}, {"equals": None}, {"equals": float("nan")},
               {"equals": [1]}, {"in": [float("nan")]}),
    "action": ({"type": "set-property", "value": "Disabled"}, {"type": "notify"}, {"type": "set-property"},
               {"type": "Set-Property", "value": 1}, {"type": "delete-role-assignment"}, {"value": 1},
               {"type": "set-property", "value": float("nan")}, {"type": ["notify"]}, {"type": None}),
    "type": ("set-property", "notify", "delete-role-assignment", "set_property", "", None, 1),
    "value": ("Disabled", False, True, 0, float("nan"), {"a": 1}, [1], None, "x" * 1000),
    "scope": tuple(s.IDS) + ("/", "", "/subscriptions/*", "/providers/Microsoft.Management/managementGroups/x",
                             "/subscriptions/" + GUID + "/resourceGroups/rg/../x"),
    "expires": ("2027-01-31T00:00:00Z", "2027-01-31T00:00:00", "2027-01-31", "9999-12-31T23:59:59+14:00",
                "0001-01-01T00:00:00-14:00", "2027-02-30T00:00:00Z", "never", "", 1700000000,
                datetime(2027, 1, 31, tzinfo=timezone.utc), datetime(2027, 1, 31), date(2027, 1, 31)),
    "max_actions": (0, 1, 100000, 100001, -1, 1.5, True, "5", None),
    "window_seconds": (0, 1, 86400, 86401, -1, 2.0, False),
    "notify_tag": ("owner", "", "Owner", "x" * 600, None),
}
_KEY_TYPOS = ("drop_char", "swap_case", "add_char", "plural", "dash")


def _typo(key: Any, how: str) -> Any:
    if not isinstance(key, str) or not key:
        return key
    return {"drop_char": key[:-1], "swap_case": key.swapcase(), "add_char": key + "x",
            "plural": key + "s", "dash": key.replace("_", "-")}[how]


def _paths(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in the document, without recursion."""
    out, stack = [], [doc]
    while stack:
        cur = stack.pop()
        items = cur.items() if isinstance(cur, dict) else enumerate(cur) if isinstance(cur, list) else ()
        for k, v in items:
            out.append((cur, k))
            if isinstance(v, (dict, list)):
                stack.append(v)
    return out


def _doc_value(draw: st.DrawFn, key: Any) -> Any:
    hints = HINTS.get(key) if isinstance(key, str) else None
    if hints and draw(st.booleans()):
        return _copy(s._pick(draw, hints))
    return draw(st.one_of(s.json_values, s.json_values, st.sampled_from(s.WEIRD_STRINGS),
                          _deep, _huge))


def _copy(value: Any) -> Any:
    """Copy of nested dicts/lists (iterative: documents may be thousands of levels deep)."""
    def shell(v: Any) -> Any:
        return {} if isinstance(v, dict) else [] if isinstance(v, list) else v

    root = shell(value)
    stack = [(value, root)] if root is not value else []
    while stack:
        src, dst = stack.pop()
        for k, v in (src.items() if isinstance(src, dict) else enumerate(src)):
            new = shell(v)
            if isinstance(dst, dict):
                dst[k] = new
            else:
                dst.append(new)
            if new is not v:
                stack.append((v, new))
    return root


_deep = st.builds(s._nest, st.sampled_from(DOC_DEPTHS), st.sampled_from(["list", "dict"]), st.sampled_from([None, "x"]))
_huge = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "\U0001F600"]),
                          st.sampled_from([300, 5000, 70000]))
_DOC_OPS = ("drop", "replace", "replace", "replace", "retype", "rename", "add", "add_odd_key", "dup_item", "swap")


def mutate_doc(draw: st.DrawFn, doc: Any) -> Any:
    paths = _paths(doc)
    if not paths:
        return draw(s.json_values)
    op = s._pick(draw, _DOC_OPS)
    cont, key = s._pick(draw, paths)
    if op == "drop":
        del cont[key]
    elif op == "replace":
        cont[key] = _doc_value(draw, key)
    elif op == "retype":
        v = cont[key]
        text = v if isinstance(v, str) else type(v).__name__ if isinstance(v, (dict, list, int)) else repr(v)[:50]
        cont[key] = s._pick(draw, ([v], {"value": v}, text, None, 1, True))
    elif op == "rename" and isinstance(cont, dict):
        cont[_typo(key, s._pick(draw, _KEY_TYPOS))] = cont.pop(key)
    elif op == "add":
        target = cont[key] if isinstance(cont[key], dict) else cont
        if isinstance(target, dict):
            new = s._pick(draw, tuple(HINTS) + ("expct", "unknown", "selectors"))
            target[new] = _doc_value(draw, new)
        else:
            target.append(_doc_value(draw, None))
    elif op == "add_odd_key":
        target = cont[key] if isinstance(cont[key], dict) else cont
        if isinstance(target, dict):     # keys YAML can produce (and Python callers can pass)
            target[s._pick(draw, (1, 1.5, True, None, date(2027, 1, 1), (1, 2), 10**400))] = "x"
    elif op == "dup_item" and isinstance(cont[key], list) and cont[key]:
        cont[key].append(_copy(cont[key][0]))
    elif op == "swap":
        cont2, key2 = s._pick(draw, paths)
        cont[key], cont2[key2] = cont2[key2], cont[key]
    return doc


@st.composite
def documents(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """1-3 (source, document): mostly mutated baseline policies, sometimes arbitrary values."""
    items = []
    for i in range(s._pick(draw, (1, 1, 1, 2, 3))):
        if s._pick(draw, range(10)) == 0:
            doc: Any = draw(s.json_values)
        else:
            doc = json.loads(s._pick(draw, BASELINE_DOCS))
            for _ in range(s._pick(draw, (0, 1, 1, 2, 2, 3, 5))):
                doc = mutate_doc(draw, doc)
        source = s._pick(draw, (f"row-{i}", f"policies/{i}.yaml", f"PartitionKey=p;RowKey=r{i}", "ü:'\n'"))
        items.append((source, doc))
    return items


# -- YAML text mutations ---------------------------------------------------------------------
YAML_SNIPPETS = (
    "!!python/object/apply:os.system ['id']", "!!python/name:os.system", "&a x", "*a", "*undefined", "<<: *a",
    "---", "...", "%YAML 1.1", "%TAG ! tag:x,2000:", "\t", "? [a, b]\n: c", "!!binary aGk=", "!!set {a, b}",
    "!!timestamp 2001-12-14", "!!float nan", ".inf", "-.inf", ".nan", "0x1F", "0o17", "1_000", "~", "null",
    "yes", "no", "on", "off", "Y", "N", "2027-01-31T00:00:00Z", "2027-01-31", "'unterminated", '"\\x00"',
    '"\\ud800"', "\ufeff", "\x00", "\x85", "\u2028", "|\n  block", ">-\n  folded", "{a: 1, a: 2}", "[", "]", "{",
    "}", "- ", ": ", "#", "@", "`", "!", "&", "*", "%", "1e400", "-0", "0.", "9" * 400, "9" * INT_DIGITS,
)
_LINE_OPS = ("drop_line", "dup_line", "indent", "dedent", "snippet", "snippet", "replace_value", "truncate", "tabs")


def mutate_text(draw: st.DrawFn, text: str) -> str:
    lines = text.split("\n")
    op = s._pick(draw, _LINE_OPS)
    i = draw(st.integers(0, max(0, len(lines) - 1)))
    if op == "drop_line" and lines:
        del lines[i]
    elif op == "dup_line" and lines:
        lines.insert(i, lines[i])           # usually a duplicate key
    elif op == "indent" and lines:
        lines[i] = "  " + lines[i]
    elif op == "dedent" and lines:
        lines[i] = lines[i].lstrip()
    elif op == "snippet":
        line = lines[i] if lines else ""
        pos = draw(st.integers(0, len(line)))
        lines[i if lines else 0:i + 1] = [line[:pos] + s._pick(draw, YAML_SNIPPETS) + line[pos:]]
    elif op == "replace_value" and lines:
        head, sep, _ = lines[i].partition(": ")
        lines[i] = head + (sep or ": ") + s._pick(draw, YAML_SNIPPETS + tuple(map(str, s.WEIRD_STRINGS[:12])))
    elif op == "truncate":
        return "\n".join(lines)[: draw(st.integers(0, len(text)))]
    else:
        lines = [ln.replace("  ", "\t") for ln in lines]
    return "\n".join(lines)


def _alias_fanout(levels: int) -> str:
    lines = ["id: fanout", "version: 1", "description: d", "mode: enforce", "selector:", "  resource_types:",
             "    - &a0 [x, x]"]
    lines += [f"    - &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, levels)]
    lines += ["rules:", "  - {id: r, property: p.q, expect: {equals: 1}, action: {type: notify}}"]
    return "\n".join(lines)


def _nested_yaml(depth: int, kind: str) -> str:
    return "id: deep\nrules: " + ("[" * depth + "]" * depth if kind == "flow" else "{a: " * depth + "1" + "}" * depth)


SPECIAL_TEXTS = (
    _alias_fanout(ALIAS_LEVELS), _nested_yaml(120, "flow"), _nested_yaml(YAML_DEPTH, "flow"),
    _nested_yaml(YAML_DEPTH, "map"), "", "\n", "# only a comment", "---\n---", "[]", "x",
    "id: a\nid: b", "{", "\ufeffid: x", BASELINE_TEXTS[0] * 2, BASELINE_TEXTS[0].replace("\n", "\r\n"),
    BASELINE_TEXTS[0] + "\n" + "# pad\n" * 20000, "id: x\nrules: [" + "a, " * 15000 + "]",
    "id: x\ndescription: " + "x" * 300_000,      # over the loader's file-size limit
)


@st.composite
def yaml_texts(draw: st.DrawFn) -> str | bytes:
    kind = s._pick(draw, ("mutated",) * 7 + ("arbitrary", "special", "bytes"))
    if kind == "mutated":
        text = s._pick(draw, SEED_TEXTS)
        for _ in range(s._pick(draw, (0, 1, 1, 2, 3))):
            text = mutate_text(draw, text)
        return text
    if kind == "arbitrary":
        return draw(st.text(max_size=60)) if draw(st.booleans()) else "\n".join(
            s._pick(draw, YAML_SNIPPETS) for _ in range(draw(st.integers(0, 6))))
    if kind == "special":
        return s._pick(draw, SPECIAL_TEXTS)
    seed = s._pick(draw, SEED_TEXTS)
    raw = seed.encode("utf-8")
    return s._pick(draw, (raw.replace(b"e", b"\xe9", 1), b"\xff\xfe" + raw, seed.encode("utf-16"),
                          b"\x00" * 10, raw + b"\x80", b"\xef\xbb\xbf" + raw))


# -- checks ----------------------------------------------------------------------------------
# The hang guard for metadata: a 256 KB file of 85,000 flow items legitimately takes ~1.4 s in
# pure-Python PyYAML; exponential inputs (alias fan-out) took minutes. Rows (load_documents) are
# the worker's path and get the event path's 1 s.
MAX_FILE_SECONDS = 3.0


def _timed(fn, *args, limit: float):
    """(result, MetadataValidationError or None, seconds); a slow call is timed once more, so a
    GC pause or a busy CI neighbour is not taken for a hang (a hang reproduces)."""
    for _attempt in (1, 2):
        started = time.perf_counter()
        try:
            result, exc = fn(*args), None
        except MetadataValidationError as e:
            result, exc = None, e
        elapsed = time.perf_counter() - started
        if elapsed < limit:
            break
    return result, exc, elapsed


def check_findings(exc: MetadataValidationError, sources: list[str]) -> None:
    assert exc.findings and all(isinstance(f, str) for f in exc.findings), exc.findings
    for f in exc.findings:
        assert any(f.startswith(f"{src}: policy ") for src in sources), (f[:300], sources)


def check_accepted(policies: list, sources: list[str]) -> None:
    for p in policies:
        assert p.source in sources
        doc = p.to_document()
        json.dumps(doc)                                  # the Table Storage row
        (again,) = load_documents([(p.source, doc)])     # a row read back is re-validated
        assert again == p
    compile_policies(policies)                           # the worker compiles what sync wrote


def _same(a: Any, b: Any) -> bool:
    return [a] == [b]


def test_fuzz_load_documents() -> None:
    seen: dict[str, int] = {"accepted": 0, "rejected": 0}

    @cfg.fuzz_settings(DOC_EXAMPLES)
    @given(items=documents())
    def run(items: list[tuple[str, Any]]) -> None:
        # compare shallow inputs only (a deep compare recurses)
        before = [(src, _copy(doc)) for src, doc in items] if s.depth([d for _, d in items], 100) < 100 else None
        policies, exc, elapsed = _timed(load_documents, items, limit=cfg.MAX_SECONDS)
        note(f"findings: {exc.findings if exc else None}")
        assert elapsed < cfg.MAX_SECONDS, f"load_documents took {elapsed:.2f} s"
        assert before is None or _same(items, before), "load_documents mutated its input"
        sources = [src for src, _ in items]
        if exc is not None:
            seen["rejected"] += 1
            check_findings(exc, sources)
        else:
            seen["accepted"] += 1
            assert len(policies) == len(items)
            check_accepted(policies, sources)

    run()
    print(f"fuzz load_documents: {seen}")
    assert seen["accepted"] >= 0.05 * DOC_EXAMPLES and seen["rejected"] >= 0.3 * DOC_EXAMPLES, seen


def test_fuzz_load_directory() -> None:
    seen: dict[str, int] = {"accepted": 0, "rejected": 0}
    root = Path(tempfile.mkdtemp(prefix="guardrails-fuzz-"))
    try:
        @cfg.fuzz_settings(FILE_EXAMPLES)
        @given(files=st.lists(yaml_texts(), min_size=1, max_size=2),
               names=st.lists(st.sampled_from(("a.yaml", "b.yml", "sub/c.YAML", "d.json", ".hidden.yaml")),
                              min_size=2, max_size=2, unique=True))
        def run(files: list[str | bytes], names: list[str]) -> None:
            d = root / "m"
            shutil.rmtree(d, ignore_errors=True)
            written = []
            for name, content in zip(names, files):
                path = d / name
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content, encoding="utf-8", errors="surrogatepass")
                written.append(str(path))
            d.mkdir(exist_ok=True)
            policies, exc, elapsed = _timed(load_directory, d, limit=MAX_FILE_SECONDS)
            assert elapsed < MAX_FILE_SECONDS, f"load_directory took {elapsed:.2f} s"
            if exc is not None:
                seen["rejected"] += 1
                check_findings(exc, written)
            else:
                seen["accepted"] += 1
                check_accepted(policies, written)

        run()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"fuzz load_directory: {seen}")
    assert seen["accepted"] > 0 and seen["rejected"] >= 0.3 * FILE_EXAMPLES, seen
