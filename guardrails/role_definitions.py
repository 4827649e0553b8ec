"""A custom role definition was written: the assignments judged on what it granted before are
judged again (``RoleDefinitionChanges.on_definition``, mixed into the role-assignment guardrail)."""

from __future__ import annotations

import logging

from .errors import ArmError, ResourceNotFound, StoreError
from .logs import emit

log = logging.getLogger("guardrails")

DEFINITION_CHANGE_EVENT_TYPE = "Guardrails.RoleDefinitionChange"
MAX_REJUDGED = 100      # assignments re-judged in one definition event; the sweep takes the rest


def _conditional_ids(policy) -> frozenset[str]:
    """The ``conditional_roles`` GUIDs of a role policy (plain or compiled)."""
    policy = getattr(policy, "policy", policy)
    privileged = getattr(policy, "privileged", None)
    return frozenset(g.lower() for g in getattr(privileged, "conditional_role_ids", ()) or ())


class RoleDefinitionChanges:
    """Uses the guardrail's ``svc`` (the service: ``reconcile``, its clock) and ``authz``."""

    def on_definition(self, ctx, row, event, policies) -> None:
        """A custom role definition was written (``roleDefinitions/write``). Its assignments were
        judged on what it granted then, and the definition is cached (``definition_ttl``): a role
        widened to ``*`` afterwards would stand until the next sweep. So drop the cached
        definition, read it again, and when it is privileged under a policy now, re-judge every
        assignment of it in the event's subscription and the subscriptions among its assignable
        scopes — and every assignment of a ``conditional_roles`` role (RBAC Administrator) there
        whose ABAC condition lets it assign this role, which was judged on the role's old
        permissions too — each through the sweep's path (``service.reconcile``: its own audit
        row, ``correlation_id`` ``roledefinition:<event id>``). The event's row counts what
        happened."""
        from collections import Counter

        from .model.roles import role_guid
        from .policy.abac import condition_allowed_roles
        from .policy.roles import is_privileged

        rid = str(event.resource_id)
        try:
            guid = role_guid(rid)
        except ValueError:
            row.verdict, row.reason, row.message = "invalid", "invalid_value", "role definition id without a GUID"
            return
        self.authz.forget_definition(guid)
        try:
            role = self.authz.get_role_definition(rid, deadline=ctx.deadline)
        except ResourceNotFound:
            row.verdict, row.reason, row.message = "ignored", "resource_not_found", "the role definition no longer exists"
            return
        except ArmError as exc:
            row.verdict, row.reason, row.message = "failed", exc.reason, f"role definition: {exc}"[:300]
            return
        row.policies = [p.ref for p in policies]
        if role.is_builtin:
            row.verdict, row.reason, row.message = "ignored", "not_covered", "built-in role definitions do not change"
            return
        privileged = [p for p in policies if is_privileged(role, p)]
        if not privileged:
            row.verdict, row.reason = "compliant", ""
            row.message = (f"custom role {role.role_name} ({guid}) changed; not privileged under "
                           f"{', '.join(row.policies)}: its assignments stand as judged")[:2000]
            return
        subs = {event.resource_id.subscription_id} if event.resource_id.subscription_id else set()
        for scope in role.assignable_scopes:
            parts = [x for x in scope.split("/") if x]
            if len(parts) >= 2 and parts[0].lower() == "subscriptions":
                subs.add(parts[1].lower())
        conditional = frozenset().union(*(_conditional_ids(p) for p in policies))
        ids: list[str] = []
        try:
            for sub in sorted(subs):
                prefix = f"/subscriptions/{sub}".lower()
                for body in self.authz.list_assignments_in(f"/subscriptions/{sub}", deadline=ctx.deadline):
                    props = body.get("properties") or {}
                    if not isinstance(props, dict):
                        continue
                    at = str(props.get("scope") or "").rstrip("/").lower()
                    try:
                        of = role_guid(str(props.get("roleDefinitionId") or ""))
                    except ValueError:
                        of = ""
                    cond = props.get("condition")
                    # an RBAC administrator whose condition lets it assign this role
                    delegates = (of in conditional and isinstance(cond, str)
                                 and guid in (condition_allowed_roles(cond) or ()))
                    if ((of == guid or delegates) and isinstance(body.get("id"), str)
                            and (at == prefix or at.startswith(prefix + "/"))):
                        ids.append(body["id"])
        except ArmError as exc:
            row.verdict, row.reason = "failed", exc.reason
            row.message = f"custom role {role.role_name} became privileged; listing its assignments failed: {exc}"[:2000]
            return
        verdicts: Counter = Counter()
        left = 0
        for n, aid in enumerate(dict.fromkeys(ids)):
            if n >= MAX_REJUDGED or self.svc._clock() > ctx.deadline:
                left = len(dict.fromkeys(ids)) - n
                break
            try:
                decided = self.svc.reconcile(aid, None, sweep_id=f"roledefinition:{row.event_id}"[:128],
                                             remediate=not getattr(ctx, "dry_run", False),
                                             event_type=DEFINITION_CHANGE_EVENT_TYPE,
                                             deadline=getattr(ctx, "deadline", None),
                                             actor=row.actor)        # who widened the role
                verdicts[decided.verdict] += 1
            except (ArmError, StoreError) as exc:
                verdicts["failed"] += 1
                emit(log, logging.ERROR, "guardrail_rejudge_failed", resource_id=aid, error=type(exc).__name__)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) or "none in scope"
        row.message = (f"custom role {role.role_name} ({guid}) is now privileged under "
                       f"{', '.join(p.ref for p in privileged)}: {sum(verdicts.values())} assignment(s) in "
                       f"{len(subs)} subscription(s) re-judged ({counts})"
                       + (f"; {left} left to the sweep" if left else ""))[:2000]
        if verdicts.get("failed"):
            row.verdict, row.reason = "failed", "rejudge_failed"      # redelivered: re-judging is idempotent
        elif any(verdicts.get(v) for v in ("violation", "dry_run", "escalated")):
            # a privileged grant left standing outweighs the ones removed (as ``combine_verdict``
            # ranks them): the row never says the widening was undone while one stands
            row.verdict, row.reason = "violation", ""
            row.notify = True
        elif verdicts.get("remediated") or verdicts.get("requested"):
            row.verdict, row.reason = "remediated", ""
        else:
            row.verdict, row.reason = "compliant", ""
