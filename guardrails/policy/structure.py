"""Pass 1 of metadata validation (``guardrails.policy.loader``): structure.

The file is YAML with exactly one mapping document (``_parse_yaml``: safe, YAML 1.2 booleans,
YAML 1.1-only number forms refused (``010``, ``1:30``), timestamps kept as strings, duplicate keys, aliases and merge keys refused, size bounded); depth
and numbers are bounded (``_shape_problem``) before any recursive pass; ``kind`` (absent means
``resource``: ``_kind``) is known, keys are strings and known (walked from that kind's schema by
``_walk_keys``, so nested typos like ``expct`` are caught with a suggestion), the required
top-level keys are present, an action ``type`` is registered for the kind (``_structure``).
``_plain`` is the JSON-shaped copy of a document a Python caller passed.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Mapping

import yaml

from guardrails.model.policy import KINDS, RESOURCE_KIND
from guardrails.policy import schema as schema_mod
from guardrails.policy.findings import _finding, _hint


MAX_FILE_CHARS = 256 * 1024     # a policy is a few KB
MAX_DEPTH = 32                  # policies nest a handful of levels
MAX_INT = 2 ** 53               # JSON-safe integers only


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML; timestamps stay strings (validated in pass 3); duplicate keys are errors;
    anchors/aliases are refused (a policy never needs them; they enable billion-laughs)."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not allowed in policy files",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:merge":
                # ``<<`` would flatten another mapping in and silently drop a key it repeats
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "YAML merge keys (<<) are not allowed in policy files", key_node.start_mark)
            if isinstance(key_node, yaml.ScalarNode):
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key '{key_node.value}'", key_node.start_mark)
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)


_BOOL = "tag:yaml.org,2002:bool"
# YAML 1.2 booleans: only true/false. YAML 1.1 also reads yes/no/on/off as booleans, which turns
# ``mode: off`` into ``mode: false`` (and "NO" the country code into false): here they stay words.
_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# YAML 1.2 numbers: decimal integers, unsigned hexadecimal, decimal fractions. YAML 1.1 (PyYAML)
# also reads ``010`` as 8 (octal), ``1:30`` as 90 (base 60), ``0b11``, ``1_000`` and ``-0x1F`` as
# numbers, which YAML 1.2 reads as other numbers or as text: such a plain scalar is refused
# (``_YAML11_NUMBER``), naming both readings, so ``equals: 010`` never silently compares with 8.
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_INT_12 = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$")
_FLOAT_12 = re.compile(r"^(?:[-+]?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?|\.[0-9]+(?:[eE][-+][0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_YAML11_NUMBER = "tag:guardrails,2025:yaml-1.1-number"
_YamlLoader.yaml_implicit_resolvers = {
    ch: [(tag, {_BOOL: _BOOL_12, _INT: _INT_12, _FLOAT: _FLOAT_12}.get(tag, rx))
         for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    # last: what only YAML 1.1 reads as a number (the 1.2 forms above matched first)
    + [(_YAML11_NUMBER, rx) for tag, rx in resolvers if tag in (_INT, _FLOAT)]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml11_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = node.value
    is_int = any(tag == _INT and rx.match(text) for tag, rx in yaml.SafeLoader.yaml_implicit_resolvers.get(text[:1], ()))
    try:
        as11 = (yaml.SafeLoader.construct_yaml_int if is_int else yaml.SafeLoader.construct_yaml_float)(loader, node)
    except (ValueError, TypeError):
        as11 = "a number"
    form = ("a base-60 number" if ":" in text else "a binary number" if "0b" in text
            else "a signed hexadecimal number" if "x" in text else "a number with '_' separators" if "_" in text
            else "an octal number")
    raise yaml.constructor.ConstructorError(
        None, None, f"{text} is read as {as11!r} by YAML 1.1 ({form}) but not by YAML 1.2: quote it "
        f"('{text}') for the text, or write the number in decimal", node.start_mark)


_YamlLoader.add_constructor(_YAML11_NUMBER, _yaml11_number)


def _parse_yaml(source: str, text: str) -> tuple[Any, list[str]]:
    if len(text) > MAX_FILE_CHARS:
        return None, [_finding(source, None, "$", f"file too large ({len(text)} > {MAX_FILE_CHARS} characters)")]
    try:
        docs = list(yaml.load_all(text, Loader=_YamlLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [_finding(source, None, "$", f"invalid YAML: {problem}{where}")]
    except RecursionError:
        return None, [_finding(source, None, "$", f"invalid YAML: nested deeper than {MAX_DEPTH} levels")]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # PyYAML raises these for malformed explicitly tagged scalars (`!!int x`, huge ints)
        return None, [_finding(source, None, "$", f"invalid YAML: malformed value ({type(exc).__name__})")]
    if len(docs) != 1:
        return None, [_finding(source, docs[0] if docs else None, "$",
                               f"expected exactly one YAML document, found {len(docs)}")]
    return docs[0], []


def _shape_problem(doc: Any) -> tuple[str, str] | None:
    """Depth and number bounds, checked iteratively before any recursive pass."""
    stack: list[tuple[Any, str, int]] = [(doc, "$", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return path, f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, Mapping):
            bad = next((k for k in value if not isinstance(k, str)), None)
            if bad is not None:
                shown = repr(bad) if isinstance(bad, (bool, float)) or (isinstance(bad, int) and abs(bad) < 10 ** 20) \
                    else f"of type {type(bad).__name__}"
                return path, f"key {shown} must be a string"
            stack.extend((v, f"{path}.{k[:40] if isinstance(k, str) else type(k).__name__}", depth + 1)
                         for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            return path, "integer out of range"
        elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return path, "number is not finite"
    return None


def _plain(value: Any) -> Any:
    """Plain JSON-shaped copy; datetimes (from Python callers) become ISO strings."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _walk_keys(inst: Any, sch: Mapping[str, Any], path: str, out: list[tuple[str, str]]) -> None:
    if isinstance(inst, dict):
        for k in inst:
            if not isinstance(k, str):
                out.append((path, f"key {k!r} must be a string (quote it)"))
    if "oneOf" in sch and isinstance(inst, dict):          # a registry-backed union: pick by type
        branches = {b.get("properties", {}).get("type", {}).get("const"): b for b in sch["oneOf"]}
        kind = inst.get("type")
        if "type" not in inst:
            out.append((path, f"missing 'type' (one of: {', '.join(sorted(map(str, branches)))})"))
            return
        if not isinstance(kind, str) or kind not in branches:
            out.append((f"{path}.type", f"unknown action type {kind!r}{_hint(kind, branches)};"
                        f" known: {', '.join(sorted(map(str, branches)))}"))
            return
        sch = branches[kind]
    if isinstance(inst, dict) and sch.get("additionalProperties") is False:
        props = sch.get("properties", {})
        for k, v in inst.items():
            if k in props:
                _walk_keys(v, props[k], f"{path}.{k}", out)
            elif isinstance(k, str):
                out.append((path, f"unknown key '{k}'{_hint(k, props)}"))
    elif isinstance(inst, list) and isinstance(sch.get("items"), Mapping):
        for i, item in enumerate(inst):
            _walk_keys(item, sch["items"], f"{path}[{i}]", out)


def _kind(doc: Mapping[str, Any]) -> Any:
    return doc.get("kind", RESOURCE_KIND)


def _structure(source: str, doc: Any) -> list[str]:
    if not isinstance(doc, dict):
        kind = "empty document" if doc is None else f"a {type(doc).__name__}"
        return [_finding(source, None, "$", f"expected a mapping (one policy), found {kind}")]
    kind = _kind(doc)
    if not isinstance(kind, str) or kind not in KINDS:
        return [_finding(source, doc, "$.kind", f"unknown policy kind {kind!r}{_hint(kind, KINDS)};"
                         f" known: {', '.join(KINDS)}")]
    found: list[tuple[str, str]] = []
    missing = [k for k in schema_mod.required_keys(kind) if k not in doc]
    if missing:
        found.append(("$", "missing required key(s) " + ", ".join(f"'{k}'" for k in missing)))
    _walk_keys(doc, schema_mod.policy_schema(kind=kind), "$", found)
    return [_finding(source, doc, p, m) for p, m in found]
