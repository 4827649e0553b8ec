"""The JSON Schema (draft 2020-12) of one policy document.

Assembled from the parts that own them: operator fragments (``operators.OPERATORS``) and
action fragments (``remediation.actions.actions``, as a ``oneOf``). The schema is inline (no
``$ref``) so the structure pass can walk it to find unknown keys. Semantic rules that JSON
Schema cannot express well (one operator per ``expect``, catalogue types, GUIDs, scopes,
datetimes, uniqueness) are the loader's third pass.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from guardrails.model.policy import MODES
from guardrails.policy.operators import expect_schema
from guardrails.remediation.actions import ActionRegistry, actions

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
PROPERTY_PATTERN = r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$"
TOP_LEVEL_KEYS = ("id", "version", "description", "mode", "selector", "rules", "exemptions", "notify_tag", "breaker")
REQUIRED_KEYS = ("id", "version", "description", "mode", "selector", "rules")

_TEXT = {"type": "string", "minLength": 1}
_STRINGS = {"type": "array", "items": _TEXT, "uniqueItems": True}


def build_schema(registry: ActionRegistry = actions) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "guardrails policy",
        "type": "object",
        "additionalProperties": False,
        "required": list(REQUIRED_KEYS),
        "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN},
            "version": {"type": "integer", "minimum": 1},
            "description": _TEXT,
            "mode": {"enum": list(MODES)},
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
                        "action": {"oneOf": registry.schemas()},
                    },
                },
            },
            "exemptions": {
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
            },
            "notify_tag": _TEXT,
            "breaker": {
                "type": "object",
                "additionalProperties": False,
                "required": ["max_actions", "window_seconds"],
                "properties": {
                    "max_actions": {"type": "integer", "minimum": 1, "maximum": 100000},
                    "window_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
                },
            },
        },
    }


_cache: dict[int, tuple[int, dict[str, Any], Draft202012Validator]] = {}


def _cached(registry: ActionRegistry) -> tuple[dict[str, Any], Draft202012Validator]:
    hit = _cache.get(id(registry))
    if hit is None or hit[0] != registry.generation:
        schema = build_schema(registry)
        Draft202012Validator.check_schema(schema)   # a bad action fragment fails loudly here
        hit = (registry.generation, schema, Draft202012Validator(schema))
        _cache[id(registry)] = hit
    return hit[1], hit[2]


def policy_schema(registry: ActionRegistry = actions) -> dict[str, Any]:
    """The current schema (rebuilt when an action is registered)."""
    return _cached(registry)[0]


def validator(registry: ActionRegistry = actions) -> Draft202012Validator:
    return _cached(registry)[1]
