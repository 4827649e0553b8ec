"""The safety rails every deciding guardrail passes a fix through before it acts.

- **Flip-flop budget** (``flip_flop``): a resource reverted ``max_reverts`` times within the
  window (a pipeline or IaC run fighting the guardrail) is escalated to its owner instead of
  reverted again, until reset.
- **Circuit breaker** (``breaker_permits``): at most ``max_actions`` fixes per (policy,
  subscription) in its window; past it the policy drops to audit there until reset.

Both keep their state in Table Storage (``svc.escalations``, ``svc.breakers``), shared by every
worker. The resource, role-assignment and ML guardrails call them in that order. What one call
took (``grant``) can be given back (``give_back``) when its fix is then not made: a permit spent
on a fix never sent would count against the subscription's window like one that was.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from .errors import StoreError
from .logs import emit
from .model.decision import AuditRow
from .model.policy import DEFAULT_FLIP_FLOP
from .policy.flipflop import describe_actors, strictest

log = logging.getLogger("guardrails")


@dataclass
class Grant:
    """What ``SafetyRails.grant`` let through (``kept``) and what that very call took, so it can
    be given back: the flip-flop count (``counted``) and the policies whose breaker permit it
    counted (``permits``). A redelivery let through on its event's earlier count or permit took
    neither: that one may stand for a fix an earlier delivery made. ``held``: the fixes an open
    breaker held back (``dry_run``, reason ``circuit_open``), whose owner the guardrail tells."""

    kept: list
    counted: bool = False
    permits: list[str] = field(default_factory=list)
    held: list = field(default_factory=list)


def give_back_permit(breakers, policy_id: str, scope: str, key: str) -> None:
    """Give back the breaker permit ``key`` (the event id) took for ``policy_id`` in ``scope`` (a
    subscription, or a vault's ``keyvault:<name>``): the action it was taken for was not made.
    Only for a permit the caller's own call counted. A store without ``release`` gives nothing
    back; a store error leaves the permit counted (erring towards the breaker), never loses the row."""
    release = getattr(breakers, "release", None)
    if release is None:
        return
    try:
        release(policy_id, scope, key)
    except StoreError as exc:
        emit(log, logging.WARNING, "guardrail_permit_not_given_back", policy=policy_id, scope=scope,
             error=type(exc).__name__)
        return
    emit(log, logging.INFO, "guardrail_permit_given_back", policy=policy_id, scope=scope)


class SafetyRails:
    """The service's rails; reads its stores when called (``svc.escalations`` may be None)."""

    def __init__(self, svc) -> None:
        self.svc = svc

    def flip_flop(self, row: AuditRow, rid, to_apply, reasons: list[str]):
        return self._flip_flop(row, rid, to_apply, reasons)[0]

    def _flip_flop(self, row: AuditRow, rid, to_apply, reasons: list[str]):
        """Count this revert against the resource's flip-flop budget; past it, revert nothing,
        record ``escalated`` with the actors whose changes were reverted, and tell the owner.
        The count keeps what the revert sets out to change (``ResourceGuardrail.recover`` reads it)."""
        rule = strictest(getattr(r.policy, "flip_flop", DEFAULT_FLIP_FLOP) for r, _rec in to_apply)
        # who sets out to make it: a takeover checks that delivery's rows, not only its predecessor's
        intent = json.dumps({"by": row.delivery_id, "changes": [
            {"policy": rec.policy, "rule": rec.rule, "property": rec.property, "before": rec.before,
             "after": rec.after} for _r, rec in to_apply]}, default=str)
        # keyed by the event: Event Grid's redeliveries of one change whose revert failed count once
        decision = self.svc.escalations.attempt(str(rid), row.actor.to_dict(), rule=rule,
                                                event=row.event_id or None, intent=intent)
        if decision.allowed:
            return to_apply, decision.counted
        who = describe_actors(decision.actors)
        first = "escalated now" if decision.escalated_now else "still escalated"
        for _r, rec in to_apply:
            rec.outcome = "escalated"
            rec.message = (f"not reverted ({first}): reverted {decision.reverts} times in "
                           f"{rule.window_minutes} min, changes by {who}; held until "
                           f"`guardrails escalation reset`")[:300]
        row.notify = True
        reasons.append("flip_flop")
        emit(log, logging.WARNING, "guardrail_escalated", resource_id=str(rid), reverts=decision.reverts,
             window_minutes=rule.window_minutes, actors=who, escalated_now=decision.escalated_now)
        return [], False

    def permit(self, row: AuditRow, rid, to_apply, reasons: list[str]):
        """Both rails in order: the flip-flop budget, then the breaker (``grant``); what they let
        through."""
        return self.grant(row, rid, to_apply, reasons).kept

    def grant(self, row: AuditRow, rid, to_apply, reasons: list[str]) -> Grant:
        """Both rails in order: the flip-flop budget, then the breaker. A revert the breaker
        refuses entirely gives back the flip-flop count it took (it was never made: the resources
        touched while a breaker was open would otherwise stay escalated after its reset). Only a
        count this call took: a redelivery re-allowed on an earlier delivery's count keeps it (that
        revert may have been made: its read-back disagreed). The answer says what this call took,
        for ``give_back`` when the fix is then not made."""
        counted = False
        if to_apply and self.svc.escalations is not None:
            to_apply, counted = self._flip_flop(row, rid, to_apply, reasons)
        if not to_apply:
            return Grant(to_apply)
        permits: list[str] = []
        held: list = []
        kept = self.breaker_permits(row, rid, to_apply, took=permits, held=held)
        if counted and not kept and row.event_id:
            self.svc.escalations.withdraw(str(rid), row.event_id)
            counted = False
        return Grant(kept, counted=counted, permits=permits, held=held)

    def give_back(self, row: AuditRow, rid, grant: Grant, *, policies=None, flip_flop: bool = True) -> None:
        """The fix ``grant`` let through was not made (nothing to write, or ARM refused the write):
        give back the breaker permits that call took — of ``policies`` only, when given — keyed by
        the event they were taken with, so they no longer count against the subscription's window;
        with ``flip_flop``, the revert it counted too. Never what an earlier delivery took. Each is
        given back once (``grant`` forgets it)."""
        if not row.event_id:
            return
        if flip_flop and grant.counted and self.svc.escalations is not None:
            self.svc.escalations.withdraw(str(rid), row.event_id)
            grant.counted = False
        for policy_id in [p for p in grant.permits if policies is None or p in policies]:
            grant.permits.remove(policy_id)
            give_back_permit(self.svc.breakers, policy_id, rid.subscription_id or "", row.event_id)

    def breaker_permits(self, row: AuditRow, rid, to_apply, *, took: list[str] | None = None,
                        held: list | None = None):
        """One permit per policy per event (a redelivery of the event reuses it); a policy whose
        breaker is open drops to audit for the subscription, and the owner is told: the
        violation stays in place until someone resets the breaker. ``took`` collects the policies
        whose permit this call counted (a store without ``acquire`` tells none: nothing is given
        back from it); ``held`` the ``to_apply`` pairs held back, for the caller's notice to name
        their rules and reach their policies' owner (their outcome, ``dry_run``, is an audit-mode
        finding's too, whose owner is not told)."""
        allowed: dict[str, bool] = {}
        acquire = getattr(self.svc.breakers, "acquire", None)
        kept = []
        for r, rec in to_apply:
            pol = r.policy
            if pol.id not in allowed:
                ask = dict(max_actions=pol.breaker.max_actions, window_seconds=pol.breaker.window_seconds,
                           key=row.event_id or None)
                if acquire is not None:
                    allowed[pol.id], counted = acquire(pol.id, rid.subscription_id or "", **ask)
                else:
                    allowed[pol.id], counted = self.svc.breakers.try_acquire(pol.id, rid.subscription_id or "",
                                                                             **ask), False
                if counted and row.event_id and took is not None:
                    took.append(pol.id)
                if not allowed[pol.id]:
                    emit(log, logging.ERROR, "guardrail_circuit_open", policy=pol.id,
                         subscription_id=rid.subscription_id, max_actions=pol.breaker.max_actions,
                         window_seconds=pol.breaker.window_seconds)
            if allowed[pol.id]:
                kept.append((r, rec))
            else:
                rec.outcome = "dry_run"
                rec.message = (f"circuit open: more than {pol.breaker.max_actions} fixes in "
                               f"{pol.breaker.window_seconds} s; policy in audit for this subscription until reset")
                row.reason = "circuit_open"
                row.notify = True
                if held is not None:
                    held.append((r, rec))
        return kept


__all__ = ["Grant", "SafetyRails"]
