"""Review s23 (concurrency) of the worker's process-wide memories.

1. ``PolicyCache`` reloads are single-flight: a delivery that finds the set expired while another
   is reading the table waits for that read and gets its outcome (the set, or its error) instead
   of reading again; a load that started earlier never replaces a set installed from a later one
   (an admin's switch to ``audit`` undone for up to the TTL).
2. ``TableEscalationStore`` keeps a bounded memory of the states it wrote (oldest first), an entry
   going once its window has passed; a dropped entry costs a read, never a different decision.
3. ``GraphGroupResolver`` keeps a bounded membership cache whose expired answers go.
4. ``logs`` has no context setter without a reset (``bind`` leaked into the next invocation on a
   reused pool thread).

The interleavings are forced with events; nothing here depends on how fast anything runs.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from guardrails import logs
from guardrails.adapters.authorization import GraphGroupResolver
from guardrails.adapters.escalations import TableEscalationStore
from guardrails.adapters.tables import resource_partition
from guardrails.errors import PolicyUnreadable
from guardrails.model.policy import FlipFlop
from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory
from guardrails.sync import metadata_dirs

HANG_GUARD = 20.0      # seconds: only ever reached when the code under test deadlocks


# ---- 1. PolicyCache -------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _documents(mode: str | None = None) -> list:
    docs = [(p.source, p.to_document()) for p in load_directory(*metadata_dirs())]
    if mode is not None:
        docs = copy.deepcopy(docs)
        for _src, d in docs:
            if d["id"] == "storage-private":
                d["mode"] = mode
    return docs


def storage_mode(compiled) -> str:
    return {p.id: p.mode for p in compiled.policies}["storage-private"]


class GatedRepo:
    """The policy table: a read made by thread ``A`` takes the table as it is, then stops until
    ``go``; every read is counted, and a read by any other thread sets ``other_read``."""

    def __init__(self, docs) -> None:
        self.docs, self.reads = docs, 0
        self.a_read, self.go, self.other_read = threading.Event(), threading.Event(), threading.Event()

    def list_documents(self):
        self.reads += 1
        snap = self.docs
        if threading.current_thread().name == "A":
            self.a_read.set()
            assert self.go.wait(HANG_GUARD)
        else:
            self.other_read.set()
        return snap


def _blocked_waiting(thread: threading.Thread) -> bool:
    """Whether ``thread`` is parked in a ``threading`` wait (an Event, a Condition)."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_code.co_filename == threading.__file__:
            return True
        frame = frame.f_back
    return False


def _until(condition) -> None:
    done = threading.Event()
    for _ in range(int(HANG_GUARD / 0.005)):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError("the interleaving never came about")


def test_a_delivery_finding_the_set_expired_during_a_reload_waits_for_it_and_never_regresses():
    # GIVEN a warm worker whose policy set has expired, and a reload (A) that read the table
    repo = GatedRepo(_documents())
    clock = Clock()
    cache = PolicyCache(repo, ttl_seconds=30, clock=clock)
    cache.get()
    clock.t = 31.0
    out: dict = {}
    a = threading.Thread(name="A", target=lambda: out.setdefault("A", cache.get()))
    a.start()
    assert repo.a_read.wait(HANG_GUARD)
    # WHEN the admin switches the policy to audit while A's read is on its way, and another
    # delivery (B) needs the policies
    repo.docs = _documents("audit")
    clock.t = 32.0
    b = threading.Thread(name="B", target=lambda: out.setdefault("B", cache.get()))
    b.start()
    _until(lambda: repo.other_read.is_set() or not b.is_alive() or _blocked_waiting(b))
    repo.go.set()
    a.join(HANG_GUARD)
    b.join(HANG_GUARD)
    after = cache.get()                              # the next delivery, inside the TTL
    # THEN B made no read of its own: it got A's set, and nothing served later is older than it
    assert repo.reads == 2 and cache.loads == 2
    assert out["B"] is out["A"]
    assert storage_mode(after) == storage_mode(out["B"])
    # and once the TTL has passed, the admin's switch is in force
    clock.t = 31.0 + 30.0
    assert storage_mode(cache.get()) == "audit"


def test_a_load_started_before_invalidate_never_replaces_the_set_loaded_after_it():
    # GIVEN a reload (A) that read the table before the admin's change
    repo = GatedRepo(_documents())
    cache = PolicyCache(repo, ttl_seconds=30, clock=Clock())
    out: dict = {}
    a = threading.Thread(name="A", target=lambda: out.setdefault("A", cache.get()))
    a.start()
    assert repo.a_read.wait(HANG_GUARD)
    # WHEN the change lands, the cache is invalidated and a delivery loads the new set
    repo.docs = _documents("audit")
    cache.invalidate()
    assert storage_mode(cache.get()) == "audit"
    repo.go.set()                                    # A's older read completes last
    a.join(HANG_GUARD)
    # THEN the newer set stays in force
    assert storage_mode(out["A"]) == "enforce"
    assert storage_mode(cache.get()) == "audit"


class FailingRepo(GatedRepo):
    """``GatedRepo`` whose read fails (``PolicyUnreadable``, as the table's adapter raises for a
    set still loading or a missing table) while ``docs`` is None."""

    def list_documents(self):
        snap = super().list_documents()
        if snap is None:
            raise PolicyUnreadable("policy table GuardrailsPolicies holds a policy set that `metadata sync` "
                                   "is still loading")
        return snap


def test_a_delivery_waiting_on_a_reload_that_fails_gets_its_error_not_the_expired_set():
    # the documented behaviour holds for every caller: a policy table that cannot be read as a
    # whole means no decision (PolicyUnreadable), never a decision on the expired set (a row that
    # does not validate no longer fails a warm worker's reload: it keeps its whole last good set)
    docs = _documents()
    repo = FailingRepo(docs)
    clock = Clock()
    cache = PolicyCache(repo, ttl_seconds=30, clock=clock)
    cache.get()
    clock.t = 31.0
    repo.docs = None
    errors: dict = {}

    def run(name):
        try:
            cache.get()
        except PolicyUnreadable as exc:
            errors[name] = exc

    a = threading.Thread(name="A", target=run, args=("A",))
    a.start()
    assert repo.a_read.wait(HANG_GUARD)
    b = threading.Thread(name="B", target=run, args=("B",))
    b.start()
    _until(lambda: repo.other_read.is_set() or not b.is_alive() or _blocked_waiting(b))
    repo.go.set()
    a.join(HANG_GUARD)
    b.join(HANG_GUARD)
    assert set(errors) == {"A", "B"}
    # the set is still expired: the next delivery reads again (and decides once the row is fixed)
    repo.docs = docs
    reads = repo.reads
    cache.get()
    assert repo.reads == reads + 1


# ---- 2. TableEscalationStore ----------------------------------------------------------------------
class Entity(dict):
    def __init__(self, data, etag):
        super().__init__(data)
        self.metadata = {"etag": etag}


class FakeTable:
    """Table Storage's conditional semantics for one table, with its calls counted."""

    def __init__(self) -> None:
        self.rows: dict = {}
        self.calls = {"create": 0, "get": 0, "update": 0}
        self._etags = itertools.count(1)

    def create_entity(self, entity, **_kw):
        self.calls["create"] += 1
        key = (entity["PartitionKey"], entity["RowKey"])
        if key in self.rows:
            raise ResourceExistsError("exists")
        etag = f"W/{next(self._etags)}"
        self.rows[key] = (dict(entity), etag)
        return {"etag": etag}

    def get_entity(self, pk, rk):
        self.calls["get"] += 1
        if (pk, rk) not in self.rows:
            raise ResourceNotFoundError("missing")
        data, etag = self.rows[(pk, rk)]
        return Entity(data, etag)

    def update_entity(self, entity, *, etag, match_condition, **_kw):
        self.calls["update"] += 1
        key = (entity["PartitionKey"], entity["RowKey"])
        if key not in self.rows:
            raise ResourceNotFoundError("missing")
        if self.rows[key][1] != etag:
            raise ResourceModifiedError("etag")
        new = f"W/{next(self._etags)}"
        self.rows[key] = (dict(entity), new)
        return {"etag": new}


def _store(table, now):
    return TableEscalationStore(SimpleNamespace(escalations_name="E", table=lambda _n: table), clock=lambda: now[0])


def _rid(i) -> str:
    return f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st{i}"


RULE = FlipFlop(max_reverts=3, window_minutes=60)
INTENT = json.dumps({"changes": [{"property": "properties.x", "before": "x" * 1500, "after": "Disabled"}]})


def test_the_escalation_memory_is_bounded_however_many_resources_are_reverted():
    store = _store(FakeTable(), [datetime(2026, 1, 1, tzinfo=timezone.utc)])
    for i in range(3000):
        store.attempt(_rid(i), {"object_id": f"user-{i}"}, rule=RULE, event=f"evt-{i}", intent=INTENT)
    assert len(store._known) <= 1024
    assert resource_partition(_rid(2999)) in store._known       # the latest are the ones kept
    assert resource_partition(_rid(0)) not in store._known


def test_an_escalation_state_whose_window_has_passed_is_not_kept():
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    store = _store(FakeTable(), now)
    store.attempt(_rid(1), {"object_id": "a"}, rule=RULE, event="e1")
    now[0] += timedelta(minutes=61)
    store.attempt(_rid(2), {"object_id": "a"}, rule=RULE, event="e2")
    assert list(store._known) == [resource_partition(_rid(2))]


def test_a_dropped_escalation_state_costs_a_read_never_a_different_decision():
    # GIVEN a resource reverted twice by this worker, then moved on by another worker, then
    # pushed out of this worker's memory by a thousand other resources
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    table = FakeTable()
    w1, w2 = _store(table, now), _store(table, now)
    decisions = [w1.attempt(_rid("x"), {"object_id": "pipe"}, rule=RULE, event=e).allowed for e in ("e1", "e2")]
    decisions.append(w2.attempt(_rid("x"), {"object_id": "pipe"}, rule=RULE, event="e3").allowed)
    for i in range(1100):
        w1.attempt(_rid(i), None, rule=RULE, event=f"other-{i}")
    assert resource_partition(_rid("x")) not in w1._known
    # WHEN the pipeline flips it again
    gets = table.calls["get"]
    decision = w1.attempt(_rid("x"), {"object_id": "pipe"}, rule=RULE, event="e4")
    # THEN the fourth revert in the window escalates, as it would have with the memory intact
    assert decisions == [True, True, True] and not decision.allowed and decision.escalated_now
    assert table.calls["get"] == gets + 1
    # and an escalated resource stays escalated once its window (and its memory) has passed
    now[0] += timedelta(minutes=61)
    assert w1.attempt(_rid("x"), {"object_id": "pipe"}, rule=RULE, event="e5").allowed is False
    # a withdrawal made from memory is still conditional and correct
    w1.attempt(_rid("y"), None, rule=RULE, event="y1")
    w1.withdraw(_rid("y"), "y1")
    assert w1.status(_rid("y"))["times"] == []


# ---- 3. GraphGroupResolver ------------------------------------------------------------------------
class Cred:
    def get_token(self, *a, **k):
        return SimpleNamespace(token="t", expires_on=2**40)


def _resolver(clock, members=()):
    g = GraphGroupResolver(Cred(), endpoint="https://graph.invalid", clock=lambda: clock[0])

    def send(request, **_kw):
        principal = request.url.split("/directoryObjects/")[1].split("/")[0]
        if principal not in members:                        # not a member (a 404 is transient now)
            return SimpleNamespace(status_code=200, json=lambda: {"value": []})
        return SimpleNamespace(status_code=200, json=lambda: {"value": ["group-1"]})
    g._client = SimpleNamespace(send_request=send)
    return g


def test_expired_membership_answers_are_dropped():
    clock = [0.0]
    g = _resolver(clock)
    for i in range(50):
        g.is_member(f"principal-{i}", "group-1")
        clock[0] += 301.0                                    # every earlier answer is past its TTL
    assert len(g._cache) == 1


def test_the_membership_cache_is_bounded():
    clock = [0.0]
    g = _resolver(clock)
    for i in range(10_000):
        g.is_member(f"principal-{i}", "group-1")            # all inside the TTL
    assert len(g._cache) <= 4096
    assert ("principal-9999", "group-1") in g._cache


def test_a_dropped_membership_answer_is_asked_again_and_answered_the_same():
    clock = [0.0]
    g = _resolver(clock, members={"alice"})
    assert g.is_member("alice", "group-1") and not g.is_member("bob", "group-1")
    assert g.is_member("alice", "group-1") and g.calls == 2         # cached
    for i in range(5000):
        g.is_member(f"principal-{i}", "group-1")
    calls = g.calls
    assert g.is_member("alice", "group-1") and not g.is_member("bob", "group-1")
    assert g.calls == calls + 2


# ---- 4. logs --------------------------------------------------------------------------------------
class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list = []

    def emit(self, record):
        self.lines.append(json.loads(record.getMessage()))


@pytest.fixture
def captured():
    log = logging.getLogger("guardrails.review_conc_s23")
    log.setLevel(logging.INFO)
    cap = Capture()
    log.addHandler(cap)
    yield log, cap
    log.removeHandler(cap)


def test_no_log_context_outlives_its_invocation_on_a_reused_pool_thread(captured):
    log, cap = captured
    # the only way to set context resets it: no ``bind`` that would leak into the next invocation
    assert not hasattr(logs, "bind")
    with ThreadPoolExecutor(max_workers=1) as pool:            # the worker's sync pool, one thread
        def invocation():
            with logs.bound(event_id="evt-1"):
                logs.emit(log, logging.INFO, "inside")
        pool.submit(invocation).result()
        pool.submit(lambda: logs.emit(log, logging.INFO, "next")).result()
    assert cap.lines[0]["event_id"] == "evt-1" and "event_id" not in cap.lines[1]
