"""The reconciling sweep's ring (``Sweeper``'s part that orders a run's work): each subscription
(its types' lists, then its role assignments), with the management groups, the vaults and the
referenced keys spread evenly among them, begun at a cursor kept in TimerState, so successive runs
cover an estate larger than one budget (README: budget and cursor).

A unit larger than one budget is not begun again from its start by every run (the same first
items decided run after run, its tail never): the cursor row keeps, per unit a run began and did
not finish, where each of its tasks stands (``resume``: the tasks it finished, and for a task that
lists items, a hash of the last item it handled in full), as the expiry timer's ``resume`` does
for a scope (``expiry_scopes._Progress``, whose skipping this reuses). The next run that comes to
the unit skips the finished tasks and, in each list, the items up to that one; if that item is
no longer listed (deleted since, or the order changed) the list is decided whole: deciding again
is safe, skipping is not. The Resource Graph listing (``GUARDRAILS_SWEEP_LISTER=graph``) keeps its
place the same way (``resume["resource-graph"]``). A row written before ``resume`` existed, or one
that is malformed, reads as "every unit from its start"."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .errors import StoreError
from .expiry_scopes import _h, _Progress

if TYPE_CHECKING:
    from .sweep import _Tally

SWEEP_CURSOR = "reconciling_sweep.cursor"   # TimerState row (``retry``): the unit the next run begins with
GRAPH_UNIT = "resource-graph"                # the Resource Graph listing's key in the row's ``resume``
RESUME_CHARS = 16_000     # the row's resume points kept at most (JSON): past it a unit is begun from its start


class _Place:
    """Where one task of a unit stands in its list between runs: ``resume`` is the hash of the last
    item an earlier run handled in full (None: from the start), ``after`` the last one handled in
    full so far (only a prefix of the list, in its order, moves it); ``done_before``: an earlier
    run finished the task while the unit as a whole was left unfinished."""

    def __init__(self, name: str, resume: str | None = None, done_before: bool = False) -> None:
        self.name, self.key = name, _h(name)
        self.resume = self.after = resume
        self.done_before = done_before
        self.done = False                # this run: the task ended within the budget, nothing cut short

    def items(self, bodies: Iterable[dict]) -> Iterator[dict]:
        """``bodies`` (each with a string ``id``) less those an earlier run handled: those up to
        the last one it handled, or none of them if that one is gone (``_Progress``)."""
        cursor = {"list": 0, "in": self.key, "after": self.resume} if self.resume else None
        return _Progress(cursor).items(self.name, (b for b in bodies if isinstance(b.get("id"), str)))

    def handled(self, item_id: str) -> None:
        self.after = _h(item_id)


class SweepRing:
    """Mixed into ``Sweeper`` (its ``_sweep_type``, ``_sweep_roles`` … do each unit's work)."""

    def _units(self, tally: _Tally, compiled, subs: list[str], mgs: list[str], plan, sweep_id: str, dry_run: bool,
               deadline: float, resume: dict[str, dict] | None = None) -> list[_Unit]:
        """The ring of this run's work: each subscription (its types' lists, then its role
        assignments), with the management groups, the vaults and the referenced keys spread evenly
        among them (never all after every subscription, where a budget would never reach them).
        ``resume``: where the units an earlier run left unfinished stand (``_read_cursor``)."""
        from functools import partial

        from .sweep_secrets import secret_units

        resume = resume or {}

        def unit(key: str, named: list[tuple[str, Callable[..., None]]]) -> _Unit:
            kept = resume.get(key) or {}
            places = [_Place(name, kept.get("at", {}).get(_h(name)), _h(name) in kept.get("done", ()))
                      for name, _ in named]
            return _Unit(key, [partial(fn, place=place) for (_, fn), place in zip(named, places)], places)

        per_sub = [unit(f"subscription:{sub}", [
            *((f"type:{rt.key}", partial(self._sweep_type, tally, compiled, sub, rt, decide, children, sweep_id,
                                         dry_run, deadline)) for rt, decide, children in plan),
            ("roles", partial(self._sweep_roles, tally, compiled, sub, sweep_id, dry_run, deadline))]) for sub in subs]
        others = [unit(f"management-group:{mg}", [("roles", partial(self._sweep_management_group, tally, mg, sweep_id,
                                                                    dry_run, deadline))]) for mg in mgs]
        others += [unit(key, [(key, task)]) for key, task in secret_units(self, tally, compiled, sweep_id, dry_run,
                                                                          deadline)]
        return _interleave(per_sub, others)

    def _read_cursor(self, tally: _Tally) -> dict[str, Any]:
        """The cursor row as the previous run left it (``{}``: none, unreadable, or a run given its
        subscriptions); its ``resume`` checked (``_resume_of``)."""
        read = getattr(self.state, "retry", None)
        if read is None:
            return {}
        try:
            kept = read(SWEEP_CURSOR)
        except StoreError as exc:
            tally.error(f"read where this sweep begins: {exc}; begun at the first subscription")
            return {}
        cursor = dict(kept[0]) if kept and isinstance(kept[0], dict) else {}
        cursor["resume"] = _resume_of(cursor.get("resume"))
        return cursor

    @staticmethod
    def _first(cursor: dict[str, Any], ring: list[_Unit]) -> int:
        """Where in ``ring`` this run begins: the unit the previous run named, else the position it
        had (the unit is gone), else the start."""
        if not ring:
            return 0
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

        def task(i: int, fn: Callable[[], None], place: _Place) -> None:
            if place.done_before:         # an earlier run finished it; the rest of its unit goes on
                place.done = True
                return
            if self._clock() > deadline:
                tally.truncate()
                finished[i] = False
                return
            began[i] = True
            cuts = tally.cuts
            fn()
            if self._clock() > deadline or tally.cuts != cuts:
                finished[i] = False
            else:
                place.done = True

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sweep") as pool:
            # the tenant root's role assignments first (a few, tenant-wide reach): once per run
            futures = [pool.submit(self._sweep_root_roles, tally, compiled, sweep_id, dry_run, deadline)]
            futures += [pool.submit(task, i, fn, place) for i, unit in enumerate(order)
                        for fn, place in zip(unit.tasks, unit.places)]
            for fut in futures:
                fut.result()          # anything but an ArmError (Table Storage down …) ends the sweep
        return began, finished


@dataclass
class _Unit:
    """One unit of a run's ring: done in full by one run where the budget allows; ``key`` names it
    in the cursor (``subscription:<id>``, ``management-group:<mg>``, ``vault:<name>``, ``keys``)."""

    key: str
    tasks: list[Callable[[], None]]
    places: list[_Place]


def _resume_of(raw) -> dict[str, dict]:
    """The row's resume points, unit key -> ``{"done": [task hash …], "at": {task hash: item hash}}``;
    anything malformed is left out (that unit is begun from its start)."""
    out: dict[str, dict] = {}
    if not isinstance(raw, dict):
        return out
    for key, entry in raw.items():
        if not isinstance(key, str) or not isinstance(entry, dict):
            continue
        done, at = entry.get("done", []), entry.get("at", {})
        if not isinstance(done, list) or not isinstance(at, dict):
            continue
        out[key] = {"done": [d for d in done if isinstance(d, str)],
                    "at": {k: v for k, v in at.items() if isinstance(k, str) and isinstance(v, str) and v}}
    return out


def next_resume(order: list[_Unit], began: list[bool], finished: list[bool], kept: dict[str, dict],
                nxt: int, extra: dict[str, dict] | None = None) -> dict[str, dict]:
    """The resume points the next runs need: a unit this run finished needs none; one it did not
    begin keeps what ``kept`` had; one it began and cut short, where each task stands (finished,
    or the last item handled in full). ``extra`` (the Resource Graph listing) comes first; then
    the units from the next run's first, as many as ``RESUME_CHARS`` holds (the others are begun
    from their start: deciding again is safe)."""
    by_unit: dict[str, dict] = {}
    for unit, b, f in zip(order, began, finished):
        if f:
            continue
        if not b:
            if unit.key in kept and any(p.done_before or p.resume for p in unit.places):
                by_unit[unit.key] = kept[unit.key]
            continue
        done = sorted(p.key for p in unit.places if p.done)
        at = {p.key: p.after for p in unit.places if not p.done and p.after}
        if done or at:
            by_unit[unit.key] = {"done": done, "at": at}
    out: dict[str, dict] = {}
    size = 2
    ranked = list(order[nxt:] + order[:nxt]) if order else []
    for key, entry in [*(extra or {}).items(), *((u.key, by_unit[u.key]) for u in ranked if u.key in by_unit)]:
        cost = len(json.dumps({key: entry})) + 1
        if size + cost > RESUME_CHARS:
            continue
        out[key], size = entry, size + cost
    return out


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
