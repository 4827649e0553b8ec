"""Reconciling sweep: what Event Grid dropped or dead-lettered is found and fixed on a timer.

    for each subscription × covered type (a few at a time):
        list (full bodies, paged by nextLink, each page a read token of the subscription's bucket)
          ─▶ pure filter (``compiled.violations``: the same predicates as the event path)
          ─▶ violating ones only: ``service.reconcile`` (the event path's decision and fix on the
             listed body: no second read; writes and confirm reads paced too)
    Azure ML online endpoints per workspace (when a model-registry policy is in force): each
        decided by the ML lifecycle guardrail on live state (no cheap filter for them)
    role assignments made in each subscription (at it, its resource groups, its resources), when a
        role policy is in force there: one list ─▶ the pure role evaluation on the listed body ─▶
        only those with findings through the role guardrail (a fresh read, the decision, the removal)
    role assignments at each configured management group and at every group below it (no
        subscription topic delivers them): its descendants listed ─▶ per group, list ``atScope()``
        ─▶ each assignment AT that group through the role guardrail (``sweep_groups``)
    role assignments at the tenant root ``/`` (no topic delivers them either), once per run, when
        a role policy without a subscription selector is in force: list ``atScope()`` at ``/`` ─▶
        each assignment AT ``/`` judged as a subscription's (``sweep_roles.sweep_root_roles``);
        an identity that may not read there is a WARNING each run (``guardrail_sweep_root_unreadable``)
    secrets of the vaults secrets policies name (every governed vault for a policy without a vault
        selector): one property list per vault (no values); referenced
        keys: one read each ─▶ within Key Vault's 30-day near-expiry window: rotation; breaking the
        expiry hygiene: expiry set (``sweep_secrets``)
    event coverage (``GUARDRAILS_FUNCTION_APP_ID`` set) of each subscription, governed vault and
        governed ML workspace: system topics and event subscriptions ─▶ ``coverage.assess`` ─▶ a row
        while its events do not all reach us
    ─▶ one summary row in ``<prefix>Sweeps``

One run at a time: a run takes the run lease ``lease/reconciling_sweep`` in ``TimerState`` (sized
to the budget and a margin: a run stops itself within its budget), and a run that finds it held
(the host's timer singleton lock lost, the CLI beside the timer) does nothing but say so (a
summary row whose error says it, WARNING ``guardrail_sweep_run_skipped``). One whose lease ran out
and was taken over keeps neither its cursor nor its start (ERROR ``guardrail_sweep_lease_lost``).
Dry runs take none.

Budget and cursor: every list, page and decision is begun only before the deadline
(``GUARDRAILS_SWEEP_MAX_SECONDS``, less the coverage check's share); the lister is handed the
deadline, so no page is requested and no ``Retry-After`` waited out past it. The work is a ring of
units, each done in full by one run where the budget allows: a subscription (its types' lists,
then its role assignments), a management group, a vault's secrets, the referenced keys; vaults
and management groups spread evenly among the subscriptions. A run begins at the cursor (row
``timer/reconciling_sweep.cursor``: the unit's key, and its position should the unit be gone)
and goes round the ring until the deadline; the next run begins at the first unit this run did
not finish (one it began but cut short goes on where it stopped: the row's ``resume``, see
``sweep_ring``), or, when even the first unit did not fit in the budget, at the first unit this
run never began. With ``GUARDRAILS_SWEEP_LISTER=graph`` the Resource Graph listing comes first but
takes at most ``GRAPH_SHARE`` of what is left of the budget, going on next run where it stopped. So a run covers what one
budget lists and decides (the summary's ``units`` / ``units_done``), and an estate of N units of
which a run finishes about k is covered within ceil(N / k) runs, every unit once per round. The
tenant root's role assignments and the stale fixes' confirmations come first in every run. A
run given its subscriptions (the CLI's ``--subscription``) neither reads nor moves the cursor;
a dry run reads it and does not move it.

Audit: every non-compliant decision gets its own audit row (``event_type`` ``Guardrails.Sweep``,
``correlation_id`` = the sweep id), so a fix made by a sweep reads like one made on an event.
Compliant resources are only counted in the summary row (a 5,000-resource estate would otherwise
write 5,000 rows a run saying nothing happened), except one for which a sweep left a finding open
(``sweep_notices``: a violation, a failed fix; fixed by hand since, its write event lost): it is
decided, so a ``compliant`` row closes it (its latest audited decision, the report's). A
subscription's and the tenant root's role assignments get the pure role evaluation first, so only
those with a finding get a row; a management group's (few; a configured group's and those of
every group below it, each group once a run) always go through the role guardrail, so each of
those gets a row.

Pacing: ARM reads 250 burst / 25 per s per subscription per principal. The sweep has its own
service instance whose ARM and authorization gateways take tokens from ``RateLimiter`` buckets;
the event path keeps its own gateways and is never held up by a sweep.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from .errors import ArmError, ArmThrottled, ArmTransient, InvalidArmId, StoreError
from .logs import emit
from .model.resource import CATALOG, ResourceSnapshot, ResourceType
from .sweep_groups import GroupClaims, sweep_management_group
from .sweep_plan import _with_children, covered_types, list_plan, management_group_scope
from .sweep_ring import GRAPH_UNIT, SWEEP_CURSOR, SweepRing, _next_start, _Place, next_resume
# the summary and its tally live in ``sweep_summary`` (the expiry timer and replay use them too)
from .sweep_summary import SWEEP_EVENT_TYPE, SweepSummary, _iso, _Tally
from .pending_confirm import confirm_stale_fixes
from .sweep_cli import add_parser, cli_main     # python -m guardrails sweep (``cli`` finds it here)

log = logging.getLogger("guardrails")

SWEEP_TIMER = "reconciling_sweep"     # TimerState row: when the last non-dry run began; its run lease
LEASE_MARGIN_SECONDS = 60.0           # the run lease outlasts the budget by this (decisions begun before the end)
GRAPH_SHARE = 0.5                     # of what is left of the budget: the Resource Graph listing's most, the ring has the rest


class Sweeper(SweepRing):
    """The sweep over one deployment. Built by ``bootstrap.build_sweeper``: ``service`` is a
    GuardrailsService whose gateways are paced by ``reads`` (and a write limiter)."""

    def __init__(self, service, lister, store, state, *, reads, concurrency: int = 4,
                 max_seconds: float = 540.0, renotify_hours: float = 24.0, subscriptions: Iterable[str] = (),
                 management_groups: Iterable[str] = (), clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), graph=None,
                 function_app_id: str | None = None, governed_vaults: Iterable[str] = (),
                 governed_workspaces: Iterable[str] = ()) -> None:
        self.service, self.lister, self.store, self.state, self.reads = service, lister, store, state, reads
        # this deployment's function app, where every governed source's topic must deliver
        # (guardrails.coverage); None: event coverage is not checked
        self.function_app_id = function_app_id
        self.governed_vaults, self.governed_workspaces = tuple(governed_vaults), tuple(governed_workspaces)
        self.graph = graph          # adapters.graph.ResourceGraphLister (GUARDRAILS_SWEEP_LISTER=graph) or None
        self.concurrency = max(1, int(concurrency))
        self.max_seconds = max_seconds
        self.remind_after = timedelta(hours=renotify_hours)
        self._gate = None        # this run's sweep_notices.NoticeGate (not on dry runs)
        self.group_claims = GroupClaims()
        self.subscriptions = tuple(subscriptions)
        self.management_groups = tuple(management_groups)
        self._clock, self._wall = clock, wall_clock

    # ---------------------------------------------------------------------------------
    def run(self, *, subscriptions: Iterable[str] = (), management_groups: Iterable[str] | None = None,
            dry_run: bool = False) -> SweepSummary:
        start, started = self._clock(), self._wall()
        summary = SweepSummary(sweep_id=f"sweep-{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", kind="sweep",
                               started=_iso(started), dry_run=dry_run)
        tally = _Tally(summary)
        lease = None if dry_run else getattr(self.state, "take_run_lease", None)
        held = False
        if lease is not None:
            try:
                held = lease(SWEEP_TIMER, summary.sweep_id, self.max_seconds + LEASE_MARGIN_SECONDS)
            except StoreError as exc:     # swept unguarded rather than not at all: drift stays otherwise
                tally.error(f"take the sweep's run lease: {exc}; swept without it")
            else:
                if not held:
                    # another sweep (the timer on another instance, or the CLI) is running: both would
                    # fix and notify the same drift
                    tally.error("another sweep is running (it holds the run lease); this one did nothing")
                    emit(log, logging.WARNING, "guardrail_sweep_run_skipped", reason="lease held by another run")
                    return self._finish(summary, start)
        try:
            return self._run(summary, tally, start, started, list(subscriptions), management_groups, dry_run, held)
        finally:
            if held:
                self.state.release_run_lease(SWEEP_TIMER, summary.sweep_id)

    def _run(self, summary: SweepSummary, tally: _Tally, start: float, started: datetime, given: list[str],
             management_groups: Iterable[str] | None, dry_run: bool, held: bool = False) -> SweepSummary:
        reads0, wait0, pages0 = self.reads.taken, self.reads.waited, self.lister.pages
        reserve = 0.0
        if self.function_app_id:      # the coverage check keeps its share of the budget
            from .coverage_check import coverage_reserve
            reserve = coverage_reserve(self.max_seconds)
        deadline = start + self.max_seconds - reserve
        subs = given or list(self.subscriptions)
        if not subs:
            try:
                subs = self.lister.list_subscriptions(deadline=deadline)
            except ArmError as exc:
                tally.error(f"list subscriptions: {exc}")
        summary.subscriptions = subs
        mgs = list(self.management_groups if management_groups is None else management_groups)
        summary.management_groups = mgs
        self._gate = None
        self.group_claims = GroupClaims()     # each management group judged once this run (``sweep_groups``)
        if not dry_run:
            from .sweep_notices import NoticeGate
            try:
                previous = self.state.last_run(SWEEP_TIMER)
            except StoreError as exc:        # every finding is news this run: louder, never silent
                previous = None
                tally.error(f"read the previous sweep's start: {exc}")
            self._gate = NoticeGate(self.state, previous_start=previous, remind_after=self.remind_after,
                                    now=self._wall, settled_since=getattr(self.service.audit, "settled_since", None))
        compiled = self.service.policies.get()
        plan = list_plan(covered_types(compiled))
        ml_children = self._ml_children(compiled)
        if ml_children:                      # Azure ML endpoints and model versions, per workspace / registry
            plan = _with_children(plan, ml_children)
        graph_pages0 = self.graph.pages if self.graph is not None else 0
        if not dry_run:
            self._confirm_stale_fixes(tally, summary.sweep_id, deadline)
        cursor = self._read_cursor(tally) if not given else {}
        resume = cursor.get("resume") or {}
        graph_place = None
        if self.graph is not None and subs:
            plan, graph_place = self._sweep_graph(tally, compiled, subs, plan, summary.sweep_id, dry_run, deadline,
                                                  resume)
        ring = self._units(tally, compiled, subs, mgs, plan, summary.sweep_id, dry_run, deadline, resume)
        first = self._first(cursor, ring) if not given else 0
        order = ring[first:] + ring[:first]
        began, finished = self._sweep_units(tally, compiled, order, summary.sweep_id, dry_run, deadline)
        nxt = _next_start(began, finished)
        graph_at = ({GRAPH_UNIT: {"done": [], "at": {graph_place.key: graph_place.after}}}
                    if graph_place is not None and not graph_place.done and graph_place.after else {})
        kept_resume = next_resume(order, began, finished, resume, nxt, graph_at)
        summary.units, summary.units_done = len(order), sum(finished)
        summary.began_with = order[0].key if order else ""
        summary.next_begins_with = order[nxt].key if order else ""
        keep = not held or self._lease_still_held(tally, summary.sweep_id)
        if keep and order and not dry_run and not given:
            try:
                row = {"next": order[nxt].key, "position": (first + nxt) % len(ring)}
                if kept_resume:          # where the units left unfinished stand (absent: all from their start)
                    row["resume"] = kept_resume
                self.state.set_retry(SWEEP_CURSOR, [row])
            except StoreError as exc:
                tally.error(f"keep where the next sweep begins: {exc}")
        if self.function_app_id:
            self._check_coverage(tally, summary, subs, deadline, reserve, dry_run=dry_run)
        summary.reads = self.reads.taken - reads0
        summary.throttled_wait_s = round(self.reads.waited - wait0, 3)
        summary.pages = self.lister.pages - pages0 + (self.graph.pages - graph_pages0 if self.graph is not None else 0)
        if self._gate is not None:
            summary.repeats_not_notified = self._gate.repeats
        if self._gate is not None and keep:
            self._gate.prune()    # a state unseen for a week is stale even when this run was cut short
            try:     # the next run's "seen on the previous run" starts here
                self.state.set_last_run(SWEEP_TIMER, started)
            except StoreError as exc:
                tally.error(f"keep this sweep's start: {exc}")
        return self._finish(summary, start)

    def _lease_still_held(self, tally: _Tally, holder: str) -> bool:
        """Before this run saves where the next begins and when it began: its run lease renewed
        (for the saving), False when it ran out and another run took it over (that run's view
        is the one to keep). A state that cannot say is taken as held."""
        renew = getattr(self.state, "renew_run_lease", None)
        if renew is None:
            return True
        try:
            if renew(SWEEP_TIMER, holder, LEASE_MARGIN_SECONDS):
                return True
        except StoreError:
            return True
        tally.error("this sweep's run lease ran out and another run took it over: its cursor and start not kept")
        emit(log, logging.ERROR, "guardrail_sweep_lease_lost", sweep_id=holder)
        return False

    def _finish(self, summary: SweepSummary, start: float) -> SweepSummary:
        summary.finished = _iso(self._wall())
        summary.duration_s = round(self._clock() - start, 3)
        self.store.write(summary.to_dict())
        fields = {k: v for k, v in summary.to_dict().items() if k not in ("verdicts", "errors", "coverage",
                                                                         "subscriptions", "management_groups")}
        emit(log, logging.WARNING if summary.failed or summary.uncovered else logging.INFO, "guardrail_sweep_finished",
             subscriptions=len(summary.subscriptions), management_groups=len(summary.management_groups), **fields)
        return summary

    def _sweep_type(self, tally: _Tally, compiled, sub: str, rtype: ResourceType, decide: bool,
                    children: tuple[ResourceType, ...], sweep_id: str, dry_run: bool, deadline: float, *,
                    place: _Place | None = None) -> None:
        """List one top-level type in one subscription, decide the violating ones (when a policy
        covers the type), and list the covered child types of each (ARM lists them per parent).
        ``place``: where an earlier run that was cut short left this list (its items up to there
        are skipped), moved past each item handled in full."""
        if self._clock() > deadline:     # no list begun past the deadline
            tally.truncate()
            return
        place = place or _Place(f"type:{rtype.key}")
        kids = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sweep-child") if children else None
        handled: list[tuple[str, list]] = []
        try:
            for body in place.items(self.lister.list_type(sub, rtype, deadline=deadline)):
                if self._clock() > deadline:
                    break
                if decide:
                    self.decide_listed(tally, compiled, rtype, body, sweep_id, dry_run)
                futures = [] if kids is None else [       # one list per parent: in parallel, or latency would bound it
                    kids.submit(self._sweep_children, tally, compiled, sub, body["id"], child, sweep_id, dry_run,
                                deadline) for child in children]
                handled.append((body["id"], futures))
        except ArmError as exc:    # one type or subscription unreadable: the rest of the sweep goes on
            self._list_failed(tally, sub, rtype.name, exc, deadline)
        finally:
            if kids is not None:
                kids.shutdown(wait=True)
        _advance(place, handled)   # anything but an ArmError (Table Storage down …) ends the sweep
        if self._clock() > deadline:     # the lister stops at the deadline too: cut short either way
            tally.truncate()

    def _sweep_graph(self, tally: _Tally, compiled, subs: list[str], plan, sweep_id: str, dry_run: bool,
                     deadline: float, resume: dict[str, dict] | None = None) -> tuple[list, _Place]:
        """The top-level types of ``plan`` through Resource Graph, every subscription at once: a
        row the pure filter finds violating is decided on a fresh ARM read (the index can lag ARM),
        the child types of each row are listed through ARM under it. The listing takes at most
        ``GRAPH_SHARE`` of what is left of the budget (the ring's units, a subscription's role
        assignments among them, always have their turn) and goes on where the last run that was
        cut short left it (``resume[GRAPH_UNIT]``, for this query: these types and subscriptions).
        Returns what is still to be listed through ARM (the whole plan when Resource Graph did not
        answer its first page: not registered, not permitted, unavailable in this cloud; else
        nothing) and the listing's place (``done`` when it was listed to its end)."""
        name = "|".join([GRAPH_UNIT, ",".join(sorted(top.key for top, _, _ in plan)),
                         ",".join(sorted(s.lower() for s in subs))])
        place = _Place(name, ((resume or {}).get(GRAPH_UNIT) or {}).get("at", {}).get(_Place(name).key))
        now = self._clock()
        until = min(deadline, now + GRAPH_SHARE * max(0.0, deadline - now))
        by_type = {top.key: (top, decide, children) for top, decide, children in plan}
        pages0, failed = self.graph.pages, False
        handled: list[tuple[str, list]] = []
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sweep-child") as kids:
            try:
                for body in place.items(self.graph.list_types(subs, [top for top, _, _ in plan], deadline=until)):
                    if self._clock() > until:
                        break
                    entry = by_type.get(str(body.get("type", "")).lower())
                    rid = body["id"]
                    futures = []
                    if entry is not None:
                        top, decide, children = entry
                        if decide:
                            self.decide_listed(tally, compiled, top, body, sweep_id, dry_run, fresh=True)
                        futures = [kids.submit(self._sweep_children, tally, compiled, rid.split("/")[2], rid, child,
                                               sweep_id, dry_run, until) for child in children]
                    handled.append((rid, futures))
            except ArmError as exc:
                if self.graph.pages == pages0:        # not even its first page
                    tally.error(f"Resource Graph did not answer ({exc}); listed through ARM instead")
                    emit(log, logging.WARNING, "guardrail_sweep_graph_unavailable", reason=exc.reason)
                    return plan, place
                failed = True
                if not self.cut_short(tally, exc, until, what="Resource Graph query"):
                    tally.error(f"Resource Graph query failed part way: {exc}")
        _advance(place, handled)
        if self._clock() > until:
            tally.truncate()         # the listing stopped at its share of the budget: the next run goes on
        elif not failed:
            place.done = True
        return [], place

    def _ml_children(self, compiled) -> tuple[ResourceType, ...]:
        """The ML lifecycle guardrail's listable types when it runs and a model-registry policy is
        in force: online endpoints (each decided with its deployments and their model versions)."""
        ml = getattr(self.service, "ml", None)
        if ml is None or not [p for p in compiled.model_registry_policies if p.mode != "off"]:
            return ()
        return ml.sweep_types()

    def _sweep_children(self, tally: _Tally, compiled, sub: str, parent_id: str, child: ResourceType, sweep_id: str,
                        dry_run: bool, deadline: float = float("inf")) -> bool:
        """One child type listed under one parent, its items decided (a model container's versions
        listed under it). False when the deadline cut it short (its parent is not handled in
        full: a run that resumes the parent's list begins at that parent again)."""
        ml = self.service.ml if child.key not in CATALOG else None    # the ML guardrail decides on live state
        expand = ml.sweep_expand(child) if ml is not None else None   # a model container: list its versions
        policies = [p for p in compiled.model_registry_policies if p.mode != "off"] if ml is not None else []
        if self._clock() > deadline:
            tally.truncate()
            return False
        try:
            for item in self.lister.list_children(parent_id, child, deadline=deadline):
                if self._clock() > deadline:      # a parent with thousands of children ends in time too
                    tally.truncate()
                    return False
                if not isinstance(item.get("id"), str):
                    continue
                if expand is not None:
                    if not self._sweep_children(tally, compiled, sub, item["id"], expand, sweep_id, dry_run, deadline):
                        return False
                elif ml is None:
                    self.decide_listed(tally, compiled, child, item, sweep_id, dry_run)
                elif ml.sweep_needs_decision(item, policies):
                    tally.seen()
                    self._decide(tally, item["id"], None, sweep_id, dry_run, SWEEP_EVENT_TYPE)
                else:
                    self._compliant(tally, item["id"], sweep_id, dry_run, SWEEP_EVENT_TYPE)
        except ArmError as exc:      # failed (an error of the run) or cut short (not handled in full)
            return not self._list_failed(tally, sub, f"{child.name} of {parent_id}", exc, deadline)
        if self._clock() > deadline:
            tally.truncate()
            return False
        return True

    def _list_failed(self, tally: _Tally, sub: str, what: str, exc: ArmError, deadline: float | None = None) -> bool:
        """Say a list failed (an error of the run); True when it was cut short instead (``cut_short``)."""
        if self.cut_short(tally, exc, deadline, what=f"{what} in {sub}"):
            return True
        tally.error(f"list {what} in {sub}: {exc}")
        emit(log, logging.ERROR, "guardrail_sweep_list_failed", subscription_id=sub, resource_type=what,
             reason=exc.reason)
        return False

    def cut_short(self, tally: _Tally, exc: ArmError, deadline: float | None, *, what: str) -> bool:
        """Whether ``exc`` is a throttled or transient answer whose retry the run's budget, not the
        lister's own page budget, left no time for (``Retry-After`` past the deadline): the run was
        cut short there (``truncated``, a WARNING, the unit not finished), as when its deadline
        passes between two pages. Any other failure is an error of the run."""
        if deadline is None or not isinstance(exc, (ArmThrottled, ArmTransient)):
            return False
        if deadline - self._clock() >= getattr(self.lister, "page_budget", 60.0):
            return False                  # the lister's own budget bounded the retry: a failure
        tally.truncate()
        emit(log, logging.WARNING, "guardrail_sweep_cut_short", what=what[:300], reason=exc.reason,
             detail="a throttled or failing list could not be retried within the run's budget")
        return True

    def decide_listed(self, tally: _Tally, compiled, rtype: ResourceType, body: dict, run_id: str, dry_run: bool,
                      event_type: str = SWEEP_EVENT_TYPE, *, fresh: bool = False) -> None:
        """Decide a listed body when the pure filter finds it violating (else only count it). A fix
        is decided on a new read (the page may be minutes old: the event path may have fixed the
        resource since, and a fix on the listed body would be sent and audited twice, taking a
        second breaker permit and flip-flop count); a dry run on the body itself, unless ``fresh``
        (an indexed copy that may lag ARM). One read per violating resource, within the budget."""
        rid = body.get("id")
        if not isinstance(rid, str):
            return
        found = compiled.violations(body, rtype.name, None, None, rid)
        shadow = compiled.shadow
        if not found and not (shadow is not None and not dry_run and shadow.violations(body, rtype.name, None, None, rid)):
            self._compliant(tally, rid, run_id, dry_run, event_type)
            return
        tally.seen()
        snapshot = None if fresh or not dry_run else ResourceSnapshot(
            resource_id=rid, type=str(body.get("type") or rtype.name), body=body,
            etag=body.get("etag") if isinstance(body.get("etag"), str) else None)
        self._decide(tally, rid, snapshot, run_id, dry_run, event_type)

    def _compliant(self, tally: _Tally, rid: str, run_id: str, dry_run: bool, event_type: str) -> None:
        """A listed resource the filter finds compliant is only counted, unless this run's notice
        gate holds a finding a sweep left open for it (a violation, a failed fix): fixed by hand
        since, its write event lost, its latest audited decision (the compliance report's) would
        stay open for good. It is decided then, on a fresh read: a ``compliant`` row closes it."""
        gate = self._gate if event_type == SWEEP_EVENT_TYPE and not dry_run else None
        if gate is None or not gate.holds(rid):
            tally.seen(compliant=1)
            return
        tally.seen()
        self._decide(tally, rid, None, run_id, dry_run, event_type)

    def _decide(self, tally: _Tally, rid: str, snapshot: ResourceSnapshot | None, run_id: str, dry_run: bool,
                event_type: str) -> None:
        try:
            gate = self._gate if event_type == SWEEP_EVENT_TYPE and not dry_run else None
            row = self.service.reconcile(rid, snapshot, sweep_id=run_id, remediate=not dry_run, event_type=event_type,
                                         notice_gate=gate)
        except InvalidArmId as exc:
            tally.decided("invalid")
            emit(log, logging.WARNING, "guardrail_sweep_bad_id", reason=exc.reason)
            return
        tally.decided(row.verdict)

    def _check_coverage(self, tally: _Tally, summary: SweepSummary, subs: list[str], deadline: float,
                        reserve: float = 0.0, *, dry_run: bool = False) -> None:
        from .coverage_check import check_in_sweep
        check_in_sweep(self, tally, summary, subs, deadline, reserve=reserve, dry_run=dry_run)

    def _sweep_roles(self, tally: _Tally, compiled, sub: str, sweep_id: str, dry_run: bool, deadline: float, *,
                     place: _Place | None = None) -> None:     # one list, judged whole: no place within it
        from .sweep_roles import sweep_roles
        sweep_roles(self, tally, compiled, sub, sweep_id, dry_run, deadline)

    def _sweep_root_roles(self, tally: _Tally, compiled, sweep_id: str, dry_run: bool, deadline: float) -> None:
        from .sweep_roles import sweep_root_roles
        sweep_root_roles(self, tally, compiled, sweep_id, dry_run, deadline)

    def _confirm_stale_fixes(self, tally: _Tally, sweep_id: str, deadline: float) -> None:
        confirm_stale_fixes(self, tally, sweep_id, deadline)

    def _sweep_management_group(self, tally: _Tally, mg: str, sweep_id: str, dry_run: bool, deadline: float, *,
                                place: _Place | None = None) -> None:
        sweep_management_group(self, tally, mg, sweep_id, dry_run, deadline, place=place)


def _advance(place: _Place, handled: list[tuple[str, list]]) -> None:
    """Move ``place`` past the items of its list handled in full, in the list's order: decided,
    and each child list under it listed to its end (a child list cut short stops it there)."""
    ends = [(rid, [fut.result() for fut in futures]) for rid, futures in handled]   # every child list ended
    for rid, complete in ends:
        if not all(complete):
            return
        place.handled(rid)


__all__ = ["GRAPH_SHARE", "SWEEP_EVENT_TYPE", "SWEEP_TIMER", "SweepSummary", "Sweeper", "add_parser", "cli_main",
           "covered_types", "list_plan", "management_group_scope"]
