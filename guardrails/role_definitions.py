"""Custom role definitions on the role-assignment guardrail (``RoleDefinitionChanges``, mixed into
``RoleAssignmentGuardrail``): a custom role definition written, the assignments judged on what it
granted before are judged again (``on_definition``); the resolver ``evaluate_assignment`` uses for
the roles an ABAC condition names (``definitions``); and the definitions a verdict rests on that
this worker may hold from its cache, read again before the verdict is given (``_cached_definitions``,
``_definitions_behind``, ``_reread``)."""

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


def _definition_home(scope: str) -> str:
    """Where a custom role a condition names is read: the assignment's subscription, else its
    management group, else the tenant (``""``: ``/providers/…`` built-ins)."""
    parts = [s for s in (scope or "").split("/") if s]
    low = [s.lower() for s in parts]
    if len(parts) >= 2 and low[0] == "subscriptions":
        return f"/subscriptions/{parts[1]}"
    if len(parts) >= 4 and low[:3] == ["providers", "microsoft.management", "managementgroups"]:
        return "/" + "/".join(parts[:4])
    return ""


class RoleDefinitionChanges:
    """Mixed into ``RoleAssignmentGuardrail``: uses its ``svc`` (the service: ``reconcile``, its
    clock) and ``authz`` (definitions read, and dropped from its cache)."""

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

    # ---------------------------------------------------------------------------------
    def definitions(self, ctx, assignment):
        """The role resolver ``evaluate_assignment`` uses for the roles an ABAC condition names:
        the catalogue or an ARM read (cached) under the assignment's subscription (or management
        group); None for a role that does not exist. A malformed definition is an ``ArmError``
        (reason ``unexpected_shape``), so every failure to decide takes one path."""
        home = _definition_home(assignment.scope)

        def resolve(guid: str):
            try:
                return self.authz.get_role_definition(
                    f"{home}/providers/Microsoft.Authorization/roleDefinitions/{guid}", deadline=ctx.deadline)
            except ResourceNotFound:
                return None
            except ValueError as exc:
                raise ArmError(f"role definition {guid}: {exc}"[:300], reason="unexpected_shape") from None
        return resolve

    def _cached_definitions(self, assignment, role, policies) -> list[str]:
        """The GUIDs of role definitions a verdict keeping ``assignment`` (allowed, exempted,
        audit mode) rests on that this instance may hold from its cache (``AuthorizationGateway``,
        ``definition_ttl``) —
        the assignment's role when it is not one of the catalogue's built-ins, and, for a
        ``conditional_roles`` role, the non-catalogue roles its ABAC condition lets it assign —
        when the assignment is at subscription scope or above, where a widened role is
        privileged. Another instance may have handled the definition's widening
        (``on_definition`` drops the cached copy only where it runs), so such a verdict is not
        given on the cache. Empty (no re-read) for everything else: an assignment below a
        subscription, a catalogue role, a gateway without a cache to drop (``forget_definition``).
        (A verdict that removes the assignment: ``_definitions_behind``.)"""
        from .model.roles import BUILTIN_ROLES
        from .policy.abac import condition_allowed_roles
        from .policy.roles import at_or_above_subscription

        if getattr(self.authz, "forget_definition", None) is None or not at_or_above_subscription(assignment.scope):
            return []
        guids: list[str] = []
        own = role.id.lower()
        if own not in BUILTIN_ROLES and not role.is_builtin:
            guids.append(own)
        if own in frozenset().union(*(_conditional_ids(p) for p in policies)) and assignment.condition:
            guids.extend(g for g in sorted(condition_allowed_roles(assignment.condition) or ())
                         if g not in BUILTIN_ROLES)
        return list(dict.fromkeys(guids))

    def _definitions_behind(self, assignment, role, acting) -> list[str]:
        """The GUIDs of the non-catalogue role definitions read from ARM (and so possibly cached,
        ``definition_ttl``) on which alone the removal the findings ``acting`` call for rests: the
        assignment's custom role behind a ``privileged-at-subscription`` finding, and the
        non-catalogue roles an RBAC administrator's condition names behind a
        ``rbac-admin-without-condition`` finding. A role narrowed on another worker's watch is
        then not removed on this worker's wider copy. Empty (no read) when the removal rests on
        anything a definition cannot change — a ``not-granted`` or ``strict-scope-no-grant``
        finding, a role the policy lists, a catalogue built-in (or another built-in: tenants do
        not edit those), a condition that restricts nothing or allows a privileged built-in — or
        the gateway has no cache to drop."""
        from .model.roles import BUILTIN_ROLES
        from .policy.abac import condition_allowed_roles
        from .policy.roles import is_privileged

        if getattr(self.authz, "forget_definition", None) is None:
            return []
        own = role.id.lower()
        guids: list[str] = []
        for f in acting:
            pr = f.policy.privileged
            listed = frozenset(pr.role_ids) | frozenset(pr.conditional_role_ids)
            if f.rule == "privileged-at-subscription":
                if own in listed or own in BUILTIN_ROLES or role.is_builtin:
                    return []
                guids.append(own)
            elif f.rule == "rbac-admin-without-condition":
                allowed = condition_allowed_roles(assignment.condition)
                if allowed is None or any(
                        g in listed or (g in BUILTIN_ROLES and is_privileged(BUILTIN_ROLES[g], f.policy))
                        for g in allowed):
                    return []             # privileged whatever the custom roles it names grant
                guids.extend(g for g in sorted(allowed) if g not in BUILTIN_ROLES)
            else:
                return []                 # a grant or strict-scope finding: the removal stands
        return list(dict.fromkeys(guids))

    def _reread(self, ctx, assignment, role, guids: list[str]):
        """Drop ``guids`` from the definition cache and read the assignment's role again (a
        condition's roles are read again by the resolver, on the next evaluation): one ARM GET
        per definition, and only for an assignment about to be kept at subscription scope or
        above on a definition that is not the catalogue's (``_cached_definitions``), or about to
        be removed on one (``_definitions_behind``)."""
        for guid in guids:
            self.authz.forget_definition(guid)
        if role.id.lower() in guids:
            role = self.authz.get_role_definition(assignment.role_definition_id, deadline=ctx.deadline)
        return role
