"""An own write that confirms a long-running fix (concurrency review, 2026-11-25): two deliveries of
that event at once (a redelivery after a slow first attempt, a replayed dead letter, another
instance) both listed the pending record and both audited the fix; and the confirmation ran outside
the resource's lock, so its read, sent before a decision's and answered after it, replaced that
decision's fresh read in the snapshot cache and the next event sent the fix again."""

from __future__ import annotations

import copy
import threading
from datetime import datetime, timedelta, timezone

import pytest

from guardrails.caches import SnapshotCache
from guardrails.errors import IdempotencyError
from guardrails.model.resource import ResourceSnapshot
from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory
from guardrails.service import GuardrailsService
from guardrails.settings import Settings
from guardrails.sync import metadata_dirs
from tests import builders as b
from tests.functional.fakes import FakeArm, MemoryAudit, MemoryBreakers, MemoryIdempotency, MemoryPending, MemoryPolicyRepo


def _service(resources):
    repo = MemoryPolicyRepo([(p.source, p.to_document()) for p in load_directory(*metadata_dirs())])
    arm, audit = FakeArm(resources), MemoryAudit()
    svc = GuardrailsService(Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")})),
                            policies=PolicyCache(repo, ttl_seconds=60), arm=arm, idempotency=MemoryIdempotency(),
                            audit=audit, breakers=MemoryBreakers(), pending=MemoryPending())
    return svc, arm, audit


def test_one_own_write_event_delivered_twice_at_once_audits_its_fix_once():
    res = b.storage()
    svc, arm, audit = _service([res])
    arm.write_state = "requested"                      # the fix still ran when its delivery ended
    assert svc.handle_event(b.write_event(res["id"])).verdict == "requested"
    ((_key, record),) = svc.pending.list(res["id"])
    arm.write_state = "done"
    props = arm.resources[res["id"].lower()]["properties"]
    props["publicNetworkAccess"], props["allowBlobPublicAccess"] = "Disabled", False     # ... and finished
    own = b.write_event(res["id"], actor=b.claims(b.GUARDRAIL_OID, app_id=None, upn=None))
    own["data"]["correlationId"] = record["correlation_id"]

    reading, go = threading.Event(), threading.Event()
    real_get = arm.get_resource

    def slow_get(*a, **k):                             # the first delivery's read-back is slow
        reading.set()
        assert go.wait(10)
        return real_get(*a, **k)

    arm.get_resource = slow_get
    first: list = []
    t = threading.Thread(target=lambda: first.append(svc.handle_event(copy.deepcopy(own))))
    t.start()
    assert reading.wait(10)
    with pytest.raises(IdempotencyError):              # the copy meets the first one's claim: redelivered
        svc.handle_event(copy.deepcopy(own))
    go.set()
    t.join(10)
    arm.get_resource = real_get
    assert svc.handle_event(copy.deepcopy(own)).verdict == "ignored"        # its redelivery: nothing pending
    rows = [r for r in audit.rows if r.event_id == own["id"]]
    assert [r.verdict for r in rows] == ["remediated", "ignored"]
    assert svc.pending.list(res["id"]) == []


def test_an_own_write_with_nothing_pending_stays_free_of_claims_and_reads():
    res = b.storage(pna="Disabled", blob=False)
    svc, arm, audit = _service([res])
    own = b.write_event(res["id"], actor=b.claims(b.GUARDRAIL_OID, app_id=None, upn=None))
    row = svc.handle_event(own)
    assert (row.verdict, row.reason) == ("ignored", "own_write")
    assert svc.idempotency.acquire(f"event:{own['id']}", holder="x").state != "completed"   # no claim was taken


def _snap(value: str) -> ResourceSnapshot:
    rid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st"
    return ResourceSnapshot(rid, "Microsoft.Storage/storageAccounts",
                            {"id": rid, "properties": {"publicNetworkAccess": value}})


def test_a_read_sent_earlier_never_replaces_one_sent_later_in_the_snapshot_cache():
    t0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    cache = SnapshotCache(max_age=60, skew=0, wall_clock=lambda: t0 + timedelta(seconds=5))
    fresh, stale = _snap("Disabled"), _snap("Enabled")
    cache.put(fresh, requested_at=t0 + timedelta(seconds=4))      # a decision's read-back after its fix
    cache.put(stale, requested_at=t0 + timedelta(seconds=2))      # a confirmation's read, answered last
    got = cache.get(fresh.resource_id, t0 + timedelta(seconds=1))
    assert got is fresh


def _shared(resources, **settings):
    repo = MemoryPolicyRepo([(p.source, p.to_document()) for p in load_directory(*metadata_dirs())])
    arm, audit, idem, breakers, pending = FakeArm(resources), MemoryAudit(), MemoryIdempotency(), MemoryBreakers(), MemoryPending()
    s = Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")}), **settings)

    def service():      # as build_service: the same stores and ARM, in-process state of its own
        return GuardrailsService(s, policies=PolicyCache(repo, ttl_seconds=60), arm=arm, idempotency=idem,
                                 audit=audit, breakers=breakers, pending=pending)
    return service, arm


def test_the_timers_service_and_the_event_service_take_turns_on_one_resource():
    """A sweep (or a replayed dead letter) on the timers' service and a live delivery for the same
    drift in one worker both read it, both PATCHed and both audited ``remediated``."""
    res = b.storage()
    service, arm = _shared([res])
    events, timers = service(), service()
    timers.share_coordination(events)
    reading, go = threading.Event(), threading.Event()
    real_get, reads = arm.get_resource, []

    def get(*a, **k):
        reads.append(1)
        if len(reads) == 1:              # the live delivery's read waits
            reading.set()
            assert go.wait(10)
        return real_get(*a, **k)

    arm.get_resource = get
    t1 = threading.Thread(target=lambda: events.handle_event(b.write_event(res["id"])))
    t1.start()
    assert reading.wait(10)
    out: list = []
    t2 = threading.Thread(target=lambda: out.append(timers.reconcile(res["id"], None, sweep_id="sweep-1")))
    t2.start()
    t2.join(1.0)                        # shared stripes: the sweep waits for the delivery
    go.set()
    t1.join(10)
    t2.join(10)
    assert len(arm.writes()) == 1 and out[0].verdict == "compliant"


def test_the_process_sweeper_shares_the_event_services_coordination(monkeypatch):
    from guardrails import bootstrap

    shared = []
    events = SimpleService()
    sweeper = type("S", (), {"service": SimpleService(shared)})()
    monkeypatch.setattr(bootstrap, "_sweeper", None)
    monkeypatch.setattr(bootstrap, "get_service", lambda: events)
    monkeypatch.setattr(bootstrap, "build_sweeper", lambda settings: sweeper)
    monkeypatch.setattr(bootstrap.Settings, "from_env", classmethod(lambda cls, env=None: events.settings))
    assert bootstrap.get_sweeper() is sweeper and shared == [events]


class SimpleService:
    def __init__(self, shared=None):
        self.settings = Settings()
        self._shared = shared

    def share_coordination(self, other):
        self._shared.append(other)


def test_a_delivery_waits_for_another_resources_lock_only_within_its_budget():
    """64 stripes are shared by unrelated resources and a holder may poll a long-running fix: a
    delivery waited on its stripe with no limit, past its budget and Event Grid's 30 s."""
    from guardrails.service import DeliveryFailed

    first = b.storage()
    svc_factory, arm = _shared([first], time_budget_seconds=1.0)
    svc = svc_factory()
    stripe = svc._resource_lock(first["id"])
    other_id = next(i for i in (first["id"] + f"x{n}" for n in range(10_000)) if svc._resource_lock(i) is stripe)
    other = {**b.storage(), "id": other_id, "name": other_id.rsplit("/", 1)[-1]}
    arm.resources[other_id.lower()] = other
    held, done = threading.Event(), threading.Event()

    def hold():
        with stripe:
            held.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    try:
        with pytest.raises(DeliveryFailed):
            svc.handle_event(b.write_event(other_id))
    finally:
        done.set()
        t.join(10)
    (row,) = [r for r in svc.audit.rows if r.resource_id.lower() == other_id.lower()]
    assert (row.verdict, row.reason) == ("failed", "busy") and arm.writes() == []
    assert svc.handle_event(b.write_event(other_id)).verdict == "remediated"     # the retry decides
