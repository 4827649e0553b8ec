"""The service over in-memory stores: failure paths that are awkward to provoke on emulators."""

from __future__ import annotations

import pytest

from guardrails.errors import ArmThrottled, IdempotencyError, StoreError
from guardrails.model.resource import get_path
from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory
from guardrails.service import DeliveryFailed, GuardrailsService
from guardrails.settings import Settings
from guardrails.sync import metadata_dirs
from tests import builders as b
from tests.functional.fakes import (
    FakeArm, MemoryAudit, MemoryBreakers, MemoryIdempotency, MemoryPending, MemoryPolicyRepo,
)


def make(resources=(), **settings):
    repo = MemoryPolicyRepo([(p.source, p.to_document()) for p in load_directory(*metadata_dirs())])
    arm, idem, audit = FakeArm(resources), MemoryIdempotency(), MemoryAudit()
    svc = GuardrailsService(Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")}), **settings),
                            policies=PolicyCache(repo, ttl_seconds=60), arm=arm, idempotency=idem, audit=audit,
                            breakers=MemoryBreakers(), pending=MemoryPending())
    return svc, arm, idem, audit


def test_failed_fix_is_audited_then_raises_and_frees_the_event_for_retry():
    res = b.storage()
    svc, arm, idem, audit = make([res])
    arm.errors["PATCH"] = ArmThrottled("PATCH: ARM answered 429; retry budget exhausted", status=429)
    event = b.write_event(res["id"])
    with pytest.raises(DeliveryFailed):
        svc.handle_event(event)
    assert audit.rows[-1].verdict == "failed" and audit.rows[-1].reason == "throttled"
    assert idem.records == {}                      # released: Event Grid's retry can act
    arm.errors.clear()
    assert svc.handle_event(event).verdict == "remediated"


def test_audit_store_down_raises_and_nothing_is_acknowledged():
    res = b.storage(pna="Disabled", blob=False)
    svc, arm, idem, audit = make([res])
    audit.fail = True
    with pytest.raises(StoreError):
        svc.handle_event(b.write_event(res["id"]))
    assert idem.records == {}                      # not marked done: the retry will audit it


def test_event_held_by_another_live_delivery_raises_for_redelivery():
    res = b.storage()
    svc, arm, idem, audit = make([res])
    event = b.write_event(res["id"])
    idem.acquire(f"event:{event['id']}", holder="other-worker")
    with pytest.raises(IdempotencyError):
        svc.handle_event(event)
    assert arm.calls == [] and audit.rows == []


def test_fix_that_does_not_stick_is_failed_not_remediated():
    res = b.workspace()
    svc, arm, idem, audit = make([res])
    arm.ignore_writes = True
    with pytest.raises(DeliveryFailed):
        svc.handle_event(b.write_event(res["id"]))
    row = audit.rows[-1]
    assert row.verdict == "failed" and row.reason == "not_confirmed"


def test_long_running_fix_still_running_is_requested_never_remediated():
    res = b.workspace()
    svc, arm, idem, audit = make([res])
    arm.write_state = "requested"
    row = svc.handle_event(b.write_event(res["id"]))
    assert row.verdict == "requested" and row.violations[0].outcome == "requested"
    assert [c[0] for c in arm.calls] == ["GET", "PATCH"]   # no confirm read of an unfinished write


def test_non_object_delivery_is_invalid_not_a_crash():
    svc, arm, idem, audit = make([])
    for raw in (None, 42, "text", [1, 2]):
        row = svc.handle_event(raw)
        assert row.verdict == "invalid"
    assert arm.calls == []


def test_own_principal_matches_dashless_and_app_id():
    res = b.storage()
    svc, arm, idem, audit = make([res])
    # a token without an object id: its app id decides (dashless, any case)
    ev = b.write_event(res["id"], actor=b.claims(oid=None, app_id=b.GUARDRAIL_OID.replace("-", "").upper(), upn=None))
    row = svc.handle_event(ev)
    assert (row.verdict, row.reason) == ("ignored", "own_write")
    assert arm.calls == []


def test_a_user_signing_in_through_the_guardrails_app_id_is_not_its_own_write():
    # a delegated token carries the client's app id and the user's object id: the object id decides
    res = b.storage()
    svc, arm, idem, audit = make([res])
    ev = b.write_event(res["id"], actor=b.claims(b.ALICE, app_id=b.GUARDRAIL_OID, upn="alice@contoso.com"))
    row = svc.handle_event(ev)
    assert row.verdict == "remediated"
    assert get_path(arm.resources[res["id"].lower()], "properties.publicNetworkAccess") == "Disabled"


def test_secret_looking_values_never_reach_the_audit_row():
    res = b.storage()
    svc, arm, idem, audit = make([res])
    ev = b.write_event(res["id"])
    ev["data"]["claims"]["aio"] = "SECRET-TOKEN-VALUE-xyz"
    ev["data"]["httpRequest"] = {"clientRequestId": "x", "url": "https://x/?sig=SECRET-SAS-VALUE"}
    row = svc.handle_event(ev)
    assert "SECRET" not in repr(row.to_dict())


def test_a_change_landing_while_a_read_is_in_flight_is_not_hidden_by_the_cached_snapshot():
    """The cached read is stamped when the GET was sent: a change that lands while its answer is on
    the way (its event time after the send) gets a read of its own and is reverted."""
    from datetime import datetime, timedelta, timezone

    from guardrails.policy.cache import PolicyCache as _Cache

    now = [datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)]
    res = b.storage(pna="Disabled", blob=False)
    rid = res["id"]
    arm = FakeArm([res])
    changed_at: list[datetime] = []
    plain_get = arm.get_resource

    def slow_get(resource_id, **kw):
        snap = plain_get(resource_id, **kw)            # ARM answered with the state of this moment …
        if not changed_at:
            now[0] += timedelta(seconds=0.2)            # … and Bob's write lands while it travels,
            arm.resources[rid.lower()]["properties"]["publicNetworkAccess"] = "Enabled"
            changed_at.append(now[0])
            now[0] += timedelta(seconds=1.3)            # the answer arrives 1.5 s after it was served
        return snap
    arm.get_resource = slow_get
    repo = MemoryPolicyRepo([(p.source, p.to_document()) for p in load_directory(*metadata_dirs())])
    audit = MemoryAudit()
    svc = GuardrailsService(Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")})),
                            policies=_Cache(repo, ttl_seconds=60), arm=arm, idempotency=MemoryIdempotency(),
                            audit=audit, breakers=MemoryBreakers(), pending=MemoryPending(), wall_clock=lambda: now[0])

    def event_at(t, who):
        e = b.write_event(rid, actor=b.claims(upn=who))
        e["eventTime"] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return e

    assert svc.handle_event(event_at(now[0] - timedelta(seconds=1), "alice@contoso.com")).verdict == "compliant"
    now[0] += timedelta(seconds=0.5)
    row = svc.handle_event(event_at(changed_at[0], "bob@contoso.com"))
    assert row.verdict == "remediated", row.message
    assert arm.resources[rid.lower()]["properties"]["publicNetworkAccess"] == "Disabled"


def test_a_fix_whose_audit_write_failed_is_audited_by_the_retry_not_decided_again():
    """The PATCH landed, then the audit write failed: the decision is parked with the event's claim
    and the redelivery writes it (remediated, noted as audited late) with no ARM call, instead of
    reading the fixed state and recording ``compliant``."""
    res = b.storage(blob=False)
    svc, arm, idem, audit = make([res])
    event = b.write_event(res["id"])
    audit.fail = True
    with pytest.raises(StoreError):
        svc.handle_event(event)
    assert len(arm.writes()) == 1
    (rec,) = idem.records.values()
    assert rec["status"] == "UNAUDITED" and rec["row"]["verdict"] == "remediated"
    audit.fail = False
    calls = len(arm.calls)
    row = svc.handle_event(event)                        # Event Grid's redelivery
    assert row.verdict == "remediated" and "audited by a later delivery" in row.message
    assert [v.outcome for v in row.violations] == ["remediated"]
    assert len(arm.calls) == calls and len(arm.writes()) == 1
    assert [r.verdict for r in audit.rows] == ["remediated"]
    assert svc.handle_event(event).verdict == "duplicate"


def test_a_parked_decision_survives_a_second_failed_audit_write():
    res = b.storage(blob=False)
    svc, arm, idem, audit = make([res])
    event = b.write_event(res["id"])
    audit.fail = True
    for _ in range(2):
        with pytest.raises(StoreError):
            svc.handle_event(event)
    audit.fail = False
    assert svc.handle_event(event).verdict == "remediated" and len(arm.writes()) == 1


def test_a_body_arm_returns_without_its_type_is_judged_as_the_type_its_id_names():
    # evaluated by the body's type, a body without one matched no policy program: "compliant"
    res = b.storage()
    svc, arm, idem, audit = make([res])
    arm.resources[res["id"].lower()].pop("type")
    row = svc.handle_event(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    assert get_path(arm.resources[res["id"].lower()], "properties.publicNetworkAccess") == "Disabled"


def _repo_docs():
    return [(p.source, p.to_document()) for p in load_directory(*metadata_dirs())]


def _service(repo, resources):
    arm, idem, audit = FakeArm(resources), MemoryIdempotency(), MemoryAudit()
    svc = GuardrailsService(Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")})),
                            policies=PolicyCache(repo, ttl_seconds=60), arm=arm, idempotency=idem, audit=audit,
                            breakers=MemoryBreakers(), pending=MemoryPending())
    return svc, arm, audit


def _broken(docs, policy_id):
    out = []
    for src, doc in docs:
        if doc["id"] == policy_id:
            doc = {**doc, "rules": [{**doc["rules"][0], "expect": {"equalz": "Disabled"}}]}
        out.append((src, doc))
    return out


def test_an_unreadable_policy_row_fails_the_event_instead_of_switching_the_policy_off():
    # dropped, the row's policy would be off: a public account "ignored / no_policy", no fix
    res = b.storage()
    svc, arm, audit = _service(MemoryPolicyRepo(_broken(_repo_docs(), "storage-private")), [res])
    with pytest.raises(DeliveryFailed):
        svc.handle_event(b.write_event(res["id"]))
    (row,) = audit.rows
    assert (row.verdict, row.reason) == ("failed", "policy_unreadable")
    assert "storage-private" in row.message and "metadata sync" in row.message


def test_a_worker_keeps_the_last_good_version_of_a_policy_whose_row_turns_unreadable(caplog):
    res = b.storage()
    repo = MemoryPolicyRepo(_repo_docs())
    svc, arm, audit = _service(repo, [res])
    assert "storage-private" in [p.id for p in svc.policies.get().policies]
    repo.documents = _broken(repo.documents, "storage-private")        # e.g. a hand edit
    svc.policies.invalidate()
    row = svc.handle_event(b.write_event(res["id"]))
    assert row.verdict == "remediated" and any(p.startswith("storage-private@") for p in row.policies)
    assert any("policy_row_rejected" in r.getMessage() and "storage-private@" in r.getMessage()
               for r in caplog.records)
    # a row deleted from the table is an admin's removal: no last good version is kept for it
    repo.documents = [(s, d) for s, d in repo.documents if d["id"] != "storage-private"]
    svc.policies.invalidate()
    assert "storage-private" not in [p.id for p in svc.policies.get().policies]


@pytest.mark.parametrize("end", ["Microsoft.Resources.ResourceWriteFailure", "Microsoft.Resources.ResourceWriteCancel"])
def test_a_long_running_fix_that_then_fails_is_audited_failed_from_its_own_failure_event(end):
    res = b.storage()
    svc, arm, idem, audit = make([res])
    arm.write_state = "requested"              # ARM accepted the PATCH; still running when the budget ended
    first = svc.handle_event(b.write_event(res["id"]))
    assert first.verdict == "requested" and svc.pending.list(res["id"])
    arm.resources[res["id"].lower()]["properties"]["publicNetworkAccess"] = "Enabled"   # the operation failed
    own = b.claims(b.GUARDRAIL_OID, app_id=None, upn=None)
    # a failure of another write of ours (say a second fix refused while this one runs) settles nothing
    unrelated = svc.handle_event(b.write_event(res["id"], event_type=end, actor=own))
    assert (unrelated.verdict, unrelated.reason) == ("ignored", "own_write") and svc.pending.list(res["id"])
    failed = b.write_event(res["id"], event_type=end, actor=own)
    failed["data"]["correlationId"] = arm.correlations[-1]          # this fix's own failure
    row = svc.handle_event(failed)
    assert (row.verdict, row.reason, row.notify) == ("failed", "not_confirmed", True)
    assert [v.outcome for v in row.violations if v.rule == "public-network-access-disabled"] == ["failed"]
    assert svc.pending.list(res["id"]) == []
    # someone else's failed write changes nothing: not evaluated
    other = svc.handle_event(b.write_event(res["id"], event_type=end))
    assert (other.verdict, other.reason) == ("ignored", "event_type_not_evaluated")


@pytest.mark.parametrize("spelling", ["microsoft.resources.resourcewritesuccess", "MICROSOFT.RESOURCES.RESOURCEWRITESUCCESS"])
def test_an_event_type_in_another_case_is_the_same_type(spelling):
    res = b.storage()
    svc, arm, idem, audit = make([res])
    row = svc.handle_event(b.write_event(res["id"], event_type=spelling))
    assert (row.verdict, row.event_type) == ("remediated", "Microsoft.Resources.ResourceWriteSuccess")


def test_a_long_running_fix_confirmed_by_its_own_event_is_timed_from_the_drift():
    # the confirm row's event_time is the drift's (the first event), not our own write's end
    res = b.storage()
    svc, arm, idem, audit = make([res])
    arm.write_state = "requested"
    drift = b.write_event(res["id"])
    drift["eventTime"] = "2026-11-24T08:00:00.000000Z"
    first = svc.handle_event(drift)
    assert first.verdict == "requested"
    arm.resources[res["id"].lower()]["properties"]["publicNetworkAccess"] = "Disabled"   # it finished
    arm.resources[res["id"].lower()]["properties"]["allowBlobPublicAccess"] = False
    own = b.claims(b.GUARDRAIL_OID, app_id=None, upn=None)
    (_key, record), = svc.pending.list(res["id"])
    own_event = b.write_event(res["id"], actor=own)
    own_event["data"]["correlationId"] = record["correlation_id"]      # ARM's event of that very write
    confirm = svc.handle_event(own_event)
    assert confirm.verdict == "remediated"
    assert confirm.event_time == first.event_time and confirm.event_time.startswith("2026-11-24T08:00:00")


def test_a_timer_decision_waits_for_a_resource_lock_only_within_its_time_budget():
    # nested re-decisions take lock stripes inside others: in opposite order they would deadlock
    import threading

    res = b.storage()
    svc, arm, idem, audit = make([res], time_budget_seconds=0.3)
    holder_ready, release = threading.Event(), threading.Event()

    def hold():
        with svc._resource_lock(res["id"]):
            holder_ready.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    holder_ready.wait(5)
    try:
        row = svc.reconcile(res["id"], None, sweep_id="sweep-busy")
    finally:
        release.set()
        t.join(5)
    assert (row.verdict, row.reason) == ("failed", "busy")
    assert [c for c in arm.calls if c[0] != "GET"] == []


def test_a_fix_whose_read_back_failed_is_confirmed_by_its_own_write_event_on_the_same_worker():
    from guardrails.errors import ArmTransient

    res = b.storage()
    svc, arm, idem, audit = make([res])
    real_get, reads = arm.get_resource, []

    def get(*a, **k):
        reads.append(1)
        if len(reads) == 2:                       # the confirm read
            raise ArmTransient("GET: 503", status=503)
        return real_get(*a, **k)

    arm.get_resource = get
    first = svc.handle_event(b.write_event(res["id"]))
    assert first.verdict == "requested" and svc.pending.list(res["id"])
    own = b.write_event(res["id"], actor=b.claims(b.GUARDRAIL_OID, app_id=None, upn=None))
    own["data"]["correlationId"] = arm.correlations[-1]
    confirm = svc.handle_event(own)               # the write finished: this worker must not skip it
    assert confirm.verdict == "remediated" and svc.pending.list(res["id"]) == []


def test_a_nested_re_decision_stays_within_the_deadline_it_is_given():
    # a role definition's assignments, a model version's endpoints: decided inside an event whose
    # budget must hold (Event Grid waits 30 s)
    res = b.storage()
    svc, arm, idem, audit = make([res])
    seen = []
    real = arm.get_resource

    def get(resource_id, *, api_version, deadline=None):
        seen.append(deadline)
        return real(resource_id, api_version=api_version, deadline=deadline)

    arm.get_resource = get
    outer = svc._clock() + 1.5
    svc.reconcile(res["id"], None, sweep_id="nested", deadline=outer)
    assert seen and all(d is not None and d <= outer for d in seen)
