"""Delivery semantics under at-least-once, concurrent, faulty delivery. Faults are injected
through the emulator; every test asserts the final world and the audit rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from guardrails.errors import IdempotencyError, StoreError
from guardrails.service import DeliveryFailed
from guardrails.simulate import to_function_event
from guardrails.triggers.resource_events import resource_events
from tests import builders as b

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _deliver_raw(event):
    """Deliver as the Functions host does; return the exception the function raised, if any."""
    try:
        resource_events(to_function_event(event))
    except Exception as exc:  # noqa: BLE001 - the test inspects what the host would see
        return exc
    return None


# ---- concurrent duplicates -------------------------------------------------------------------
def test_two_threads_delivering_one_event_act_once(harness):
    res = b.storage()
    h = harness([res])
    h.emu.add_fault(method="GET", path_regex="stmlprod", delay_ms=600, times=1)   # first worker is slow
    event = b.write_event(res["id"])
    errors = [None, None]

    def run(i):
        errors[i] = _deliver_raw(event)

    t1 = threading.Thread(target=run, args=(0,))
    t1.start()
    time.sleep(0.25)                        # the first holds the idempotency record now
    t2 = threading.Thread(target=run, args=(1,))
    t2.start()
    t1.join(10)
    t2.join(10)
    assert errors[0] is None
    assert isinstance(errors[1], IdempotencyError)      # raised: Event Grid redelivers later
    assert [r.verdict for r in h.recorder.rows] == ["remediated"]   # never audited as done
    # Event Grid's retry of the second delivery
    assert _deliver_raw(event) is None
    assert [r.verdict for r in h.recorder.rows] == ["remediated", "duplicate"]
    assert len(h.writes()) == 1
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def _worker(h, event_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAILS_")}
    env.update(h.env)
    return subprocess.Popen([sys.executable, "-m", "tests.integration.deliver_worker", str(event_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(h, event, tmp_path, reached: Callable[[], bool]) -> None:
    """Deliver ``event`` in a worker process and kill it once ``reached()`` (at most 30 s): a
    killed process releases nothing, as when the host dies. The emulator's faults are cleared
    after the kill: one the dead attempt did not reach in time (a read-back meant to hang, when the
    kill came first) is not the next attempt's."""
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    proc = _worker(h, path)
    deadline = time.monotonic() + 30
    while not reached() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=10)
    h.emu.clear_faults()


def test_two_processes_delivering_one_event_act_once(harness, tmp_path):
    res = b.workspace()
    h = harness([res])
    h.emu.add_fault(method="GET", path_regex="mlw-prod", delay_ms=400, times=2)
    event = b.write_event(res["id"])
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    procs = [_worker(h, path) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 3]), outs          # one acted; the other saw it done or in progress
    assert len(h.writes()) == 1
    stored = h.stored_rows()
    assert sorted(r.verdict for r in stored) in (["duplicate", "remediated"], ["remediated"])
    if codes == [0, 3]:                              # the redelivery of the one told to retry
        assert _deliver_raw(event) is None
        assert sorted(r.verdict for r in h.stored_rows()) == ["duplicate", "remediated"]
    assert len(h.writes()) == 1
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_worker_killed_mid_delivery_expires_and_a_retry_completes(harness, tmp_path):
    res = b.storage()
    h = harness([res], env={"GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS": "2"})
    h.emu.add_fault(method="GET", path_regex="stmlprod", delay_ms=20_000, times=1)   # hangs on its read
    event = b.write_event(res["id"])
    # the worker dies holding the record
    _kill_when(h, event, tmp_path, lambda: any(q["method"] == "GET" for q in h.emu.requests))
    assert isinstance(_deliver_raw(event), IdempotencyError)     # still held: retry later
    time.sleep(2.2)                                  # in-progress expiry passes
    assert _deliver_raw(event) is None               # exactly one taker completes it
    assert [r.verdict for r in h.recorder.rows] == ["remediated"]
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert _deliver_raw(event) is None
    assert [r.verdict for r in h.recorder.rows] == ["remediated", "duplicate"]


def _died_publishing(harness, tmp_path):
    """A worker that fixed a resource and audited it, then died while its decision event was in
    flight: ``(h, event, the dead attempt's row)``, nothing on the topic, the in-progress record
    expiring after 2 s."""
    res = b.storage()
    h = harness([res], decision_topic=True,
                env={"GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS": "2", "GUARDRAILS_DECISION_TOPIC_TIMEOUT_SECONDS": "25"})
    h.emu.add_fault(method="POST", path_regex="/topics/decisions/", delay_ms=15_000, status=503, times=1)
    event = b.write_event(res["id"])
    # dies inside the publish: nothing reached the topic (killed once its POST is held by the
    # topic, not merely once its row is stored: a loaded machine may not have sent it yet, and the
    # retry's own publish would then meet the one fault)
    _kill_when(h, event, tmp_path, lambda: any(q["method"] == "POST" and "/topics/decisions/" in q["path"]
                                               for q in h.emu.requests)
               and [r for r in h.stored_rows() if r.verdict == "remediated"])
    (first,) = [r for r in h.stored_rows() if r.verdict == "remediated"]
    assert h.emu.published_events("decisions") == []
    return h, event, first


def test_a_decision_audited_by_a_worker_that_died_before_publishing_it_is_published_by_the_retry(harness, tmp_path):
    # GIVEN a worker that fixed a resource and audited it, then died while its decision event was in flight
    h, event, first = _died_publishing(harness, tmp_path)
    # WHEN Event Grid redelivers after the in-progress record expired
    time.sleep(2.2)
    assert _deliver_raw(event) is None
    # THEN the retry, finding the resource already fixed, decides "compliant" and publishes nothing of
    # its own, but the dead worker's decision goes out, under its own id
    assert [r.verdict for r in h.recorder.rows] == ["compliant"]
    (published,) = h.emu.published_events("decisions")
    assert published["id"] == first.delivery_id and published["type"] == "Guardrails.Decision.Remediated"
    assert published["data"]["resource_id"] == first.resource_id


def test_a_fix_whose_worker_died_before_its_audit_row_is_recorded_as_remediated_by_the_retry(harness, tmp_path):
    # GIVEN a worker that reverted a public storage account, then hung on the read-back and was killed
    res = b.storage()
    h = harness([res], env={"GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS": "2"})
    h.emu.add_fault(method="GET", path_regex="stmlprod", times=1)                   # the first read: as is
    h.emu.add_fault(method="GET", path_regex="stmlprod", delay_ms=15_000, times=1)  # the read-back hangs
    event = b.write_event(res["id"])
    # after the PATCH, before any audit row
    _kill_when(h, event, tmp_path, lambda: h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled")
    assert [q["method"] for q in h.writes()] == ["PATCH"]
    assert h.stored_rows() == []
    # WHEN Event Grid redelivers after the in-progress record expired
    time.sleep(2.2)
    assert _deliver_raw(event) is None
    # THEN the retry, finding the resource fixed, records the violation and its revert, not a bare
    # "compliant": the public setting and the value it was reverted to are on the audit table
    (row,) = h.stored_rows()
    assert row.verdict == "remediated"
    assert {v.property: (v.before, v.after, v.outcome) for v in row.violations} == {
        "properties.publicNetworkAccess": ("Enabled", "Disabled", "remediated"),
        "properties.allowBlobPublicAccess": (True, False, "remediated")}
    assert all("earlier delivery" in v.message for v in row.violations)
    assert row.actor.upn == "alice@contoso.com"      # who made the change that was reverted
    assert len(h.writes()) == 1                      # nothing written again
    # AND a later redelivery is a duplicate
    assert _deliver_raw(event) is None
    assert [r.verdict for r in h.recorder.rows] == ["remediated", "duplicate"]


def test_a_role_assignment_deleted_by_a_worker_that_died_before_its_audit_row_is_recorded_by_the_retry(
        harness, tmp_path):
    # GIVEN a worker that deleted an Owner grant at subscription scope, then hung on the read-back
    # and was killed: the deletion leaves nothing to read back, only a 404
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, POLICY_VERSION, _policy_dir

    grant = b.role_assignment("Owner", b.BOB, name="0b0b0b0b-0000-4000-8000-00000000dead")
    world = {"roleAssignments": [BREAK_GLASS_OWNER, grant], "roleDefinitions": [],
             "directory": {"groups": {b.DS_GROUP: [b.ALICE]}}}
    h = harness([], world=world, extra_metadata=[_policy_dir(tmp_path)],
                env={"GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS": "2"})
    h.emu.add_fault(method="GET", path_regex="00000000dead", times=1)                   # the read: as is
    h.emu.add_fault(method="GET", path_regex="00000000dead", delay_ms=15_000, times=1)  # the read-back hangs
    event = b.role_event(grant)
    # after the DELETE, before any audit row
    _kill_when(h, event, tmp_path, lambda: h.emu.get_role_assignment(grant["id"]) is None)
    assert h.emu.get_role_assignment(grant["id"]) is None
    assert h.stored_rows() == []
    # WHEN Event Grid redelivers after the in-progress record expired
    time.sleep(2.2)
    assert _deliver_raw(event) is None
    # THEN the retry, finding the assignment gone, records the violation and its removal, not a bare
    # "resource_not_found": who held which role where is on the audit table
    (row,) = h.stored_rows()
    assert (row.verdict, row.reason) == ("remediated", "")
    (v,) = row.violations
    assert (v.rule, v.outcome) == ("privileged-at-subscription", "remediated")
    assert v.before["role_name"] == "Owner" and v.before["principal_id"] == b.BOB
    assert "earlier delivery" in v.message and row.policies == [f"rbac-least-privilege@{POLICY_VERSION}"]
    assert row.actor.upn == "alice@contoso.com"      # who granted it
    assert [q["method"] for q in h.arm_requests()].count("DELETE") == 1
    # AND a later redelivery is a duplicate
    assert _deliver_raw(event) is None
    assert [r.verdict for r in h.recorder.rows] == ["remediated", "duplicate"]


def test_an_ml_endpoint_fixed_by_a_worker_that_died_before_its_audit_row_is_recorded_by_the_retry(
        harness, tmp_path, caplog):
    # GIVEN a worker that PUT a sensitive endpoint to Entra auth and no public access (enforce
    # opted in), then hung on the read-back and was killed
    from guardrails.local.ml_emulator import online_endpoint
    from tests.integration.test_ml_guardrail import EP, WS, policy_dir

    ep = online_endpoint(WS, "fraud-scoring", auth_mode="Key", public_network_access="Enabled",
                         tags={"data_classification": "sensitive"})
    h = harness([ep], extra_metadata=[policy_dir(tmp_path, endpoint_action="enforce")],
                env={"GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS": "2"})
    h.emu.add_fault(method="GET", path_regex="onlineEndpoints/fraud-scoring$", times=1)                   # the read
    h.emu.add_fault(method="GET", path_regex="onlineEndpoints/fraud-scoring$", delay_ms=15_000, times=1)  # read-back
    event = b.write_event(ep["id"])
    # after the PUT, before any audit row
    _kill_when(h, event, tmp_path, lambda: h.resource(EP)["properties"]["authMode"] == "AADToken")
    assert [q["method"] for q in h.writes()] == ["PUT"] and h.stored_rows() == []
    # WHEN Event Grid redelivers after the in-progress record expired
    time.sleep(2.2)
    with caplog.at_level("WARNING", logger="guardrails"):
        assert _deliver_raw(event) is None
    # THEN the retry records both rules and their fix, not a bare "compliant", and tells the owner
    # as the dead attempt would have (its clients now need Entra tokens and a private path)
    (row,) = h.stored_rows()
    assert (row.verdict, row.notify) == ("remediated", True)
    assert [r for r in caplog.records if "guardrail_violation_notify" in r.getMessage()]
    assert {v.rule: (v.before, v.after, v.outcome) for v in row.violations} == {
        "endpoint-auth-mode": ("Key", "AADToken", "remediated"),
        "endpoint-public-access": ("Enabled", "Disabled", "remediated")}
    assert all("earlier delivery" in v.message for v in row.violations)
    assert len(h.writes()) == 1


def test_a_model_version_archived_by_a_worker_that_died_before_its_audit_row_is_recorded_by_the_retry(
        harness, tmp_path):
    from guardrails.local.ml_emulator import model_version
    from tests.integration.test_ml_guardrail import WS

    v = model_version(WS, "fraud-clf", 7, tags={"owner": "ds_team@contoso.com"})
    h = harness([v], env={"GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS": "2"})
    h.emu.add_fault(method="GET", path_regex="fraud-clf/versions/7$", times=1)                   # the read
    h.emu.add_fault(method="GET", path_regex="fraud-clf/versions/7$", delay_ms=15_000, times=1)  # read-back
    event = b.write_event(v["id"])
    _kill_when(h, event, tmp_path, lambda: h.resource(v["id"])["properties"].get("isArchived") is True)
    assert [q["method"] for q in h.writes()] == ["PUT"] and h.stored_rows() == []
    time.sleep(2.2)
    assert _deliver_raw(event) is None
    (row,) = h.stored_rows()
    assert (row.verdict, row.reason, row.notify) == ("remediated", "", True)     # not "already_archived"
    assert len(row.violations) == 3
    assert {(v.property, v.before, v.after, v.outcome) for v in row.violations} == {
        ("properties.isArchived", False, True, "remediated")}
    assert all("earlier delivery" in v.message for v in row.violations)


def test_an_owner_grant_with_a_long_non_ascii_condition_is_still_removed(harness, tmp_path):
    # the intent noted before the DELETE is a recovery aid: a condition near ARM's ~8 KB (every
    # non-ASCII character six as an escaped JSON string) must not stop the removal
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, _policy_dir

    condition = "@Resource[Microsoft.Storage/storageAccounts:name] StringEquals '" + "é" * 6000 + "'"
    grant = b.role_assignment("Owner", b.BOB, condition=condition)
    world = {"roleAssignments": [BREAK_GLASS_OWNER, grant], "roleDefinitions": [], "directory": {"groups": {}}}
    h = harness([], world=world, extra_metadata=[_policy_dir(tmp_path)])
    assert _deliver_raw(b.role_event(grant)) is None
    assert h.emu.get_role_assignment(grant["id"]) is None
    (row,) = h.stored_rows()
    assert row.verdict == "remediated"


def test_a_role_assignment_gone_before_any_attempt_acted_stays_resource_not_found(harness, tmp_path):
    # a takeover alone proves nothing: with no intent noted (the dead attempt never reached the
    # deletion), an assignment someone else removed is "resource_not_found", as on a first delivery
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, _policy_dir

    grant = b.role_assignment("Owner", b.BOB, name="0b0b0b0b-0000-4000-8000-0000000000ff")
    world = {"roleAssignments": [BREAK_GLASS_OWNER, grant], "roleDefinitions": [],
             "directory": {"groups": {}}}
    h = harness([], world=world, extra_metadata=[_policy_dir(tmp_path)],
                env={"GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS": "2"})
    h.emu.add_fault(method="GET", path_regex="0000000000ff", delay_ms=15_000, times=1)   # hangs on its read
    event = b.role_event(grant)
    _kill_when(h, event, tmp_path, lambda: any(q["method"] == "GET" for q in h.arm_requests()))
    h.emu.authz.delete_assignment(grant["id"], None, None)     # removed by someone else meanwhile
    time.sleep(2.2)
    assert _deliver_raw(event) is None
    (row,) = h.stored_rows()
    assert (row.verdict, row.reason, row.violations) == ("ignored", "resource_not_found", [])


# ---- throttling, transient faults, the time budget ------------------------------------------
def test_429_with_short_retry_after_is_retried_within_the_budget(harness):
    res = b.container_registry()
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "5"})
    h.emu.add_fault(method="PATCH", path_regex="acrmlprod", status=429, retry_after=1, times=1)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    assert [q["status"] for q in h.arm_requests("PATCH")] == [429, 200]
    assert h.resource(res["id"])["properties"]["adminUserEnabled"] is False


def test_429_whose_retry_after_overruns_the_budget_fails_fast_and_raises(harness):
    res = b.container_registry()
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "5"})
    h.emu.add_fault(method="PATCH", path_regex="acrmlprod", status=429, retry_after=60, times=1)
    event = b.write_event(res["id"])
    started = time.monotonic()
    err = _deliver_raw(event)
    assert time.monotonic() - started < 5
    assert isinstance(err, DeliveryFailed)
    (row,) = h.recorder.rows
    assert (row.verdict, row.reason) == ("failed", "throttled")
    assert h.resource(res["id"])["properties"]["adminUserEnabled"] is True
    # Event Grid redelivers later; the record was released so the retry acts
    assert _deliver_raw(event) is None
    assert h.recorder.rows[-1].verdict == "remediated"


def test_persistent_500_fails_and_raises(harness):
    res = b.workspace()
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "2"})
    h.emu.add_fault(method="GET", path_regex="mlw-prod", status=500)
    err = _deliver_raw(b.write_event(res["id"]))
    assert isinstance(err, DeliveryFailed)
    (row,) = h.recorder.rows
    assert (row.verdict, row.reason) == ("failed", "transient")
    assert len(h.arm_requests("GET")) >= 2              # retried with backoff while the budget allowed
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"


def test_long_running_fix_past_the_budget_is_requested_then_confirmed_by_its_write_event(harness):
    res = b.workspace()
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1.5"}, lro_seconds=2.5)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "requested" and row.violations[0].outcome == "requested"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"   # still running
    time.sleep(1.5)
    (confirm,) = h.deliver_emitted()             # the LRO finished: its own write event arrives
    assert confirm.verdict == "remediated"
    assert confirm.violations[0].outcome == "remediated" and "confirmed" in confirm.violations[0].message
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    # a later own write for the same resource is plain own_write again, with zero ARM calls
    h.emu.clear_requests()
    h.emu.put({**h.resource(res["id"])})
    again = h.deliver(b.write_event(res["id"], actor=b.claims(oid=b.GUARDRAIL_OID, upn=None, app_id=None)))
    assert (again.verdict, again.reason) == ("ignored", "own_write") and h.emu.requests == []


class _CountingPending:
    """Counts pending-fix lookups (the table read an own-write event may cost)."""

    def __init__(self, inner) -> None:
        self.inner, self.lookups = inner, 0

    def list(self, resource_id):
        self.lookups += 1
        return self.inner.list(resource_id)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_own_write_of_a_finished_fix_costs_no_lookup_but_another_worker_still_checks(harness):
    from guardrails import bootstrap

    res = b.storage()
    h = harness([res])
    h.service.pending = counting = _CountingPending(h.service.pending)
    assert h.deliver(b.write_event(res["id"])).verdict == "remediated"
    (patch,) = [q for q in h.emu.requests if q["method"] == "PATCH"]
    (own_event,) = h.emu.drain_events()
    # the fix's own event carries the correlation id the guardrail sent with its write
    assert own_event["data"]["correlationId"] == patch["correlation_id"]
    h.emu.clear_requests()
    own = h.deliver(own_event)
    assert (own.verdict, own.reason) == ("ignored", "own_write")
    assert counting.lookups == 0 and h.emu.requests == []
    # another worker cannot vouch for that write: it looks the pending fixes up (none) and ignores it
    other = bootstrap.build_service(h.settings)
    other.pending = other_counting = _CountingPending(other.pending)
    row = other.handle_event(own_event)
    assert (row.verdict, row.reason) == ("ignored", "own_write") and other_counting.lookups == 1


# ---- circuit breaker -------------------------------------------------------------------------
def test_breaker_trips_at_n_plus_one_under_concurrency_and_resets_by_command(harness, tmp_path):
    d = tmp_path / "extra"
    d.mkdir()
    (d / "storage-private.yaml").write_text("""
id: storage-private
version: 5
description: storage private, at most 2 fixes an hour per subscription
mode: enforce
selector: {resource_types: [Microsoft.Storage/storageAccounts]}
breaker: {max_actions: 2, window_seconds: 3600}
rules:
  - id: public-network-access-disabled
    property: properties.publicNetworkAccess
    expect: {equals: Disabled}
    action: {type: set-property, value: Disabled}
""")
    accounts = [b.storage(name=f"stacct{i}", blob=False) for i in range(4)]
    h = harness(accounts, extra_metadata=[d])
    threads = [threading.Thread(target=_deliver_raw, args=(b.write_event(a["id"]),)) for a in accounts[:3]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    verdicts = sorted(r.verdict for r in h.recorder.rows)
    assert verdicts == ["dry_run", "remediated", "remediated"]
    tripped = next(r for r in h.recorder.rows if r.verdict == "dry_run")
    assert tripped.reason == "circuit_open"
    fixed = [a for a in accounts[:3] if h.resource(a["id"])["properties"]["publicNetworkAccess"] == "Disabled"]
    assert len(fixed) == 2 and len(h.arm_requests("PATCH")) == 2
    # open until reset: the fourth account is only reported
    assert h.deliver(b.write_event(accounts[3]["id"])).reason == "circuit_open"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAILS_")}
    env.update(h.env)
    p = subprocess.run([sys.executable, "-m", "guardrails", "breaker", "reset", "storage-private", b.SUB],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["had_state"] is True
    row = h.deliver(b.write_event(accounts[3]["id"]))
    assert row.verdict == "remediated"
    assert h.resource(accounts[3]["id"])["properties"]["publicNetworkAccess"] == "Disabled"


# ---- Table Storage trouble -------------------------------------------------------------------
def test_table_storage_down_raises_nothing_is_lost_and_a_replay_completes(tmp_path):
    from guardrails.local.azurite import Azurite
    from tests.integration.conftest import Harness

    az = Azurite(location=str(tmp_path / "azurite")).start()
    res = b.storage()
    h = Harness(az, [res])
    try:
        first = b.write_event(res["id"])
        assert _deliver_raw(first) is None
        az.stop()                                     # Table Storage goes away mid-run
        second_res_event = b.write_event(res["id"])
        err = _deliver_raw(second_res_event)
        assert isinstance(err, StoreError)            # raised: Event Grid keeps the delivery
        az.start()                                    # back, with its data
        assert _deliver_raw(second_res_event) is None  # the replay completes
        stored = h.stored_rows()
        assert [r.event_id for r in stored] == [first["id"], second_res_event["id"]]
        assert [r.verdict for r in stored] == ["remediated", "compliant"]
    finally:
        h.close()
        az.stop()


# ---- bursts for one resource -----------------------------------------------------------------
def _at(event, seconds_ago: float):
    from datetime import datetime, timedelta, timezone
    t = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    event["eventTime"] = t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    return event


def test_a_queued_burst_for_one_resource_costs_one_fix_and_no_repeated_reads(harness):
    # GIVEN a deployment touched the account three times; the events queued for a few seconds
    res = b.storage()
    h = harness([res])
    burst = [_at(b.write_event(res["id"]), 6 - i) for i in range(3)]
    rows = [h.deliver(e) for e in burst]
    # THEN the first fixes it; the others are decided on the state read after that fix
    assert [r.verdict for r in rows] == ["remediated", "compliant", "compliant"]
    assert [q["method"] for q in h.arm_requests()] == ["GET", "PATCH", "GET"]


def test_an_event_newer_than_the_last_read_is_decided_on_a_fresh_read(harness):
    res = b.storage()
    h = harness([res])
    assert h.deliver(b.write_event(res["id"])).verdict == "remediated"
    # someone flips it again after our confirming read; its event is newer than that read
    live = h.resource(res["id"])
    h.emu.put({**live, "properties": {**live["properties"], "publicNetworkAccess": "Enabled"}})
    time.sleep(1.2)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert len(h.arm_requests("PATCH")) == 2


def test_concurrent_burst_in_one_worker_sends_one_fix(harness):
    res = b.key_vault()
    h = harness([res])
    events = [b.write_event(res["id"]) for _ in range(4)]
    threads = [threading.Thread(target=_deliver_raw, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r.verdict for r in h.recorder.rows) == ["compliant"] * 3 + ["remediated"]
    assert len(h.arm_requests("PATCH")) == 1


# ---- the audit's two rows ----------------------------------------------------------------------
def test_an_audit_index_row_that_cannot_be_stored_fails_the_delivery_and_the_retry_records_it(harness):
    """The day-shard row and the per-resource row are written at the same time: when either
    fails, the delivery raises (nothing is acknowledged half-audited). The fix went out, so the
    decision is parked with the event's claim (Table Storage, status UNAUDITED): Event Grid's
    retry writes that decision — the change and its revert — instead of deciding again on the
    fixed state, with no ARM call, and under the same row keys (the day-shard row the first
    attempt did store is replaced, not doubled)."""
    from guardrails.adapters.audit_tables import TableAuditSink

    res = b.storage()
    h = harness([res])
    h.tables.service.delete_table(h.tables.audit_index_name)     # the index table is gone
    event = b.write_event(res["id"])
    err = _deliver_raw(event)
    assert isinstance(err, StoreError)
    assert len(h.writes()) == 1                                  # the fix itself went out
    h.tables.service.create_table(h.tables.audit_index_name)
    h.emu.clear_requests()
    assert _deliver_raw(event) is None                           # the retry: not a duplicate
    assert [r.verdict for r in h.recorder.rows][-1] == "remediated"
    assert h.arm_requests() == []                                # nothing decided again, nothing sent
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    sink = TableAuditSink(h.tables, shards=h.settings.audit_shards)
    history = sink.read_resource(res["id"])
    assert [(r.event_id, r.verdict) for r in history] == [(event["id"], "remediated")]
    assert "audited by a later delivery" in history[0].message
    assert {v.outcome for v in history[0].violations} == {"remediated"}
    day = [r for r in h.stored_rows() if r.delivery_id == history[0].delivery_id]
    assert len(day) == 1 and day[0].to_dict() == history[0].to_dict()
    assert _deliver_raw(event) is None and h.recorder.rows[-1].verdict == "duplicate"
