"""The reconciling sweep's ring (``Sweeper``'s part that orders a run's work): each subscription
(its types' lists, then its role assignments), with the management groups, the vaults and the
referenced keys spread evenly among them, begun at a cursor kept in TimerState, so successive runs
cover an estate larger than one budget (README: budget and cursor)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import StoreError

if TYPE_CHECKING:
    from .sweep import _Tally

SWEEP_CURSOR = "reconciling_sweep.cursor"   # TimerState row (``retry``): the unit the next run begins with


class SweepRing:
    """Mixed into ``Sweeper`` (its ``_sweep_type``, ``_sweep_roles`` … do each unit's work)."""

    def _units(self, tally: _Tally, compiled, subs: list[str], mgs: list[str], plan, sweep_id: str, dry_run: bool,
               deadline: float) -> list[_Unit]:
        """The ring of this run's work: each subscription (its types' lists, then its role
        assignments), with the management groups, the vaults and the referenced keys spread evenly
        among them (never all after every subscription, where a budget would never reach them)."""
        from functools import partial

        from .sweep_secrets import secret_units

        per_sub = [_Unit(f"subscription:{sub}", [
            *(partial(self._sweep_type, tally, compiled, sub, rt, decide, children, sweep_id, dry_run, deadline)
              for rt, decide, children in plan),
            partial(self._sweep_roles, tally, compiled, sub, sweep_id, dry_run, deadline)]) for sub in subs]
        others = [_Unit(f"management-group:{mg}", [partial(self._sweep_management_group, tally, mg, sweep_id,
                                                           dry_run, deadline)]) for mg in mgs]
        others += [_Unit(key, [task]) for key, task in secret_units(self, tally, compiled, sweep_id, dry_run, deadline)]
        return _interleave(per_sub, others)

    def _read_cursor(self, tally: _Tally, ring: list[_Unit]) -> int:
        """Where in ``ring`` this run begins: the unit the previous run named, else the position it
        had (the unit is gone), else the start."""
        read = getattr(self.state, "retry", None)
        if read is None or not ring:
            return 0
        try:
            kept = read(SWEEP_CURSOR)
        except StoreError as exc:
            tally.error(f"read where this sweep begins: {exc}; begun at the first subscription")
            return 0
        cursor = kept[0] if kept else {}
        keys = [u.key for u in ring]
        if cursor.get("next") in keys:
            return keys.index(cursor["next"])
        position = cursor.get("position")
        return position % len(ring) if isinstance(position, int) and not isinstance(position, bool) else 0

    def _sweep_units(self, tally: _Tally, compiled, order: list[_Unit], sweep_id: str, dry_run: bool,
                     deadline: float) -> tuple[list[bool], list[bool]]:
        """Every unit's tasks, in ``order``, a few at a time; the tenant root's role assignments
        first. A task not begun before the deadline is not begun at all. Returns, per unit, whether
        it was begun and whether it finished (every task ended before the deadline and nothing was
        cut short meanwhile: one that ended after it may have been cut short, and a cut elsewhere
        at the same time errs towards doing the unit again)."""
        began, finished = [False] * len(order), [True] * len(order)

        def task(i: int, fn: Callable[[], None]) -> None:
            if self._clock() > deadline:
                tally.truncate()
                finished[i] = False
                return
            began[i] = True
            cuts = tally.cuts
            fn()
            if self._clock() > deadline or tally.cuts != cuts:
                finished[i] = False

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sweep") as pool:
            # the tenant root's role assignments first (a few, tenant-wide reach): once per run
            futures = [pool.submit(self._sweep_root_roles, tally, compiled, sweep_id, dry_run, deadline)]
            futures += [pool.submit(task, i, fn) for i, unit in enumerate(order) for fn in unit.tasks]
            for fut in futures:
                fut.result()          # anything but an ArmError (Table Storage down …) ends the sweep
        return began, finished


@dataclass
class _Unit:
    """One unit of a run's ring: done in full by one run where the budget allows; ``key`` names it
    in the cursor (``subscription:<id>``, ``management-group:<mg>``, ``vault:<name>``, ``keys``)."""

    key: str
    tasks: list[Callable[[], None]]


def _interleave(first: list, second: list) -> list:
    """``second`` spread evenly through ``first`` (each at its share of the way), order kept."""
    if not first or not second:
        return first + second
    placed = [((i + 0.5) / len(first), 0, i) for i in range(len(first))]
    placed += [((j + 0.5) / len(second), 1, j) for j in range(len(second))]
    return [first[i] if which == 0 else second[i] for _, which, i in sorted(placed)]


def _next_start(began: list[bool], finished: list[bool]) -> int:
    """Where (in this run's order) the next run begins: the first unit this run did not finish;
    when that is the very first (it alone outlasted the budget), the first unit it never began
    (else the one after it), so one unit larger than a budget cannot hold the rest back."""
    if not finished:
        return 0
    unfinished = next((i for i, done in enumerate(finished) if not done), None)
    if unfinished is None:
        return 0                       # all done: the next run begins where this one did
    if unfinished > 0:
        return unfinished
    return next((i for i, b in enumerate(began) if not b), 1 % len(finished))
