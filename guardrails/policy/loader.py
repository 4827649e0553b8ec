"""Load policy metadata and validate it in three passes, collecting every finding.

1. structure — the file is YAML with exactly one mapping document, keys are strings and known
   (walked from the schema, so nested typos like ``expct`` are caught with a suggestion), the
   required top-level keys are present, an action ``type`` is registered;
2. JSON Schema — draft 2020-12, the most specific error per problem, with its JSON path;
3. semantics — catalogue types, one operator per ``expect``, action ``validate()``, GUIDs,
   exemption scopes and timezone-aware expiry, unique rule ids, unique policy ids.

A file that fails a pass is not checked by the later ones (their findings would be noise), but
every file is checked, and all findings are raised together as ``MetadataValidationError``.
Each finding reads ``<source>: policy '<id>' (or ?): <json path>: <message>``.

The only I/O here is reading the metadata files.
"""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from jsonschema.exceptions import ValidationError, best_match

from guardrails.errors import MetadataValidationError
from guardrails.model.policy import (
    DEFAULT_BREAKER, DEFAULT_NOTIFY_TAG, Breaker, Exemption, Policy, Rule, Selector, freeze,
)
from guardrails.model.resource import CATALOG, lookup_type
from guardrails.policy import schema as schema_mod
from guardrails.remediation.actions import actions

__all__ = ["load_directory", "load_documents"]

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SUFFIXES = (".yaml", ".yml")


# ---------------------------------------------------------------- findings

def _pid(doc: Any) -> str:
    pid = doc.get("id") if isinstance(doc, dict) else None
    return f"'{pid}'" if isinstance(pid, str) and pid else "?"


def _finding(source: str, doc: Any, path: str, message: str) -> str:
    return f"{source}: policy {_pid(doc)}: {path}: {message}"


def _hint(word: Any, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


# ---------------------------------------------------------------- pass 1: structure

class _YamlLoader(yaml.SafeLoader):
    """Safe YAML; timestamps stay strings (validated in pass 3); duplicate keys are errors."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key '{key_node.value}'", key_node.start_mark)
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse_yaml(source: str, text: str) -> tuple[Any, list[str]]:
    try:
        docs = list(yaml.load_all(text, Loader=_YamlLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [_finding(source, None, "$", f"invalid YAML: {problem}{where}")]
    if len(docs) != 1:
        return None, [_finding(source, docs[0] if docs else None, "$",
                               f"expected exactly one YAML document, found {len(docs)}")]
    return docs[0], []


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


def _structure(source: str, doc: Any) -> list[str]:
    if not isinstance(doc, dict):
        kind = "empty document" if doc is None else f"a {type(doc).__name__}"
        return [_finding(source, None, "$", f"expected a mapping (one policy), found {kind}")]
    found: list[tuple[str, str]] = []
    missing = [k for k in schema_mod.REQUIRED_KEYS if k not in doc]
    if missing:
        found.append(("$", "missing required key(s) " + ", ".join(f"'{k}'" for k in missing)))
    _walk_keys(doc, schema_mod.policy_schema(), "$", found)
    return [_finding(source, doc, p, m) for p, m in found]


# ---------------------------------------------------------------- pass 2: JSON Schema

def _specific(err: ValidationError) -> ValidationError:
    """Descend to the error that names the real problem (Custodian's ``specific_error``)."""
    if err.validator == "oneOf" and isinstance(err.instance, dict) and err.context:
        kind = err.instance.get("type")
        chosen = [c for c in err.context
                  if err.validator_value[c.relative_schema_path[0]]
                  .get("properties", {}).get("type", {}).get("const") == kind]
        if chosen:
            return _specific(best_match(chosen))
    if err.context:
        return _specific(best_match(err.context))
    return err


def _schema_pass(source: str, doc: dict[str, Any]) -> list[str]:
    seen: dict[tuple[str, str], None] = {}
    for err in schema_mod.validator().iter_errors(doc):
        e = _specific(err)
        seen[(e.json_path, e.message)] = None
    return [_finding(source, doc, p, m) for p, m in sorted(seen)]


# ---------------------------------------------------------------- pass 3: semantics

def _check_scope(scope: str) -> str | None:
    from guardrails.errors import InvalidArmId
    from guardrails.model.arm_id import parse_scope   # lazy: the ARM id grammar lives there

    try:
        parse_scope(scope)
    except InvalidArmId as exc:
        return f"not a valid ARM scope {scope!r}: {exc}"
    return None


def _parse_expires(text: str) -> tuple[datetime | None, str | None]:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None, f"'{text}' is not an ISO 8601 datetime (e.g. 2027-01-31T00:00:00Z)"
    if when.tzinfo is None or when.utcoffset() is None:
        return None, f"'{text}' has no timezone: write it with Z or an offset (e.g. 2027-01-31T00:00:00Z)"
    return when, None


def _semantics(source: str, doc: dict[str, Any]) -> tuple[Policy | None, list[str]]:
    found: list[tuple[str, str]] = []
    sel = doc["selector"]
    types = list(sel["resource_types"])
    for i, t in enumerate(types):
        if lookup_type(t) is None:
            found.append((f"$.selector.resource_types[{i}]", f"resource type '{t}' is not in the catalogue"
                          f"{_hint(t, [c.name for c in CATALOG.values()])}"))
    for i, sub in enumerate(sel.get("subscriptions", ())):
        if not _GUID.match(sub):
            found.append((f"$.selector.subscriptions[{i}]", f"'{sub}' is not a subscription GUID"))
    tag_keys: dict[str, str] = {}
    for k in sel.get("tags", {}):
        if k.lower() in tag_keys:
            found.append(("$.selector.tags", f"tag keys '{tag_keys[k.lower()]}' and '{k}' differ only in case"))
        tag_keys[k.lower()] = k

    rules: list[Rule] = []
    rule_ids: dict[str, int] = {}
    for i, rd in enumerate(doc["rules"]):
        path = f"$.rules[{i}]"
        if rd["id"] in rule_ids:
            found.append((f"{path}.id", f"duplicate rule id '{rd['id']}' (also $.rules[{rule_ids[rd['id']]}])"))
        rule_ids.setdefault(rd["id"], i)
        rule = Rule(rd["id"], rd["property"], freeze(rd["expect"]), freeze(rd["action"]), rd.get("description", ""))
        rules.append(rule)
        if len(rd["expect"]) != 1:
            found.append((f"{path}.expect", "exactly one operator expected, found "
                          + ", ".join(f"'{k}'" for k in rd["expect"])))
            continue
        found.extend((f"{path}.action", m) for m in actions.build(rd["action"]).validate(rule, types))

    exemptions: list[Exemption] = []
    for i, ed in enumerate(doc.get("exemptions", ())):
        path = f"$.exemptions[{i}]"
        problem = _check_scope(ed["scope"])
        if problem:
            found.append((f"{path}.scope", problem))
        expires = None
        if "expires" in ed:
            expires, problem = _parse_expires(ed["expires"])
            if problem:
                found.append((f"{path}.expires", problem))
        exemptions.append(Exemption(ed["scope"], ed["reason"], ed["owner"], expires))

    if found:
        return None, [_finding(source, doc, p, m) for p, m in found]
    policy = Policy(
        id=doc["id"],
        version=int(doc["version"]),
        description=doc["description"],
        mode=doc["mode"],
        selector=Selector(
            resource_types=tuple(types),
            subscriptions=tuple(sel.get("subscriptions", ())),
            resource_groups=tuple(sel.get("resource_groups", ())),
            tags=freeze(sel.get("tags", {})),
        ),
        rules=tuple(rules),
        exemptions=tuple(exemptions),
        notify_tag=doc.get("notify_tag", DEFAULT_NOTIFY_TAG),
        breaker=Breaker(**doc["breaker"]) if "breaker" in doc else DEFAULT_BREAKER,
        source=source,
    )
    return policy, []


# ---------------------------------------------------------------- the pipeline

def _validate(items: Iterable[tuple[str, Any]]) -> tuple[list[Policy], list[str]]:
    """Run the passes on ``(source, str-text | mapping)`` items; ids must be unique among them."""
    findings: list[str] = []
    policies: list[Policy] = []
    first_source: dict[str, str] = {}
    for source, raw in items:
        if isinstance(raw, str):
            doc, found = _parse_yaml(source, raw)
        else:
            doc, found = _plain(raw), []
        found = found or _structure(source, doc)
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            pid = doc["id"]
            if pid in first_source:
                found.append(_finding(source, doc, "$.id",
                                      f"duplicate policy id '{pid}': also defined in {first_source[pid]}"))
            first_source.setdefault(pid, source)
        if found:
            findings.extend(found)
            continue
        found = _schema_pass(source, doc)
        if found:
            findings.extend(found)
            continue
        policy, found = _semantics(source, doc)
        findings.extend(found)
        if policy is not None:
            policies.append(policy)
    return policies, findings


def load_documents(items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Policy]:
    """Validate already-parsed documents (e.g. Table Storage rows), in the order given."""
    policies, findings = _validate(items)
    if findings:
        raise MetadataValidationError(findings)
    return policies


def _policy_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*")
        if p.suffix.lower() in _SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def load_directory(*dirs: Path | str) -> list[Policy]:
    """Every ``*.yaml``/``*.yml`` under each directory (recursive, sorted), sorted by policy id.

    A later directory's policy REPLACES an earlier one with the same id (an extra
    ``--metadata DIR`` overrides the shipped baseline); a duplicate within one directory is an error.
    """
    findings: list[str] = []
    merged: dict[str, Policy] = {}
    for d in map(Path, dirs):
        if not d.is_dir():
            findings.append(f"{d}: policy ?: $: not a directory")
            continue
        items: list[tuple[str, Any]] = []
        for path in _policy_files(d):
            try:
                items.append((str(path), path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                findings.append(f"{path}: policy ?: $: cannot read: {exc}")
        policies, found = _validate(items)
        findings.extend(found)
        merged.update((p.id, p) for p in policies)
    if findings:
        raise MetadataValidationError(findings)
    return sorted(merged.values(), key=lambda p: p.id)
