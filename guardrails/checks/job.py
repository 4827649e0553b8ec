"""Job pre-flight evaluation, pure: job policy + request + identity -> every broken condition.

Rules (stable names, each finding names the condition and the values involved, the request's
values quoted, so ``guardrails.secrets.credentials.redact`` can hide one that looks like a key):

- ``allowed-identity``   the policy lists allowed identities and the identity is neither listed
                         nor a member of a listed group
- ``access-group``       the identity is not a member (transitive) of the access policy's Entra group
- ``role``               the request names a role other than the access policy's
- ``permissions``        a requested permission is not among the access policy's permissions
- ``secret-references``  a requested secret reference is not among the job's (Key Vault pointers)
- ``network-zone``       the job runs from a zone that is neither a required network zone nor the
                         private endpoint of one of its network rules

The service adds ``job-policy`` (no policy, or more than one, for the job id) and ``identity``
(no identity to check). Group membership goes through the ``GroupResolver`` port (Graph,
cached); it is asked last and only when everything cheaper is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from guardrails.checks.policies import JobPolicy, SecretReference

__all__ = ["JobRequest", "JobFinding", "GroupResolver", "evaluate_job", "RULES"]

RULES = ("job-policy", "identity", "allowed-identity", "access-group", "role", "permissions",
         "secret-references", "network-zone")


class GroupResolver(Protocol):
    def is_member(self, principal_id: str, group_id: str) -> bool: ...


@dataclass(frozen=True)
class JobRequest:
    job_id: str
    network_zone: str
    permissions: tuple[str, ...]
    secret_references: tuple[SecretReference, ...] = ()
    role: str | None = None


@dataclass(frozen=True)
class JobFinding:
    rule: str
    message: str


def evaluate_job(policy: JobPolicy, request: JobRequest, *, identity: str | None,
                 groups: GroupResolver) -> list[JobFinding]:
    """Broken conditions of running ``request`` as ``identity`` (an object id; None skips the
    identity rules: the service reports why there is none). Empty = allowed.

    Each names the rule and what was asked that breaks it, never what the policy allows: the
    answer goes to any holder of the function key (and an identity outside the job), and a list
    of the job's secret references, zones, private endpoints, role and access group would map
    where its credentials live and whom to target. The audit row names the policy and its
    version, where an operator reads the rest."""
    found: list[JobFinding] = []
    ap = policy.access_policy
    if request.role is not None and request.role.strip().lower() != ap.role.lower():
        found.append(JobFinding("role", f"job {policy.job_id} does not run as '{request.role}'"))
    granted = {p.lower() for p in ap.permissions}
    for p in request.permissions:
        if p.lower() not in granted:
            found.append(JobFinding("permissions", f"permission '{p}' is not granted for job {policy.job_id}"))
    known = {s.key for s in policy.secret_references}
    for s in request.secret_references:
        if s.key not in known:
            found.append(JobFinding("secret-references", f"secret reference '{s}' is not one of job"
                                    f" {policy.job_id}'s"))
    zones = policy.allowed_zones
    if request.network_zone.lower() not in {z.lower() for z in zones}:
        found.append(JobFinding("network-zone", f"network zone '{request.network_zone}' is not where job"
                                f" {policy.job_id} may run from"))
    if identity is None:
        return found
    allowed = policy.allowed_identities
    if allowed and identity not in allowed.principals and not any(groups.is_member(identity, g)
                                                                  for g in allowed.groups):
        found.append(JobFinding("allowed-identity", f"identity {identity} is not an allowed identity of job"
                                f" {policy.job_id} (listed, or member of a listed group)"))
    if not groups.is_member(identity, ap.entra_group_id):
        found.append(JobFinding("access-group", f"identity {identity} is not a member of the Entra group that"
                                f" holds job {policy.job_id}'s role"))
    return found
