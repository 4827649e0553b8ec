"""Exemption expiry re-enforcement through the timer function, on Azurite + the HTTPS emulator:
an exemption that ran out since the last run is enforced now, not at the resource's next change."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import bootstrap
from guardrails.adapters.sweep_tables import TableSweepStore, TableTimerState
from guardrails.expiry import TIMER, ExpiryReEnforcer
from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_sweep import _this_month, host_timer, rbac_with_break_glass

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def exempt_many(tmp_path, *exemptions: tuple[str, datetime], notify_only: bool = False):
    """``storage-private`` with one time-boxed exemption per (scope, expires); ``notify_only``: its
    rule only notifies (version 8), so a re-decided account is still violating."""
    d = tmp_path / "extra"
    d.mkdir(exist_ok=True)
    items = "".join(f"""
          - scope: {scope}
            reason: partner data drop until the private link is approved
            owner: alice@contoso.com
            expires: {_iso(expires)}""" for scope, expires in exemptions)
    version, description, action = ((8, "storage private, told not fixed", "{type: notify}") if notify_only else
                                    (7, "storage private, with time-boxed exemptions",
                                     "{type: set-property, value: Disabled}"))
    (d / "storage-private.yaml").write_text(textwrap.dedent(f"""
        id: storage-private
        version: {version}
        description: {description}
        mode: enforce
        selector: {{resource_types: [Microsoft.Storage/storageAccounts]}}
        rules:
          - id: public-network-access-disabled
            property: properties.publicNetworkAccess
            expect: {{equals: Disabled}}
            action: {action}
        exemptions:""") + textwrap.indent(textwrap.dedent(items), "  ") + "\n")
    return d


def _exempt(tmp_path, scope: str, expires: datetime):
    return exempt_many(tmp_path, (scope, expires))


def _enforcer(h) -> ExpiryReEnforcer:
    clock = FakeClock()
    return ExpiryReEnforcer(bootstrap.build_sweeper(h.settings, clock=clock, sleep=clock.sleep))


def test_expired_resource_exemption_is_enforced_by_the_timer(harness, tmp_path, monkeypatch):
    from guardrails.triggers.timers import exemption_expiry

    res = b.storage("stpartner", blob=False)
    other = b.storage("stother", blob=False, rg="rg-other")             # violating, not exempted: left to events
    h = harness([res, other], extra_metadata=[_exempt(tmp_path, res["id"], NOW - timedelta(minutes=2))])
    for k, v in h.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(bootstrap, "_sweeper", None)

    exemption_expiry(host_timer())

    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert h.resource(other["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    rows = [r for r in h.stored_rows() if r.event_type == "Guardrails.ExemptionExpired"]
    assert [(r.resource_id, r.verdict) for r in rows] == [(res["id"], "remediated")]
    summary = TableSweepStore(h.tables).read_month(*_this_month())
    assert [(s["kind"], s["seen"], s["remediated"]) for s in summary] == [("expiry", 1, 1)]
    assert TableTimerState(h.tables).last_run(TIMER) is not None
    # the next run starts where this one ended: the same expiry is not handled twice
    h.emu.clear_requests()
    exemption_expiry(host_timer())
    assert h.arm_requests() == []


def test_expired_resource_group_exemption_lists_that_group_only(harness, tmp_path):
    inside = [b.storage(f"stdrop{i}", blob=False, rg="rg-partner") for i in range(3)]
    inside.append(b.storage("stfine", pna="Disabled", blob=False, rg="rg-partner"))
    outside = b.storage("stelsewhere", blob=False)
    h = harness([*inside, outside],
                extra_metadata=[_exempt(tmp_path, b.rg_id("rg-partner"), NOW - timedelta(minutes=1))])
    summary = _enforcer(h).run(NOW)
    assert all(h.resource(r["id"])["properties"]["publicNetworkAccess"] == "Disabled" for r in inside)
    assert h.resource(outside["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    assert (summary.seen, summary.compliant, summary.remediated) == (4, 1, 3)
    lists = [q["path"] for q in h.arm_requests("GET") if q["path"].endswith("/storageAccounts")]
    assert lists == [f"{b.rg_id('rg-partner')}/providers/Microsoft.Storage/storageAccounts"]


def test_active_or_long_expired_exemptions_cost_nothing(harness, tmp_path):
    res = b.storage("stpartner", blob=False)
    h = harness([res], extra_metadata=[_exempt(tmp_path, res["id"], NOW + timedelta(days=3))])
    summary = _enforcer(h).run(NOW)
    assert summary.seen == 0 and h.arm_requests() == []

    h2 = harness([res], extra_metadata=[_exempt(tmp_path, res["id"], NOW - timedelta(hours=3))])
    summary = _enforcer(h2).run(NOW)             # before the first run's look-back window (60 min)
    assert summary.seen == 0 and h2.arm_requests() == []
    assert h2.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"


def test_a_role_exemption_that_expired_removes_the_assignment(harness, tmp_path):
    owner_ok = b.role_assignment("Owner", b.BREAK_GLASS)        # keeps the scope from losing its last Owner
    grant = b.role_assignment("Contributor", b.ALICE)
    # exempted by the scope it is made at: a role assignment id is refused as an exemption scope
    # (its name can be reused by anyone once it is gone; tests/unit/test_roles_s20b.py)
    d = rbac_with_break_glass(tmp_path, exemption=(grant["properties"]["scope"], _iso(NOW - timedelta(minutes=5))))
    h = harness([], extra_metadata=[d], world={"roleAssignments": [owner_ok, grant]})
    summary = _enforcer(h).run(NOW)
    remaining = {a["id"] for a in h.emu.role_assignments()}
    assert grant["id"] not in remaining and owner_ok["id"] in remaining
    assert summary.remediated == 1
