"""Expiry re-enforcement: an exemption that ran out is enforced within minutes, not at the next
change of the resource (which may never come).

A timer looks for every exemption whose ``expires`` lies in ``(last run, now]`` (first run: the
``GUARDRAILS_EXPIRY_LOOKBACK_MINUTES`` window) and re-decides what it covered, through the same
pipeline (``service.reconcile``, event type ``Guardrails.ExemptionExpired``):

  - scope is a resource id           → that resource (read fresh)
  - resource group / subscription    → each type of the policy listed there, pure filter first
  - management group / tenant root   → each type in every swept subscription
  - role-assignment policy           → the assignment, or every assignment at or below the scope

The last-run time is stored only after the run finished, so a run that failed is repeated over
the same window. Another exemption still covering a resource keeps it exempted (the pipeline
decides, not this module). A summary row goes to ``<prefix>Sweeps`` (kind ``expiry``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from .errors import ArmError, InvalidArmId
from .model.arm_id import ArmId, parse_scope
from .model.policy import Exemption
from .model.resource import lookup_type
from .sweep import EXPIRY_EVENT_TYPE, Sweeper, SweepSummary, _iso, _Tally

TIMER = "exemption-expiry"


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
        tally = _Tally(summary)
        reads0 = sw.reads.taken
        compiled = sw.service.policies.get()
        done: set[str] = set()
        for item in expired_between(compiled, since, now):
            try:
                scope = parse_scope(item.exemption.scope)
            except InvalidArmId as exc:
                tally.error(f"{item.policy}: exemption scope {item.exemption.scope[:80]!r}: {exc}")
                continue
            try:
                if item.kind == "role":
                    self._roles(tally, scope, summary.sweep_id, done)
                else:
                    self._resources(tally, compiled, item, scope, summary.sweep_id, done)
            except ArmError as exc:
                tally.error(f"{item.policy}: re-enforcing {scope}: {exc}")
        summary.subscriptions = sorted({s for s in (_sub(r) for r in done) if s})
        summary.reads = sw.reads.taken - reads0
        result = sw._finish(summary, start)
        if not summary.errors:
            sw.state.set_last_run(TIMER, now)
        return result

    # ---------------------------------------------------------------------------------
    def _once(self, done: set[str], rid: str) -> bool:
        key = rid.lower()
        if key in done:
            return False
        done.add(key)
        return True

    def _resources(self, tally: _Tally, compiled, item: Expired, scope: ArmId, run_id: str, done: set[str]) -> None:
        types = [t for t in (lookup_type(n) for n in item.resource_types) if t is not None]
        if scope.provider is not None and scope.subscription_id is not None:      # one resource
            rtype = lookup_type(scope.resource_type)
            if rtype in types and self._once(done, str(scope)):
                tally.seen()
                self.sw._decide(tally, str(scope), None, run_id, False, EXPIRY_EVENT_TYPE)
            return
        if scope.subscription_id is not None:
            subs, rg = [scope.subscription_id], scope.resource_group
        else:                                     # management group or tenant root: every swept subscription
            subs, rg = list(self.sw.subscriptions) or self.sw.lister.list_subscriptions(), None
        for sub in subs:
            for rtype in types:
                for body in self.sw.lister.list_type(sub, rtype, resource_group=rg):
                    if isinstance(body.get("id"), str) and self._once(done, body["id"]):
                        self.sw.decide_listed(tally, compiled, rtype, body, run_id, False, EXPIRY_EVENT_TYPE)

    def _roles(self, tally: _Tally, scope: ArmId, run_id: str, done: set[str]) -> None:
        if scope.resource_type.lower() == "microsoft.authorization/roleassignments":
            ids: Sequence[str] = [str(scope)]
        else:
            ids = [a["id"] for a in self.sw.lister.list_role_assignments(str(scope), at_scope=False)
                   if isinstance(a.get("id"), str) and _within(scope, (a.get("properties") or {}).get("scope"))]
        for rid in ids:
            if self._once(done, rid):
                tally.seen()
                self.sw._decide(tally, rid, None, run_id, False, EXPIRY_EVENT_TYPE)


def _sub(resource_id: str) -> str | None:
    parts = resource_id.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "subscriptions" else None


def _within(scope: ArmId, assignment_scope) -> bool:
    """The assignment's scope is ``scope`` or below it (the tenant root ``/`` never is)."""
    try:
        return scope.contains(parse_scope(str(assignment_scope)))
    except InvalidArmId:
        return False
