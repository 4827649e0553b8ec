"""Review s21b of the policy core: today's stricter checks stay on ``validate``/``sync`` and are
not held again against rows an earlier release synced (``load_documents(..., check_paths=False)``,
what a worker does through ``Policy.from_document``).

1. a subscription GUID listed twice (two spellings) is kept once on the worker path: the worker
   with a cold cache decides instead of raising ``PolicyUnreadable``; validation still refuses it;
2. a rule id, property path, role action pattern or check-kind name ending in a line break (an
   earlier release's ``$`` accepted it) is read as written on the worker path; validation still
   refuses it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from guardrails.errors import MetadataValidationError
from guardrails.model.policy import Policy
from guardrails.model.resource import ResourceSnapshot
from guardrails.policy.cache import PolicyCache
from guardrails.policy.evaluate import compile_policies
from guardrails.policy.loader import load_documents
from guardrails.policy.roles import CompiledRolePolicy
from tests.functional.fakes import MemoryPolicyRepo

ROOT = Path(__file__).resolve().parents[2]
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
OTHER = "00000000-0000-4000-8000-000000000001"
STORAGE = "Microsoft.Storage/storageAccounts"
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def storage_row(*, rules=None, selector=None) -> dict:
    """A resource policy document as an earlier release's ``metadata sync`` stored it."""
    return {
        "id": "storage-private", "version": 3, "description": "Storage stays private.", "mode": "enforce",
        "selector": {"resource_types": [STORAGE], **(selector or {})},
        "rules": rules or [{"id": "public-network-access-disabled", "property": "properties.publicNetworkAccess",
                            "expect": {"equals": "Disabled"}, "action": {"type": "set-property", "value": "Disabled"}}],
    }


def rbac_row(**changes) -> dict:
    doc = yaml.safe_load((ROOT / "metadata" / "policies" / "rbac-least-privilege.yaml").read_text())
    doc.update(changes)
    return doc


def job_row() -> dict:
    return yaml.safe_load((ROOT / "metadata" / "jobs" / "job-201.yaml").read_text())


def worker_reads(doc: dict):
    """What a worker does with a row: ``Policy.from_document`` (``check_paths=False``)."""
    return Policy.from_document(doc, source=f"table:GuardrailsPolicies/{doc['id']}")


def validate(doc: dict) -> list[str]:
    with pytest.raises(MetadataValidationError) as info:
        load_documents([("p.yaml", doc)])
    return info.value.findings


def violated_rules(policies, sub: str) -> list[str]:
    rid = f"/subscriptions/{sub}/resourceGroups/rg-ml-prod/providers/Microsoft.Storage/storageAccounts/stprod"
    body = {"id": rid, "type": STORAGE, "name": "stprod", "properties": {"publicNetworkAccess": "Enabled"}}
    return [r.rule.id for r in compile_policies(policies).evaluate(ResourceSnapshot(rid, STORAGE, body), now=NOW)]


# ---------------------------------------------------------------- 1. a subscription listed twice

def test_a_row_listing_one_subscription_twice_loads_on_the_worker_path_with_it_kept_once():
    # GIVEN a row an earlier release synced: the same GUID in two cases (it compared raw strings)
    row = storage_row(selector={"subscriptions": [SUB, SUB.upper()]})
    # WHEN a worker reads it
    policy = worker_reads(row)
    # THEN it loads, the subscription kept once, normalised
    assert policy.selector.subscriptions == (SUB,)
    # AND it judges that subscription's resources, and only those
    assert violated_rules([policy], SUB) == ["public-network-access-disabled"]
    assert violated_rules([policy], OTHER) == []


def test_validate_still_refuses_a_subscription_listed_twice():
    (f,) = validate(storage_row(selector={"subscriptions": [SUB, SUB.upper()]}))
    assert "$.selector.subscriptions[1]: subscription " + SUB + " is listed twice" in f


def test_a_worker_with_a_cold_cache_decides_on_a_row_listing_a_subscription_twice():
    # GIVEN only that row in the table and a worker that has never loaded a policy set
    row = storage_row(selector={"subscriptions": [SUB, SUB.upper()]})
    cache = PolicyCache(MemoryPolicyRepo([("table:GuardrailsPolicies/storage-private", row)]), ttl_seconds=30)
    # WHEN it reads the policies (it raised PolicyUnreadable: every event audited failed)
    compiled = cache.get()
    # THEN the policy is in force for its subscription
    assert [p.id for p in compiled.candidates(STORAGE, SUB, "rg-ml-prod")] == ["storage-private"]


def test_a_role_policy_row_listing_a_subscription_twice_loads_on_the_worker_path():
    # spellings an earlier release's check accepted: any case, a block scalar's final line break
    row = rbac_row(selector={"subscriptions": [SUB, SUB.upper(), SUB + "\n"]})
    policy = worker_reads(row)
    assert policy.selector.subscriptions == (SUB,)
    assert CompiledRolePolicy(policy).subs == frozenset({SUB})
    found = validate(row)
    assert [f.split(": ")[2] for f in found] == ["$.selector.subscriptions[1]", "$.selector.subscriptions[2]"]
    assert all("listed twice" in f for f in found)


def test_a_subscription_that_is_no_guid_is_still_refused_on_the_worker_path():
    # only what this release added is relaxed: an earlier release refused a non-GUID as well
    with pytest.raises(MetadataValidationError, match="is not a subscription GUID"):
        worker_reads(storage_row(selector={"subscriptions": [SUB + "x"]}))


# ---------------------------------------------------------------- 2. values ending in a line break

def test_a_rule_id_ending_in_a_line_break_loads_on_the_worker_path_as_written():
    row = storage_row()
    row["rules"][0]["id"] = "public-network-access-disabled\n"
    policy = worker_reads(row)
    # read as the earlier release read it: the audit rows keep naming the same rule
    assert [r.id for r in policy.rules] == ["public-network-access-disabled\n"]
    assert violated_rules([policy], SUB) == ["public-network-access-disabled\n"]
    (f,) = validate(row)
    assert "$.rules[0].id:" in f and "line break" in f


def test_a_worker_with_a_cold_cache_decides_on_a_row_with_a_rule_id_ending_in_a_line_break():
    row = storage_row()
    row["rules"][0]["id"] = "r1\n"
    cache = PolicyCache(MemoryPolicyRepo([("table:GuardrailsPolicies/storage-private", row)]), ttl_seconds=30)
    assert [p.id for p in cache.get().candidates(STORAGE, SUB, "rg")] == ["storage-private"]


def test_a_property_path_ending_in_a_line_break_loads_on_the_worker_path_and_validate_refuses_it():
    rule = {"id": "r1", "property": "properties.publicNetworkAccess\n", "expect": {"equals": "Disabled"},
            "action": {"type": "notify"}, "allow_unlisted_property": True}
    policy = worker_reads(storage_row(rules=[rule]))
    assert policy.rules[0].property == "properties.publicNetworkAccess\n"   # unchanged: no new behaviour
    (f,) = validate(storage_row(rules=[rule]))
    assert "$.rules[0].property:" in f


def test_a_role_action_pattern_ending_in_a_line_break_loads_on_the_worker_path_and_validate_refuses_it():
    row = rbac_row()
    row["privileged"]["custom_role_actions"] = ["Microsoft.Authorization/*/write\n"]
    policy = worker_reads(row)
    assert policy.privileged.custom_role_actions == ("Microsoft.Authorization/*/write\n",)
    (f,) = validate(row)
    assert "$.privileged.custom_role_actions[0]:" in f and "line break" in f


def test_a_check_kind_name_ending_in_a_line_break_loads_on_the_worker_path_and_validate_refuses_it():
    # the job/check kinds' names end at \Z since today too (guardrails/checks/policy_schema.py)
    row = job_row()
    row["network_rules"][0]["private_endpoint"] = "pe-databricks-eastus\n"
    policy = worker_reads(row)
    assert policy.id == "job-201"
    (f,) = validate(row)
    assert "$.network_rules[0].private_endpoint:" in f


def test_the_strict_and_the_row_schemas_differ_only_in_the_end_of_text_anchor():
    from guardrails.policy import schema as schema_mod

    strict = schema_mod.validator(kind="resource").schema
    rows = schema_mod.validator(kind="resource", strict=False).schema
    strict_rule = strict["properties"]["rules"]["items"]["properties"]
    rows_rule = rows["properties"]["rules"]["items"]["properties"]
    assert strict_rule["id"]["pattern"].endswith(r"\Z") and rows_rule["id"]["pattern"].endswith("$")
    assert strict_rule["id"]["pattern"][:-2] == rows_rule["id"]["pattern"][:-1]
    # everything else (the Int32 version bound included: no earlier sync could store more) is the same
    assert rows["properties"]["version"] == strict["properties"]["version"]
    assert schema_mod.validator(kind="resource") is schema_mod.validator(kind="resource")   # cached


def test_the_shipped_metadata_loads_on_both_paths():
    from guardrails.policy.loader import load_directory

    policies = load_directory(ROOT / "metadata")
    docs = [(f"table:x/{p.id}", p.to_document()) for p in policies]
    assert [p.id for p in load_documents(docs, check_paths=False)] == [p.id for p in policies]
