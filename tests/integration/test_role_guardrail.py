"""Role-assignment guardrail end to end: the real azure-mgmt-authorization client against the
emulator's role assignments and definitions, Graph group membership from the emulator's
directory, decisions in the audit table. Asserts on the emulator's resulting state."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from guardrails.adapters.escalations import TableEscalationStore
from guardrails.cli import main as cli_main
from guardrails.policy.grant_keys import grant_key
from tests import builders as b

pytestmark = pytest.mark.integration

SUB_SCOPE = f"/subscriptions/{b.SUB}"
RG_SCOPE = b.rg_id()

# the site's copy of the shipped policy carries its version (an override older than the baseline
# it replaces is refused: it would silently take back what the newer baseline added)
POLICY_VERSION = yaml.safe_load((Path(__file__).resolve().parents[2] / "metadata" / "policies" /
                                 "rbac-least-privilege.yaml").read_text(encoding="utf-8"))["version"]
POLICY = f"""
id: rbac-least-privilege
version: {POLICY_VERSION}
kind: role-assignments
description: least privilege with a break-glass account and a data-science grant
mode: {{mode}}
privileged:
  roles: [Owner, Contributor, User Access Administrator, Key Vault Administrator, Key Vault Contributor]
  custom_role_actions: ["*", "Microsoft.Authorization/*/write", "Microsoft.KeyVault/vaults/accessPolicies/write"]
  custom_role_data_actions: ["*", "Microsoft.KeyVault/vaults/*"]
  conditional_roles: [Role Based Access Control Administrator]
  allowed_service_principals: []
break_glass: [{b.BREAK_GLASS}]
grants:
  - role: AzureML Data Scientist
    scopes: [{RG_SCOPE}]
    groups: [{b.DS_GROUP}]
action: {{{{type: delete-role-assignment}}}}
"""


def _policy_dir(tmp_path, mode="enforce", extra=""):
    d = tmp_path / "rbac"
    d.mkdir(exist_ok=True)
    (d / "rbac-least-privilege.yaml").write_text(textwrap.dedent(POLICY.format(mode=mode)) + extra)
    return d


# a second Owner at subscription scope (the break-glass account), so the last-Owner rail stays out of the way
BREAK_GLASS_OWNER = b.role_assignment("Owner", b.BREAK_GLASS, name="00000000-0000-4000-8000-00000000b1ea")


def _harness(harness, tmp_path, assignments, *, mode="enforce", definitions=(), groups=None, extra=""):
    world = {"roleAssignments": [BREAK_GLASS_OWNER, *assignments], "roleDefinitions": list(definitions),
             "directory": {"groups": groups or {b.DS_GROUP: [b.ALICE]}}}
    return harness([], world=world, extra_metadata=[_policy_dir(tmp_path, mode, extra)])


def _exists(h, assignment) -> bool:
    return h.emu.get_role_assignment(assignment["id"]) is not None


def test_owner_granted_to_a_user_at_subscription_scope_is_deleted_and_audited(harness, tmp_path):
    grant = b.role_assignment("Owner", b.BOB)
    h = _harness(harness, tmp_path, [grant])
    row = h.deliver(b.role_event(grant))
    assert not _exists(h, grant)
    assert row.verdict == "remediated"
    (v,) = row.violations
    assert v.rule == "privileged-at-subscription" and v.outcome == "remediated"
    assert v.before["role_name"] == "Owner" and v.before["role_id"] == b.ROLE_IDS["Owner"]
    assert v.before["principal_id"] == b.BOB and v.before["principal_type"] == "User"
    assert v.before["scope"] == SUB_SCOPE and v.before["condition"] is None
    assert row.actor.upn == "alice@contoso.com"               # who granted it, from the claims
    assert [q["method"] for q in h.arm_requests()] == ["GET", "GET", "DELETE", "GET"]   # read, last-owner check, delete, confirm
    assert [r.verdict for r in h.stored_rows()] == ["remediated"]


def test_reader_at_a_resource_group_is_compliant(harness, tmp_path):
    grant = b.role_assignment("Reader", b.BOB, scope=RG_SCOPE)
    h = _harness(harness, tmp_path, [grant])
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "compliant" and _exists(h, grant)
    assert [q["method"] for q in h.arm_requests()] == ["GET"]      # one read; built-in role from the catalogue


def test_break_glass_owner_is_compliant(harness, tmp_path):
    h = _harness(harness, tmp_path, [])
    row = h.deliver(b.role_event(BREAK_GLASS_OWNER))
    assert row.verdict == "compliant" and _exists(h, BREAK_GLASS_OWNER)


def test_rbac_administrator_without_condition_is_deleted_with_a_role_constraining_condition_kept(harness, tmp_path):
    loose = b.role_assignment("Role Based Access Control Administrator", b.BOB)
    constrained = b.role_assignment("Role Based Access Control Administrator", b.ALICE,
                                    condition=b.RBAC_ADMIN_CONDITION)
    h = _harness(harness, tmp_path, [loose, constrained])
    assert h.deliver(b.role_event(loose)).verdict == "remediated"
    assert h.deliver(b.role_event(constrained)).verdict == "compliant"
    assert not _exists(h, loose) and _exists(h, constrained)


def test_custom_role_with_star_is_deleted(harness, tmp_path):
    guid = "c0ffee00-0000-4000-8000-000000000001"
    custom = {"id": f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{guid}", "name": guid,
              "type": "Microsoft.Authorization/roleDefinitions",
              "properties": {"roleName": "Platform Superuser", "type": "CustomRole", "description": "everything",
                             "assignableScopes": [SUB_SCOPE],
                             "permissions": [{"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}]}}
    grant = b.role_assignment("Owner", b.BOB, role_id=guid)
    h = _harness(harness, tmp_path, [grant], definitions=[custom])
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "remediated" and not _exists(h, grant)
    assert row.violations[0].before["role_name"] == "Platform Superuser"


def test_granted_role_outside_its_entry_is_deleted_and_a_group_member_kept(harness, tmp_path):
    outsider = b.role_assignment("AzureML Data Scientist", b.BOB, scope=RG_SCOPE)
    member = b.role_assignment("AzureML Data Scientist", b.ALICE, scope=RG_SCOPE)
    h = _harness(harness, tmp_path, [outsider, member])
    out_row = h.deliver(b.role_event(outsider))
    in_row = h.deliver(b.role_event(member))
    assert (out_row.verdict, out_row.violations[0].rule) == ("remediated", "not-granted")
    assert in_row.verdict == "compliant"
    assert not _exists(h, outsider) and _exists(h, member)
    assert any(q["host"] == "graph" for q in h.emu.requests)


def test_workspace_identity_on_its_storage_account_is_compliant(harness, tmp_path):
    grant = b.role_assignment("Storage Blob Data Contributor", b.WORKSPACE_MI, principal_type="ServicePrincipal",
                              scope=b.storage()["id"])
    h = _harness(harness, tmp_path, [grant])
    assert h.deliver(b.role_event(grant)).verdict == "compliant"
    assert _exists(h, grant)


def test_the_guardrails_own_assignment_is_never_deleted(harness, tmp_path):
    own = b.role_assignment("Owner", b.GUARDRAIL_OID, principal_type="ServicePrincipal")
    h = _harness(harness, tmp_path, [own])
    row = h.deliver(b.role_event(own))
    assert row.verdict == "compliant" and _exists(h, own)
    assert h.writes() == []


def test_last_owner_at_a_scope_is_kept_and_reported(harness, tmp_path):
    only = b.role_assignment("Owner", b.BOB, scope=f"/subscriptions/{b.SUB}")
    world = {"roleAssignments": [only], "directory": {"groups": {}}}
    h = harness([], world=world, extra_metadata=[_policy_dir(tmp_path)])
    row = h.deliver(b.role_event(only))
    assert row.verdict == "violation" and row.notify
    assert "last Owner" in row.violations[0].message
    assert _exists(h, only) and h.writes() == []


def test_audit_mode_is_dry_run(harness, tmp_path):
    grant = b.role_assignment("Owner", b.BOB)
    h = _harness(harness, tmp_path, [grant], mode="audit")
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "dry_run" and _exists(h, grant)
    assert h.writes() == []


def test_assignment_gone_before_the_read_is_ignored(harness, tmp_path):
    h = _harness(harness, tmp_path, [])
    ghost = b.role_assignment("Owner", b.BOB)
    row = h.deliver(b.role_event(ghost))
    assert (row.verdict, row.reason) == ("ignored", "resource_not_found")


def test_duplicate_role_event_deletes_once(harness, tmp_path):
    grant = b.role_assignment("Contributor", b.BOB)
    h = _harness(harness, tmp_path, [grant])
    event = b.role_event(grant)
    assert [h.deliver(event).verdict, h.deliver(event).verdict] == ["remediated", "duplicate"]
    assert len(h.arm_requests("DELETE")) == 1


def test_the_guardrails_own_delete_event_is_ignored(harness, tmp_path):
    grant = b.role_assignment("Contributor", b.BOB)
    h = _harness(harness, tmp_path, [grant])
    h.deliver(b.role_event(grant))
    h.emu.clear_requests()
    rows = h.deliver_emitted()
    assert rows and all(r.verdict == "ignored" for r in rows)
    assert h.emu.requests == []


# ---- a role granted again and again ---------------------------------------------------------------
PIPELINE_OID = "5b0c7d2e-9f41-4e3a-8c6d-2a1b0e9f8d7c"
PIPELINE = b.claims(PIPELINE_OID, app_id="0f6e5d4c-3b2a-4190-8a7b-6c5d4e3f2a1b", upn=None)


def test_a_role_granted_again_and_again_is_removed_every_time_and_escalated_past_the_budget(
        harness, tmp_path, monkeypatch, capsys):
    h = _harness(harness, tmp_path, [], extra="flip_flop: {max_reverts: 2, window_minutes: 30}\n")
    key = grant_key(SUB_SCOPE, b.BOB, b.ROLE_IDS["Owner"])

    def grant_again(principal=b.BOB, actor=PIPELINE):
        g = b.role_assignment("Owner", principal)         # a new assignment id every time
        h.emu.put_role_assignment(g)
        return g, h.deliver(b.role_event(g, actor=actor))

    # WHEN a pipeline grants Owner to Bob at subscription scope four times, each right after it was removed
    made = [grant_again() for _ in range(4)]
    # THEN every grant is removed: a privileged role is never left in place to end a fight
    assert all(not _exists(h, g) for g, _row in made)
    rows = [row for _g, row in made]
    assert [r.verdict for r in rows] == ["remediated"] * 4
    # the two removals within the policy's budget are plain; the third escalates the grant, once
    assert [r.reason for r in rows] == ["", "", "flip_flop", "flip_flop"]
    assert [r.notify for r in rows] == [False, False, True, False]
    third, fourth = rows[2], rows[3]
    assert "escalated now" in third.violations[0].message and PIPELINE_OID in third.violations[0].message
    assert "after 2 removals in 30 min" in third.violations[0].message
    assert "still escalated" in fourth.violations[0].message
    assert key in third.message and third.violations[0].outcome == "remediated"
    # the grant's history is in the escalation table under its grant key, not any assignment id
    state = TableEscalationStore(h.tables).status(key)
    assert state["escalated"] and len(state["times"]) == 2
    assert {a["object_id"] for a in state["actors"]} == {PIPELINE_OID}
    # another principal, or the same principal with another role, is another grant
    _g, other = grant_again(principal=b.ALICE)
    assert (other.verdict, other.reason) == ("remediated", "")
    # an operator settles the fight (the CLI takes the key as the row prints it, in any case)
    for k, val in h.env.items():
        monkeypatch.setenv(k, val)
    capsys.readouterr()
    assert cli_main(["escalation", "status", key.upper().replace("ROLEGRANT:", "rolegrant:")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["grant"] == key and shown["escalated"] is True
    assert cli_main(["escalation", "reset", key]) == 0
    assert json.loads(capsys.readouterr().out)["had_state"] is True
    g, row = grant_again()
    assert (row.verdict, row.reason, row.notify) == ("remediated", "", False) and not _exists(h, g)


def test_a_grant_key_the_cli_cannot_read_is_a_usage_error(harness, tmp_path, monkeypatch, capsys):
    h = _harness(harness, tmp_path, [])
    for k, val in h.env.items():
        monkeypatch.setenv(k, val)
    assert cli_main(["escalation", "status", f"rolegrant:{SUB_SCOPE}|not-a-guid|{b.ROLE_IDS['Owner']}"]) == 2
    assert "principal id is not a GUID" in capsys.readouterr().err


def test_a_dry_run_removal_is_not_counted_as_a_re_grant(harness, tmp_path):
    h = _harness(harness, tmp_path, [], mode="audit", extra="flip_flop: {max_reverts: 1, window_minutes: 30}\n")
    for _ in range(3):
        g = b.role_assignment("Owner", b.BOB)
        h.emu.put_role_assignment(g)
        row = h.deliver(b.role_event(g, actor=PIPELINE))
        assert (row.verdict, row.reason) == ("dry_run", "") and _exists(h, g)
    assert TableEscalationStore(h.tables).status(grant_key(SUB_SCOPE, b.BOB, b.ROLE_IDS["Owner"])) is None


def test_a_re_grant_that_cannot_be_counted_is_still_removed_and_the_failure_logged(harness, tmp_path, caplog):
    h = _harness(harness, tmp_path, [])
    h.tables.service.delete_table(h.tables.escalations_name)      # the escalation table is gone (Azurite)
    g = b.role_assignment("Owner", b.BOB)
    h.emu.put_role_assignment(g)
    with caplog.at_level("WARNING", logger="guardrails"):
        row = h.deliver(b.role_event(g, actor=PIPELINE))
    assert (row.verdict, row.reason) == ("remediated", "") and not _exists(h, g)
    assert "guardrail_regrant_not_counted" in caplog.text
