"""The safety rails every deciding guardrail passes a fix through before it acts.

- **Flip-flop budget** (``flip_flop``): a resource reverted ``max_reverts`` times within the
  window (a pipeline or IaC run fighting the guardrail) is escalated to its owner instead of
  reverted again, until reset.
- **Circuit breaker** (``breaker_permits``): at most ``max_actions`` fixes per (policy,
  subscription) in its window; past it the policy drops to audit there until reset.

Both keep their state in Table Storage (``svc.escalations``, ``svc.breakers``), shared by every
worker. The resource, role-assignment and ML guardrails call them in that order.
"""

from __future__ import annotations

import json
import logging

from .logs import emit
from .model.decision import AuditRow
from .model.policy import DEFAULT_FLIP_FLOP
from .policy.flipflop import describe_actors, strictest

log = logging.getLogger("guardrails")


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
        """Both rails in order: the flip-flop budget, then the breaker. A revert the breaker
        refuses entirely gives back the flip-flop count it took (it was never made: the resources
        touched while a breaker was open would otherwise stay escalated after its reset). Only a
        count this call took: a redelivery re-allowed on an earlier delivery's count keeps it (that
        revert may have been made: its read-back disagreed)."""
        counted = False
        if to_apply and self.svc.escalations is not None:
            to_apply, counted = self._flip_flop(row, rid, to_apply, reasons)
        if not to_apply:
            return to_apply
        kept = self.breaker_permits(row, rid, to_apply)
        if counted and not kept and row.event_id:
            self.svc.escalations.withdraw(str(rid), row.event_id)
        return kept

    def breaker_permits(self, row: AuditRow, rid, to_apply):
        """One permit per policy per event (a redelivery of the event reuses it); a policy whose
        breaker is open drops to audit for the subscription, and the owner is told: the
        violation stays in place until someone resets the breaker."""
        allowed: dict[str, bool] = {}
        kept = []
        for r, rec in to_apply:
            pol = r.policy
            if pol.id not in allowed:
                allowed[pol.id] = self.svc.breakers.try_acquire(
                    pol.id, rid.subscription_id or "", max_actions=pol.breaker.max_actions,
                    window_seconds=pol.breaker.window_seconds, key=row.event_id or None)
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
        return kept


__all__ = ["SafetyRails"]
