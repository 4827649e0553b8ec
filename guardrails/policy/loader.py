"""Load policy metadata and validate it in three passes, collecting every finding.

1. structure (``guardrails.policy.structure``) — the file is YAML with exactly one mapping
   document, ``kind`` (absent means ``resource``) is known, keys are strings and known (walked
   from that kind's schema, so nested typos like ``expct`` are caught with a suggestion), the
   required top-level keys are present, an action ``type`` is registered for the kind;
2. JSON Schema (here, ``_schema_pass``) — draft 2020-12, the kind's schema
   (``guardrails.policy.schema``), the most specific error per problem, with its JSON path;
3. semantics (``guardrails.policy.semantics``) — resource kind: catalogue types, one operator per
   ``expect``, action ``validate()``, unique rule ids; role-assignments kind: role names in the
   built-in catalogue (or GUIDs), principal/group object ids are GUIDs, grant and strict scopes
   are ARM scopes; both: GUIDs, exemption scopes and timezone-aware expiry; the check kinds
   (job, model-registry, check-access): ``guardrails/checks/policy_schema.py``.

Between the passes, here: documents holding what looks like a credential are refused, and policy
ids are unique (one job id, one policy: ``guardrails.checks.policies``); ``load_directory`` also
refuses a policy too large for one table row.

A file that fails a pass is not checked by the later ones (their findings would be noise), but
every file is checked, and all findings are raised together as ``MetadataValidationError``.
Each finding reads ``<source>: policy '<id>' (or ?): <json path>: <message>``
(``guardrails.policy.findings``).

The only I/O here is reading the metadata files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from jsonschema.exceptions import ValidationError, best_match

from guardrails.errors import MetadataValidationError
from guardrails.model.policy import AnyPolicy
from guardrails.secrets.credentials import find_credentials
from guardrails.policy import schema as schema_mod
from guardrails.policy.findings import _finding, _unquoted
from guardrails.policy.semantics import _semantics
from guardrails.policy.structure import _kind, _parse_yaml, _plain, _shape_problem, _structure

__all__ = ["compile_findings", "load_directory", "load_documents"]

_SUFFIXES = (".yaml", ".yml")


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


def _schema_pass(source: str, doc: dict[str, Any], *, strict: bool = True) -> list[str]:
    """``strict`` False (rows a worker reads back): patterns end at ``$`` as an earlier release's
    did (``schema._as_before_end_of_text``)."""
    seen: dict[tuple[str, str], None] = {}
    for err in schema_mod.validator(kind=_kind(doc), strict=strict).iter_errors(doc):
        e = _specific(err)
        message = _unquoted(e.message, e.instance)
        if e.validator == "pattern" and isinstance(e.instance, str) and e.instance != e.instance.strip():
            message += (" (it starts or ends with a space or a line break; a YAML block scalar '|' or '>' "
                        "keeps the line break: write the value on one line)")
        seen[(e.json_path, message)] = None
    return [_finding(source, doc, p, m) for p, m in sorted(seen)]


# ---------------------------------------------------------------- the pipeline

def _validate(items: Iterable[tuple[str, Any]], *, check_paths: bool = True) -> tuple[list[AnyPolicy], list[str]]:
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
        found = _schema_pass(source, doc, strict=check_paths)
        if found:
            findings.extend(found)
            continue
        policy, found = _semantics(source, doc, check_paths=check_paths)
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


def load_documents(items: Iterable[tuple[str, Mapping[str, Any]]], *, check_paths: bool = True) -> list[AnyPolicy]:
    """Validate already-parsed documents (e.g. Table Storage rows), in the order given.

    ``check_paths`` False (a worker reading rows ``metadata sync`` wrote): what this release checks
    more strictly than an earlier one is not held against a row again — a row an earlier release
    accepted must not stop every decision after an upgrade; ``validate`` and ``sync`` check it:
    property paths (known, not an object or an array), selector resource group names, a
    subscription listed twice (kept once), and a value ending in a line break where a pattern
    now ends at ``\\Z`` (ids, rule ids, property paths, role action patterns: read as written)."""
    policies, findings = _validate(items, check_paths=check_paths)
    if findings:
        raise MetadataValidationError(findings)
    return policies


def _policy_files(directory: Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` under ``directory`` but hidden ones, sorted. Symlinked
    subdirectories are followed (``policies/shared -> ../shared-policies``; each real directory
    once, so a link to an ancestor ends), and a file link whose target is missing is listed: its
    read fails, a finding, as an unreadable file is. Skipped, either would leave ``validate``
    answering valid and ``sync`` removing (or never adding) the policies in it."""
    found: list[Path] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root)
        found.extend(base / f for f in files
                     if not f.startswith(".") and Path(f).suffix.lower() in _SUFFIXES
                     and ((base / f).is_file() or (base / f).is_symlink()))
    return sorted(found)


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
        for p in policies:
            key = getattr(p, "row_key", p.id)                                # a shadow version: its own slot
            base = merged.get(key)
            if base is not None and p.version < base.version:
                # an override from an older checkout would silently take back what the newer baseline added
                findings.append(f"{p.source}: policy '{p.id}': $.version: version {p.version} is lower than "
                                f"version {base.version} in {base.source}, which it replaces: an override "
                                "carries the version it replaces or a later one (copy the newer file, "
                                "re-apply the site's change and raise the version)")
            merged[key] = p
    findings.extend(_shadow_version_findings(merged))
    if not findings:
        # one job id, one policy, across the directories too (a site's job-201 beside the shipped one)
        from guardrails.checks.policies import duplicate_job_findings
        findings.extend(f"{src}: policy '{pid}': $.job_id: {msg}"
                        for src, pid, msg in duplicate_job_findings(list(merged.values())))
        # two secrets, in two policies, rotating one storage account's keys would each revoke the
        # key the other holds (two in one policy: that policy's own finding); validate and sync
        # only: a worker still loads such rows an earlier release synced (see secret_guardrail)
        from guardrails.secrets.policy import shared_account_findings
        findings.extend(_finding(source, {"id": pid}, path, message)
                        for source, pid, path, message in shared_account_findings(list(merged.values())))
    if not findings:
        findings.extend(_row_size_findings(merged.values()))
    out = sorted(merged.values(), key=lambda p: (p.id, getattr(p, "mode", "") == "shadow"))
    if not findings:
        findings.extend(compile_findings(out))
    if findings:
        raise MetadataValidationError(findings)
    return out


def _shadow_version_findings(merged: Mapping[str, AnyPolicy]) -> list[str]:
    """A ``mode: shadow`` version numbered as the enforced version of its id: both would be
    ``id@N`` in audit rows, the report and the violations they name, so the audit could not tell
    which document decided (the reason ``sync`` refuses other content at one version)."""
    out = []
    for p in merged.values():
        if getattr(p, "mode", "") != "shadow":
            continue
        enforced = merged.get(p.id)
        if enforced is not None and enforced.version == p.version:
            out.append(f"{p.source}: policy '{p.id}': $.version: the shadow version carries version {p.version}, "
                       f"as the enforced version in {enforced.source} does: audit rows name policies id@version, "
                       "so give the shadow version its own number (the next one)")
    return out


def compile_findings(policies: list[AnyPolicy]) -> list[str]:
    """The set as every worker will compile it (``compile_policies``, and the sweep's generated
    loops), compiled here: a set that validates policy by policy but does not compile would make
    every worker's load fail. Empty when it compiles; else one finding per policy that does not
    compile on its own, or one for the set."""
    from guardrails.policy.evaluate import compile_policies     # lazy: the evaluator is not needed to validate

    def problem(subset: list[AnyPolicy]) -> str | None:
        try:
            compiled = compile_policies(subset)
            compiled.violations_many([])              # the sweep's generated loops, built on first use
            compiled.violation_pairs([])
        except Exception as exc:      # noqa: BLE001 — reported as a finding, never swallowed
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        return None

    whole = problem(policies)
    if whole is None:
        return []
    found = [f"{p.source}: policy '{p.id}': $: this policy does not compile into the evaluator ({why}); "
             "workers could not load a set holding it" for p in policies if (why := problem([p])) is not None]
    return found or [f"metadata: policy ?: $: the policy set does not compile into the evaluator ({whole})"]
