"""The reconciling sweep where the s32 review found it wanting, over Azurite and the HTTPS emulator
with the real SDK clients, on a fake clock that the sweep's read pacing advances (no waiting).

- A (graph): with ``GUARDRAILS_SWEEP_LISTER=graph`` the Resource Graph phase runs before the ring,
  from its first row, on every run, outside the cursor: once it outlasts the budget, no unit of the
  ring (a subscription's role assignments, the vaults, the keys, the management groups) is ever
  begun, and the same head of the listing is decided run after run.
- B (tail): a unit larger than one budget is begun again from its start by every run, so the
  open findings past what one budget decides are never decided (never audited, owners never told).
- C (secrets): the sweep's expiry hygiene skips a secret whose current version is disabled (the
  ``SecretNewVersionCreated`` path it stands in for sets that version's expiry), and reads the
  value of every secret it judges (a certificate's PFX included) where properties would do.

Each test fails on the code as reviewed and passes once the defect is fixed.
"""
from __future__ import annotations

import time

import pytest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_review_policy_s25 import _in_audit_mode
from tests.integration.test_review_secrets_s24 import CERT, _certificate_secret
from tests.integration.test_secret_exposure_and_hygiene import _sweep
from tests.integration.test_secret_guardrail import VAULT, _bundle, _event, _harness, _val, planted  # noqa: F401
from tests.integration.test_sweep import rbac_with_break_glass

pytestmark = pytest.mark.integration


def _audit_storage(tmp_path):
    """storage-private at version 2 in ``audit`` mode: its findings stay open (``dry_run``) run
    after run, as a policy being rolled out, a notify-only rule or an escalated resource does."""
    return _in_audit_mode(tmp_path, "storage-private.yaml", "storage.yaml")


def _paced_sweeper(h, clock: FakeClock, lister: str):
    """A sweeper whose budget (10 s) holds about ten ARM reads (1 a second, burst 1): one run
    decides a handful of violators, as 540 s decide some thousands in a large estate."""
    env = {**h.env, S.SWEEP_LISTER: lister, S.SWEEP_MAX_SECONDS: "10", S.ARM_READS_PER_SECOND: "1",
           S.ARM_READ_BURST: "1"}
    sw = bootstrap.build_sweeper(S.Settings.from_env(env), clock=clock, sleep=clock.sleep)
    sw.service.audit = h.recorder
    return sw


def _decided(h) -> set[str]:
    return {r.resource_id.lower() for r in h.recorder.rows if r.event_type == "Guardrails.Sweep"}


# ---- A: the Resource Graph phase starves the ring ------------------------------------------------
def test_graph_lister_whose_phase_outlasts_the_budget_still_reaches_the_subscriptions_role_assignments(
        harness, tmp_path):
    """An Owner granted while events were lost is removed by the next sweep (README) — in ARM mode
    it is, beside the same backlog; through Resource Graph the graph phase (sequential decisions,
    from the first row, every run) uses the whole budget and the ring's role assignments never
    begin: ``units_done`` 0 and ``next_begins_with`` unchanged run after run."""
    backlog = [b.storage(f"st{i:03d}", pna="Enabled", blob=False) for i in range(30)]
    glass = b.role_assignment("Owner", b.BREAK_GLASS)
    lost = b.role_assignment("Owner", b.ALICE)           # the grant whose event was lost
    h = harness(backlog, extra_metadata=[_audit_storage(tmp_path), rbac_with_break_glass(tmp_path)],
                world={"roleAssignments": [glass, lost]})
    clock = FakeClock()
    sw = _paced_sweeper(h, clock, "graph")
    summaries = []
    for _ in range(8):                                   # two days at the shipped 6-hourly schedule
        summaries.append(sw.run())
        clock.sleep(6 * 3600)
        if lost["id"] not in {a["id"] for a in h.emu.role_assignments()}:
            break
    assert lost["id"] not in {a["id"] for a in h.emu.role_assignments()}, (
        "8 runs through Resource Graph never judged the subscription's role assignments: "
        f"units_done {[s.units_done for s in summaries]}, next {summaries[-1].next_begins_with}")


def test_control_the_arm_lister_reaches_the_role_assignments_beside_the_same_backlog(harness, tmp_path):
    """Control (passes before and after): the same estate and budget listed through ARM removes
    the lost Owner grant on the first run (the subscription's role list is a task of its unit)."""
    backlog = [b.storage(f"st{i:03d}", pna="Enabled", blob=False) for i in range(30)]
    glass, lost = b.role_assignment("Owner", b.BREAK_GLASS), b.role_assignment("Owner", b.ALICE)
    h = harness(backlog, extra_metadata=[_audit_storage(tmp_path), rbac_with_break_glass(tmp_path)],
                world={"roleAssignments": [glass, lost]})
    clock = FakeClock()
    _paced_sweeper(h, clock, "arm").run()
    assert lost["id"] not in {a["id"] for a in h.emu.role_assignments()}


# ---- B: a unit larger than one budget: its tail is never decided ----------------------------------
@pytest.mark.parametrize("lister", ["arm", "graph"])
def test_a_subscription_larger_than_one_budget_has_its_tail_decided_by_later_runs(harness, tmp_path, lister):
    """20 open findings in one subscription, about five decided per budget: runs that follow one
    another must decide each of them at some point (audited, owner told), as the expiry timer's
    ``resume`` cursor does for a scope larger than one budget. Every run begins the unit again
    from its start and decides the same first few; st005..st019 are never decided."""
    backlog = [b.storage(f"st{i:03d}", pna="Enabled", blob=False) for i in range(20)]
    h = harness(backlog, extra_metadata=[_audit_storage(tmp_path)])
    clock = FakeClock()
    sw = _paced_sweeper(h, clock, lister)
    for _ in range(8):
        summary = sw.run()
        assert not summary.failed, summary.errors
        clock.sleep(6 * 3600)
    never = sorted(r["id"].rsplit("/", 1)[-1] for r in backlog if r["id"].lower() not in _decided(h))
    assert never == [], f"8 runs never decided {len(never)} of {len(backlog)} open findings: {never}"


# ---- C: the sweep's expiry hygiene ------------------------------------------------------------------
def test_the_sweep_sets_the_expiry_of_a_version_created_disabled_as_its_lost_event_would(harness, tmp_path,
                                                                                        planted):  # noqa: F811
    """README: every new version must carry an expiry, "read from the version's properties, never
    its value, so a version created disabled is fixed too"; the sweep stands in for a lost
    ``SecretNewVersionCreated``. The event path fixes such a version; the sweep never looks at it
    (``_sweep_vault``: ``elif props.enabled and _breaks_hygiene``), so a lost event leaves it without
    an expiry, to be enabled later (an attribute update: no event) as a credential that never expires."""
    on_event, lost = (_bundle(n, _val(), exp_days=None) for n in ("parked-cred-a", "parked-cred-b"))
    for bundle in (on_event, lost):
        bundle["attributes"].update(enabled=False, created=int(time.time()))
    h = _harness(harness, tmp_path, planted, extra_secrets=[on_event, lost])
    version = on_event["id"].rsplit("/", 1)[-1]
    row = h.deliver(_event(h, "SecretNewVersionCreated", "parked-cred-a", version))
    assert row.verdict == "remediated" and h.emu.get_secret(VAULT, "parked-cred-a", version)["attributes"].get("exp")
    summary = _sweep(h)                                    # parked-cred-b's event was lost
    assert h.emu.secret_versions(VAULT, "parked-cred-b")[-1]["attributes"].get("exp"), (
        "the sweep left a disabled version without expiry that the event path fixes", summary.verdicts)


def test_the_sweeps_hygiene_check_of_a_certificates_secret_reads_no_value(harness, tmp_path, planted):  # noqa: F811
    """The sweep lists properties ("no values"), and the hygiene path it hands a finding to reads
    the version's properties only; but ``sweep_secrets._decide`` first GETs the current version,
    value included, to learn its id. For a certificate's backing secret (an expiry beyond
    ``max_validity_days``: a violation every run, never written) that is the certificate's PFX,
    private key included, fetched on every sweep for nothing."""
    h = _harness(harness, tmp_path, planted, extra_secrets=[_certificate_secret(planted, exp_days=365)])
    h.emu.clear_requests()
    _sweep(h)
    _sweep(h)
    rows = [r for r in h.stored_rows() if r.resource_id.rsplit("/", 1)[-1] == CERT]
    assert rows and {r.reason for r in rows} == {"certificate_managed"}
    value_reads = [f"{q['method']} {q['path']}" for q in h.emu.requests
                   if q["method"] == "GET" and f"/secrets/{CERT}" in q["path"] and not q["path"].endswith("/versions")]
    assert value_reads == [], f"the certificate's secret value was read by the sweep: {value_reads}"
