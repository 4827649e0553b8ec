"""Event coverage in the reconciling sweep, on Azurite + the HTTPS emulator with the real SDK
clients: each visible subscription's system topic and event subscriptions are listed from the
emulator, a subscription whose resource writes do not reach ``resource_events`` gets a
``violation`` row (reason ``event_coverage``) and a decision event, and closing the gap writes
one ``compliant`` row. Asserted on the audit table, the coverage state and the emulator's request
log."""

from __future__ import annotations

import pytest

from guardrails import bootstrap
from guardrails.adapters.sweep_tables import TableSweepStore, TableTimerState
from guardrails.local.eventgrid_world import (event_subscription, subscription_wiring, topic_id, vault_wiring,
                                              workspace_wiring)
from guardrails.permissions import covered_operations
from guardrails.ratelimit import FakeClock
from tests import builders as b

pytestmark = pytest.mark.integration

SUB2 = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"     # added to the estate after the deployment: no topic
SUB3 = "7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b"     # its filter was narrowed by hand
APP = f"/subscriptions/{b.SUB}/resourceGroups/rg-guardrails/providers/Microsoft.Web/sites/func-guardrails-t1"


def _in(sub: str, resource: dict) -> dict:
    resource["id"] = resource["id"].replace(b.SUB, sub)
    return resource


def _estate() -> list[dict]:
    narrowed = [op for op in covered_operations() if op != "Microsoft.Storage/storageAccounts/write"]
    return [b.storage("stok", pna="Disabled", blob=False), *subscription_wiring(b.SUB, APP),
            _in(SUB2, b.storage("stnew", pna="Disabled", blob=False)),
            _in(SUB3, b.storage("stthree", pna="Disabled", blob=False)),
            *subscription_wiring(SUB3, APP, operations=narrowed)]


def _sweeper(h, **env):
    from guardrails import settings as S
    env = {"GUARDRAILS_FUNCTION_APP_ID": APP, **env}
    return bootstrap.build_sweeper(S.Settings.from_env({**h.env, **env}), clock=FakeClock(), sleep=lambda s: None)


def _coverage_rows(h, sweep_id: str):
    return {r.resource_id: r for r in h.stored_rows()
            if r.correlation_id == sweep_id and r.reason == "event_coverage"}


def _state_stamps(h) -> dict[str, object]:
    table = h.tables.table(TableTimerState(h.tables).name)
    return {e["source"]: e.metadata["timestamp"] for e in table.query_entities("PartitionKey eq 'coverage'")}


def _published(h) -> list[dict]:
    return h.emu.published_events("decisions")


def test_sweep_reports_unwired_subscriptions_until_they_are_wired(harness):
    h = harness(_estate(), decision_topic=True)
    first = _sweeper(h).run()
    assert (first.uncovered, first.failed) == (2, 0)
    by_sub = {c["subscription_id"]: c for c in first.coverage}
    assert by_sub[b.SUB]["covered"] is True
    assert [g["code"] for g in by_sub[SUB2]["gaps"]] == ["no_system_topic"]
    assert [g["code"] for g in by_sub[SUB3]["gaps"]] == ["operations_filtered"]
    assert by_sub[SUB3]["missing_operations"] == ["Microsoft.Storage/storageAccounts/write"]

    rows = _coverage_rows(h, first.sweep_id)
    assert set(rows) == {f"/subscriptions/{SUB2}", f"/subscriptions/{SUB3}"}
    for row in rows.values():
        assert (row.verdict, row.notify, row.event_type, row.policies) == ("violation", True, "Guardrails.Sweep",
                                                                           ["event-coverage@1"])
    assert [v.rule for v in rows[f"/subscriptions/{SUB3}"].violations] == ["operations_filtered"]
    assert "Microsoft.Storage/storageAccounts/write" in rows[f"/subscriptions/{SUB3}"].message
    # the lists went to ARM through the SDK: one topic list per subscription, one event-subscription
    # list per own topic (SUB2 has none)
    lists = [q["path"] for q in h.arm_requests("GET") if "Microsoft.EventGrid" in q["path"]]
    assert sorted(p.split("/")[2] for p in lists if p.endswith("/systemTopics")) == sorted([b.SUB, SUB2, SUB3])
    assert sorted(p for p in lists if p.endswith("/eventSubscriptions")) == sorted(
        f"{topic_id(s)}/eventSubscriptions" for s in (b.SUB, SUB3))
    # decision events: one per gap, violation type, subject the subscription
    events = [e for e in _published(h) if e["subject"].startswith("/subscriptions/") and "/" not in e["subject"][15:]]
    assert sorted(e["subject"] for e in events) == sorted(rows) and {e["type"] for e in events} == {
        "Guardrails.Decision.Violation"}

    # the gap lasts: a row each run, no second notification; unchanged states are not rewritten
    stamps = _state_stamps(h)
    second = _sweeper(h).run()
    again = _coverage_rows(h, second.sweep_id)
    assert set(again) == set(rows) and {r.notify for r in again.values()} == {False}
    assert _state_stamps(h) == stamps and len(stamps) == 3

    # someone deploys the topic in SUB2 and restores SUB3's filter
    for res in [*subscription_wiring(SUB2, APP), event_subscription(SUB3, APP)]:
        h.emu.store.seed(res)
    third = _sweeper(h).run()
    assert third.uncovered == 0
    closed = _coverage_rows(h, third.sweep_id)
    assert {rid: (r.verdict, r.violations) for rid, r in closed.items()} == {
        f"/subscriptions/{SUB2}": ("compliant", []), f"/subscriptions/{SUB3}": ("compliant", [])}
    state = TableTimerState(h.tables)
    assert state.coverage_state(f"/subscriptions/{SUB2}")["covered"] is True

    # covered and staying so: no rows
    fourth = _sweeper(h).run()
    assert _coverage_rows(h, fourth.sweep_id) == {} and fourth.uncovered == 0
    stored = [s for s in _month(h) if s["sweep_id"] == first.sweep_id][0]
    assert stored["uncovered"] == 2 and {c["subscription_id"] for c in stored["coverage"]} == {b.SUB, SUB2, SUB3}


def test_governed_vaults_and_workspaces_are_checked_with_one_topic_list_per_subscription(harness):
    vault, ws = b.key_vault("kvgov", pna="Disabled"), b.workspace("mlwgov", pna="Disabled")
    h = harness([vault, ws, *subscription_wiring(b.SUB, APP), *vault_wiring(vault["id"], APP)])
    env = {"GUARDRAILS_GOVERNED_VAULT_IDS": vault["id"], "GUARDRAILS_GOVERNED_ML_WORKSPACE_IDS": ws["id"]}
    summary = _sweeper(h, **env).run()
    assert [(c["kind"], c["source"], c["covered"]) for c in summary.coverage] == [
        ("subscription", f"/subscriptions/{b.SUB}", True), ("vault", vault["id"], True), ("workspace", ws["id"], False)]
    assert summary.uncovered == 1
    rows = _coverage_rows(h, summary.sweep_id)
    assert list(rows) == [ws["id"]] and "Azure ML events of" in rows[ws["id"]].message
    lists = [q["path"] for q in h.arm_requests("GET") if "Microsoft.EventGrid" in q["path"]]
    assert sum(p.endswith("/systemTopics") for p in lists) == 1          # shared by the three sources
    assert sum(p.endswith("/eventSubscriptions") for p in lists) == 2    # the subscription's and the vault's

    # the vault's event subscription is narrowed to expiry events only: near-expiry ones stop coming
    topic, es = vault_wiring(vault["id"], APP, event_types=["Microsoft.KeyVault.SecretExpired"])
    h.emu.store.seed(es)
    h.emu.store.seed(workspace_wiring(ws["id"], APP)[0])
    h.emu.store.seed(workspace_wiring(ws["id"], APP)[1])
    second = _sweeper(h, **env).run()
    rows = _coverage_rows(h, second.sweep_id)
    assert {rid: r.verdict for rid, r in rows.items()} == {vault["id"]: "violation", ws["id"]: "compliant"}
    assert rows[vault["id"]].notify and [v.rule for v in rows[vault["id"]].violations] == ["event_type_filtered"]
    assert "Microsoft.KeyVault.SecretNearExpiry" in rows[vault["id"]].message


def test_a_deleted_event_subscription_is_found_on_the_next_sweep(harness):
    h = harness([b.storage("stok", pna="Disabled", blob=False), *subscription_wiring(b.SUB, APP)])
    assert _sweeper(h).run().uncovered == 0
    assert h.emu.store.unseed(f"{topic_id(b.SUB)}/eventSubscriptions/guardrails-resource-events")
    summary = _sweeper(h).run()
    rows = _coverage_rows(h, summary.sweep_id)
    row = rows[f"/subscriptions/{b.SUB}"]
    assert (row.verdict, row.notify, [v.rule for v in row.violations]) == ("violation", True, ["no_event_subscription"])


def test_an_unreadable_topic_list_is_a_sweep_error_not_a_verdict(harness):
    h = harness([b.storage("stok", pna="Disabled", blob=False), *subscription_wiring(b.SUB, APP)])
    h.emu.add_fault(method="GET", path_regex=r"/providers/Microsoft\.EventGrid/systemTopics$", status=403)
    summary = _sweeper(h).run()
    assert summary.failed == 1 and "event coverage" in summary.errors[0] and summary.uncovered == 0
    assert summary.coverage == [{"kind": "subscription", "source": f"/subscriptions/{b.SUB}", "subscription_id": b.SUB,
                                 "covered": None,
                                 "gaps": [{"code": "unreadable", "detail": summary.coverage[0]["gaps"][0]["detail"]}]}]
    assert "403" in summary.coverage[0]["gaps"][0]["detail"]
    assert _coverage_rows(h, summary.sweep_id) == {}
    assert TableTimerState(h.tables).coverage_state(f"/subscriptions/{b.SUB}") is None


def test_without_the_function_app_id_coverage_is_not_checked(harness):
    h = harness([b.storage("stok", pna="Disabled", blob=False)])
    summary = _sweeper(h, GUARDRAILS_FUNCTION_APP_ID="").run()
    assert summary.coverage == [] and summary.uncovered == 0
    assert not [q for q in h.arm_requests("GET") if "Microsoft.EventGrid" in q["path"]]


def _month(h):
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    return TableSweepStore(h.tables).read_month(now.year, now.month)


def test_a_summary_of_a_large_estate_is_stored_and_read_back_as_json(harness):
    from guardrails.sweep import SweepSummary

    h = harness([])
    subs = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(1500)]
    summary = SweepSummary(sweep_id="sweep-big", kind="sweep", started=_now_iso(), subscriptions=subs,
                           coverage=[{"subscription_id": s, "covered": False,
                                      "gaps": [{"code": "no_system_topic", "detail": "x" * 120}]} for s in subs])
    TableSweepStore(h.tables).write(summary.to_dict())       # each list past what a property holds
    stored = [s for s in _month(h) if s["sweep_id"] == "sweep-big"][0]
    assert stored["subscriptions"][:10] == subs[:10] and stored["subscriptions"][-1].endswith("more")
    assert stored["coverage"][0]["subscription_id"] == subs[0] and stored["coverage"][-1].endswith("more")


def _now_iso() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_cli_coverage_checks_on_demand_and_changes_nothing(harness, monkeypatch, capsys):
    import json

    from guardrails.cli import main

    h = harness(_estate())
    for k, v in {**h.env, "GUARDRAILS_FUNCTION_APP_ID": APP}.items():
        monkeypatch.setenv(k, v)
    assert main(["coverage"]) == 1
    text = capsys.readouterr().out
    assert f"subscription /subscriptions/{b.SUB}  covered" in text and f"/subscriptions/{SUB2}  GAP" in text
    assert "no_system_topic" in text
    assert "operations_filtered: data.operationName filters drop 1 covered operation(s)" in text
    assert main(["coverage", "--subscription", b.SUB, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["function_app_id"] == APP
    assert [(s["source"], s["covered"]) for s in out["sources"]] == [(f"/subscriptions/{b.SUB}", True)]
    assert h.stored_rows() == [] and TableTimerState(h.tables).coverage_state(f"/subscriptions/{SUB2}") is None
    h.emu.add_fault(method="GET", path_regex=r"/providers/Microsoft\.EventGrid/systemTopics$", status=403)
    assert main(["coverage", "--subscription", b.SUB]) == 1
    assert "UNREADABLE" in capsys.readouterr().out
    assert main(["coverage", "--subscription", "sub-prod"]) == 2        # not a GUID: usage, no gap invented
    assert "'sub-prod' is not a subscription id (a GUID)" in capsys.readouterr().err
    monkeypatch.setenv("GUARDRAILS_FUNCTION_APP_ID", "")
    assert main(["coverage"]) == 2
    assert "GUARDRAILS_FUNCTION_APP_ID" in capsys.readouterr().err


def test_a_deployment_without_the_deletions_subscription_is_a_gap_until_it_is_added(harness):
    """An estate wired by an earlier release (writes only): deletions never reach the app, so a
    deleted resource would stay in the compliance report. One gap, named, closed by the deployment."""
    from guardrails.local.eventgrid_world import deletions_subscription
    from guardrails.permissions import covered_delete_operations

    h = harness([b.storage("stok", pna="Disabled", blob=False), *subscription_wiring(b.SUB, APP, deletions=False)])
    first = _sweeper(h).run()
    assert first.uncovered == 1
    (cov,) = first.coverage
    assert [g["code"] for g in cov["gaps"]] == ["deletions_not_delivered"]
    assert cov["missing_deletions"] == covered_delete_operations()
    row = _coverage_rows(h, first.sweep_id)[f"/subscriptions/{b.SUB}"]
    assert (row.verdict, row.notify, [v.rule for v in row.violations]) == ("violation", True, ["deletions_not_delivered"])
    assert "deleted resource stays in the compliance report" in row.message

    h.emu.store.seed(deletions_subscription(b.SUB, APP))
    second = _sweeper(h).run()
    assert second.uncovered == 0
    closed = _coverage_rows(h, second.sweep_id)[f"/subscriptions/{b.SUB}"]
    assert (closed.verdict, closed.violations) == ("compliant", [])
