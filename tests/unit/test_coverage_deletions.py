"""A subscription's deletions in the event-coverage check: ``infra`` wires a second event
subscription (``guardrails-resource-events-deletes``, ``ResourceDeleteSuccess`` of
``permissions.covered_delete_operations``); without it a deleted resource stays in the compliance
report. Judged apart from the writes, reported as one ``deletions_not_delivered`` gap."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from guardrails.coverage import DELETE_EVENT, WRITE_EVENT, assess, subscription_expectation, transition
from guardrails.local.eventgrid_world import deletions_subscription, event_subscription, subscription_wiring, system_topic
from guardrails.permissions import covered_delete_operations, covered_operations

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
APP = f"/subscriptions/{SUB}/resourceGroups/rg-guardrails/providers/Microsoft.Web/sites/func-guardrails-x"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
OPS, DELETES = tuple(covered_operations()), tuple(covered_delete_operations())
EXPECT = subscription_expectation(SUB, OPS, DELETES)


def _assess(*event_subscriptions, expected=EXPECT):
    t = system_topic(SUB)
    return assess(expected, [t], {t["id"].lower(): list(event_subscriptions)}, function_app_id=APP, now=NOW)


def _codes(cov):
    return [g.code for g in cov.gaps]


def test_the_deployed_wiring_covers_writes_and_deletions():
    topic, writes, deletes = subscription_wiring(SUB, APP)
    assert deletes["name"] == "guardrails-resource-events-deletes"
    assert deletes["properties"]["filter"]["includedEventTypes"] == [DELETE_EVENT]
    cov = _assess(writes, deletes)
    assert cov.covered and cov.missing_deletions == ()
    assert cov.event_subscription_id.endswith("/guardrails-resource-events")
    assert len(DELETES) == 12 and "Microsoft.Resources/subscriptions/resourceGroups/delete" in DELETES


def test_writes_without_the_deletions_subscription_are_one_gap_naming_every_deletion():
    cov = _assess(event_subscription(SUB, APP))
    assert _codes(cov) == ["deletions_not_delivered"] and not cov.covered
    assert cov.missing_deletions == DELETES
    assert "no_event_subscription" in cov.gaps[0].detail and DELETE_EVENT.rsplit(".", 1)[1] in cov.gaps[0].detail
    assert "deleted resource stays in the compliance report" in cov.message() and "writes are covered" in cov.message()
    assert cov.to_dict()["missing_deletions"] == list(DELETES)
    step = transition(None, cov, "2026-11-25T12:00:00.000000Z")
    assert (step.write_row, step.verdict, step.notify) == (True, "violation", True)


def test_a_narrowed_deletions_filter_names_what_it_drops_and_a_change_notifies_again():
    dropped = "Microsoft.Storage/storageAccounts/delete"
    narrowed = _assess(event_subscription(SUB, APP),
                       deletions_subscription(SUB, APP, operations=[o for o in DELETES if o != dropped]))
    assert _codes(narrowed) == ["deletions_not_delivered"] and narrowed.missing_deletions == (dropped,)
    assert "operations_filtered" in narrowed.gaps[0].detail
    gone = _assess(event_subscription(SUB, APP))
    assert narrowed.signature() != gone.signature()
    first = transition(None, narrowed, "t0")
    assert transition(first.state, gone, "t1").notify is True
    assert transition(first.state, narrowed, "t1").notify is False


def test_a_failed_or_expired_deletions_subscription_is_a_gap():
    for props in ({"provisioningState": "Failed"}, {"expirationTimeUtc": "2026-11-01T00:00:00Z"}):
        cov = _assess(event_subscription(SUB, APP), deletions_subscription(SUB, APP, **props))
        assert _codes(cov) == ["deletions_not_delivered"] and cov.missing_deletions == DELETES, props


def test_a_deleted_writes_subscription_is_not_judged_on_the_deletions_one():
    cov = _assess(deletions_subscription(SUB, APP))
    assert _codes(cov) == ["no_event_subscription"], "the deletions' subscription is not a narrowed writes one"
    assert "1 deliver only the deletions" in cov.gaps[0].detail
    assert cov.missing_deletions == ()


def test_a_writes_subscription_copied_over_the_deletions_one_is_reported():
    copy = deletions_subscription(SUB, APP)
    copy["properties"]["filter"]["includedEventTypes"] = [WRITE_EVENT]
    cov = _assess(event_subscription(SUB, APP), copy)
    assert _codes(cov) == ["deletions_not_delivered"] and cov.missing_deletions == DELETES
    assert "2 deliver only the writes" in cov.gaps[0].detail


def test_one_unfiltered_event_subscription_covers_both():
    es = event_subscription(SUB, APP)
    es["properties"]["filter"] = {"includedEventTypes": None, "advancedFilters": []}
    assert _assess(es).covered
    es["properties"]["filter"] = {"includedEventTypes": [WRITE_EVENT, DELETE_EVENT], "advancedFilters": []}
    assert _assess(es).covered


def test_without_deletions_expected_signatures_keep_the_earlier_format():
    """States kept by an earlier release compare equal: no notification storm on upgrade."""
    cov = _assess(event_subscription(SUB, APP, operations=OPS[1:]), deletions_subscription(SUB, APP))
    assert _codes(cov) == ["operations_filtered"]
    assert json.loads(cov.signature()) == [["operations_filtered"], [OPS[0].lower()], []]
    old = _assess(event_subscription(SUB, APP, operations=OPS[1:]), expected=subscription_expectation(SUB, OPS))
    assert old.signature() == cov.signature()


def test_both_parts_broken_are_both_reported_writes_first():
    cov = _assess(event_subscription(SUB, APP, operations=OPS[1:]))
    assert _codes(cov) == ["operations_filtered", "deletions_not_delivered"]
    assert cov.missing_operations == (OPS[0],) and cov.missing_deletions == DELETES


def test_the_sweep_and_the_cli_expect_the_deletions():
    from guardrails.coverage_check import expectations
    (e,) = expectations([SUB])
    assert e.delete_operations == DELETES and e.deletions().event_types == (DELETE_EVENT,)
