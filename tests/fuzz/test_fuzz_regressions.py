"""Minimal reproducers of bugs the fuzzing found.

Each test states the contract a fuzz run broke (untyped exceptions from the YAML parser,
unbounded recursion, alias fan-out, oversized audit properties). Fixed bugs are plain regression
tests; open ones are strict xfails: when the fix lands the XPASS fails the run, so drop the
marker (and any matching tolerance in the fuzz tests) then.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from guardrails.adapters.audit_tables import _entity
from guardrails.errors import GuardrailsError, MetadataValidationError
from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory, load_documents
from guardrails.service import GuardrailsService
from guardrails.settings import Settings
from tests import builders as b
from tests.functional.fakes import (
    FakeArm, MemoryAudit, MemoryBreakers, MemoryIdempotency, MemoryPending, MemoryPolicyRepo,
)

ROOT = Path(__file__).resolve().parents[2]
STORAGE_POLICY = yaml.safe_load((ROOT / "metadata" / "policies" / "storage-private.yaml").read_text())


def _load_text(tmp_path: Path, text: str) -> MetadataValidationError | list:
    (tmp_path / "policy.yaml").write_text(text, encoding="utf-8")
    try:
        return load_directory(tmp_path)
    except MetadataValidationError as exc:
        return exc


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


# -- metadata: YAML files ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["!!int x", "!!timestamp x", "!!bool x", "!!float x", "!!int ''", "!!set [1]",
                                   "!!map x"])
def test_yaml_malformed_explicit_tag_is_a_finding(tmp_path: Path, value: str) -> None:
    # GIVEN a policy file with one explicitly-tagged scalar PyYAML cannot construct
    # WHEN loaded  THEN a finding naming the file, not a bare Python exception
    result = _load_text(tmp_path, f"id: x\nversion: {value}\n")
    assert isinstance(result, MetadataValidationError) and str(tmp_path / "policy.yaml") in str(result)


def test_yaml_huge_integer_is_a_finding(tmp_path: Path) -> None:
    result = _load_text(tmp_path, "id: x\nversion: " + "1" * 4301 + "\n")
    assert isinstance(result, MetadataValidationError)


def test_yaml_deep_nesting_is_a_finding(tmp_path: Path) -> None:
    result = _load_text(tmp_path, "id: x\nrules: " + "[" * 1000 + "]" * 1000 + "\n")
    assert isinstance(result, MetadataValidationError)


def _alias_fanout(levels: int) -> str:
    lines = ["id: fanout", "version: 1", "description: d", "mode: enforce", "selector:", "  resource_types:",
             "    - &a0 [x, x]"]
    lines += [f"    - &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, levels)]
    lines += ["rules:", "  - {id: r, property: p.q, expect: {equals: 1}, action: {type: notify}}"]
    return "\n".join(lines)


def test_yaml_alias_fanout_is_bounded(tmp_path: Path) -> None:
    text = _alias_fanout(18)
    result = _load_text(tmp_path, text)
    size = len(str(result))
    assert size < 100 * len(text), f"{len(text)} bytes of YAML -> {size} characters of findings"


# -- metadata: documents (Table Storage rows, Python callers) -----------------------------------
def test_deep_document_is_a_finding() -> None:
    doc = json.loads(json.dumps({**STORAGE_POLICY, "description": _nested(600)}))   # a row JSON can hold
    with pytest.raises(MetadataValidationError):
        load_documents([("row", doc)])


def test_tampered_deep_policy_row_does_not_break_event_handling() -> None:
    # GIVEN the policy table holds the shipped storage policy and one tampered, deeply nested row
    row = json.loads(json.dumps({**STORAGE_POLICY, "id": "tampered", "description": _nested(600)}))
    repo = MemoryPolicyRepo([("good", STORAGE_POLICY), ("tampered", row)])
    res = b.storage()
    svc = GuardrailsService(Settings(), policies=PolicyCache(repo, ttl_seconds=60), arm=FakeArm([res]),
                            idempotency=MemoryIdempotency(), audit=MemoryAudit(), breakers=MemoryBreakers(),
                            pending=MemoryPending())
    # WHEN a covered write arrives  THEN the bad row is rejected and the good policy still applies
    try:
        row_out = svc.handle_event(b.write_event(res["id"]))
    except GuardrailsError:
        return
    assert row_out.verdict == "remediated"


def test_document_with_huge_int_is_a_finding() -> None:
    with pytest.raises(MetadataValidationError):
        load_documents([("row", {**STORAGE_POLICY, "description": 10**5000})])


# -- events ---------------------------------------------------------------------------------------
def test_audit_entity_of_a_huge_correlation_id_fits_table_storage() -> None:
    svc = GuardrailsService(Settings(), policies=PolicyCache(MemoryPolicyRepo(), ttl_seconds=60), arm=FakeArm(),
                            idempotency=MemoryIdempotency(), audit=MemoryAudit(), breakers=MemoryBreakers(),
                            pending=MemoryPending())
    event = b.with_data(b.write_event(b.rid("Microsoft.Web", "sites", "app")), correlationId="c" * 40_000)
    row = svc.handle_event(event)            # a valid event (data is 41 KB < 64 KB): ignored, not covered
    assert row.verdict == "ignored"
    for key, value in _entity(row).items():
        if isinstance(value, str):
            assert len(value.encode("utf-16-le")) <= 64 * 1024, (key, len(value))


def test_document_with_huge_int_key_is_a_finding() -> None:
    with pytest.raises(MetadataValidationError):
        load_documents([("row", {**STORAGE_POLICY, 10**5000: "x"})])


def test_keyvault_event_with_deeply_nested_data_is_invalid_not_a_crash() -> None:
    from tests.fuzz.strategies import _nest, keyvault_event

    svc = GuardrailsService(Settings(), policies=PolicyCache(MemoryPolicyRepo(), ttl_seconds=60), arm=FakeArm(),
                            idempotency=MemoryIdempotency(), audit=MemoryAudit(), breakers=MemoryBreakers(),
                            pending=MemoryPending())
    event = keyvault_event(b.key_vault()["id"], "SecretNewVersionCreated", "eventgrid")
    event["data"]["Tags"] = _nest(3000, "list", None)
    try:
        row = svc.handle_event(event)
    except GuardrailsError:
        return
    assert row.verdict in ("invalid", "ignored")
