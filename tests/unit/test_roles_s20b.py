"""Role-assignment review fixes (s20b), over fakes:

1. a removal of a grant (scope, principal, role) already removed within the policy's breaker
   window takes no breaker permit and is always made; any other removal takes one;
2. an assignment at subscription scope or above about to be judged compliant on a role
   definition this instance cached (a custom role, or a custom role its ABAC condition lets it
   assign) is judged on the definition read again;
3. an exemption whose scope is a role assignment id is refused by validation and never exempts.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import timedelta
from types import SimpleNamespace as NS

import pytest

from guardrails.errors import MetadataValidationError, StoreError
from guardrails.model.arm_id import parse_arm_id
from guardrails.model.decision import AuditRow
from guardrails.model.policy import Exemption
from guardrails.policy.flipflop import step, withdraw
from guardrails.policy.loader import load_documents
from guardrails.policy.roles import Assignment, evaluate_assignment, names_role_assignment
from guardrails.role_guardrail import RoleAssignmentGuardrail
from guardrails.safety_rails import SafetyRails
from tests import builders as b
from tests.unit.test_role_review_fixes import (BASELINE, CUSTOM, MG, NOW, SUB_SCOPE, FakeAuthz, NoGroups, at,
                                               custom, decide)

CAROL = "ca401000-0000-4000-8000-0000000000c1"


# ---- 1. re-grants take no breaker permit ----------------------------------------------------------
class MemEscalations:
    """The escalation table's semantics (``TableEscalationStore``) in memory, on the test's clock."""

    def __init__(self, clock):
        self.states, self.clock = {}, clock

    def attempt(self, key, actor, *, rule, event=None, intent=None):
        new, decision = step(self.states.get(key), now=self.clock().timestamp(), actor=actor, rule=rule,
                             event=event, intent=intent)
        self.states[key] = new
        return decision

    def withdraw(self, key, event):
        if key in self.states:
            self.states[key] = withdraw(self.states[key], event)

    def status(self, key):
        state = self.states.get(key)
        return None if state is None else {"resource_id": key, **asdict(state)}


class Breakers:
    def __init__(self, room: int):
        self.room, self.calls = room, 0

    def try_acquire(self, policy_id, subscription_id, *, max_actions, window_seconds, key=None):
        self.calls += 1
        self.room -= 1
        return self.room >= 0


class RailService:
    settings = NS(own_principal_ids=frozenset(), is_own_principal=lambda *ids: False)

    def __init__(self, room: int, escalations="mem"):
        self.now = NOW
        self.breakers = Breakers(room)
        self.escalations = MemEscalations(lambda: self.now) if escalations == "mem" else escalations
        self.rails = SafetyRails(self)

    def note_intent(self, ctx, intent):
        pass


def _decide(svc, authz, target) -> AuditRow:
    g = RoleAssignmentGuardrail(svc, authz, NoGroups())
    row = AuditRow(event_id=target["id"][-12:], event_type="x", resource_id=target["id"], verdict="ignored")
    g.decide(NS(deadline=None, now=svc.now, dry_run=False), row, NS(resource_id=parse_arm_id(target["id"])), BASELINE)
    return row


def _regrant(authz, principal: str, n: int) -> dict:
    a = at(SUB_SCOPE, "Owner", principal, name=f"0b0b0000-0000-4000-8000-{n:012d}")
    authz.world[a["id"].lower()] = a
    return a


def test_one_grant_removed_again_and_again_takes_one_permit():
    window = BASELINE[0].breaker.window_seconds
    svc, authz = RailService(room=1), FakeAuthz(at(MG, "Owner", b.ALICE))
    rows = []
    for n in range(6):                                       # six re-grants of one grant, a breaker of one
        a = _regrant(authz, b.BOB, n)
        rows.append(_decide(svc, authz, a))
        svc.now += timedelta(seconds=window / 10)
    assert [r.verdict for r in rows] == ["remediated"] * 6
    assert [r.reason for r in rows] == [""] * 3 + ["flip_flop"] * 3      # the fight the budget counts
    assert svc.breakers.calls == 1                           # the first removal's permit only
    assert len(svc.escalations.states) == 1                  # and every removal still counted


def test_a_grant_removed_before_the_window_takes_a_permit_again():
    window = BASELINE[0].breaker.window_seconds
    svc, authz = RailService(room=5), FakeAuthz(at(MG, "Owner", b.ALICE))
    assert _decide(svc, authz, _regrant(authz, b.BOB, 1)).verdict == "remediated"
    svc.now += timedelta(seconds=window + 1)
    assert _decide(svc, authz, _regrant(authz, b.BOB, 2)).verdict == "remediated"
    assert svc.breakers.calls == 2


def test_distinct_principals_take_permits_and_open_the_breaker_but_a_regrant_still_goes():
    svc, authz = RailService(room=1), FakeAuthz(at(MG, "Owner", b.ALICE))
    bob = _regrant(authz, b.BOB, 1)
    assert _decide(svc, authz, bob).verdict == "remediated"
    carol = _regrant(authz, CAROL, 2)
    row = _decide(svc, authz, carol)
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open") and carol["id"].lower() in authz.world
    assert svc.breakers.calls == 2
    row = _decide(svc, authz, again := _regrant(authz, b.BOB, 3))     # BOB again, breaker open
    assert row.verdict == "remediated" and again["id"].lower() not in authz.world
    assert svc.breakers.calls == 2


def test_an_unreadable_escalation_entry_takes_a_permit_as_before():
    class Down(MemEscalations):
        def status(self, key):
            raise StoreError("table down")

    svc = RailService(room=0)
    svc.escalations = Down(lambda: svc.now)
    authz = FakeAuthz(at(MG, "Owner", b.ALICE))
    row = _decide(svc, authz, _regrant(authz, b.BOB, 1))
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open") and svc.breakers.calls == 1


# ---- 2. a cached custom definition is read again before an allowed verdict at broad scope ---------
class CachingAuthz(FakeAuthz):
    """``AuthorizationGateway``'s definition cache over the fake's world: ``reads`` counts ARM reads."""

    def __init__(self, *assignments, definitions=None):
        super().__init__(*assignments, definitions=definitions)
        self.cache, self.reads = {}, 0

    def get_role_definition(self, rdid, deadline=None):
        from guardrails.model.roles import BUILTIN_ROLES, role_guid

        guid = role_guid(rdid)
        if guid in BUILTIN_ROLES:
            return BUILTIN_ROLES[guid]
        if guid not in self.cache:
            self.reads += 1
            self.cache[guid] = super().get_role_definition(rdid, deadline)
        return self.cache[guid]

    def forget_definition(self, guid):
        self.cache.pop(guid.lower(), None)


def _custom_assignment(principal, scope=SUB_SCOPE, name=None, condition=None, role="Owner"):
    a = at(scope, role, principal, name=name)
    if role == "Owner":
        a["properties"]["roleDefinitionId"] = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM}"
    if condition:
        a["properties"]["condition"], a["properties"]["conditionVersion"] = condition, "2.0"
    return a


def test_a_custom_role_widened_elsewhere_is_read_again_before_it_is_called_compliant():
    first = _custom_assignment(b.BOB, name="0b0b0000-0000-4000-8000-0000000000c1")
    authz = CachingAuthz(first, definitions={CUSTOM: custom(["*/read"]).to_arm(SUB_SCOPE)})
    assert decide(authz, first).verdict == "compliant"
    authz.definitions[CUSTOM] = custom(["*"]).to_arm(SUB_SCOPE)     # widened; handled by another instance
    second = _custom_assignment(b.BOB, name="0b0b0000-0000-4000-8000-0000000000c2")
    authz.world[second["id"].lower()] = second
    row = decide(authz, second)
    assert row.verdict == "remediated" and second["id"].lower() not in authz.world, row.message


def test_the_roles_a_conditional_roles_condition_names_are_read_again():
    from tests.unit.test_role_review_fixes import _allow

    cond = _allow(b.ROLE_IDS["Reader"], CUSTOM)
    admin = _custom_assignment(b.BOB, condition=cond, role="Role Based Access Control Administrator")
    authz = CachingAuthz(at(MG, "Owner", b.ALICE), admin, definitions={CUSTOM: custom(["*/read"]).to_arm(SUB_SCOPE)})
    assert decide(authz, admin).verdict == "compliant"
    authz.definitions[CUSTOM] = custom(["Microsoft.Authorization/roleAssignments/*"]).to_arm(SUB_SCOPE)
    assert decide(authz, admin).verdict == "remediated"


def test_the_second_read_is_bounded_to_broad_scopes_and_non_catalogue_roles():
    rg = _custom_assignment(b.BOB, scope=b.rg_id())
    reader = at(SUB_SCOPE, "Reader", b.BOB)
    sub = _custom_assignment(b.ALICE)
    authz = CachingAuthz(rg, reader, sub, definitions={CUSTOM: custom(["*/read"]).to_arm(SUB_SCOPE)})
    assert [decide(authz, a).verdict for a in (rg, rg, reader)] == ["compliant"] * 3
    assert authz.reads == 1                                  # below a subscription: the cache is trusted
    assert decide(authz, sub).verdict == "compliant"
    assert authz.reads == 2                                  # compliant at the subscription: one read
    authz.definitions[CUSTOM] = custom(["*"]).to_arm(SUB_SCOPE)
    assert decide(authz, sub).verdict == "remediated"        # read again, now privileged
    assert authz.reads == 3


# ---- 3. exemptions naming a role assignment id ----------------------------------------------------
NAME = "0e1f0000-0000-4000-8000-0000000000aa"
APPROVED = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleAssignments/{NAME}"


def _exempting(scope: str) -> dict:
    return {**BASELINE[0].to_document(), "exemptions": [{
        "scope": scope, "reason": "pipeline owner during migration", "owner": "platform@contoso.com",
        "expires": (NOW + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")}]}


@pytest.mark.parametrize("scope", [APPROVED, APPROVED.upper(), f"/providers/Microsoft.Authorization/roleAssignments/{NAME}",
                                   f"{b.rg_id()}/providers/Microsoft.Authorization/roleAssignments/{NAME}"])
def test_a_role_assignment_id_is_refused_as_an_exemption_scope(scope):
    with pytest.raises(MetadataValidationError) as err:
        load_documents([("p.yaml", _exempting(scope))])
    assert "$.exemptions[0].scope" in str(err.value) and "role assignment id is no exemption scope" in str(err.value)


def test_a_subscription_or_resource_group_exemption_still_loads_and_exempts():
    (pol,) = load_documents([("p.yaml", _exempting(SUB_SCOPE))])
    a = Assignment.from_arm(at(SUB_SCOPE, "Owner", b.BOB))
    from guardrails.model.roles import BUILTIN_ROLES
    (f,) = evaluate_assignment(a, BUILTIN_ROLES[b.ROLE_IDS["Owner"]], [pol], groups=NoGroups(), now=NOW)
    assert f.exemption is not None


def test_an_assignment_id_exemption_that_got_in_anyway_exempts_nobody():
    pol = replace(BASELINE[0], exemptions=(Exemption(APPROVED, "migration", "platform@contoso.com", None),))
    attacker = at(SUB_SCOPE, "Owner", b.BOB, name=NAME)          # BOB reuses the exempted assignment's name
    authz = FakeAuthz(at(MG, "Owner", b.ALICE), attacker)
    row = decide(authz, attacker, policies=[pol])
    assert row.verdict == "remediated" and attacker["id"].lower() not in authz.world


def test_names_role_assignment():
    assert names_role_assignment(APPROVED) and names_role_assignment(APPROVED.lower())
    assert not names_role_assignment(SUB_SCOPE) and not names_role_assignment(b.rg_id())
    assert not names_role_assignment(f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM}")


def test_an_audit_verdict_on_a_stale_custom_role_is_read_again_for_the_other_policies():
    """One policy in audit mode has a finding (``not-granted``); on the cached reader definition
    the enforced baseline has none. Widened elsewhere to '*', the baseline's
    ``privileged-at-subscription`` must be found, not hidden behind the audit finding."""
    audit = load_documents([("s.yaml", {**BASELINE[0].to_document(), "id": "custom-grants", "mode": "audit",
                                        "grants": [{"role": CUSTOM, "scopes": [SUB_SCOPE], "principals": [b.ALICE]}]})])
    a = _custom_assignment(b.BOB)
    authz = CachingAuthz(a, definitions={CUSTOM: custom(["*/read"]).to_arm(SUB_SCOPE)})
    assert decide(authz, a, policies=[*BASELINE, *audit]).verdict == "dry_run"
    authz.definitions[CUSTOM] = custom(["*"]).to_arm(SUB_SCOPE)
    assert decide(authz, a, policies=[*BASELINE, *audit]).verdict == "remediated"
