"""Review s34 of the ML lifecycle guardrail's delivery machinery (Azurite + the local HTTPS
emulator + the real SDK clients, through the trigger function).

Tests named ``test_control_*`` pass on the current code and show the boundary; every other test
fails on it and says, in its docstring, what is wrong and what is expected.
"""

from __future__ import annotations

import pytest

from guardrails.local.ml_emulator import model_version
from tests import builders as b
from tests.integration.test_delivery import _at
from tests.integration.test_ml_guardrail import EP, WS, endpoint_world, puts, registered

pytestmark = pytest.mark.integration
# the workspace itself, so that listing its endpoints (``ml_serving``) answers an empty list
WORKSPACE = b.workspace(pna="Disabled")


# ---- (1) a burst for one endpoint while the guardrail's own long-running fix still runs ----------
def test_an_endpoint_burst_during_its_own_running_fix_sends_no_second_put_and_does_not_escalate(harness):
    """DEFECT. README, "Bursts for one resource": "a second fix is never sent: while a long-running
    fix of the guardrail's own still runs (ARM still reads the old value), a later event that would
    send the same fix is audited ``requested`` ("fix in flight since event X"), nothing written, no
    revert counted, no permit taken" -- and the ML guardrail's fixes "count the same way". The
    resource guardrail does this (``pending_confirm.FixesInFlight``); ``MlLifecycleGuardrail._act``
    never consults it (and ``_pending`` writes no ``sent_at``, so ``FixesInFlight.making`` could not
    see its records anyway). A deployment pipeline touching the endpoint four times while the
    guardrail's traffic PUT (a long-running operation: online endpoint updates take minutes) still
    runs gets four PUTs and its 4th event ``escalated`` as a flip-flop fight that never happened.
    Expected: one PUT; the later events ``requested`` naming the first event, not escalated."""
    world, _green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 50, "green": 50})
    h = harness([WORKSPACE, *world], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1"}, lro_seconds=30)
    burst = [_at(b.write_event(EP), 8 - i) for i in range(4)]
    rows = [h.deliver(e) for e in burst]
    assert rows[0].verdict == "requested", rows[0].message
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 50, "green": 50}     # the fix still runs
    verdicts = [r.verdict for r in rows]
    assert "escalated" not in verdicts, f"one burst escalated as a flip-flop fight: {verdicts}"
    assert len(puts(h, "/onlineEndpoints/fraud-scoring")) == 1, (
        f"{len(puts(h, '/onlineEndpoints/fraud-scoring'))} endpoint PUTs for one fix in flight: {verdicts}")
    assert all(burst[0]["id"] in r.violations[0].message for r in rows[1:]), [r.message for r in rows[1:]]


def test_an_endpoint_burst_during_its_own_running_fix_takes_one_breaker_permit(harness, tmp_path):
    """DEFECT (same root cause as above, the breaker). Each event of the burst takes a breaker
    permit of its own for the same fix in flight, so one endpoint's deployment pipeline (three
    writes while the traffic PUT runs) spends the policy's whole window for the subscription
    (here 2 per hour): the breaker opens and every other ML fix in the subscription is held back
    (``circuit_open``) although one fix was made. README: a fix in flight is "not sent ... no
    permit taken". Expected: one permit counted; the breaker stays closed."""
    from tests.integration.test_ml_guardrail import policy_dir
    from tests.integration.test_review_ml_s25 import window

    world, _green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 50, "green": 50})
    h = harness([WORKSPACE, *world], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1"}, lro_seconds=30,
                extra_metadata=[policy_dir(tmp_path, breaker={"max_actions": 2, "window_seconds": 3600})])
    burst = [_at(b.write_event(EP), 8 - i) for i in range(3)]
    rows = [h.deliver(e) for e in burst]
    assert rows[0].verdict == "requested", rows[0].message
    count, _keys = window(h, "model-registry")
    assert count == 1 and not h.service.breakers.is_open("model-registry", b.SUB), (
        f"{count} permits for one fix in flight, breaker open: "
        f"{h.service.breakers.is_open('model-registry', b.SUB)}; rows {[(r.verdict, r.reason) for r in rows]}")


def test_control_an_endpoint_burst_whose_fix_finishes_in_its_delivery_sends_one_put(harness):
    """CONTROL (passes). The same burst with a fix that finishes inside its delivery: one PUT, the
    later events decided on the fixed endpoint (``compliant``), one revert counted."""
    world, _green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 50, "green": 50})
    h = harness([WORKSPACE, *world])
    rows = [h.deliver(_at(b.write_event(EP), 8 - i)) for i in range(4)]
    assert [r.verdict for r in rows] == ["remediated", "compliant", "compliant", "compliant"]
    assert len(puts(h, "/onlineEndpoints/fraud-scoring")) == 1
    assert len(h.service.escalations.status(EP)["times"]) == 1


def test_a_registration_arriving_twice_during_a_long_running_archive_is_archived_once(harness):
    """DEFECT. README (ML lifecycle): "A registration arriving both as ``ModelRegistered`` and as
    the ARM write is archived once: both decide on live state under one per-resource lock, and the
    second finds it archived." Not when the archive PUT is long-running and still runs when the
    first delivery's budget ends: the second event reads ``isArchived: false`` (the operation has
    not landed), sends a second archive PUT (a second pending record, a second breaker permit, a
    second flip-flop count) and tells the owner again. Expected: one archive PUT; the second
    event is ``requested``, naming the fix in flight, like the resource guardrail's burst."""
    v = model_version(WS, "fraud-clf", 21, tags={"owner": "ds_team@contoso.com"})
    h = harness([WORKSPACE, v], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1"}, lro_seconds=30)
    first = h.deliver(b.write_event(v["id"]))
    assert {r.outcome for r in first.violations if r.rule == "required-tags"} == {"requested"}, first.message
    second = h.deliver(registered("fraud-clf", 21))
    assert len(puts(h, "/versions/21")) == 1, (
        f"{len(puts(h, '/versions/21'))} archive PUTs for one registration; second row: "
        f"{second.verdict}: {second.message}")
    assert second.verdict == "requested"
    assert len(h.service.pending.list(v["id"])) == 1


# ---- (2) its own write answered 412 (another worker's write landed first) or 404 (deleted) -------
def _two_workers_archive(harness, n: int):
    """Two instances decide two write events of one untagged version at once: both read etag E1,
    the second's archive PUT lands first, the first's (held 0.7 s) then meets 412."""
    from guardrails import bootstrap
    from tests.integration.test_review_delivery_s33 import _race

    v = model_version(WS, "fraud-clf", n, tags={"owner": "ds_team@contoso.com"})
    h = harness([WORKSPACE, v])
    other = bootstrap.build_service(h.settings)                  # a second instance
    other.audit = h.recorder
    h.emu.add_fault(method="PUT", path_regex=f"versions/{n}$", delay_ms=700, times=1)
    out = _race([h.service, other], [b.write_event(v["id"]), b.write_event(v["id"])])
    assert h.resource(v["id"])["properties"]["isArchived"] is True
    assert sorted(q["status"] for q in h.writes()) == [200, 412]        # one made, one refused by If-Match
    return h, v, out


def test_two_workers_archiving_one_version_at_once_do_not_audit_a_failed_fix(harness):
    """DEFECT. Event Grid spreads the two announcements of one registration (``ModelRegistered``
    and the ARM write, or a burst of writes) over two instances. Both read etag E1; the second's
    archive PUT (If-Match E1) lands first; the first's then meets ``412``. ``MlLifecycleGuardrail.
    _write`` turns every ``ArmError`` into ``failed`` records: the delivery is audited ``failed`` /
    ``arm_error`` ("answered 412 PreconditionFailed", owner told of a failed fix, a
    ``Decision.Failed``) and raises for a redelivery -- although the version is exactly as the fix
    wanted. README (Delivery semantics): "the one whose PUT meets ``412`` gives back what the rails
    took, reads again and decides once more within its budget (``compliant`` when the other fix
    landed)", which the resource guardrail does (``_decide_again``). Expected: no ``failed`` row,
    nothing raised; the loser decides again on a new read (``compliant``, already archived)."""
    h, _v, out = _two_workers_archive(harness, 22)
    verdicts = sorted((r.verdict, r.reason) for r in h.recorder.rows)
    raised = [r for r in out.values() if isinstance(r, Exception)]
    assert ("failed", "arm_error") not in verdicts and not raised, (
        f"a concurrent archive that was made is audited as failed: {verdicts}, raised {raised}")


def test_an_archive_refused_by_if_match_counts_no_revert(harness):
    """DEFECT. README (flip-flop escalation): "one whose conditional PUT met ``412`` count[s] no
    revert ... The ML lifecycle guardrail's fixes (archive, traffic, endpoint settings) count the
    same way". ``MlLifecycleGuardrail._write`` gives back only the breaker permit on an
    ``ArmError`` (``flip_flop=False``), so the losing worker's 412 stays counted: one archive is two
    reverts on the version's flip-flop budget (three instances in a burst: three, and the owner's
    next change is ``escalated`` without a single fight). Expected: one revert counted."""
    h, v, _out = _two_workers_archive(harness, 23)
    status = h.service.escalations.status(v["id"])
    assert status is not None and len(status["times"]) == 1, f"one archive counted as {len(status['times'])} reverts"


def _delete_after_revert_counted(h, rid: str) -> list[int]:
    """Delete ``rid`` (a user, through the real SDK) right after the guardrail counted its revert,
    i.e. between the decision's read and its write; once. Returns a list that says it happened."""
    from tests.integration.test_ml_guardrail import API, user_client
    from tests.integration.test_review_ml_s25 import after_revert_counted

    def act():
        with user_client(h) as c:
            c.resources.begin_delete_by_id(rid.lstrip("/"), api_version=API).result()

    return after_revert_counted(h, act)


def test_an_endpoint_deleted_while_its_traffic_fix_is_on_its_way_is_not_a_failed_fix(harness):
    """DEFECT. An online endpoint (documented without an etag, so ``_write`` reads it again right
    before its PUT: ``_unchanged_since``) is deleted by its team after the guardrail read it. That
    read answers 404, a ``ResourceNotFound``, which ``MlLifecycleGuardrail._write`` catches as any
    ``ArmError``: the delivery is audited ``failed`` / ``resource_not_found`` (owner told "fix
    failed"), its flip-flop count kept as a revert, and it raises, so Event Grid redelivers a fix
    alarm for an endpoint that no longer exists. README (Delivery semantics): "A resource deleted
    before its fix arrives (the write answered 404) is ``ignored`` / ``resource_not_found``, as a
    404 on the read", and such a fix counts no revert; the resource guardrail does so. Expected:
    ``ignored`` / ``resource_not_found``, nothing raised, no revert counted."""
    from tests.integration.test_delivery import _deliver_raw

    world, _green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 50, "green": 50})
    h = harness([WORKSPACE, *world],
                world={"etaglessTypes": ["Microsoft.MachineLearningServices/workspaces/onlineEndpoints"]})
    done = _delete_after_revert_counted(h, EP)
    err = _deliver_raw(b.write_event(EP))
    assert done and h.emu.get(EP) is None and puts(h, "/onlineEndpoints/fraud-scoring") == []
    (row,) = h.recorder.rows
    assert (row.verdict, row.reason, err) == ("ignored", "resource_not_found", None), (
        f"a fix of a deleted endpoint: {row.verdict}/{row.reason}, raised {err!r}: {row.message}")
    status = h.service.escalations.status(EP)
    assert status is None or status["times"] == [], f"a revert never made is counted: {status}"


def test_control_an_endpoint_deleted_before_its_read_is_ignored(harness):
    """CONTROL (passes). The same endpoint deleted before the decision's read: ``ignored`` /
    ``resource_not_found``, no write, nothing raised, nothing counted -- the outcome expected above."""
    from tests.integration.test_delivery import _deliver_raw
    from tests.integration.test_ml_guardrail import API, user_client

    world, _green = endpoint_world("azureml:fraud-clf:latest", traffic={"blue": 50, "green": 50})
    h = harness([WORKSPACE, *world],
                world={"etaglessTypes": ["Microsoft.MachineLearningServices/workspaces/onlineEndpoints"]})
    with user_client(h) as c:
        c.resources.begin_delete_by_id(EP.lstrip("/"), api_version=API).result()
    err = _deliver_raw(b.write_event(EP))
    (row,) = h.recorder.rows
    assert (row.verdict, row.reason, err) == ("ignored", "resource_not_found", None)
    assert puts(h, "/onlineEndpoints/fraud-scoring") == [] and h.service.escalations.status(EP) is None



# ---- added with the fixes: the edges of deciding once more ------------------------------------------
def test_a_version_changed_again_while_its_fix_is_decided_again_is_a_failed_fix_counting_no_revert(harness):
    """ADDED with the fix. Someone else writes an untagged version between each decision's read and
    its archive PUT, twice: the first ``412`` is decided once more on a new read, the second is a
    ``failed`` fix (the redelivery decides again), never a third decision within the delivery. Both
    gave back what the rails took: no permit counted, no revert counted; nothing archived."""
    from tests.integration.test_delivery import _deliver_raw
    from tests.integration.test_review_ml_s25 import window

    v = model_version(WS, "fraud-clf", 25, tags={"owner": "ds_team@contoso.com"})
    h = harness([WORKSPACE, v])
    esc = h.service.escalations
    attempt = esc.attempt
    edits: list[int] = []

    def and_then(*a, **k):
        out = attempt(*a, **k)
        if len(edits) < 2:           # after each decision counted its revert, before its PUT
            live = h.resource(v["id"])
            live["properties"]["description"] = f"edit {len(edits)}"
            live.pop("etag", None)   # a write: ARM gives it a new etag
            h.emu.put(live)
            edits.append(1)
        return out

    esc.attempt = and_then
    err = _deliver_raw(b.write_event(v["id"]))
    assert [q["status"] for q in puts(h, "/versions/25")] == [412, 412]
    (row,) = h.recorder.rows
    assert (row.verdict, row.reason) == ("failed", "arm_error") and err is not None, row.message
    assert "decided on a new read" in row.message
    assert h.resource(v["id"])["properties"]["isArchived"] is False
    status = esc.status(v["id"])
    assert status is None or status["times"] == [], f"a revert never made is counted: {status}"
    assert window(h, "model-registry") == (0, [])

