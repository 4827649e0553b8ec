"""Role-assignment evaluation: assignment + role + role policies -> findings. Pure.

Rules of a ``kind: role-assignments`` policy (``metadata/README.md``), for one assignment:

- ``privileged-at-subscription`` — at subscription scope or above (a management group, the
  tenant root ``/``), a privileged role (``privileged.roles``, or a custom role — or a built-in
  the catalogue does not hold, read from ARM like one — whose effective
  actions reach ``privileged.custom_role_actions`` or whose effective data actions reach
  ``privileged.custom_role_data_actions``: ``model.roles.grants_pattern``) is a finding unless
  the principal is a ``ServicePrincipal`` on ``privileged.allowed_service_principals``.
- ``rbac-admin-without-condition`` — the same for a ``privileged.conditional_roles`` role (Role
  Based Access Control Administrator) whose assignment has no ABAC condition restricting which
  roles it may assign, and whose assignments it may delete, to roles that are not privileged
  themselves (``condition_allowed_roles``).
- ``not-granted`` — a role with ``grants`` entries is excess unless one entry covers the scope
  (segment-wise) and the principal (listed, a listed group itself, member of a listed group, or
  of a listed type). Membership is Graph's (``GroupResolver``); a principal the directory does not
  hold (``PrincipalNotFound``, Graph's 404) is a member of no group once the assignment is older
  than ``REPLICATION_GRACE_SECONDS`` (``_Directory``), and undecidable before: the rule waits, and
  so does the decision unless another rule removes the assignment anyway.
- ``strict-scope-no-grant`` — a role without entries is excess within a ``strict_scopes`` scope.

An assignment's scope is read without surrounding whitespace or trailing ``/``
(``normalize_scope``); one that is neither the tenant root nor a scope ``parse_scope`` reads is a
``ValueError`` (``Assignment.from_arm``, ``evaluate_assignment``): a decision that fails, never one
that passes it because no rule could place it.

Never a finding: the guardrail's own principals (any policy), and a principal on the policy's
own ``break_glass`` list. A principal that is break-glass in ANOTHER evaluated policy still gets
that policy's findings, marked ``break_glass=True`` so the service reports and never deletes.
Exemptions (scope containment, active at ``now``) are attached, not applied. Mode ``off`` is
skipped; ``audit`` findings are returned like ``enforce`` ones (``finding.policy.mode``).

The test of an ABAC condition is ``guardrails.policy.abac``; an assignment's ``grant_key`` is
``guardrails.policy.grant_keys``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Protocol, Sequence

from guardrails.errors import ArmError, ArmTransient, InvalidArmId
from guardrails.model.arm_id import ArmId, parse_scope
from guardrails.model.policy import AnyPolicy, Exemption, RoleGrant, RolePolicy
from guardrails.model.roles import BUILTIN_ROLES, RoleDefinition, grants_pattern
from guardrails.policy.abac import condition_allowed_roles
from guardrails.policy.grant_keys import grant_key

__all__ = [
    "Assignment", "GroupResolver", "PrincipalNotFound", "REPLICATION_GRACE_SECONDS", "RoleFinding",
    "CompiledRolePolicy", "compile_role_policies",
    "role_policies", "evaluate_assignment", "is_privileged", "at_or_above_subscription",
    "names_role_assignment", "normalize_scope",
]

RULES = ("privileged-at-subscription", "rbac-admin-without-condition", "not-granted", "strict-scope-no-grant")

# How long after an assignment was made a directory that does not know its principal is believed to
# be still replicating it: Entra replication lags an object's creation by seconds to minutes, and an
# assignment is never older than its principal. Past it, the principal does not exist (deleted).
REPLICATION_GRACE_SECONDS = 600.0
NOT_IN_DIRECTORY = (" (the principal was not found in the directory: Graph answered 404 past the"
                    " replication grace, so it is a member of no group)")


class PrincipalNotFound(ArmTransient):
    """The directory does not hold the principal (Graph's 404 on ``checkMemberGroups``). Transient
    to every caller that cannot tell a principal not yet replicated from one deleted for good;
    ``evaluate_assignment`` tells them apart by the assignment's age (``_Directory``)."""

    def __init__(self, message: str, *, status: int | None = 404) -> None:
        super().__init__(message, status=status)


def _key(object_id: str | None) -> str:
    """Principal ids compare lower-case and dashless (captured deliveries drop the dashes)."""
    return (object_id or "").strip().lower().replace("-", "")


def normalize_scope(scope: str) -> str:
    """An assignment scope as the rules read it: surrounding whitespace and trailing ``/``
    dropped, the tenant root kept as ``/`` (``"/subscriptions/<id>/"`` is the subscription)."""
    return scope.strip().rstrip("/") or "/"


def _check_scope(scope: str) -> None:
    """``ValueError`` unless ``scope`` (normalised) is the tenant root or parses as a scope: a
    scope the rules cannot place would pass the subscription-scope and strict-scope rules."""
    if scope != "/":
        try:
            parse_scope(scope)
        except InvalidArmId as exc:
            raise ValueError(f"role assignment scope {scope[:200]!r} cannot be judged: {exc}"[:300]) from None


# ---------------------------------------------------------------- the assignment
@dataclass(frozen=True)
class Assignment:
    """Typed view of a role assignment as ARM GET returns it (api-version 2022-04-01)."""

    id: str
    scope: str
    role_definition_id: str
    principal_id: str
    principal_type: str            # "User" | "Group" | "ServicePrincipal" | "ForeignGroup" | "Device"
    condition: str | None = None
    condition_version: str | None = None
    description: str | None = None
    created_on: datetime | None = None     # ARM's ``createdOn`` (UTC); None when absent or unreadable

    @property
    def grant_key(self) -> str:
        """``grant_key`` of this assignment (``ValueError`` when its scope or ids are not ones)."""
        return grant_key(self.scope, self.principal_id, self.role_definition_id)

    @classmethod
    def from_arm(cls, body: Mapping[str, Any]) -> Assignment:
        """From the REST body (``{"id", "name", "type", "properties": {...}}``); a flattened
        body (properties at top level) is accepted too. The scope is normalised
        (``normalize_scope``). Raises ``ValueError`` on a missing or ill-typed field, and on a
        scope that is neither the tenant root nor one ``parse_scope`` reads (its decision fails:
        never judged as if it were below every rule)."""
        if not isinstance(body, Mapping):
            raise ValueError(f"role assignment must be an object, got {type(body).__name__}")
        props = body.get("properties", body)
        if not isinstance(props, Mapping):
            raise ValueError("role assignment 'properties' must be an object")

        def text(src: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
            v = src.get(key)
            if v is None and not required:
                return None
            if not isinstance(v, str) or (required and not v.strip()):
                raise ValueError(f"role assignment '{key}' must be a non-empty string")
            return v

        ident = text(body, "id")
        assert ident is not None
        scope = normalize_scope(text(props, "scope") or "")
        _check_scope(scope)
        return cls(
            id=ident,
            scope=scope,
            role_definition_id=text(props, "roleDefinitionId") or "",
            principal_id=text(props, "principalId") or "",
            principal_type=text(props, "principalType") or "",
            condition=text(props, "condition", required=False) or None,
            condition_version=text(props, "conditionVersion", required=False),
            description=text(props, "description", required=False),
            created_on=_instant(props.get("createdOn")),
        )


def _instant(value: Any) -> datetime | None:
    """An ARM timestamp (``2026-11-24T09:00:00.0000000Z``) as an aware UTC datetime; None for
    anything else (an optional field: never a reason to fail a decision). A naive one is UTC."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str) and 0 < len(value) <= 40:
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    try:
        return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None


class GroupResolver(Protocol):
    """Transitive group membership. May raise ``ArmError``; ``PrincipalNotFound`` when the
    directory does not hold the principal."""

    def is_member(self, principal_id: str, group_id: str) -> bool: ...


class _Directory:
    """``groups`` as one assignment's judgement reads it. A ``PrincipalNotFound`` is raised on
    (undecidable: the decision fails and is retried) while the assignment may be younger than
    ``grace`` seconds at ``now`` — measured from ``since``, ARM's ``createdOn`` or else the time the
    caller learnt of it (an event's time); unknown, it may be. Past that, the principal does not
    exist: a member of no group (``missing`` says it was so read). Never a member on a 404."""

    def __init__(self, groups: GroupResolver, *, since: datetime | None, now: datetime,
                 grace: float = REPLICATION_GRACE_SECONDS) -> None:
        self._groups = groups
        try:
            self.settled = since is not None and (now - since).total_seconds() >= grace
        except TypeError:                   # a naive ``now`` against an aware ``since``: unknown
            self.settled = False
        self.missing = False

    def is_member(self, principal_id: str, group_id: str) -> bool:
        try:
            return self._groups.is_member(principal_id, group_id)
        except PrincipalNotFound:
            if not self.settled:
                raise
            self.missing = True
            return False


class RoleResolver(Protocol):
    """A role definition by GUID (lower-case, dashed), None when there is none; may raise
    ``ArmError``. Used for roles an ABAC condition lets an RBAC administrator assign."""

    def __call__(self, guid: str) -> RoleDefinition | None: ...


@dataclass(frozen=True)
class RoleFinding:
    policy: RolePolicy
    rule: str                      # one of RULES
    message: str
    exemption: Exemption | None    # an active exemption covers the assignment: record, do not delete
    break_glass: bool              # the principal is break-glass in another policy: never delete
    principal_missing: bool = False  # the directory does not hold the principal (past the grace)
    # policies whose ``not-granted`` rule waits for the directory (Graph's 404 within the grace, or
    # Graph failing), left undecided because another finding removes the assignment anyway
    directory_pending: tuple[str, ...] = ()
    directory_failure: str = ""    # Graph's error (its reason) that left them undecided; "" for a 404 in the grace

    @property
    def removes(self) -> bool:
        """Whether policy calls for the assignment's removal: enforced, not exempted, not a
        break-glass principal (the guardrail's own rails may still keep it)."""
        return self.exemption is None and not self.break_glass and self.policy.mode == "enforce"


# ---------------------------------------------------------------- compiled policies
def names_role_assignment(scope: str) -> bool:
    """Whether ``scope`` is (or lies under) a role assignment id
    (``…/providers/Microsoft.Authorization/roleAssignments/<name>``): never an exemption scope of
    a role policy, since an assignment's name is a GUID its creator picks and may be reused by
    anyone once that assignment is gone (``semantics`` refuses it; ``_exemption`` ignores it)."""
    segs = [x.lower() for x in str(scope or "").split("/") if x]
    return any(segs[i:i + 3] == ["providers", "microsoft.authorization", "roleassignments"]
               for i in range(len(segs) - 2))


def _scope(text: str) -> ArmId | None:
    try:
        return parse_scope(text)
    except InvalidArmId:
        return None


class CompiledRolePolicy:
    """A ``RolePolicy`` with its scopes parsed and ids normalised once."""

    __slots__ = ("policy", "subs", "privileged_ids", "conditional_ids", "custom_actions", "custom_data_actions",
                 "allowed_sps",
                 "break_glass", "grants", "strict", "exemptions")

    def __init__(self, policy: RolePolicy) -> None:
        self.policy = policy
        self.subs = frozenset(s.lower() for s in policy.selector.subscriptions) or None
        pr = policy.privileged
        self.privileged_ids = frozenset(pr.role_ids)
        self.conditional_ids = frozenset(pr.conditional_role_ids)
        self.custom_actions = pr.custom_role_actions
        self.custom_data_actions = pr.custom_role_data_actions
        self.allowed_sps = frozenset(_key(p) for p in pr.allowed_service_principals)
        self.break_glass = frozenset(_key(p) for p in policy.break_glass)
        grants: dict[str, list[tuple[RoleGrant, tuple[ArmId, ...], frozenset[str], frozenset[str]]]] = {}
        for g in policy.grants:
            scopes = tuple(s for s in map(_scope, g.scopes) if s is not None)
            grants.setdefault(g.role_id, []).append(
                (g, scopes, frozenset(_key(p) for p in g.principals), frozenset(t.lower() for t in g.principal_types)))
        self.grants = grants
        self.strict = tuple(s for s in map(_scope, policy.strict_scopes) if s is not None)
        self.exemptions = tuple((e, s) for e, s in ((e, _scope(e.scope)) for e in policy.exemptions)
                                if s is not None and not names_role_assignment(e.scope))

    # passthrough so callers can treat compiled and plain policies alike
    @property
    def id(self) -> str:
        return self.policy.id

    @property
    def ref(self) -> str:
        return self.policy.ref

    @property
    def mode(self) -> str:
        return self.policy.mode

    def __repr__(self) -> str:
        return f"CompiledRolePolicy({self.policy.ref})"


def compile_role_policies(policies: Iterable[AnyPolicy | CompiledRolePolicy]) -> tuple[CompiledRolePolicy, ...]:
    """The role-assignment policies among ``policies`` (mode ``off`` dropped), compiled."""
    out = []
    for p in policies:
        if isinstance(p, CompiledRolePolicy):
            if p.policy.mode != "off":
                out.append(p)
        elif isinstance(p, RolePolicy) and p.mode != "off":
            out.append(CompiledRolePolicy(p))
    return tuple(out)


def role_policies(policies: Iterable[AnyPolicy]) -> list[RolePolicy]:
    """The ``kind: role-assignments`` policies of a mixed list, in order (all modes)."""
    return [p for p in policies if isinstance(p, RolePolicy)]


# ---------------------------------------------------------------- evaluation
def is_privileged(role: RoleDefinition, policy: RolePolicy | CompiledRolePolicy, *,
                  condition: str | None = None, definitions: RoleResolver | None = None) -> bool:
    """Privileged under ``policy``: listed in ``privileged.roles``; a custom role (or a built-in
    outside the catalogue) whose effective actions reach ``custom_role_actions`` or whose
    effective data actions reach ``custom_role_data_actions``; or a ``conditional_roles`` role unless ``condition`` restricts
    the roles it may assign to roles none of which is privileged (``_delegates_privilege``)."""
    cp = policy if isinstance(policy, CompiledRolePolicy) else CompiledRolePolicy(policy)
    rid = role.id.lower()
    if rid in cp.privileged_ids:
        return True
    if rid in cp.conditional_ids:
        return _delegates_privilege(condition, cp, definitions)
    return _custom_privileged(role, cp)


def _custom_privileged(role: RoleDefinition, cp: CompiledRolePolicy) -> bool:
    """Whether ``role``'s effective permissions reach the policy's ``custom_role_actions`` or
    ``custom_role_data_actions``. Every role but the catalogue's built-ins is judged so: a custom
    role, and a built-in the catalogue does not hold (Key Vault Data Access Administrator can
    write role assignments), whose definition is read from ARM like a custom one. The
    catalogue's built-ins are privileged only when the policy lists them (``privileged.roles``,
    ``conditional_roles``): the list is the decision for the roles it can name by name. A
    built-in whose permissions are unknown (a definition without any, as one made up without an
    ARM read would be) reaches nothing here, as before: not privileged unless listed."""
    if role.is_builtin and role.id.lower() in BUILTIN_ROLES:
        return False
    return (any(grants_pattern(role, pattern) for pattern in cp.custom_actions)
            or any(grants_pattern(role, pattern, data=True) for pattern in cp.custom_data_actions))


def _delegates_privilege(condition: str | None, cp: CompiledRolePolicy, definitions: RoleResolver | None) -> bool:
    """Whether an RBAC administrator under ``condition`` may assign a privileged role: no
    role-restricting condition, or one whose allow-list names a privileged role (Owner, User
    Access Administrator, a conditional role such as RBAC Administrator itself, a custom role
    reaching the policy's actions). A GUID that is neither in the catalogue nor resolvable through
    ``definitions`` counts as privileged: what it grants cannot be told."""
    allowed = condition_allowed_roles(condition)
    if allowed is None:
        return True
    for guid in sorted(allowed):
        if guid in cp.privileged_ids or guid in cp.conditional_ids:
            return True
        defn = BUILTIN_ROLES.get(guid)
        if defn is None and definitions is not None:
            defn = definitions(guid)
        if defn is None or _custom_privileged(defn, cp):
            return True
    return False


def at_or_above_subscription(scope: str) -> bool:
    """Whether an assignment ``scope`` is a subscription, a management group (or below one) or
    the tenant root ``/``: where ``privileged-at-subscription`` judges it."""
    scope = normalize_scope(scope)
    return _at_or_above_subscription(_scope(scope), scope)


def _at_or_above_subscription(scope: ArmId | None, raw: str) -> bool:
    """Subscription scope exactly, or above it (management group, tenant root ``/``)."""
    if raw.strip() == "/":
        return True
    if scope is None:
        return False
    if scope.scope is None and scope.provider is None:       # /subscriptions/{id}
        return scope.resource_group is None and scope.subscription_id is not None
    return scope.subscription_id is None                       # management group (or below one)


def _grant_covers(entries, scope: ArmId | None, assignment: Assignment, groups: GroupResolver) -> bool:
    if scope is None:
        return False
    principal = _key(assignment.principal_id)
    ptype = assignment.principal_type.lower()
    pending = []
    for grant, scopes, principals, types in entries:
        if not any(s.contains(scope) for s in scopes):
            continue
        if principal in principals or ptype in types:
            return True
        if any(principal == _key(g) for g in grant.groups):
            return True            # the listed group itself (Graph never calls a group its own member)
        pending.extend(grant.groups)
    return any(groups.is_member(assignment.principal_id, g) for g in dict.fromkeys(pending))


def _exemption(cp: CompiledRolePolicy, scope: ArmId | None, now: datetime) -> Exemption | None:
    """The first active exemption whose scope contains the assignment's SCOPE. Never matched by
    the assignment's own id: assignment names are GUIDs the caller picks, so once an exempted
    assignment is gone anyone could create another one — another principal, another role —
    under the same id (``semantics`` refuses such exemption scopes; this keeps one that got
    into a policy anyway from exempting anything)."""
    if scope is None:
        return None
    return next((e for e, s in cp.exemptions if e.active(now) and s.contains(scope)), None)


def _subscription_of(scope: ArmId | None) -> str | None:
    return scope.subscription_id.lower() if scope is not None and scope.subscription_id else None


def evaluate_assignment(assignment: Assignment, role: RoleDefinition,
                        policies: Sequence[RolePolicy | CompiledRolePolicy | AnyPolicy], *,
                        groups: GroupResolver, now: datetime,
                        own_principal_ids: frozenset[str] | Iterable[str] = frozenset(),
                        definitions: RoleResolver | None = None,
                        written_at: datetime | None = None) -> list[RoleFinding]:
    """Every finding of every role policy on ``assignment`` (policy order, then rule order).

    ``role`` is the resolved definition of ``assignment.role_definition_id``; ``definitions``
    resolves the roles a conditional role's ABAC condition names (without it, one outside the
    catalogue counts as privileged). Resource policies in ``policies`` are ignored, so a mixed
    list may be passed. ``groups`` and ``definitions`` may raise ``ArmError`` (Graph, ARM); a
    scope that is neither the tenant root nor a legal scope raises ``ValueError`` (as
    ``Assignment.from_arm`` does): no rule can place it, so none may pass it.

    A ``PrincipalNotFound`` from ``groups`` is raised on while the assignment may be younger than
    ``REPLICATION_GRACE_SECONDS`` at ``now`` (its ``created_on``, else ``written_at``: the event's
    time; neither known, it may be); past it the principal is a member of no group, and every
    finding carries ``principal_missing`` (a ``not-granted`` one says so in its message). Within
    the grace, only the ``not-granted`` rule waits: the other rules and policies are judged, and
    when one of their findings removes the assignment (enforced, not exempted, not break-glass)
    the findings are returned without it, each naming the waiting policies in
    ``directory_pending`` (a privileged grant to a principal just created is not left in place for
    the grace); otherwise the ``PrincipalNotFound`` is raised on. Any other ``ArmError`` from
    ``groups`` (Graph failing: a 503, a 429, a 403 for want of consent) is treated alike, grace or
    not: a grant another rule removes is removed whatever Graph would say (the findings name the
    error in ``directory_failure``); otherwise the error is raised on and the decision fails.
    """
    principal = _key(assignment.principal_id)
    if principal in {_key(p) for p in own_principal_ids}:
        return []
    compiled = compile_role_policies(policies)  # type: ignore[arg-type]
    glass_anywhere = any(principal in cp.break_glass for cp in compiled)
    raw = normalize_scope(assignment.scope)
    _check_scope(raw)
    scope = _scope(raw)                       # None for the tenant root '/'
    sub = _subscription_of(scope)
    top = _at_or_above_subscription(scope, raw)
    rid = role.id.lower()
    described = f"{role.role_name} ({role.id}) for {assignment.principal_type} {assignment.principal_id} at {assignment.scope}"
    directory = _Directory(groups, since=assignment.created_on or _instant(written_at), now=now)
    out: list[RoleFinding] = []
    waiting: list[tuple[str, PrincipalNotFound]] = []     # (policy ref, Graph's 404) within the grace
    for cp in compiled:
        if cp.subs is not None and (sub is None or sub not in cp.subs):
            continue
        if principal in cp.break_glass:
            continue
        found: list[tuple[str, str]] = []
        if top and is_privileged(role, cp, condition=assignment.condition, definitions=definitions):
            allowed = assignment.principal_type.lower() == "serviceprincipal" and principal in cp.allowed_sps
            if not allowed:
                if rid in cp.conditional_ids:
                    found.append(("rbac-admin-without-condition",
                                  f"{described}: may assign privileged roles (no ABAC condition restricting"
                                  " the roles it may assign to unprivileged ones)"))
                else:
                    found.append(("privileged-at-subscription",
                                  f"{described}: privileged role at subscription scope or above"))
        entries = cp.grants.get(rid)
        if entries:
            try:
                covered = _grant_covers(entries, scope, assignment, directory)
            except ArmError as exc:
                # within the grace (``PrincipalNotFound``: the directory has not replicated the
                # principal yet) or Graph failing (a 503, a 429, a 403 for want of consent): this
                # rule waits for the directory, the others are judged now
                waiting.append((cp.policy.ref, exc))
                covered = True
            if not covered:
                found.append(("not-granted", f"{described}: outside the role's grant entries"
                              + (NOT_IN_DIRECTORY if directory.missing else "")))
        elif scope is not None and any(s.contains(scope) for s in cp.strict):
            found.append(("strict-scope-no-grant", f"{described}: strict scope and the role has no grant entry"))
        if not found:
            continue
        exemption = _exemption(cp, scope, now)
        out.extend(RoleFinding(cp.policy, rule, msg, exemption, glass_anywhere) for rule, msg in found)
    if directory.missing:
        out = [replace(f, principal_missing=True) for f in out]
    if waiting:
        if not any(f.removes for f in out):
            raise waiting[0][1]
        # another rule removes the grant whatever the directory says: no reason to wait for it
        pending = tuple(dict.fromkeys(ref for ref, _exc in waiting))
        failure = next((exc.reason for _ref, exc in waiting if not isinstance(exc, PrincipalNotFound)), "")
        out = [replace(f, directory_pending=pending, directory_failure=failure) for f in out]
    return out
