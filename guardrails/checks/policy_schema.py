"""JSON Schemas (draft 2020-12) and the semantic pass of the check policy kinds.

The loader (``guardrails.policy.loader``) runs its three passes on every kind: structure (known
keys, walked from these schemas), JSON Schema, then ``semantics`` here (GUIDs, ARM scopes,
duplicates, a job that could never run). Findings are ``(json path, message)``; the loader adds
file and policy id.

The name patterns are shared with the HTTP request models (``guardrails.checks.models``) so a
request and the metadata it is checked against agree on what a name is.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from guardrails.model.policy import CHECK_ACCESS_KIND, JOB_KIND, MODEL_REGISTRY_KIND, MODES
from guardrails.model.roles import normalize_guid

# ---- names (metadata and requests) ------------------------------------------------------
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ZONE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"          # VNet / private endpoint names
SERVICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$"
ROLE_PATTERN = r"^[A-Za-z][A-Za-z0-9 _.-]{0,63}$"
PERMISSION_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:/-]{0,127}$"
VAULT_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$"     # Key Vault: 3-24 characters
SECRET_PATTERN = r"^[A-Za-z0-9-]{1,127}$"                     # Key Vault secret name
STAGE_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
TAG_KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:/ -]{0,255}$"
REGISTRY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,32}$"      # Azure ML registry names
REGISTRY_TYPE = "Microsoft.MachineLearningServices/registries"
CHECK_NAMES = ("job", "resource", "model-promotion")

REQUIRED_KEYS = {
    JOB_KIND: ("id", "version", "kind", "description", "mode", "job_id", "access_policy"),
    MODEL_REGISTRY_KIND: ("id", "version", "kind", "description", "mode", "stages", "required_tags",
                          "explicit_version_stages"),
    CHECK_ACCESS_KIND: ("id", "version", "kind", "description", "mode"),
}

_TEXT = {"type": "string", "minLength": 1, "maxLength": 1024}


def _names(pattern: str, **extra: Any) -> dict[str, Any]:
    return {"type": "array", "uniqueItems": True, "maxItems": 256,
            "items": {"type": "string", "pattern": pattern}, **extra}


_IDS = {"type": "array", "uniqueItems": True, "maxItems": 1000, "items": _TEXT}


def _closed(required: Iterable[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": list(required), "properties": props}


def _to_end_of_text(node: Any) -> Any:
    """The schema with each ``pattern``'s final ``$`` made ``\\Z``: jsonschema matches with
    Python's ``re.search``, where ``$`` also matches before a final line break, so ``"job-201\\n"``
    (a YAML block scalar) would pass. The shared names keep ``$`` for the request models, whose
    Rust regex has no ``\\Z`` and whose ``$`` is the end of the text already."""
    if isinstance(node, dict):
        return {k: (v[:-1] + r"\Z" if k == "pattern" and isinstance(v, str) and v.endswith("$")
                    and not v.endswith(r"\$") else _to_end_of_text(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_end_of_text(v) for v in node]
    return node


def _document(kind: str, title: str, modes: Iterable[str], **props: Any) -> dict[str, Any]:
    from guardrails.policy.fragments import document
    return _to_end_of_text(document(kind, title, REQUIRED_KEYS[kind], modes, _TEXT, **props))


def build_job_schema(_registry: Any = None) -> dict[str, Any]:
    """``kind: job`` — the seed's job metadata (``metadata/README.md``)."""
    return _document(
        JOB_KIND, "guardrails job policy", MODES,
        job_id={"type": ["string", "integer"], "pattern": JOB_ID_PATTERN, "minimum": 0,
                "maximum": 2 ** 53},
        allowed_identities=_closed((), principals=_IDS, groups=_IDS),
        network_zones=_names(ZONE_PATTERN),
        access_policy=_closed(
            ("role", "permissions", "entra_group", "entra_group_id"),
            role={"type": "string", "pattern": ROLE_PATTERN},
            permissions=_names(PERMISSION_PATTERN, minItems=1),
            entra_group={**_TEXT, "maxLength": 256},
            entra_group_id=_TEXT),
        secret_references={"type": "array", "maxItems": 256, "items": _closed(
            ("vault", "secret"),
            vault={"type": "string", "pattern": VAULT_PATTERN},
            secret={"type": "string", "pattern": SECRET_PATTERN})},
        network_rules={"type": "array", "maxItems": 256, "items": _closed(
            ("service", "private_endpoint"),
            service={"type": "string", "pattern": SERVICE_PATTERN},
            private_endpoint={"type": "string", "pattern": ZONE_PATTERN})},
    )


AUTH_MODES = ("AADToken", "AMLToken", "Key")      # Azure ML online endpoint authMode values
_UNIT = {"type": "number", "minimum": 0}
_ENDPOINTS = _closed((), tags={"type": "object", "maxProperties": 32,
                               "propertyNames": {"pattern": TAG_KEY_PATTERN},
                               "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 256}},
                     names={"type": "array", "uniqueItems": True, "maxItems": 256,
                            "items": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9-]{0,31}$"}})


def build_model_registry_schema(_registry: Any = None) -> dict[str, Any]:
    """``kind: model-registry`` — the rule table of ``guardrails.policy.model_rules``."""
    return _document(
        MODEL_REGISTRY_KIND, "guardrails model-registry policy", MODES,
        stages=_names(STAGE_PATTERN, minItems=1, maxItems=16),
        required_tags=_names(TAG_KEY_PATTERN),
        explicit_version_stages=_names(STAGE_PATTERN),
        floating_versions={"type": "array", "uniqueItems": True, "maxItems": 32,
                           "items": {**_TEXT, "maxLength": 64}},
        # the ML lifecycle guardrail's part of the table (all optional; defaults: DEFAULT_RULES)
        production_endpoints=_ENDPOINTS,
        production_stages=_names(STAGE_PATTERN, minItems=1, maxItems=16),
        sensitive_endpoints=_ENDPOINTS,
        endpoint_auth_modes={"type": "array", "uniqueItems": True, "minItems": 1,
                             "items": {"enum": list(AUTH_MODES)}},
        endpoint_action={"enum": ["notify", "enforce"]},
        drift_monitors={"type": "array", "maxItems": 256, "items": _closed(
            ("monitor", "threshold"), monitor={**_TEXT, "maxLength": 255},
            threshold=_UNIT, owner={**_TEXT, "maxLength": 256})},
        drift_default_threshold=_UNIT,
        candidate_tag=_closed(("key", "value"), key={"type": "string", "pattern": TAG_KEY_PATTERN},
                              value={**_TEXT, "maxLength": 256}),
        run_metrics={"type": "array", "maxItems": 64, "items": _closed(
            ("metric", "minimum"), metric={"type": "string", "pattern": TAG_KEY_PATTERN},
            minimum={"type": "number"})},
        notify_tag={"type": "string", "pattern": TAG_KEY_PATTERN},
        registries={"type": "object", "maxProperties": 256,
                    "propertyNames": {"pattern": REGISTRY_NAME_PATTERN},
                    "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 1024}},
        breaker=_closed(("max_actions", "window_seconds"),
                        max_actions={"type": "integer", "minimum": 1, "maximum": 100000},
                        window_seconds={"type": "integer", "minimum": 1, "maximum": 86400}),
    )


def _grant(*required: str, **extra: Any) -> dict[str, Any]:
    return _closed(required, description=_TEXT, principals=_IDS, groups=_IDS, **extra)


def build_check_access_schema(_registry: Any = None) -> dict[str, Any]:
    """``kind: check-access`` — callers trusted beyond checking themselves."""
    return _document(
        CHECK_ACCESS_KIND, "guardrails check-access policy", ("enforce", "off"),
        on_behalf={"type": "array", "maxItems": 256, "items": _grant(
            checks={"type": "array", "uniqueItems": True, "minItems": 1, "items": {"enum": list(CHECK_NAMES)}})},
        remediate={"type": "array", "maxItems": 256, "items": _grant(
            "scopes", scopes={"type": "array", "uniqueItems": True, "minItems": 1, "maxItems": 256, "items": _TEXT})},
    )


BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    JOB_KIND: build_job_schema,
    MODEL_REGISTRY_KIND: build_model_registry_schema,
    CHECK_ACCESS_KIND: build_check_access_schema,
}


# ---------------------------------------------------------------- pass 3: semantics
Found = list[tuple[str, str]]


def guid_list(values: Iterable[str], path: str, what: str, found: Found) -> tuple[str, ...]:
    out: list[str] = []
    for i, v in enumerate(values):
        guid = normalize_guid(v)
        if guid is None:
            found.append((f"{path}[{i}]", f"'{str(v)[:80]}' is not {what} (a GUID)"))
        elif guid in out:
            found.append((f"{path}[{i}]", f"'{v}' is listed twice"))
        else:
            out.append(guid)
    return tuple(out)


def _unique_folded(values: Iterable[str], path: str, found: Found) -> None:
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        key = str(v).lower()
        if key in seen:
            found.append((f"{path}[{i}]", f"'{v}' repeats {path}[{seen[key]}] (names compare case-insensitively)"))
        seen.setdefault(key, i)


def _job(doc: dict[str, Any], source: str, found: Found):
    from guardrails.checks.policies import (
        AccessPolicy, IdentitySet, JobPolicy, NetworkRule, SecretReference,
    )

    ap = doc["access_policy"]
    _unique_folded(ap["permissions"], "$.access_policy.permissions", found)
    group_id = normalize_guid(ap["entra_group_id"])
    if group_id is None:
        found.append(("$.access_policy.entra_group_id", f"'{str(ap['entra_group_id'])[:80]}' is not the Entra group's"
                      f" object id (a GUID): Graph resolves membership by id ('{ap['entra_group']}' is its name)"))
    ids = doc.get("allowed_identities", {})
    allowed = IdentitySet(
        principals=guid_list(ids.get("principals", ()), "$.allowed_identities.principals", "a principal object id", found),
        groups=guid_list(ids.get("groups", ()), "$.allowed_identities.groups", "a group object id", found))
    secrets = tuple(SecretReference(s["vault"], s["secret"]) for s in doc.get("secret_references", ()))
    _unique_folded([str(s) for s in secrets], "$.secret_references", found)
    rules = tuple(NetworkRule(r["service"], r["private_endpoint"]) for r in doc.get("network_rules", ()))
    _unique_folded([r.service for r in rules], "$.network_rules", found)
    zones = tuple(doc.get("network_zones", ()))
    _unique_folded(zones, "$.network_zones", found)
    if not zones and not rules:
        found.append(("$", "no network_zones and no network_rules: the job could never be allowed to run"
                      " (zero trust); name where it runs from"))
    job_id = str(doc["job_id"]).strip()
    if found:
        return None
    return JobPolicy(
        id=doc["id"], version=int(doc["version"]), description=doc["description"], mode=doc["mode"],
        job_id=job_id,
        access_policy=AccessPolicy(role=ap["role"], permissions=tuple(ap["permissions"]),
                                   entra_group=ap["entra_group"], entra_group_id=group_id or ""),
        allowed_identities=allowed, network_zones=zones, network_rules=rules, secret_references=secrets,
        source=source)


def _model_registry(doc: dict[str, Any], source: str, found: Found):
    from guardrails.checks.policies import ModelRegistryPolicy
    from guardrails.model.policy import DEFAULT_BREAKER, Breaker
    from guardrails.policy.model_rules import DEFAULT_RULES, DriftMonitor, MetricThreshold, ModelRegistryRules

    stages = tuple(doc["stages"])
    _unique_folded(stages, "$.stages", found)
    known = {s.lower() for s in stages}
    explicit = tuple(doc["explicit_version_stages"])
    for i, s in enumerate(explicit):
        if s.lower() not in known:
            found.append((f"$.explicit_version_stages[{i}]", f"'{s}' is not one of the stages ({', '.join(stages)})"))
    floating = tuple(doc.get("floating_versions", DEFAULT_RULES.floating_versions))
    production = tuple(doc.get("production_stages", DEFAULT_RULES.production_stages))
    for i, s in enumerate(production):
        if s.lower() not in known:
            found.append((f"$.production_stages[{i}]", f"'{s}' is not one of the stages ({', '.join(stages)})"))
    monitors = tuple(DriftMonitor(m["monitor"], float(m["threshold"]), m.get("owner", ""))
                     for m in doc.get("drift_monitors", ()))
    _unique_folded([m.name for m in monitors], "$.drift_monitors", found)
    metrics = tuple(MetricThreshold(m["metric"], float(m["minimum"])) for m in doc.get("run_metrics", ()))
    _unique_folded([m.name for m in metrics], "$.run_metrics", found)
    for key in ("production_endpoints", "sensitive_endpoints"):
        _unique_folded(list(doc.get(key, {}).get("tags", {})), f"$.{key}.tags", found)
    registries = _registries(doc.get("registries", {}), found)
    if found:
        return None
    candidate = doc.get("candidate_tag")
    default_threshold = doc.get("drift_default_threshold", DEFAULT_RULES.drift_default_threshold)
    rules = ModelRegistryRules(
        stages=stages, required_tags=tuple(doc["required_tags"]), explicit_version_stages=explicit,
        floating_versions=floating,
        production_endpoints=_selector(doc, "production_endpoints", DEFAULT_RULES.production_endpoints),
        production_stages=production,
        sensitive_endpoints=_selector(doc, "sensitive_endpoints", DEFAULT_RULES.sensitive_endpoints),
        endpoint_auth_modes=tuple(doc.get("endpoint_auth_modes", DEFAULT_RULES.endpoint_auth_modes)),
        endpoint_action=doc.get("endpoint_action", DEFAULT_RULES.endpoint_action),
        drift_monitors=monitors,
        drift_default_threshold=None if default_threshold is None else float(default_threshold),
        candidate_tag=(candidate["key"], candidate["value"]) if candidate else DEFAULT_RULES.candidate_tag,
        run_metrics=metrics if "run_metrics" in doc else DEFAULT_RULES.run_metrics,
        notify_tag=doc.get("notify_tag", DEFAULT_RULES.notify_tag),
        registries=registries)
    b = doc.get("breaker")
    breaker = Breaker(int(b["max_actions"]), int(b["window_seconds"])) if b else DEFAULT_BREAKER
    return ModelRegistryPolicy(id=doc["id"], version=int(doc["version"]), description=doc["description"],
                               mode=doc["mode"], rules=rules, breaker=breaker, source=source)


def _registries(raw: dict[str, str], found: Found) -> tuple[tuple[str, str], ...]:
    """``registries``: each value the ARM id of the Azure ML registry its key names."""
    from guardrails.model.arm_id import InvalidArmId, parse_arm_id

    _unique_folded(list(raw), "$.registries", found)
    out = []
    for name, value in raw.items():
        where = f"$.registries.{name}"
        try:
            rid = parse_arm_id(value)
        except InvalidArmId as exc:
            found.append((where, f"not an ARM id: {exc}"))
            continue
        if rid.resource_type.lower() != REGISTRY_TYPE.lower() or rid.name.lower() != name.lower():
            found.append((where, f"must be the id of the Azure ML registry '{name}' "
                                 f"(.../providers/{REGISTRY_TYPE}/{name})"))
            continue
        out.append((name, str(rid)))
    return tuple(out)


def _selector(doc: dict[str, Any], key: str, default):
    from guardrails.policy.model_rules import EndpointSelector

    if key not in doc:
        return default
    sel = doc[key]
    return EndpointSelector(tags=tuple(sel.get("tags", {}).items()), names=tuple(sel.get("names", ())))


def _grants(entries: Iterable[dict[str, Any]], path: str, found: Found):
    from guardrails.checks.policies import CallerGrant
    from guardrails.errors import InvalidArmId
    from guardrails.model.arm_id import parse_scope

    out = []
    for i, g in enumerate(entries):
        where = f"{path}[{i}]"
        principals = guid_list(g.get("principals", ()), f"{where}.principals", "a principal object id", found)
        groups = guid_list(g.get("groups", ()), f"{where}.groups", "a group object id", found)
        if not g.get("principals") and not g.get("groups"):
            found.append((where, "names nobody (principals or groups)"))
        for j, scope in enumerate(g.get("scopes", ())):
            try:
                parse_scope(scope)
            except InvalidArmId as exc:
                found.append((f"{where}.scopes[{j}]", f"not a valid ARM scope: {exc}"))
        out.append(CallerGrant(principals=principals, groups=groups, checks=tuple(g.get("checks", ())),
                               scopes=tuple(g.get("scopes", ())), description=g.get("description", "")))
    return tuple(out)


def _check_access(doc: dict[str, Any], source: str, found: Found):
    from guardrails.checks.policies import CheckAccessPolicy

    on_behalf = _grants(doc.get("on_behalf", ()), "$.on_behalf", found)
    remediate = _grants(doc.get("remediate", ()), "$.remediate", found)
    if found:
        return None
    return CheckAccessPolicy(id=doc["id"], version=int(doc["version"]), description=doc["description"],
                             mode=doc["mode"], on_behalf=on_behalf, remediate=remediate, source=source)


_SEMANTICS = {JOB_KIND: _job, MODEL_REGISTRY_KIND: _model_registry, CHECK_ACCESS_KIND: _check_access}


def semantics(kind: str, doc: dict[str, Any], source: str) -> tuple[Any, Found]:
    """Pass 3 for a check kind: the built policy (None when there are findings) and the findings."""
    found: Found = []
    policy = _SEMANTICS[kind](doc, source, found)
    return (None if found else policy), found
