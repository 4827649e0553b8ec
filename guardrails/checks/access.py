"""Who may do more than check themselves (``kind: check-access`` policies), pure.

- on behalf: a caller covered by an ``on_behalf`` grant (listed, or member of a listed group;
  ``checks`` limits the grant) may name the identity a check is about;
- remediate: a caller covered by a ``remediate`` grant whose ``scopes`` contain the resource
  (segment-wise, as role grants do) may ask a resource check to apply its fixes.

Nobody otherwise. Returns the granting policy (its ``ref`` goes into the audit row) or None.
"""

from __future__ import annotations

from typing import Iterable

from guardrails.checks.job import GroupResolver
from guardrails.checks.policies import CallerGrant, CheckAccessPolicy
from guardrails.errors import InvalidArmId
from guardrails.model.arm_id import ArmId, parse_scope


def _covers(grant: CallerGrant, caller: str, groups: GroupResolver) -> bool:
    return caller in grant.principals or any(groups.is_member(caller, g) for g in grant.groups)


def _contains(scope: str, target: ArmId) -> bool:
    try:
        return parse_scope(scope).contains(target)
    except InvalidArmId:                 # validated at load; never widen on a bad one
        return False


def on_behalf_grant(policies: Iterable[CheckAccessPolicy], caller: str | None, check: str,
                    groups: GroupResolver) -> CheckAccessPolicy | None:
    if caller is None:
        return None
    for p in policies:
        for g in p.on_behalf:
            if (not g.checks or check in g.checks) and _covers(g, caller, groups):
                return p
    return None


def remediate_grant(policies: Iterable[CheckAccessPolicy], caller: str | None, resource: ArmId,
                    groups: GroupResolver) -> CheckAccessPolicy | None:
    if caller is None:
        return None
    for p in policies:
        for g in p.remediate:
            if any(_contains(s, resource) for s in g.scopes) and _covers(g, caller, groups):
                return p
    return None
