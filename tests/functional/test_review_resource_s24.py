"""Review of the resource guardrail (s24), over the in-memory stores: a fix left ``requested`` (a
long-running write accepted, still running) forgets the read it was decided on, so the next
event for the resource reads again: decided on the cached pre-fix body, a second event within
GUARDRAILS_SNAPSHOT_REUSE_SECONDS sent a second fix for a write that had already gone through."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory
from guardrails.service import GuardrailsService
from guardrails.settings import Settings
from guardrails.sync import metadata_dirs
from tests import builders as b
from tests.functional.fakes import FakeArm, MemoryAudit, MemoryBreakers, MemoryIdempotency, MemoryPending, MemoryPolicyRepo


def _service(arm: FakeArm) -> GuardrailsService:
    repo = MemoryPolicyRepo([(p.source, p.to_document()) for p in load_directory(*metadata_dirs())])
    return GuardrailsService(Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")})),
                             policies=PolicyCache(repo, ttl_seconds=60), arm=arm, idempotency=MemoryIdempotency(),
                             audit=MemoryAudit(), breakers=MemoryBreakers(), pending=MemoryPending())


def test_a_second_event_after_a_fix_left_running_is_decided_on_a_new_read():
    acr = b.container_registry()
    arm = FakeArm([acr])
    svc = _service(arm)
    arm.write_state = "requested"            # accepted (202), still running when the delivery ends
    when = (datetime.now(timezone.utc) - timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    first = b.write_event(acr["id"])
    first["eventTime"] = when
    assert svc.handle_event(first).verdict == "requested"
    # the operation finishes: the registry is private, the admin user off
    arm.resources[acr["id"].lower()]["properties"].update(publicNetworkAccess="Disabled", adminUserEnabled=False)

    second = b.write_event(acr["id"])        # another change of the registry, dated within the reuse window
    second["eventTime"] = when
    svc.handle_event(second)

    assert [m for m, _ in arm.calls] == ["GET", "PATCH", "GET"]     # read again; no second fix sent


def test_two_policies_spelling_one_property_differently_still_conflict():
    """ARM's property names are case-insensitive and the loader accepts any case: two enforced
    policies demanding different values of ``publicNetworkAccess``, one spelling it
    ``PublicNetworkAccess``, are a conflict (nothing written), as with one spelling. They were two
    properties: one PATCH set the last value, its read-back failed the other, and every
    redelivery wrote the resource again."""
    from guardrails.policy.loader import load_documents

    def pol(pid: str, prop: str, value: str) -> dict:
        return {"id": pid, "version": 1, "description": "x", "mode": "enforce",
                "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
                "rules": [{"id": "pna", "property": prop, "expect": {"equals": value},
                           "action": {"type": "set-property", "value": value}}]}

    docs = [pol("pa", "properties.publicNetworkAccess", "Disabled"),
            pol("pb", "properties.PublicNetworkAccess", "SecuredByPerimeter")]
    repo = MemoryPolicyRepo([(p.source, p.to_document()) for p in load_documents(
        [(f"p{i}.yaml", d) for i, d in enumerate(docs)])])
    st = b.storage(pna="Enabled")
    arm, audit = FakeArm([st]), MemoryAudit()
    svc = GuardrailsService(Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")})),
                            policies=PolicyCache(repo, ttl_seconds=60), arm=arm, idempotency=MemoryIdempotency(),
                            audit=audit, breakers=MemoryBreakers(), pending=MemoryPending())

    try:
        svc.handle_event(b.write_event(st["id"]))
    except Exception:       # a failed decision is redelivered; its row is written first
        pass
    row = audit.rows[-1]
    assert arm.writes() == [] and row.reason == "conflicting_policies"
    assert {v.outcome for v in row.violations} == {"failed"}
