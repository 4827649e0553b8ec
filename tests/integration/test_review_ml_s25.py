"""Review s25 of the ML lifecycle guardrail, end to end (Azurite + the HTTPS emulator + the real
SDK clients, through the trigger function); each test failed before its fix.

1. A breaker permit spent on an ML fix that is then not made is given back: the fix plan wrote
   no traffic (the moved share could go nowhere), or ARM refused the endpoint PUT, or its
   operation ended ``Failed``. Before, each such permit counted against the (policy,
   subscription) window like a fix that was made, and could open the breaker for the whole
   subscription with nothing remediated.
2. A model version (a registry's too) or an endpoint whose read carries no etag (their documented
   bodies carry none: ``examples/Registry/ModelVersion/get.json`` of the 2025-09-01 REST spec) is
   read again right before its PUT, and the PUT is not sent when the resource changed since the
   decision's read: the 412 a conditional PUT gets. Before, the body read at the start of the
   decision was PUT unconditionally, overwriting a change made meanwhile.
"""

from __future__ import annotations

import json

import pytest

from guardrails.adapters.remediation_tables import TableBreakerStore
from guardrails.local.ml_emulator import model_version, online_deployment, online_endpoint
from tests import builders as b
from tests.integration.test_ml_guardrail import EP, PROD, REG, TAGS, WS, policy_dir
from tests.integration.test_review_ml_s24 import policies, records, traffic_world

pytestmark = pytest.mark.integration

UNTAGGED = {"owner": "ds_team@contoso.com"}


def window(h, policy_id: str) -> tuple[int, list[str]]:
    """(permits counted, their event keys) of the policy's breaker in the test subscription."""
    pk, rk = TableBreakerStore._keys(policy_id, b.SUB)
    try:
        entity = h.tables.table(h.tables.breakers_name).get_entity(pk, rk)
    except Exception:        # noqa: BLE001 - no entity: nothing counted
        return 0, []
    return (sum(c for _f, _l, c in json.loads(entity.get("buckets") or "[]")),
            [k for k, _t in json.loads(entity.get("keys") or "[]")])


# ---------------------------------------------------------------- 1. a permit for no action goes back
def test_a_traffic_fix_the_plan_cannot_write_gives_its_permit_back(harness, tmp_path):
    # GIVEN P1 (two fixes per hour) faults blue, P2 (one) faults green; an untagged registration
    # spends P2's only permit and one of P1's
    meta = policies(tmp_path, {"id": "model-registry-p1", "breaker": {"max_actions": 2, "window_seconds": 3600}},
                    {"production_stages": ["production", "validated"],
                     "breaker": {"max_actions": 1, "window_seconds": 3600},
                     "required_tags": ["data_version", "git_sha", "metric_summary", "owner", "approved_by"]})
    scratch = [model_version(WS, f"scratch{i}", 1, tags=UNTAGGED) for i in (1, 2)]
    h = harness([*traffic_world({"blue": 50, "green": 50}), *scratch], extra_metadata=[meta])
    assert h.deliver(b.write_event(f"{WS}/models/scratch1/versions/1")).verdict == "remediated"
    assert window(h, "model-registry-p1")[0] == 1
    h.emu.clear_requests()
    # WHEN the endpoint is written: blue's share could go only to green, which P2 may not fix now
    event = b.write_event(EP)
    row = h.deliver(event)
    assert h.writes() == [] and h.resource(EP)["properties"]["traffic"] == {"blue": 50, "green": 50}
    assert records(row)[("model-registry-p1", "production-stage", "blue")][0] == "violation"
    # THEN P1's permit for it went back: nothing was done
    count, keys = window(h, "model-registry-p1")
    assert count == 1 and event["id"] not in keys
    # AND P1's next fix is made (before: its breaker was full, the fix refused as circuit_open)
    row = h.deliver(b.write_event(f"{WS}/models/scratch2/versions/1"))
    assert records(row)[("model-registry-p1", "required-tags", "isArchived")][0] == "remediated", row.message
    assert h.resource(f"{WS}/models/scratch2/versions/1")["properties"]["isArchived"] is True
    assert not h.service.breakers.is_open("model-registry-p1", b.SUB)


def bad_endpoint_world():
    """fraud-scoring: blue serves a version without tags (unfit), green a fit one; 50/50."""
    return [model_version(WS, "fraud-clf", 7, tags=UNTAGGED, stage="production"),
            model_version(WS, "fraud-clf", 8, tags=TAGS, stage="production"),
            online_endpoint(WS, "fraud-scoring", traffic={"blue": 50, "green": 50}, tags=PROD),
            online_deployment(EP, "blue", model="azureml:fraud-clf:7"),
            online_deployment(EP, "green", model="azureml:fraud-clf:8"),
            model_version(WS, "scratch", 1, tags=UNTAGGED)]


@pytest.mark.parametrize("how", ["refused", "operation_failed"])
def test_an_endpoint_write_that_does_not_act_gives_its_permit_back(harness, tmp_path, how):
    # GIVEN one fix per hour, and ARM refusing the endpoint's PUT (or its operation ending Failed)
    meta = policy_dir(tmp_path, breaker={"max_actions": 1, "window_seconds": 3600})
    h = harness(bad_endpoint_world(), extra_metadata=[meta], lro_seconds=0.2 if how == "operation_failed" else 0.0)
    if how == "refused":
        h.emu.add_fault(method="PUT", path_regex="onlineEndpoints/fraud-scoring$", status=400)
    else:
        h.emu.fail_operations("onlineEndpoints/fraud-scoring$", code="BadRequest")
    # WHEN the endpoint is written and its fix is not made
    event = b.write_event(EP)
    row = h.deliver(event)
    assert row.verdict == "failed" and h.resource(EP)["properties"]["traffic"] == {"blue": 50, "green": 50}
    # THEN no permit stays counted for it
    assert window(h, "model-registry") == (0, [])
    # AND the next fix under the policy is made (before: circuit_open, the breaker spent on nothing)
    row = h.deliver(b.write_event(f"{WS}/models/scratch/versions/1"))
    assert row.verdict == "remediated", row.message
    assert h.resource(f"{WS}/models/scratch/versions/1")["properties"]["isArchived"] is True
    # AND the endpoint event's redelivery asks for a permit again: the breaker, now spent, refuses it
    assert (h.deliver(event).reason, h.resource(EP)["properties"]["traffic"]) == ("circuit_open",
                                                                                  {"blue": 50, "green": 50})


def test_a_redelivery_allowed_on_its_earlier_permit_does_not_give_it_back(harness, tmp_path):
    """The permit an earlier delivery took may stand for a fix it made (say its answer was lost):
    a redelivery allowed on it whose own write is then refused leaves it. Only a permit the
    refused attempt took itself is given back."""
    meta = policy_dir(tmp_path, breaker={"max_actions": 5, "window_seconds": 3600})
    h = harness(bad_endpoint_world(), extra_metadata=[meta])
    event = b.write_event(EP)
    h.emu.add_fault(method="PUT", path_regex="onlineEndpoints/fraud-scoring$", status=429, retry_after=60, times=1)
    assert h.deliver(event).verdict == "failed"             # throttled: not made, its permit given back
    assert window(h, "model-registry") == (0, [])
    # another worker's delivery of the event holds a permit for it now
    other = TableBreakerStore(h.tables)
    assert other.try_acquire("model-registry", b.SUB, max_actions=5, window_seconds=3600, key=event["id"])
    h.emu.add_fault(method="PUT", path_regex="onlineEndpoints/fraud-scoring$", status=400, times=1)
    assert h.deliver(event).verdict == "failed"             # allowed on that permit, then refused
    assert window(h, "model-registry") == (1, [event["id"]])
    assert h.deliver(event).verdict == "remediated"          # and the next redelivery still uses it
    assert window(h, "model-registry") == (1, [event["id"]])


# ---------------------------------------------------------------- 2. no etag: read again right before the PUT
def after_revert_counted(h, act) -> list[int]:
    """Run ``act()`` right after the guardrail counted its revert (between the decision's read and
    its write), once; returns a list that says it happened."""
    done: list[int] = []
    esc = h.service.escalations
    attempt = esc.attempt

    def and_then(*a, **k):
        out = attempt(*a, **k)
        if not done:
            act()
            done.append(1)
        return out

    esc.attempt = and_then
    return done


def concurrent_change(h, rid: str, change) -> list[int]:
    """Make ``change`` to ``rid`` in the emulator right after the guardrail counted its revert
    (between the decision's read and its PUT), once; returns a list that says it happened."""
    def act():
        live = h.resource(rid)
        change(live)
        live.pop("etag", None)            # a write: ARM gives it a new etag (none for an etagless type)
        h.emu.put(live)

    return after_revert_counted(h, act)


def test_a_registry_version_without_etag_is_not_put_over_a_change_made_after_its_read(harness, tmp_path):
    # GIVEN a registry version read with no etag, missing its tags
    vid = f"{REG}/models/fraud-clf/versions/3"
    h = harness([model_version(REG, "fraud-clf", 3, tags=UNTAGGED)],
                world={"etaglessTypes": ["Microsoft.MachineLearningServices/registries/models/versions"]})
    assert "etag" not in h.resource(vid)
    # AND its owner adds the tags between the guardrail's read and its PUT
    done = concurrent_change(h, vid, lambda v: v["properties"]["tags"].update(TAGS))
    # WHEN its write is decided
    row = h.deliver(b.write_event(vid))
    assert done
    # THEN the archive is not sent over the change: the tags stay, the version is not archived
    live = h.resource(vid)
    assert live["properties"]["tags"] == TAGS and live["properties"]["isArchived"] is False
    # the decision's read, the one before the PUT, then (session 34) the decision once more on a new read
    assert [q["method"] for q in h.arm_requests()] == ["GET", "GET", "GET"]
    # AND as after ARM's 412 to a conditional PUT, it is decided once more: the owner's tags make it compliant
    assert row.verdict == "compliant" and "decided on a new read" in row.message, (row.verdict, row.message)
    assert h.deliver(b.write_event(vid)).verdict == "compliant"


def test_a_registry_version_without_etag_unchanged_is_archived_from_a_read_made_right_before(harness):
    vid = f"{REG}/models/fraud-clf/versions/3"
    h = harness([model_version(REG, "fraud-clf", 3, tags=UNTAGGED)],
                world={"etaglessTypes": ["Microsoft.MachineLearningServices/registries/models/versions"]})
    row = h.deliver(b.write_event(vid))
    assert row.verdict == "remediated", row.message
    assert [q["method"] for q in h.arm_requests()] == ["GET", "GET", "PUT", "GET"]
    (put,) = h.arm_requests("PUT")
    assert "If-Match" not in {k.title() for k in put.get("headers", {})}
    assert h.resource(vid)["properties"]["isArchived"] is True


def test_with_an_etag_the_version_put_is_conditional_and_a_change_meanwhile_is_a_412(harness):
    vid = f"{REG}/models/fraud-clf/versions/3"
    h = harness([model_version(REG, "fraud-clf", 3, tags=UNTAGGED)])
    assert h.resource(vid).get("etag")
    done = concurrent_change(h, vid, lambda v: v["properties"]["tags"].update(TAGS))
    row = h.deliver(b.write_event(vid))
    # the 412 is decided once more on a new read (session 34): the change made it compliant
    assert done and [(q["method"], q["status"]) for q in h.arm_requests()] == [("GET", 200), ("PUT", 412), ("GET", 200)]
    assert row.verdict == "compliant" and "decided on a new read" in row.message
    assert h.resource(vid)["properties"]["tags"] == TAGS and h.resource(vid)["properties"]["isArchived"] is False


def test_an_endpoint_without_etag_is_not_put_over_a_traffic_change_made_after_its_read(harness, tmp_path):
    h = harness(bad_endpoint_world(),
                world={"etaglessTypes": ["Microsoft.MachineLearningServices/workspaces/onlineEndpoints"]})
    # someone moves all traffic to green after the guardrail read the endpoint
    done = concurrent_change(h, EP, lambda e: e["properties"].update(traffic={"blue": 0, "green": 100}))
    row = h.deliver(b.write_event(EP))
    assert done and h.writes() == []
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 0, "green": 100}
    assert row.verdict == "compliant" and "decided on a new read" in row.message   # decided once more (session 34)
    assert window(h, "model-registry") == (0, [])          # nothing sent: its permit went back
    assert h.deliver(b.write_event(EP)).verdict in ("compliant", "violation")
    assert h.writes() == []


# ---------------------------------------------------------------- the store: a give-back across workers
def test_a_permit_given_back_is_seen_by_every_worker_and_an_open_breaker_stays_open(azurite):
    import uuid

    from azure.data.tables import TableServiceClient

    from guardrails.adapters.tables import Tables
    tables = Tables(TableServiceClient.from_connection_string(azurite.connection_string),
                    "Tbrk" + uuid.uuid4().hex[:8])
    tables.ensure()
    one, two = TableBreakerStore(tables), TableBreakerStore(tables)
    ask = {"max_actions": 2, "window_seconds": 600}
    assert one.acquire("p", b.SUB, key="E1", **ask) == (True, True)
    assert two.acquire("p", b.SUB, key="E2", **ask) == (True, True)        # two has read E1's permit
    # WHEN worker one gives E1's permit back (once)
    assert one.release("p", b.SUB, "E1") is True
    assert one.release("p", b.SUB, "E1") is False
    # THEN E1's redelivery on worker two is counted again, from the table, not allowed from its memory
    assert two.acquire("p", b.SUB, key="E1", **ask) == (True, True)
    assert one.acquire("p", b.SUB, key="E3", **ask) == (False, False)       # E2 and E1: full, now open
    # AND a give-back while open leaves it open: only a reset closes it
    assert two.release("p", b.SUB, "E2") is True
    assert one.is_open("p", b.SUB) and two.acquire("p", b.SUB, key="E4", **ask) == (False, False)
    assert two.acquire("p", b.SUB, key="E2", **ask) == (False, False)       # its permit went back
    assert one.acquire("p", b.SUB, key="E1", **ask) == (True, False)        # E1's own stands
    assert one.reset("p", b.SUB) and one.release("p", b.SUB, "E1") is False
