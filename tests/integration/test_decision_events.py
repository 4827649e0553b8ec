"""Decision events end to end: deliveries through the trigger, the real azure-eventgrid client
publishing CloudEvents to the emulator's custom topic (key or token auth), the outbox table on
Azurite when the topic fails, and the outbox timer entry point with a real azure.functions
TimerRequest. Assertions are on what the topic recorded, the audit table and the outbox table."""

from __future__ import annotations

import json
import logging
import os
import secrets as rng
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import azure.functions as func
import pytest
import requests
from azure.functions.timer import TimerRequest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.adapters.eventgrid import EventGridTopic
from guardrails.adapters.outbox_tables import TableOutbox
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.outbox import MAX_BATCH_EVENTS, PublishError, batches, event_type, should_publish
from guardrails.triggers.decision_events import decision_outbox
from tests import builders as b

pytestmark = pytest.mark.integration

PUBLISHED = ("remediated", "requested", "violation", "dry_run", "escalated")
WRITE = "Microsoft.Resources.ResourceWriteSuccess"


def _timer() -> func.TimerRequest:
    """What the Functions worker hands a timer function."""
    return TimerRequest(past_due=False, schedule_status={"Last": "2026-11-24T10:00:00Z"}, schedule={"AdjustForDST": True})


def _published(h) -> list[dict]:
    return h.emu.published_events("decisions")


def _topic_calls(h) -> list[dict]:
    return [q for q in h.emu.requests if q["host"] == "eventgrid"]


def _outbox(h) -> list:
    return TableOutbox(h.tables).list(1000)


def _assert_event_is_row(event: dict, row: AuditRow) -> None:
    assert event["id"] == row.delivery_id
    assert event["type"] == event_type(row.verdict)
    assert event["subject"] == row.resource_id
    assert event["source"] == "/guardrails/local" and event["specversion"] == "1.0"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == json.loads(json.dumps(row.to_dict()))
    sent = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    audited = datetime.fromisoformat(row.time.replace("Z", "+00:00"))
    assert abs((sent - audited).total_seconds()) < 0.001      # the SDK writes milliseconds


# ---- what is published -------------------------------------------------------------------------
def test_published_events_match_the_non_compliant_audit_rows_one_to_one(harness):
    public, private = b.storage("stpublic"), b.storage("stprivate", pna="Disabled", blob=False)
    node_ip = b.compute(node_public_ip=True)
    h = harness([public, private, b.workspace(pna="Disabled"), node_ip], decision_topic=True)
    dup = b.write_event(public["id"])
    rows = [h.deliver(dup), h.deliver(dup),                       # remediated, duplicate
            h.deliver(b.write_event(private["id"])),              # compliant
            h.deliver(b.write_event(node_ip["id"])),              # violation (notify only)
            h.deliver({"id": "bad", "eventType": WRITE, "subject": "x", "data": "not an object"})]  # invalid
    rows += h.deliver_emitted()                                   # the guardrail's own write: ignored
    assert [r.verdict for r in rows] == ["remediated", "duplicate", "compliant", "violation", "invalid", "ignored"]

    events = _published(h)
    expected = [r for r in rows if r.verdict in PUBLISHED]
    assert len(events) == len(expected) == 2
    for event, row in zip(events, expected):
        _assert_event_is_row(event, row)
    # exactly the stored audit rows: one event per non-compliant row in the table, same ids
    stored = {r.delivery_id: r for r in h.stored_rows()}
    assert {e["id"] for e in events} == {d for d, r in stored.items() if should_publish(r)}
    assert all(stored[e["id"]].verdict == e["data"]["verdict"] for e in events)
    # one POST per published decision, nothing in the outbox
    assert len(_topic_calls(h)) == 2 and all(q["status"] == 200 for q in _topic_calls(h))
    assert _outbox(h) == []


def test_failed_rows_are_published_only_when_they_carry_violations():
    base = dict(event_id="e", event_type=WRITE, resource_id="/subscriptions/s", delivery_id="d")
    v = ViolationRecord("p@1", "r", "properties.x", "a", "b", "failed")
    assert should_publish(AuditRow(verdict="failed", violations=[v], **base))
    assert not should_publish(AuditRow(verdict="failed", reason="throttled", **base))
    for verdict in PUBLISHED:
        assert should_publish(AuditRow(verdict=verdict, **base))
    for verdict in ("compliant", "ignored", "duplicate", "invalid", "shadow"):
        assert not should_publish(AuditRow(verdict=verdict, violations=[v], **base))
    assert event_type("dry_run") == "Guardrails.Decision.DryRun"
    assert event_type("remediated") == "Guardrails.Decision.Remediated"


def test_batches_respect_the_count_and_size_limits():
    events = [{"id": str(i)} for i in range(250)]
    assert [len(x) for x in batches(events, size_of=lambda e: 10)] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 50]
    assert [len(x) for x in batches(events[:5], size_of=lambda e: 400_000)] == [2, 2, 1]


# ---- topic down: audit first, outbox, later delivered ---------------------------------------------
def test_topic_down_keeps_the_audit_row_outboxes_the_event_and_the_timer_delivers_it(harness):
    a, c = b.storage("sta"), b.storage("stc")
    h = harness([a, c], decision_topic=True)
    h.emu.add_fault(path_regex="/topics/decisions/", status=503, times=1)
    first = h.deliver(b.write_event(a["id"]))
    second = h.deliver(b.write_event(c["id"]))
    # both fixed and audited although the topic failed
    assert first.verdict == second.verdict == "remediated"
    assert {first.delivery_id, second.delivery_id} <= {r.delivery_id for r in h.stored_rows()}
    assert h.resource(a["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    # one attempt (503); after it direct publishing pauses: the second went straight to the outbox
    assert [q["status"] for q in _topic_calls(h)] == [503]
    assert _published(h) == []
    waiting = _outbox(h)
    assert sorted(i.event["id"] for i in waiting) == sorted([first.delivery_id, second.delivery_id])

    # the outbox timer, called as the Functions host calls it
    decision_outbox(_timer())
    events = _published(h)
    assert sorted(e["id"] for e in events) == sorted([first.delivery_id, second.delivery_id])
    for e in events:
        _assert_event_is_row(e, first if e["id"] == first.delivery_id else second)
    assert _outbox(h) == []
    # delivered once: another run sends nothing
    calls = len(_topic_calls(h))
    decision_outbox(_timer())
    assert len(_published(h)) == 2 and len(_topic_calls(h)) == calls


def test_outbox_run_while_the_topic_is_still_down_keeps_the_events(harness):
    a = b.storage("sta")
    h = harness([a], decision_topic=True)
    h.emu.add_fault(path_regex="/topics/decisions/", status=500)
    row = h.deliver(b.write_event(a["id"]))
    decision_outbox(_timer())
    (item,) = _outbox(h)
    assert item.event["id"] == row.delivery_id and item.attempts == 1
    assert _published(h) == []


# ---- timer decisions: kept as an intent until published -------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
HOLD = "2"


def _outbox_rows(h) -> list[dict]:
    """Every row of the outbox table, due or not (``list`` shows only the due ones)."""
    from azure.core.exceptions import ResourceNotFoundError
    try:
        return list(h.tables.table(TableOutbox(h.tables).name).list_entities())
    except ResourceNotFoundError:
        return []


def _sweep_worker(h) -> subprocess.Popen:
    """``python -m guardrails sweep`` in its own process, configured only by GUARDRAILS_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAILS_")}
    env.update(h.env)
    return subprocess.Popen([sys.executable, "-m", "guardrails", "sweep", "--subscription", b.SUB], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_timer_decision_is_an_intent_until_the_topic_took_it_then_nothing_is_left(harness):
    res = b.storage()
    h = harness([res], decision_topic=True, env={S.DECISION_INTENT_HOLD_SECONDS: HOLD})
    row = h.service.reconcile(res["id"], None, sweep_id="sweep-1")
    assert row.verdict == "remediated" and h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    (event,) = _published(h)
    _assert_event_is_row(event, row)
    assert _outbox_rows(h) == []                 # the intent was dropped once the topic took the event
    # a compliant timer decision is not published, so it keeps no intent either
    assert h.service.reconcile(res["id"], None, sweep_id="sweep-2").verdict == "compliant"
    assert _outbox_rows(h) == [] and len(_published(h)) == 1


def test_a_timer_decision_made_while_the_topic_is_down_waits_in_the_outbox_due_now(harness):
    res = b.storage()
    h = harness([res], decision_topic=True, env={S.DECISION_INTENT_HOLD_SECONDS: "900"})
    h.emu.add_fault(path_regex="/topics/decisions/", status=503, times=1)
    row = h.service.reconcile(res["id"], None, sweep_id="sweep-1")
    (kept,) = _outbox_rows(h)
    assert kept["intent"] is False and kept["last_error"] == "unavailable"     # the intent became a failure
    decision_outbox(_timer())                    # due now, not in 15 minutes
    (event,) = _published(h)
    _assert_event_is_row(event, row)
    assert _outbox_rows(h) == []


def test_a_sweep_that_died_publishing_its_decision_has_it_published_by_the_outbox_timer(harness):
    # GIVEN a sweep worker that fixed a resource and audited it, then died while its event was in flight
    res = b.storage()
    h = harness([res], decision_topic=True, env={S.DECISION_INTENT_HOLD_SECONDS: HOLD,
                                                 S.DECISION_TOPIC_TIMEOUT_SECONDS: "25"})
    h.emu.add_fault(method="POST", path_regex="/topics/decisions/", delay_ms=15_000, status=503, times=1)
    proc = _sweep_worker(h)
    deadline = time.monotonic() + 60
    while not [r for r in h.stored_rows() if r.verdict == "remediated"] and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    (audited,) = [r for r in h.stored_rows() if r.verdict == "remediated"]
    # the audit row is written before the publish is sent: kill only once the publish is in flight
    # (the topic holds it 15 s), else the timer's publish below would meet the fault meant for it
    while not [q for q in _topic_calls(h) if q["method"] == "POST"] and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()                                  # dies inside the publish: nothing reached the topic
    proc.communicate(timeout=10)
    assert _published(h) == [] and h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    (intent,) = _outbox_rows(h)
    assert intent["intent"] is True and intent["event_id"] == audited.delivery_id
    # WHILE the intent is held it is not the outbox timer's: its worker may still publish it
    decision_outbox(_timer())
    assert _published(h) == []
    # WHEN the hold has passed, the outbox timer publishes what was audited, under its own id
    time.sleep(float(HOLD) + 0.2)
    decision_outbox(_timer())
    (event,) = _published(h)
    _assert_event_is_row(event, audited)
    assert _outbox_rows(h) == []
    assert [r.delivery_id for r in h.stored_rows() if r.verdict == "remediated"] == [audited.delivery_id]


class _Died(BaseException):
    """The worker's process ending where it stands (not an error any code handles)."""


class _DiesOnWrite:
    def __init__(self, inner) -> None:
        self.inner = inner

    def write(self, row) -> None:
        raise _Died()


def test_a_timer_decision_whose_worker_died_before_its_audit_write_is_audited_then_published(harness):
    # GIVEN an exemption-expiry run that re-enforced a resource and died before writing its audit row
    res = b.storage()
    h = harness([res], decision_topic=True, env={S.DECISION_INTENT_HOLD_SECONDS: HOLD})
    real = h.service.audit
    h.service.audit = _DiesOnWrite(real)
    with pytest.raises(_Died):
        h.service.reconcile(res["id"], None, sweep_id="expiry-1", event_type="Guardrails.ExemptionExpired")
    h.service.audit = real
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"     # the fix was made
    assert h.stored_rows() == [] and _published(h) == []                               # and nothing said so
    # WHEN the outbox timer finds its intent past the hold
    time.sleep(float(HOLD) + 0.2)
    decision_outbox(_timer())
    # THEN the decision is audited as it was made, and published under the same id
    (row,) = h.stored_rows()
    assert (row.verdict, row.event_type, row.correlation_id) == ("remediated", "Guardrails.ExemptionExpired", "expiry-1")
    assert [v.outcome for v in row.violations] == ["remediated"] * len(row.violations) and row.violations
    (event,) = _published(h)
    _assert_event_is_row(event, row)
    assert [r.delivery_id for r in real.inner.read_resource(res["id"])] == [row.delivery_id]   # the resource index too
    assert _outbox_rows(h) == []


# ---- auth ------------------------------------------------------------------------------------------
def test_wrong_key_is_rejected_outboxed_and_no_key_appears_anywhere(harness, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng" + rng.token_urlsafe(30)
    a = b.storage("sta")
    h = harness([a], decision_topic=True, env={S.DECISION_TOPIC_KEY: wrong})
    row = h.deliver(b.write_event(a["id"]))
    assert row.verdict == "remediated"
    assert [q["status"] for q in _topic_calls(h)] == [401] and _published(h) == []
    (item,) = _outbox(h)
    assert item.event["id"] == row.delivery_id
    # the publisher's error names the status, never the key
    with pytest.raises(PublishError) as err:
        h.service.publisher.topic.send([item.event])
    assert err.value.reason == "unauthorized"
    outbox_entities = list(h.tables.table(TableOutbox(h.tables).name).list_entities())
    texts = ([r.getMessage() for r in caplog.records] + [json.dumps(r.to_dict()) for r in h.stored_rows()]
             + [json.dumps(e, default=str) for e in outbox_entities] + [json.dumps(h.emu.requests, default=str)]
             + [str(err.value), repr(err.value), repr(h.service.publisher.topic), repr(h.settings)])
    for secret in (wrong, *h.topic_keys):
        assert all(secret not in t for t in texts)

    # with the key fixed (a new app setting, a new worker), the outbox is delivered with the same id
    fixed = S.Settings.from_env({**h.env, S.DECISION_TOPIC_KEY: h.topic_keys[1]})
    h.service.publisher = bootstrap.decision_publisher(fixed, h.tables, credential=None)
    decision_outbox(_timer())
    (event,) = _published(h)
    _assert_event_is_row(event, row)


def test_without_a_key_the_process_identity_publishes_with_a_token(harness):
    a = b.storage("sta")
    h = harness([a], decision_topic=True, env={S.DECISION_TOPIC_KEY: ""})
    h.emu.add_topic("decisions", keys=h.topic_keys, senders=[b.GUARDRAIL_OID])
    row = h.deliver(b.write_event(a["id"]))
    (event,) = _published(h)
    _assert_event_is_row(event, row)
    assert _topic_calls(h)[0]["caller"] == b.GUARDRAIL_OID
    # a topic that does not let this identity send: 401, kept in the outbox
    h.emu.add_topic("decisions", keys=h.topic_keys, senders=["someone-else"])
    b2 = b.storage("stb")
    h.emu.put(b2)
    row2 = h.deliver(b.write_event(b2["id"]))
    assert _topic_calls(h)[-1]["status"] == 401
    assert [i.event["id"] for i in _outbox(h)] == [row2.delivery_id]


def test_no_topic_configured_means_no_publisher_and_the_timer_is_a_no_op(harness):
    a = b.storage("sta")
    h = harness([a])
    assert h.service.publisher is None
    assert h.deliver(b.write_event(a["id"])).verdict == "remediated"
    decision_outbox(_timer())
    assert _topic_calls(h) == []


# ---- the emulator's topic checks what the real one checks --------------------------------------------
CE = {"specversion": "1.0", "id": "1", "source": "/x", "type": "T", "data": {}}
EG = {"id": "1", "subject": "s", "eventType": "T", "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "data": {}}
CE_BATCH = "application/cloudevents-batch+json; charset=utf-8"


@pytest.mark.parametrize("path, query, headers, body, status, code", [
    ("decisions", "2018-01-01", {"Content-Type": CE_BATCH}, [CE], 200, None),
    ("decisions", "2018-01-01", {"Content-Type": "application/json"}, [EG], 200, None),
    ("decisions", "2018-01-01", {"Content-Type": "application/cloudevents+json"}, CE, 200, None),
    ("decisions", "2019-06-01", {"Content-Type": CE_BATCH}, [CE], 400, "BadRequest"),
    ("decisions", "2018-01-01", {"Content-Type": CE_BATCH}, b"{not json", 400, "BadRequest"),
    ("decisions", "2018-01-01", {"Content-Type": CE_BATCH}, [], 400, "BadRequest"),
    ("decisions", "2018-01-01", {"Content-Type": CE_BATCH}, [{**CE, "id": ""}], 400, "BadRequest"),
    ("decisions", "2018-01-01", {"Content-Type": CE_BATCH}, [{**CE, "specversion": "0.3"}], 400, "BadRequest"),
    ("decisions", "2018-01-01", {"Content-Type": "application/json"}, [CE], 400, "BadRequest"),
    ("decisions", "2018-01-01", {"Content-Type": "text/plain"}, [CE], 400, "BadRequest"),
    ("decisions", "2018-01-01", {"Content-Type": CE_BATCH}, [{**CE, "data": "x" * 1_100_000}], 413,
     "RequestEntityTooLarge"),
    ("no-such-topic", "2018-01-01", {"Content-Type": CE_BATCH}, [CE], 404, "NotFound"),
], ids=["cloudevents", "eventgrid-schema", "single-cloudevent", "api-version", "not-json", "empty", "no-id",
        "specversion", "schema-mismatch", "content-type", "too-large", "unknown-topic"])
def test_emulated_topic_validates_batches_like_the_real_one(harness, path, query, headers, body, status, code):
    h = harness([], decision_topic=True)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = f"{h.emu.base_url}/topics/{path}/api/events"
    resp = requests.post(url, params={"api-version": query}, data=data, verify=h.emu.ca_path,
                         headers={"aeg-sas-key": h.topic_keys[0], **headers})
    assert resp.status_code == status, resp.text
    if code:
        assert resp.json()["error"]["code"] == code
        assert _published(h) == []
    else:
        assert len(_published(h)) == 1


@pytest.mark.parametrize("auth", [{}, {"aeg-sas-key": "nope"}, {"Authorization": "Bearer garbage"},
                                  {"aeg-sas-token": "r=x&e=1&s=y"}], ids=["none", "wrong-key", "bad-token", "sas"])
def test_emulated_topic_refuses_bad_credentials_with_401(harness, auth):
    h = harness([], decision_topic=True)
    resp = requests.post(h.emu.topic_endpoint("decisions"), params={"api-version": "2018-01-01"},
                         data=json.dumps([CE]), verify=h.emu.ca_path, headers={"Content-Type": CE_BATCH, **auth})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "Unauthorized"
    assert _published(h) == []


def test_topic_adapter_maps_failures_to_reasons(harness):
    h = harness([], decision_topic=True)
    topic = EventGridTopic(h.emu.topic_endpoint("decisions"), key=h.topic_keys[0], ca_bundle=h.emu.ca_path)
    event = {**CE, "time": "2026-01-01T00:00:00Z"}
    for status, reason in ((429, "throttled"), (503, "unavailable"), (400, "rejected")):
        h.emu.add_fault(path_regex="/topics/", status=status, times=1)
        with pytest.raises(PublishError) as err:
            topic.send([event])
        assert err.value.reason == reason and str(status) in str(err.value)
    unreachable = EventGridTopic("https://127.0.0.1:9/api/events", key="k", ca_bundle=h.emu.ca_path, timeout=1)
    with pytest.raises(PublishError) as err:
        unreachable.send([event])
    assert err.value.reason == "unavailable"
    topic.send([event])
    assert len(_published(h)) == 1


def test_a_sweep_fix_whose_worker_died_before_confirming_it_is_audited_by_the_outbox_timer(harness):
    # GIVEN a sweep whose PATCH went out and whose worker then died in the confirm read: no
    # redelivery, and the next sweep would find the resource compliant and write nothing
    res = b.storage()
    h = harness([res], decision_topic=True, env={S.DECISION_INTENT_HOLD_SECONDS: HOLD})

    def dies(*_a, **_k):
        raise SystemExit("worker recycled in the confirm read")

    reads = h.service.arm.get_resource
    calls = []

    def first_read_then_die(*a, **k):
        calls.append(1)
        return reads(*a, **k) if len(calls) == 1 else dies()

    h.service.arm.get_resource = first_read_then_die
    with pytest.raises(SystemExit):
        h.service.reconcile(res["id"], None, sweep_id="sweep-died")
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"    # the fix went out
    assert [r for r in h.stored_rows() if r.resource_id == res["id"]] == []             # ... unaudited
    # WHEN the outbox timer runs after the intent's hold
    time.sleep(float(HOLD) + 0.2)
    decision_outbox(_timer())
    # THEN the fix is audited as sent (outcome unknown) and published
    (row,) = [r for r in h.stored_rows() if r.resource_id == res["id"]]
    assert row.verdict == "requested" and row.correlation_id == "sweep-died"
    assert {v.outcome for v in row.violations} == {"requested"}
    assert [e["id"] for e in _published(h)] == [row.delivery_id]


def _die_in_the_read_back(client, method: str) -> None:
    """``client.method`` answers its first call (the decision's read) and then the worker is
    recycled: the second call (the read-back after the act) never returns."""
    reads, calls = getattr(client, method), []

    def first_read_then_die(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            return reads(*a, **k)
        raise SystemExit("worker recycled in the read-back")

    setattr(client, method, first_read_then_die)


def test_a_sweep_removal_whose_worker_died_before_confirming_it_is_audited_by_the_outbox_timer(harness, tmp_path):
    # GIVEN a sweep (or a custom role's change re-judging its assignments) that deleted an Owner
    # grant at subscription scope, whose worker then died in the read-back: no redelivery, and the
    # next look finds no assignment at all
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, _policy_dir

    grant = b.role_assignment("Owner", b.BOB, name="0b0b0b0b-0000-4000-8000-0000000dead2")
    world = {"roleAssignments": [BREAK_GLASS_OWNER, grant], "roleDefinitions": [],
             "directory": {"groups": {b.DS_GROUP: [b.ALICE]}}}
    h = harness([], world=world, extra_metadata=[_policy_dir(tmp_path)], decision_topic=True,
                env={S.DECISION_INTENT_HOLD_SECONDS: HOLD})
    _die_in_the_read_back(h.service.roles.authz, "get_assignment")
    with pytest.raises(SystemExit):
        h.service.reconcile(grant["id"], None, sweep_id="sweep-died")
    assert h.emu.get_role_assignment(grant["id"]) is None                       # the removal went out
    assert [r for r in h.stored_rows() if r.resource_id.lower() == grant["id"].lower()] == []   # ... unaudited
    # WHEN the outbox timer runs after the intent's hold
    time.sleep(float(HOLD) + 0.2)
    decision_outbox(_timer())
    # THEN the removal is audited as sent (outcome unknown), who held which role where, and published
    (row,) = [r for r in h.stored_rows() if r.resource_id.lower() == grant["id"].lower()]
    assert row.verdict == "requested" and row.correlation_id == "sweep-died"
    (v,) = row.violations
    assert (v.rule, v.outcome) == ("privileged-at-subscription", "requested")
    assert v.before["role_name"] == "Owner" and v.before["principal_id"] == b.BOB
    assert "deletion sent" in v.message
    assert [e["id"] for e in _published(h)] == [row.delivery_id]


def test_an_ml_endpoint_swept_by_a_worker_that_died_before_confirming_is_audited_by_the_outbox_timer(
        harness, tmp_path):
    # GIVEN a sweep (or a model version's re-judgement of the endpoints serving it) that PUT a
    # sensitive endpoint to Entra auth and no public access, whose worker then died in the read-back
    from guardrails.local.ml_emulator import online_endpoint
    from tests.integration.test_ml_guardrail import EP, WS, policy_dir

    ep = online_endpoint(WS, "fraud-scoring", auth_mode="Key", public_network_access="Enabled",
                         tags={"data_classification": "sensitive"})
    h = harness([ep], extra_metadata=[policy_dir(tmp_path, endpoint_action="enforce")], decision_topic=True,
                env={S.DECISION_INTENT_HOLD_SECONDS: HOLD})
    _die_in_the_read_back(h.service.arm, "get_resource")
    with pytest.raises(SystemExit):
        h.service.reconcile(ep["id"], None, sweep_id="sweep-died")
    assert h.resource(EP)["properties"]["authMode"] == "AADToken"                 # the fix went out
    assert [r for r in h.stored_rows() if r.resource_id.lower() == EP.lower()] == []   # ... unaudited
    # WHEN the outbox timer runs after the intent's hold
    time.sleep(float(HOLD) + 0.2)
    decision_outbox(_timer())
    # THEN the fix is audited as sent (outcome unknown), each rule with what it set out to write
    (row,) = [r for r in h.stored_rows() if r.resource_id.lower() == EP.lower()]
    assert row.verdict == "requested" and row.correlation_id == "sweep-died"
    assert {v.rule: (v.before, v.after, v.outcome) for v in row.violations} == {
        "endpoint-auth-mode": ("Key", "AADToken", "requested"),
        "endpoint-public-access": ("Enabled", "Disabled", "requested")}
    assert [e["id"] for e in _published(h)] == [row.delivery_id]
