"""The sweep tells an owner of an open finding once, then on change or as a daily reminder
(``guardrails.sweep_notices``): Azurite + the HTTPS emulator, the real SDK clients, the sweep as
the timer runs it. Each run still writes its audit row; only news sets ``notify`` and logs
``guardrail_violation_notify``."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import bootstrap
from guardrails.ratelimit import FakeClock
from tests import builders as b

pytestmark = pytest.mark.integration

NOTIFY_EVENT = "guardrail_violation_notify"

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


class _Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _sweeper(h, wall: _Wall, **env):
    from guardrails import settings as S
    clock = FakeClock()
    sw = bootstrap.build_sweeper(S.Settings.from_env({**h.env, **env}), clock=clock, sleep=clock.sleep)
    sw._wall = wall
    return sw


def _run(h, sw, wall: _Wall, caplog, *, after: timedelta = timedelta(hours=1), dry_run: bool = False):
    """One sweep ``after`` the previous; its rows for the vault and the notify lines it logged."""
    wall.now += after
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="guardrails"):
        summary = sw.run(dry_run=dry_run)
    rows = [r for r in h.stored_rows() if r.correlation_id == summary.sweep_id]
    told = [json.loads(r.getMessage()) for r in caplog.records if NOTIFY_EVENT in r.getMessage()]
    return summary, rows, told


def _vault(rbac: bool, pna: str = "Disabled", purge: bool = True) -> dict:
    v = b.key_vault("kvaccess", pna=pna, rbac=rbac)          # enableRbacAuthorization false: notify only
    v["properties"]["enablePurgeProtection"] = purge
    return v


def test_an_unchanged_open_finding_is_told_once_then_recorded_quietly_until_the_daily_reminder(harness, caplog):
    vault = _vault(rbac=False)
    h = harness([vault])
    wall = _Wall()
    sw = _sweeper(h, wall)

    s1, rows1, told1 = _run(h, sw, wall, caplog)
    assert [(r.verdict, r.notify) for r in rows1] == [("violation", True)]
    assert len(told1) == 1 and s1.repeats_not_notified == 0

    # the next runs: the same finding, still recorded, not told again
    for _ in range(2):
        s, rows, told = _run(h, sw, wall, caplog)
        assert [(r.verdict, r.notify) for r in rows] == [("violation", False)]
        assert "not notified again: unchanged since the owner was told at 2026-11-25T09:00:00Z" in rows[0].message
        assert told == [] and s.repeats_not_notified == 1
        assert h.resource(vault["id"])["properties"]["enableRbacAuthorization"] is False   # nothing changed

    # 24 h after the owner was told: a reminder
    _s, rows, told = _run(h, sw, wall, caplog, after=timedelta(hours=22))
    assert [(r.verdict, r.notify) for r in rows] == [("violation", True)] and len(told) == 1
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [r.notify for r in rows] == [False] and told == []


PURGE_POLICY = """\
id: keyvault-purge-protection
version: 1
description: Vaults keep purge protection on; turning it on is the owner's call (it cannot be undone).
mode: enforce
selector:
  resource_types: [Microsoft.KeyVault/vaults]
rules:
  - id: purge-protection-enabled
    property: properties.enablePurgeProtection
    expect: {equals: true}
    action: {type: notify}
"""


def test_a_finding_that_changes_or_comes_back_after_a_compliant_run_is_news(harness, caplog, tmp_path):
    (tmp_path / "keyvault-purge-protection.yaml").write_text(PURGE_POLICY)
    vault = _vault(rbac=False)
    h = harness([vault], extra_metadata=[tmp_path])
    wall = _Wall()
    sw = _sweeper(h, wall)
    _run(h, sw, wall, caplog)
    _s, rows, _told = _run(h, sw, wall, caplog)
    assert [r.notify for r in rows] == [False]

    # a fix the sweep makes on its own is no news to the owner (nothing for them to do) ...
    public = _vault(rbac=False, pna="Enabled")
    h.emu.put(public)
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [(r.verdict, r.notify) for r in rows] == [("violation", False)] and told == []
    assert {(v.rule, v.outcome) for v in rows[0].violations} == {
        ("public-network-access-disabled", "remediated"), ("rbac-authorization-enabled", "violation")}
    assert h.resource(vault["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    # ... a finding that changed is: purge protection turned off as well
    off = _vault(rbac=False, purge=False)
    h.emu.put(off)
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [(r.verdict, r.notify) for r in rows] == [("violation", True)] and len(told) == 1
    assert told[0]["rules"] == ["keyvault-private@1/rbac-authorization-enabled",
                                "keyvault-purge-protection@1/purge-protection-enabled"]
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [r.notify for r in rows] == [False] and told == []

    # fixed by its owner: the sweep closes the open finding (one compliant row, nothing told; the
    # compliance report reads the latest row), then only counts it; broken again: news, not a repeat
    h.emu.put(_vault(rbac=True))
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [(r.verdict, r.notify) for r in rows] == [("compliant", False)] and told == []
    s, rows, told = _run(h, sw, wall, caplog)
    assert rows == [] and told == [] and s.compliant == 1
    h.emu.put(_vault(rbac=False))
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [(r.verdict, r.notify) for r in rows] == [("violation", True)] and len(told) == 1


def test_renotify_zero_tells_every_run_and_a_dry_run_is_not_gated(harness, caplog):
    vault = _vault(rbac=False)
    h = harness([vault])
    wall = _Wall()
    every = _sweeper(h, wall, GUARDRAILS_SWEEP_RENOTIFY_HOURS="0")
    for _ in range(3):
        _s, rows, told = _run(h, every, wall, caplog)
        assert [r.notify for r in rows] == [True] and len(told) == 1

    quiet = _sweeper(h, wall)
    _run(h, quiet, wall, caplog)
    _s, rows, _told = _run(h, quiet, wall, caplog)
    assert [r.notify for r in rows] == [False]
    # a dry run (an admin's look) shows every finding as it is, told or not
    dry, rows, told = _run(h, quiet, wall, caplog, dry_run=True)
    assert [(r.verdict, r.notify) for r in rows] == [("violation", True)] and len(told) == 1
    assert dry.repeats_not_notified == 0


def test_a_run_that_did_not_reach_the_resource_makes_the_next_finding_news(harness, caplog):
    """"Seen on the previous run" is seen since that run began: a run whose budget ran out before
    the resource (here: the vaults' list was refused once) leaves the next run to tell the owner again."""
    vault = _vault(rbac=False)
    h = harness([vault])
    wall = _Wall()
    sw = _sweeper(h, wall)
    _run(h, sw, wall, caplog)
    h.emu.add_fault(method="GET", path_regex=r"/providers/Microsoft\.KeyVault/vaults$", status=403, times=1)
    s, rows, _told = _run(h, sw, wall, caplog)
    assert rows == [] and s.failed == 1
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [r.notify for r in rows] == [True] and len(told) == 1


def test_settings_refuse_a_non_finite_renotify_interval():
    from guardrails import settings as S
    from guardrails.errors import ConfigError
    for bad in ("nan", "inf", "-1"):
        with pytest.raises(ConfigError, match="GUARDRAILS_SWEEP_RENOTIFY_HOURS"):
            S.Settings.from_env({S.SWEEP_RENOTIFY_HOURS: bad})


def test_a_state_no_run_has_seen_for_a_week_is_pruned_by_a_full_sweep(harness, caplog):
    """A resource deleted while its finding was open leaves no state row behind for good."""
    from guardrails.adapters.sweep_tables import TableTimerState

    vault = _vault(rbac=False)
    h = harness([vault])
    wall = _Wall()
    sw = _sweeper(h, wall)
    state = TableTimerState(h.tables)
    gone = vault["id"].replace("kvaccess", "kvdeleted")
    state.set_finding_state(gone, {"signature": "x", "told": "2026-11-01T08:00:00Z", "seen": "2026-11-01T08:00:00Z"})
    _run(h, sw, wall, caplog)
    assert state.finding_state(gone) is None
    assert state.finding_state(vault["id"]) is not None          # the open one stays


# -- the 2026-11-25 diff review's findings ------------------------------------------------------
def test_runs_starting_mid_second_still_see_the_previous_runs_sighting(harness, caplog):
    vault = _vault(rbac=False)
    h = harness([vault])
    wall = _Wall()
    sw = _sweeper(h, wall)
    out = []
    for _ in range(4):
        _s, rows, told = _run(h, sw, wall, caplog, after=timedelta(hours=1, milliseconds=500))
        out.append((rows[0].notify, len(told)))
    assert out == [(True, 1), (False, 0), (False, 0), (False, 0)]


def test_a_new_owner_hears_of_the_finding(harness, caplog):
    vault = _vault(rbac=False)
    h = harness([vault])
    wall = _Wall()
    sw = _sweeper(h, wall)
    _run(h, sw, wall, caplog)
    moved = _vault(rbac=False)
    moved["tags"]["owner"] = "new-team@contoso.com"
    h.emu.put(moved)
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [r.notify for r in rows] == [True] and [t["owner"] for t in told] == ["new-team@contoso.com"]
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [r.notify for r in rows] == [False] and told == []


def test_a_finding_settled_by_an_event_and_broken_again_unseen_is_news(harness, caplog):
    from tests import builders as b

    vault = _vault(rbac=False)
    h = harness([vault])
    wall = _Wall()
    sw = _sweeper(h, wall)
    _run(h, sw, wall, caplog)
    h.emu.put(_vault(rbac=True))                       # the owner fixes it; its event is decided
    assert h.deliver(b.write_event(vault["id"])).verdict == "compliant"
    h.emu.put(_vault(rbac=False))                      # broken again; that event is lost
    _s, rows, told = _run(h, sw, wall, caplog)
    assert [r.notify for r in rows] == [True] and len(told) == 1


def test_an_unreadable_last_run_is_as_if_no_run_had_finished(harness, caplog):
    from guardrails.adapters.sweep_tables import TableTimerState
    from guardrails.sweep import SWEEP_TIMER

    vault = _vault(rbac=False)
    h = harness([vault])
    wall = _Wall()
    sw = _sweeper(h, wall)
    _run(h, sw, wall, caplog)
    state = TableTimerState(h.tables)
    h.tables.table(state.name).upsert_entity({"PartitionKey": "timer", "RowKey": SWEEP_TIMER, "last_run": "garbage"})
    s, rows, told = _run(h, sw, wall, caplog)            # news again (louder), never a crash
    assert [r.notify for r in rows] == [True] and len(told) == 1 and s.failed == 0
    assert state.last_run(SWEEP_TIMER) is not None       # and the run stored a readable start
    h.tables.table(state.name).upsert_entity({"PartitionKey": "timer", "RowKey": SWEEP_TIMER,
                                              "last_run": "2026-11-25T08:00:00"})   # no offset: UTC
    assert state.last_run(SWEEP_TIMER).tzinfo is not None


def test_a_reminder_interval_beyond_a_year_is_refused():
    from guardrails import settings as S
    from guardrails.errors import ConfigError
    with pytest.raises(ConfigError, match="<= 8760"):
        S.Settings.from_env({S.SWEEP_RENOTIFY_HOURS: "10000000"})
    assert S.Settings.from_env({S.SWEEP_RENOTIFY_HOURS: "8760"}).sweep_renotify_hours == 8760
