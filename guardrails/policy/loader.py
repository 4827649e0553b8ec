"""Load policy metadata and validate it in three passes, collecting every finding.

1. structure — the file is YAML with exactly one mapping document, ``kind`` (absent means
   ``resource``) is known, keys are strings and known (walked from that kind's schema, so nested
   typos like ``expct`` are caught with a suggestion), the required top-level keys are present,
   an action ``type`` is registered for the kind;
2. JSON Schema — draft 2020-12, the kind's schema, the most specific error per problem, with its
   JSON path;
3. semantics — resource kind: catalogue types, one operator per ``expect``, action
   ``validate()``, unique rule ids; role-assignments kind: role names in the built-in catalogue
   (or GUIDs), principal/group object ids are GUIDs, grant and strict scopes are ARM scopes;
   both: GUIDs, exemption scopes and timezone-aware expiry, unique policy ids; the check kinds
   (job, model-registry, check-access): ``guardrails/checks/policy_schema.py``, one policy per job_id.

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
    DEFAULT_BREAKER, DEFAULT_FLIP_FLOP, DEFAULT_NOTIFY_TAG, KINDS, RESOURCE_KIND, ROLE_KIND, AnyPolicy, Breaker,
    Exemption, FlipFlop, Policy, PrivateEndpointFirst, PrivilegedRoles, RoleGrant, RolePolicy, RoleSelector, Rule, Selector, freeze,
)
from guardrails.model.resource import CATALOG, lookup_type
from guardrails.model.roles import BUILTIN_ROLES, builtin_by_name, normalize_guid
from guardrails.checks import policy_schema as check_schema
from guardrails.secrets.credentials import find_credentials
from guardrails.policy import schema as schema_mod
from guardrails.remediation.actions import actions

__all__ = ["load_directory", "load_documents"]

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SUFFIXES = (".yaml", ".yml")


# ---------------------------------------------------------------- findings

_SHOWN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")          # the schema's id pattern
_KEYLIKE_RUN = re.compile(r"(?=[a-z0-9]*[0-9])[a-z0-9]{24,}")   # a policy id is words, not a token
_SHOWN_VALUE = 32        # a refused string longer than this is described, not quoted


def _pid(doc: Any) -> str:
    """The policy id for a finding: only a well-formed id that does not look like a key or a
    token (a pasted secret in ``id`` would otherwise be printed with every finding)."""
    pid = doc.get("id") if isinstance(doc, dict) else None
    if not isinstance(pid, str) or not pid:
        return "?"
    if _SHOWN_ID.match(pid) and not _KEYLIKE_RUN.search(pid):
        return f"'{pid}'"
    return f"<an id of {len(pid)} characters, not shown>"


def _finding(source: str, doc: Any, path: str, message: str) -> str:
    from guardrails.secrets.credentials import redact   # a refused value may be a pasted key
    return f"{source}: policy {_pid(doc)}: {path}: {redact(message)}"


def _unquoted(message: str, instance: Any) -> str:
    """A validator's message without the refused value itself when that is a long string (a key
    pasted where a name belongs would otherwise be printed, logged and kept in CI output)."""
    if isinstance(instance, str) and len(instance) > _SHOWN_VALUE:
        return message.replace(repr(instance), f"<a value of {len(instance)} characters>")
    return message


def _hint(word: Any, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


# ---------------------------------------------------------------- pass 1: structure

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
_YamlLoader.yaml_implicit_resolvers = {
    ch: [(tag, _BOOL_12 if tag == _BOOL else rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


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
    for err in schema_mod.validator(kind=_kind(doc)).iter_errors(doc):
        e = _specific(err)
        seen[(e.json_path, _unquoted(e.message, e.instance))] = None
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


def _resource_scope(scope: str) -> str | None:
    """A resource policy's exemption must be able to contain a resource id: a resource id names
    its subscription, never its management group, so a management-group scope would silently
    exempt nothing."""
    if not scope.strip().lower().startswith("/subscriptions/"):
        return ("a management group scope never matches: resource ids do not name their management "
                "group; exempt subscriptions, resource groups or resources instead")
    return None


def _parse_expires(text: str) -> tuple[datetime | None, str | None]:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None, f"'{text}' is not an ISO 8601 datetime (e.g. 2027-01-31T00:00:00Z)"
    if when.tzinfo is None or when.utcoffset() is None:
        return None, f"'{text}' has no timezone: write it with Z or an offset (e.g. 2027-01-31T00:00:00Z)"
    return when, None


def _exemptions(doc: Mapping[str, Any], found: list[tuple[str, str]]) -> tuple[Exemption, ...]:
    exemptions: list[Exemption] = []
    for i, ed in enumerate(doc.get("exemptions", ())):
        path = f"$.exemptions[{i}]"
        problem = _check_scope(ed["scope"]) or _resource_scope(ed["scope"])
        if problem:
            found.append((f"{path}.scope", problem))
        expires = None
        if "expires" in ed:
            expires, problem = _parse_expires(ed["expires"])
            if problem:
                found.append((f"{path}.expires", problem))
        exemptions.append(Exemption(ed["scope"], ed["reason"], ed["owner"], expires))
    return tuple(exemptions)


def _subscriptions(sel: Mapping[str, Any], found: list[tuple[str, str]]) -> None:
    for i, sub in enumerate(sel.get("subscriptions", ())):
        if not _GUID.match(sub):
            found.append((f"$.selector.subscriptions[{i}]", f"'{sub}' is not a subscription GUID"))


def _semantics(source: str, doc: dict[str, Any]) -> tuple[AnyPolicy | None, list[str]]:
    if _kind(doc) == ROLE_KIND:
        return _role_semantics(source, doc)
    if _kind(doc) == "secrets":
        from guardrails.secrets.policy import semantics as secret_semantics
        policy, found = secret_semantics(doc)
        if policy is not None:
            from dataclasses import replace
            policy = replace(policy, source=source)
        return policy, [_finding(source, doc, p, m) for p, m in found]
    if _kind(doc) in check_schema.REQUIRED_KEYS:       # job, model-registry, check-access
        policy, found = check_schema.semantics(_kind(doc), doc, source)
        return policy, [_finding(source, doc, p, m) for p, m in found]
    found: list[tuple[str, str]] = []
    sel = doc["selector"]
    types = list(sel["resource_types"])
    for i, t in enumerate(types):
        if lookup_type(t) is None:
            found.append((f"$.selector.resource_types[{i}]", f"resource type '{t}' is not in the catalogue"
                          f"{_hint(t, [c.name for c in CATALOG.values()])}"))
    _subscriptions(sel, found)
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
        pe = rd.get("private_endpoint")
        rule = Rule(rd["id"], rd["property"], freeze(rd["expect"]), freeze(rd["action"]), rd.get("description", ""),
                    PrivateEndpointFirst(pe.get("when_missing", "notify")) if pe and pe["required"] else None)
        rules.append(rule)
        if len(rd["expect"]) != 1:
            found.append((f"{path}.expect", "exactly one operator expected, found "
                          + ", ".join(f"'{k}'" for k in rd["expect"])))
            continue
        found.extend((f"{path}.action", m) for m in actions.build(rd["action"]).validate(rule, types))

    exemptions = _exemptions(doc, found)

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
        exemptions=exemptions,
        notify_tag=doc.get("notify_tag", DEFAULT_NOTIFY_TAG),
        breaker=Breaker(**doc["breaker"]) if "breaker" in doc else DEFAULT_BREAKER,
        flip_flop=FlipFlop(**doc["flip_flop"]) if "flip_flop" in doc else DEFAULT_FLIP_FLOP,
        contact=doc.get("contact", ""),
        source=source,
    )
    return policy, []


def _role_id(text: str, path: str, found: list[tuple[str, str]]) -> str:
    """A built-in role name (case-insensitive) or a role definition GUID, as a GUID."""
    guid = normalize_guid(text)
    if guid is not None:
        return guid
    builtin = builtin_by_name(text)
    if builtin is not None:
        return builtin.id
    names = [r.role_name for r in BUILTIN_ROLES.values()]
    found.append((path, f"role '{text}' is neither a built-in role of the catalogue nor a role definition"
                  f" GUID{_hint(text, names)}"))
    return ""


def _object_ids(values: Iterable[str], path: str, what: str, found: list[tuple[str, str]]) -> tuple[str, ...]:
    return check_schema.guid_list(values, path, what, found)     # one GUID-list check for every kind


def _scopes(values: Iterable[str], path: str, found: list[tuple[str, str]]) -> tuple[str, ...]:
    for i, scope in enumerate(values):
        problem = _check_scope(scope)
        if problem:
            found.append((f"{path}[{i}]", problem))
    return tuple(values)


def _role_semantics(source: str, doc: dict[str, Any]) -> tuple[RolePolicy | None, list[str]]:
    found: list[tuple[str, str]] = []
    sel = doc.get("selector", {})
    _subscriptions(sel, found)

    pr = doc.get("privileged", {})
    roles = tuple(pr.get("roles", ()))
    role_ids = [_role_id(r, f"$.privileged.roles[{i}]", found) for i, r in enumerate(roles)]
    conditional = tuple(pr.get("conditional_roles", ()))
    conditional_ids = [_role_id(r, f"$.privileged.conditional_roles[{i}]", found)
                       for i, r in enumerate(conditional)]
    for i, gid in enumerate(conditional_ids):
        if gid and gid in role_ids:
            found.append((f"$.privileged.conditional_roles[{i}]", f"role '{conditional[i]}' is also in"
                          " privileged.roles: list it in one of them"))
    privileged = PrivilegedRoles(
        roles=roles,
        custom_role_actions=tuple(pr.get("custom_role_actions", ())),
        custom_role_data_actions=tuple(pr.get("custom_role_data_actions", ())),
        conditional_roles=conditional,
        allowed_service_principals=_object_ids(pr.get("allowed_service_principals", ()),
                                               "$.privileged.allowed_service_principals",
                                               "a service principal object id", found),
        role_ids=frozenset(g for g in role_ids if g),
        conditional_role_ids=frozenset(g for g in conditional_ids if g),
    )
    break_glass = _object_ids(doc.get("break_glass", ()), "$.break_glass", "a principal object id", found)

    grants: list[RoleGrant] = []
    for i, gd in enumerate(doc.get("grants", ())):
        path = f"$.grants[{i}]"
        grant = RoleGrant(
            role=gd["role"],
            role_id=_role_id(gd["role"], f"{path}.role", found),
            scopes=_scopes(gd["scopes"], f"{path}.scopes", found),
            principals=_object_ids(gd.get("principals", ()), f"{path}.principals", "a principal object id", found),
            groups=_object_ids(gd.get("groups", ()), f"{path}.groups", "a group object id", found),
            principal_types=tuple(gd.get("principal_types", ())),
            description=gd.get("description", ""),
        )
        if not (gd.get("principals") or gd.get("groups") or gd.get("principal_types")):
            found.append((path, f"grant of '{gd['role']}' names nobody (principals, groups or principal_types):"
                          " every assignment of the role would be removed"))
        grants.append(grant)
    strict = _scopes(doc.get("strict_scopes", ()), "$.strict_scopes", found)
    exemptions = _exemptions(doc, found)

    if found:
        return None, [_finding(source, doc, p, m) for p, m in found]
    policy = RolePolicy(
        id=doc["id"],
        version=int(doc["version"]),
        description=doc["description"],
        mode=doc["mode"],
        action=freeze(doc["action"]),
        selector=RoleSelector(subscriptions=tuple(sel.get("subscriptions", ()))),
        privileged=privileged,
        break_glass=break_glass,
        grants=tuple(grants),
        strict_scopes=strict,
        exemptions=exemptions,
        breaker=Breaker(**doc["breaker"]) if "breaker" in doc else DEFAULT_BREAKER,
        flip_flop=FlipFlop(**doc["flip_flop"]) if "flip_flop" in doc else DEFAULT_FLIP_FLOP,
        source=source,
    )
    return policy, []


# ---------------------------------------------------------------- the pipeline

def _validate(items: Iterable[tuple[str, Any]]) -> tuple[list[AnyPolicy], list[str]]:
    """Run the passes on ``(source, str-text | mapping)`` items; ids must be unique among them."""
    findings: list[str] = []
    policies: list[AnyPolicy] = []
    first_source: dict[str, str] = {}
    for source, raw in items:
        if isinstance(raw, str):
            doc, found = _parse_yaml(source, raw)
        else:
            doc, found = raw, []
        if not found:
            problem = _shape_problem(doc)
            if problem:
                findings.append(_finding(source, doc if isinstance(doc, Mapping) else None, *problem))
                continue
            if not isinstance(raw, str):
                doc = _plain(raw)
            leaks = list(find_credentials(doc))
            if leaks:
                # metadata holds Key Vault pointers, never values: name the field, never echo it
                findings.extend(_finding(source, doc if isinstance(doc, Mapping) else None, path,
                                         f"looks like a credential ({label}); keep secrets in Key Vault and "
                                         f"reference them (vault + name); the value is not shown")
                                for path, label in leaks)
                continue
        found = found or _structure(source, doc)
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            # one id, one document — except a ``mode: shadow`` version beside the enforced one
            pid = doc["id"] + ("@shadow" if doc.get("mode") == "shadow" else "")
            if pid in first_source:
                what = "a second shadow version of" if pid.endswith("@shadow") else "duplicate policy id"
                found.append(_finding(source, doc, "$.id",
                                      f"{what} '{doc['id']}': also defined in {first_source[pid]}"))
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
    from guardrails.checks.policies import duplicate_job_findings
    findings.extend(f"{src}: policy '{pid}': $.job_id: {msg}" for src, pid, msg in duplicate_job_findings(policies))
    return policies, findings


MAX_ROW_CHARS = 30_000          # one policy is one Table Storage row (strings <= 32K UTF-16 chars)


def _row_size_findings(policies: Iterable[AnyPolicy]) -> list[str]:
    """A policy whose synced document would not fit one table row: found by ``validate``, before
    ``sync`` writes anything."""
    import json as _json

    out = []
    for p in policies:
        size = len(_json.dumps(p.to_document(), sort_keys=True, separators=(",", ":")))
        if size > MAX_ROW_CHARS:
            out.append(f"{p.source}: policy '{p.id}': $: too large for one table row ({size} > {MAX_ROW_CHARS} "
                       "characters as JSON): split it into several policies")
    return out


def load_documents(items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[AnyPolicy]:
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


def load_directory(*dirs: Path | str) -> list[AnyPolicy]:
    """Every ``*.yaml``/``*.yml`` under each directory (recursive, sorted), sorted by policy id.

    A later directory's policy REPLACES an earlier one with the same id (an extra
    ``--metadata DIR`` overrides the shipped baseline); a duplicate within one directory is an error.
    A ``mode: shadow`` version has a slot of its own: it is added beside the enforced version of
    its id (and replaces only an earlier shadow version).
    """
    findings: list[str] = []
    merged: dict[str, AnyPolicy] = {}
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
        merged.update((getattr(p, "row_key", p.id), p) for p in policies)   # a shadow version: its own slot
    if not findings:
        # one job id, one policy, across the directories too (a site's job-201 beside the shipped one)
        from guardrails.checks.policies import duplicate_job_findings
        findings.extend(f"{src}: policy '{pid}': $.job_id: {msg}"
                        for src, pid, msg in duplicate_job_findings(list(merged.values())))
    if not findings:
        findings.extend(_row_size_findings(merged.values()))
    if findings:
        raise MetadataValidationError(findings)
    return sorted(merged.values(), key=lambda p: (p.id, getattr(p, "mode", "") == "shadow"))
