"""Expiry re-enforcement: an exemption that ran out is enforced within minutes, not at the next
change of the resource (which may never come).

A timer looks for every exemption whose ``expires`` lies in ``(last run, now]`` (first run: the
``GUARDRAILS_EXPIRY_LOOKBACK_MINUTES`` window) and re-decides what it covered, through the same
pipeline (``service.reconcile``, event type ``Guardrails.ExemptionExpired``):

  - scope is a resource id           → that resource (read fresh), and the policy's types below it
                                       (``workspaces/computes`` of a workspace), listed per parent
  - resource group / subscription    → each type of the policy listed there, pure filter first
  - management group / tenant root   → each type in every swept subscription
  - role-assignment policy           → the assignment, or every assignment at or below the scope

The last-run time is stored only after the run finished. A run that could not find what an
exemption covered (an unparsable scope, a list that failed: ``summary.errors``) keeps its window,
so the next run repeats it. A resource whose decision came back ``failed`` (ARM refused or
throttled the fix) does not hold the window back — one resource failing for good (a lock, a
missing permission) would otherwise make every later run repeat an ever longer window — but is
kept in the timer state (``retry``: its id and the attempts so far) and decided again, first, by
each following run until its decision is no longer ``failed``. After ``MAX_ATTEMPTS`` runs it is
dropped with an error log (``guardrail_expiry_retry_abandoned``): the reconciling sweep, which
decides every covered resource, still finds it. At most ``MAX_RETRY`` ids are kept; a run that
fails more (an outage) keeps its window as well, so the next run repeats it whole.
Another exemption still covering a resource keeps it exempted (the pipeline decides, not this
module). A summary row goes to ``<prefix>Sweeps`` (kind ``expiry``).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Sequence

from .errors import ArmError, InvalidArmId
from .logs import emit
from .model.arm_id import ArmId, parse_scope
from .model.policy import Exemption
from .model.resource import ResourceType, lookup_type
from .sweep import EXPIRY_EVENT_TYPE, Sweeper, SweepSummary, _iso, _Tally

TIMER = "exemption-expiry"
MAX_ATTEMPTS = 12       # runs a failed re-enforcement is retried (every 5 min by default: one hour)
MAX_RETRY = 50          # failed ids kept in the timer state (a Table Storage property holds 32K characters)

log = logging.getLogger("guardrails")


@dataclass(frozen=True)
class Expired:
    kind: str                       # "resource" | "role"
    policy: str                     # id@version
    resource_types: tuple[str, ...]  # resource policies: the selector's types
    exemption: Exemption


def expired_between(compiled, since: datetime, until: datetime) -> list[Expired]:
    """Exemptions of the policies in force whose expiry lies in ``(since, until]``. Pure."""
    out: list[Expired] = []
    for p in compiled.policies:
        if p.mode in ("off", "shadow"):
            continue
        for ex in p.exemptions:
            if ex.expires is not None and since < ex.expires <= until:
                out.append(Expired("resource", p.ref, tuple(p.selector.resource_types), ex))
    for cp in compiled.role_policies:
        for ex in cp.policy.exemptions:
            if ex.expires is not None and since < ex.expires <= until:
                out.append(Expired("role", cp.ref, (), ex))
    return out


@dataclass
class _Run:
    """One run: its tally, the ids decided so far (each once) and those whose decision failed."""

    tally: _Tally
    run_id: str
    done: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)     # lower-cased id -> id

    def once(self, rid: str) -> bool:
        key = rid.lower()
        if key in self.done:
            return False
        self.done.add(key)
        return True

    def decide(self, rid: str, decide: Callable[[], None]) -> None:
        """Run one decision of ``rid`` and remember the id when its verdict was ``failed``
        (the timer decides one resource at a time, so the tally's count says so)."""
        before = self.tally.s.verdicts.get("failed", 0)
        decide()
        if self.tally.s.verdicts.get("failed", 0) > before:
            self.failed[rid.lower()] = rid


class ExpiryReEnforcer:
    """Runs on the sweep's paced service, lister and tables."""

    def __init__(self, sweeper: Sweeper, *, lookback: timedelta | None = None) -> None:
        self.sw = sweeper
        minutes = getattr(sweeper.service.settings, "expiry_lookback_minutes", 60.0)
        self.lookback = lookback if lookback is not None else timedelta(minutes=minutes)

    def run(self, now: datetime | None = None) -> SweepSummary:
        sw = self.sw
        start = time.monotonic()
        now = now or sw._wall()
        since = sw.state.last_run(TIMER) or now - self.lookback
        summary = SweepSummary(sweep_id=f"expiry-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", kind="expiry",
                               started=_iso(now))
        run = _Run(_Tally(summary), summary.sweep_id)
        tally = run.tally
        reads0 = sw.reads.taken
        compiled = sw.service.policies.get()
        retry = {str(r["id"]).lower(): r for r in sw.state.retry(TIMER) if isinstance(r, dict) and r.get("id")}
        for entry in retry.values():         # failed before: decided again, first, on a fresh read
            rid = str(entry["id"])
            if run.once(rid):
                tally.seen()
                run.decide(rid, lambda rid=rid: sw._decide(tally, rid, None, run.run_id, False, EXPIRY_EVENT_TYPE))
        for item in expired_between(compiled, since, now):
            try:
                scope = parse_scope(item.exemption.scope)
            except InvalidArmId as exc:
                tally.error(f"{item.policy}: exemption scope {item.exemption.scope[:80]!r}: {exc}")
                continue
            try:
                if item.kind == "role":
                    self._roles(run, scope)
                else:
                    self._resources(run, compiled, item, scope)
            except ArmError as exc:
                tally.error(f"{item.policy}: re-enforcing {scope}: {exc}")
        summary.subscriptions = sorted({s for s in (_sub(r) for r in run.done) if s})
        summary.reads = sw.reads.taken - reads0
        result = sw._finish(summary, start)
        kept = self._retry_next(retry, run.failed, summary.sweep_id)
        if kept or retry:
            sw.state.set_retry(TIMER, kept[:MAX_RETRY])
        if not summary.errors and len(kept) <= MAX_RETRY:     # else the next run repeats this window
            sw.state.set_last_run(TIMER, now)
        return result

    # ---------------------------------------------------------------------------------
    @staticmethod
    def _retry_next(before: dict[str, dict], failed: dict[str, str], run_id: str) -> list[dict]:
        """The ids the next run decides first: those that failed in this run, with their attempts."""
        kept: list[dict] = []
        for key, rid in failed.items():
            attempts = int((before.get(key) or {}).get("attempts") or 0) + 1
            if attempts >= MAX_ATTEMPTS:
                emit(log, logging.ERROR, "guardrail_expiry_retry_abandoned", resource_id=rid, attempts=attempts,
                     sweep_id=run_id)
                continue
            kept.append({"id": rid, "attempts": attempts})
        if kept:
            emit(log, logging.WARNING, "guardrail_expiry_retry", count=len(kept), kept=min(len(kept), MAX_RETRY),
                 sweep_id=run_id)
        return kept

    def _resources(self, run: _Run, compiled, item: Expired, scope: ArmId) -> None:
        types = [t for t in (lookup_type(n) for n in item.resource_types) if t is not None]
        if scope.provider is not None and scope.subscription_id is not None:      # one resource
            rtype = lookup_type(scope.resource_type)
            if rtype in types and run.once(str(scope)):
                run.tally.seen()
                run.decide(str(scope), lambda: self.sw._decide(run.tally, str(scope), None, run.run_id, False,
                                                               EXPIRY_EVENT_TYPE))
            for child in types:     # a parent resource: the exemption also covered the policy's types below it
                if child.name.lower().startswith(scope.resource_type.lower() + "/"):
                    self._descendants(run, compiled, str(scope), scope.resource_type, child)
            return
        if scope.subscription_id is not None:
            subs, rg = [scope.subscription_id], scope.resource_group
        else:                                     # management group or tenant root: every swept subscription
            subs, rg = list(self.sw.subscriptions) or self.sw.lister.list_subscriptions(), None
        for sub in subs:
            for rtype in types:
                for body in self.sw.lister.list_type(sub, rtype, resource_group=rg):
                    if isinstance(body.get("id"), str) and run.once(body["id"]):
                        run.decide(body["id"], lambda body=body, rtype=rtype: self.sw.decide_listed(
                            run.tally, compiled, rtype, body, run.run_id, False, EXPIRY_EVENT_TYPE))

    def _descendants(self, run: _Run, compiled, parent_id: str, parent_type: str, rtype: ResourceType) -> None:
        """Every ``rtype`` below one parent resource (``…/workspaces/computes`` of a workspace),
        each level listed per parent as the sweep does; a level missing from the catalogue ends it."""
        below = rtype.name.split("/")[parent_type.count("/") + 1:]
        if len(below) == 1:
            for body in self.sw.lister.list_children(parent_id, rtype):
                if isinstance(body.get("id"), str) and run.once(body["id"]):
                    run.decide(body["id"], lambda body=body: self.sw.decide_listed(
                        run.tally, compiled, rtype, body, run.run_id, False, EXPIRY_EVENT_TYPE))
            return
        level = lookup_type(f"{parent_type}/{below[0]}")
        if level is None:
            return
        for body in self.sw.lister.list_children(parent_id, level):
            if isinstance(body.get("id"), str):
                self._descendants(run, compiled, body["id"], level.name, rtype)

    def _roles(self, run: _Run, scope: ArmId) -> None:
        if scope.resource_type.lower() == "microsoft.authorization/roleassignments":
            ids: Sequence[str] = [str(scope)]
        else:
            ids = [a["id"] for a in self.sw.lister.list_role_assignments(str(scope), at_scope=False)
                   if isinstance(a.get("id"), str) and _within(scope, (a.get("properties") or {}).get("scope"))]
        for rid in ids:
            if run.once(rid):
                run.tally.seen()
                run.decide(rid, lambda rid=rid: self.sw._decide(run.tally, rid, None, run.run_id, False,
                                                                EXPIRY_EVENT_TYPE))


def _sub(resource_id: str) -> str | None:
    parts = resource_id.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "subscriptions" else None


def _within(scope: ArmId, assignment_scope) -> bool:
    """The assignment's scope is ``scope`` or below it (the tenant root ``/`` never is)."""
    try:
        return scope.contains(parse_scope(str(assignment_scope)))
    except InvalidArmId:
        return False
