"""Review s20b of the ML lifecycle guardrail, end to end (Azurite + the HTTPS emulator + real SDK
clients): each test failed before its fix.

- one run completion announced twice (``RunCompleted`` and ``RunStatusChanged``/Completed) is
  recorded and notified once; the claim on the completion is released when the first decision
  never reached its audit row, so the other announcement then decides (at least once);
- a served model version that stops being fit for production (its tags removed, so archived; its
  stage demoted) loses its production traffic at once: the endpoints of its workspace serving
  it are decided again in their own rows; what cannot be looked at is a violation on the
  version's row, left to the sweep.
"""

from __future__ import annotations

import pytest

from guardrails import ml_serving
from guardrails.errors import StoreError
from guardrails.local.ml_emulator import model_version, online_deployment, online_endpoint
from guardrails.ml_guardrail import VERSION_CHANGE_EVENT_TYPE
from guardrails.policy.model_rules import RULE_SERVING_ENDPOINTS
from guardrails.service import DeliveryFailed
from guardrails.simulate import to_function_event
from guardrails.triggers.resource_events import resource_events
from tests import builders as b
from tests.integration.test_ml_guardrail import API, EP, PROD, REG, TAGS, WS, endpoint_world, ml_event, user_client

RUN_TAGS = {"promotion_candidate": "true", "owner": "ds_team@contoso.com", "accuracy": "0.80"}


def run_events(run_id: str = "run_same", tags=RUN_TAGS) -> tuple[dict, dict]:
    base = {"experimentId": "0fa9", "experimentName": "fraud", "runId": run_id, "runTags": dict(tags),
            "runProperties": {}}
    return ml_event("RunCompleted", base), ml_event("RunStatusChanged", {**base, "runStatus": "Completed"})


def notifications(caplog) -> list:
    return [r for r in caplog.records if "guardrail_violation_notify" in r.getMessage()]


# ---------------------------------------------------------------- 1. one run completion, one action
@pytest.mark.parametrize("first", [0, 1], ids=["RunCompleted-first", "RunStatusChanged-first"])
def test_one_run_completion_announced_twice_is_recorded_and_notified_once(harness, caplog, first):
    h = harness([])
    events = run_events()
    with caplog.at_level("WARNING", logger="guardrails"):
        a = h.deliver(events[first])
        dup = h.deliver(events[1 - first])
    assert a.verdict == "violation" and a.notify and [v.rule for v in a.violations] == ["run-metric"]
    assert (dup.verdict, dup.reason) == ("duplicate", "duplicate_run_completion")
    assert not dup.notify and dup.violations == [] and "verdict violation" in dup.message
    assert len(notifications(caplog)) == 1
    # a redelivery of either event is the service's own duplicate, as before
    again = h.deliver(events[first])
    assert (again.verdict, again.reason) == ("duplicate", "duplicate")


def test_two_different_runs_are_each_judged(harness):
    h = harness([])
    rows = [h.deliver(run_events(run_id)[0]) for run_id in ("run_a", "run_b")]
    assert [r.verdict for r in rows] == ["violation", "violation"]


def test_a_run_claim_is_released_when_the_first_row_was_never_written(harness, caplog):
    """At least once: the first announcement decides, then its audit write fails (the delivery
    is retried); the completion's claim is released with the event's, so the other announcement
    decides and tells the owner instead of being dropped as a duplicate of nothing."""
    h = harness([])
    completed, status_changed = run_events("run_lost")
    recorder = h.service.audit

    class FailingOnce:
        failed = False

        def write(self, row):
            if not self.failed:
                self.failed = True
                raise StoreError("audit table unavailable")
            recorder.write(row)

        def rows_of_delivery(self, *a):
            return recorder.rows_of_delivery(*a)

    h.service.audit = FailingOnce()
    with pytest.raises(StoreError):
        h.service.handle_event(completed)
    h.service.audit = recorder
    caplog.clear()
    with caplog.at_level("WARNING", logger="guardrails"):
        row = h.deliver(status_changed)
    assert row.verdict == "violation" and row.notify and len(notifications(caplog)) == 1
    # the retry of the first event now finds the completion judged
    retried = h.deliver(completed)
    assert (retried.verdict, retried.reason) == ("duplicate", "duplicate_run_completion")


def test_a_run_that_is_not_a_candidate_takes_no_completion_claim(harness):
    h = harness([])
    calls = []
    store = h.service.idempotency
    real = store.acquire
    store.acquire = lambda key, **kw: (calls.append(key), real(key, **kw))[1]
    row = h.deliver(run_events("run_plain", tags={"owner": "x@contoso.com"})[0])
    assert row.verdict == "ignored" and row.reason == "not_a_candidate"
    assert [k for k in calls if k.startswith("ml-run-completed:")] == []


# ---------------------------------------------------------------- 2. a served version made unfit
def deliver_all(h, raw: dict) -> list:
    """Through the trigger; every row the delivery wrote (the event's own, then none or more
    re-judged endpoints' rows, which are written first)."""
    before = len(h.recorder.rows)
    try:
        resource_events(to_function_event(raw))
    except DeliveryFailed:
        pass
    return h.recorder.rows[before:]


def change_version(h, vid: str, change: str) -> dict:
    """A user changes version ``vid`` through ARM; returns its write event."""
    body = h.resource(vid)
    props = dict(body["properties"])
    if change == "untag":
        props["tags"] = {k: v for k, v in TAGS.items() if k != "git_sha"}
    else:
        props["stage"] = "candidate"
    with user_client(h) as c:
        c.resources.begin_create_or_update_by_id(vid.lstrip("/"), {"properties": props}, api_version=API).result()
    (event,) = [e for e in h.emu.drain_events() if e["eventType"].endswith("ResourceWriteSuccess")]
    return event


@pytest.mark.parametrize("change", ["untag", "demote"])
def test_a_served_version_made_unfit_loses_its_production_traffic(harness, change):
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 60, "green": 40})   # blue serves v7
    h = harness(world)
    vid = f"{WS}/models/fraud-clf/versions/7"
    event = change_version(h, vid, change)
    h.emu.clear_requests()
    rows = deliver_all(h, event)
    own, endpoint_row = rows[-1], rows[0]
    assert len(rows) == 2 and own.resource_id.lower() == vid.lower()
    assert endpoint_row.event_type == VERSION_CHANGE_EVENT_TYPE and endpoint_row.resource_id.lower() == EP.lower()
    assert endpoint_row.verdict == "remediated" and endpoint_row.notify
    assert endpoint_row.correlation_id == f"modelversion:{event['id']}"
    assert {v.property for v in endpoint_row.violations} == {"properties.traffic.blue"}
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 0, "green": 100}    # to the fit one
    if change == "untag":
        assert own.verdict == "remediated" and h.resource(vid)["properties"]["isArchived"] is True
    else:
        assert own.verdict == "compliant"           # its tags are all there: nothing to archive
    assert "fraud-scoring (remediated)" in own.message and VERSION_CHANGE_EVENT_TYPE in own.message
    lists = [q["path"] for q in h.arm_requests("GET") if q["path"].lower().endswith(("/onlineendpoints",
                                                                                   "/deployments"))]
    assert len(lists) == 2            # the workspace's endpoints, then that endpoint's deployments
    # the guardrail's own endpoint PUT comes back: ignored with zero ARM calls
    h.emu.clear_requests()
    assert {(r.verdict, r.reason) for r in h.deliver_emitted()} == {("ignored", "own_write")}


def test_a_fit_version_write_looks_for_no_endpoint(harness):
    world, _green = endpoint_world("azureml:fraud-clf:8")
    h = harness(world)
    vid = f"{WS}/models/fraud-clf/versions/7"
    rows = deliver_all(h, b.write_event(vid))
    assert [r.verdict for r in rows] == ["compliant"]
    assert [q["path"].lower() for q in h.arm_requests()] == [vid.lower()]     # the version's read only


def test_an_unfit_version_nobody_serves_changes_no_endpoint(harness):
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 100, "green": 0})
    h = harness([*world, model_version(WS, "fraud-clf", 9, tags=TAGS, stage="candidate")])
    rows = deliver_all(h, b.write_event(f"{WS}/models/fraud-clf/versions/9"))
    assert [r.verdict for r in rows] == ["compliant"] and h.writes() == []
    assert "served by" not in rows[0].message and rows[0].violations == []


def test_a_model_registered_event_does_not_look_its_arm_write_does(harness):
    v = model_version(WS, "fraud-clf", 9, tags=TAGS, stage="candidate")
    h = harness([v])
    deliver_all(h, ml_event("ModelRegistered", {"ModelName": "fraud-clf", "ModelVersion": 9, "ModelTags": TAGS}))
    assert [q["path"].lower() for q in h.arm_requests()] == [v["id"].lower()]


def test_a_registry_version_is_left_to_the_sweep_without_reads(harness):
    v = model_version(REG, "fraud-clf", 3, tags=TAGS, stage="candidate")
    h = harness([v])
    rows = deliver_all(h, b.write_event(v["id"]))
    assert [r.verdict for r in rows] == ["compliant"] and len(h.arm_requests("GET")) == 1


def test_an_endpoint_list_arm_refuses_is_a_violation_left_to_the_sweep(harness, caplog):
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 100, "green": 0})
    h = harness(world)
    vid = f"{WS}/models/fraud-clf/versions/7"
    event = change_version(h, vid, "demote")
    h.emu.add_fault("GET", r"/onlineEndpoints$", status=403, times=5)
    with caplog.at_level("WARNING", logger="guardrails"):
        rows = deliver_all(h, event)
    (row,) = rows
    assert row.verdict == "violation" and row.notify
    (rec,) = row.violations
    assert rec.rule == RULE_SERVING_ENDPOINTS and rec.outcome == "violation" and "sweep" in rec.message
    assert h.resource(EP)["properties"]["traffic"]["blue"] == 100        # not changed, but told
    assert any(RULE_SERVING_ENDPOINTS in r.getMessage() for r in notifications(caplog))


def test_endpoints_past_the_bound_are_named_for_the_sweep(harness, monkeypatch):
    monkeypatch.setattr(ml_serving, "MAX_ENDPOINTS_LISTED", 1)
    v7 = model_version(WS, "fraud-clf", 7, tags=TAGS, stage="production")
    eps = [online_endpoint(WS, f"scoring-{i}", traffic={"blue": 100}, tags=PROD) for i in (1, 2)]
    deps = [online_deployment(ep["id"], "blue", model="azureml:fraud-clf:7") for ep in eps]
    h = harness([v7, *eps, *deps])
    event = change_version(h, v7["id"], "demote")
    rows = deliver_all(h, event)
    own = rows[-1]
    assert [r.resource_id.rsplit("/", 1)[-1] for r in rows[:-1]] == ["scoring-1"]
    assert own.verdict == "violation" and own.violations[0].before == ["scoring-2"]
    assert h.resource(eps[0]["id"])["properties"]["traffic"]["blue"] == 0
    assert h.resource(eps[1]["id"])["properties"]["traffic"]["blue"] == 100


def test_a_re_judged_endpoint_that_fails_fails_the_version_row_for_a_retry(harness):
    world, _green = endpoint_world("azureml:fraud-clf:8", traffic={"blue": 100, "green": 0})
    h = harness(world)
    vid = f"{WS}/models/fraud-clf/versions/7"
    event = change_version(h, vid, "demote")
    h.emu.add_fault("GET", r"/onlineEndpoints/fraud-scoring$", status=503, times=50)
    rows = deliver_all(h, event)
    endpoint_row, own = rows
    assert endpoint_row.verdict == "failed"
    assert (own.verdict, own.reason) == ("failed", "rejudge_failed")
    assert [v.outcome for v in own.violations] == ["failed"]
    h.emu._faults.clear()
    rows = deliver_all(h, event)        # Event Grid's redelivery decides the endpoint again
    assert [r.verdict for r in rows] == ["remediated", "compliant"]
    assert h.resource(EP)["properties"]["traffic"]["blue"] == 0
