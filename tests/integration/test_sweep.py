"""Reconciling sweep over Azurite + the HTTPS emulator with the real SDK clients: list operations
paged by nextLink, ARM's read bucket enforced by the emulator (429 past it), the guardrail's
pacing on a fake clock shared with the emulator (no waiting), fixes asserted on the emulator's
resulting state."""

from __future__ import annotations

import math
import uuid

import azure.functions as func
import pytest

from guardrails import bootstrap
from guardrails.adapters.sweep_tables import TableSweepStore
from guardrails.local.arm_emulator_list import ReadThrottle
from guardrails.ratelimit import FakeClock
from tests import builders as b

pytestmark = pytest.mark.integration

MG = "/providers/Microsoft.Management/managementGroups/mg-corp"


def _estate(n: int, drift_every: int) -> tuple[list[dict], set[str]]:
    """``n`` compliant resources of the five top-level types, round robin; one in ``drift_every``
    of each type has drifted to public network access (what a dropped Event Grid event leaves
    behind). 20 per policy: under the circuit breaker's default 50 fixes per 10 minutes."""
    makers = (lambda i, pna: b.storage(f"st{i:05d}", pna=pna, blob=False),
              lambda i, pna: b.key_vault(f"kv{i:05d}", pna=pna, rbac=True),
              lambda i, pna: b.container_registry(f"acr{i:05d}", pna=pna, admin=False),
              lambda i, pna: b.workspace(f"mlw{i:05d}", pna=pna),
              lambda i, pna: b.ml_registry(f"mlreg{i:05d}", pna=pna))
    resources, drifted = [], set()
    for i in range(n):
        pna = "Enabled" if (i // len(makers)) % drift_every == drift_every - 1 else "Disabled"
        r = makers[i % len(makers)](i, pna)
        r["id"] = r["id"].replace("/rg-ml-prod/", f"/rg-{i % 7}/")
        resources.append(r)
        if pna == "Enabled":
            drifted.add(r["id"])
    return resources, drifted


def rbac_with_break_glass(tmp_path, *, exemption: tuple[str, str] | None = None):
    """A metadata directory whose rbac-least-privilege (version 5) names ``b.BREAK_GLASS`` as
    break-glass and, given ``(scope, expires)``, one exemption."""
    import textwrap
    from pathlib import Path

    d = tmp_path / "extra"
    d.mkdir()
    text = (Path(__file__).resolve().parents[2] / "metadata/policies/rbac-least-privilege.yaml").read_text()
    text = text.replace("version: 1", "version: 5", 1).replace("break_glass: []", f"break_glass: [{b.BREAK_GLASS}]")
    if exemption is not None:
        text += textwrap.dedent(f"""
            exemptions:
              - scope: {exemption[0]}
                reason: migration window
                owner: alice@contoso.com
                expires: {exemption[1]}
            """)
    (d / "rbac-least-privilege.yaml").write_text(text)
    return d


ROOT_ASSIGNMENTS = "/providers/Microsoft.Authorization/roleAssignments"


def root_assignment(role: str, principal: str, *, principal_type: str = "User") -> dict:
    """An assignment AT the tenant root ``/`` as ARM GET returns it (tenant-level id and role
    definition id)."""
    name = str(uuid.uuid4())
    a = b.role_assignment(role, principal, scope="/", name=name, principal_type=principal_type)
    a["id"] = f"{ROOT_ASSIGNMENTS}/{name}"
    a["properties"]["roleDefinitionId"] = f"/providers/Microsoft.Authorization/roleDefinitions/{b.ROLE_IDS[role]}"
    return a


def _sweeper(h, clock: FakeClock, **env):
    from guardrails import settings as S
    return bootstrap.build_sweeper(S.Settings.from_env({**h.env, **env}), clock=clock, sleep=clock.sleep)


def _sweep_rows(h, sweep_id: str):
    return [r for r in h.stored_rows() if r.correlation_id == sweep_id]


def test_sweep_of_5000_resources_fixes_exactly_the_drifted_ones_within_the_read_limit_with_paging(harness):
    resources, drifted = _estate(5000, 50)              # 2% drift: 100 resources
    assert len(drifted) == 100
    h = harness(resources)
    before = {r["id"].lower(): r for r in h.emu.world()["resources"]}
    clock = FakeClock()
    # ARM's read bucket as the emulator enforces it, on the same (fake) clock; a small burst so
    # that pacing, not the burst, carries the sweep
    throttle = h.emu.read_throttle = ReadThrottle(rate=25, burst=25, clock=clock)
    sweeper = _sweeper(h, clock, GUARDRAILS_ARM_READ_BURST="25")
    t0 = clock()

    summary = sweeper.run()

    # the emulator's state: every drifted resource fixed, every other one untouched (same etag)
    after = {r["id"].lower(): r for r in h.emu.world()["resources"]}
    changed = {rid for rid, r in after.items() if r["etag"] != before[rid]["etag"]}
    assert changed == {d.lower() for d in drifted}
    assert all(after[d.lower()]["properties"]["publicNetworkAccess"] == "Disabled" for d in drifted)
    # within the read limit: not one 429, every read took a token, and simulated time covers them
    log = h.arm_requests()
    assert [q for q in log if q["status"] == 429] == [] and throttle.throttled == 0
    reads = [q for q in log if q["method"] == "GET"]
    assert summary.reads == len(reads)
    # the tenant's bucket: the subscription list and the tenant root's role assignments
    tenant = [q for q in reads if q["path"] in ("/subscriptions", ROOT_ASSIGNMENTS)]
    in_sub = [q for q in reads if q not in tenant]                      # one bucket: the subscription's
    assert clock() - t0 >= (len(in_sub) - 25) / 25 - 1e-6 and summary.throttled_wait_s > 0
    # paging: each type listed by subscription, page after page through nextLink ($skiptoken)
    lists = [q for q in reads if q["path"].count("/") == 5 and not q["path"].endswith("/roleAssignments")]
    per_type = {q["path"].rsplit("/", 2)[-2] + "/" + q["path"].rsplit("/", 1)[-1] for q in lists}
    assert len(per_type) == 5
    # the subscription's role assignments: one list (none in this estate); the tenant root's: one
    # atScope() list for the whole run
    role_lists = [q for q in in_sub if q["path"].endswith("/providers/Microsoft.Authorization/roleAssignments")]
    assert len(role_lists) == 1 and "$filter" not in role_lists[0]["query"]
    root_lists = [q for q in tenant if q["path"] != "/subscriptions"]
    assert len(root_lists) == 1 and root_lists[0]["query"]["$filter"] == "atScope()"
    assert len(lists) == 5 * math.ceil(1000 / h.emu.page_size)
    assert sum(1 for q in lists if "$skiptoken" in q["query"]) == 5 * (math.ceil(1000 / h.emu.page_size) - 1)
    # workspaces/computes have no subscription-wide list: one list per workspace (1,000)
    computes = [q for q in reads if q["path"].endswith("/computes")]
    assert len(computes) == 1000
    # the ML lifecycle guardrail's online endpoints: one list per workspace too (none here)
    endpoints = [q for q in reads if q["path"].endswith("/onlineEndpoints")]
    assert len(endpoints) == 1000
    # ... and its model containers: one list per workspace and per registry (none here)
    models = [q for q in reads if q["path"].endswith("/models")]
    assert len(models) == 2000
    # + subscriptions, the subscription's role assignments, the tenant root's
    assert summary.pages == len(lists) + len(computes) + len(endpoints) + len(models) + 1 + 1 + 1
    # one write per drifted resource, a fresh read before it (the page may be stale: the event path
    # may have fixed it since) and one confirm read; no resource read on its own otherwise
    assert len(h.writes()) == 100
    assert len(in_sub) - len(lists) - len(computes) - len(endpoints) - len(models) - len(role_lists) == 200
    # audit: one row per non-compliant decision; compliant ones only counted
    rows = _sweep_rows(h, summary.sweep_id)
    assert {r.resource_id for r in rows} == drifted and {r.verdict for r in rows} == {"remediated"}
    assert {r.event_type for r in rows} == {"Guardrails.Sweep"}
    assert (summary.seen, summary.compliant, summary.remediated, summary.failed) == (5000, 4900, 100, 0)
    stored = TableSweepStore(h.tables).read_month(int(summary.started[:4]), int(summary.started[5:7]))
    row = next(s for s in stored if s["sweep_id"] == summary.sweep_id)
    assert (row["seen"], row["compliant"], row["remediated"], row["reads"]) == (5000, 4900, 100, len(reads))
    # the guardrail's own writes come back as events and are ignored (no second fix, no ARM call)
    h.emu.clear_requests()
    own = h.deliver_emitted()
    assert len(own) == 100 and {r.reason for r in own} == {"own_write"} and h.arm_requests() == []


def test_sweep_honours_retry_after_and_dry_run_changes_nothing(harness):
    ok, bad = b.storage("stok", pna="Disabled", blob=False), b.storage("stbad", pna="Enabled", blob=True)
    h = harness([ok, bad])
    h.emu.add_fault(method="GET", path_regex=r"/providers/Microsoft\.Storage/storageAccounts$", status=429,
                    retry_after=3, times=1)
    clock = FakeClock()
    dry = _sweeper(h, clock).run(dry_run=True)
    assert [q["status"] for q in h.arm_requests("GET") if q["path"].endswith("storageAccounts")] == [429, 200]
    assert clock() >= 1000.0 + 3          # waited Retry-After (on the injected clock)
    assert h.writes() == [] and h.resource(bad["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    rows = _sweep_rows(h, dry.sweep_id)
    assert [(r.resource_id, r.verdict) for r in rows] == [(bad["id"], "dry_run")] and dry.open == 1

    real = _sweeper(h, clock).run()
    assert real.remediated == 1 and real.compliant == 1
    props = h.resource(bad["id"])["properties"]
    assert (props["publicNetworkAccess"], props["allowBlobPublicAccess"]) == ("Disabled", False)


def test_list_failure_of_one_type_is_reported_and_the_rest_is_swept(harness):
    bad_st, bad_kv = b.storage("stbad", pna="Enabled", blob=False), b.key_vault("kvbad", pna="Enabled")
    h = harness([bad_st, bad_kv])
    h.emu.add_fault(method="GET", path_regex=r"/providers/Microsoft\.KeyVault/vaults$", status=403)
    summary = _sweeper(h, FakeClock()).run()
    assert summary.failed == 1 and "Microsoft.KeyVault/vaults" in summary.errors[0]
    assert h.resource(bad_st["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert h.resource(bad_kv["id"])["properties"]["publicNetworkAccess"] == "Enabled"


def test_sweep_removes_a_privileged_assignment_at_management_group_scope_and_at_the_tenant_root(harness):
    contributor = b.role_assignment("Contributor", b.ALICE, scope=MG)
    reader = b.role_assignment("Reader", b.ALICE, scope=MG)
    above = root_assignment("Contributor", b.ALICE)                          # tenant root: not this group's
    below = b.role_assignment("Contributor", b.ALICE)                        # subscription: its own topic
    h = harness([], world={"roleAssignments": [contributor, reader, above, below]})
    h.emu.page_size = 1                                                       # the lists page too
    summary = _sweeper(h, FakeClock(), GUARDRAILS_SWEEP_MANAGEMENT_GROUPS="mg-corp").run()
    remaining = {a["id"] for a in h.emu.role_assignments()}
    # the group's Contributor goes (its sweep), and so does the root's (judged once per run by the
    # root part, never by the group's: its list keeps the group's own scope only)
    assert contributor["id"] not in remaining and above["id"] not in remaining
    assert {reader["id"], below["id"]} <= remaining
    rows = {r.resource_id: r.verdict for r in _sweep_rows(h, summary.sweep_id)}
    assert rows == {contributor["id"]: "remediated", reader["id"]: "compliant", above["id"]: "remediated"}
    listed = [q for q in h.arm_requests("GET") if q["path"] == f"{MG}{ROOT_ASSIGNMENTS}"]
    assert listed[0]["query"]["$filter"] == "atScope()" and any("$skiptoken" in q["query"] for q in listed)
    root = [q for q in h.arm_requests("GET") if q["path"] == ROOT_ASSIGNMENTS]
    assert [q["query"]["$filter"] for q in root] == ["atScope()"]            # one assignment there: one page
    assert [q["path"] for q in h.arm_requests("DELETE")].count(above["id"]) == 1


def test_timer_function_runs_the_sweep_as_the_host_calls_it(harness, monkeypatch):
    from guardrails.triggers.timers import reconciling_sweep

    bad = b.container_registry("acrbad", pna="Enabled", admin=False)
    h = harness([bad, b.container_registry("acrok", pna="Disabled", admin=False)])
    for k, v in h.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(bootstrap, "_sweeper", None)
    reconciling_sweep(host_timer(past_due=True))
    assert h.resource(bad["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    stored = TableSweepStore(h.tables).read_month(*_this_month())
    assert [(s["kind"], s["seen"], s["remediated"]) for s in stored] == [("sweep", 2, 1)]


def test_cli_sweep_prints_the_summary(harness, monkeypatch, capsys):
    import json

    from guardrails.cli import main

    bad = b.workspace("mlwbad", pna="Enabled")
    h = harness([bad])
    for k, v in h.env.items():
        monkeypatch.setenv(k, v)
    assert main(["sweep", "--dry-run", "--subscription", b.SUB]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["seen"], out["open"], out["dry_run"], out["subscriptions"]) == (1, 1, True, [b.SUB])
    assert h.writes() == []
    assert main(["sweep", "--management-group", "/subscriptions/x"]) == 2
    # a mistyped subscription id is a usage error, not a clean sweep of a subscription with nothing in it
    capsys.readouterr()
    assert main(["sweep", "--dry-run", "--subscription", b.SUB[:-1]]) == 2
    assert "is not a subscription id (a GUID)" in capsys.readouterr().err


def host_timer(*, past_due: bool = False) -> func.TimerRequest:
    """The TimerRequest the Python worker builds from the host's timer payload."""
    import json

    from azure.functions import meta
    from azure.functions.timer import TimerRequestConverter

    payload = {"Schedule": {"AdjustForDST": True}, "IsPastDue": past_due,
               "ScheduleStatus": {"Last": "2026-11-24T00:00:00+00:00", "Next": "2026-11-24T06:00:00+00:00",
                                  "LastUpdated": "2026-11-24T00:00:00+00:00"}}
    return TimerRequestConverter.decode(meta.Datum(json.dumps(payload), "json"), trigger_metadata={})


def _this_month() -> tuple[int, int]:
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    return now.year, now.month


def test_sweep_takes_a_bad_deployment_out_of_production_traffic_that_no_event_reported(harness):
    # GIVEN a production endpoint whose traffic reached a `latest` deployment while events were lost
    from guardrails.local.ml_emulator import model_version, online_deployment, online_endpoint
    ws = b.workspace(pna="Disabled")
    ep_id = f"{ws['id']}/onlineEndpoints/fraud-scoring"
    tags = {"data_version": "d1", "git_sha": "abc", "metric_summary": "auc=0.9", "owner": "ds@contoso.com"}
    world = [ws, model_version(ws["id"], "fraud-clf", 7, tags=tags, stage="production"),
             online_endpoint(ws["id"], "fraud-scoring", traffic={"blue": 60, "green": 40},
                             tags={"environment": "prod", "owner": "ml-platform@contoso.com"}),
             online_deployment(ep_id, "blue", model="azureml:fraud-clf:7"),
             online_deployment(ep_id, "green", model="azureml:fraud-clf:latest")]
    h = harness(world)
    clock = FakeClock()
    summary = _sweeper(h, clock).run(subscriptions=[b.SUB])
    # THEN the sweep listed the workspace's endpoints and the ML guardrail fixed the traffic
    assert h.resource(ep_id)["properties"]["traffic"] == {"blue": 100, "green": 0}
    (row,) = [r for r in _sweep_rows(h, summary.sweep_id) if r.resource_id.lower() == ep_id.lower()]
    assert row.verdict == "remediated" and row.event_type == "Guardrails.Sweep"
    assert any(q["path"].endswith("/onlineEndpoints") for q in h.emu.requests)


def test_sweep_archives_untagged_model_versions_no_event_reported_and_reads_only_those(harness):
    # GIVEN versions registered before the guardrail ran (or whose events were lost), in a
    # workspace and in a registry: tagged, untagged, and untagged but already archived
    from guardrails.local.ml_emulator import model_version
    ws, reg = b.workspace(pna="Disabled"), b.ml_registry(pna="Disabled")
    tags = {"data_version": "d1", "git_sha": "abc", "metric_summary": "auc=0.9", "owner": "ds@contoso.com"}
    good = [model_version(ws["id"], "fraud-clf", 7, tags=tags), model_version(reg["id"], "churn", 2, tags=tags)]
    bad = [model_version(ws["id"], "fraud-clf", 8, tags={"owner": "ds@contoso.com"}),
           model_version(ws["id"], "scorer", 1), model_version(reg["id"], "churn", 3)]
    parked = model_version(ws["id"], "scorer", 2, archived=True)
    h = harness([ws, reg, *good, *bad, parked])
    before = {r["id"].lower(): r["etag"] for r in h.emu.world()["resources"]}
    summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB])
    # THEN exactly the untagged, unarchived versions are archived, each read once before its PUT
    after = {r["id"].lower(): r for r in h.emu.world()["resources"]}
    assert {rid for rid, r in after.items() if r["etag"] != before[rid]} == {v["id"].lower() for v in bad}
    assert all(after[v["id"].lower()]["properties"]["isArchived"] is True for v in bad)
    gets = [q["path"].lower() for q in h.arm_requests("GET")]
    for v in good + [parked]:
        assert not any(p.endswith(v["id"].lower()) for p in gets), v["id"]     # listed, never read alone
    assert sum(1 for p in gets if p.endswith("/models")) == 2                   # one container list each
    assert sum(1 for p in gets if p.endswith("/versions")) == 3                 # fraud-clf, scorer, churn
    rows = _sweep_rows(h, summary.sweep_id)
    assert {r.resource_id.lower() for r in rows} == {v["id"].lower() for v in bad}
    assert {r.verdict for r in rows} == {"remediated"} and {r.event_type for r in rows} == {"Guardrails.Sweep"}
    assert summary.remediated == 3 and summary.failed == 0


def _graph_queries(h) -> list[dict]:
    return [q for q in h.emu.requests if q["method"] == "POST" and q["path"].lower().endswith("/microsoft.resourcegraph/resources")]


def test_sweep_through_resource_graph_lists_once_and_decides_violators_on_a_fresh_read(harness):
    resources, drifted = _estate(1500, 50)               # 30 drifted, 6 per type
    h = harness(resources)
    before = {r["id"].lower(): r for r in h.emu.world()["resources"]}
    summary = _sweeper(h, FakeClock(), GUARDRAILS_SWEEP_LISTER="graph").run(subscriptions=[b.SUB])
    after = {r["id"].lower(): r for r in h.emu.world()["resources"]}
    assert {rid for rid, r in after.items() if r["etag"] != before[rid]["etag"]} == {d.lower() for d in drifted}
    # 1,500 rows in 1,000-row pages: two queries; no subscription-wide ARM list of any top-level type
    queries = _graph_queries(h)
    assert len(queries) == 2 and queries[0]["body"]["subscriptions"] == [b.SUB]
    assert "where type in~" in queries[0]["body"]["query"]
    gets = h.arm_requests("GET")
    assert [q["path"].rsplit("/", 1)[-1] for q in gets if q["path"].count("/") == 5] == ["roleAssignments"]
    # (role assignments are listed through ARM's authorization API in either mode)
    # each violator read fresh before its fix (the index may lag ARM), then confirmed: two GETs each
    for d in drifted:
        assert sum(1 for q in gets if q["path"].lower() == d.lower()) == 2, d
    # children still listed through ARM under each workspace: computes, endpoints, models
    assert sum(1 for q in gets if q["path"].endswith("/computes")) == 300
    assert (summary.seen, summary.remediated, summary.failed) == (1500, 30, 0)
    # graph pages + workspace children + registry models + the subscription's and the root's roles
    assert summary.pages == 2 + 300 * 3 + 300 + 1 + 1


def test_resource_graph_pages_show_every_row_once(harness):
    # Resource Graph documents an unsorted result as random and not repeatable (the emulator answers
    # such a query in a new order on every page): paged without an order by a unique column, rows
    # repeat and others are never seen (a drifted resource missed by the sweep)
    from guardrails.adapters.arm import build_credential
    from guardrails.adapters.graph import ResourceGraphLister
    from guardrails.model.resource import CATALOG

    resources = [b.storage(f"st{i:05d}", pna="Disabled", blob=False) for i in range(2500)]
    h = harness(resources)
    lister = ResourceGraphLister(build_credential(h.settings), endpoint=h.emu.base_url,
                                 ca_bundle=h.emu.ca_path)
    ids = [r["id"] for r in lister.list_types([b.SUB], [CATALOG["microsoft.storage/storageaccounts"]])]
    assert lister.pages == 3
    assert len(ids) == len(set(ids)) == 2500 and set(ids) == {r["id"] for r in resources}


def test_sweep_falls_back_to_arm_lists_when_resource_graph_does_not_answer(harness):
    resources, drifted = _estate(100, 10)
    h = harness(resources)
    h.emu.add_fault(method="POST", path_regex="Microsoft.ResourceGraph", status=403)
    summary = _sweeper(h, FakeClock(), GUARDRAILS_SWEEP_LISTER="graph").run(subscriptions=[b.SUB])
    assert all(h.resource(d)["properties"]["publicNetworkAccess"] == "Disabled" for d in drifted)
    assert summary.remediated == len(drifted) == 10
    assert len(_graph_queries(h)) == 1                   # asked once, refused: no retry of a 403
    assert any("Resource Graph did not answer" in e for e in summary.errors) and summary.failed == 1
    assert any(q["path"].count("/") == 5 for q in h.arm_requests("GET"))   # listed through ARM instead


def test_a_workspace_with_many_models_still_ends_the_sweep_at_its_time_limit(harness):
    from guardrails.local.ml_emulator import model_version
    ws = b.workspace(pna="Disabled")
    h = harness([ws, *(model_version(ws["id"], f"m{i:03d}", 1) for i in range(40))])   # 40 untagged models (< breaker)
    clock = FakeClock()
    t0 = clock()
    summary = _sweeper(h, clock, GUARDRAILS_ARM_READ_BURST="10", GUARDRAILS_ARM_READS_PER_SECOND="10",
                       GUARDRAILS_SWEEP_MAX_SECONDS="2").run(subscriptions=[b.SUB])
    assert summary.truncated
    archived = [r for r in h.emu.world()["resources"] if (r.get("properties") or {}).get("isArchived") is True]
    assert 0 < len(archived) < 40                                       # stopped part way, in time
    assert clock() - t0 < 2 + 1                       # past the limit by at most the reads already under way


def test_sweep_removes_a_privileged_grant_made_in_the_subscription_whose_event_was_lost(harness, tmp_path):
    """Owner granted at subscription scope while the function was down (the event dead-lettered):
    the sweep finds it in the subscription's list, the pure role evaluation flags it, and the role
    guardrail reads it again, removes it and audits. Compliant, break-glass, exempted and inherited
    assignments are only counted."""
    rg = f"/subscriptions/{b.SUB}/resourceGroups/rg-ml-prod"
    glass = b.role_assignment("Owner", b.BREAK_GLASS)                      # also keeps an Owner at the scope
    lost = b.role_assignment("Owner", b.ALICE)                             # the grant whose event was lost
    # exempted below: by its scope (a role assignment id is refused as an exemption scope), a strict
    # resource group where it has no grant entry
    rg_lab = f"/subscriptions/{b.SUB}/resourceGroups/rg-lab"
    contributor = b.role_assignment("Contributor", b.BOB, scope=rg_lab)
    reader = b.role_assignment("Reader", b.ALICE, scope=rg)                # allowed
    inherited = b.role_assignment("Contributor", b.ALICE, scope=MG)        # the management group's sweep's
    d = rbac_with_break_glass(tmp_path, exemption=(rg_lab, "2099-01-01T00:00:00Z"))
    f = d / "rbac-least-privilege.yaml"
    f.write_text(f.read_text().replace("strict_scopes: []", f"strict_scopes: [{rg_lab}]", 1))
    h = harness([], extra_metadata=[d], world={"roleAssignments": [glass, lost, contributor, reader, inherited]})
    summary = _sweeper(h, FakeClock()).run(subscriptions=[b.SUB])
    remaining = {a["id"] for a in h.emu.role_assignments()}
    assert lost["id"] not in remaining
    assert {glass["id"], contributor["id"], reader["id"], inherited["id"]} <= remaining
    rows = {r.resource_id: r for r in _sweep_rows(h, summary.sweep_id)}
    assert list(rows) == [lost["id"]] and rows[lost["id"]].verdict == "remediated"
    assert [v.rule for v in rows[lost["id"]].violations] == ["privileged-at-subscription"]
    assert (summary.seen, summary.compliant, summary.remediated) == (4, 3, 1)   # the inherited one not seen here
    # one list of the subscription's assignments (the role guardrail's last-Owner check lists the
    # scope again, atScope()), then only the flagged one read again (and confirmed gone)
    lists = [q for q in h.arm_requests("GET") if q["path"].endswith("/roleAssignments")]
    assert len([q for q in lists if "$filter" not in q["query"]]) == 1
    reads = {q["path"] for q in h.arm_requests("GET") if "/roleAssignments/" in q["path"]}
    assert reads == {lost["id"]}
    # the removal comes back as a delete event: ignored, no ARM call
    h.emu.clear_requests()
    assert {r.verdict for r in h.deliver_emitted()} == {"ignored"} and h.arm_requests() == []


def test_a_listed_body_the_event_path_fixed_since_is_not_fixed_again(harness):
    # the page is read, then the event path fixes the resource, then the sweep decides the page
    from guardrails.model.resource import lookup_type
    from guardrails.sweep import SweepSummary, _Tally

    st = b.storage("stdrift", pna="Enabled", blob=False)
    h = harness([st])
    sw = _sweeper(h, FakeClock())
    compiled = sw.service.policies.get()
    rtype = lookup_type("Microsoft.Storage/storageAccounts")
    (listed,) = list(sw.lister.list_type(b.SUB, rtype))
    assert h.deliver(b.write_event(st["id"])).verdict == "remediated"
    h.emu.clear_requests()
    summary = SweepSummary(sweep_id="sweep-stale", kind="sweep", started="")
    sw.decide_listed(_Tally(summary), compiled, rtype, listed, "sweep-stale", False)
    assert h.writes() == []                                   # no second PATCH ...
    assert [r.verdict for r in _sweep_rows(h, "sweep-stale")] in ([], ["compliant"])   # ... and no second fix row
    assert summary.verdicts.get("remediated", 0) == 0
