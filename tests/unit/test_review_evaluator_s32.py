"""Review s32 of the resource-policy evaluator's fast path (``guardrails/policy/codegen.py``,
``compiled.py``, ``evaluate.py``), checked differentially against an independent oracle of the
documented semantics (README "Policy as metadata", metadata/README.md "Comparisons").

The generated per-type checks, the sweep loop and ``evaluate`` agreed with the oracle on every
generated policy set and body tried (key case, explicit null vs absent, catalogue defaults,
``applies_when``, non-object intermediates, non-string keys, the Kelvin sign / U+0130, selectors,
more than ``_MASK_RULES`` rules, operands with quotes, backslashes, newlines and braces, the
``_learn`` memo after learning). What is left is below.

1. ``violations_many`` / ``violation_pairs``: the generated sweep loop is built on the first call and
   orders its type chain by counting the first call's ``body.get("type")`` values in a dict
   (``CompiledPolicySet._loop``, evaluate.py). A body whose ``type`` is not hashable (a list or an
   object) among the first 2,000 raises ``TypeError: unhashable type`` there, while the very same
   bodies are decided (the odd type skipped, as ``other`` does for any non-string type) once the
   loop exists. The answer depends on whether this was the first call.
"""

from __future__ import annotations

import pytest

from guardrails.policy.evaluate import compile_policies
from guardrails.policy.loader import load_documents

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
STORAGE = "Microsoft.Storage/storageAccounts"
RID = f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/{STORAGE}/st1"

POLICY = {
    "id": "storage-pna", "version": 1, "description": "d", "mode": "enforce",
    "selector": {"resource_types": [STORAGE]},
    "rules": [{"id": "pna", "property": "properties.publicNetworkAccess", "expect": {"equals": "Disabled"},
               "action": {"type": "set-property", "value": "Disabled"}}],
}


def _compiled():
    return compile_policies(load_documents([(POLICY["id"], POLICY)]))


def _bodies(odd_type):
    return [
        {"id": "/odd", "type": odd_type, "properties": {"publicNetworkAccess": "Enabled"}},
        {"id": RID, "type": STORAGE, "properties": {"publicNetworkAccess": "Enabled"}},
    ]


@pytest.mark.parametrize("odd_type", [["Microsoft.Storage/storageAccounts"], {"name": STORAGE}])
def test_violations_many_first_call_with_an_unhashable_type_decides_like_later_calls(odd_type):
    bodies = _bodies(odd_type)
    warmed = _compiled()
    warmed.violations_many([])                      # the loop built on an empty first call
    expected = warmed.violations_many(bodies)
    assert [b["id"] for b, _ in expected] == [RID]  # the odd type skipped, the storage account judged
    fresh = _compiled()
    assert fresh.violations_many(bodies) == expected     # TypeError: unhashable type (first call)


@pytest.mark.parametrize("odd_type", [["Microsoft.Storage/storageAccounts"], {"name": STORAGE}])
def test_violation_pairs_first_call_with_an_unhashable_type_decides_like_later_calls(odd_type):
    bodies = _bodies(odd_type)
    warmed = _compiled()
    warmed.violation_pairs([])
    expected = warmed.violation_pairs(bodies)
    assert expected == [(RID, ("storage-pna@1", "pna"))]
    fresh = _compiled()
    assert fresh.violation_pairs(bodies) == expected     # TypeError: unhashable type (first call)
