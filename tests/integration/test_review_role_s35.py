"""Role-assignment guardrail review (session 35): the removal's breaker permit, the re-grant count and
the audit trail of a removal, end to end on Azurite + the HTTPS emulator with the real
azure-mgmt-authorization client; pure unit tests of the evaluation at the end.

Each test that is not labelled a control FAILS on the code as reviewed and names what is wrong."""

from __future__ import annotations

import threading
import time

import pytest

from tests import builders as b
from tests.integration.test_review_rails_s33 import CAROL, ONE_PERMIT, _owner
from tests.integration.test_role_guardrail import _exists, _harness

pytestmark = pytest.mark.integration


# ---- 1. a DELETE throttled on every attempt keeps its breaker permit -----------------------------------
def test_a_removal_throttled_on_every_attempt_gives_its_permit_back(harness, tmp_path):
    """README (Circuit breaker): a permit whose fix is not made ("ARM refused or never answered
    the write — throttled, a 5xx —") is given back, "so a throttling episode ... cannot open the
    breaker for a whole subscription". ``role_guardrail._refused`` (line 86) gives the permit back
    only when ``exc.attempts == 1``: a DELETE answered 429, retried after its Retry-After, and
    answered 429 again (``answers == (429, 429)``: ARM rejected both before processing, the
    assignment is certainly still there) keeps the permit. The secrets path's
    ``secrets.rotation.refused_outright`` gives it back for exactly this case (every answer a
    refusal). With a breaker of 1, CAROL's unrelated Owner grant is then held ``circuit_open``.
    Expected: the throttled removal's permit is released; CAROL's grant is removed."""
    bob, carol = _owner(b.BOB, 1), _owner(CAROL, 2)
    h = _harness(harness, tmp_path, [bob, carol], extra=ONE_PERMIT)
    h.emu.add_fault(method="DELETE", path_regex=bob["name"], status=429, retry_after=0, times=1)
    h.emu.add_fault(method="DELETE", path_regex=bob["name"], status=429, retry_after=3600, times=1)
    first = h.deliver(b.role_event(bob))
    assert (first.verdict, first.reason) == ("failed", "throttled"), (first.verdict, first.reason, first.message)
    assert _exists(h, bob)
    assert [q["status"] for q in h.arm_requests("DELETE")] == [429, 429]
    row = h.deliver(b.role_event(carol))
    assert (row.verdict, row.reason) == ("remediated", ""), (row.verdict, row.reason, row.message)
    assert not _exists(h, carol)


# ---- 2. a DELETE answered 5xx after it landed gives its permit back -------------------------------------
def _land_during(h, assignment: dict) -> "threading.Thread":
    """ARM carries the DELETE out while its answer is still on the way: the emulator's own removal,
    made as soon as the (faulted, delayed: ``delay_ms``) DELETE has reached the emulator, before
    the fault's status is answered."""

    def go() -> None:
        until = time.monotonic() + 10
        while time.monotonic() < until and not any(
                q["method"] == "DELETE" and assignment["name"] in q["path"] for q in h.emu.requests):
            time.sleep(0.01)
        h.emu.authz.delete_assignment(assignment["id"], None, None)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_a_removal_answered_500_after_it_landed_keeps_its_permit(harness, tmp_path):
    """The project's own rule for "a write refused outright, so certainly not made"
    (``adapters/retry.py`` ``BudgetedCaller.call`` docstring, ``secrets.rotation.refused_outright``):
    only 400/401/403/404/429 answers are refusals; "a 409 or 5xx ... leaves the write's outcome
    unknown". ``role_guardrail._refused`` (line 86) counts ANY status on a lone request as a
    refusal: a DELETE that ARM carried out and then answered 500 (an internal error after the
    commit, a gateway timeout) is taken as "not made" and its breaker permit is given back, so the
    breaker undercounts exactly the removals a misbehaving ARM makes. Here the assignment is gone
    after the DELETE answered 500; with a breaker of 1 the next, unrelated Owner grant is removed
    as if no removal had been made in the window.
    Expected: a 5xx leaves the permit counted (as the secrets path does); CAROL's grant is held
    ``circuit_open`` because one removal was made in the window."""
    bob, carol = _owner(b.BOB, 3), _owner(CAROL, 4)
    h = _harness(harness, tmp_path, [bob, carol], extra=ONE_PERMIT)
    h.emu.add_fault(method="DELETE", path_regex=bob["name"], status=500, retry_after=3600, delay_ms=600, times=1)
    landed = _land_during(h, bob)
    first = h.deliver(b.role_event(bob))
    landed.join()
    assert first.verdict == "failed" and not _exists(h, bob), (first.verdict, first.message)
    assert [q["status"] for q in h.arm_requests("DELETE")] == [500]
    row = h.deliver(b.role_event(carol))
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open"), (row.verdict, row.reason, row.message)
    assert _exists(h, carol)


# ---- 3. a removal whose answer was lost, with no budget left to retry, is never audited as made ----------
def test_a_removal_whose_answer_was_lost_is_audited_as_made_not_failed_then_ignored(harness, tmp_path):
    """``_remove`` (role_guardrail.py:386-393): when ``delete_assignment`` raises (here: the
    DELETE's answer lost, no budget left for a retry) the row is ``failed`` at once, with no
    read-back, and the claim (with the removal noted in it) is released. ARM did remove the
    assignment, so Event Grid's redelivery reads a 404 and audits ``ignored`` /
    ``resource_not_found`` "the role assignment no longer exists". The audit trail never says the
    privileged grant was removed, or by whom: a "failed" then an "ignored". The same lost answer
    with budget for one more request (``delete_assignment`` -> None) is read back and audited
    ``remediated``; a takeover after a crash recovers the noted removal (``_recover``).
    Expected: the delivery that sent the DELETE reads the assignment back when the answer was
    lost (not refused outright) and records the removal (``remediated``, or ``requested`` when
    the read-back fails), or the redelivery recovers the noted removal as a takeover does; in no
    case is the only trace of the removal a ``failed`` row followed by ``ignored``."""
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, _policy_dir

    bob = _owner(b.BOB, 5)
    h = harness([], world={"roleAssignments": [BREAK_GLASS_OWNER, bob], "roleDefinitions": [],
                           "directory": {"groups": {b.DS_GROUP: [b.ALICE]}}},
                extra_metadata=[_policy_dir(tmp_path, "enforce")],
                env={"GUARDRAILS_ARM_TIMEOUT_SECONDS": "1.0", "GUARDRAILS_TIME_BUDGET_SECONDS": "1.0"})
    h.emu.add_fault(method="DELETE", path_regex=bob["name"], delay_ms=1300, times=1)   # applied, answer lost
    event = b.role_event(bob)
    first = h.deliver(event)
    until = time.monotonic() + 5                      # the emulator finishes the DELETE it was sent
    while _exists(h, bob) and time.monotonic() < until:
        time.sleep(0.05)
    assert not _exists(h, bob)
    assert len(h.arm_requests("DELETE")) == 1
    again = h.deliver(event)                          # Event Grid's redelivery of the failed delivery
    rows = [(r.verdict, r.reason) for r in (first, again)]
    assert any(v == "remediated" or (v == "requested") for v, _r in rows), (
        rows, first.message, again.message)


# ---- 4. a DELETE throttled once, whose retry finds the assignment gone, keeps its permit ----------------
def test_a_throttled_delete_whose_retry_finds_the_assignment_gone_gives_its_permit_back(harness, tmp_path):
    """``AuthorizationGateway.delete_assignment`` (adapters/authorization.py:115) reports "gone
    after a retry" (None, "the request before it may have deleted it") whenever more than one
    request was sent, and ``_remove`` then keeps the permit. When the request before was answered
    429 it certainly deleted nothing: the assignment was removed by someone else between the
    guardrail's read and its retry, exactly the "already gone" case whose permit README gives
    back ("a permit whose fix is then not made (... the resource was gone ...) is given back";
    ``delete_assignment`` -> False after one request). Here another principal removes BOB's
    Owner while the guardrail's first DELETE is throttled; the retry answers 404 and the removal's
    permit is kept, so with a breaker of 1 CAROL's unrelated Owner grant is held ``circuit_open``.
    Expected: a retry's 404 after attempts that were all refused (``answers`` all 429) counts as
    "gone before this removal" (False): the permit goes back, CAROL's grant is removed."""
    bob, carol = _owner(b.BOB, 7), _owner(CAROL, 8)
    h = _harness(harness, tmp_path, [bob, carol], extra=ONE_PERMIT)
    h.emu.add_fault(method="DELETE", path_regex=bob["name"], status=429, retry_after=0, delay_ms=500, times=1)
    someone_else = _land_during(h, bob)        # removed by another principal meanwhile
    first = h.deliver(b.role_event(bob))
    someone_else.join()
    assert [q["status"] for q in h.arm_requests("DELETE")] == [429, 204], h.arm_requests("DELETE")
    assert first.verdict == "remediated" and not _exists(h, bob), (first.verdict, first.message)
    row = h.deliver(b.role_event(carol))
    assert (row.verdict, row.reason) == ("remediated", ""), (row.verdict, row.reason, row.message)
    assert not _exists(h, carol)


# ---- 5. (pure) the shipped policy lets a custom role holding Microsoft.KeyVault/vaults/write stand ------
def test_a_custom_role_that_can_rewrite_vaults_is_privileged_at_subscription_scope():
    """README (Deploy, least privilege) says of ``Microsoft.KeyVault/vaults/write``: it "would also
    let a holder ... add an access policy to a vault still on access policies, or turn RBAC
    authorization off, and so reach its secrets; no ARM condition can narrow it" (the vault PUT
    carries ``properties.accessPolicies`` and ``enableRbacAuthorization``). The shipped
    ``rbac-least-privilege`` policy lists ``Microsoft.KeyVault/vaults/accessPolicies/write`` among
    ``custom_role_actions`` but not ``vaults/write``, so a custom role holding only
    ``Microsoft.KeyVault/vaults/write`` (plus reads) at subscription scope — every vault's secrets,
    by the README's own account — is judged unprivileged and kept, while a Key Vault Contributor
    (listed) or a custom ``Microsoft.KeyVault/vaults/*`` role is removed.
    Expected: such a role is ``privileged-at-subscription`` under the shipped policy (add
    ``Microsoft.KeyVault/vaults/write`` to ``custom_role_actions``, a new policy version)."""
    from tests.unit.test_role_review_fixes import custom, rules

    assert rules(custom(["*/read", "Microsoft.KeyVault/vaults/write"])) == ["privileged-at-subscription"]


def test_control_a_custom_vault_wildcard_role_is_privileged_already():
    """Control (passes): ``Microsoft.KeyVault/vaults/*`` overlaps ``vaults/accessPolicies/write``."""
    from tests.unit.test_role_review_fixes import custom, rules

    assert rules(custom(["*/read", "Microsoft.KeyVault/vaults/*"])) == ["privileged-at-subscription"]


# ---- 6. Graph failing keeps a privileged grant no membership could save ---------------------------------
@pytest.mark.parametrize("status", [503, 403])
def test_graph_failing_does_not_keep_an_owner_the_privileged_rule_removes_anyway(harness, tmp_path, status):
    """``policy.roles.evaluate_assignment`` (roles.py:469-479) lets any Graph error but a 404 out
    of the ``not-granted`` rule, so ``decide`` audits the whole decision ``failed`` (role_guardrail.py
    :155) and keeps the assignment — even when another rule removes it whatever Graph would say.
    Here the site grants Owner at the subscription to the platform admins' group (the s25
    ``_owner_grant_policy``) and BOB, in no such group, is made Owner at the subscription:
    ``privileged-at-subscription`` removes him whether or not he is a member (a grant entry never
    exempts a privileged role). Graph answering 503 (an outage, 24 h of redeliveries) or 403 (the
    deployment lacks admin consent: permanent) leaves the Owner in place, while Graph's 404 within
    the replication grace already removes such a grant at once ("Only the membership rule waits: a
    grant another rule removes anyway (Owner at subscription scope, say) is removed at once").
    Expected: the assignment is removed (``remediated``), the row naming ``not-granted`` undecided,
    as for the 404 within the grace."""
    from tests.integration.test_review_role_s25 import DIRECTORY, _owner_grant_policy
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER

    grant = b.role_assignment("Owner", b.BOB, name="0c0c3500-0000-4000-8000-0000000000a6")
    h = harness([], world={"roleAssignments": [BREAK_GLASS_OWNER, grant], "directory": DIRECTORY},
                extra_metadata=[_owner_grant_policy(tmp_path)])
    h.emu.add_fault(method="POST", path_regex="checkMemberGroups", status=status)
    row = h.deliver(b.role_event(grant))
    assert any(q["host"] == "graph" for q in h.emu.requests), "Graph was asked (the Owner grant's group)"
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)
    assert not _exists(h, grant)


def test_control_graph_404_within_the_grace_removes_the_same_owner_at_once(harness, tmp_path):
    """Control (passes): the same Owner, Graph not holding BOB yet (404 within the grace)."""
    from tests.integration.test_review_role_s25 import DIRECTORY, _owner_grant_policy
    from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER

    grant = b.role_assignment("Owner", b.BOB, name="0c0c3500-0000-4000-8000-0000000000a7")
    grant["properties"]["principalId"] = "5e5e5e5e-0000-4000-8000-00000000c0de"   # not in the directory
    from datetime import datetime, timezone
    grant["properties"]["createdOn"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    h = harness([], world={"roleAssignments": [BREAK_GLASS_OWNER, grant], "directory": DIRECTORY},
                extra_metadata=[_owner_grant_policy(tmp_path)])
    row = h.deliver(b.role_event(grant))
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)
    assert not _exists(h, grant)


# ---- (pure) the one rule for "refused outright": a 409 refuses only with a refusal reason ----------------
def test_a_scope_lock_is_a_refusal_and_any_other_conflict_leaves_the_outcome_unknown():
    """``adapters.retry.refused_outright`` (shared by the role, secret and key paths): ARM's 409
    ``ScopeLocked`` refuses the write before it is processed (the permit goes back, after throttled
    attempts too); any other 409 may be the write's own operation still running."""
    from guardrails.errors import refused_outright
    from guardrails.errors import SCOPE_LOCKED, ArmError

    def error(status, answers, reason=None):
        exc = ArmError("DELETE x: refused", status=status, reason=reason)
        exc.attempts, exc.answers = len(answers), answers
        return exc

    assert refused_outright(error(409, (409,), SCOPE_LOCKED)) is True
    assert refused_outright(error(409, (429, 409), SCOPE_LOCKED)) is True
    assert refused_outright(error(409, (409,))) is False
    assert refused_outright(error(409, (500, 409), SCOPE_LOCKED)) is False
