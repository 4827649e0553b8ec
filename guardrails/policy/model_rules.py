"""Model registry rules (the seed's MLOps design), pure: a rule table and the functions that judge
a model version against it. No I/O, no pydantic: plain values in, findings out.

The table (``ModelRegistryRules``) comes from a ``kind: model-registry`` policy
(``metadata/jobs/model-registry.yaml``); ``DEFAULT_RULES`` is the seed's own:

- every registered model version carries the tags ``data_version``, ``git_sha``,
  ``metric_summary`` and ``owner`` (non-empty);
- promotion moves one stage forward along ``candidate`` → ``validated`` → ``production``
  (a new version enters at the first stage);
- a version promoted or deployed to ``production`` is named explicitly, never ``latest``.

The same table drives the ML lifecycle guardrail (``guardrails.ml_guardrail``): which online
endpoints are production (``production_endpoints``) and which hold sensitive data
(``sensitive_endpoints``), the stages a version serving production may be in
(``production_stages``), the endpoint auth modes allowed and whether endpoint rules are enforced
or reported (``endpoint_action``), drift thresholds per monitor, and the run metrics a promotion
candidate must reach. Two entry points (``POST /api/checks/model-promotion`` and the event
guardrail), one table, the same functions.

API:

    missing_tags(rules, tags)                       -> tuple of missing/empty required tag names
    is_explicit_version(rules, version)             -> bool
    evaluate_promotion(rules, version=, from_stage=, to_stage=, tags=) -> list[ModelFinding]
    evaluate_registration(rules, tags=)             -> list[ModelFinding]
    evaluate_deployment(rules, version=, stage=)    -> list[ModelFinding]
    evaluate_serving(rules, version=, stage=, tags=, archived=)  -> findings of a version serving production
    evaluate_endpoint(rules, auth_mode=, public_network_access=, sensitive=) -> list[ModelFinding]
    evaluate_drift(rules, monitor=, coefficient=)   -> (findings, threshold or None)
    evaluate_run(rules, tags=, properties=)         -> None (not a candidate) or findings
    rebalance_traffic(traffic, zero, unfit=())      -> new traffic map, or None (nothing may be written)

Each ``ModelFinding`` has a stable ``rule`` (one of ``RULES``) and a message naming the broken
condition. Names compare case-insensitively for stages and aliases, exactly for tag keys (Azure
ML tag keys are case-sensitive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

__all__ = [
    "ModelRegistryRules", "ModelFinding", "DEFAULT_RULES", "RULES", "missing_tags", "is_explicit_version",
    "evaluate_promotion", "evaluate_registration", "evaluate_deployment", "EndpointSelector", "DriftMonitor",
    "MetricThreshold", "evaluate_serving", "evaluate_endpoint", "evaluate_drift", "evaluate_run",
    "rebalance_traffic", "parse_metric",
]

RULE_UNKNOWN_STAGE = "known-stage"
RULE_STAGE_ORDER = "stage-order"
RULE_REQUIRED_TAGS = "required-tags"
RULE_EXPLICIT_VERSION = "explicit-version"
RULE_PRODUCTION_STAGE = "production-stage"         # a version serving production is in an allowed stage
RULE_NOT_ARCHIVED = "not-archived"                 # ... and not archived
RULE_VERSION_READABLE = "version-readable"         # ... and can be read (exists, resolvable reference)
RULE_ENDPOINT_AUTH = "endpoint-auth-mode"          # Entra tokens, never shared keys
RULE_ENDPOINT_PUBLIC = "endpoint-public-access"    # sensitive data: no public network access
RULE_DRIFT = "drift-threshold"
RULE_RUN_METRIC = "run-metric"
# a version no longer fit to serve production: the production endpoints serving it are decided
# again (the guardrail's ``ml_serving``); the record says which could not be, or failed
RULE_SERVING_ENDPOINTS = "serving-endpoints"
RULES = (RULE_UNKNOWN_STAGE, RULE_STAGE_ORDER, RULE_REQUIRED_TAGS, RULE_EXPLICIT_VERSION, RULE_PRODUCTION_STAGE,
         RULE_NOT_ARCHIVED, RULE_VERSION_READABLE, RULE_ENDPOINT_AUTH, RULE_ENDPOINT_PUBLIC, RULE_DRIFT,
         RULE_RUN_METRIC, RULE_SERVING_ENDPOINTS)


@dataclass(frozen=True)
class EndpointSelector:
    """Endpoints selected by name (case-insensitive) or by any one of the tags (key
    case-insensitive, value exact but trimmed and case-insensitive). Empty selects nothing."""

    tags: tuple[tuple[str, str], ...] = ()
    names: tuple[str, ...] = ()

    def matches(self, name: str | None, tags: Mapping[str, object] | None) -> bool:
        if name and name.lower() in {n.lower() for n in self.names}:
            return True
        lowered = {str(k).lower(): v for k, v in (tags or {}).items()}
        return any(isinstance(lowered.get(k.lower()), str) and lowered[k.lower()].strip().lower() == v.lower()
                   for k, v in self.tags)


@dataclass(frozen=True)
class DriftMonitor:
    """A dataset drift monitor (its ``DataDriftName``), the coefficient above which it alerts, and
    who to tell (else the policy's notify tag cannot help: drift events carry no tags)."""

    name: str
    threshold: float
    owner: str = ""


@dataclass(frozen=True)
class MetricThreshold:
    """A run metric (run tag or property ``name``) a promotion candidate must reach."""

    name: str
    minimum: float


@dataclass(frozen=True)
class ModelRegistryRules:
    """The rule table. ``stages`` in promotion order; ``explicit_version_stages`` never take a
    floating alias (``floating_versions``) as the version."""

    stages: tuple[str, ...] = ("candidate", "validated", "production")
    required_tags: tuple[str, ...] = ("data_version", "git_sha", "metric_summary", "owner")
    explicit_version_stages: tuple[str, ...] = ("production",)
    floating_versions: tuple[str, ...] = ("latest",)
    # ---- the event guardrail's part of the table (guardrails.ml_guardrail) ----
    production_endpoints: EndpointSelector = EndpointSelector(tags=(("environment", "prod"),))
    production_stages: tuple[str, ...] = ("production",)
    sensitive_endpoints: EndpointSelector = EndpointSelector(tags=(("data_classification", "sensitive"),))
    endpoint_auth_modes: tuple[str, ...] = ("AADToken",)
    endpoint_action: str = "notify"                       # notify | enforce (endpoint auth / public access)
    drift_monitors: tuple[DriftMonitor, ...] = ()
    drift_default_threshold: float | None = None
    candidate_tag: tuple[str, str] | None = ("promotion_candidate", "true")
    run_metrics: tuple[MetricThreshold, ...] = (MetricThreshold("accuracy", 0.85),)
    notify_tag: str = "owner"
    # Azure ML registries production may serve from: name -> the registry's ARM id. A deployment's
    # ``azureml://registries/<name>/...`` reference names no resource group; this says where it is
    registries: tuple[tuple[str, str], ...] = ()

    def registry_id(self, name: str | None) -> str | None:
        """The ARM id of registry ``name`` (case-insensitive), or None when it is not listed."""
        key = (name or "").strip().lower()
        return next((rid for n, rid in self.registries if n.lower() == key), None) if key else None

    @property
    def production_stage(self) -> str:
        """The stage a production endpoint serves: the last of the promotion order."""
        return self.stages[-1]

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


# ---------------------------------------------------------------- serving, endpoints, drift, runs
def evaluate_serving(rules: ModelRegistryRules, *, version: str | int | None, stage: str | None,
                     tags: Mapping[str, str] | None, archived: bool) -> list[ModelFinding]:
    """A model version serving a production endpoint: explicit (the deployment rule of the
    production stage), in one of ``production_stages``, not archived, carrying the required tags."""
    found = evaluate_deployment(rules, version=version, stage=rules.production_stage)
    allowed = {s.lower() for s in rules.production_stages}
    if not (isinstance(stage, str) and stage.strip().lower() in allowed):
        shown = "no stage" if not stage else f"stage {str(stage)[:40]!r}"
        found.append(ModelFinding(RULE_PRODUCTION_STAGE, f"a production endpoint serves only versions in "
                                  f"{' or '.join(rules.production_stages)}; this one has {shown}"))
    if archived:
        found.append(ModelFinding(RULE_NOT_ARCHIVED, "the version is archived (not to be deployed)"))
    found.extend(evaluate_registration(rules, tags=tags))
    return found


def evaluate_endpoint(rules: ModelRegistryRules, *, auth_mode: str | None, public_network_access: str | None,
                      sensitive: bool) -> list[ModelFinding]:
    """An online endpoint: Entra token auth (``AADToken``; keys are shared secrets) and, where it
    holds sensitive data, no public network access (absent means ``Enabled``, the platform default)."""
    found = []
    if not (isinstance(auth_mode, str) and auth_mode.lower() in {m.lower() for m in rules.endpoint_auth_modes}):
        found.append(ModelFinding(RULE_ENDPOINT_AUTH, f"authMode {str(auth_mode)[:40]!r} is not "
                                  f"{' or '.join(rules.endpoint_auth_modes)} (keys are shared secrets)"))
    pna = public_network_access if isinstance(public_network_access, str) else "Enabled"
    if sensitive and pna.lower() != "disabled":
        found.append(ModelFinding(RULE_ENDPOINT_PUBLIC, f"publicNetworkAccess is {pna[:40]!r}; an endpoint "
                                  "serving sensitive data must be Disabled (private endpoints only)"))
    return found


def drift_threshold(rules: ModelRegistryRules, monitor: str | None) -> tuple[float | None, str]:
    """(threshold, owner) for a monitor: its own entry, else the default threshold (no owner)."""
    for m in rules.drift_monitors:
        if monitor and m.name.lower() == monitor.lower():
            return m.threshold, m.owner
    return rules.drift_default_threshold, ""


def evaluate_drift(rules: ModelRegistryRules, *, monitor: str | None,
                   coefficient: float) -> tuple[list[ModelFinding], float | None]:
    """Drift above the monitor's threshold is a finding; no threshold set means nothing to judge."""
    threshold, _owner = drift_threshold(rules, monitor)
    if threshold is None:
        return [], None
    if coefficient > threshold:
        return [ModelFinding(RULE_DRIFT, f"drift coefficient {coefficient:.4g} of monitor {str(monitor)[:64]!r} "
                             f"is above its threshold {threshold:g}")], threshold
    return [], threshold


def parse_metric(value: object) -> float | None:
    """A metric as runs record it: a number, or a string (``"0.83"``, ``"83%"``); else None."""
    if isinstance(value, bool):
        return None
    try:        # an integer too large for a float (10**400) overflows: unparseable, never an error
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str) and value.strip():
            text = value.strip()
            out = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        else:
            return None
    except (OverflowError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _get_folded(mapping: Mapping[str, object] | None, key: str) -> object:
    for k, v in (mapping or {}).items():
        if isinstance(k, str) and k.lower() == key.lower():
            return v
    return None


def evaluate_run(rules: ModelRegistryRules, *, tags: Mapping[str, object] | None,
                 properties: Mapping[str, object] | None) -> list[ModelFinding] | None:
    """A finished run tagged as a promotion candidate (``candidate_tag``): every metric of
    ``run_metrics`` (run tag first, then property) present and at least its minimum. None when
    the run is not a candidate."""
    if rules.candidate_tag is None:
        return None
    key, wanted = rules.candidate_tag
    mark = _get_folded(tags, key)
    if not (isinstance(mark, str) and mark.strip().lower() == wanted.lower()):
        return None
    found = []
    for m in rules.run_metrics:
        raw = _get_folded(tags, m.name)
        if raw is None:
            raw = _get_folded(properties, m.name)
        value = parse_metric(raw)
        if value is None:
            found.append(ModelFinding(RULE_RUN_METRIC, f"metric {m.name!r} is missing or not a number: "
                                      f"a candidate cannot be judged (minimum {m.minimum:g})"))
        elif value < m.minimum:
            found.append(ModelFinding(RULE_RUN_METRIC, f"metric {m.name!r} is {value:g}, below the "
                                      f"minimum {m.minimum:g} for promotion"))
    return found


def rebalance_traffic(traffic: Mapping[str, int], zero: Iterable[str],
                      unfit: Iterable[str] = ()) -> dict[str, int] | None:
    """The endpoint's traffic with the deployments in ``zero`` set to 0 and their share given to
    the others in proportion to theirs, as integers (largest remainder; ties by name) summing to
    the old total. A deployment in ``unfit`` is held: judged non-compliant by an enforcing policy
    whose fix was not permitted (its breaker open), though not set to 0 by this fix, it keeps its
    own share and receives none, and the others take the whole of what moves. (A deployment only
    an audit-mode finding faults is not held: audit mode changes nothing the fix writes, so it
    may take a share like any other.) When nobody may take the share: all 0 if no held deployment
    has traffic (the endpoint stops serving the non-compliant models, which is the point); None
    when the only valid traffic (summing to 0 or the old total) would zero a held deployment,
    which no permitted fix faults: the traffic is then not to be written at all. Deployment names
    compare case-insensitively (as Azure ML's do); keys keep their spelling."""
    drop = {z.lower() for z in zero}
    hold = {u.lower() for u in unfit} - drop
    total = sum(max(0, int(v)) for k, v in traffic.items() if k.lower() not in hold)
    keep = {k: max(0, int(v)) for k, v in traffic.items() if k.lower() not in drop and k.lower() not in hold}
    base = sum(keep.values())
    if base == total:           # nothing moves (what is set to 0 had no share): the rest unchanged
        return {k: (0 if k.lower() in drop else max(0, int(v))) for k, v in traffic.items()}
    if base == 0:
        if any(int(v) > 0 for k, v in traffic.items() if k.lower() in hold):
            return None         # all 0 would take a held deployment out of traffic: no permitted fix does that
        return {k: 0 for k in traffic}
    out = {k: 0 for k in traffic}
    out.update({k: max(0, int(v)) for k, v in traffic.items() if k.lower() in hold})
    shares = {k: v * total / base for k, v in keep.items()}
    floors = {k: int(s) for k, s in shares.items()}
    left = total - sum(floors.values())
    for k in sorted(shares, key=lambda k: (-(shares[k] - floors[k]), k))[:left]:
        floors[k] += 1
    out.update(floors)
    return out
