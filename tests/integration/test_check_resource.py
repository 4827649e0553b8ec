"""On-demand resource checks: the same decision as the event path, acting only when asked."""

import pytest

from guardrails.errors import InvalidArmId
from tests import builders as b

pytestmark = pytest.mark.integration


def test_check_without_remediate_reports_what_it_would_do_and_writes_nothing(harness):
    res = b.storage()
    h = harness([res])
    row = h.service.check_resource(res["id"], remediate=False)
    assert row.verdict == "dry_run" and row.event_type == "Guardrails.CheckResource"
    assert {v.outcome for v in row.violations} == {"dry_run"}
    assert h.writes() == [] and [q["method"] for q in h.arm_requests()] == ["GET"]
    assert [r.delivery_id for r in h.stored_rows()] == [row.delivery_id]


def test_check_with_remediate_fixes_like_the_event_path(harness):
    res = b.workspace()
    h = harness([res])
    row = h.service.check_resource(res["id"], remediate=True)
    assert row.verdict == "remediated"
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_check_of_a_compliant_resource(harness):
    res = b.storage(pna="Disabled", blob=False)
    h = harness([res])
    assert h.service.check_resource(res["id"], remediate=False).verdict == "compliant"


def test_check_rejects_a_bad_id_before_any_call(harness):
    h = harness([])
    with pytest.raises(InvalidArmId):
        h.service.check_resource("/subscriptions/x/../../etc", remediate=False)
    assert h.emu.requests == []
