"""Role-assignment evaluation: assignment + role + role policies -> findings. Pure.

Rules of a ``kind: role-assignments`` policy (``metadata/README.md``), for one assignment:

- ``privileged-at-subscription`` — at subscription scope or above (a management group, the
  tenant root ``/``), a privileged role (``privileged.roles``, or a custom role whose effective
  actions reach ``privileged.custom_role_actions`` or whose effective data actions reach
  ``privileged.custom_role_data_actions``: ``model.roles.grants_pattern``) is a finding unless
  the principal is a ``ServicePrincipal`` on ``privileged.allowed_service_principals``.
- ``rbac-admin-without-condition`` — the same for a ``privileged.conditional_roles`` role (Role
  Based Access Control Administrator) whose assignment has no ABAC condition restricting which
  roles it may assign to roles that are not privileged themselves (``condition_allowed_roles``).
- ``not-granted`` — a role with ``grants`` entries is excess unless one entry covers the scope
  (segment-wise) and the principal (listed, a listed group itself, member of a listed group, or
  of a listed type).
- ``strict-scope-no-grant`` — a role without entries is excess within a ``strict_scopes`` scope.

Never a finding: the guardrail's own principals (any policy), and a principal on the policy's
own ``break_glass`` list. A principal that is break-glass in ANOTHER evaluated policy still gets
that policy's findings, marked ``break_glass=True`` so the service reports and never deletes.
Exemptions (scope containment, active at ``now``) are attached, not applied. Mode ``off`` is
skipped; ``audit`` findings are returned like ``enforce`` ones (``finding.policy.mode``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol, Sequence

from guardrails.errors import InvalidArmId
from guardrails.model.arm_id import ArmId, parse_arm_id, parse_scope
from guardrails.model.policy import AnyPolicy, Exemption, RoleGrant, RolePolicy
from guardrails.model.roles import BUILTIN_ROLES, RoleDefinition, action_matches, grants_pattern, normalize_guid

__all__ = [
    "Assignment", "GroupResolver", "RoleFinding", "CompiledRolePolicy", "compile_role_policies",
    "role_policies", "evaluate_assignment", "is_privileged", "condition_restricts_roles", "condition_allowed_roles",
    "GRANT_KEY_PREFIX", "grant_key", "parse_grant_key",
]

RULES = ("privileged-at-subscription", "rbac-admin-without-condition", "not-granted", "strict-scope-no-grant")
ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"


def _key(object_id: str | None) -> str:
    """Principal ids compare lower-case and dashless (captured deliveries drop the dashes)."""
    return (object_id or "").strip().lower().replace("-", "")


# ---------------------------------------------------------------- the grant
GRANT_KEY_PREFIX = "rolegrant:"


def _guid(text: str, what: str) -> str:
    """A GUID in its canonical form (lower-case, dashed); captured deliveries drop the dashes."""
    import uuid

    try:
        return str(uuid.UUID(text.strip()))
    except (ValueError, AttributeError):
        raise ValueError(f"{what} is not a GUID: {str(text)[:60]!r}") from None


def grant_key(scope: str, principal_id: str, role_definition_id: str) -> str:
    """What an assignment grants, whatever its assignment id: ``rolegrant:<scope>|<principal
    id>|<role definition GUID>``. A principal re-granted the role it just lost gets a new
    assignment id every time; this key is the same (scope lower-case, GUIDs canonical, the role
    by its GUID whether its definition id names a subscription or not). ``ValueError`` on a
    scope or id that is not one."""
    try:
        bare = scope.strip().rstrip("/")
        canonical = str(parse_scope(bare)).lower() if bare else "/"       # "/": the tenant root
    except (InvalidArmId, AttributeError):
        raise ValueError(f"not an assignment scope: {str(scope)[:120]!r}") from None
    role = _guid(str(role_definition_id).rstrip("/").rsplit("/", 1)[-1], "role definition id")
    return f"{GRANT_KEY_PREFIX}{canonical}|{_guid(principal_id, 'principal id')}|{role}"


def parse_grant_key(text: str) -> str:
    """A key as an operator types it (``guardrails escalation status|reset``) -> ``grant_key``'s
    form, or ``ValueError`` naming what is wrong. The scope may itself contain ``|``."""
    if not isinstance(text, str) or not text.strip().lower().startswith(GRANT_KEY_PREFIX):
        raise ValueError(f"a grant key starts with {GRANT_KEY_PREFIX!r}")
    parts = text.strip()[len(GRANT_KEY_PREFIX):].rsplit("|", 2)
    if len(parts) != 3:
        raise ValueError("a grant key is rolegrant:<scope>|<principal id>|<role definition GUID>")
    return grant_key(*parts)


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

    @property
    def grant_key(self) -> str:
        """``grant_key`` of this assignment (``ValueError`` when its scope or ids are not ones)."""
        return grant_key(self.scope, self.principal_id, self.role_definition_id)

    @classmethod
    def from_arm(cls, body: Mapping[str, Any]) -> Assignment:
        """From the REST body (``{"id", "name", "type", "properties": {...}}``); a flattened
        body (properties at top level) is accepted too. Raises ``ValueError`` on a missing or
        ill-typed field."""
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
        return cls(
            id=ident,
            scope=text(props, "scope") or "",
            role_definition_id=text(props, "roleDefinitionId") or "",
            principal_id=text(props, "principalId") or "",
            principal_type=text(props, "principalType") or "",
            condition=text(props, "condition", required=False) or None,
            condition_version=text(props, "conditionVersion", required=False),
            description=text(props, "description", required=False),
        )


class GroupResolver(Protocol):
    def is_member(self, principal_id: str, group_id: str) -> bool: ...


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


# ---------------------------------------------------------------- ABAC conditions
_TOKEN = re.compile(r"""\s*(?:
    (?P<lp>\()|(?P<rp>\))|(?P<not>!)|(?P<and>&&)|(?P<or>\|\|)
   |(?P<attr>@[A-Za-z]+\[[^\]]*\])
   |(?P<set>\{[^}]*\})
   |(?P<str>'[^']*')
   |(?P<word>[A-Za-z0-9_.:\-]+)
)""", re.VERBOSE)
_ROLE_ATTR = "@request[microsoft.authorization/roleassignments:roledefinitionid]"
_EQUALS = {"guidequals", "stringequals", "stringequalsignorecase"}
_NOT_EQUALS = {"guidnotequals", "stringnotequals", "stringnotequalsignorecase"}
_UNKNOWN = None            # three-valued logic: True / False / unknown


class _Unparsable(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _Unparsable(f"unexpected text at {pos}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "word" and value.upper() in ("AND", "OR", "NOT"):
            kind = value.lower()
        out.append((kind, value))
        pos = m.end()
    return out


class _Eval:
    """Evaluates a condition for ``roleAssignments/write`` of a role the condition never names,
    every other attribute unknown (Kleene logic). False = such a write is always denied."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.t, self.i = tokens, 0
        self.allowed: list[str] = []       # every value an allow-list on the role attribute names

    def peek(self) -> str | None:
        return self.t[self.i][0] if self.i < len(self.t) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.t) or (kind is not None and self.t[self.i][0] != kind):
            raise _Unparsable(f"expected {kind}")
        self.i += 1
        return self.t[self.i - 1]

    def run(self) -> bool | None:
        v = self.expr()
        if self.i != len(self.t):
            raise _Unparsable("trailing tokens")
        return v

    def expr(self) -> bool | None:
        v = self.conj()
        while self.peek() == "or":
            self.take()
            w = self.conj()
            v = True if (v is True or w is True) else (False if (v is False and w is False) else _UNKNOWN)
        return v

    def conj(self) -> bool | None:
        v = self.unary()
        while self.peek() == "and":
            self.take()
            w = self.unary()
            v = False if (v is False or w is False) else (True if (v is True and w is True) else _UNKNOWN)
        return v

    def unary(self) -> bool | None:
        if self.peek() in ("not",):
            self.take()
            v = self.unary()
            return _UNKNOWN if v is None else not v
        if self.peek() == "lp":
            self.take()
            v = self.expr()
            self.take("rp")
            return v
        return self.atom()

    def atom(self) -> bool | None:
        kind, value = self.take()
        if kind == "word" and value.lower() in ("actionmatches", "suboperationmatches"):
            (_, literal) = self.take("set")
            patterns = [p.strip().strip("'") for p in literal[1:-1].split(",")]
            if value.lower() == "suboperationmatches":
                return _UNKNOWN
            return any(action_matches(p, ROLE_ASSIGNMENT_WRITE) for p in patterns)
        if kind == "word" and value.lower() in ("exists", "notexists"):
            (_, attr) = self.take("attr")
            if attr.lower().replace(" ", "") != _ROLE_ATTR:
                return _UNKNOWN
            return value.lower() == "exists"
        if kind != "attr":
            raise _Unparsable(f"unexpected {value!r}")
        (_, op) = self.take("word")
        operand_kind, operand = self.take()
        if operand_kind not in ("set", "str", "word"):
            raise _Unparsable("missing operand")
        if value.lower().replace(" ", "") != _ROLE_ATTR:
            return _UNKNOWN
        base = op.lower().rsplit(":", 1)[-1]
        if base in _EQUALS:
            literal = operand[1:-1] if operand_kind in ("set", "str") else operand
            self.allowed.extend(v.strip().strip("'").strip() for v in literal.split(","))
            return False           # an allow-list: an unlisted role never equals it
        if base in _NOT_EQUALS:
            return True            # a deny-list: an unlisted role passes
        return _UNKNOWN


def condition_restricts_roles(condition: str | None) -> bool:
    """True when the ABAC ``condition`` limits which roles the assignee may assign: for
    ``Microsoft.Authorization/roleAssignments/write`` it requires
    ``@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]`` to be in an allow-list
    (``ForAnyOfAnyValues:GuidEquals {…}``, ``StringEqualsIgnoreCase``, …), the pattern Microsoft
    recommends for delegating role assignment management. Decided by evaluating the condition
    for a role it does not name with everything else unknown: only a definite "deny" counts, so
    a condition on principal types alone, a deny-list, or anything unparsable does not.
    """
    return condition_allowed_roles(condition) is not None


def condition_allowed_roles(condition: str | None) -> frozenset[str] | None:
    """The role GUIDs (lower-case, dashed) a role-restricting ``condition`` lets the assignee
    assign — every value of every allow-list on the role attribute, a superset when the
    condition combines several — or None when it restricts nothing (``condition_restricts_roles``).
    An allow-list value that is not a role GUID (or definition id ending in one) makes the whole
    condition count as unrestricting: what it allows cannot be told."""
    if not condition or not condition.strip():
        return None
    try:
        ev = _Eval(_tokens(condition))
        if ev.run() is not False:
            return None
    except _Unparsable:
        return None
    out = set()
    for value in ev.allowed:
        guid = normalize_guid(value.rstrip("/").rsplit("/", 1)[-1])
        if guid is None:
            return None
        out.add(guid)
    return frozenset(out)


# ---------------------------------------------------------------- compiled policies
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
        self.exemptions = tuple((e, s) for e, s in ((e, _scope(e.scope)) for e in policy.exemptions) if s is not None)

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
    """Privileged under ``policy``: listed in ``privileged.roles``; a custom role whose
    effective actions reach ``custom_role_actions`` or whose effective data actions reach
    ``custom_role_data_actions``; or a ``conditional_roles`` role unless ``condition`` restricts
    the roles it may assign to roles none of which is privileged (``_delegates_privilege``)."""
    cp = policy if isinstance(policy, CompiledRolePolicy) else CompiledRolePolicy(policy)
    rid = role.id.lower()
    if rid in cp.privileged_ids:
        return True
    if rid in cp.conditional_ids:
        return _delegates_privilege(condition, cp, definitions)
    return _custom_privileged(role, cp)


def _custom_privileged(role: RoleDefinition, cp: CompiledRolePolicy) -> bool:
    if role.is_builtin:
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


def _exemption(cp: CompiledRolePolicy, scope: ArmId | None, assignment_id: str, now: datetime) -> Exemption | None:
    active = [(e, s) for e, s in cp.exemptions if e.active(now)]
    if not active:
        return None
    targets = [scope] if scope is not None else []
    try:
        targets.append(parse_arm_id(assignment_id))
    except InvalidArmId:
        pass
    return next((e for e, s in active if any(s.contains(t) for t in targets)), None)


def _subscription_of(scope: ArmId | None) -> str | None:
    return scope.subscription_id.lower() if scope is not None and scope.subscription_id else None


def evaluate_assignment(assignment: Assignment, role: RoleDefinition,
                        policies: Sequence[RolePolicy | CompiledRolePolicy | AnyPolicy], *,
                        groups: GroupResolver, now: datetime,
                        own_principal_ids: frozenset[str] | Iterable[str] = frozenset(),
                        definitions: RoleResolver | None = None) -> list[RoleFinding]:
    """Every finding of every role policy on ``assignment`` (policy order, then rule order).

    ``role`` is the resolved definition of ``assignment.role_definition_id``; ``definitions``
    resolves the roles a conditional role's ABAC condition names (without it, one outside the
    catalogue counts as privileged). Resource policies in ``policies`` are ignored, so a mixed
    list may be passed. ``groups`` and ``definitions`` may raise ``ArmError`` (Graph, ARM).
    """
    principal = _key(assignment.principal_id)
    if principal in {_key(p) for p in own_principal_ids}:
        return []
    compiled = compile_role_policies(policies)  # type: ignore[arg-type]
    glass_anywhere = any(principal in cp.break_glass for cp in compiled)
    scope = _scope(assignment.scope)          # None for the tenant root '/' or an illegal scope
    sub = _subscription_of(scope)
    top = _at_or_above_subscription(scope, assignment.scope)
    rid = role.id.lower()
    described = f"{role.role_name} ({role.id}) for {assignment.principal_type} {assignment.principal_id} at {assignment.scope}"
    out: list[RoleFinding] = []
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
            if not _grant_covers(entries, scope, assignment, groups):
                found.append(("not-granted", f"{described}: outside the role's grant entries"))
        elif scope is not None and any(s.contains(scope) for s in cp.strict):
            found.append(("strict-scope-no-grant", f"{described}: strict scope and the role has no grant entry"))
        if not found:
            continue
        exemption = _exemption(cp, scope, assignment.id, now)
        out.extend(RoleFinding(cp.policy, rule, msg, exemption, glass_anywhere) for rule, msg in found)
    return out
