"""The sweep's role assignments (``Sweeper.run``): those made in one subscription, what a lost or
dead-lettered role-assignment event left in place (``sweep_roles``), and those at the tenant
root ``/``, which no subscription topic ever delivers (``sweep_root_roles``, once per run)."""

from __future__ import annotations

import logging

from .errors import ArmError
from .logs import emit
from .sweep import SWEEP_EVENT_TYPE

log = logging.getLogger("guardrails")

ROOT_SCOPE = "/"


def sweep_roles(sw, tally, compiled, sub: str, sweep_id: str, dry_run: bool, deadline: float) -> None:
    """Role assignments made in one subscription whose events were dropped or dead-lettered
    (an Owner granted while the function was down stays otherwise). One list (``$filter``-less:
    at, above and below the subscription); inherited ones are left to the management-group sweep
    (a configured group's) and to ``sweep_root_roles`` (the root's). The pure role evaluation
    runs on the listed body (role definitions from the catalogue or the guardrail's cache); only
    an assignment with a finding no exemption covers goes through the role guardrail, which reads
    it again, decides, removes and audits, as on an event. One it cannot pre-judge (an odd body,
    an unreadable custom role, Graph failing, Graph not holding a principal whose assignment is
    younger than the replication grace) goes through too; one whose decision fails is a
    ``failed`` row and the rest are still judged. A principal Graph does not hold past the grace
    (measured from the listed ``createdOn``, as on the event path) is in no group here as there."""
    from .service import _selects_subscription   # a CompiledRolePolicy's selector is its policy's

    roles = getattr(sw.service, "roles", None)
    policies = [p for p in compiled.role_policies if p.mode != "off" and _selects_subscription(p, sub)]
    if roles is None or not policies:
        return
    if sw._clock() > deadline:                  # no list begun past the deadline
        tally.truncate()
        return
    _fresh_definitions(roles)
    scope = f"/subscriptions/{sub}"
    try:
        for body in sw.lister.list_role_assignments(scope, at_scope=False, deadline=deadline):
            if sw._clock() > deadline:
                tally.truncate()
                return
            at = str((body.get("properties") or {}).get("scope") or "").rstrip("/").lower()
            if not isinstance(body.get("id"), str) or not (at == scope.lower() or at.startswith(scope.lower() + "/")):
                continue                                  # inherited from above the subscription
            _judge(sw, tally, roles, policies, body, sweep_id, dry_run, deadline)
    except ArmError as exc:
        sw._list_failed(tally, sub, "Microsoft.Authorization/roleAssignments", exc, deadline)
        return
    if sw._clock() > deadline:                  # the lister stopped at the deadline
        tally.truncate()


def sweep_root_roles(sw, tally, compiled, sweep_id: str, dry_run: bool, deadline: float) -> None:
    """Role assignments AT the tenant root ``/``, once per run: no subscription system topic
    delivers them, the subscriptions' lists skip them as inherited and a management group's keeps
    its own scope only. User Access Administrator at ``/`` is what Entra's "elevate access" leaves
    behind, and it reaches every subscription of the tenant.

    Policies: role policies in force WITHOUT a subscription selector, as for a management group
    (a selector names subscriptions, and ``/`` is none of them; ``policy.roles.evaluate_assignment``
    never gives a selected policy's finding at ``/`` either). None of those: no list, no read. One list
    ``atScope()`` at ``/`` (its pages take read tokens of the tenant bucket) ─▶ only those whose
    ``properties.scope`` is exactly ``/`` ─▶ ``_judge``, as in a subscription (the role guardrail
    removes with its safety rails: above ``/`` is nothing, so an Owner there goes only while
    another Owner at ``/`` stays). A list that fails is one error in the summary, never the rest
    of the sweep's; a 401/403 (the identity may not read ``/``, as the shipped deployment grants it
    below) is a WARNING ``guardrail_sweep_root_unreadable`` every run, not an error."""
    from .service import _selects_subscription   # None: only selector-less policies govern "/"

    roles = getattr(sw.service, "roles", None)
    policies = [p for p in compiled.role_policies if p.mode != "off" and _selects_subscription(p, None)]
    if roles is None or not policies:
        return
    if sw._clock() > deadline:
        tally.truncate()
        return
    _fresh_definitions(roles)
    try:
        for body in sw.lister.list_role_assignments(ROOT_SCOPE, at_scope=True, deadline=deadline):
            if sw._clock() > deadline:
                tally.truncate()
                return
            props = body.get("properties")
            if not isinstance(body.get("id"), str) or not isinstance(props, dict) or props.get("scope") != ROOT_SCOPE:
                continue                                  # atScope() at "/" lists "/" only; guard anyway
            _judge(sw, tally, roles, policies, body, sweep_id, dry_run, deadline)
    except ArmError as exc:
        if exc.status in (401, 403):
            # the shipped deployment grants the identity at subscription / management-group scope:
            # not being allowed to read "/" is how most tenants run, so it is said (a WARNING every
            # run), not counted as a failed sweep, which would make every run look broken
            emit(log, logging.WARNING, "guardrail_sweep_root_unreadable", scope=ROOT_SCOPE, status=exc.status,
                 detail="role assignments at the tenant root are not judged: grant the identity "
                        "Microsoft.Authorization/roleAssignments/read (and delete) at '/' to have them judged")
            return
        if sw.cut_short(tally, exc, deadline, what="role assignments at the tenant root '/'"):
            return
        tally.error(f"list role assignments at the tenant root '/': {exc}")
        emit(log, logging.ERROR, "guardrail_sweep_list_failed", scope=ROOT_SCOPE,
             resource_type="Microsoft.Authorization/roleAssignments", reason=exc.reason, status=exc.status)
        return
    if sw._clock() > deadline:
        tally.truncate()


def _judge(sw, tally, roles, policies, body: dict, sweep_id: str, dry_run: bool, deadline: float) -> None:
    """One listed assignment: counted when the pure evaluation finds nothing to act on, else
    decided by the role guardrail. A failure here concerns this assignment only."""
    from .policy.roles import Assignment, evaluate_assignment

    own = sw.service.settings.own_principal_ids
    try:
        assignment = Assignment.from_arm(body)
        role = roles.authz.get_role_definition(assignment.role_definition_id, deadline=deadline)
        findings = [f for f in evaluate_assignment(assignment, role, policies, groups=roles.groups,
                                                   now=sw._wall(), own_principal_ids=own,
                                                   definitions=_definitions(roles, assignment, deadline))
                    if f.exemption is None]
    except (ValueError, ArmError):
        findings = None                                   # cannot pre-judge: the guardrail decides
    if findings == []:
        tally.seen(compliant=1)
        return
    tally.seen()
    try:
        sw._decide(tally, body["id"], None, sweep_id, dry_run, SWEEP_EVENT_TYPE)
    except ArmError as exc:                               # never the rest of the list's fault
        tally.decided("failed")
        emit(log, logging.ERROR, "guardrail_sweep_decide_failed", resource_id=str(body["id"])[:300],
             reason=exc.reason)


def _fresh_definitions(roles) -> None:
    """Before a scope's assignments are pre-judged: drop the worker's cached role definitions, so
    a custom role widened while another worker handled its definition event is judged on what it
    grants now (at most one read per custom role per scope swept, not one per assignment). The
    catalogue's built-ins cost nothing either way."""
    forget = getattr(getattr(roles, "authz", None), "forget_definitions", None)
    if forget is not None:
        forget()


def _definitions(roles, assignment, deadline: float):
    """The guardrail's role resolver (a condition's roles) with the sweep's deadline."""
    resolver = getattr(roles, "definitions", None)
    if resolver is None:
        return None
    from types import SimpleNamespace

    return resolver(SimpleNamespace(deadline=deadline), assignment)
