"""Safety-rails review (session 33): circuit breaker, flip-flop escalation and ARM pacing, on
Azurite + the HTTPS emulator with the real SDK clients (pure functions for the rate limiter)."""

from __future__ import annotations

import pytest

from tests import builders as b
from tests.integration.test_role_guardrail import _exists, _harness

pytestmark = pytest.mark.integration

CAROL = "ca401000-0000-4000-8000-0000000000c1"
ONE_PERMIT = "breaker: {max_actions: 1, window_seconds: 600}\nflip_flop: {max_reverts: 50, window_minutes: 60}\n"


def _owner(principal: str, n: int) -> dict:
    return b.role_assignment("Owner", principal, name=f"0c0c0000-0000-4000-8000-{n:012d}")


def test_a_role_removal_arm_refuses_gives_its_breaker_permit_back(harness, tmp_path):
    """README (Circuit breaker): "The breaker counts fixes made: a permit whose fix is then not
    made (ARM refused or never answered the write ...) is given back ... so a write the provider
    refuses cannot open the breaker for a whole subscription". The role guardrail's removal takes
    its permit (``role_guardrail._remove`` -> ``rails.breaker_permits`` without ``took``) and never
    gives it back when the DELETE is refused (a lock, a deny assignment): with a breaker of 1, one
    refused removal leaves the next, unrelated Owner grant in place as ``circuit_open``.
    Expected: the refused removal's permit is released; CAROL's Owner grant is removed."""
    bob, carol = _owner(b.BOB, 1), _owner(CAROL, 2)
    h = _harness(harness, tmp_path, [bob, carol], extra=ONE_PERMIT)
    h.emu.add_fault(method="DELETE", path_regex=bob["name"], status=409, code="ScopeLocked",
                    message="The scope is locked.")
    first = h.deliver(b.role_event(bob))
    assert first.verdict == "failed" and _exists(h, bob), first.message
    row = h.deliver(b.role_event(carol))
    assert (row.verdict, row.reason) == ("remediated", ""), (row.verdict, row.reason, row.message)
    assert not _exists(h, carol)


def test_a_role_removal_that_found_the_assignment_gone_gives_its_permit_back(harness, tmp_path):
    """README (Circuit breaker): a permit whose fix is then not made ("the resource was gone") is
    given back. The role guardrail's DELETE answered 404 (someone removed the assignment between
    the guardrail's read and its DELETE: ``delete_assignment`` -> False, "already gone") keeps the
    permit it took for a removal it never made, so with a breaker of 1 the next, unrelated Owner
    grant stays as ``circuit_open``. Expected: the permit is given back, CAROL's grant removed."""
    bob, carol = _owner(b.BOB, 3), _owner(CAROL, 4)
    h = _harness(harness, tmp_path, [bob, carol], extra=ONE_PERMIT)
    h.emu.add_fault(method="GET", path_regex=bob["name"], status=None, times=1)      # the guardrail's read passes
    h.emu.add_fault(method="DELETE", path_regex=bob["name"], status=404, times=1, code="RoleAssignmentNotFound")
    h.emu.add_fault(method="GET", path_regex=bob["name"], status=404, times=1, code="RoleAssignmentNotFound")
    first = h.deliver(b.role_event(bob))
    assert first.verdict == "remediated" and "already gone" in first.violations[0].message, first.violations
    row = h.deliver(b.role_event(carol))
    assert (row.verdict, row.reason) == ("remediated", ""), (row.verdict, row.reason, row.message)
    assert not _exists(h, carol)


def _storage_policy_dir(tmp_path, **kw):
    d = tmp_path / "extra"
    d.mkdir(exist_ok=True)
    (d / "storage-private.yaml").write_text(b.storage_private_policy(**kw))
    return d


def test_a_long_running_fix_that_ends_failed_gives_its_breaker_permit_back(harness, tmp_path):
    """README (Circuit breaker): "The breaker counts fixes made: a permit whose fix is then not
    made (ARM refused ...) is given back". A fix still running at the end of its delivery's budget
    (``requested``) whose operation then ends ``Failed`` (ARM's ``ResourceWriteFailure`` with the
    write's correlation id; the read-back shows the old value) is audited ``failed`` by
    ``pending_confirm._judge_pending`` but its permit (keyed by the drift event, kept in the
    pending record as ``event_id``) is never released: with a breaker of 1, the next account's
    drift is left in place as ``circuit_open`` although no fix was made in the window.
    Expected: the failed long-running fix's permit is given back; the next account is fixed."""
    import time

    first, other = b.storage(name="stlroperm", blob=False), b.storage(name="stlroother", blob=False)
    h = harness([first, other], extra_metadata=[_storage_policy_dir(tmp_path, max_actions=1)],
                env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"}, lro_seconds=2.0)
    h.emu.fail_operations("stlroperm$", code="StorageAccountOperationInProgress", times=1)
    assert h.deliver(b.write_event(first["id"])).verdict == "requested"
    time.sleep(1.0)
    (failed,) = [h.deliver(e) for e in h.emu.drain_events()]
    assert (failed.verdict, failed.reason) == ("failed", "not_confirmed")
    assert h.resource(first["id"])["properties"]["publicNetworkAccess"] == "Enabled"     # no fix was made
    row = h.deliver(b.write_event(other["id"]))
    assert row.reason != "circuit_open" and row.verdict in ("remediated", "requested"), (row.verdict, row.reason)


# ---- controls: what was checked and holds -------------------------------------------------------
def test_control_concurrent_workers_never_pass_the_breaker_limit_together(azurite):
    """Control: four workers (store instances) with warm caches, 40 concurrent permits asked for
    distinct events against a limit of 10 (4 taken before): exactly 6 more pass; the same event
    asked on several workers at once counts once."""
    import threading
    import uuid

    from azure.data.tables import TableServiceClient

    from guardrails.adapters.remediation_tables import TableBreakerStore
    from guardrails.adapters.tables import Tables

    service = TableServiceClient.from_connection_string(azurite.connection_string)
    tables = Tables(service, "Tbrk" + uuid.uuid4().hex[:8])
    tables.ensure()
    stores = [TableBreakerStore(tables) for _ in range(4)]
    for n, s in enumerate(stores):
        assert s.try_acquire("p", b.SUB, max_actions=10, window_seconds=600, key=f"warm{n}")
    got: list[bool] = []
    lock = threading.Lock()

    def ask(i: int, key: str, limit: int) -> None:
        ok = stores[i % 4].try_acquire("p" if limit == 10 else "q", b.SUB, max_actions=limit, window_seconds=600,
                                       key=key)
        with lock:
            got.append(ok)

    threads = [threading.Thread(target=ask, args=(i, f"e{i}", 10)) for i in range(40)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(got) == 6
    got.clear()
    threads = [threading.Thread(target=ask, args=(i, f"k{i // 4}", 100)) for i in range(40)]   # 10 events x 4 workers
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(got)
    import json
    entity = tables.table(tables.breakers_name).get_entity(*TableBreakerStore._keys("q", b.SUB))
    assert sum(c for _f, _l, c in json.loads(entity["buckets"])) == 10


def test_control_a_breaker_store_that_cannot_be_written_fails_closed_and_the_event_is_retried(harness):
    """Control (README "Table Storage down"): the breaker's table gone, the delivery makes no fix,
    raises ``StoreError`` (nothing acknowledged, the claim released) and Event Grid's redelivery
    fixes the resource once the table is back."""
    from guardrails.errors import StoreError
    from guardrails.simulate import to_function_event
    from guardrails.triggers.resource_events import resource_events

    res = b.storage(name="stbrkdown", blob=False)
    h = harness([res])
    h.tables.service.delete_table(h.tables.breakers_name)
    event = b.write_event(res["id"])
    with pytest.raises(StoreError):
        resource_events(to_function_event(event))
    assert h.writes() == [] and h.recorder.rows == []
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    import time
    for _ in range(50):               # Azurite keeps a deleted table's name busy for a moment
        try:
            h.tables.service.create_table(h.tables.breakers_name)
            break
        except Exception:
            time.sleep(0.1)
    assert h.deliver(event).verdict == "remediated"


def test_control_the_rate_limiter_never_exceeds_the_bucket_and_holds_after_a_429():
    """Control (pure): a write limiter of ARM's size grants at most 200 + 10/s x t tokens in any
    interval, and after ``penalize`` (a 429's Retry-After) none before the Retry-After passed."""
    from guardrails.ratelimit import ARM_WRITE_BURST, ARM_WRITES_PER_SECOND, FakeClock, RateLimiter

    clock = FakeClock()
    lim = RateLimiter(ARM_WRITES_PER_SECOND, ARM_WRITE_BURST, clock=clock, sleep=clock.sleep)
    start = clock()
    for _ in range(400):
        lim.acquire(b.SUB)
    assert clock() - start >= (400 - 200) / 10.0 - 1e-6
    lim.penalize(b.SUB, 7)
    at = clock()
    lim.acquire(b.SUB.upper())        # one bucket per subscription, whatever its case
    assert clock() - at >= 7.0


def test_the_owner_told_of_an_open_breaker_is_the_policy_contact_and_hears_which_rule(harness, tmp_path, caplog):
    """README (Circuit breaker): the action that would exceed the breaker "is not taken: the row is
    `dry_run` with reason `circuit_open`, it notifies the owner (the violation stays in place)";
    the owner is the resource's owner tag, else the policy's ``contact``. ``ResourceGuardrail.decide``
    builds the notice only from records whose outcome is ``violation``/``escalated``
    (resource_guardrail.py, ``told`` / ``rules=``), so for a breaker-held fix (outcome ``dry_run``)
    the ``guardrail_violation_notify`` line names no rule (``rules: []``) and, on a resource with no
    owner tag, ignores the policy's contact and the policy's ``notify_tag``: owner ``unknown``.
    Expected: the notice names the policy contact and the held rule."""
    import json as _json

    d = tmp_path / "extra"
    d.mkdir()
    text = b.storage_private_policy(max_actions=1).replace("mode: enforce\n",
                                                          "mode: enforce\ncontact: storage-team@contoso.com\n")
    (d / "storage-private.yaml").write_text(text)
    first, held = b.storage(name="stcontact1", blob=False), b.storage(name="stcontact2", blob=False, tags={})
    h = harness([first, held], extra_metadata=[d])
    assert h.deliver(b.write_event(first["id"])).verdict == "remediated"
    caplog.clear()
    with caplog.at_level("WARNING", logger="guardrails"):
        row = h.deliver(b.write_event(held["id"]))
    assert (row.verdict, row.reason, row.notify) == ("dry_run", "circuit_open", True)
    notices = [_json.loads(r.getMessage()) for r in caplog.records if "guardrail_violation_notify" in r.getMessage()]
    assert len(notices) == 1, notices
    assert notices[0]["owner"] == "storage-team@contoso.com", notices[0]
    assert notices[0]["rules"] == ["storage-private@5/public-network-access-disabled"], notices[0]


def test_a_role_removal_whose_delete_answer_was_lost_keeps_its_permit(harness, tmp_path):
    """Fixer's check (defect 2's other side): the DELETE's first answer is lost (the emulator
    removes the assignment after the client gave up) and its retry finds the assignment gone.
    That removal may have been this one's: ``delete_assignment`` says so (None, not False) and the
    permit stays, so with a breaker of 1 the next Owner grant is held (``circuit_open``)."""
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, _policy_dir

    bob, carol = _owner(b.BOB, 5), _owner(CAROL, 6)
    h = harness([], world={"roleAssignments": [BREAK_GLASS_OWNER, bob, carol], "roleDefinitions": [],
                           "directory": {"groups": {b.DS_GROUP: [b.ALICE]}}},
                extra_metadata=[_policy_dir(tmp_path, "enforce", ONE_PERMIT)],
                env={"GUARDRAILS_ARM_TIMEOUT_SECONDS": "1.0"})
    h.emu.add_fault(method="DELETE", path_regex=bob["name"], delay_ms=1500, times=1)   # applied, answer lost
    h.emu.add_fault(method="DELETE", path_regex=bob["name"], delay_ms=800, times=1)    # the retry: after it
    first = h.deliver(b.role_event(bob))
    assert first.verdict == "remediated" and "already gone" in first.violations[0].message, first.violations
    assert not _exists(h, bob)
    row = h.deliver(b.role_event(carol))
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open"), (row.verdict, row.reason, row.message)
    assert _exists(h, carol)
