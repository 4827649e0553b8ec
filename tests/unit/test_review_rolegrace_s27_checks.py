"""Review of 05ae4e8: cases the change must keep (these pass; they document what was checked)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace as NS

import pytest

from guardrails.errors import ArmTransient
from guardrails.model.arm_id import parse_arm_id
from guardrails.model.decision import AuditRow
from guardrails.policy.loader import load_documents
from guardrails.role_guardrail import RoleAssignmentGuardrail
from tests import builders as b
from tests.unit.test_review_role_s25 import ADMINS, GONE, OWNER_GRANTS, NotInDirectory, _decide, _made
from tests.unit.test_role_grace_s27 import _findings
from tests.unit.test_role_review_fixes import BASELINE, CUSTOM, MG, NOW, SUB_SCOPE, FakeAuthz, FakeService, custom, at
from tests.unit.test_roles_s20b import CachingAuthz, _custom_assignment

NEW = NOW - timedelta(minutes=1)


def _doc(**extra):
    return {**BASELINE[0].to_document(), "grants": [{"role": "Owner", "scopes": [SUB_SCOPE], "groups": [ADMINS]}],
            **extra}


def test_break_glass_in_another_policy_still_waits():
    pols = load_documents([("p.yaml", _doc()),
                           ("g.yaml", {**_doc(), "id": "glass", "grants": [], "break_glass": [GONE]})])
    with pytest.raises(ArmTransient):
        _findings(_made(at(SUB_SCOPE, "Owner", GONE), NEW), "Owner", pols)


def test_an_allowed_service_principal_still_waits():
    d = _doc()
    d["privileged"] = {**d["privileged"], "allowed_service_principals": [GONE]}
    body = _made(at(SUB_SCOPE, "Owner", GONE), NEW)
    body["properties"]["principalType"] = "ServicePrincipal"
    with pytest.raises(ArmTransient):
        _findings(body, "Owner", load_documents([("p.yaml", d)]))


def test_own_identity_is_never_judged():
    from guardrails.model.roles import builtin_by_name
    from guardrails.policy.roles import Assignment, evaluate_assignment
    a = Assignment.from_arm(_made(at(SUB_SCOPE, "Owner", GONE), NEW))
    assert evaluate_assignment(a, builtin_by_name("Owner"), OWNER_GRANTS, groups=NotInDirectory(), now=NOW,
                               own_principal_ids={GONE}) == []


def test_a_cached_wide_definition_narrowed_elsewhere_still_waits():
    grants = load_documents([("p.yaml", {**BASELINE[0].to_document(),
                                         "grants": [{"role": CUSTOM, "scopes": [SUB_SCOPE], "groups": [ADMINS]}]})])
    grant = _made(_custom_assignment(GONE), NEW)
    authz = CachingAuthz(at(MG, "Owner", b.ALICE), grant, definitions={CUSTOM: custom(["*"]).to_arm(SUB_SCOPE)})
    authz.get_role_definition(grant["properties"]["roleDefinitionId"])           # cached wide
    authz.definitions[CUSTOM] = custom(["*/read"]).to_arm(SUB_SCOPE)              # narrowed elsewhere
    row = _decide(authz, grant, NotInDirectory(), grants)
    assert (row.verdict, row.reason) == ("failed", "transient") and grant["id"].lower() in authz.world


def test_last_owner_rail_keeps_it():
    grant = _made(at(SUB_SCOPE, "Owner", GONE), NEW)
    authz = FakeAuthz(grant)
    row = _decide(authz, grant, NotInDirectory(), OWNER_GRANTS)
    assert row.verdict == "violation" and grant["id"].lower() in authz.world


def test_a_new_principal_owner_at_the_same_scope_never_vouches():
    other = _made(at(SUB_SCOPE, "Owner", GONE, name="0b0b0000-0000-4000-8000-0000000000e9"), NEW)
    target = at(SUB_SCOPE, "Owner", b.BOB)
    authz = FakeAuthz(other, target)
    row = _decide(authz, target, NotInDirectory(), OWNER_GRANTS)
    assert target["id"].lower() in authz.world and row.verdict in ("violation", "failed")


def test_dry_run_removes_nothing():
    grant = _made(at(SUB_SCOPE, "Owner", GONE), NEW)
    authz = FakeAuthz(at(MG, "Owner", b.ALICE), grant)
    g = RoleAssignmentGuardrail(FakeService(), authz, NotInDirectory())
    row = AuditRow(event_id="e", event_type="x", resource_id=grant["id"], verdict="ignored")
    g.decide(NS(deadline=None, now=NOW, dry_run=True), row, NS(resource_id=parse_arm_id(grant["id"]),
                                                                envelope=NS(time=None)), OWNER_GRANTS)
    assert row.verdict == "dry_run" and grant["id"].lower() in authz.world
