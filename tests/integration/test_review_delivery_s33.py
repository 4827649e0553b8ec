"""Review s33: Event Grid delivery semantics on the resource-event path (at-least-once, any order).

Real Azurite + the local HTTPS emulator through the real SDK clients and the trigger function.
Tests named ``test_control_*`` pass on the current code and show the boundary; the others fail
on it and say what is wrong.
"""

from __future__ import annotations

import threading
import time

import pytest

from guardrails.model.resource import lookup_type
from guardrails.service import DeliveryFailed
from tests import builders as b
from tests.integration.test_delivery import _at, _deliver_raw, _kill_when

pytestmark = pytest.mark.integration
ST_API = lookup_type("Microsoft.Storage/storageAccounts").api_version


# ---- (5) a worker dying mid-event, then a takeover that itself fails ---------------------------
def test_a_dead_attempts_fix_is_still_recovered_when_the_first_takeover_fails_transiently(harness, tmp_path):
    """DEFECT. Attempt A reverts a public storage account and is killed before its audit row. The
    takeover B (after the in-progress expiry) meets a refusal on its read (a 403 here; a 429 or a
    5xx past the budget the same) and ends ``failed``: ``_once`` then *releases* the claim, which
    ``TableIdempotencyStore.release`` does by deleting the record, so the takeover marker (holder
    A) is gone. Event Grid's next retry C creates a fresh claim, is no takeover, and records a bare
    ``compliant``: A's revert — the violation and who made it — is never on the audit table,
    though the README promises that a retry taking over a dead attempt records it as
    ``remediated``. Expected: some row of this event records the revert (``remediated``, "earlier
    delivery"), as when the first takeover succeeds (test_delivery's control of that case)."""
    res = b.storage()
    h = harness([res], env={"GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS": "2"})
    h.emu.add_fault(method="GET", path_regex="stmlprod", times=1)                   # A's read: as is
    h.emu.add_fault(method="GET", path_regex="stmlprod", delay_ms=15_000, times=1)  # A's read-back hangs
    event = b.write_event(res["id"])
    _kill_when(h, event, tmp_path, lambda: h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled")
    assert [q["method"] for q in h.writes()] == ["PATCH"] and h.stored_rows() == []
    time.sleep(2.2)
    # B takes the event over and its read is refused: failed, released, redelivered
    h.emu.add_fault(method="GET", path_regex="stmlprod", status=403, code="AuthorizationFailed", times=1)
    assert isinstance(_deliver_raw(event), DeliveryFailed)
    assert [(r.verdict, r.reason) for r in h.recorder.rows] == [("failed", "forbidden")]
    # C: the role is back, Event Grid retries
    assert _deliver_raw(event) is None
    assert len(h.writes()) == 1                                   # nothing written twice (holds today)
    verdicts = [r.verdict for r in h.stored_rows()]
    assert "remediated" in verdicts, (
        f"the dead attempt's revert was never audited: rows {verdicts} (expected one 'remediated', "
        "an earlier delivery's fix)")



def test_a_dead_attempts_role_removal_is_still_recovered_when_the_first_takeover_fails(harness, tmp_path):
    """DEFECT (same root cause, role path). Attempt A notes its removal intent on the event's claim
    (``note_intent``), DELETEs an Owner grant and is killed before its audit row. Takeover B carries
    that intent, but its read of the assignment is throttled past the budget (``failed``), and
    ``release`` deletes the claim — intent and all. Retry C starts from nothing and finds a 404:
    ``ignored`` / ``resource_not_found``; nobody's removal of an Owner grant is ever audited.
    Expected: the removal recorded (``remediated``, "earlier delivery") by the retry that succeeds."""
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, _policy_dir

    grant = b.role_assignment("Owner", b.BOB, name="0b0b0b0b-0000-4000-8000-0000000d3ad2")
    world = {"roleAssignments": [BREAK_GLASS_OWNER, grant], "roleDefinitions": [],
             "directory": {"groups": {b.DS_GROUP: [b.ALICE]}}}
    h = harness([], world=world, extra_metadata=[_policy_dir(tmp_path)],
                env={"GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS": "2", "GUARDRAILS_TIME_BUDGET_SECONDS": "2"})
    h.emu.add_fault(method="GET", path_regex="0000000d3ad2", times=1)                   # A's read: as is
    h.emu.add_fault(method="GET", path_regex="0000000d3ad2", delay_ms=15_000, times=1)  # A's read-back hangs
    event = b.role_event(grant)
    _kill_when(h, event, tmp_path, lambda: h.emu.get_role_assignment(grant["id"]) is None)
    assert h.stored_rows() == []
    time.sleep(2.2)
    h.emu.add_fault(method="GET", path_regex="0000000d3ad2", status=429, retry_after=30, times=1)
    assert isinstance(_deliver_raw(event), DeliveryFailed)          # B: throttled past its budget
    assert [(r.verdict, r.reason) for r in h.recorder.rows] == [("failed", "throttled")]
    assert _deliver_raw(event) is None                              # C
    rows = [(r.verdict, r.reason) for r in h.stored_rows()]
    assert ("remediated", "") in rows, f"the Owner grant's removal is on no audit row: {rows}"

# ---- (4) a burst for one resource while the guardrail's own long-running fix still runs -----------
def test_a_burst_during_a_running_long_running_fix_sends_no_second_fix_and_does_not_escalate(harness):
    """DEFECT. README, "Bursts for one resource": deliveries for one resource take turns in a worker
    and diff before writing, "so a second fix is never sent". That holds only for fixes that finish
    inside their delivery. An ML workspace's PATCH is long-running: the first event's fix is left
    ``requested`` (recorded in GuardrailsPendingFixes) and, while it runs, ARM still reads the old
    ``publicNetworkAccess``. Every further (queued, older) event
    of the same deployment burst is then decided on that read (``ResourceGuardrail.decide`` never consults the
    pending fixes it keeps itself) and sends the same PATCH again — each one also counted as a
    separate revert by the flip-flop rail, so the 4th event of one burst is ``escalated`` (owner told
    the guardrail "reverted 3 times" in a fight that never happened) while a fast resource type
    with the same burst is ``remediated, compliant, compliant, compliant``. Expected: one PATCH;
    the later deliveries see the fix in flight (``requested``, no new write, no new flip-flop
    count) and nothing is escalated."""
    res = b.workspace()
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1"}, lro_seconds=12)
    # a deployment touched the workspace four times; the events queued a few seconds (all of them
    # older than the guardrail's first read and fix)
    burst = [_at(b.write_event(res["id"]), 8 - i) for i in range(4)]
    rows = [h.deliver(e) for e in burst]
    assert rows[0].verdict == "requested"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"   # the fix still runs
    verdicts = [r.verdict for r in rows]
    assert "escalated" not in verdicts, f"one burst escalated as a flip-flop fight: {verdicts}"
    assert len(h.arm_requests("PATCH")) == 1, (
        f"{len(h.arm_requests('PATCH'))} PATCHes sent for one fix already in flight: {verdicts}")


def test_a_burst_during_a_running_fix_costs_one_read_and_one_pending_lookup_per_event(harness):
    """Fix s33 (cost of the burst fix). While the first event's long-running fix runs, the rest of
    the burst costs one ARM read (reused for the older events) and one pending-fix lookup per
    event (the resource reads ``Updating``), no write; a compliant decision and a fix that
    finishes in its delivery look up no pending fix at all (test_delivery's own-write cost test)."""
    from tests.integration.test_delivery import _CountingPending

    res = b.workspace()
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1"}, lro_seconds=12)
    h.service.pending = counting = _CountingPending(h.service.pending)
    burst = [_at(b.write_event(res["id"]), 8 - i) for i in range(3)]
    assert h.deliver(burst[0]).verdict == "requested" and counting.lookups == 0
    h.emu.clear_requests()
    rows = [h.deliver(e) for e in burst[1:]]
    assert [r.verdict for r in rows] == ["requested", "requested"]
    assert all("fix in flight since event " + burst[0]["id"] in r.violations[0].message for r in rows)
    assert [q["method"] for q in h.arm_requests()] == ["GET"] and counting.lookups == 2


# ---- (1) any order: a long-running fix's own event, decided on what happened since --------------
def _requested_fix(harness, *, fail: bool = False):
    """A workspace whose fix was left ``requested`` (1 s budget, 2 s long-running PATCH) and has
    finished since (``fail``: ended ``Failed``): ``(h, res, its own write event)``."""
    res = b.workspace()
    h = harness([res], env={"GUARDRAILS_TIME_BUDGET_SECONDS": "1"}, lro_seconds=2)
    if fail:
        h.emu.fail_operations("mlw-prod", times=1)
    assert h.deliver(b.write_event(res["id"])).verdict == "requested"
    time.sleep(2.5)
    (own,) = h.emu.drain_events()
    assert own["eventType"] == ("Microsoft.Resources.ResourceWriteFailure" if fail
                                else "Microsoft.Resources.ResourceWriteSuccess")
    return h, res, own


def _set_by(h, rid: str, pna: str, who: str) -> None:
    """Someone else writes the resource now (ARM's systemData says who and when)."""
    live = h.resource(rid)
    live["properties"]["publicNetworkAccess"] = pna
    live["systemData"] = {"lastModifiedBy": who, "lastModifiedByType": "User",
                          "lastModifiedAt": b._now_iso()}
    h.emu.put(live)


def test_a_fix_arm_reported_succeeded_is_not_audited_failed_because_of_a_later_change(harness):
    """DEFECT. The guardrail's long-running fix of a workspace finishes (ARM emits its
    ``ResourceWriteSuccess`` with the fix's correlation id); a moment later Bob opens the workspace
    again, and the events reach the guardrail in the usual order (its own first). The confirmation
    (``PendingConfirmations._judge_pending``) decides only by a read *now*: it finds Bob's value and
    audits the fix ``failed`` / ``not_confirmed`` and notifies the owner — "the fix did not hold" —
    although ARM said the write was applied and the value read is a newer change, which Bob's own
    event decides (and reverts) separately. Expected: the fix is confirmed (``remediated``) by its
    own success event; the later change is not a failure of this fix (the resource's ``systemData``
    says it was modified by someone else after the fix's event, if the read-back is to be kept)."""
    h, res, own = _requested_fix(harness)
    _set_by(h, res["id"], "Enabled", "bob@contoso.com")
    row = h.deliver(own)
    assert [v.outcome for v in row.violations] == ["remediated"], (
        f"a fix ARM applied is audited {row.verdict}/{row.reason} (notify={row.notify}): {row.message}")
    assert (row.verdict, row.notify) == ("remediated", False)
    # and Bob's change is still decided on its own event (control of the boundary)
    bob = h.deliver(b.write_event(res["id"], actor=b.claims(b.BOB, upn="bob@contoso.com")))
    assert bob.verdict in ("remediated", "requested")


def test_a_fix_arm_reported_failed_is_not_audited_remediated_because_someone_else_fixed_it(harness):
    """DEFECT. README (Delivery semantics): a long-running fix whose operation fails comes back as
    its own ``ResourceWriteFailure``, "read back the same way and the fix is audited ``failed``
    (``not_confirmed``, owner notified)". ``_judge_pending`` ignores which event it was: when the
    read-back happens to show the target value (the owner closed the workspace by hand, or another
    event's fix did), the failed write is audited ``remediated`` — "long-running fix of event …
    confirmed by its write event", the event being the write's *failure*. The audit table then
    credits the guardrail with a fix ARM refused (time-to-remediate, remediation counts, the
    decision event). Expected: not ``remediated``; the fix is recorded ``failed`` (the resource
    may be reported compliant now, but the row must not say this fix was made)."""
    h, res, own = _requested_fix(harness, fail=True)
    _set_by(h, res["id"], "Disabled", "owner@contoso.com")
    row = h.deliver(own)
    assert "remediated" not in [v.outcome for v in row.violations], (
        f"a fix whose write FAILED is audited as made: {row.verdict}: {[v.message for v in row.violations]}")


def test_a_new_change_after_a_long_running_fix_ended_is_fixed_before_that_fix_is_confirmed(harness):
    """Fix s33 (boundary of the burst fix). The fix ended and Bob opened the workspace again; his
    event arrives before the fix's own write event is handled (its pending record still there):
    the resource was written by someone else since the fix was sent (``systemData``), so his
    change is a new one and is fixed, not taken for the fix in flight."""
    h, res, own = _requested_fix(harness)
    _set_by(h, res["id"], "Enabled", "bob@contoso.com")
    h.emu.clear_requests()
    row = h.deliver(b.write_event(res["id"], actor=b.claims(b.BOB, upn="bob@contoso.com")))
    assert row.verdict in ("remediated", "requested") and len(h.arm_requests("PATCH")) == 1


def test_control_a_fix_arm_reported_succeeded_that_does_not_hold_with_no_later_writer_is_failed(harness):
    """Fix s33 (boundary of the succeeded-fix fix). ARM said the fix's write succeeded, but the
    read-back shows the old value and nobody wrote the resource after it (a provider silently
    ignoring the property): still ``failed`` / ``not_confirmed``, owner told."""
    h, res, own = _requested_fix(harness)
    live = h.resource(res["id"])
    live["properties"]["publicNetworkAccess"] = "Enabled"       # systemData: the fix's own write
    h.emu.put(live)
    row = h.deliver(own)
    assert (row.verdict, row.reason, row.notify) == ("failed", "not_confirmed", True)


# ---- (6) events for deleted resources -------------------------------------------------------------
def _as(h, who: str, upn: str = "bob@contoso.com"):
    """A real ARM client (the SDK) acting in the emulated world as ``who`` (a user's object id)."""
    from tests.integration.test_emulator import client_for
    return client_for(h.emu, object_id=who, upn=upn)


def test_a_resource_deleted_while_its_fix_is_sent_is_not_a_failed_fix(harness):
    """DEFECT (low). Bob deletes a public storage account while the guardrail's PATCH is on its way
    (ML teams create and drop scratch accounts in minutes). ARM answers the PATCH 404;
    ``ResourceGuardrail._apply`` turns that into ``failed`` records, so the delivery is audited
    ``failed`` (reason ``resource_not_found``), publishes a ``Guardrails.Decision.Failed`` event to
    the SOC's subscribers and raises for a redelivery — a fix alarm for a resource that no longer
    exists, whereas a 404 on the read just before is ``ignored`` / ``resource_not_found`` (not
    raised, not published). Expected: the same outcome whichever of the two requests met the 404:
    not ``failed``, nothing raised, no failed-decision event."""
    res = b.storage()
    h = harness([res], decision_topic=True)
    h.emu.add_fault(method="PATCH", path_regex="stmlprod", delay_ms=1500, times=1)   # the fix travels slowly
    bob = _as(h, b.BOB)
    deleter = threading.Timer(0.5, lambda: bob.resources.begin_delete_by_id(res["id"], api_version=ST_API)
                              .result())
    deleter.start()
    err = _deliver_raw(b.write_event(res["id"]))
    deleter.join(10)
    bob.close()
    assert h.emu.get(res["id"]) is None                        # gone before the PATCH was served
    (row,) = h.recorder.rows
    published = [e["type"] for e in h.emu.published_events("decisions")]
    assert row.verdict != "failed" and err is None and "Guardrails.Decision.Failed" not in published, (
        f"a fix of a deleted resource: {row.verdict}/{row.reason}, raised {err!r}, published {published}")


def test_control_an_event_for_a_deleted_resource_is_ignored_once_and_its_redelivery_is_a_duplicate(harness):
    """CONTROL (passes). 404 on the read: ``ignored`` / ``resource_not_found``, one GET, no write,
    nothing raised; Event Grid's redelivery (to another worker too) is a ``duplicate``."""
    res = b.storage()
    h = harness([res])
    bob = _as(h, b.BOB)
    bob.resources.begin_delete_by_id(res["id"], api_version=ST_API).result()
    bob.close()
    (_delete_event,) = h.emu.drain_events()
    event = b.write_event(res["id"])                            # Alice's earlier write, delivered late
    h.emu.clear_requests()
    row = h.deliver(event)
    assert (row.verdict, row.reason) == ("ignored", "resource_not_found")
    assert [q["method"] for q in h.arm_requests()] == ["GET"]
    h.service.idempotency.forget_completed()                    # another instance
    assert h.deliver(event).verdict == "duplicate"
    assert h.writes() == []


# ---- (3) the guardrail's own writes, and writes that only look like them ----------------------------
_OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"


def _claims(**extra) -> dict:
    c = b.claims(b.BOB, app_id=b.ALICE_APP, upn="bob@contoso.com")
    for k, v in extra.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


OWN_SHAPES = {
    "oid-uri": _claims(**{_OID: b.GUARDRAIL_OID, "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": None}),
    "oid-v2-short-key": {**_claims(**{_OID: None}), "oid": b.GUARDRAIL_OID, "azp": b.GUARDRAIL_OID},
    "oid-dashless-upper": _claims(**{_OID: b.GUARDRAIL_OID.replace("-", "").upper()}),
    "app-only-no-oid": _claims(**{_OID: None, "appid": b.GUARDRAIL_OID}),
}
FORGED_SHAPES = {
    "user-through-guardrail-client-id": _claims(appid=b.GUARDRAIL_OID),
    "uri-oid-other-short-oid-guardrail": _claims(oid=b.GUARDRAIL_OID),
    "mi-resource-id-and-name-only": _claims(xms_mirid="/subscriptions/x/resourceGroups/rg/providers/"
                                            "Microsoft.ManagedIdentity/userAssignedIdentities/guardrails",
                                            name="guardrails-local", idtyp="app"),
    "tenant-qualified-oid": _claims(**{_OID: f"{b.TENANT}/{b.GUARDRAIL_OID}"}),
    "oid-with-extra-digit": _claims(**{_OID: b.GUARDRAIL_OID + "0"}),
}


@pytest.mark.parametrize("shape", sorted(OWN_SHAPES))
def test_control_own_write_claim_shapes_are_ignored_with_zero_arm_calls(harness, shape):
    """CONTROL (passes). The guardrail's own write in each claims shape a token may carry: object id
    as the URI claim or the v2 ``oid``, any case, dashless; an app-only token without an object id
    decided by ``appid``: ``ignored`` / ``own_write``, no ARM call, no loop."""
    res = b.storage()
    h = harness([res])
    row = h.deliver(b.write_event(res["id"], actor=OWN_SHAPES[shape]))
    assert (row.verdict, row.reason) == ("ignored", "own_write")
    assert h.arm_requests() == []


@pytest.mark.parametrize("shape", sorted(FORGED_SHAPES))
def test_control_a_write_that_only_looks_like_the_guardrails_own_is_decided(harness, shape):
    """CONTROL (passes). Someone else's write whose claims merely resemble the guardrail's (its
    client id as ``appid`` beside the user's object id, its object id under a second key, a managed
    identity's ``xms_mirid``/name, a tenant-qualified or lengthened object id) is decided and fixed."""
    res = b.storage()
    h = harness([res])
    row = h.deliver(b.write_event(res["id"], actor=FORGED_SHAPES[shape]))
    assert row.verdict == "remediated", (row.verdict, row.reason)
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_control_the_guardrails_real_own_write_events_never_loop(harness):
    """CONTROL (passes). The events the emulator emits for the guardrail's own PATCH (its token's
    claims) are ignored; nothing is written again however often they are redelivered."""
    res = b.key_vault()
    h = harness([res])
    assert h.deliver(b.write_event(res["id"])).verdict == "remediated"
    for _ in range(3):
        for own in h.emu.drain_events():
            row = h.deliver(own)
            assert (row.verdict, row.reason) == ("ignored", "own_write")
            h.deliver(own)
    assert len(h.writes()) == 1


# ---- (1) any order: decisions on the live state, never on the event ---------------------------------
def _pna(client, rid: str, value: str) -> None:
    client.resources.begin_update_by_id(rid, {"properties": {"publicNetworkAccess": value}},
                                        api_version=ST_API).result()


def test_control_an_older_event_after_a_later_legitimate_change_is_not_reverted_again(harness):
    """CONTROL (passes). Alice opens the account (T1), Bob closes it again (T2); Event Grid delivers
    Bob's event first. Alice's older event is decided on the live state (Disabled): no write, no
    revert of what Bob made compliant, on this worker and on another one (no shared cache)."""
    res = b.storage(pna="Disabled", blob=False)
    h = harness([res])
    alice, bob = _as(h, b.ALICE, "alice@contoso.com"), _as(h, b.BOB)
    _pna(alice, res["id"], "Enabled")
    _pna(bob, res["id"], "Disabled")
    alice.close(), bob.close()
    e_alice, e_bob = h.emu.drain_events()
    assert h.deliver(e_bob).verdict == "compliant"
    assert h.deliver(e_alice).verdict == "compliant"
    from guardrails import bootstrap
    other = bootstrap.build_service(h.settings)
    assert other.handle_event(e_alice).verdict == "duplicate"
    assert sorted(q["caller"] for q in h.writes()) == sorted([b.ALICE, b.BOB])   # the guardrail wrote nothing


def test_control_an_older_event_is_not_decided_compliant_on_a_read_older_than_the_current_violation(harness):
    """CONTROL (passes). Bob closes the account (T1, decided: compliant, the read cached); Alice
    opens it (T2). Bob's older event redelivered under a new id (a second topic) reuses nothing
    stale and Alice's event is reverted: the current violation is never skipped."""
    res = b.storage(pna="Enabled", blob=False)
    h = harness([res])
    alice, bob = _as(h, b.ALICE, "alice@contoso.com"), _as(h, b.BOB)
    _pna(bob, res["id"], "Disabled")
    (e_bob,) = h.emu.drain_events()
    assert h.deliver(e_bob).verdict == "compliant"
    time.sleep(1.2)                                     # past the clock-skew allowance
    _pna(alice, res["id"], "Enabled")
    alice.close(), bob.close()
    (e_alice,) = h.emu.drain_events()
    again = dict(e_bob, id="copy-" + e_bob["id"])
    rows = [h.deliver(again), h.deliver(e_alice)]
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert "remediated" in [r.verdict for r in rows]


# ---- (4) two different events for one resource at the same time -----------------------------------
def _registry():
    res = b.ml_registry(pna="Enabled")
    res["sku"] = {"name": "Premium", "tier": "Premium"}
    return res


def _race(services, events) -> dict:
    """Each service decides its event in its own thread, the first one's PUT held 0.7 s."""
    out: dict = {}

    def run(i):
        try:
            out[i] = services[i].handle_event(events[i])
        except Exception as exc:  # noqa: BLE001 - what the host would see
            out[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(events))]
    threads[0].start()
    time.sleep(0.3)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_control_two_events_for_one_registry_in_one_worker_send_one_put(harness):
    """CONTROL (passes). Two threads of one worker, two different events for one ML registry (full
    PUT with If-Match): they take turns; one PUT, one ``remediated`` and one ``compliant``."""
    res = _registry()
    h = harness([res])
    h.emu.add_fault(method="PUT", path_regex="mlreg-shared", delay_ms=700, times=1)
    out = _race([h.service, h.service], [b.write_event(res["id"]), b.write_event(res["id"])])
    assert sorted(getattr(r, "verdict", repr(r)) for r in out.values()) == ["compliant", "remediated"]
    assert len(h.writes()) == 1


def test_two_workers_fixing_one_registry_at_once_do_not_audit_a_failed_fix(harness):
    """DEFECT (low). Event Grid spreads a burst over instances: two workers decide two events of one
    public ML registry at once. Both read etag E1; the second's PUT (If-Match E1) lands first; the
    first's PUT then meets ``412`` and ``ResourceGuardrail._apply`` audits it ``failed`` /
    ``arm_error`` ("fix failed", published as ``Guardrails.Decision.Failed``, the flip-flop count
    kept as a revert) and raises for a redelivery — although the registry is exactly as the fix
    wanted it. The If-Match did its job (no overwrite); a ``412`` is a stale read, not a refusal:
    expected, the losing delivery reads again and decides on the new state within its budget
    (``compliant``), no ``failed`` row."""
    from guardrails import bootstrap

    res = _registry()
    h = harness([res])
    other = bootstrap.build_service(h.settings)                  # a second instance
    other.audit = h.recorder
    h.emu.add_fault(method="PUT", path_regex="mlreg-shared", delay_ms=700, times=1)
    out = _race([h.service, other], [b.write_event(res["id"]), b.write_event(res["id"])])
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert [q["status"] for q in h.writes()].count(200) == 1     # one fix made, nothing overwritten
    verdicts = sorted((r.verdict, r.reason) for r in h.recorder.rows)
    assert ("failed", "arm_error") not in verdicts and not any(isinstance(r, Exception) for r in out.values()), (
        f"a concurrent fix that was made is audited as failed: {verdicts}, raised "
        f"{[r for r in out.values() if isinstance(r, Exception)]}")


# ---- (2) redelivery of one event id ------------------------------------------------------------------
def test_control_a_redelivered_event_is_a_duplicate_on_this_and_another_worker_and_writes_once(harness):
    """CONTROL (passes). The same event id again — to this worker (its memory), to another instance
    (the table: ``forget_completed``) and to a freshly built service — writes nothing more and
    audits a ``duplicate`` row naming the first verdict each time."""
    from guardrails import bootstrap

    res = b.storage()
    h = harness([res])
    event = b.write_event(res["id"])
    assert h.deliver(event).verdict == "remediated"
    assert h.deliver(event).verdict == "duplicate"
    h.service.idempotency.forget_completed()
    dup = h.deliver(event)
    assert (dup.verdict, dup.reason) == ("duplicate", "duplicate") and "remediated" in dup.message
    other = bootstrap.build_service(h.settings)
    assert other.handle_event(event).verdict == "duplicate"
    assert len(h.writes()) == 1
    assert [r.verdict for r in h.stored_rows() if r.event_id == event["id"]].count("remediated") == 1
