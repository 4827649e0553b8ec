"""Takeover recovery of a role-assignment removal over in-memory fakes: a takeover names the
holder it took over from (as the table store does), a killed worker releases nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory
from guardrails.role_guardrail import RoleAssignmentGuardrail
from guardrails.service import GuardrailsService
from guardrails.settings import Settings
from guardrails.sync import metadata_dirs
from tests import builders as b
from tests.functional.fakes import (FakeArm, MemoryAudit, MemoryBreakers, MemoryIdempotency, MemoryPending,
                                    MemoryPolicyRepo)
from tests.unit.test_role_review_fixes import MG, SUB_SCOPE, FakeAuthz, NoGroups, at


class Killed(BaseException):
    """The worker process dies here."""


def make(authz):
    now = [datetime(2026, 11, 25, 9, tzinfo=timezone.utc)]
    repo = MemoryPolicyRepo([(p.source, p.to_document()) for p in load_directory(*metadata_dirs())])
    idem, audit = MemoryIdempotency(clock=lambda: now[0], in_progress=timedelta(minutes=2)), MemoryAudit()
    svc = GuardrailsService(Settings(own_principal_ids=frozenset({b.GUARDRAIL_OID.replace("-", "")})),
                            policies=PolicyCache(repo, ttl_seconds=60), arm=FakeArm(), idempotency=idem,
                            audit=audit, breakers=MemoryBreakers(), pending=MemoryPending(),
                            roles=lambda s: RoleAssignmentGuardrail(s, authz, NoGroups()))
    return svc, idem, audit, lambda: now.__setitem__(0, now[0] + timedelta(minutes=3))


def die_in(monkeypatch, obj, name):
    def boom(*a, **k):
        raise Killed()
    monkeypatch.setattr(obj, name, boom)


def test_one_removal_is_recorded_once_across_two_takeovers():
    grant = at(SUB_SCOPE, "Owner", b.BOB)
    svc, idem, audit, expire = make(FakeAuthz(at(MG, "Owner", b.ALICE), grant))
    event = b.role_event(grant)
    with pytest.MonkeyPatch.context() as mp:       # A deletes, audits, dies before completing
        die_in(mp, idem, "complete")
        with pytest.raises(Killed):
            svc.handle_event(event)
    assert [r.verdict for r in audit.rows] == ["remediated"]
    expire()
    with pytest.MonkeyPatch.context() as mp:       # B takes over, reads the 404, dies before its row
        die_in(mp, idem, "release")
        die_in(mp, audit, "write")
        with pytest.raises(Killed):
            svc.handle_event(event)
    expire()
    svc.handle_event(event)                        # C takes over from B, with A's intent carried
    assert [r.verdict for r in audit.rows].count("remediated") == 1


def test_a_removal_the_dead_attempt_set_out_to_make_says_what_is_known():
    # A noted its intent and died before its DELETE reached ARM; someone else removed the grant
    grant = at(SUB_SCOPE, "Owner", b.BOB)
    authz = FakeAuthz(at(MG, "Owner", b.ALICE), grant)
    svc, idem, audit, expire = make(authz)
    event = b.role_event(grant)
    with pytest.MonkeyPatch.context() as mp:
        die_in(mp, idem, "release")
        die_in(mp, authz, "delete_assignment")
        with pytest.raises(Killed):
            svc.handle_event(event)
    authz.world.pop(grant["id"].lower())
    expire()
    row = svc.handle_event(event)
    assert row.verdict == "remediated"
    (v,) = row.violations
    assert "set out to delete" in v.message and "gone when retried" in v.message
    assert "deleted this assignment" not in v.message
