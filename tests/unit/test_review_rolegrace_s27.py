"""Review of 05ae4e8 (session 27): within the replication grace only the membership rule waits.

Defect: the claim "a grant another rule removes anyway is removed at once" does not hold when the
other rule's finding depends on a custom role definition this worker holds from its cache. The
first evaluation raises ``PrincipalNotFound`` (no removing finding on the stale, narrow copy)
before ``decide`` reaches the stale-definition re-read (``_cached_definitions``), so the
privileged grant stays for as long as the cache (``definition_ttl``, 600 s = the grace) lasts —
exactly the window the change says it closes."""

from __future__ import annotations

from datetime import timedelta

from guardrails.policy.loader import load_documents
from tests import builders as b
from tests.unit.test_review_role_s25 import ADMINS, GONE, NotInDirectory, _decide, _made
from tests.unit.test_role_review_fixes import BASELINE, CUSTOM, MG, NOW, SUB_SCOPE, custom, at
from tests.unit.test_roles_s20b import CachingAuthz, _custom_assignment

NEW = NOW - timedelta(minutes=1)


def test_a_custom_role_widened_elsewhere_granted_to_a_principal_not_yet_replicated_is_removed_at_once():
    # the custom role has grant entries (platform admins at the subscription), so ``not-granted``
    # waits for Graph; on its current definition ('*') ``privileged-at-subscription`` removes it
    grants = load_documents([("p.yaml", {
        **BASELINE[0].to_document(),
        "grants": [{"role": CUSTOM, "scopes": [SUB_SCOPE], "groups": [ADMINS]}]})])
    seen = _made(_custom_assignment(b.BOB, name="0b0b0000-0000-4000-8000-0000000000d1"), NOW - timedelta(days=1))
    authz = CachingAuthz(at(MG, "Owner", b.ALICE), seen,
                         definitions={CUSTOM: custom(["*/read"]).to_arm(SUB_SCOPE)})

    class Admin:                       # BOB is a platform admin: his grant is covered
        def is_member(self, principal_id, group_id):
            return True

    assert _decide(authz, seen, Admin(), grants).verdict == "compliant"      # the narrow copy is cached
    authz.definitions[CUSTOM] = custom(["*"]).to_arm(SUB_SCOPE)             # widened; another instance saw it
    grant = _made(_custom_assignment(GONE, name="0b0b0000-0000-4000-8000-0000000000d2"), NEW)
    authz.world[grant["id"].lower()] = grant
    row = _decide(authz, grant, NotInDirectory(), grants)
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)
    assert [v.rule for v in row.violations] == ["privileged-at-subscription"]
    assert grant["id"].lower() not in authz.world
