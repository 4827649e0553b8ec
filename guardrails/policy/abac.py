"""ABAC conditions of role assignments: does one restrict which roles its assignee may manage? Pure.

A ``privileged.conditional_roles`` role of a ``kind: role-assignments`` policy (Role Based Access
Control Administrator) is privileged unless its assignment's condition limits BOTH
``Microsoft.Authorization/roleAssignments/write`` (on the role being assigned,
``@Request[…:RoleDefinitionId]``) and ``Microsoft.Authorization/roleAssignments/delete`` (on the
role of the assignment being removed, ``@Resource[…:RoleDefinitionId]``) to allow-lists of roles
none of which is privileged (``guardrails.policy.roles``): the Azure portal's "Constrain roles"
templates write both halves. A condition that leaves delete open lets its holder remove any
assignment — the guardrail's own, the break-glass Owners — and so delegates privilege as much as
one that leaves write open. ``condition_allowed_roles`` evaluates a condition (a tokenizer and a
recursive-descent parser, ``_Eval``, in Kleene three-valued logic) once per action, for a role it
does not name, every other attribute unknown: only a definite "deny" of both actions restricts,
and then every role GUID the condition names on either action's role attribute is returned,
whatever the operator or the negations around it (``GuidEquals`` allow-lists, and equally
``GuidNotEquals`` under a ``!``, which allows exactly the roles it names). A comparison on a role
attribute the parser cannot judge (another operator or quantifier, an empty set) makes the
condition count as unrestricting. ``condition_restricts_roles`` is whether it restricts.
"""

from __future__ import annotations

import re

from guardrails.model.roles import action_matches, normalize_guid

__all__ = ["condition_restricts_roles", "condition_allowed_roles"]

ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"
ROLE_ASSIGNMENT_DELETE = "Microsoft.Authorization/roleAssignments/delete"

_TOKEN = re.compile(r"""\s*(?:
    (?P<lp>\()|(?P<rp>\))|(?P<not>!)|(?P<and>&&)|(?P<or>\|\|)
   |(?P<attr>@[A-Za-z]+\[[^\]]*\])
   |(?P<set>\{[^}]*\})
   |(?P<str>'[^']*')
   |(?P<word>[A-Za-z0-9_.:\-]+)
)""", re.VERBOSE)
# the attribute that names the role, per action: the role being assigned (write), the role of
# the assignment being removed (delete)
_ROLE_ATTRS = {
    ROLE_ASSIGNMENT_WRITE: "@request[microsoft.authorization/roleassignments:roledefinitionid]",
    ROLE_ASSIGNMENT_DELETE: "@resource[microsoft.authorization/roleassignments:roledefinitionid]",
}
_EQUALS = {"guidequals", "stringequals", "stringequalsignorecase"}
_NOT_EQUALS = {"guidnotequals", "stringnotequals", "stringnotequalsignorecase"}
# the cross-product quantifiers: on the single-valued role attribute, with a non-empty set, each
# gives an unnamed role the same answer as the bare operator (never equal, always not-equal)
_QUANTIFIERS = {"foranyofanyvalues", "forallofanyvalues", "foranyofallvalues", "forallofallvalues"}
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
    """Evaluates a condition for ``action`` (``roleAssignments/write`` or ``/delete``) on a role
    the condition never names, every other attribute unknown (Kleene logic). False = such a
    request is always denied."""

    def __init__(self, tokens: list[tuple[str, str]], action: str = ROLE_ASSIGNMENT_WRITE) -> None:
        self.t, self.i = tokens, 0
        self.action, self.role_attr = action, _ROLE_ATTRS[action]
        self.allowed: list[str] = []       # every value any comparison on the role attribute names

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
            return any(action_matches(p, self.action) for p in patterns)
        if kind == "word" and value.lower() in ("exists", "notexists"):
            (_, attr) = self.take("attr")
            if attr.lower().replace(" ", "") != self.role_attr:
                return _UNKNOWN
            return value.lower() == "exists"
        if kind != "attr":
            raise _Unparsable(f"unexpected {value!r}")
        (_, op) = self.take("word")
        operand_kind, operand = self.take()
        if operand_kind not in ("set", "str", "word"):
            raise _Unparsable("missing operand")
        if value.lower().replace(" ", "") != self.role_attr:
            return _UNKNOWN
        parts = op.lower().split(":")
        base = parts[-1]
        if len(parts) > 2 or (len(parts) == 2 and parts[0] not in _QUANTIFIERS):
            raise _Unparsable(f"quantifier {op!r} on the role attribute")
        if base not in _EQUALS and base not in _NOT_EQUALS:
            # StringLike, StringStartsWith, …: which roles pass cannot be told (fail closed)
            raise _Unparsable(f"operator {op!r} on the role attribute")
        literal = operand[1:-1] if operand_kind in ("set", "str") else operand
        values = [v.strip().strip("'").strip() for v in literal.split(",")]
        if not any(values):
            raise _Unparsable("empty value set on the role attribute")
        # Every role the comparison names may be one the condition allows, whichever way it is
        # meant: "equals {A}" allows A, and so does "!(not-equals {A})" ("A and nothing else").
        # A role it does not name never equals and always not-equals the set.
        self.allowed.extend(values)
        return base in _NOT_EQUALS


def condition_restricts_roles(condition: str | None) -> bool:
    """True when the ABAC ``condition`` limits which roles the assignee may manage: for
    ``Microsoft.Authorization/roleAssignments/write`` it requires
    ``@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]`` to be in an allow-list
    (``ForAnyOfAnyValues:GuidEquals {…}``, ``StringEqualsIgnoreCase``, …), and for
    ``…/roleAssignments/delete`` the same of
    ``@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId]`` — the pattern Microsoft
    recommends for delegating role assignment management (portal: "Constrain roles"). Decided by
    evaluating the condition for each action on a role it does not name with everything else
    unknown: only a definite "deny" of both counts, so a condition on principal types alone, a
    deny-list, one leaving delete (or write) open, or anything unparsable does not. A negated
    deny-list (``!(… GuidNotEquals {Owner})``: Owner and nothing else) does restrict, to the
    roles it names.
    """
    return condition_allowed_roles(condition) is not None


def condition_allowed_roles(condition: str | None) -> frozenset[str] | None:
    """The role GUIDs (lower-case, dashed) a role-restricting ``condition`` lets the assignee
    assign or remove assignments of — every value of every comparison on either action's role
    attribute (``Equals`` or ``NotEquals``, under any quantifier and any number of negations), a
    superset of what it allows — or None when it restricts nothing for write or for delete
    (``condition_restricts_roles``). A value that is not a role GUID (or definition id ending in
    one), or a comparison on a role attribute with another operator, makes the whole condition
    count as unrestricting: what it allows cannot be told."""
    if not condition or not condition.strip():
        return None
    values: list[str] = []
    try:
        tokens = _tokens(condition)
        for action in _ROLE_ATTRS:
            ev = _Eval(tokens, action)
            if ev.run() is not False:
                return None
            values.extend(ev.allowed)
    except _Unparsable:
        return None
    out = set()
    for value in values:
        guid = normalize_guid(value.rstrip("/").rsplit("/", 1)[-1])
        if guid is None:
            return None
        out.add(guid)
    return frozenset(out)
