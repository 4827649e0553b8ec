"""Model registry rules (the seed's MLOps design), pure: a rule table and the functions that judge
a model version against it. No I/O, no pydantic: plain values in, findings out.

The table (``ModelRegistryRules``) comes from a ``kind: model-registry`` policy
(``metadata/jobs/model-registry.yaml``); ``DEFAULT_RULES`` is the seed's own:

- every registered model version carries the tags ``data_version``, ``git_sha``,
  ``metric_summary`` and ``owner`` (non-empty);
- promotion moves one stage forward along ``candidate`` → ``validated`` → ``production``
  (a new version enters at the first stage);
- a version promoted or deployed to ``production`` is named explicitly, never ``latest``.

API (reused by the model-registry event guardrail):

    missing_tags(rules, tags)                       -> tuple of missing/empty required tag names
    is_explicit_version(rules, version)             -> bool
    evaluate_promotion(rules, version=, from_stage=, to_stage=, tags=) -> list[ModelFinding]
    evaluate_registration(rules, tags=)             -> list[ModelFinding]
    evaluate_deployment(rules, version=, stage=)    -> list[ModelFinding]

Each ``ModelFinding`` has a stable ``rule`` (one of ``RULES``) and a message naming the broken
condition. Names compare case-insensitively for stages and aliases, exactly for tag keys (Azure
ML tag keys are case-sensitive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

__all__ = [
    "ModelRegistryRules", "ModelFinding", "DEFAULT_RULES", "RULES", "missing_tags", "is_explicit_version",
    "evaluate_promotion", "evaluate_registration", "evaluate_deployment",
]

RULE_UNKNOWN_STAGE = "known-stage"
RULE_STAGE_ORDER = "stage-order"
RULE_REQUIRED_TAGS = "required-tags"
RULE_EXPLICIT_VERSION = "explicit-version"
RULES = (RULE_UNKNOWN_STAGE, RULE_STAGE_ORDER, RULE_REQUIRED_TAGS, RULE_EXPLICIT_VERSION)


@dataclass(frozen=True)
class ModelRegistryRules:
    """The rule table. ``stages`` in promotion order; ``explicit_version_stages`` never take a
    floating alias (``floating_versions``) as the version."""

    stages: tuple[str, ...] = ("candidate", "validated", "production")
    required_tags: tuple[str, ...] = ("data_version", "git_sha", "metric_summary", "owner")
    explicit_version_stages: tuple[str, ...] = ("production",)
    floating_versions: tuple[str, ...] = ("latest",)

    def stage_index(self, stage: str | None) -> int | None:
        """Position of ``stage`` in the promotion order, or None when it is not a stage."""
        if stage is None:
            return None
        key = stage.strip().lower()
        for i, s in enumerate(self.stages):
            if s.lower() == key:
                return i
        return None


DEFAULT_RULES = ModelRegistryRules()


@dataclass(frozen=True)
class ModelFinding:
    rule: str          # one of RULES
    message: str


def missing_tags(rules: ModelRegistryRules, tags: Mapping[str, str] | None) -> tuple[str, ...]:
    """Required tags absent from ``tags`` or blank, in the table's order."""
    tags = tags or {}
    out = []
    for name in rules.required_tags:
        value = tags.get(name)
        if not isinstance(value, str) or not value.strip():
            out.append(name)
    return tuple(out)


def is_explicit_version(rules: ModelRegistryRules, version: str | int | None) -> bool:
    """A concrete version: not empty, not a floating alias (``latest``), no wildcard, no
    ``name@label`` / ``name:latest`` reference."""
    if version is None or isinstance(version, bool):
        return False
    if isinstance(version, int):
        return version >= 0
    text = version.strip()
    if not text or "*" in text or "@" in text:
        return False
    aliases = {a.lower() for a in rules.floating_versions}
    return text.lower() not in aliases and text.rsplit(":", 1)[-1].lower() not in aliases


def evaluate_registration(rules: ModelRegistryRules, *, tags: Mapping[str, str] | None) -> list[ModelFinding]:
    """A registered model version: every required tag present."""
    return [ModelFinding(RULE_REQUIRED_TAGS, f"required tag '{name}' is missing or empty")
            for name in missing_tags(rules, tags)]


def evaluate_deployment(rules: ModelRegistryRules, *, version: str | int | None, stage: str) -> list[ModelFinding]:
    """A deployment to ``stage`` names an explicit version where the table requires one."""
    required = {s.lower() for s in rules.explicit_version_stages}
    if stage.strip().lower() in required and not is_explicit_version(rules, version):
        shown = "no version" if version is None else f"version {str(version)[:40]!r}"
        return [ModelFinding(RULE_EXPLICIT_VERSION,
                             f"{stage} needs an explicit, validated version; {shown} is not one (never 'latest')")]
    return []


def evaluate_promotion(rules: ModelRegistryRules, *, version: str | int | None, from_stage: str | None,
                       to_stage: str, tags: Mapping[str, str] | None) -> list[ModelFinding]:
    """Every broken condition of promoting ``version`` from ``from_stage`` (None: not yet in
    any stage) to ``to_stage``; empty when the promotion is allowed."""
    found: list[ModelFinding] = []
    order = " -> ".join(rules.stages)
    to_i = rules.stage_index(to_stage)
    from_i = rules.stage_index(from_stage)
    if to_i is None:
        found.append(ModelFinding(RULE_UNKNOWN_STAGE, f"target stage {to_stage[:40]!r} is not one of {order}"))
    if from_stage is not None and from_i is None:
        found.append(ModelFinding(RULE_UNKNOWN_STAGE, f"current stage {from_stage[:40]!r} is not one of {order}"))
    if to_i is not None and (from_stage is None or from_i is not None):
        expected = 0 if from_i is None else from_i + 1
        if to_i != expected:
            where = "a version in no stage yet" if from_i is None else f"a version in {rules.stages[from_i]}"
            if expected < len(rules.stages):
                nxt = f"may only move to {rules.stages[expected]}"
            else:
                nxt = "is already in the last stage"
            found.append(ModelFinding(RULE_STAGE_ORDER, f"{where} {nxt}, not {rules.stages[to_i]} ({order})"))
    found.extend(evaluate_registration(rules, tags=tags))
    found.extend(evaluate_deployment(rules, version=version, stage=to_stage))
    return found
