"""Selection and evaluation: snapshot + policies -> the violated rules. Pure and fast.

``compile_policies`` turns each policy once into per-resource-type entries: a path reader, the
catalogue default of the property for that type, a compiled operator predicate and the action
object. ``evaluate`` then does dictionary lookups and predicate calls only, and allocates only
for violations (a compliant resource costs no objects beyond the empty result list).

Modes are not interpreted here beyond ``off`` (never selected): ``audit`` policies produce
results like ``enforce`` ones; the service decides what to apply (``result.policy.mode``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from guardrails.errors import InvalidArmId
from guardrails.model.decision import Change
from guardrails.model.policy import Exemption, Policy, Rule
from guardrails.model.resource import ResourceSnapshot, get_path, lookup_type
from guardrails.policy.operators import Predicate, compile_expect
from guardrails.remediation.actions import Action, actions

__all__ = ["RuleResult", "CompiledPolicySet", "compile_policies"]


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One violated rule of one policy on one resource."""

    policy: Policy
    rule: Rule
    before: Any                  # effective current value (after catalogue defaults)
    present: bool                # the property was present (non-null) on the resource
    change: Change | None        # planned fix; None for notify-only, no-op, or when exempted
    notify: bool                 # the rule is notify-only
    exemption: Exemption | None  # active exemption covering the resource (then nothing is applied)


def _reader(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """``body -> value or None`` (absent/null). Exact-key fast path, then ``get_path``'s
    case-insensitive lookup (ARM echoes some keys in other cases)."""
    segs = tuple(path.split("."))

    def read(body: Mapping[str, Any]) -> Any:
        cur: Any = body
        for seg in segs:
            if type(cur) is not dict:
                break
            cur = cur.get(seg)
            if cur is None:
                break
        else:
            return cur
        return get_path(body, path, None)

    return read


class _CompiledRule:
    __slots__ = ("rule", "read", "default", "ok", "action", "notify")

    def __init__(self, rule: Rule, read: Callable[[Mapping[str, Any]], Any], default: Any,
                 ok: Predicate, action: Action) -> None:
        self.rule, self.read, self.default, self.ok = rule, read, default, ok
        self.action, self.notify = action, action.notify


class _CompiledPolicy:
    __slots__ = ("policy", "subs", "rgs", "tags", "rules", "exemptions")

    def __init__(self, policy: Policy, rules: list[_CompiledRule], exemptions: list[tuple[Exemption, Any]]) -> None:
        sel = policy.selector
        self.policy = policy
        self.subs = frozenset(s.lower() for s in sel.subscriptions) or None
        self.rgs = frozenset(g.lower() for g in sel.resource_groups) or None
        self.tags = tuple((k.lower(), v) for k, v in sel.tags.items()) or None
        self.rules = rules
        self.exemptions = exemptions

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


class CompiledPolicySet:
    """Policies compiled once; share one instance across invocations."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies: tuple[Policy, ...] = tuple(policies)
        by_type: dict[str, list[_CompiledPolicy]] = {}
        for policy in self.policies:
            if policy.mode == "off":
                continue
            exemptions = _compile_exemptions(policy.exemptions)
            for type_name in dict.fromkeys(t.lower() for t in policy.selector.resource_types):
                rt = lookup_type(type_name)
                defaults = {k.lower(): v for k, v in (rt.defaults if rt else {}).items()}
                rules = [
                    _CompiledRule(r, _reader(r.property), defaults.get(r.property.lower()),
                                  compile_expect(r.expect), actions.build(r.action))
                    for r in policy.rules
                ]
                by_type.setdefault(type_name, []).append(_CompiledPolicy(policy, rules, exemptions))
        self._by_type = by_type
        for key, entries in list(by_type.items()):        # also index the catalogue spelling
            rt = lookup_type(key)
            if rt is not None:
                by_type[rt.name] = entries

    def _entries(self, resource_type: str) -> list[_CompiledPolicy] | None:
        entries = self._by_type.get(resource_type)
        if entries is None:
            entries = self._by_type.get(resource_type.lower())
        return entries

    def candidates(self, resource_type: str, subscription_id: str | None = None,
                   resource_group: str | None = None) -> list[Policy]:
        """Policies that may apply before the resource is read (no tag check; mode off
        excluded; exact type). An unknown (``None``) subscription/group does not exclude here;
        ``evaluate`` takes them from the resource id and excludes what it cannot prove."""
        entries = self._entries(resource_type)
        if not entries:
            return []
        return [cp.policy for cp in entries if cp.scope_ok(subscription_id, resource_group, True)]

    def evaluate(self, snapshot: ResourceSnapshot, *, now: datetime,
                 subscription_id: str | None = None, resource_group: str | None = None) -> list[RuleResult]:
        """The VIOLATED rules of every matching policy, in policy then rule order.

        Subscription and resource group default to those in ``snapshot.resource_id``; the tag
        selector is checked on the live tags. Compliant rules produce nothing.
        """
        entries = self._entries(snapshot.type)
        if not entries:
            return []
        body = snapshot.body
        out: list[RuleResult] = []
        tags = None
        scope_known = subscription_id is not None and resource_group is not None
        for cp in entries:
            if cp.subs is not None or cp.rgs is not None:
                if not scope_known:
                    sub, rg = _id_scope(snapshot.resource_id)
                    subscription_id = subscription_id or sub
                    resource_group = resource_group or rg
                    scope_known = True
                if not cp.scope_ok(subscription_id, resource_group, False):
                    continue
            if cp.tags is not None:
                if tags is None:
                    tags = _lower_tags(snapshot.tags)
                if any(tags.get(k, _ABSENT) != v for k, v in cp.tags):
                    continue
            exemption: Any = _UNSET
            for cr in cp.rules:
                raw = cr.read(body)
                value = cr.default if raw is None else raw
                if cr.ok(value):
                    continue
                if exemption is _UNSET:
                    exemption = cp.exemption_for(snapshot.resource_id, now) if cp.exemptions else None
                change = None if exemption is not None else cr.action.plan(cr.rule, snapshot, value)
                out.append(RuleResult(cp.policy, cr.rule, value, raw is not None, change, cr.notify, exemption))
        return out


_ABSENT = object()
_UNSET = object()


def _compile_exemptions(exemptions: Sequence[Exemption]) -> list[tuple[Exemption, Any]]:
    if not exemptions:
        return []
    from guardrails.model.arm_id import parse_scope   # lazy: only policies with exemptions need it

    return [(ex, parse_scope(ex.scope)) for ex in exemptions]


def compile_policies(policies: Sequence[Policy]) -> CompiledPolicySet:
    return CompiledPolicySet(policies)
