"""Selection and evaluation: snapshot + policies -> the violated rules. Pure and fast.

``compile_policies`` turns each policy once into per-resource-type entries; each rule becomes
one fused check ``body -> passes`` (exact-key path lookups unrolled, the catalogue default of
the property for that type, the compiled operator predicate). ``evaluate`` then costs one dict
lookup per resource and one call per rule, and allocates only for violations (value, change,
exemption are worked out again on that slow path).

Modes are not interpreted here beyond ``off`` (never selected): ``audit`` policies produce
results like ``enforce`` ones; the service decides what to apply (``result.policy.mode``).

The set may hold both policy kinds: resource evaluation only sees ``kind: resource`` policies;
``role_policies`` are the compiled ``kind: role-assignments`` ones (``guardrails.policy.roles``);
``job_policies``, ``model_registry_policies`` and ``check_access_policies`` the check kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from guardrails.checks.policies import CheckAccessPolicy, CheckPolicies, JobPolicy, ModelRegistryPolicy
from guardrails.errors import InvalidArmId
from guardrails.model.decision import Change
from guardrails.model.policy import AnyPolicy, Exemption, Policy, Rule
from guardrails.model.resource import ResourceSnapshot, get_path, lookup_type
from guardrails.policy.operators import Predicate, compile_expect
from guardrails.policy.roles import CompiledRolePolicy, compile_role_policies
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
    """``body -> value or None`` (absent/null). Exact keys first, then ``get_path``'s
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


def _check(path: str, default: Any, ok: Predicate) -> Callable[[Mapping[str, Any]], bool]:
    """``body -> rule passes``: read, default and predicate fused into one call, with the
    exact-key lookups unrolled for the usual path depths (the hot path of ``evaluate``)."""
    read = _reader(path)

    def slow(body: Mapping[str, Any]) -> bool:
        v = read(body)
        return ok(default if v is None else v)

    segs = path.split(".")
    if len(segs) == 2:
        a, b = segs

        def check(body: Mapping[str, Any]) -> bool:
            p = body.get(a)
            if type(p) is dict:
                v = p.get(b)
                if v is not None:
                    return ok(v)
            return slow(body)
        return check
    if len(segs) == 3:
        a, b, c = segs

        def check3(body: Mapping[str, Any]) -> bool:
            p = body.get(a)
            if type(p) is dict:
                p = p.get(b)
                if type(p) is dict:
                    v = p.get(c)
                    if v is not None:
                        return ok(v)
            return slow(body)
        return check3
    return slow


class _CompiledRule:
    __slots__ = ("rule", "read", "default", "action", "notify")

    def __init__(self, rule: Rule, default: Any, action: Action) -> None:
        self.rule, self.read, self.default = rule, _reader(rule.property), default
        self.action, self.notify = action, action.notify


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
        if self.subs is not None or self.rgs is not None:
            if sub is None or rg is None:
                id_sub, id_rg = _id_scope(snapshot.resource_id)
                sub, rg = sub or id_sub, rg or id_rg
            if not self.scope_ok(sub, rg, False):
                return False
        if self.tags is not None:
            tags = _lower_tags(snapshot.tags)
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


_Entry = tuple[_CompiledPolicy, bool, tuple[tuple[Callable[[Mapping[str, Any]], bool], _CompiledRule], ...]]


class CompiledPolicySet:
    """Policies compiled once; share one instance across invocations."""

    def __init__(self, policies: Sequence[AnyPolicy]) -> None:
        self.all_policies: tuple[AnyPolicy, ...] = tuple(policies)
        self.policies: tuple[Policy, ...] = tuple(p for p in self.all_policies if isinstance(p, Policy))
        self._role_policies = compile_role_policies(self.all_policies)
        self.checks = CheckPolicies(self.all_policies)      # job, model-registry, check-access kinds
        by_type: dict[str, list[_Entry]] = {}
        for policy in self.policies:
            if policy.mode == "off":
                continue
            cp = _CompiledPolicy(policy, _compile_exemptions(policy.exemptions))
            for type_name in dict.fromkeys(t.lower() for t in policy.selector.resource_types):
                rt = lookup_type(type_name)
                defaults = {k.lower(): v for k, v in (rt.defaults if rt else {}).items()}
                pairs = []
                for r in policy.rules:
                    default = defaults.get(r.property.lower())
                    cr = _CompiledRule(r, default, actions.build(r.action))
                    pairs.append((_check(r.property, default, compile_expect(r.expect)), cr))
                by_type.setdefault(type_name, []).append((cp, cp.filtered, tuple(pairs)))
        self._by_type: dict[str, tuple[_Entry, ...]] = {k: tuple(v) for k, v in by_type.items()}
        for key, entries in list(self._by_type.items()):    # also index the catalogue spelling
            rt = lookup_type(key)
            if rt is not None:
                self._by_type[rt.name] = entries

    @property
    def role_policies(self) -> tuple[CompiledRolePolicy, ...]:
        """The ``kind: role-assignments`` policies, compiled, mode ``off`` excluded, in order.
        Each has ``.policy``, ``.id``, ``.ref`` and ``.mode``; pass them to
        ``guardrails.policy.roles.evaluate_assignment``."""
        return self._role_policies

    @property
    def secret_policies(self) -> tuple:
        """``kind: secrets`` policies in force (mode ``off`` dropped)."""
        return tuple(p for p in self.all_policies if getattr(p, "kind", "") == "secrets" and p.mode != "off")

    @property
    def job_policies(self) -> dict[str, tuple[JobPolicy, ...]]:
        """``kind: job`` policies in force, by job id (trimmed, lower-case); see ``checks.job(id)``."""
        return self.checks.jobs

    @property
    def model_registry_policies(self) -> tuple[ModelRegistryPolicy, ...]:
        """``kind: model-registry`` policies in force (``.rules`` is a ``ModelRegistryRules``)."""
        return self.checks.model_registry

    @property
    def check_access_policies(self) -> tuple[CheckAccessPolicy, ...]:
        """``kind: check-access`` policies in force."""
        return self.checks.access

    def _entries(self, resource_type: str) -> tuple[_Entry, ...] | None:
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
        return [cp.policy for cp, _, _ in entries if cp.scope_ok(subscription_id, resource_group, True)]

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
        out: list[RuleResult] | None = None
        for cp, filtered, pairs in entries:
            if filtered and not cp.selects(snapshot, subscription_id, resource_group):
                continue
            violated = None
            for check, cr in pairs:
                if not check(body):
                    if violated is None:
                        violated = [cr]
                    else:
                        violated.append(cr)
            if violated is not None:
                if out is None:
                    out = []
                _results(cp, violated, snapshot, now, out)
        return out if out is not None else []


def _results(cp: _CompiledPolicy, violated: list[_CompiledRule], snapshot: ResourceSnapshot,
             now: datetime, out: list[RuleResult]) -> None:
    exemption = cp.exemption_for(snapshot.resource_id, now) if cp.exemptions else None
    for cr in violated:
        raw = cr.read(snapshot.body)
        value = cr.default if raw is None else raw
        change = None if exemption is not None else cr.action.plan(cr.rule, snapshot, value)
        out.append(RuleResult(cp.policy, cr.rule, value, raw is not None, change, cr.notify, exemption))


_ABSENT = object()


def _compile_exemptions(exemptions: Sequence[Exemption]) -> list[tuple[Exemption, Any]]:
    if not exemptions:
        return []
    from guardrails.model.arm_id import parse_scope   # lazy: only policies with exemptions need it

    return [(ex, parse_scope(ex.scope)) for ex in exemptions]


def compile_policies(policies: Sequence[AnyPolicy]) -> CompiledPolicySet:
    return CompiledPolicySet(policies)
