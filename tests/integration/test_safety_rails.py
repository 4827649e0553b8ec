"""Safety rails end to end (Azurite + HTTPS emulator + real SDK clients, through the trigger):
flip-flop escalation, shadow mode, private-endpoint-aware revert. Assertions are on the
emulator's resulting state, the audit rows and the escalation table."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from guardrails.adapters.escalations import TableEscalationStore
from guardrails.cli import main as cli_main
from guardrails.local.arm_emulator_pec import connection
from guardrails.model.policy import FlipFlop
from tests import builders as b

pytestmark = pytest.mark.integration

PIPELINE_OID = "5c1d7a0e-3b7f-4e8a-9c0d-2f6e1a4b8d3c"
PIPELINE = b.claims(PIPELINE_OID, app_id="0f0e0d0c-1111-2222-3333-444455556666", upn=None)

STORAGE_POLICY = """\
id: storage-private
version: 7
description: Storage accounts are private (test variant).
mode: enforce
contact: ml-platform@contoso.com
flip_flop: {{max_reverts: 2, window_minutes: 30}}
selector:
  resource_types: [Microsoft.Storage/storageAccounts]
rules:
  - id: public-network-access-disabled
    property: properties.publicNetworkAccess
    expect: {{equals: Disabled}}
    action: {{type: set-property, value: Disabled}}
{pe}"""


def policy_dir(tmp_path, text: str, name: str = "policy.yaml"):
    d = tmp_path / "meta"
    d.mkdir(exist_ok=True)
    (d / name).write_text(textwrap.dedent(text))
    return d


def flip(h, res):
    """Someone (the pipeline) makes the account public again."""
    live = h.resource(res["id"])
    live["properties"]["publicNetworkAccess"] = "Enabled"
    h.emu.put(live)


# ---- flip-flop ------------------------------------------------------------------------------------
def test_flip_flop_is_escalated_on_the_revert_after_n_and_held_until_reset(harness, tmp_path, caplog, monkeypatch):
    res = b.storage(blob=False, tags={"owner": "team-vision@contoso.com"})
    h = harness([res], extra_metadata=[policy_dir(tmp_path, STORAGE_POLICY.format(pe=""))])
    # N = 2 reverts are made
    for _ in range(2):
        flip(h, res)
        row = h.deliver(b.write_event(res["id"], actor=PIPELINE))
        assert row.verdict == "remediated"
        assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    # the (N+1)th is not: escalated, actor named, owner told, the resource left as the pipeline set it
    flip(h, res)
    h.emu.clear_requests()
    with caplog.at_level("WARNING", logger="guardrails"):
        row = h.deliver(b.write_event(res["id"], actor=PIPELINE))
    assert row.verdict == "escalated" and row.reason == "flip_flop" and row.notify
    (v,) = row.violations
    assert v.outcome == "escalated" and PIPELINE_OID in v.message and "escalated now" in v.message
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    assert h.writes() == []
    told = [r for r in caplog.records if getattr(r, "event", "") == "guardrail_violation_notify"
            or "guardrail_violation_notify" in r.getMessage()]
    assert told and "team-vision@contoso.com" in told[-1].getMessage()
    # it holds: the next attempt is recorded, not reverted
    row = h.deliver(b.write_event(res["id"], actor=b.claims()))
    assert row.verdict == "escalated" and "still escalated" in row.violations[0].message
    assert "alice@contoso.com" in row.violations[0].message and h.writes() == []
    # the stored state names both actors; the audit table has every decision
    store = TableEscalationStore(h.tables)
    state = store.status(res["id"])
    assert state["escalated"] and len(state["times"]) == 2
    assert {a["object_id"] for a in state["actors"]} == {PIPELINE_OID, b.ALICE}
    assert [r.verdict for r in h.service.audit.inner.read_resource(res["id"])].count("escalated") == 2
    # an operator settles the fight and resets: the next change is reverted again
    for k, val in h.env.items():
        monkeypatch.setenv(k, val)
    assert cli_main(["escalation", "status", res["id"]]) == 0
    assert cli_main(["escalation", "reset", res["id"]]) == 0
    assert store.status(res["id"]) is None
    row = h.deliver(b.write_event(res["id"], actor=PIPELINE))
    assert row.verdict == "remediated"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_redeliveries_of_one_change_whose_revert_failed_count_once(harness, tmp_path):
    """Event Grid redelivers an event whose revert failed; each attempt is the same revert, not a
    new flip: with a budget of 2, three failed attempts then a healthy ARM still revert it."""
    res = b.storage(blob=False)
    h = harness([res], extra_metadata=[policy_dir(tmp_path, STORAGE_POLICY.format(pe=""))])
    h.emu.add_fault(method="PATCH", path_regex="storageAccounts/", status=403, times=3)
    event = b.write_event(res["id"], actor=PIPELINE)
    for _ in range(3):
        assert h.deliver(event).verdict == "failed"
    row = h.deliver(event)
    assert row.verdict == "remediated", row.message
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    # the budget still counts distinct changes: two more flips are reverted, the third escalates
    verdicts = []
    for _ in range(2):
        flip(h, res)
        verdicts.append(h.deliver(b.write_event(res["id"], actor=PIPELINE)).verdict)
    assert verdicts == ["remediated", "escalated"]


def test_the_owner_is_the_policy_contact_when_the_resource_has_no_owner_tag(harness, tmp_path, caplog):
    res = b.storage(blob=False, tags={})
    h = harness([res], extra_metadata=[policy_dir(tmp_path, STORAGE_POLICY.format(pe=""))])
    for _ in range(3):
        flip(h, res)
        with caplog.at_level("WARNING", logger="guardrails"):
            row = h.deliver(b.write_event(res["id"], actor=PIPELINE))
    assert row.verdict == "escalated"
    assert "ml-platform@contoso.com" in caplog.text


def test_two_workers_share_one_revert_budget(harness):
    # GIVEN two workers (two store instances, each with its own cached etag) on one table
    h = harness([])
    rid = b.storage()["id"]
    w1, w2 = TableEscalationStore(h.tables), TableEscalationStore(h.tables)
    rule = FlipFlop(max_reverts=3, window_minutes=60)
    allowed = [w.attempt(rid, {"object_id": PIPELINE_OID}, rule=rule).allowed for w in (w1, w2, w1, w2, w1, w2)]
    # THEN exactly three reverts are allowed in all, whichever worker asks
    assert allowed == [True, True, True, False, False, False]


# ---- shadow mode ----------------------------------------------------------------------------------
SHADOW = """\
id: storage-private
version: 2
description: Stricter storage baseline being proven in shadow - TLS 1.2 as well.
mode: shadow
selector:
  resource_types: [Microsoft.Storage/storageAccounts]
rules:
  - id: public-network-access-disabled
    property: properties.publicNetworkAccess
    expect: {equals: Disabled}
    action: {type: set-property, value: Disabled}
  - id: tls-1-2
    property: properties.minimumTlsVersion
    expect: {equals: TLS1_2}
    action: {type: set-property, value: TLS1_2}
"""


def test_shadow_records_what_it_would_do_without_acting(harness, tmp_path):
    res = b.storage(pna="Disabled", blob=False)
    res["properties"]["minimumTlsVersion"] = "TLS1_0"
    h = harness([res], extra_metadata=[policy_dir(tmp_path, SHADOW, "storage-v2-shadow.yaml")])
    event = b.write_event(res["id"])
    row = h.deliver(event)
    # the enforced version is satisfied; the shadow version would have fixed TLS
    assert row.verdict == "compliant" and row.policies == ["storage-private@1"]
    assert h.writes() == [] and h.resource(res["id"])["properties"]["minimumTlsVersion"] == "TLS1_0"
    stored = [r for r in h.stored_rows() if r.event_id == event["id"]]
    (shadow,) = [r for r in stored if r.verdict == "shadow"]
    assert shadow.reason == "remediated" and shadow.policies == ["storage-private@2"]
    assert [(v.rule, v.before, v.after, v.outcome) for v in shadow.violations] == [
        ("tls-1-2", "TLS1_0", "TLS1_2", "shadow")]
    assert shadow.delivery_id == row.delivery_id + "-shadow"
    # a redelivery is a duplicate: no second decision, no second shadow row
    again = h.deliver(event)
    assert again.verdict == "duplicate"
    assert len([r for r in h.stored_rows() if r.event_id == event["id"] and r.verdict == "shadow"]) == 1


def test_shadow_beside_a_fix_only_the_enforced_version_acts(harness, tmp_path):
    res = b.storage(pna="Enabled", blob=False)
    res["properties"]["minimumTlsVersion"] = "TLS1_2"
    h = harness([res], extra_metadata=[policy_dir(tmp_path, SHADOW, "storage-v2-shadow.yaml")])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    (shadow,) = [r for r in h.recorder.rows if r.verdict == "shadow"]
    assert shadow.reason == "remediated" and [v.rule for v in shadow.violations] == ["public-network-access-disabled"]
    # one read served both versions
    assert [q["method"] for q in h.arm_requests()] == ["GET", "PATCH", "GET"]


def test_a_resource_only_a_shadow_policy_selects_is_read_and_shadowed(harness, tmp_path):
    # GIVEN the enforced storage baseline switched off and a new policy proven in shadow
    off = STORAGE_POLICY.format(pe="").replace("mode: enforce", "mode: off")
    new = SHADOW.replace("id: storage-private", "id: storage-tls-new").replace("version: 2", "version: 1")
    d = policy_dir(tmp_path, off)
    (d / "tls.yaml").write_text(new)
    res = b.storage(pna="Disabled", blob=False)
    res["properties"]["minimumTlsVersion"] = "TLS1_1"
    h = harness([res], extra_metadata=[d])
    row = h.deliver(b.write_event(res["id"]))
    # THEN no enforced policy decides (nothing written), and the shadow row says what would happen
    assert row.verdict == "ignored" and row.reason == "no_policy"
    (shadow,) = [r for r in h.recorder.rows if r.verdict == "shadow"]
    assert shadow.policies == ["storage-tls-new@1"] and shadow.reason == "remediated"
    assert [q["method"] for q in h.arm_requests()] == ["GET"]


def test_on_demand_checks_do_not_write_shadow_rows(harness, tmp_path):
    res = b.storage(pna="Disabled", blob=False)
    h = harness([res], extra_metadata=[policy_dir(tmp_path, SHADOW, "storage-v2-shadow.yaml")])
    row = h.service.check_resource(res["id"], remediate=False)
    assert row.verdict == "compliant"
    assert not [r for r in h.recorder.rows if r.verdict == "shadow"]


# ---- private endpoint first -----------------------------------------------------------------------
PE_NOTIFY = "    private_endpoint: {required: true, when_missing: notify}\n"
PE_ENFORCE = "    private_endpoint: {required: true, when_missing: enforce}\n"


def test_no_approved_private_endpoint_means_notify_not_revert(harness, tmp_path, caplog):
    res = b.storage(blob=False, tags={"owner": "team-vision@contoso.com"})
    res["properties"]["privateEndpointConnections"] = [connection(res["id"], "pe-blob", status="Pending")]
    h = harness([res], extra_metadata=[policy_dir(tmp_path, STORAGE_POLICY.format(pe=PE_NOTIFY))])
    with caplog.at_level("WARNING", logger="guardrails"):
        row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "violation" and row.notify
    (v,) = row.violations
    assert v.outcome == "violation" and "no approved private endpoint connection" in v.message
    assert h.writes() == [] and h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    assert "team-vision@contoso.com" in caplog.text
    # the network team approves the connection (through the child resource, as in ARM) ...
    conn_id = res["properties"]["privateEndpointConnections"][0]["id"]
    h.service.arm.put_resource(conn_id, {"properties": {"privateLinkServiceConnectionState": {
        "status": "Approved", "description": "approved by netops"}}}, api_version="2025-06-01",
        etag=None, deadline=time.monotonic() + 10)
    # ... and the next change is reverted: private clients now have their path
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    live = h.resource(res["id"])["properties"]
    assert live["publicNetworkAccess"] == "Disabled"
    assert live["privateEndpointConnections"][0]["properties"]["privateLinkServiceConnectionState"]["status"] == "Approved"


def test_when_missing_enforce_reverts_anyway_and_says_so(harness, tmp_path):
    res = b.storage(blob=False)
    h = harness([res], extra_metadata=[policy_dir(tmp_path, STORAGE_POLICY.format(pe=PE_ENFORCE))])
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated"
    assert "enforced without an approved private endpoint connection" in row.violations[0].message
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_connections_are_read_only_on_the_parent(harness):
    res = b.storage(blob=False)
    res["properties"]["privateEndpointConnections"] = [connection(res["id"], "pe-1")]
    h = harness([res])
    body = json.loads(json.dumps(h.resource(res["id"])))
    body["properties"]["privateEndpointConnections"] = []
    for k in ("id", "name", "type", "etag", "systemData"):
        body.pop(k, None)
    h.service.arm.put_resource(res["id"], body, api_version="2025-06-01", etag=None, deadline=time.monotonic() + 10)
    assert [c["name"] for c in h.resource(res["id"])["properties"]["privateEndpointConnections"]] == ["pe-1"]
