"""Event coverage with ``isSubjectCaseSensitive``: Event Grid then compares ``subjectBeginsWith``
as written, and ARM's subjects start with the lower-case ``/subscriptions/<id>/``; a filter that
differs from it in case drops every resource write, so it is a gap, not coverage."""

from __future__ import annotations

from datetime import datetime, timezone

from guardrails.coverage import assess, subscription_expectation
from guardrails.local.eventgrid_world import event_subscription, system_topic
from guardrails.permissions import covered_operations
from tests.builders import SUB

APP = f"/subscriptions/{SUB}/resourceGroups/rg-guardrails/providers/Microsoft.Web/sites/func-guardrails-x"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
EXPECT = subscription_expectation(SUB, covered_operations())


def _with_filter(**filt):
    es = event_subscription(SUB, APP)
    es["properties"]["filter"].update(filt)
    t = system_topic(SUB)
    return assess(EXPECT, [t], {t["id"].lower(): [es]}, function_app_id=APP, now=NOW)


def test_a_case_sensitive_subject_filter_in_another_case_drops_every_write_and_is_a_gap():
    # GIVEN a case-sensitive filter written in upper case (ARM's subjects are lower case up to the id)
    cov = _with_filter(isSubjectCaseSensitive=True, subjectBeginsWith=f"/SUBSCRIPTIONS/{SUB.upper()}/")
    # THEN it is not covered: the subject filter is the gap
    assert not cov.covered
    assert [g.code for g in cov.gaps] == ["subject_filtered"]


def test_a_case_sensitive_subject_filter_matching_the_subjects_as_sent_still_covers():
    assert _with_filter(isSubjectCaseSensitive=True, subjectBeginsWith=f"/subscriptions/{SUB.lower()}/").covered
    assert _with_filter(isSubjectCaseSensitive=True, subjectBeginsWith="/subscriptions/").covered
    assert not _with_filter(isSubjectCaseSensitive=True, subjectBeginsWith="/Subscriptions/").covered


def test_without_the_flag_subject_filters_still_compare_case_insensitively():
    assert _with_filter(subjectBeginsWith=f"/SUBSCRIPTIONS/{SUB.upper()}/").covered
    assert _with_filter(isSubjectCaseSensitive=False, subjectBeginsWith=f"/SUBSCRIPTIONS/{SUB.upper()}/").covered
    assert _with_filter(isSubjectCaseSensitive=True, subjectBeginsWith="", subjectEndsWith="").covered
