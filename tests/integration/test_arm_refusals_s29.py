"""Azure's refusals say why in the audit row's reason, end to end through the trigger (Azurite, the
HTTPS emulator answering with ARM's own error codes, the real SDK clients).

A fix refused by a management lock, by an Azure Policy deny or for a missing role used to be one
reason, ``arm_error``, for the operator to decode from the message. Each is now a reason of its own,
which says what to change: ``scope_locked`` (409 ``ScopeLocked``: the lock, or an exclusion for the
guardrails), ``policy_denied`` (403 ``RequestDisallowedByPolicy``: the policy assignment's
exemption), ``forbidden`` (any other 403: the guardrails' role). A storage account key rotation
refused ``listKeys`` is ``forbidden``, as a Key Vault 403 already was. Nothing is changed by a
refused write, and a later delivery once the refusal is lifted still fixes it."""

from __future__ import annotations

import json

import pytest

from tests import builders as b
from tests.integration.test_http_checks import _call
from tests.integration.test_secret_exposure_and_hygiene import _keys
from tests.integration.test_secret_guardrail import _event, _harness, _no_leak, planted  # noqa: F401

pytestmark = pytest.mark.integration

LOCKED = ("The scope '/subscriptions/{sub}/resourceGroups/rg-ml-prod' cannot perform write operation because "
          "following scope(s) are locked: '/subscriptions/{sub}/resourceGroups/rg-ml-prod'. Please remove the lock "
          "and try again.")
DENIED = ("Resource 'stmlprod' was disallowed by policy. Policy identifiers: '[{{\"policyAssignment\":"
          "{{\"name\":\"Deny storage changes\"}}}}]'.")
NO_ROLE = ("The client 'guardrails' does not have authorization to perform action "
           "'Microsoft.Storage/storageAccounts/write' over scope '/subscriptions/{sub}/resourceGroups/rg-ml-prod'.")


def _public(h, res) -> str:
    return h.resource(res["id"])["properties"]["publicNetworkAccess"]


@pytest.mark.parametrize("status, code, message, reason", [
    (409, "ScopeLocked", LOCKED, "scope_locked"),
    (403, "RequestDisallowedByPolicy", DENIED, "policy_denied"),
    (403, "AuthorizationFailed", NO_ROLE, "forbidden"),
    (403, "LinkedAuthorizationFailed", NO_ROLE, "forbidden"),
])
def test_a_refused_fix_is_audited_with_why_and_made_once_the_refusal_is_lifted(harness, status, code, message,
                                                                               reason):
    res = b.storage(blob=False)
    h = harness([res])
    assert _public(h, res) == "Enabled"
    h.emu.add_fault(method="PATCH", path_regex="storageAccounts/", status=status, code=code,
                    message=message.format(sub=b.SUB))
    event = b.write_event(res["id"])
    row = h.deliver(event)
    assert (row.verdict, row.reason) == ("failed", reason), (row.verdict, row.reason, row.message)
    assert f"{status} {code}" in json.dumps(row.to_dict())
    assert _public(h, res) == "Enabled"                       # nothing was changed
    patches = [q for q in h.emu.requests if q["method"] == "PATCH"]
    assert len(patches) == 1                                  # a refusal is never retried within the delivery
    # the lock / assignment / role is fixed; Event Grid's redelivery of the same event now fixes it
    h.emu.clear_faults()
    row = h.deliver(event)
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)
    assert _public(h, res) == "Disabled"


def test_a_read_refused_for_a_missing_role_is_forbidden(harness):
    res = b.storage(blob=False)
    h = harness([res])
    h.emu.add_fault(method="GET", path_regex="storageAccounts/", status=403, code="AuthorizationFailed",
                    message=NO_ROLE.format(sub=b.SUB).replace("/write", "/read"))
    row = h.deliver(b.write_event(res["id"]))
    assert (row.verdict, row.reason) == ("failed", "forbidden"), (row.verdict, row.reason, row.message)
    assert _public(h, res) == "Enabled"
    assert not [q for q in h.emu.requests if q["method"] == "PATCH"]


def test_a_lock_that_is_not_scope_locked_stays_an_arm_error(harness):
    """A 409 for another reason (a conflicting operation in progress) is no lock: ``arm_error``."""
    res = b.storage(blob=False)
    h = harness([res])
    h.emu.add_fault(method="PATCH", path_regex="storageAccounts/", status=409, code="Conflict",
                    message="Another operation is in progress on the storage account.")
    row = h.deliver(b.write_event(res["id"]))
    assert (row.verdict, row.reason) == ("failed", "arm_error"), (row.verdict, row.reason, row.message)


def test_a_storage_key_rotation_refused_list_keys_is_forbidden_like_a_key_vault_403(harness, tmp_path, planted,
                                                                                    caplog):
    h = _harness(harness, tmp_path, planted)
    h.emu.add_fault(method="POST", path_regex="listKeys", status=403, code="AuthorizationFailed",
                    message="The client does not have authorization to perform action "
                            "'Microsoft.Storage/storageAccounts/listKeys/action'.")
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert (row.verdict, row.reason) == ("failed", "forbidden"), (row.verdict, row.reason, row.message)
    assert _keys(h) == {"key1": planted["key1"], "key2": planted["key2"]}     # nothing regenerated
    _no_leak(h, planted, caplog)
    # a Key Vault 403 is the same reason
    h.emu.clear_faults()
    h.emu.add_fault(method="PUT", path_regex="/secrets/api-token", status=403, code="Forbidden",
                    message="Caller is not authorized to perform action on resource.")
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (row.verdict, row.reason) == ("failed", "forbidden"), (row.verdict, row.reason, row.message)


def test_a_resource_check_whose_read_is_refused_is_still_unavailable(harness, monkeypatch):
    """The check API could not read the resource: a 503 naming the refusal, never an answer."""
    from guardrails.triggers.http_checks import check_resource

    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    res = b.storage()
    h = harness([res], world={"faults": [{"method": "GET", "path_regex": ".*storageAccounts.*", "status": 403,
                                          "code": "AuthorizationFailed", "times": None}]})
    http_status, body = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    assert http_status == 503 and body["error"]["code"] == "unavailable", body
    assert "(forbidden)" in body["error"]["message"]
    (row,) = [r for r in h.stored_rows() if r.delivery_id == body["error"]["correlation_id"]]
    assert (row.verdict, row.reason) == ("failed", "forbidden")


@pytest.mark.parametrize("code, reason", [("ScopeLocked", "scope_locked"),
                                          ("RequestDisallowedByPolicy", "policy_denied")])
def test_a_remediating_check_whose_fix_is_refused_by_a_lock_or_a_policy_is_answered_not_allowed(
        harness, tmp_path, monkeypatch, code, reason):
    """Asking again changes nothing: the caller gets an answer (not allowed, the refused fix among
    the reasons), not a 503 telling it to retry."""
    from guardrails.triggers.http_checks import check_resource
    from tests.functional.test_http_checks import REMEDIATOR
    from tests.integration.test_http_checks import _access_dir

    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    res = b.workspace()
    h = harness([res], extra_metadata=[_access_dir(tmp_path)])
    h.emu.add_fault(method="PATCH", path_regex="workspaces/", status=409 if code == "ScopeLocked" else 403,
                    code=code, message="refused")
    http_status, body = _call(check_resource, "checks/resource", {"resource_id": res["id"]},
                              params={"remediate": "true"}, principal=REMEDIATOR)
    assert http_status == 200 and body["allowed"] is False and body["verdict"] == "failed", body
    assert code in json.dumps(body["reasons"])
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    stored = {r.delivery_id: r for r in h.stored_rows()}
    assert (stored[body["decision_id"]].verdict, stored[body["decision_id"]].reason) == ("failed", reason)


@pytest.mark.parametrize("status, reason, says", [
    (403, "forbidden", "application permissions Application.Read.All, GroupMember.Read.All"),
    (401, "unauthenticated", "token of the function's identity was rejected"),     # session 30: was arm_error
])
def test_graph_refusing_the_membership_check_names_the_missing_grant(harness, tmp_path, status, reason, says):
    """Graph's 403 is the deployment's missing application permission: ``forbidden``; its 401 a
    token it rejected: ``unauthenticated``. The grant is kept (nothing is removed on a decision not
    made) and the delivery redelivered."""
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, RG_SCOPE, _exists
    from tests.integration.test_role_review_fixes import _world

    grant = b.role_assignment("AzureML Data Scientist", b.BOB, scope=RG_SCOPE)     # Graph must judge it
    h = _world(harness, tmp_path, [BREAK_GLASS_OWNER, grant])
    h.emu.add_fault(method="POST", path_regex="checkMemberGroups", status=status, code="Authorization_RequestDenied")
    row = h.deliver(b.role_event(grant))
    assert (row.verdict, row.reason) == ("failed", reason), (row.verdict, row.reason, row.message)
    assert says in row.message, row.message
    assert _exists(h, grant) and h.writes() == []
