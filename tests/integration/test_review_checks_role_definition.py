"""The resource check refuses role-definition ids, end to end: the HTTP function with real
``azure.functions.HttpRequest`` objects, the role guardrail on the emulator's authorization API
(real azure-mgmt-authorization client), the audit row read back from Azurite.

A custom role is judged through its assignments, and a change of it (``roleDefinitions/write``)
re-judges every assignment of the role wherever it is. Asked on demand, that let a ``remediate``
grant limited to one resource group delete assignments across the subscription by naming the role
definition under its resource group. The event path is unchanged."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests import builders as b
from tests.functional.test_http_checks import REMEDIATOR, http_request
from tests.integration.test_role_definition_change import _definition_event, _deliver
from tests.integration.test_role_guardrail import RG_SCOPE, SUB_SCOPE, _exists, _policy_dir
from tests.integration.test_role_review_fixes import CUSTOM, custom_role

pytestmark = pytest.mark.integration

ACCESS = f"""
id: check-access
version: 2
kind: check-access
description: one operator may remediate rg-ml-prod only
mode: enforce
on_behalf: []
remediate:
  - principals: [{REMEDIATOR}]
    scopes: [{RG_SCOPE}]
"""
DEFINITION_ID = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM}"


@pytest.fixture(autouse=True)
def app_service_authentication(monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")


def _world(harness, tmp_path):
    d = _policy_dir(tmp_path)
    (d / "check-access.yaml").write_text(textwrap.dedent(ACCESS))
    # a subscription-scope assignment of a custom role that grants everything: the policy removes it
    victim = b.role_assignment("Reader", b.BOB, name="0b0b0000-0000-4000-8000-0000000000c1")
    victim["properties"]["roleDefinitionId"] = DEFINITION_ID
    world = {"roleAssignments": [victim], "roleDefinitions": [custom_role(["*"])],
             "directory": {"groups": {b.DS_GROUP: [b.ALICE]}}}
    return harness([], world=world, extra_metadata=[d]), victim


def _check(rid: str, **kw) -> tuple[int, dict]:
    from guardrails.triggers.http_checks import check_resource

    resp = check_resource(http_request("checks/resource", {"resource_id": rid}, principal=REMEDIATOR, **kw))
    return resp.status_code, json.loads(resp.get_body())


@pytest.mark.parametrize("rid", [f"{RG_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM}",
                                 DEFINITION_ID])
def test_a_remediate_grant_on_one_rg_cannot_reach_assignments_through_a_role_definition(harness, tmp_path, rid):
    h, victim = _world(harness, tmp_path)
    # the grant does not cover the subscription-scope assignment itself
    status, _ = _check(victim["id"], params={"remediate": "true"})
    assert status == 403 and _exists(h, victim)
    # nor, now, the role definition: refused as a bad id, nothing read or written, audited
    h.emu.clear_requests()
    status, body = _check(rid, params={"remediate": "true"})
    assert (status, body["error"]["code"]) == (400, "invalid_resource_id")
    assert "check a role assignment id" in body["error"]["message"]
    assert _exists(h, victim) and h.writes() == [] and h.arm_requests() == []
    stored = {r.delivery_id: r for r in h.stored_rows()}[body["error"]["correlation_id"]]
    assert (stored.verdict, stored.reason, stored.event_type) == ("invalid", "invalid_resource_id",
                                                                   "Guardrails.CheckResource")
    assert stored.actor.object_id == REMEDIATOR


def test_the_event_path_still_re_judges_a_changed_definitions_assignments(harness, tmp_path):
    h, victim = _world(harness, tmp_path)
    row = _deliver(h, _definition_event())
    assert row.verdict == "remediated" and not _exists(h, victim)
