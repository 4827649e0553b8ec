"""Expiry re-enforcement: an exemption that ran out is enforced within minutes, not at the next
change of the resource (which may never come).

This module holds the timer's run (``ExpiryReEnforcer``: the window, the retries, the time budget)
and the listing and deciding of each expired exemption's scope. What a run keeps for the next ones
(the scope row's entries, the resume cursor, the ``done`` marks, how far the window moves) is in
``guardrails.expiry_scopes``; the why of both is told here.

A timer looks for every exemption whose ``expires`` lies in ``(last run, now]`` (first run: the
``GUARDRAILS_EXPIRY_LOOKBACK_MINUTES`` window) and re-decides what it covered, through the same
pipeline (``service.reconcile``, event type ``Guardrails.ExemptionExpired``):

  - scope is a resource id           → that resource (read fresh), and the policy's types below it
                                       (``workspaces/computes`` of a workspace), listed per parent
  - resource group / subscription    → each type of the policy listed there, pure filter first
  - management group / tenant root   → each type in every swept subscription
  - role-assignment policy           → the assignment, or every assignment at or below the scope

Nothing one scope or one resource does holds the window back for good, or every later run would
repeat an ever longer window, re-deciding (and re-notifying) every exemption expired since:

  - a scope that is gone (ARM answers 404: the resource group, workspace or subscription was
    deleted before its exemption ran out) leaves nothing to re-enforce: a WARNING
    (``guardrail_expiry_scope_gone``), and it is done.
  - a scope whose list fails otherwise (403, throttled, ARM down) is a summary error and is kept
    in the timer state (row ``exemption-expiry.scopes``: kind, policy, scope, types, attempts)
    and listed again, first, by each following run until its lists succeed.
  - a resource whose decision came back ``failed`` (ARM refused or throttled the fix) is kept in
    the timer state (``retry``: its id and the attempts so far) and decided again, first, by each
    following run until its decision is no longer ``failed``.

After ``MAX_ATTEMPTS`` runs an id or a scope is dropped with an error log
(``guardrail_expiry_retry_abandoned`` / ``guardrail_expiry_scope_retry_abandoned``): the
reconciling sweep, which decides every covered resource, still finds what it covered. At most
``MAX_RETRY`` ids and ``MAX_RETRY`` scopes are kept; a run that fails more (an outage) keeps its
window as well, so the next run repeats it whole. A scope that does not parse (the policy loader
refuses them) is an error of the run; no later run could list it either.

A run stops at the sweeper's time budget (``GUARDRAILS_SWEEP_MAX_SECONDS``, as the sweep and the
dead-letter replay do: the host's ``functionTimeout`` would otherwise kill it before it saves
anything). The summary says ``truncated``; the exemptions are handled in order of expiry, and the
last-run time moves only up to the last expiry handled in full, so the next run goes on from
there; retries not reached keep their attempts. The last-run time is stored only after the run
finished.

The lists keep the run's deadline as the sweep's do: no page is asked for once it has passed (a
list stopped there with pages left ends the run, never passes for the whole list), and a page
throttled or failing past it is not retried: the run was cut short there, not failed.

A scope the budget cut short (one that covers more than a run can list and decide: a
subscription, a management group) is never simply started again from its first resource: every
run would then re-decide (and re-notify) the same first resources and never reach the rest, nor
any later exemption. It is kept in the scope row like a failed list (reason ``truncated``, one
attempt more) with where it stopped (``resume``: the ordinal of the list it was in, a hash of
that list's identity and a hash of the last id decided there), and the next runs list it again,
first, going on from there: the lists before it are not sent again and the items of that list up
to that id are skipped, so each attempt decides resources the earlier ones did not reach and a
scope larger than one budget completes over several runs. ``resume`` is a cursor, not the set of
ids decided (that would not fit a table property for a large scope: ``MAX_RETRY`` scopes share
one). It relies on the order of the lists (swept subscriptions, then the policy's types; leaf
lists of a parent depth first) and of ARM's items being stable, and errs towards deciding again:
if the list at that ordinal is another one, or the last id is no longer listed (deleted since),
that list is decided whole. Something the order changing skips is left to the reconciling sweep.
A list that fails freezes the cursor where it failed (the lists after it are decided again next
attempt), so the retry of a failed list does not re-decide what came before it either. Each
attempt counts: a scope still unfinished after ``MAX_ATTEMPTS`` runs is given up like any failed
scope (logged; the sweep finds the rest). While it is kept the window stays before its expiry (it
is not handled in full); it moves past it in the run that finishes it or gives it up, and the
later exemptions of the window are reached in that run or the next ones.

The window cannot move past an expiry some exemption of it still waits on, and exemptions often
share one (``expires: 2026-12-31``): a scope finished (or given up) in a run that leaves such a
partner pending, or that is behind a scope still kept, would be listed again from its first
resource by the next run, and a large one would never end. So a run marks each scope of the
window it finished whose expiry the next window still holds ``done`` in the scope row (its kind,
policy, scope and that expiry); the next runs do not list it again, and the mark goes once the
window has moved past that expiry. A mark is compact (a 16-character hash of the key, grouped by
expiry) and the row may span several table properties (``TimerState.retry_chars``): some ten
thousand fit. Marks that still do not are never dropped silently: an ERROR
(``guardrail_expiry_done_marks_dropped``) and an error of the run; those scopes are listed again by
the next run (their owners told again, nothing skipped), the window staying before their expiry.

One run at a time (two instances when the timer's singleton lock is lost, or the CLI): a run takes
the lease ``lease/exemption-expiry`` in the timer state for its budget plus a minute; one that finds
it held decides nothing, changes no state, and says so (``guardrail_expiry_run_skipped``). Before
saving, a run renews its lease; one whose lease ran out and was taken over (a decision that hung
past it) saves nothing (``guardrail_expiry_lease_lost``): the run that took over read the same
state and saves its own window, cursors and marks, which this one's would overwrite.

A dry run (``python -m guardrails sweep --expiry --dry-run``) decides and audits the same window
and retries (``dry_run`` verdicts) without a change, takes no lease and saves nothing.

Another exemption still covering a resource keeps it exempted (the pipeline decides, not this
module). A summary row goes to ``<prefix>Sweeps`` (kind ``expiry``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable, Iterator, Sequence

from .errors import ArmError, ArmThrottled, ArmTransient, InvalidArmId, ResourceNotFound
from .expiry_scopes import (ROW_CHARS, Expired, _attempts, _done_marks, _done_of, _h, _handled, _is_mark,
                            _Progress, expired_between, fit_marks, from_entry, next_last_run, resume_of,
                            scope_entry)
from .logs import emit
from .model.arm_id import ArmId, parse_scope
from .model.resource import ResourceType, lookup_type
from .sweep import Sweeper
from .sweep_summary import EXPIRY_EVENT_TYPE, SweepSummary, _iso, _Tally

TIMER = "exemption-expiry"
SCOPE_TIMER = f"{TIMER}.scopes"   # timer-state row of the scopes whose list failed (its ``retry``)
MAX_ATTEMPTS = 12       # runs a failed re-enforcement is retried (every 5 min by default: one hour)
MAX_RETRY = 50          # failed ids (and, apart, failed scopes) kept: a Table Storage property holds 32K characters
LEASE_MARGIN_SECONDS = 60.0   # the run lease outlasts the time budget by this (a decision under way, the saving)

log = logging.getLogger("guardrails")


class _OutOfTime(Exception):
    """The run reached its time budget (internal: unwinds to ``ExpiryReEnforcer.run``)."""


@dataclass
class _Run:
    """One run: its tally, the ids decided so far (each once), those whose decision failed, and
    its time budget."""

    tally: _Tally
    run_id: str
    clock: Callable[[], float] = lambda: 0.0
    deadline: float = float("inf")
    done: set[str] = field(default_factory=set)
    attempted: set[str] = field(default_factory=set)          # lower-cased ids decided (or being decided)
    failed: dict[str, str] = field(default_factory=dict)     # lower-cased id -> id
    dry_run: bool = False       # decided and audited (``dry_run`` verdicts), nothing changed, no state saved
    progress: _Progress = field(default_factory=lambda: _Progress(None))   # of the scope under way

    @property
    def bounds(self) -> dict:
        """A lister call's keywords: no page past the run's deadline, a list stopped there ends the run."""
        return {"deadline": self.deadline, "on_cut": self.out_of_time}

    def in_time(self) -> None:
        if self.clock() > self.deadline:
            self.tally.truncate()
            raise _OutOfTime()

    def out_of_time(self) -> None:
        """A list stopped at the deadline with pages left (the lister's ``on_cut``)."""
        self.tally.truncate()
        raise _OutOfTime()

    def cut_short(self, exc: ArmError, page_budget: float) -> None:
        """``exc`` ended a list: when it is a throttled or transient answer whose retry the run's
        budget left no time for (less than the lister's own page budget was left), the budget cut
        the run short there (``_OutOfTime``, the scope kept with where it stopped), not a failure."""
        if isinstance(exc, (ArmThrottled, ArmTransient)) and self.deadline - self.clock() < page_budget:
            self.tally.truncate()
            raise _OutOfTime() from None

    def once(self, rid: str) -> bool:
        key = rid.lower()
        if key in self.done:
            return False
        self.done.add(key)
        return True

    def decide(self, rid: str, decide: Callable[[], None]) -> None:
        """Run one decision of ``rid`` (within the time budget) and remember the id when its
        verdict was ``failed`` (the timer decides one resource at a time, so the tally's count
        says so). An ARM error the decision lets out is that resource's failure, never its
        scope's: an error of the run, and the id is decided again next run."""
        self.in_time()
        self.attempted.add(rid.lower())
        before = self.tally.s.verdicts.get("failed", 0)
        try:
            decide()
        except ArmError as exc:
            self.tally.error(f"deciding {rid[:200]}: {exc}")
            emit(log, logging.ERROR, "guardrail_expiry_decision_failed", resource_id=rid, reason=exc.reason,
                 sweep_id=self.run_id)
            self.failed[rid.lower()] = rid
            return
        if self.tally.s.verdicts.get("failed", 0) > before:
            self.failed[rid.lower()] = rid


class ExpiryReEnforcer:
    """Runs on the sweep's paced service, lister and tables."""

    def __init__(self, sweeper: Sweeper, *, lookback: timedelta | None = None) -> None:
        self.sw = sweeper
        self._page_budget = float(getattr(sweeper.lister, "page_budget", 60.0))
        minutes = getattr(sweeper.service.settings, "expiry_lookback_minutes", 60.0)
        self.lookback = lookback if lookback is not None else timedelta(minutes=minutes)

    def run(self, now: datetime | None = None, *, dry_run: bool = False) -> SweepSummary:
        """One run, if no other holds the run lease (``TimerState`` ``lease/exemption-expiry``):
        one that finds it held decides nothing, changes no state, and says so. ``dry_run`` (the
        CLI's ``sweep --expiry --dry-run``): the same window and retries decided and audited
        without a change, and nothing saved (window, retries, scopes): the next run does it all
        for real. It takes no lease, as the sweep's dry runs: it saves nothing to overwrite."""
        sw = self.sw
        start = sw._clock()
        now = now or sw._wall()
        summary = SweepSummary(sweep_id=f"expiry-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", kind="expiry",
                               started=_iso(now), dry_run=dry_run)
        lease = None if dry_run else getattr(sw.state, "take_run_lease", None)
        if lease is not None and not lease(TIMER, summary.sweep_id, sw.max_seconds + LEASE_MARGIN_SECONDS):
            # another run (the singleton lock lost, or the CLI) has the window: both would decide and
            # notify the same exemptions and save their window and cursors over each other's
            _Tally(summary).error("another exemption-expiry run is running; this one did nothing")
            emit(log, logging.WARNING, "guardrail_expiry_run_skipped", reason="lease held by another run",
                 sweep_id=summary.sweep_id)
            return sw._finish(summary, start)
        try:
            return self._run(summary, start, now, leased=lease is not None)
        finally:
            if lease is not None:
                sw.state.release_run_lease(TIMER, summary.sweep_id)

    def _run(self, summary: SweepSummary, start: float, now: datetime, *, leased: bool) -> SweepSummary:
        sw = self.sw
        since = sw.state.last_run(TIMER) or now - self.lookback
        run = _Run(_Tally(summary), summary.sweep_id, clock=sw._clock, deadline=start + sw.max_seconds,
                   dry_run=summary.dry_run)
        tally = run.tally
        reads0 = sw.reads.taken
        compiled = sw.service.policies.get()
        retry = {str(r["id"]).lower(): r for r in sw.state.retry(TIMER) if isinstance(r, dict) and r.get("id")}
        rows = sw.state.retry(SCOPE_TIMER)
        done_before = _done_of(rows)
        scopes_before = {e.key: (e, r) for e, r in ((from_entry(r), r) for r in rows if not _is_mark(r))
                         if e is not None}
        items = expired_between(compiled, since, now)
        tried: set[str] = set()                 # scope keys listed this run (retries, then the window)
        finished: set[str] = set()              # ... and not cut short (decided, gone, or kept as a failed list)
        failed_scopes: dict[str, dict] = {}     # key -> the entry the next run lists again
        truncated = False
        for item in items:                      # finished by an earlier run the window did not move past
            if (_h(item.key), item.exemption.expires.isoformat()) in done_before:
                tried.add(item.key)
                finished.add(item.key)
        try:
            for key, entry in retry.items():     # failed before: decided again, first, on a fresh read
                rid = str(entry["id"])
                if run.once(rid):
                    tally.seen()
                    run.decide(rid, lambda rid=rid: sw._decide(tally, rid, None, run.run_id, run.dry_run,
                                                               EXPIRY_EVENT_TYPE))
            for key, (item, entry) in scopes_before.items():     # lists that failed (or were cut short) before
                run.in_time()
                tried.add(key)
                self._scope(run, compiled, item, _attempts(entry), failed_scopes, resume_of(entry))
                finished.add(key)
            for item in items:
                if item.key not in tried:
                    run.in_time()
                    tried.add(item.key)
                    self._scope(run, compiled, item, 0, failed_scopes)
                    finished.add(item.key)
        except _OutOfTime:
            truncated = True
        # a scope cut short at its last attempt is given up: as far as the window goes, it is done
        finished |= {k for k, e in failed_scopes.items() if e["attempts"] >= MAX_ATTEMPTS}
        handled = _handled(items, finished)     # the expiries of the window handled in full, in order
        if truncated:
            emit(log, logging.WARNING, "guardrail_expiry_truncated", sweep_id=summary.sweep_id,
                 max_seconds=sw.max_seconds, handled=len(handled), pending=len(items) - len(handled))
        summary.subscriptions = sorted({s for s in (_sub(r) for r in run.done) if s})
        summary.reads = sw.reads.taken - reads0
        if run.dry_run:    # nothing saved: the window, retries and scopes stay for the next run, done for real
            return sw._finish(summary, start)
        kept = self._retry_next(retry, run, summary.sweep_id)
        kept_scopes = self._scopes_next(scopes_before, tried, failed_scopes, summary.sweep_id)
        until = None
        if len(kept) <= MAX_RETRY and len(kept_scopes) <= MAX_RETRY:    # else the next run repeats this window
            until = next_last_run(handled, [i.exemption.expires for i in items[len(handled):]], now)
        marks = _done_marks(items, finished, kept_scopes, until or since)
        done, lost = fit_marks(kept_scopes[:MAX_RETRY], marks, getattr(sw.state, "retry_chars", ROW_CHARS))
        if lost:
            # never silently: those scopes are listed (and their owners told) again by the next run;
            # the window stays before their expiry (a mark is only needed there): nothing is skipped
            marked = {m["done"]: len(m["keys"]) for m in done}
            first = next(m["done"] for m in marks if len(m["keys"]) > marked.get(m["done"], 0))
            tally.error(f"{lost} finished scopes could not be marked done; the next run lists them again")
            emit(log, logging.ERROR, "guardrail_expiry_done_marks_dropped", sweep_id=summary.sweep_id, dropped=lost,
                 marked=sum(marked.values()), expires=first, window_until=_iso(until or since))
        if leased and not getattr(sw.state, "renew_run_lease", lambda *a: True)(TIMER, summary.sweep_id,
                                                                               LEASE_MARGIN_SECONDS):
            # the lease ran out and another run took over: it read the state this run read, and
            # saves its own window and cursors; saving this run's over them would undo them
            tally.error("the run lease ran out and another run took over: this run's state is not saved")
            emit(log, logging.ERROR, "guardrail_expiry_lease_lost", sweep_id=summary.sweep_id)
            return sw._finish(summary, start)
        result = sw._finish(summary, start)
        if kept or retry:
            sw.state.set_retry(TIMER, kept[:MAX_RETRY])
        if kept_scopes or done or scopes_before or done_before:
            sw.state.set_retry(SCOPE_TIMER, kept_scopes[:MAX_RETRY] + done)
        if until is not None:
            sw.state.set_last_run(TIMER, until)
        return result

    # ---------------------------------------------------------------------------------
    def _scope(self, run: _Run, compiled, item: Expired, attempts: int, failed: dict[str, dict],
               resume: dict | None = None) -> None:
        """List and decide what one expired exemption covered (from ``resume``, where an earlier
        attempt stopped, if any). A scope that is gone is done; one whose lists failed otherwise,
        or that the budget cut short, goes to ``failed`` with its attempts so far plus this one
        (cut short: with where it stopped, so the next attempt goes on from there)."""
        try:
            scope = parse_scope(item.exemption.scope)
        except InvalidArmId as exc:        # never lists: nothing a later run could do better
            run.tally.error(f"{item.policy}: exemption scope {item.exemption.scope[:80]!r}: {exc}")
            return
        run.progress = _Progress(resume)
        try:
            if item.kind == "role":
                self._roles(run, scope)
            else:
                self._resources(run, compiled, item, scope)
        except _OutOfTime:
            # a retried scope or one of the window: one attempt, kept with where it stopped (never
            # nothing kept: the window would stay and every run would redo the same first resources)
            failed[item.key] = scope_entry(item, attempts + 1, "truncated", run.progress.at)
            raise
        except ResourceNotFound as exc:
            _gone(str(scope), item.policy, exc)
        except ArmError as exc:
            try:
                run.cut_short(exc, self._page_budget)
            except _OutOfTime:
                failed[item.key] = scope_entry(item, attempts + 1, "truncated", run.progress.at)
                raise
            run.tally.error(f"{item.policy}: re-enforcing {scope}: {exc}")
            # where it got before its first failed list: the next attempt goes on from there
            failed[item.key] = scope_entry(item, attempts + 1, exc.reason, run.progress.at)

    def _listed(self, run: _Run, listing: Iterable[dict], what: str, failures: list[ArmError]) -> Iterator[dict]:
        """The items of one list, each within the time budget. A list that is gone (404) ends
        quietly for this scope (logged); one the budget cut short (no page is asked for past the
        run's deadline: ``on_cut``; a throttled page's retry would pass it) ends the run there; any
        other failure ends this list and is remembered in ``failures``: the rest of the scope goes
        on, then the scope is listed again next run."""
        try:
            for body in listing:
                run.in_time()
                if isinstance(body, dict) and isinstance(body.get("id"), str):
                    yield body
        except ResourceNotFound as exc:
            _gone(what, None, exc)
        except ArmError as exc:
            run.cut_short(exc, self._page_budget)
            failures.append(exc)
            run.progress.freeze()          # what this list did not give is listed again next attempt

    def _decisions(self, run: _Run, key: str, listing: Callable[[], Iterable[dict]], what: str,
                   failures: list[ArmError]) -> Iterator[dict]:
        """The items of one list whose items are decided, less those an earlier attempt of this
        scope decided (``_Progress``); ``listing`` is called only if the list is needed at all."""
        def listed() -> Iterator[dict]:
            yield from self._listed(run, listing(), what, failures)
        return run.progress.items(key, listed())

    @staticmethod
    def _retry_next(before: dict[str, dict], run: _Run, run_id: str) -> list[dict]:
        """The ids the next run decides first: those that failed in this run, with their attempts,
        then those the run did not reach (their attempts unchanged)."""
        kept: list[dict] = []
        for key, rid in run.failed.items():
            attempts = _attempts(before.get(key) or {}) + 1
            if attempts >= MAX_ATTEMPTS:
                emit(log, logging.ERROR, "guardrail_expiry_retry_abandoned", resource_id=rid, attempts=attempts,
                     sweep_id=run_id)
                continue
            kept.append({"id": rid, "attempts": attempts})
        kept += [{"id": str(e["id"]), "attempts": _attempts(e)} for key, e in before.items()
                 if key not in run.attempted]
        if kept:
            emit(log, logging.WARNING, "guardrail_expiry_retry", count=len(kept), kept=min(len(kept), MAX_RETRY),
                 sweep_id=run_id)
        return kept

    @staticmethod
    def _scopes_next(before: dict[str, tuple[Expired, dict]], tried: set[str], failed: dict[str, dict],
                     run_id: str) -> list[dict]:
        """The scopes the next run lists first: those whose lists failed (or a retry the budget cut
        short), with their attempts, then the kept ones this run did not reach."""
        kept: list[dict] = []
        for entry in failed.values():
            if entry["attempts"] >= MAX_ATTEMPTS:
                emit(log, logging.ERROR, "guardrail_expiry_scope_retry_abandoned", scope=entry["scope"],
                     policy=entry["policy"], attempts=entry["attempts"], reason=entry["reason"], sweep_id=run_id)
                continue
            kept.append(entry)
        kept += [entry for key, (_, entry) in before.items() if key not in tried]
        if kept:
            emit(log, logging.WARNING, "guardrail_expiry_scope_retry", count=len(kept),
                 kept=min(len(kept), MAX_RETRY), sweep_id=run_id)
        return kept

    def _resources(self, run: _Run, compiled, item: Expired, scope: ArmId) -> None:
        types = [t for t in (lookup_type(n) for n in item.resource_types) if t is not None]
        failures: list[ArmError] = []
        if scope.provider is not None and scope.subscription_id is not None:      # one resource
            rtype = lookup_type(scope.resource_type)
            for _ in run.progress.items(str(scope), [{"id": str(scope)}] if rtype in types else []):
                if run.once(str(scope)):
                    run.tally.seen()
                    run.decide(str(scope), lambda: self.sw._decide(run.tally, str(scope), None, run.run_id, run.dry_run,
                                                                   EXPIRY_EVENT_TYPE))
            for child in types:     # a parent resource: the exemption also covered the policy's types below it
                if child.name.lower().startswith(scope.resource_type.lower() + "/"):
                    self._descendants(run, compiled, str(scope), scope.resource_type, child, failures)
        else:
            if scope.subscription_id is not None:
                subs, rg = [scope.subscription_id], scope.resource_group
            else:                                     # management group or tenant root: every swept subscription
                subs, rg = list(self.sw.subscriptions) or self.sw.lister.list_subscriptions(
                    deadline=run.deadline, on_cut=run.out_of_time), None
            for sub in subs:
                for rtype in types:
                    where = f"/subscriptions/{sub}" + (f"/resourceGroups/{rg}" if rg else "")
                    for body in self._decisions(
                            run, f"{rtype.name}|{where}",
                            lambda sub=sub, rtype=rtype: self.sw.lister.list_type(sub, rtype, resource_group=rg,
                                                                                  **run.bounds),
                            f"{rtype.name} in {where}", failures):
                        if run.once(body["id"]):
                            run.decide(body["id"], lambda body=body, rtype=rtype: self.sw.decide_listed(
                                run.tally, compiled, rtype, body, run.run_id, run.dry_run, EXPIRY_EVENT_TYPE))
        if failures:
            raise failures[0]

    def _descendants(self, run: _Run, compiled, parent_id: str, parent_type: str, rtype: ResourceType,
                     failures: list[ArmError]) -> None:
        """Every ``rtype`` below one parent resource (``…/workspaces/computes`` of a workspace),
        each level listed per parent as the sweep does; a level missing from the catalogue ends it."""
        below = rtype.name.split("/")[parent_type.count("/") + 1:]
        if len(below) == 1:
            for body in self._decisions(run, f"{rtype.name}|{parent_id}",
                                        lambda: self.sw.lister.list_children(parent_id, rtype, **run.bounds),
                                        f"{rtype.name} of {parent_id}", failures):
                if run.once(body["id"]):
                    run.decide(body["id"], lambda body=body: self.sw.decide_listed(
                        run.tally, compiled, rtype, body, run.run_id, run.dry_run, EXPIRY_EVENT_TYPE))
            return
        level = lookup_type(f"{parent_type}/{below[0]}")
        if level is None:
            return
        for body in self._listed(run, self.sw.lister.list_children(parent_id, level, **run.bounds),
                                 f"{level.name} of {parent_id}", failures):
            self._descendants(run, compiled, body["id"], level.name, rtype, failures)

    def _roles(self, run: _Run, scope: ArmId) -> None:
        if scope.resource_type.lower() == "microsoft.authorization/roleassignments":
            ids: Sequence[str] = [str(scope)]
        else:
            ids = [a["id"] for a in self.sw.lister.list_role_assignments(str(scope), at_scope=False, **run.bounds)
                   if isinstance(a.get("id"), str) and _within(scope, (a.get("properties") or {}).get("scope"))]
        for rid in (body["id"] for body in run.progress.items(str(scope), ({"id": i} for i in ids))):
            if run.once(rid):
                run.tally.seen()
                run.decide(rid, lambda rid=rid: self.sw._decide(run.tally, rid, None, run.run_id, run.dry_run,
                                                                EXPIRY_EVENT_TYPE))


def _gone(what: str, policy: str | None, exc: ArmError) -> None:
    """A scope (or a list under it) ARM no longer has: nothing left there to re-enforce."""
    emit(log, logging.WARNING, "guardrail_expiry_scope_gone", scope=what[:300], policy=policy, status=exc.status,
         reason=exc.reason)


def _sub(resource_id: str) -> str | None:
    parts = resource_id.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "subscriptions" else None


def _within(scope: ArmId, assignment_scope) -> bool:
    """The assignment's scope is ``scope`` or below it (the tenant root ``/`` never is)."""
    try:
        return scope.contains(parse_scope(str(assignment_scope)))
    except InvalidArmId:
        return False
