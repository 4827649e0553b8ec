"""The reconciling sweep judges role assignments AT the tenant root ``/``, which no subscription
topic delivers and neither the subscriptions' lists nor a management group's keep (User Access
Administrator at ``/`` is what Entra's "elevate access" creates). Real SDK clients against the
HTTPS emulator and Azurite; every test asserts on the emulator's resulting state: the root
assignment really gone, or really kept."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_sweep import (MG, ROOT_ASSIGNMENTS, _sweep_rows, _sweeper, rbac_with_break_glass,
                                          root_assignment)

pytestmark = pytest.mark.integration

SUB2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
ROOT_LIST = ROOT_ASSIGNMENTS


def _exists(h, assignment: dict) -> bool:
    return h.emu.get_role_assignment(assignment["id"]) is not None


def _root_lists(h) -> list[dict]:
    return [q for q in h.arm_requests("GET") if q["path"] == ROOT_LIST]


def test_user_access_administrator_at_the_tenant_root_is_removed_once_per_run(harness, tmp_path):
    # GIVEN "elevate access" left User Access Administrator at "/" for a user; beside it a Reader
    # at "/", the break-glass account's UAA at "/", and a Contributor at an unswept management group
    elevated = root_assignment("User Access Administrator", b.ALICE)
    reader = root_assignment("Reader", b.BOB)
    glass = root_assignment("User Access Administrator", b.BREAK_GLASS)
    mg = b.role_assignment("Contributor", b.BOB, scope=MG)
    h = harness([], extra_metadata=[rbac_with_break_glass(tmp_path)],
                world={"roleAssignments": [elevated, reader, glass, mg]})
    # WHEN the sweep runs over two subscriptions
    summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB, SUB2])
    # THEN the elevated grant is gone, everything else at "/" (and the group's) is kept
    assert not _exists(h, elevated)
    assert _exists(h, reader) and _exists(h, glass) and _exists(h, mg)
    rows = {r.resource_id: r for r in _sweep_rows(h, summary.sweep_id)}
    assert list(rows) == [elevated["id"]] and rows[elevated["id"]].verdict == "remediated"
    assert [v.rule for v in rows[elevated["id"]].violations] == ["privileged-at-subscription"]
    assert rows[elevated["id"]].event_type == "Guardrails.Sweep"
    # the root listed once for the run (not per subscription), atScope(); only the flagged one read again
    lists = _root_lists(h)
    assert len(lists) == 1 and lists[0]["query"]["$filter"] == "atScope()"
    assert {q["path"] for q in h.arm_requests("GET") if "/roleAssignments/" in q["path"]} == {elevated["id"]}
    assert [q["path"] for q in h.arm_requests("DELETE")] == [elevated["id"]]
    assert (summary.remediated, summary.failed, summary.errors) == (1, 0, [])


def test_dry_run_judges_the_root_and_changes_nothing(harness):
    elevated = root_assignment("User Access Administrator", b.ALICE)
    h = harness([], world={"roleAssignments": [elevated]})
    summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB], dry_run=True)
    assert _exists(h, elevated) and h.writes() == []
    rows = _sweep_rows(h, summary.sweep_id)
    assert [(r.resource_id, r.verdict) for r in rows] == [(elevated["id"], "dry_run")] and summary.open == 1


def test_an_identity_that_cannot_read_the_root_is_one_warning_and_the_rest_is_swept(harness, tmp_path, caplog):
    # GIVEN the sweep's identity may not read role assignments at "/" (ARM answers 403)
    elevated = root_assignment("User Access Administrator", b.ALICE)
    glass_owner = b.role_assignment("Owner", b.BREAK_GLASS)
    lost = b.role_assignment("Owner", b.BOB)                   # a subscription grant whose event was lost
    h = harness([], extra_metadata=[rbac_with_break_glass(tmp_path)],
                world={"roleAssignments": [elevated, glass_owner, lost]})
    h.emu.add_fault(method="GET", path_regex=r"^/providers/Microsoft\.Authorization/roleAssignments$", status=403)
    # WHEN the sweep runs over two subscriptions
    with caplog.at_level("WARNING", logger="guardrails"):
        summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB, SUB2])
    # THEN one WARNING says the root is not judged (not one per subscription; the shipped deployment
    # cannot read "/", so it is no sweep error), nothing crashed, the subscription's grant is still
    # removed and the root one stays (unjudged, not deleted)
    warned = [r for r in caplog.records if "guardrail_sweep_root_unreadable" in r.getMessage()]
    assert len(warned) == 1 and "403" in warned[0].getMessage()
    assert summary.errors == [] and summary.failed == 0
    assert not _exists(h, lost) and _exists(h, elevated) and _exists(h, glass_owner)
    assert len(_root_lists(h)) == 1                             # asked once; a 403 is not retried


def test_an_owner_at_the_root_goes_only_while_another_owner_stays_there(harness, tmp_path):
    # GIVEN a user's Owner at "/" and nobody else Owner at "/": nothing is above the root
    alone = root_assignment("Owner", b.ALICE)
    h = harness([], extra_metadata=[rbac_with_break_glass(tmp_path)], world={"roleAssignments": [alone]})
    first = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB])
    # THEN the last-Owner rail keeps it and reports it
    assert _exists(h, alone) and h.writes() == []
    (row,) = _sweep_rows(h, first.sweep_id)
    assert row.verdict == "violation" and "last Owner" in row.violations[0].message
    # WHEN the break-glass account is Owner at "/" too, the next sweep removes the user's
    glass = root_assignment("Owner", b.BREAK_GLASS)
    h.emu.put_role_assignment(glass)
    second = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB])
    assert not _exists(h, alone) and _exists(h, glass)
    assert [(r.resource_id, r.verdict) for r in _sweep_rows(h, second.sweep_id)] == [(alone["id"], "remediated")]


def _rbac(d: Path, *, policy_id: str, version: int, mode: str = "enforce", subscriptions=()) -> None:
    """The shipped rbac-least-privilege as ``policy_id`` in ``d``, with ``mode`` and a selector."""
    text = (Path(__file__).resolve().parents[2] / "metadata/policies/rbac-least-privilege.yaml").read_text()
    selector = f"\nselector: {{subscriptions: [{', '.join(subscriptions)}]}}" if subscriptions else ""
    text = (text.replace("id: rbac-least-privilege", f"id: {policy_id}", 1)
            .replace("version: 1", f"version: {version}", 1).replace("mode: enforce", f"mode: {mode}{selector}", 1))
    d.mkdir(exist_ok=True)
    (d / f"{policy_id}.yaml").write_text(text)


def test_a_policy_selecting_subscriptions_does_not_govern_the_root(harness, tmp_path):
    # GIVEN the enforcing role policy selects one subscription, and a second, selector-less one is
    # in audit mode: as for a management group, "/" is none of the subscriptions a selector names
    d = tmp_path / "policies"
    _rbac(d, policy_id="rbac-least-privilege", version=6, subscriptions=[b.SUB])
    _rbac(d, policy_id="rbac-tenant-audit", version=1, mode="audit")
    elevated = root_assignment("User Access Administrator", b.ALICE)
    lost = b.role_assignment("Contributor", b.BOB)             # in the selected subscription
    h = harness([], extra_metadata=[d], world={"roleAssignments": [elevated, lost]})
    summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB])
    # THEN the root grant is judged by the selector-less policy only: reported, kept
    assert _exists(h, elevated) and not _exists(h, lost)
    rows = {r.resource_id: r for r in _sweep_rows(h, summary.sweep_id)}
    assert rows[elevated["id"]].verdict == "dry_run"
    assert {v.policy.split("@")[0] for v in rows[elevated["id"]].violations} == {"rbac-tenant-audit"}
    assert rows[lost["id"]].verdict == "remediated"


def test_without_a_selector_less_role_policy_neither_the_root_nor_an_unselected_subscription_is_listed(
        harness, tmp_path):
    d = tmp_path / "policies"
    _rbac(d, policy_id="rbac-least-privilege", version=6, subscriptions=[b.SUB])
    elevated = root_assignment("User Access Administrator", b.ALICE)
    h = harness([], extra_metadata=[d], world={"roleAssignments": [elevated]})
    summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB, SUB2])
    assert _exists(h, elevated) and _sweep_rows(h, summary.sweep_id) == []
    listed = {q["path"] for q in h.arm_requests("GET") if q["path"].endswith("/roleAssignments")}
    assert listed == {f"/subscriptions/{b.SUB}/providers/Microsoft.Authorization/roleAssignments"}


def test_the_root_part_ends_at_the_runs_time_limit(harness):
    # GIVEN five elevated grants at "/", one per list page, and a read budget of one per second
    elevated = [root_assignment("User Access Administrator", str(uuid.uuid4())) for _ in range(5)]
    h = harness([], world={"roleAssignments": elevated})
    h.emu.page_size = 1
    summary = _sweeper(h, FakeClock(), GUARDRAILS_ARM_READS_PER_SECOND="1", GUARDRAILS_ARM_READ_BURST="1",
                       GUARDRAILS_SWEEP_CONCURRENCY="1", GUARDRAILS_SWEEP_MAX_SECONDS="2").run(subscriptions=[b.SUB])
    # THEN it stopped part way, in time: some removed, the rest left for the next run (and the
    # root's list was not read to its end)
    left = [a for a in elevated if _exists(h, a)]
    assert summary.truncated and 0 < len(left) < 5
    assert len(_root_lists(h)) < 5


def test_the_emulator_lists_only_the_root_at_scope_and_deletes_a_root_assignment(harness):
    # what the sweep relies on, through the real azure-mgmt-authorization client
    from guardrails import settings as S
    from guardrails.adapters.arm import build_credential
    from guardrails.adapters.authorization import AuthorizationGateway

    elevated = root_assignment("User Access Administrator", b.ALICE)
    sub = b.role_assignment("Owner", b.BOB)
    mg = b.role_assignment("Contributor", b.BOB, scope=MG)
    h = harness([], world={"roleAssignments": [elevated, sub, mg]})
    settings = S.Settings.from_env(h.env)
    gw = AuthorizationGateway(build_credential(settings), endpoint=settings.arm_endpoint,
                              ca_bundle=settings.ca_bundle)
    assert [a["id"] for a in gw.list_assignments_at_scope("/")] == [elevated["id"]]
    assert gw.get_assignment(elevated["id"])["properties"]["scope"] == "/"
    assert gw.delete_assignment(elevated["id"]) is True
    assert not _exists(h, elevated) and _exists(h, sub) and _exists(h, mg)
    assert gw.delete_assignment(elevated["id"]) is False
