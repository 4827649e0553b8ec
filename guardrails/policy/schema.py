"""The JSON Schemas (draft 2020-12) of one policy document, one per policy kind.

``kind`` picks the schema: absent or ``resource`` → ``build_schema`` (resource properties),
``role-assignments`` → ``build_role_schema`` (role assignments); ``job``, ``model-registry`` and
``check-access`` → ``guardrails/checks/policy_schema.py``. The loader dispatches on it in every
pass.

Assembled from the parts that own them: operator fragments (``operators.OPERATORS``) and
action fragments (``remediation.actions.actions``, as a ``oneOf``). The schema is inline (no
``$ref``) so the structure pass can walk it to find unknown keys. Semantic rules that JSON
Schema cannot express well (one operator per ``expect``, catalogue types, GUIDs, scopes,
datetimes, uniqueness) are the loader's third pass.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from guardrails.checks import policy_schema as check_schema   # kinds job, model-registry, check-access
from guardrails.model.policy import KINDS, MODES, PRINCIPAL_TYPES, RESOURCE_KIND, RESOURCE_MODES, ROLE_KIND
from guardrails.policy.operators import expect_schema
from guardrails.remediation.actions import ActionRegistry, actions

from guardrails.policy.fragments import document   # the frame every kind shares
# patterns end in ``\Z``, not ``$``: jsonschema uses ``re.search``, where ``$`` also matches before a
# trailing line break ("r1\n" from a YAML block scalar would pass)
RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}\Z"
PROPERTY_PATTERN = r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*\Z"
TOP_LEVEL_KEYS = ("id", "version", "kind", "description", "mode", "selector", "rules", "exemptions",
                  "notify_tag", "contact", "breaker", "flip_flop")
REQUIRED_KEYS = ("id", "version", "description", "mode", "selector", "rules")
ROLE_TOP_LEVEL_KEYS = ("id", "version", "kind", "description", "mode", "selector", "privileged", "break_glass",
                       "grants", "strict_scopes", "action", "exemptions", "breaker", "flip_flop")
ROLE_REQUIRED_KEYS = ("id", "version", "kind", "description", "mode", "action")
# an ARM action pattern: Namespace/type/…/verb with '*' wildcards; no spaces
ACTION_PATTERN = r"^[A-Za-z0-9*][A-Za-z0-9._*/-]*\Z"

_TEXT = {"type": "string", "minLength": 1}
_STRINGS = {"type": "array", "items": _TEXT, "uniqueItems": True}

_EXEMPTIONS = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["scope", "reason", "owner"],
        "properties": {
            "scope": _TEXT,
            "reason": _TEXT,
            "owner": _TEXT,
            "expires": _TEXT,
        },
    },
}
_BREAKER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["max_actions", "window_seconds"],
    "properties": {
        "max_actions": {"type": "integer", "minimum": 1, "maximum": 100000},
        "window_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
    },
}


_FLIP_FLOP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["max_reverts", "window_minutes"],
    "properties": {
        "max_reverts": {"type": "integer", "minimum": 1, "maximum": 1000},
        "window_minutes": {"type": "integer", "minimum": 1, "maximum": 10080},
        "hold_minutes": {"type": "integer", "minimum": 1, "maximum": 525600},
    },
}
_PRIVATE_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["required"],
    "properties": {
        "required": {"type": "boolean"},
        "when_missing": {"enum": ["notify", "enforce"]},
    },
}


def required_keys(kind: str) -> tuple[str, ...]:
    if kind in check_schema.REQUIRED_KEYS:
        return check_schema.REQUIRED_KEYS[kind]
    if kind == "secrets":
        from guardrails.secrets.policy import REQUIRED_KEYS as SECRET_REQUIRED
        return SECRET_REQUIRED
    return ROLE_REQUIRED_KEYS if kind == ROLE_KIND else REQUIRED_KEYS


def build_schema(registry: ActionRegistry = actions) -> dict[str, Any]:
    return document(
        RESOURCE_KIND, "guardrails policy", REQUIRED_KEYS, RESOURCE_MODES, _TEXT,
        **{
            "selector": {
                "type": "object",
                "additionalProperties": False,
                "required": ["resource_types"],
                "properties": {
                    "resource_types": {**_STRINGS, "minItems": 1},
                    "subscriptions": _STRINGS,
                    "resource_groups": _STRINGS,
                    "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "rules": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["id", "property", "expect", "action"],
                    "properties": {
                        "id": {"type": "string", "pattern": RULE_ID_PATTERN},
                        "description": _TEXT,
                        "property": {"type": "string", "pattern": PROPERTY_PATTERN},
                        "expect": expect_schema(),
                        "action": {"oneOf": registry.schemas(RESOURCE_KIND)},
                        "private_endpoint": _PRIVATE_ENDPOINT,
                        # a path the product's property list of a selected type lacks is refused
                        # (a typo would judge every resource by the default); true accepts it
                        "allow_unlisted_property": {"type": "boolean"},
                    },
                },
            },
            "exemptions": _EXEMPTIONS,
            "notify_tag": _TEXT,
            "breaker": _BREAKER,
            "flip_flop": _FLIP_FLOP,
            "contact": _TEXT,
        },
    )


def build_role_schema(registry: ActionRegistry = actions) -> dict[str, Any]:
    """``kind: role-assignments``: who may hold which role where (``metadata/README.md``)."""
    ids = {"type": "array", "items": _TEXT, "uniqueItems": True}
    return document(
        ROLE_KIND, "guardrails role-assignment policy", ROLE_REQUIRED_KEYS, MODES, _TEXT,
        **{
            "selector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"subscriptions": _STRINGS},
            },
            "privileged": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "roles": _STRINGS,
                    "custom_role_actions": {"type": "array", "uniqueItems": True,
                                            "items": {"type": "string", "pattern": ACTION_PATTERN}},
                    "custom_role_data_actions": {"type": "array", "uniqueItems": True,
                                                 "items": {"type": "string", "pattern": ACTION_PATTERN}},
                    "conditional_roles": _STRINGS,
                    "allowed_service_principals": ids,
                },
            },
            "break_glass": ids,
            "grants": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["role", "scopes"],
                    "properties": {
                        "role": _TEXT,
                        "description": _TEXT,
                        "scopes": {**_STRINGS, "minItems": 1},
                        "principals": ids,
                        "groups": ids,
                        "principal_types": {"type": "array", "uniqueItems": True,
                                            "items": {"enum": list(PRINCIPAL_TYPES)}},
                    },
                },
            },
            "strict_scopes": _STRINGS,
            "action": {"oneOf": registry.schemas(ROLE_KIND)},
            "exemptions": _EXEMPTIONS,
            "breaker": _BREAKER,
            "flip_flop": _FLIP_FLOP,
        },
    )


def _secrets_schema(_registry: ActionRegistry = actions) -> dict[str, Any]:
    from guardrails.secrets.policy import SCHEMA
    return SCHEMA


_BUILDERS = {RESOURCE_KIND: build_schema, ROLE_KIND: build_role_schema, **check_schema.BUILDERS,
             "secrets": _secrets_schema}
assert set(_BUILDERS) == set(KINDS)
_cache: dict[tuple[int, str, bool], tuple[int, dict[str, Any], Draft202012Validator]] = {}


def _as_before_end_of_text(node: Any) -> Any:
    """The schema a worker holds STORED rows to: each ``pattern``'s final ``\\Z`` read as ``$`` again.

    The ``\\Z`` endings (ids, rule ids, property paths, role action patterns, the check kinds'
    names) refuse a value ending in a line break, which an earlier release's ``$`` accepted (``re.search``:
    ``$`` matches before a final ``\\n``): a row it synced (``"r1\\n"`` from a YAML block scalar) must
    not make the worker's whole policy set unreadable on upgrade. The row is read as that release
    read it (same ids in audit rows, same paths), and ``validate``/``sync`` refuse the form; the
    next sync of corrected files rewrites the row."""
    if isinstance(node, dict):
        return {k: (v[:-2] + "$" if k == "pattern" and isinstance(v, str) and v.endswith(r"\Z")
                    and not v.endswith(r"\\Z") else _as_before_end_of_text(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_as_before_end_of_text(v) for v in node]
    return node


def _cached(registry: ActionRegistry, kind: str, strict: bool = True) -> tuple[dict[str, Any], Draft202012Validator]:
    key = (id(registry), kind, strict)
    hit = _cache.get(key)
    if hit is None or hit[0] != registry.generation:
        schema = _BUILDERS[kind](registry)
        if not strict:
            schema = _as_before_end_of_text(schema)
        Draft202012Validator.check_schema(schema)   # a bad action fragment fails loudly here
        hit = (registry.generation, schema, Draft202012Validator(schema))
        _cache[key] = hit
    return hit[1], hit[2]


def policy_schema(registry: ActionRegistry = actions, kind: str = RESOURCE_KIND) -> dict[str, Any]:
    """The current schema of ``kind`` (rebuilt when an action is registered)."""
    return _cached(registry, kind)[0]


def validator(registry: ActionRegistry = actions, kind: str = RESOURCE_KIND, *,
              strict: bool = True) -> Draft202012Validator:
    """``strict`` False: the validator for rows a worker reads back (``_as_before_end_of_text``)."""
    return _cached(registry, kind, strict)[1]
