"""The event-coverage check over ARM (``guardrails.coverage`` decides; this module reads and records):
run by the reconciling sweep (``Sweeper.run``) and on demand by ``python -m guardrails coverage``.

    expectations(subscriptions, vaults, workspaces)     what each governed event source must deliver
    CoverageReader.read(expectation)                    its subscription's system topics (once), its own
                                                        topic's event subscriptions -> ``coverage.assess``
    check_in_sweep(...)                                 reads a few subscriptions at a time, then in order:
                                                        summary entry, a row on a gap or its closing,
                                                        the state kept when it changed

The check runs last in the sweep, and the sweep of a large estate can use its whole time budget:
in exactly such an estate a subscription added without a system topic is likeliest. So the check
has a budget of its own, ``coverage_reserve`` (10 % of ``GUARDRAILS_SWEEP_MAX_SECONDS``, at most
60 s: 54 s of the default 540, inside the host's 10-minute ``functionTimeout``; some two reads
per source), past the sweep's deadline. That end bounds every read as the sweep's deadline bounds
its lists: no page is requested past it and no ``Retry-After`` waited out past it. Sources it has
not seen before and known gaps are read first; a source it could not read in time (its list
stopped, or throttled, at the end) is a sweep error (``unchecked``, WARNING), never a silent pass
and never a verdict on part of a list.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterable

from .coverage import SYSTEM_TOPICS_API_VERSION, assess, own_topics
from .errors import ArmError, InvalidArmId
from .logs import emit
from .model.resource import ResourceType

log = logging.getLogger("guardrails")

# what ``CoverageReader`` lists, through the lister's generic list operations (``list_type`` for
# SystemTopics_ListBySubscription, ``list_children`` for SystemTopicEventSubscriptions_ListBySystemTopic:
# the same requests), which take the run's deadline and say when it stopped a list
SYSTEM_TOPICS = ResourceType("Microsoft.EventGrid/systemTopics", SYSTEM_TOPICS_API_VERSION, "put")
EVENT_SUBSCRIPTIONS = ResourceType("Microsoft.EventGrid/systemTopics/eventSubscriptions",
                                   SYSTEM_TOPICS_API_VERSION, "put")


class _OutOfTime(Exception):
    """The run's deadline stopped a list with pages left: the source is not judged."""


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expectations(subscriptions: Iterable[str], vaults: Iterable[str] = (), workspaces: Iterable[str] = ()):
    """What each governed event source must deliver (``coverage.Expectation``): every subscription's
    covered writes and deletions, every governed vault's Key Vault events, every governed workspace's ML events."""
    from .coverage import subscription_expectation, vault_expectation, workspace_expectation
    from .permissions import covered_delete_operations, covered_operations, keyvault_event_types, ml_event_types

    ops, deletes = covered_operations(), covered_delete_operations()
    found = ([subscription_expectation(s, ops, deletes) for s in subscriptions]
             + [vault_expectation(v, keyvault_event_types()) for v in vaults]
             + [workspace_expectation(w, ml_event_types()) for w in workspaces])
    once: dict[str, object] = {}
    for e in found:               # one source named twice (in any case) is judged, recorded and told once
        once.setdefault(e.source.lower(), e)
    return list(once.values())


class CoverageReader:
    """Reads what ``coverage.assess`` judges, each list once per run: a subscription's system topics
    (shared by the subscription, its vaults and its workspaces), then each own topic's event
    subscriptions. ``ArmError`` when a list cannot be read. ``deadline`` (the lister's clock; None:
    none) bounds every list, its pages and their retries: a list it stopped with pages left raises
    ``_OutOfTime`` (a topic list cut short would read as a missing topic, a false gap; an event
    subscription list cut short, as a missing subscription)."""

    def __init__(self, lister, function_app_id: str, now: datetime, *, deadline: float | None = None) -> None:
        self.lister, self.function_app_id, self.now, self.deadline = lister, function_app_id, now, deadline
        self._topics: dict[str, list[dict]] = {}
        self._subs: dict[str, list[dict]] = {}

    @staticmethod
    def _out_of_time() -> None:
        raise _OutOfTime()

    def read(self, expected):
        bounds = {"deadline": self.deadline, "on_cut": self._out_of_time}
        sub = expected.subscription_id.lower()
        if sub not in self._topics:
            self._topics[sub] = list(self.lister.list_type(expected.subscription_id, SYSTEM_TOPICS, **bounds))
        topics = self._topics[sub]
        for t in own_topics(expected, topics):
            tid = str(t["id"]).lower()
            if tid not in self._subs:
                self._subs[tid] = list(self.lister.list_children(str(t["id"]), EVENT_SUBSCRIPTIONS, **bounds))
        return assess(expected, topics, self._subs, function_app_id=self.function_app_id, now=self.now)


def unreadable(expected, exc: ArmError) -> dict[str, Any]:
    """A summary entry for a source whose coverage could not be read: no verdict."""
    return {"kind": expected.kind, "source": expected.source, "subscription_id": expected.subscription_id,
            "covered": None, "gaps": [{"code": "unreadable", "detail": str(exc)[:300]}]}


def unchecked(expected) -> dict[str, Any]:
    """A summary entry for a source the time budget left unread (or stopped reading): no verdict."""
    return {"kind": expected.kind, "source": expected.source, "subscription_id": expected.subscription_id,
            "covered": None, "gaps": [{"code": "unchecked", "detail": "not read: the sweep's time budget and the "
                                                                    "coverage check's reserve ran out"}]}


RESERVE_SHARE = 0.10      # of the sweep's time budget, given to the coverage check past the sweep's deadline
RESERVE_MAX_SECONDS = 60.0


def coverage_reserve(max_seconds: float) -> float:
    """The coverage check's own budget past the sweep's deadline: 10 % of ``max_seconds``, at
    most 60 s (540 s -> 54 s: the sweep plus the check end inside the host's 10 minutes). Pure."""
    return min(RESERVE_MAX_SECONDS, max(0.0, float(max_seconds)) * RESERVE_SHARE)


def reading_order(groups: dict[str, list], states: dict[str, dict]) -> list[list]:
    """The subscription groups, those with a source never judged before first (a subscription added
    to the estate: the likeliest gap), then those with a known gap, then the covered ones, each in
    the given order: a budget that runs out leaves the covered ones unread. Pure."""
    def rank(group: list) -> int:
        seen = [states.get(e.source.lower()) for e in group]
        if any(s is None for s in seen):
            return 0
        return 1 if any(s.get("covered") is False for s in seen) else 2
    return sorted(groups.values(), key=rank)


def check_in_sweep(sweeper, tally, summary, subs: list[str], deadline: float, *, reserve: float | None = None,
                   dry_run: bool = False) -> None:
    """The event coverage (``guardrails.coverage``) of each swept subscription and each governed
    vault and workspace. Reads, a few subscriptions at a time: one system-topic list per
    subscription, one event-subscription list per own topic, until ``deadline`` plus ``reserve``
    (default ``coverage_reserve(sweeper.max_seconds)``: the check runs even when the sweep used
    its own budget), each list bounded by that end as the sweep's are by its deadline (a list it
    stops, or a throttled page whose retry it leaves no time for, leaves the source unchecked).
    Then, in order: a pure verdict, a row on a gap or on its closing, the state kept when it
    changed (all states read in one query, first: they order the reads). Unreadable (no
    permission, ARM down) or left unread by the budget is a sweep error, not a verdict: nothing
    was seen. Store failures end the sweep (no row may be lost), as elsewhere. A dry run
    (``sweep --dry-run``) writes its rows as the state read says, and keeps no state: a preview
    never records that a gap was told (the next real run tells it again), as its findings."""
    from .coverage import transition

    now = sweeper._wall()
    end = deadline + (coverage_reserve(sweeper.max_seconds) if reserve is None else max(0.0, reserve))
    groups: dict[str, list] = {}
    for expected in expectations(subs, sweeper.governed_vaults, sweeper.governed_workspaces):
        groups.setdefault(expected.subscription_id.lower(), []).append(expected)
    states = sweeper.state.coverage_states()

    def read(group: list) -> list:
        # the group's topic list, once; no page past the check's end
        reader = CoverageReader(sweeper.lister, sweeper.function_app_id, now, deadline=end)
        out = []
        for expected in group:
            if sweeper._clock() > end:
                out.append((expected, None, None))
                continue
            try:
                out.append((expected, reader.read(expected), None))
            except _OutOfTime:
                out.append((expected, None, None))
            except ArmError as exc:      # unreadable; but a throttled page the end left no time to retry: unchecked
                cut = sweeper.cut_short(tally, exc, end, what=f"event coverage of {expected.source}")
                out.append((expected, None, None if cut else exc))
        return out

    with ThreadPoolExecutor(max_workers=sweeper.concurrency, thread_name_prefix="sweep-coverage") as pool:
        read_out = {id(r[0]): r for fut in [pool.submit(read, g) for g in reading_order(groups, states)]
                    for r in fut.result()}
    results = [read_out[id(e)] for g in groups.values() for e in g]        # recorded in the usual order
    left: list[str] = []
    for expected, cov, exc in results:
        if cov is None and exc is None:
            tally.truncate()
            tally.error(f"event coverage of {expected.source}: not checked, the time budget ran out")
            summary.coverage.append(unchecked(expected))
            left.append(expected.source)
            continue
        if exc is not None:
            tally.error(f"event coverage of {expected.source}: {exc}")
            summary.coverage.append(unreadable(expected, exc))
            emit(log, logging.ERROR, "guardrail_coverage_unreadable", source=expected.source, reason=exc.reason)
            continue
        summary.coverage.append(cov.to_dict())
        summary.uncovered += 0 if cov.covered else 1
        previous = states.get(expected.source.lower())
        step = transition(previous, cov, _iso(sweeper._wall()))
        if step.write_row:
            sweeper.service.record_coverage(cov, sweep_id=summary.sweep_id, verdict=step.verdict, notify=step.notify)
        if step.state != previous and not dry_run:
            sweeper.state.set_coverage_state(expected.source, step.state)
        if not cov.covered:
            emit(log, logging.WARNING, "guardrail_coverage_gap", source=expected.source, kind=expected.kind,
                 gaps=",".join(g.code for g in cov.gaps), notify=step.notify)
    if left:                     # one line, not one per source: a large estate may leave hundreds
        emit(log, logging.WARNING, "guardrail_coverage_unchecked", count=len(left), sources=",".join(left[:20]),
             reserve_s=round(end - deadline, 3))


def add_parser(sub) -> None:
    p = sub.add_parser("coverage", help="check that every governed subscription, vault and ML workspace still "
                                        "delivers its events to this app (read-only: no rows, no state)")
    p.add_argument("--subscription", action="append", default=[], metavar="ID",
                   help="subscription to check (repeatable; default GUARDRAILS_SWEEP_SUBSCRIPTIONS, else all visible)")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")


def cli_main(args) -> int:
    """``python -m guardrails coverage``: the sweep's event-coverage check on demand, e.g. right
    after a deployment. Exit 0 every source covered, 1 a gap or an unreadable list, 2 usage."""
    import json

    from .adapters.arm import build_credential
    from .adapters.listing import ArmLister
    from .ratelimit import RateLimiter
    from .settings import FUNCTION_APP_ID, Settings
    from .simulate import UsageError
    from .sweep_plan import subscription_ids

    settings = Settings.from_env()
    if not settings.function_app_id:
        raise UsageError(f"set {FUNCTION_APP_ID} to this deployment's function app resource id")
    reads = RateLimiter(settings.arm_reads_per_second, settings.arm_read_burst)
    lister = ArmLister(build_credential(settings), endpoint=settings.arm_endpoint, reads=reads,
                       ca_bundle=settings.ca_bundle, timeout=settings.arm_timeout_seconds)
    try:
        subs = subscription_ids(args.subscription) or list(settings.sweep_subscriptions)
    except InvalidArmId as exc:
        raise UsageError(str(exc)) from None
    try:
        subs = subs or lister.list_subscriptions()
    except ArmError as exc:
        raise UsageError(f"cannot list the subscriptions this identity sees: {exc}") from None
    expected_sources = list(expectations(subs, settings.governed_vaults, settings.governed_ml_workspaces))
    if not expected_sources:
        # "every source covered" of no source at all would pass a deployment gate that checked nothing
        raise UsageError("no source to check: this identity sees no subscription (another tenant? a role not "
                         "yet applied?) and no governed vault or ML workspace is configured; name one with "
                         "--subscription or set GUARDRAILS_SWEEP_SUBSCRIPTIONS")
    reader = CoverageReader(lister, settings.function_app_id, datetime.now(timezone.utc))
    results: list[dict[str, Any]] = []
    for expected in expected_sources:
        try:
            results.append(reader.read(expected).to_dict())
        except ArmError as exc:
            results.append(unreadable(expected, exc))
    if args.json:
        print(json.dumps({"function_app_id": settings.function_app_id, "sources": results}, indent=2))
    else:
        print(f"event coverage: events delivered to {settings.function_app_id}")
        for r in results:
            state = {True: "covered", False: "GAP", None: "UNREADABLE"}[r["covered"]]
            print(f"  {r['kind']:<12} {r['source']}  {state}")
            for g in r["gaps"]:
                print(f"      {g['code']}: {g['detail']}")
    return 0 if all(r["covered"] is True for r in results) else 1
