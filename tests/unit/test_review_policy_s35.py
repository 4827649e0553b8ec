"""Review s35 of the pure policy engine (guardrails/policy/, model/resource.py, known_properties.py).

The compiled predicates were checked against a plain reading of the documented semantics
(``get_path`` + catalogue default + operator + ``applies_when``) on randomly generated policies
(up to 6 rules, 1-3 policies, shared path prefixes, paths in other cases, numeric/boolean/string
operands, ``in``/``not_in`` with mixed types) and bodies (nulls, other key cases, non-object
intermediates, lists, booleans as strings): no divergence between ``violations``, ``evaluate``,
``violation_pairs`` and the reference. The defects below are in what the loader accepts.

1. A selector tag value written as a YAML block scalar (``environment: |`` then ``prod``) is kept
   as ``"prod\\n"``: the policy loads and selects no resource at all (every resource tagged
   ``environment: prod`` passes unjudged). Session 21 fixed this very shape for subscription GUIDs
   (normalised) and for ids and paths (refused); tag values were left out.
2. The same for a string operand of ``expect``: ``not_equals: |`` then ``Enabled`` is
   ``"Enabled\\n"``, which no ARM value equals, so every public resource passes a notify rule.
3. A ``mode: shadow`` version may carry the same ``version`` as the enforced one with different
   rules: both are ``id@N`` in audit rows, so the audit cannot tell which document decided.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from guardrails.errors import MetadataValidationError
from guardrails.policy.evaluate import compile_policies
from guardrails.policy.loader import load_directory
from tests.builders import storage

STORAGE = "Microsoft.Storage/storageAccounts"


def _write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    d = tmp_path / "site"
    d.mkdir(exist_ok=True)
    (d / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return d


def _violated_or_refused(directory: Path, body: dict) -> tuple[str, object]:
    """('refused', findings) when validation refuses the directory, else ('violations', keys)."""
    try:
        policies = load_directory(directory)
    except MetadataValidationError as exc:
        return "refused", exc.findings
    return "violations", tuple(compile_policies(policies).violations(body, body["type"]))


TAG_BLOCK_SCALAR = """\
    id: storage-prod-only
    version: 1
    description: Production storage accounts stay private.
    mode: enforce
    selector:
      resource_types: [Microsoft.Storage/storageAccounts]
      tags:
        environment: |
          prod
    rules:
      - id: public-network-access-disabled
        property: properties.publicNetworkAccess
        expect: {equals: Disabled}
        action: {type: set-property, value: Disabled}
"""


def test_a_tag_selector_value_written_as_a_block_scalar_selects_its_resources_or_is_refused(tmp_path):
    """DEFECT 1 (semantics._semantics keeps sel["tags"] raw; compiled._CompiledPolicy compares the
    value exactly). ``environment: |`` + ``prod`` is the value "prod\\n": the policy validates and
    then selects nothing, so a public production account is never judged (a silent fail-open).
    Expected: as for a subscription GUID written this way, the value is trimmed (and selects
    ``environment: prod``), or validation refuses it naming $.selector.tags."""
    body = storage(pna="Enabled", tags={"environment": "prod", "owner": "ml@contoso.com"})
    what, got = _violated_or_refused(_write(tmp_path, TAG_BLOCK_SCALAR), body)
    if what == "refused":
        assert any("selector.tags" in f for f in got), got
    else:
        assert ("storage-prod-only@1", "public-network-access-disabled") in got, (
            "the policy loaded with tag value 'prod\\n' and selects no resource tagged environment: prod")


def test_control_a_plain_tag_selector_value_selects_its_resources(tmp_path):
    """Control: the same policy with ``environment: prod`` on one line judges the account."""
    text = TAG_BLOCK_SCALAR.replace("environment: |\n          prod", "environment: prod")
    body = storage(pna="Enabled", tags={"environment": "prod"})
    assert _violated_or_refused(_write(tmp_path, text), body) == (
        "violations", (("storage-prod-only@1", "public-network-access-disabled"),))


OPERAND_BLOCK_SCALAR = """\
    id: storage-not-public
    version: 1
    description: Storage accounts are never open to every network.
    mode: enforce
    selector:
      resource_types: [Microsoft.Storage/storageAccounts]
    rules:
      - id: public-network-access-not-enabled
        property: properties.publicNetworkAccess
        expect:
          not_equals: |
            Enabled
        action: {type: notify}
"""


def test_a_string_operand_written_as_a_block_scalar_still_flags_a_public_account_or_is_refused(tmp_path):
    """DEFECT 2 (operators._equals / codegen._inline_test compare with the operand as written;
    nothing in schema.py or semantics.py trims or refuses it). ``not_equals: |`` + ``Enabled`` is
    "Enabled\\n": no ARM value equals it, so an account with publicNetworkAccess Enabled passes
    and the owner is never told (with ``equals``, every account fails and the fix writes
    "Disabled\\n"). Expected: validation refuses a string operand with a leading or trailing line
    break or space (ARM enum values have none), naming $.rules[0].expect, or the operand is
    trimmed and the account is flagged."""
    body = storage(pna="Enabled")
    what, got = _violated_or_refused(_write(tmp_path, OPERAND_BLOCK_SCALAR), body)
    if what == "refused":
        assert any("expect" in f for f in got), got
    else:
        assert ("storage-not-public@1", "public-network-access-not-enabled") in got, (
            "publicNetworkAccess Enabled passed not_equals 'Enabled\\n'")


def test_control_a_plain_operand_flags_the_public_account(tmp_path):
    text = OPERAND_BLOCK_SCALAR.replace("not_equals: |\n            Enabled", "not_equals: Enabled")
    body = storage(pna="Enabled")
    assert _violated_or_refused(_write(tmp_path, text), body) == (
        "violations", (("storage-not-public@1", "public-network-access-not-enabled"),))


ENFORCED = """\
    id: storage-private
    version: 7
    description: Storage accounts stay private.
    mode: enforce
    selector:
      resource_types: [Microsoft.Storage/storageAccounts]
    rules:
      - id: public-network-access-disabled
        property: properties.publicNetworkAccess
        expect: {equals: Disabled}
        action: {type: set-property, value: Disabled}
"""
SHADOW_SAME_VERSION = """\
    id: storage-private
    version: 7
    description: Trying a looser rule before enforcing it.
    mode: shadow
    selector:
      resource_types: [Microsoft.Storage/storageAccounts]
    rules:
      - id: public-network-access-disabled
        property: properties.publicNetworkAccess
        expect: {in: [Disabled, SecuredByPerimeter]}
        action: {type: set-property, value: Disabled}
"""


def test_a_shadow_version_with_the_enforced_versions_number_and_other_rules_is_refused(tmp_path):
    """DEFECT 3 (loader._validate gives a shadow version its own id slot, ``id@shadow``, and
    nothing compares its ``version`` with the enforced one's). Both documents are
    ``storage-private@7`` (``Policy.ref``), the name audit rows, the report and ``violations``
    keys use for "this content": the README refuses other content at one version precisely
    because "audit rows name policies id@version". Expected: ``validate``/``sync`` refuse a
    shadow version that reuses the enforced version's number with other content, naming $.version."""
    d = _write(tmp_path, ENFORCED, "enforced.yaml")
    _write(tmp_path, SHADOW_SAME_VERSION, "shadow.yaml")
    with pytest.raises(MetadataValidationError) as info:
        policies = load_directory(d)
        pytest.fail("loaded: " + ", ".join(f"{p.ref} ({p.mode})" for p in policies))
    assert any("version" in f for f in info.value.findings), info.value.findings


def test_control_a_shadow_version_with_its_own_number_loads_beside_the_enforced_one(tmp_path):
    d = _write(tmp_path, ENFORCED, "enforced.yaml")
    _write(tmp_path, SHADOW_SAME_VERSION.replace("version: 7", "version: 8"), "shadow.yaml")
    refs = sorted((p.ref, p.mode) for p in load_directory(d))
    assert refs == [("storage-private@7", "enforce"), ("storage-private@8", "shadow")]
