"""Within the replication grace only the membership rule waits (session 27), end to end: the real
azure-mgmt-authorization client and azure-core Graph pipeline against the emulator's assignments and
complete directory (an object it does not hold answers 404), Azurite audit. Asserts on the
emulator's resulting state.

An Owner granted at subscription scope to a principal created a moment ago (Graph does not hold it
yet) was kept for the whole ten-minute grace, every delivery failing on the membership question,
although ``privileged-at-subscription`` removes it whoever the principal turns out to be."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests import builders as b
from tests.integration.test_review_role_s25 import (
    DIRECTORY, NEWCOMER, _graph_calls, _made, _owner_grant_policy,
)
from tests.integration.test_role_guardrail import BREAK_GLASS_OWNER, _exists

pytestmark = pytest.mark.integration


def test_an_owner_granted_to_a_principal_not_yet_replicated_is_removed_at_once(harness, tmp_path):
    # GIVEN Owner at the subscription is granted to the platform admins' group, and an Owner
    # assignment made five seconds ago to a principal Graph does not hold yet
    grant = _made(b.role_assignment("Owner", NEWCOMER, name="0d0d0000-0000-4000-8000-0000000000e1"),
                  timedelta(seconds=5))
    h = harness([], world={"roleAssignments": [BREAK_GLASS_OWNER, grant], "directory": DIRECTORY},
                extra_metadata=[_owner_grant_policy(tmp_path)])
    # WHEN its event is delivered
    row = h.deliver(b.role_event(grant))
    # THEN the directory was asked (404: replicating), the membership rule is left undecided, and
    # the privileged grant is removed now on the rule that needs no directory
    assert _graph_calls(h) and all(q["status"] == 404 for q in _graph_calls(h))
    assert row.verdict == "remediated", row.message
    assert [v.rule for v in row.violations] == ["privileged-at-subscription"]
    assert "/not-granted undecided" in row.message and "not yet in the directory" in row.message
    assert not _exists(h, grant) and _exists(h, BREAK_GLASS_OWNER)
    # a redelivery finds it gone: nothing more is removed, the break-glass Owner stays
    again = h.deliver(b.role_event(grant))
    assert (again.verdict, again.reason) == ("ignored", "resource_not_found"), again.message
    assert _exists(h, BREAK_GLASS_OWNER)


def test_a_grant_only_membership_decides_still_waits_for_the_directory(harness, tmp_path):
    # GIVEN a data-scientist grant on the resource group to the same new principal: only
    # membership of the data-science group can decide it
    from tests.integration.test_review_role_s25 import _ds_harness, DS
    from tests.integration.test_role_guardrail import RG_SCOPE

    new = _made(b.role_assignment(DS, NEWCOMER, scope=RG_SCOPE), timedelta(seconds=5))
    h = _ds_harness(harness, tmp_path, [new])
    row = h.deliver(b.role_event(new))
    # THEN, as before, the decision fails (transient) and the grant stays until Graph answers
    assert (row.verdict, row.reason) == ("failed", "transient"), row.message
    assert _exists(h, new)
