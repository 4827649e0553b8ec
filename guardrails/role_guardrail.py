"""The role-assignment guardrail: one more policy kind on the same pipeline.

    read the assignment (the event's ``authorization.evidence`` is the CALLER's permission, never
    the assignment) ─▶ resolve its role (built-in catalogue, or the custom definition, cached)
    ─▶ evaluate role policies (pure; an allowed verdict at subscription scope or above that rests
    on a cached custom definition, and a removal that rests only on one, is given on the
    definition read again) ─▶ safety rails ─▶
    delete (a breaker permit, unless the same grant was removed within the breaker window) ─▶
    confirm gone ─▶ count the re-grant

A decision that cannot be made (ARM or Graph failing while the role, a condition's roles or a
group's members are resolved; a role definition ARM returns malformed) is a ``failed`` row with
the error's reason: audited, and redelivered like any failed delivery. Graph not knowing the
principal is such a failure only within ``policy.roles.REPLICATION_GRACE_SECONDS`` of the
assignment's creation; after it the principal was deleted, is in no group, and the row says so.
Within the grace, and whenever Graph fails, only the membership rule waits: a grant another rule
removes anyway (a privileged role at subscription scope, say) is removed at once, the row naming
the rule left undecided.

Here: the entry point and the decision. The safety rails, the deletion, its read-back, the
re-grant count and a takeover's recovery are ``role_removal``; resolving the role definitions a
decision needs, and reading again those a verdict rests on that may be cached, ``role_definitions``
(both mixed into ``RoleAssignmentGuardrail``).
"""

from __future__ import annotations

from typing import Any

from .errors import ArmError, ResourceNotFound
from .model.decision import ViolationRecord, combine_verdict
from .role_definitions import RoleDefinitionChanges
from .role_removal import RoleRemoval

ROLE_ASSIGNMENT_TYPE = "microsoft.authorization/roleassignments"
ROLE_DEFINITION_TYPE = "microsoft.authorization/roledefinitions"


class RoleAssignmentGuardrail(RoleDefinitionChanges, RoleRemoval):
    def __init__(self, service, authz, groups) -> None:
        self.svc = service
        self.authz = authz
        self.groups = groups

    def decide(self, ctx, row, event, policies) -> None:
        from .policy.roles import Assignment, PrincipalNotFound, evaluate_assignment

        rid = str(event.resource_id)
        try:
            body = self.authz.get_assignment(rid, deadline=ctx.deadline)
        except ResourceNotFound:
            row.verdict, row.reason, row.message = "ignored", "resource_not_found", "the role assignment no longer exists"
            if getattr(ctx, "taken_intent", ""):
                self._recover(ctx, row)
            return
        except ArmError as exc:
            row.verdict, row.reason, row.message = "failed", exc.reason, str(exc)
            return
        try:
            assignment = Assignment.from_arm(body)
        except ValueError as exc:
            row.verdict, row.reason, row.message = "failed", "unexpected_shape", f"role assignment body: {exc}"[:300]
            return
        try:
            role = self.authz.get_role_definition(assignment.role_definition_id, deadline=ctx.deadline)
        except ArmError as exc:
            row.verdict, row.reason, row.message = "failed", exc.reason, f"role definition: {exc}"[:300]
            return
        except ValueError as exc:                       # a malformed definition (or definition id)
            row.verdict, row.reason, row.message = "failed", "unexpected_shape", f"role definition: {exc}"[:300]
            return
        row.policies = [p.ref for p in policies]
        own = self.svc.settings.own_principal_ids
        # how old the assignment is, when ARM does not say (createdOn): a Graph 404 on its
        # principal is replication lag within the grace, a deleted principal after it
        written = getattr(getattr(event, "envelope", None), "time", None)
        reread = False                            # the definitions were read again here: once is enough
        try:
            try:
                findings = evaluate_assignment(assignment, role, policies, groups=self.groups, now=ctx.now,
                                               own_principal_ids=own, definitions=self.definitions(ctx, assignment),
                                               written_at=written)
            except PrincipalNotFound:
                # within the grace with nothing removing it on the definitions at hand: a cached
                # custom role widened on another worker's watch may remove it now (the re-read below
                # is never reached on a raise); read them again, once, and judge on what they grant
                cached = self._cached_definitions(assignment, role, policies)
                if not cached:
                    raise
                role = self._reread(ctx, assignment, role, cached)
                findings = evaluate_assignment(assignment, role, policies, groups=self.groups, now=ctx.now,
                                               own_principal_ids=own, definitions=self.definitions(ctx, assignment),
                                               written_at=written)
                reread = True
            acting = [f for f in findings if f.removes]
            stale = ([] if reread else self._definitions_behind(assignment, role, acting) if acting
                     else self._cached_definitions(assignment, role, policies))
            if stale:
                # kept, or about to be removed, on definitions this instance may have cached: read
                # them again and decide on what they grant now (once, whichever way it turns)
                role = self._reread(ctx, assignment, role, stale)
                findings = evaluate_assignment(assignment, role, policies, groups=self.groups, now=ctx.now,
                                               own_principal_ids=own, definitions=self.definitions(ctx, assignment),
                                               written_at=written)
        except ArmError as exc:                          # Graph (group membership) or ARM (a condition's roles)
            row.verdict, row.reason, row.message = "failed", exc.reason, f"could not evaluate: {exc}"[:300]
            return
        except ValueError as exc:                        # a malformed definition read again
            row.verdict, row.reason, row.message = "failed", "unexpected_shape", f"role definition: {exc}"[:300]
            return
        subject: dict[str, Any] = {
            "role_name": role.role_name, "role_id": role.id, "principal_id": assignment.principal_id,
            "principal_type": assignment.principal_type, "scope": assignment.scope,
            "condition": assignment.condition,
        }
        described = (f"{role.role_name} for {assignment.principal_type} {assignment.principal_id} "
                     f"at {assignment.scope}")
        if not findings:
            row.verdict, row.reason, row.message = "compliant", "", f"allowed: {described}"
            return

        records = []
        act = []
        for f in findings:
            rec = ViolationRecord(policy=f.policy.ref, rule=f.rule, property="roleAssignment", before=dict(subject),
                                  after=None, outcome="violation", message=f.message[:300])
            records.append(rec)
            if f.exemption is not None:
                rec.outcome = "exempted"
                rec.message = f"exempted by {f.exemption.owner}: {f.exemption.reason}"[:300]
            elif f.policy.mode == "audit" or getattr(ctx, "dry_run", False):
                rec.outcome, rec.message = "dry_run", f"audit mode: would delete ({f.message})"[:300]
            else:
                act.append((f, rec))
        row.violations = records          # as they stand before the removal (a timer keeps them as its intent)
        note = self._remove(ctx, row, event, assignment, role, act, policies) if act else ""
        if any(f.principal_missing for f in findings):
            note = f"; principal {assignment.principal_id} not found in the directory: a member of no group{note}"
        pending = next((f for f in findings if f.directory_pending), None)
        if pending is not None:
            why = (f"Graph failed ({pending.directory_failure}) reading principal {assignment.principal_id}'s groups"
                   if pending.directory_failure else
                   f"principal {assignment.principal_id} not yet in the directory (replicating)")
            note += (f"; {', '.join(ref + '/not-granted' for ref in pending.directory_pending)} undecided: {why};"
                     " judged on the other rules")
        row.verdict = combine_verdict([r.outcome for r in records])
        if row.verdict != "failed" and row.reason not in ("circuit_open", "flip_flop"):
            row.reason = ""
        row.notify = row.notify or any(r.outcome == "violation" for r in records)
        row.message = (f"{described}: " + "; ".join(f"{r.policy}/{r.rule} ({r.outcome})" for r in records)
                       + note)[:2000]
