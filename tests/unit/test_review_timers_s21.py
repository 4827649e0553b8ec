"""The timers' pure parts: ARM timestamps with fractions and offsets (event coverage's
``expired``), the coverage check's reserve and reading order, and how far the expiry window moves
and what the expiry timer keeps for its next run. GIVEN / WHEN / THEN; no network, no SDK.
(Imports inside the tests: each proves its own piece.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace as NS

import pytest

from guardrails.coverage import assess, subscription_expectation
from guardrails.local.eventgrid_world import event_subscription, system_topic
from guardrails.model.policy import Exemption
from guardrails.permissions import covered_operations
from tests.builders import SUB

APP = f"/subscriptions/{SUB}/resourceGroups/rg-guardrails/providers/Microsoft.Web/sites/func-guardrails-x"
UTC = timezone.utc
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


# ---- 3. ARM timestamps: only the fraction is trimmed, the offset is kept ------------------------
@pytest.mark.parametrize("text, expected", [
    ("2026-11-24T09:00:00Z", T0),
    ("2026-11-24T09:00:00", T0),                                        # no offset: UTC
    ("2026-11-24T09:00:00.1234567Z", T0 + timedelta(microseconds=123456)),     # 7 digits: 6 kept
    ("2026-11-24T09:00:00.1234567", T0 + timedelta(microseconds=123456)),
    ("2026-11-24T11:00:00.5+02:00", T0 + timedelta(microseconds=500000)),
    ("2026-11-24T11:00:00+02:00", T0),
    ("2026-11-24T07:00:00.5-02:00", T0 + timedelta(microseconds=500000)),
    ("2026-11-24T07:00:00.1234567-02:00", T0 + timedelta(microseconds=123456)),
    ("2026-11-24T14:30:00.25+0530", T0 + timedelta(microseconds=250000)),
    (" 2026-11-24T09:00:00.5z ", T0 + timedelta(microseconds=500000)),
])
def test_an_arm_timestamp_keeps_its_offset_whatever_its_fraction(text, expected):
    from guardrails.coverage import _parse_time

    got = _parse_time(text)
    assert got == expected and got.utcoffset() is not None


@pytest.mark.parametrize("text", [None, "", "   ", "soon", "2026-11-24T09:00:00.5+02:00 tomorrow", 42])
def test_what_is_not_a_timestamp_is_none(text):
    from guardrails.coverage import _parse_time

    assert _parse_time(text) is None


def _judged(expires: str, now: datetime):
    es = event_subscription(SUB, APP)
    es["properties"]["expirationTimeUtc"] = expires
    t = system_topic(SUB)
    return assess(subscription_expectation(SUB, covered_operations()), [t], {t["id"].lower(): [es]},
                  function_app_id=APP, now=now)


def test_an_event_subscription_expired_in_another_time_zone_is_a_gap_with_or_without_a_fraction():
    # GIVEN an event subscription that expired at 09:00 UTC, written with a +02:00 offset; now 09:30 UTC
    now = T0 + timedelta(minutes=30)
    for written in ("2026-11-24T11:00:00+02:00", "2026-11-24T11:00:00.5+02:00", "2026-11-24T11:00:00.1234567+02:00"):
        # THEN it is expired, not read as 11:00 UTC
        assert [g.code for g in _judged(written, now).gaps] == ["expired"], written


def test_an_event_subscription_expiring_later_behind_utc_is_not_expired():
    # GIVEN one expiring at 13:00 UTC (11:00 -02:00), now 12:00 UTC: still delivering
    now = T0 + timedelta(hours=3)
    for written in ("2026-11-24T11:00:00-02:00", "2026-11-24T11:00:00.5-02:00", "2026-11-24T11:00:00.1234567-02:00"):
        assert _judged(written, now).covered, written


# ---- 2. the coverage check's own budget and reading order -------------------------------------
def test_the_coverage_reserve_is_a_tenth_of_the_sweep_budget_at_most_a_minute():
    from guardrails.coverage_check import coverage_reserve

    assert coverage_reserve(540.0) == pytest.approx(54.0)      # the default: 594 s < the host's 600
    assert coverage_reserve(3600.0) == 60.0
    assert coverage_reserve(50.0) == pytest.approx(5.0)
    assert coverage_reserve(0.0) == 0.0


def test_sources_never_judged_are_read_first_then_known_gaps_then_covered_ones():
    from guardrails.coverage_check import expectations, reading_order

    subs = ["covered-sub", "gap-sub", "new-sub", "covered-2"]
    groups: dict[str, list] = {}
    for e in expectations(subs):
        groups.setdefault(e.subscription_id.lower(), []).append(e)
    states = {"/subscriptions/covered-sub": {"covered": True}, "/subscriptions/gap-sub": {"covered": False},
              "/subscriptions/covered-2": {"covered": True}}
    order = [g[0].subscription_id for g in reading_order(groups, states)]
    assert order == ["new-sub", "gap-sub", "covered-sub", "covered-2"]


def test_a_subscription_with_a_new_governed_vault_is_read_first():
    from guardrails.coverage_check import expectations, reading_order

    vault = "/subscriptions/sub-b/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-new"
    groups: dict[str, list] = {}
    for e in expectations(["sub-a", "sub-b"], vaults=[vault]):
        groups.setdefault(e.subscription_id.lower(), []).append(e)
    states = {"/subscriptions/sub-a": {"covered": True}, "/subscriptions/sub-b": {"covered": True}}
    assert [g[0].subscription_id for g in reading_order(groups, states)] == ["sub-b", "sub-a"]


# ---- 1 and 4. how far the expiry window moves, what the next run retries -----------------------
def test_the_window_moves_to_now_when_nothing_of_it_is_pending():
    from guardrails.expiry_scopes import next_last_run

    assert next_last_run([T0, T0 + timedelta(minutes=1)], [], T0 + timedelta(minutes=5)) == T0 + timedelta(minutes=5)
    assert next_last_run([], [], T0) == T0


def test_a_truncated_window_moves_only_past_expiries_handled_in_full():
    from guardrails.expiry_scopes import next_last_run

    t1, t2, t3 = T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    now = T0 + timedelta(minutes=5)
    assert next_last_run([t1, t2], [t3], now) == t2
    assert next_last_run([], [t1, t2], now) is None                 # nothing handled: the window stays
    # an expiry shared by handled and pending exemptions is repeated whole: the window stops before it
    assert next_last_run([t1, t2], [t2, t3], now) == t1
    assert next_last_run([t2], [t2], now) is None


def _compiled(*exemptions: Exemption, mode: str = "enforce"):
    pol = NS(mode=mode, exemptions=exemptions, ref="storage-private@1",
             selector=NS(resource_types=("Microsoft.Storage/storageAccounts",)))
    return NS(policies=[pol], role_policies=[])


def test_expired_exemptions_come_earliest_first():
    from guardrails.expiry import expired_between

    late = Exemption(f"/subscriptions/{SUB}/resourceGroups/rg-b", "r", "o", T0 + timedelta(minutes=3))
    early = Exemption(f"/subscriptions/{SUB}/resourceGroups/rg-a", "r", "o", T0 + timedelta(minutes=1))
    out = expired_between(_compiled(late, early), T0, T0 + timedelta(minutes=5))
    assert [e.exemption.scope for e in out] == [early.scope, late.scope]


def test_a_kept_scope_stands_for_the_same_exemption_scope_and_types():
    from guardrails.expiry_scopes import Expired, from_entry, scope_entry

    item = Expired("resource", "storage-private@1", ("Microsoft.Storage/storageAccounts",),
                   Exemption(f"/subscriptions/{SUB}/resourceGroups/rg-a", "r", "o", T0))
    entry = scope_entry(item, 2, "arm_error")
    back = from_entry(entry)
    assert (back.kind, back.policy, back.resource_types, back.exemption.scope, back.key) == (
        item.kind, item.policy, item.resource_types, item.exemption.scope, item.key)
    assert entry["attempts"] == 2
    for bad in (None, "x", {}, {"kind": "other", "scope": "/x", "policy": "p"}, {"kind": "role", "policy": "p"},
                {"kind": "resource", "scope": "/s", "policy": "p", "types": "not-a-list"}):
        assert from_entry(bad) is None


def test_retries_the_budget_did_not_reach_keep_their_attempts():
    from guardrails.expiry import ExpiryReEnforcer, _Run
    from guardrails.sweep import SweepSummary, _Tally

    # GIVEN three ids kept by earlier runs; this run decided a (failed again) and b (fixed), then stopped
    before = {k: {"id": k.upper(), "attempts": n} for k, n in (("a", 3), ("b", 1), ("c", 5))}
    run = _Run(_Tally(SweepSummary(sweep_id="x", kind="expiry", started="")), "x")
    run.attempted |= {"a", "b"}
    run.failed["a"] = "A"
    # THEN a counts one more attempt, b is dropped, c (not reached) keeps its attempts
    assert ExpiryReEnforcer._retry_next(before, run, "x") == [{"id": "A", "attempts": 4}, {"id": "C", "attempts": 5}]


def test_kept_scopes_count_attempts_and_are_given_up_at_the_cap(monkeypatch):
    from guardrails import expiry
    from guardrails.expiry import ExpiryReEnforcer
    from guardrails.expiry_scopes import Expired, scope_entry

    monkeypatch.setattr(expiry, "MAX_ATTEMPTS", 3)

    def item(rg: str) -> Expired:
        return Expired("resource", "p@1", ("Microsoft.Storage/storageAccounts",),
                       Exemption(f"/subscriptions/{SUB}/resourceGroups/{rg}", "r", "o", T0))
    a, b, c = item("rg-a"), item("rg-b"), item("rg-c")
    before = {x.key: (x, scope_entry(x, 2, "arm_error")) for x in (a, c)}
    failed = {a.key: scope_entry(a, 3, "arm_error"),          # third failure: given up
              b.key: scope_entry(b, 1, "throttled")}          # a new one from this run's window
    kept = ExpiryReEnforcer._scopes_next(before, {a.key, b.key}, failed, "x")
    # c was not reached this run: kept as it was
    assert [(e["scope"].rsplit("/", 1)[-1], e["attempts"]) for e in kept] == [("rg-b", 1), ("rg-c", 2)]


def test_an_arm_error_a_decision_lets_out_fails_that_resource_not_its_scope():
    from guardrails.errors import ResourceNotFound
    from guardrails.expiry import _Run
    from guardrails.sweep import SweepSummary, _Tally

    # GIVEN a decision that raises (a 404 here must not read as "the scope is gone")
    summary = SweepSummary(sweep_id="x", kind="expiry", started="")
    run = _Run(_Tally(summary), "x")

    def boom() -> None:
        raise ResourceNotFound("GET …/stfoo: not found", status=404)
    # WHEN it is decided
    run.decide("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stFoo", boom)
    # THEN the run goes on: an error of the run, the id decided again next run
    assert summary.failed == 1 and "stFoo" in summary.errors[0]
    assert list(run.failed) == ["/subscriptions/s/resourcegroups/rg/providers/microsoft.storage/storageaccounts/stfoo"]


def test_a_run_past_its_budget_stops_before_the_next_decision():
    from guardrails.expiry import _OutOfTime, _Run
    from guardrails.sweep import SweepSummary, _Tally

    summary = SweepSummary(sweep_id="x", kind="expiry", started="")
    t = [0.0]
    run = _Run(_Tally(summary), "x", clock=lambda: t[0], deadline=10.0)
    decided: list[str] = []
    run.decide("/a", lambda: decided.append("/a"))
    t[0] = 10.5
    with pytest.raises(_OutOfTime):
        run.decide("/b", lambda: decided.append("/b"))
    assert decided == ["/a"] and summary.truncated and run.attempted == {"/a"}
