"""What the role-assignment guardrail does once a decision found an assignment to remove
(``role_guardrail``): the safety rails, the deletion, its read-back and the re-grant count.

    findings to act on ─▶ safety rails ─▶ breaker permit (unless the same grant was removed within
    the breaker window) ─▶ note the intent with the event's claim ─▶ DELETE ─▶ confirm gone
    ─▶ count the re-grant

Safety rails, independent of policy: never delete an assignment of the guardrail's own identities
or of a break-glass principal, and never the last Owner at a scope (kept and reported): an Owner
is removed only when another Owner stays over the scope — at it or inherited from above (a
management group, the tenant root), and not itself one the policies would remove.

Re-grants: a pipeline (or an attacker) that grants again the role the guardrail just removed
makes a new assignment, with a new id, every time. Confirmed removals are counted per *grant*
(scope, principal, role: ``policy.grant_keys.grant_key``) in the escalation table, against the
policies' ``flip_flop`` budget. Unlike a resource, whose (N+1)th revert is not made, a removal
is always made: a privileged grant is never left in place to end a fight. Past the budget the row
carries reason ``flip_flop``, names who keeps granting, and the owner is told once, when the
grant is escalated; it stays escalated until ``guardrails escalation reset <grant key>`` (or the
policy's ``hold_minutes`` pass without a new grant).

A delivery that takes the event over from one that died after its DELETE finds the assignment
gone: the intent the other noted makes its row (``_recover``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .decision_context import note_intent_or_warn
from .errors import ArmError, ResourceNotFound, StoreError, refused_outright
from .logs import emit, notify_owner
from .model.decision import ViolationRecord
from .model.policy import DEFAULT_FLIP_FLOP
from .policy.flipflop import describe_actors, strictest
from .safety_rails import Grant

log = logging.getLogger("guardrails")

OWNER_GUID = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
MAX_NOTED_CONDITION = 1_000    # characters of an ABAC condition kept in a removal's noted intent


def _norm(guid: str | None) -> str:
    return (guid or "").strip().lower().replace("-", "")


def _scope_key(scope: str | None) -> str:
    """A scope compared segment-wise: lower-case, no trailing ``/`` (the tenant root is "")."""
    return "/" + "/".join(s for s in (scope or "").lower().split("/") if s) if (scope or "").strip("/") else ""



def _answer_lost(exc: ArmError) -> bool:
    """Whether a request of a failed DELETE got no (whole) answer (a read timeout, a dropped
    connection): ARM may have carried it out, or may still, so what it did is read back."""
    answers = exc.answers if exc.answers is not None else (exc.status,) if exc.attempts else ()
    return None in answers


class RoleRemoval:
    """Mixed into ``RoleAssignmentGuardrail``: uses its service (``svc``: settings, safety rails,
    escalations, audit, publisher), ``authz``, ``groups`` and the definition resolver
    (``definitions``, ``role_definitions``)."""

    def _rail(self, ctx, assignment, role, act, policies) -> str | None:
        """A reason never to delete this assignment, whatever policy says."""
        if self.svc.settings.is_own_principal(assignment.principal_id):
            return "the guardrail's own identity is never removed"
        for f, _rec in act:
            if getattr(f, "break_glass", False):
                return "break-glass principal is never removed"
        if role.id.lower() == OWNER_GUID and not self._another_owner_stays(ctx, assignment, policies):
            return "last Owner at this scope: kept so nobody is locked out"
        return None

    def _another_owner_stays(self, ctx, assignment, policies) -> bool:
        """Whether another Owner keeps ``assignment.scope`` manageable once this one is gone:

        - an Owner inherited from above (``atScope()`` lists those: a management group, the
          tenant root ``/``). Above the scope some Owner always stays: the topmost ones either
          comply or are themselves kept by this rail, since nothing stays above them;
        - an Owner at this very scope that the policies would not remove (the guardrail's own,
          break-glass, an allowed service principal, exempted, in audit mode). Another violating
          Owner here (a second attacker grant) does not count, so two of them never vouch for
          each other: both are kept and reported until a lawful Owner exists.

        Raises ``ArmError`` (ARM, Graph)."""
        from .model.roles import BUILTIN_ROLES
        from .policy.roles import Assignment, evaluate_assignment

        owner = BUILTIN_ROLES[OWNER_GUID]
        target = _scope_key(assignment.scope)
        own = self.svc.settings.own_principal_ids
        same_scope = []
        for body in self.authz.list_assignments_at_scope(assignment.scope, deadline=ctx.deadline):
            try:
                other = Assignment.from_arm(body)
            except ValueError:
                continue                                 # an odd body keeps nobody in
            at = _scope_key(other.scope)
            if (other.id.lower() == assignment.id.lower()
                    or _norm(other.role_definition_id.rstrip("/").rsplit("/", 1)[-1]) != _norm(OWNER_GUID)
                    or (at != target and (target == "" or at.startswith(target + "/")))):   # below: never listed
                continue
            if at != target:
                return True                              # inherited from above
            same_scope.append(other)
        for other in same_scope:
            if self.svc.settings.is_own_principal(other.principal_id):
                return True
            findings = evaluate_assignment(other, owner, policies, groups=self.groups, now=ctx.now,
                                           own_principal_ids=own, definitions=self.definitions(ctx, other))
            if not any(f.removes for f in findings):
                return True
        return False

    def _remove(self, ctx, row, event, assignment, role, act, policies) -> str:
        """Delete (rails and breaker permitting) and confirm; returns a note for the row's
        message ("" or the escalated grant's key). A removal held by an open breaker is told to
        its owner; the breaker permits this call took go back when no removal was made (ARM
        refused the DELETE outright, ``errors.refused_outright``, or it found the
        assignment gone before any of its requests could remove it). A DELETE whose answer was
        lost is read back like one ARM answered: gone is ``remediated``, still there or unreadable
        ``requested`` (it may yet be carried out), and its permit stays."""
        try:
            rail = self._rail(ctx, assignment, role, act, policies)
        except ArmError as exc:
            for _f, rec in act:
                rec.outcome, rec.message = "failed", f"could not check safety rails: {exc}"[:300]
            row.reason = exc.reason
            return ""
        if rail:
            for _f, rec in act:
                rec.outcome, rec.message = "violation", rail
            row.notify = True
            notify_owner(log, rules=[r.rule for _f, r in act],
                         resource_id=assignment.id, rail=rail)
            return ""
        again, rest = self._removed_lately(ctx, assignment, act)
        took: list[str] = []
        held: list = []
        permitted = again + (self.svc.rails.breaker_permits(row, event.resource_id, rest, took=took, held=held)
                             if rest else [])
        if held:
            # an open breaker leaves the grant in place: its owner hears which rules it breaks
            notify_owner(log, rules=[r.rule for _f, r in held], resource_id=assignment.id, reason="circuit_open")
        # the permits this call took, given back when its removal is not made (a DELETE ARM refused,
        # an assignment found gone): a refused removal would otherwise fill the breaker's window
        grant = Grant(permitted, permits=took)
        if not permitted:
            return ""
        self._note(ctx, assignment, permitted)
        from .outbox import intend_before_act

        intend_before_act(getattr(self.svc, "publisher", None), ctx, row, [rec for _f, rec in permitted],
                          sent_message="deletion sent; the worker stopped before confirming and auditing it",
                          line=lambda v: f"{v.policy}/{v.rule} ({v.outcome})")
        lost: ArmError | None = None          # the DELETE's error when an answer was lost on the way
        try:
            deleted_now = self.authz.delete_assignment(assignment.id, deadline=ctx.deadline)
        except ArmError as exc:
            if refused_outright(exc):
                self.svc.rails.give_back(row, event.resource_id, grant, flip_flop=False)
            if not _answer_lost(exc):
                for _f, rec in permitted:
                    rec.outcome, rec.message = "failed", str(exc)[:300]
                row.reason = exc.reason
                return ""
            # ARM may have removed it (the permit stays): read it back, as after a success, or a
            # removal made would leave only a ``failed`` row, and its redelivery an ``ignored`` 404
            deleted_now, lost = None, exc
        if deleted_now is False:
            # gone before any request of this DELETE could remove it: someone else did, not this removal
            self.svc.rails.give_back(row, event.resource_id, grant, flip_flop=False)
        try:
            self.authz.get_assignment(assignment.id, deadline=ctx.deadline)
            if lost is not None:
                # the lost request may not have been carried out yet: not known to have failed
                for _f, rec in permitted:
                    rec.outcome, rec.message = "requested", (f"DELETE sent, its answer lost ({lost.reason}); "
                                                             "still there when read back")
                return ""
            for _f, rec in permitted:
                rec.outcome, rec.message = "failed", "delete accepted but the assignment is still there"
            row.reason = "not_confirmed"
            return ""
        except ResourceNotFound:
            pass
        except ArmError as exc:
            for _f, rec in permitted:
                rec.outcome, rec.message = "requested", (f"DELETE sent, its answer lost ({lost.reason}); read-back "
                                                         f"failed: {exc.reason}" if lost is not None
                                                         else f"deleted, read-back failed: {exc.reason}")
            return ""
        for _f, rec in permitted:
            rec.outcome = "remediated"
            rec.message = ("assignment deleted and confirmed gone" if deleted_now
                           else "gone after a DELETE whose answer was lost" if lost is not None
                           else "assignment was already gone (nothing to delete)")
        return self._count_regrant(row, assignment, permitted) if deleted_now else ""

    def _removed_lately(self, ctx, assignment, act) -> tuple[list, list]:
        """Split ``act`` into the findings whose removal takes no breaker permit and the rest.

        The breaker stops a runaway guardrail removing many assignments. A grant (scope,
        principal, role: ``grant_key``) it already removed within a policy's breaker window and
        that is granted again is the re-grant fight the flip-flop budget counts
        (``_count_regrant``), not more of the guardrail's reach: its removal is always made and
        takes no new permit — otherwise one grant repeated ``max_actions`` times would open the
        breaker and leave the next (and every other) grant of the policy in place. "Removed
        within the window": the grant's escalation entry counted a confirmed removal
        (``last_attempt``) no longer than the policy's ``breaker.window_seconds`` ago. One table
        read, for removals only; no store, an unreadable entry or a key that is none: every
        finding takes its permit as before."""
        if self.svc.escalations is None:
            return [], list(act)
        try:
            state = self.svc.escalations.status(assignment.grant_key)
        except (ValueError, StoreError) as exc:
            emit(log, logging.WARNING, "guardrail_regrant_unread", resource_id=assignment.id, error=str(exc)[:300])
            return [], list(act)
        last = state.get("last_attempt") if isinstance(state, dict) else None
        if not isinstance(last, (int, float)) or isinstance(last, bool):
            return [], list(act)
        ago = ctx.now.timestamp() - float(last)
        again, rest = [], []
        for f, rec in act:
            (again if -60.0 <= ago <= f.policy.breaker.window_seconds else rest).append((f, rec))
        return again, rest

    def _note(self, ctx, assignment, permitted) -> None:
        """A deletion leaves nothing to read back: should this worker die before its audit row,
        the attempt that takes the event over finds only a 404. Keep, with the event's claim, who
        held which role where (a long ABAC condition cut to ``MAX_NOTED_CONDITION``) and which
        rules it broke. A recovery aid only: a note the store refuses is logged and the removal
        goes ahead; only a claim taken over by another delivery stops it."""
        def compact(before: Any) -> Any:
            if not isinstance(before, dict):
                return before
            cond = before.get("condition")
            if isinstance(cond, str) and len(cond) > MAX_NOTED_CONDITION:
                return {**before, "condition": cond[:MAX_NOTED_CONDITION] + " [cut]"}
            return before

        intent = {"by": getattr(ctx, "delivery_id", ""),
                  "changes": [{"policy": rec.policy, "rule": rec.rule, "before": compact(rec.before)}
                              for _f, rec in permitted]}
        note_intent_or_warn(self.svc, ctx, intent, resource_id=assignment.id)

    def _recover(self, ctx, row) -> None:
        """This delivery took the event over from one that died holding it and finds the
        assignment gone. If that one noted the deletion it set out to make and wrote no row, it
        deleted and died before auditing: record the violation and its removal (``remediated``),
        not a bare ``resource_not_found``. One table read, on takeovers only."""
        try:
            noted = json.loads(ctx.taken_intent)
            by = str(noted.get("by") or "") if isinstance(noted, dict) else ""
            # the attempt that noted it, not only the one taken over: it may have audited and died
            # after, and the one after it died again before writing anything
            if any(r.verdict != "shadow" for d in {by or ctx.takeover, ctx.takeover}
                   for r in self.svc.audit.rows_of_delivery(row.resource_id, d)):
                return
        except (StoreError, ValueError) as exc:
            emit(log, logging.WARNING, "guardrail_takeover_intent_unread", error=type(exc).__name__)
            return
        changes = noted.get("changes") if isinstance(noted, dict) else None
        held = [n for n in changes if isinstance(n, dict) and {"policy", "rule", "before"} <= n.keys()] \
            if isinstance(changes, list) else []
        if not held:
            return
        note = (f"an earlier delivery of this event ({(by or ctx.takeover)[:64]}) set out to delete this "
                "assignment and stopped before its audit row; it was gone when retried")
        row.violations = [ViolationRecord(policy=str(n["policy"]), rule=str(n["rule"]), property="roleAssignment",
                                          before=n["before"], after=None, outcome="remediated", message=note[:300])
                          for n in held]
        row.policies = sorted({v.policy for v in row.violations})
        row.verdict, row.reason = "remediated", ""
        row.message = ("; ".join(f"{v.policy}/{v.rule} (remediated)" for v in row.violations) + "; " + note)[:2000]

    # ---------------------------------------------------------------------------------
    def _count_regrant(self, row, assignment, removed) -> str:
        """Count this confirmed removal against the grant's flip-flop budget; past it, say so
        (the returned note names the grant key). The removal stands whatever the count: counting
        never blocks or undoes it, so a store failure here is logged and the decision kept."""
        if self.svc.escalations is None:
            return ""
        rule = strictest(getattr(f.policy, "flip_flop", DEFAULT_FLIP_FLOP) for f, _rec in removed)
        try:
            key = assignment.grant_key
            decision = self.svc.escalations.attempt(key, row.actor.to_dict(), rule=rule)
        except (ValueError, StoreError) as exc:
            emit(log, logging.WARNING, "guardrail_regrant_not_counted", resource_id=assignment.id,
                 error=str(exc)[:300])
            return ""
        if decision.allowed:
            return ""
        state = "escalated now" if decision.escalated_now else "still escalated"
        who = describe_actors(decision.actors)
        for _f, rec in removed:
            rec.message = (f"deleted and confirmed gone again: granted again after {decision.reverts} removals "
                           f"in {rule.window_minutes} min, by {who} ({state})")[:300]
        row.reason = "flip_flop"
        row.notify = row.notify or decision.escalated_now      # told once; every removal still recorded
        emit(log, logging.WARNING, "guardrail_escalated", resource_id=assignment.id, grant=key,
             reverts=decision.reverts, window_minutes=rule.window_minutes, actors=who,
             escalated_now=decision.escalated_now)
        if decision.escalated_now:
            notify_owner(log, rules=[r.rule for _f, r in removed],
                         resource_id=assignment.id, grant=key, actors=who)
        return f" — grant {state}; see or end it: guardrails escalation status|reset '{key}'"
