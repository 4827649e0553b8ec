"""The sweep's role assignments made in one subscription (``Sweeper.run``): what a lost or
dead-lettered role-assignment event left in place."""

from __future__ import annotations

from .errors import ArmError
from .sweep import SWEEP_EVENT_TYPE


def sweep_roles(sw, tally, compiled, sub: str, sweep_id: str, dry_run: bool, deadline: float) -> None:
    """Role assignments made in one subscription whose events were dropped or dead-lettered
    (an Owner granted while the function was down stays otherwise). One list (``$filter``-less:
    at, above and below the subscription); inherited ones (a management group's, the root's) are
    left to the management-group sweep. The pure role evaluation runs on the listed body (role
    definitions from the catalogue or the guardrail's cache); only an assignment with a finding
    no exemption covers goes through the role guardrail, which reads it again, decides, removes
    and audits, as on an event. One it cannot pre-judge (an odd body, an unreadable custom role)
    goes through too."""
    from .policy.roles import Assignment, evaluate_assignment
    from .service import _selects_subscription

    roles = getattr(sw.service, "roles", None)
    policies = [p for p in compiled.role_policies if p.mode != "off" and _selects_subscription(p, sub)]
    if roles is None or not policies:
        return
    scope = f"/subscriptions/{sub}"
    own = sw.service.settings.own_principal_ids
    try:
        for body in sw.lister.list_role_assignments(scope, at_scope=False):
            if sw._clock() > deadline:
                tally.truncate()
                return
            at = str((body.get("properties") or {}).get("scope") or "").rstrip("/").lower()
            if not isinstance(body.get("id"), str) or not (at == scope.lower() or at.startswith(scope.lower() + "/")):
                continue                                  # inherited from above the subscription
            try:
                assignment = Assignment.from_arm(body)
                role = roles.authz.get_role_definition(assignment.role_definition_id, deadline=deadline)
                findings = [f for f in evaluate_assignment(assignment, role, policies, groups=roles.groups,
                                                           now=sw._wall(), own_principal_ids=own)
                            if f.exemption is None]
            except (ValueError, ArmError):
                findings = None                           # cannot pre-judge: the guardrail decides
            if findings == []:
                tally.seen(compliant=1)
                continue
            tally.seen()
            sw._decide(tally, body["id"], None, sweep_id, dry_run, SWEEP_EVENT_TYPE)
    except ArmError as exc:
        sw._list_failed(tally, sub, "Microsoft.Authorization/roleAssignments", exc)
