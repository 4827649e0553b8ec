"""Within the replication grace only the membership rule waits (session 27).

Graph's 404 on a principal made minutes ago is replication lag, so the ``not-granted`` rule (which
asks Graph whether the principal is in a granted group) cannot be decided yet. Before this change
the whole decision failed and was redelivered for up to ten minutes, so an Owner granted at
subscription scope to a principal just created stayed in place all that time, although
``privileged-at-subscription`` removes it whatever the directory says. Now the other rules and
policies are judged at once and decide alone when one of them removes the grant."""

from __future__ import annotations

from datetime import timedelta

import pytest

from guardrails.errors import ArmTransient
from guardrails.policy.loader import load_documents
from guardrails.policy.roles import Assignment, evaluate_assignment
from guardrails.model.roles import builtin_by_name
from tests import builders as b
from tests.unit.test_review_role_s25 import (
    ADMINS, DS, DS_GRANTS, GONE, OWNER_GRANTS, RG, NotInDirectory, _decide, _made,
)
from tests.unit.test_role_review_fixes import BASELINE, MG, NOW, SUB_SCOPE, FakeAuthz, at

NEW = NOW - timedelta(minutes=1)           # well inside the ten-minute grace


def _owner_grants(mode: str = "enforce", **extra) -> list:
    return load_documents([("p.yaml", {
        **BASELINE[0].to_document(), "mode": mode,
        "grants": [{"role": "Owner", "scopes": [SUB_SCOPE], "groups": [ADMINS]}], **extra})])


def _findings(body: dict, role: str, policies, groups=None):
    return evaluate_assignment(Assignment.from_arm(body), builtin_by_name(role), policies,
                               groups=groups or NotInDirectory(), now=NOW)


def test_a_privileged_grant_to_a_principal_not_yet_replicated_is_judged_now():
    body = _made(at(SUB_SCOPE, "Owner", GONE), NEW)
    graph = NotInDirectory()
    fs = _findings(body, "Owner", OWNER_GRANTS, graph)
    assert [f.rule for f in fs] == ["privileged-at-subscription"]          # not-granted: undecided
    assert graph.asked >= 1                                                  # the directory was asked
    assert all(f.directory_pending == (OWNER_GRANTS[0].ref,) for f in fs)
    assert not any(f.principal_missing for f in fs)                          # not "deleted": replicating


def test_only_the_grant_rule_waiting_still_fails_the_decision():
    # a data-scientist grant on a resource group: only membership decides it
    with pytest.raises(ArmTransient) as err:
        _findings(_made(at(RG, DS, GONE), NEW), DS, DS_GRANTS)
    assert err.value.status == 404


def test_a_privileged_finding_that_would_not_remove_the_grant_still_waits():
    # audit mode: the finding is only reported, so the decision waits for the whole answer
    with pytest.raises(ArmTransient):
        _findings(_made(at(SUB_SCOPE, "Owner", GONE), NEW), "Owner", _owner_grants("audit"))
    # exempted at the subscription: the same
    exempt = _owner_grants(exemptions=[{"scope": SUB_SCOPE, "reason": "migration", "owner": "platform",
                                        "expires": "2099-01-01T00:00:00Z"}])
    with pytest.raises(ArmTransient):
        _findings(_made(at(SUB_SCOPE, "Owner", GONE), NEW), "Owner", exempt)


def test_another_policy_removing_the_grant_decides_while_one_policy_waits():
    # the role on a resource group: the data-scientist grants wait for Graph; a strict-scope policy
    # over the group has no entry for the role and removes it anyway
    strict = load_documents([("s.yaml", {
        "id": "strict-rg", "version": 1, "kind": "role-assignments", "description": "x", "mode": "enforce",
        "strict_scopes": [RG], "action": {"type": "delete-role-assignment"}})])
    fs = _findings(_made(at(RG, "Reader", GONE), NEW), "Reader", [*DS_GRANTS, *strict])
    assert [f.rule for f in fs] == ["strict-scope-no-grant"]
    assert fs[0].directory_pending == ()                   # the data-scientist policy has no entry for Reader
    # the data-scientist role itself: its grant entries wait, the strict policy (no entry) removes it
    fs = _findings(_made(at(RG, DS, GONE), NEW), DS, [*DS_GRANTS, *strict])
    assert [(f.policy.ref, f.rule) for f in fs] == [(strict[0].ref, "strict-scope-no-grant")]
    assert fs[0].directory_pending == (DS_GRANTS[0].ref,)


def test_past_the_grace_nothing_waits_and_both_findings_stand():
    fs = _findings(_made(at(SUB_SCOPE, "Owner", GONE), NOW - timedelta(minutes=11)), "Owner", OWNER_GRANTS)
    assert [f.rule for f in fs] == ["privileged-at-subscription", "not-granted"]
    assert all(f.principal_missing and f.directory_pending == () for f in fs)


def test_the_guardrail_removes_the_owner_at_once_and_the_row_names_the_rule_left_undecided():
    grant = _made(at(SUB_SCOPE, "Owner", GONE), NEW)
    authz = FakeAuthz(at(MG, "Owner", b.ALICE), grant)             # an Owner above stays
    row = _decide(authz, grant, NotInDirectory(), OWNER_GRANTS)
    assert row.verdict == "remediated", row.message
    assert [v.rule for v in row.violations] == ["privileged-at-subscription"]
    assert grant["id"].lower() not in authz.world
    assert f"{OWNER_GRANTS[0].ref}/not-granted undecided" in row.message
    assert "not yet in the directory" in row.message and "member of no group" not in row.message
