"""``metadata sync``: validate every policy file, then make the policy table hold exactly that set.
Invalid input is refused before anything is written, so the table is unchanged.

A sync never takes a policy back, unless told to (``allow_downgrade``, the CLI's
``--allow-downgrade``): a row whose policy would get a LOWER version (an older checkout's v2 over
v3), or other content at the SAME version (an audit row's ``id@version`` would then name two
different policies), is refused, naming each, and nothing is written. The check runs on the rows
as read under the sync's lease, so a sync that waited for another one compares with what that one
wrote. Nor does a sync write an empty set: to switch every policy off, sync them with ``mode: off``;
workers read an empty policy partition as a sync never run (``PolicyUnreadable``: no decision).
Policies a sync removes are named (WARNING ``policy_sync_removes``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import MetadataValidationError, PolicyError
from .logs import emit
from .policy.loader import load_directory
from .ports import PolicyRepository

SHIPPED_METADATA = Path(__file__).resolve().parents[1] / "metadata"

log = logging.getLogger("guardrails")


def metadata_dirs(extra: Sequence[Path] = ()) -> list[Path]:
    """The shipped baseline first, then extra directories (same policy id replaces)."""
    return [SHIPPED_METADATA, *[Path(p) for p in extra]]


def sync_metadata(repo: PolicyRepository, dirs: Sequence[Path], *, allow_downgrade: bool = False) -> dict[str, int]:
    policies = load_directory(*dirs)          # raises MetadataValidationError: nothing written
    if not policies:
        raise PolicyError(f"no policy in {', '.join(map(str, dirs))}: an empty policy set is never synced "
                          "(workers would decide nothing); to switch every policy off, sync them with "
                          "mode: off; nothing was written")
    documents = [(p.source, p.to_document()) for p in policies]
    guard = _VersionGuard(documents, allow_downgrade=allow_downgrade)
    counts = repo.replace_all(documents, guard=guard)      # type: ignore[call-arg]  (the table repository)
    if guard.removed:
        emit(log, logging.WARNING, "policy_sync_removes", policies=", ".join(guard.removed)[:2000],
             detail=f"{len(guard.removed)} policy row(s) in the table but in no metadata directory were removed")
    if guard.regressions:
        emit(log, logging.WARNING, "policy_sync_downgraded", policies="; ".join(guard.regressions)[:2000],
             detail="written as asked (--allow-downgrade)")
    return counts


def _row_key(doc: Mapping[str, Any]) -> str:
    return doc["id"] + ("@shadow" if doc.get("mode") == "shadow" else "")


def _body(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


class _VersionGuard:
    """Called by the repository under its lease with the rows as read (``{row key: document}``,
    None for a row not written by a sync, which is put back whatever its version). Records what
    would be removed and taken back; raises ``MetadataValidationError`` for a lower version or
    other content at the same version unless ``allow_downgrade``."""

    def __init__(self, documents: Sequence[tuple[str, dict]], *, allow_downgrade: bool) -> None:
        self._wanted = {_row_key(doc): (source, doc) for source, doc in documents}
        self._allow = allow_downgrade
        self.removed: list[str] = []
        self.regressions: list[str] = []

    def __call__(self, existing: Mapping[str, dict | None]) -> None:
        self.removed = sorted(k for k in existing if k not in self._wanted)
        findings: list[str] = []
        self.regressions = []
        for key, (source, doc) in self._wanted.items():
            old = existing.get(key)
            if not isinstance(old, dict):
                continue                    # new, or a row not written by a sync: written either way
            problem = _regression(old, doc)
            if problem is None:
                continue
            self.regressions.append(f"{key}: {problem}")
            findings.append(f"{source}: policy '{doc['id']}': $.version: {problem}")
        if findings and not self._allow:
            if self.removed:
                findings.append(f"(this sync would also remove: {', '.join(self.removed)[:1000]})")
            findings.append("nothing was written: raise the version of each changed policy (or, to take the "
                            "table back to these files on purpose, sync again with --allow-downgrade)")
            raise MetadataValidationError(findings)


def _regression(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """Why writing ``new`` over the synced ``old`` takes a policy back, or None."""
    old_version, new_version = old.get("version"), new.get("version")
    if type(old_version) is not int or type(new_version) is not int:
        return None
    if new_version < old_version:
        return f"version {new_version} would replace version {old_version} in the policy table (a downgrade)"
    if new_version > old_version or _body(old) == _body(new) or _same_policy(old, new):
        return None
    return (f"the content differs from version {old_version} in the policy table at the same version: "
            "audit rows name policies by id@version")


def _same_policy(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """``old`` (as an earlier release may have serialised it) is ``new`` once read by this release."""
    from .model.policy import Policy

    try:
        return _body(Policy.from_document(old, source="table").to_document()) == _body(new)
    except (PolicyError, ValueError, TypeError, KeyError, RecursionError):
        return False        # a row this release cannot read (a newer schema): not the same policy
