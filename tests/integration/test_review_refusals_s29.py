"""Review of 3624fea (refusal reasons): a long-running fix ARM accepted (202) whose operation then
ends ``Failed`` with a refusal code is raised by ``ArmGateway._poll`` as a bare ``ArmError``
(``adapters/arm.py``), outside ``BudgetedCaller``: its reason stays ``arm_error`` whatever the
operation's ``error.code`` says, unlike the same code on a synchronous answer."""

from __future__ import annotations

import json

import pytest

from tests import builders as b

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("code, reason", [
    ("RequestDisallowedByPolicy", "policy_denied"),
    ("ScopeLocked", "scope_locked"),
])
def test_a_long_running_fix_that_ends_failed_with_a_refusal_code_says_why(harness, code, reason):
    res = b.storage(name="stlrorefused", blob=False)
    h = harness([res], lro_seconds=0.3)
    h.emu.fail_operations("stlrorefused$", code=code, message="refused", times=1)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "failed" and f"ended Failed ({code})" in json.dumps(row.to_dict()), row.to_dict()
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"     # refused: nothing made
    assert row.reason == reason, (row.reason, row.message)
