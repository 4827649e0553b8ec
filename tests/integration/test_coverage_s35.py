"""Review s35: the event-coverage check (``guardrails.coverage``, ``guardrails.coverage_check``), four
suspects from the last review. The pure verdict first (no I/O), then the same through the sweep on
Azurite + the HTTPS emulator with the real SDK clients.

Each test names what is wrong and what is expected; controls (labelled) show the boundary."""

from __future__ import annotations

from datetime import datetime, timezone

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.adapters.sweep_tables import TableTimerState
from guardrails.coverage import DELETE_EVENT, assess, subscription_expectation
from guardrails.local.eventgrid_world import (deletions_subscription, event_subscription, subscription_wiring,
                                              system_topic)
from guardrails.permissions import covered_delete_operations, covered_operations
from guardrails.ratelimit import FakeClock
from tests import builders as b
from tests.integration.test_coverage_sweep import APP, _coverage_rows

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
EXPECT = subscription_expectation(b.SUB, covered_operations(), covered_delete_operations())


def _assess(topic: dict, *subs: dict):
    return assess(EXPECT, [topic], {topic["id"].lower(): list(subs)}, function_app_id=APP, now=NOW)


def _codes(cov) -> list[str]:
    return [g.code for g in cov.gaps]


def _timed_sweeper(h, clock: FakeClock, **env):
    """A sweeper whose reads and run budget share one fake clock that moves only while something waits."""
    return bootstrap.build_sweeper(S.Settings.from_env({**h.env, "GUARDRAILS_FUNCTION_APP_ID": APP, **env}),
                                   clock=clock, sleep=clock.sleep)


# ---- 1. a system topic that is not provisioned reads as covered -------------------------------------
def test_a_failed_system_topic_is_not_provisioned_even_when_its_event_subscriptions_succeeded():
    """DEFECT: ``coverage.own_topics`` / ``assess`` never look at the system topic's own
    ``provisioningState``: a topic left ``Failed`` (a create or an identity update that failed)
    delivers nothing, yet its event subscriptions (``Succeeded``) make the source read as covered.
    EXPECTED: a ``not_provisioned`` gap naming the topic's state, for any state but ``Succeeded``."""
    for state in ("Failed", "Canceled", "Deleting", "Creating"):
        topic = system_topic(b.SUB)
        topic["properties"]["provisioningState"] = state
        cov = _assess(topic, event_subscription(b.SUB, APP), deletions_subscription(b.SUB, APP))
        assert not cov.covered, state
        assert _codes(cov) == ["not_provisioned", "deletions_not_delivered"], (state, cov.gaps)
        assert f"system topic provisioningState {state}" in cov.gaps[0].detail


def test_control_a_succeeded_system_topic_with_succeeded_event_subscriptions_is_covered():
    """CONTROL (passes): the deployed wiring, every state ``Succeeded`` (in any case), is covered."""
    topic = system_topic(b.SUB)
    assert _assess(topic, event_subscription(b.SUB, APP), deletions_subscription(b.SUB, APP)).covered
    topic["properties"]["provisioningState"] = "succeeded"
    assert _assess(topic, event_subscription(b.SUB, APP), deletions_subscription(b.SUB, APP)).covered


def test_a_sweep_writes_a_violation_row_for_a_subscription_whose_system_topic_failed(harness):
    """DEFECT (through the sweep): the same topic, listed by ARM, gives no ``event_coverage`` row.
    EXPECTED: a ``violation`` row for the subscription, rule ``not_provisioned``, owner told."""
    wiring = subscription_wiring(b.SUB, APP)
    wiring[0]["properties"]["provisioningState"] = "Failed"
    h = harness([b.storage("stok", pna="Disabled", blob=False), *wiring])
    summary = bootstrap.build_sweeper(S.Settings.from_env({**h.env, "GUARDRAILS_FUNCTION_APP_ID": APP}),
                                      clock=FakeClock(), sleep=lambda s: None).run()
    assert summary.uncovered == 1, summary.coverage
    row = _coverage_rows(h, summary.sweep_id)[f"/subscriptions/{b.SUB}"]
    assert (row.verdict, row.notify) == ("violation", True)
    assert "not_provisioned" in [v.rule for v in row.violations]


# ---- 3. includedEventTypes ["All"] reads as a gap ---------------------------------------------------
def test_included_event_types_all_means_every_event_type_not_a_filtered_gap():
    """DEFECT: Event Grid spells "every event type" ``includedEventTypes: ["All"]`` (Microsoft's own
    Resource Manager template samples; the API's default in earlier versions), besides leaving it
    null or absent. ``coverage.judge`` takes ``"All"`` for an event type named "All": the writes'
    event subscription reads ``event_type_filtered`` (a false alarm every sweep, the owner told).
    EXPECTED: ``["All"]`` (any case) lets every type through, as null does: covered."""
    for spelled in (["All"], ["all"], ["ALL"]):
        writes = event_subscription(b.SUB, APP)
        writes["properties"]["filter"]["includedEventTypes"] = spelled
        cov = _assess(system_topic(b.SUB), writes, deletions_subscription(b.SUB, APP))
        assert cov.covered, (spelled, cov.gaps)


def test_one_event_subscription_for_all_types_covers_writes_and_deletions():
    """DEFECT: one event subscription with ``["All"]`` and an operation filter naming the covered
    writes and deletions delivers both, but its deletions read ``deletions_not_delivered``.
    EXPECTED: covered."""
    es = event_subscription(b.SUB, APP, operations=[*covered_operations(), *covered_delete_operations()])
    es["properties"]["filter"]["includedEventTypes"] = ["All"]
    cov = _assess(system_topic(b.SUB), es)
    assert cov.covered, cov.gaps


def test_control_null_absent_and_empty_included_event_types_mean_every_type():
    """CONTROL (passes): a null, absent or empty ``includedEventTypes`` lets every type through."""
    for how in ("null", "absent", "empty"):
        writes = event_subscription(b.SUB, APP)
        filt = writes["properties"]["filter"]
        if how == "absent":
            del filt["includedEventTypes"]
        else:
            filt["includedEventTypes"] = None if how == "null" else []
        assert _assess(system_topic(b.SUB), writes, deletions_subscription(b.SUB, APP)).covered, how


def test_control_a_list_of_types_without_all_is_still_judged_type_by_type():
    """CONTROL (passes): a list that names neither the write event nor "All" drops the writes; the
    deletions' own subscription (``ResourceDeleteSuccess`` only) is still not taken for the writes'."""
    writes = event_subscription(b.SUB, APP)
    writes["properties"]["filter"]["includedEventTypes"] = ["Microsoft.Resources.ResourceActionSuccess"]
    assert _codes(_assess(system_topic(b.SUB), writes, deletions_subscription(b.SUB, APP))) == [
        "event_type_filtered"]
    assert _codes(_assess(system_topic(b.SUB), deletions_subscription(b.SUB, APP))) == ["no_event_subscription"]
    assert deletions_subscription(b.SUB, APP)["properties"]["filter"]["includedEventTypes"] == [DELETE_EVENT]


def test_a_sweep_writes_no_row_for_a_subscription_whose_filter_says_all(harness):
    """DEFECT (through the sweep): the ``["All"]`` subscription is recorded as a gap.
    EXPECTED: covered, no ``event_coverage`` row."""
    wiring = subscription_wiring(b.SUB, APP)
    wiring[1]["properties"]["filter"]["includedEventTypes"] = ["All"]
    h = harness([b.storage("stok", pna="Disabled", blob=False), *wiring])
    summary = bootstrap.build_sweeper(S.Settings.from_env({**h.env, "GUARDRAILS_FUNCTION_APP_ID": APP}),
                                      clock=FakeClock(), sleep=lambda s: None).run()
    assert (summary.uncovered, [c["covered"] for c in summary.coverage]) == (0, [True]), summary.coverage
    assert _coverage_rows(h, summary.sweep_id) == {}


# ---- 4. the coverage check's reads have no run deadline ---------------------------------------------
def _other_topics(n: int) -> list[dict]:
    """``n`` system topics of other sources in the subscription (storage accounts' topics): listed
    with the subscription's topic, never its own."""
    out = []
    for i in range(n):
        t = system_topic(b.SUB)
        t["id"] = t["id"].replace(f"evgt-guardrails-{b.SUB}", f"evgt-storage-{i:03d}")
        t["name"] = t["id"].rsplit("/", 1)[-1]
        t["properties"].update(source=f"{b.rg_id('rg-data')}/providers/Microsoft.Storage/storageAccounts/st{i:03d}",
                               topicType="Microsoft.Storage.StorageAccounts")
        out.append(t)
    return out


def _slow_arm(harness, *extra: dict):
    return harness([*subscription_wiring(b.SUB, APP), *extra],
                   env={S.ARM_READS_PER_SECOND: "1", S.ARM_READ_BURST: "1", S.SWEEP_MAX_SECONDS: "20"})


def _assert_unchecked_within_budget(h, summary) -> None:
    assert summary.duration_s <= 20, summary.duration_s            # inside GUARDRAILS_SWEEP_MAX_SECONDS
    by_source = {c["source"]: c for c in summary.coverage}
    entry = by_source[f"/subscriptions/{b.SUB}"]
    assert entry["covered"] is None and [g["code"] for g in entry["gaps"]] == ["unchecked"], entry
    assert summary.truncated and summary.failed >= 1 and summary.uncovered == 0
    assert _coverage_rows(h, summary.sweep_id) == {}               # no verdict, no row, no state
    assert TableTimerState(h.tables).coverage_state(f"/subscriptions/{b.SUB}") is None


def test_a_slow_paged_topic_list_stops_at_the_runs_deadline_and_is_recorded_unchecked(harness):
    """DEFECT: ``CoverageReader.read`` lists the system topics and event subscriptions with no
    deadline (``list_system_topics`` / ``list_event_subscriptions`` carry only the per-page budget):
    the check looks at the clock only between sources, so one subscription's topic list of many
    pages (ARM paced at 1 read/s) is read to its end, whatever the run's budget: a 20 s run takes
    over 40 s, and the source is judged on a list read past the deadline.
    EXPECTED: the reads stop at the run's deadline (``GUARDRAILS_SWEEP_MAX_SECONDS``, the sweep's
    share plus the coverage reserve), as the sweep's lists do; the source is ``unchecked`` (a sweep
    error, the run ``truncated``), never judged on part of a list."""
    h = _slow_arm(harness, *_other_topics(40))
    h.emu.page_size = 1
    clock = FakeClock()
    summary = _timed_sweeper(h, clock).run()
    _assert_unchecked_within_budget(h, summary)


def test_a_topic_list_throttled_past_the_runs_deadline_is_not_waited_for(harness):
    """DEFECT: ARM answers the topic list 429 with ``Retry-After: 55``; with only the per-page
    budget (60 s) the check sleeps it out and the 20 s run ends after 55 s.
    EXPECTED: a Retry-After past the run's deadline is not waited out: the source is ``unchecked``,
    the run cut short (``truncated``) inside its budget."""
    h = _slow_arm(harness)
    h.emu.add_fault(method="GET", path_regex=r"/providers/Microsoft\.EventGrid/systemTopics$", status=429,
                    retry_after=55, times=1)
    clock = FakeClock()
    summary = _timed_sweeper(h, clock).run()
    _assert_unchecked_within_budget(h, summary)


def test_control_a_topic_list_read_inside_the_budget_is_judged(harness):
    """CONTROL (passes): the same paced ARM, a short topic list: read in time, judged covered."""
    h = _slow_arm(harness, *_other_topics(2))
    h.emu.page_size = 1
    summary = _timed_sweeper(h, FakeClock()).run()
    assert [(c["source"], c["covered"]) for c in summary.coverage] == [(f"/subscriptions/{b.SUB}", True)]
    assert summary.duration_s <= 20 and summary.uncovered == 0


# ---- 2. role assignments at a management group below a configured one -----------------------------
MG = "/providers/Microsoft.Management/managementGroups/mg-corp"
CHILD_MG = "/providers/Microsoft.Management/managementGroups/mg-corp-sandbox"      # below mg-corp in Azure


def test_a_privileged_grant_at_a_child_management_group_is_judged_by_the_sweep(harness):
    """DEFECT (fix outside this module): ``GUARDRAILS_SWEEP_MANAGEMENT_GROUPS=mg-corp`` with a
    child group ``mg-corp-sandbox`` below it. No Event Grid source delivers role assignments at a
    management group (no coverage expectation can exist for one), so the sweep is their only path:
    ``Sweeper._sweep_management_group`` lists ``atScope()`` at ``mg-corp`` (at and ABOVE it) and keeps
    the assignments at exactly its scope. A Contributor grant at the child group, inherited by every
    subscription below it, is never listed, judged or reported.
    EXPECTED: the groups below a configured one are judged as it is (its descendants listed, each
    group's assignments ``atScope()``): the grant is removed and audited. The emulator's world
    names the hierarchy (``managementGroups``) and answers the descendants list
    (``guardrails.sweep_groups``; more in ``test_sweep_child_mgs_s35``)."""
    grant = b.role_assignment("Contributor", b.ALICE, scope=CHILD_MG)
    h = harness([], world={"roleAssignments": [grant],
                           "managementGroups": [{"name": "mg-corp-sandbox", "parent": "mg-corp"}]})
    summary = bootstrap.build_sweeper(S.Settings.from_env({**h.env, "GUARDRAILS_SWEEP_MANAGEMENT_GROUPS": "mg-corp"}),
                                      clock=FakeClock(), sleep=lambda s: None).run()
    rows = {r.resource_id: r.verdict for r in h.stored_rows() if r.correlation_id == summary.sweep_id}
    assert rows.get(grant["id"]) == "remediated", rows


def test_control_a_privileged_grant_at_the_configured_management_group_is_judged(harness):
    """CONTROL (passes): the same grant AT the configured group is listed and removed."""
    grant = b.role_assignment("Contributor", b.ALICE, scope=MG)
    h = harness([], world={"roleAssignments": [grant]})
    summary = bootstrap.build_sweeper(S.Settings.from_env({**h.env, "GUARDRAILS_SWEEP_MANAGEMENT_GROUPS": "mg-corp"}),
                                      clock=FakeClock(), sleep=lambda s: None).run()
    rows = {r.resource_id: r.verdict for r in h.stored_rows() if r.correlation_id == summary.sweep_id}
    assert rows.get(grant["id"]) == "remediated", rows
