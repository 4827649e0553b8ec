"""The compiled form of one resource policy and of its rules, as the evaluator runs them. Pure.

``_CompiledPolicy``: a ``kind: resource`` policy's selector (subscriptions, resource groups, tags,
lower-cased once) and its exemptions with their scopes parsed (``_compile_exemptions``);
``selects_body`` is what a generated check asks when one of a filtered policy's rules was
violated, ``exemption_for`` what ``evaluate`` asks on its slow path. ``_CompiledRule``: one rule
with its property reader (``_reader``: exactly ``get_path``, faster), its operator's predicate,
its action, the catalogue default of the property and the catalogue's ``applies_when``
condition (``_applies``). ``_Entry`` is one policy's compiled rules for one resource type: what
``guardrails.policy.codegen`` lays out and ``guardrails.policy.evaluate`` builds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from guardrails.errors import InvalidArmId
from guardrails.model.policy import Exemption, Policy, Rule
from guardrails.model.resource import ResourceSnapshot, get_path
from guardrails.policy.operators import compile_expect
from guardrails.remediation.actions import Action


def _reader(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """``body -> value or None`` (absent/null): exactly ``get_path(body, path, None)``, faster.

    Exact keys first; an explicit null is absent at once; the case-insensitive lookup (ARM
    echoes some keys in other cases) goes to ``get_path`` only when some key of that level does
    match the segment's (precomputed) lower-case spelling, which is checked in C."""
    segs = tuple((seg, seg.lower()) for seg in path.split("."))
    lower = str.lower

    def read(body: Mapping[str, Any]) -> Any:
        cur: Any = body
        for seg, low in segs:
            if type(cur) is not dict:
                return get_path(body, path, None)       # other Mappings, scalars, arrays
            v = cur.get(seg)
            if v is None:
                if seg in cur:
                    return None                         # explicit null: absent, no scan
                try:
                    if low not in map(lower, cur):
                        return None                     # no key matches case-insensitively
                except TypeError:                       # a non-string key: the general path
                    pass
                return get_path(body, path, None)
            cur = v
        return cur

    return read


def _applies(condition: tuple[str, frozenset[str]] | None) -> Callable[[Mapping[str, Any]], bool] | None:
    """``body -> the rule applies`` for a catalogue ``applies_when`` condition (None: always)."""
    if condition is None:
        return None
    read, values = _reader(condition[0]), condition[1]

    def applies(body: Mapping[str, Any]) -> bool:
        v = read(body)
        return isinstance(v, str) and v.lower() in values

    return applies


class _CompiledRule:
    __slots__ = ("rule", "read", "default", "ok", "action", "notify", "cp", "key", "applies")

    def __init__(self, rule: Rule, default: Any, action: Action, cp: "_CompiledPolicy",
                 applies: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
        self.rule, self.read, self.default, self.applies = rule, _reader(rule.property), default, applies
        self.ok = compile_expect(rule.expect)
        self.action, self.notify = action, action.notify
        self.cp = cp
        self.key: tuple[str, str] = (cp.policy.ref, rule.id)


class _CompiledPolicy:
    __slots__ = ("policy", "subs", "rgs", "tags", "exemptions")

    def __init__(self, policy: Policy, exemptions: list[tuple[Exemption, Any]]) -> None:
        sel = policy.selector
        self.policy = policy
        self.subs = frozenset(s.lower() for s in sel.subscriptions) or None
        self.rgs = frozenset(g.lower() for g in sel.resource_groups) or None
        self.tags = tuple((k.lower(), v) for k, v in sel.tags.items()) or None
        self.exemptions = exemptions

    @property
    def filtered(self) -> bool:
        return self.subs is not None or self.rgs is not None or self.tags is not None

    def selects(self, snapshot: ResourceSnapshot, sub: str | None, rg: str | None) -> bool:
        """Selector check on the live resource: scope (from the id when not given) and tags."""
        return self.selects_body(snapshot.body, sub, rg, snapshot.resource_id)

    def selects_body(self, body: Mapping[str, Any], sub: str | None, rg: str | None,
                     resource_id: str | None) -> bool:
        """``selects`` on a body; ``resource_id`` None: the body's ``id``."""
        if self.subs is not None or self.rgs is not None:
            if sub is None or rg is None:
                if resource_id is None:
                    resource_id = body.get("id")
                id_sub, id_rg = _id_scope(resource_id) if isinstance(resource_id, str) else (None, None)
                sub, rg = sub or id_sub, rg or id_rg
            if not self.scope_ok(sub, rg, False):
                return False
        if self.tags is not None:
            tags = body.get("tags") or {}
            tags = _lower_tags(tags) if isinstance(tags, Mapping) else {}
            if any(tags.get(k, _ABSENT) != v for k, v in self.tags):
                return False
        return True

    def scope_ok(self, sub: str | None, rg: str | None, unknown: bool) -> bool:
        """Subscription / resource group filter; ``unknown`` is the answer for a ``None``."""
        if self.subs is not None:
            if sub is None:
                if not unknown:
                    return False
            elif sub.lower() not in self.subs:
                return False
        if self.rgs is not None:
            if rg is None:
                if not unknown:
                    return False
            elif rg.lower() not in self.rgs:
                return False
        return True

    def exemption_for(self, resource_id: str, now: datetime) -> Exemption | None:
        """The first active exemption whose scope contains the resource (segment-wise)."""
        active = [(ex, scope) for ex, scope in self.exemptions if ex.active(now)]
        if not active:
            return None
        from guardrails.model.arm_id import parse_arm_id

        try:
            rid = parse_arm_id(resource_id)
        except InvalidArmId:            # cannot prove containment: not exempt
            return None
        return next((ex for ex, scope in active if scope.contains(rid)), None)


def _id_scope(resource_id: str) -> tuple[str | None, str | None]:
    """(subscription, resource group) of an ARM id, without full parsing."""
    parts = resource_id.split("/", 5)
    sub = parts[2] if len(parts) > 2 and parts[1].lower() == "subscriptions" else None
    rg = parts[4] if sub and len(parts) > 4 and parts[3].lower() == "resourcegroups" else None
    return sub, rg


def _lower_tags(tags: Mapping[str, Any]) -> dict[str, Any]:
    return {k.lower(): v for k, v in tags.items() if isinstance(k, str)}


_Entry = tuple[_CompiledPolicy, bool, tuple[_CompiledRule, ...]]


_ABSENT = object()


def _compile_exemptions(exemptions: Sequence[Exemption]) -> list[tuple[Exemption, Any]]:
    if not exemptions:
        return []
    from guardrails.model.arm_id import parse_scope   # lazy: only policies with exemptions need it

    return [(ex, parse_scope(ex.scope)) for ex in exemptions]
