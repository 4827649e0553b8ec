"""Selection and evaluation: snapshot + policies -> the violated rules. Pure and fast.

``compile_policies`` compiles the policies once (``guardrails.policy.compiled``: selectors,
exemptions, rule readers and predicates) and turns those of each resource type into one
generated Python function (``guardrails.policy.codegen``): the rules laid out on the tree of
their property paths (each object read once, exact keys), the operator inlined for string and
boolean equality, the catalogue default of an absent or null property decided at compile time,
and the result a precomputed tuple per set of violated rules. ``evaluate`` and ``violations``
then cost one dict lookup and one call per resource and allocate only for violations (value,
change, exemption are worked out again on that slow path: ``_results``). ``violations_many`` /
``violation_pairs`` (a sweep, the benchmark) run one generated loop with every type inlined: no
call at all per resource.

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
from guardrails.model.decision import Change
from guardrails.model.policy import AnyPolicy, Exemption, Policy, Rule
from guardrails.model.resource import ResourceSnapshot, lookup_type
from guardrails.policy.codegen import _generate_many, _TypeProgram
from guardrails.policy.compiled import _applies, _compile_exemptions, _CompiledPolicy, _CompiledRule, _Entry
from guardrails.policy.roles import CompiledRolePolicy, compile_role_policies
from guardrails.remediation.actions import actions

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


class CompiledPolicySet:
    """Policies compiled once; share one instance across invocations."""

    def __init__(self, policies: Sequence[AnyPolicy], *, shadow: bool = False) -> None:
        self.all_policies: tuple[AnyPolicy, ...] = tuple(policies)
        self.is_shadow = shadow
        if shadow:      # the shadow set: only ``mode: shadow`` resource policies, judged as if enforced
            self.policies: tuple[Policy, ...] = tuple(p for p in self.all_policies
                                                      if isinstance(p, Policy) and p.mode == "shadow")
        else:
            self.policies = tuple(p for p in self.all_policies if isinstance(p, Policy) and p.mode != "shadow")
        self._shadow: CompiledPolicySet | None = None
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
                when = {k.lower(): v for k, v in (rt.applies_when if rt else {}).items()}
                crs = tuple(_CompiledRule(r, defaults.get(r.property.lower()), actions.build(r.action), cp,
                                          _applies(when.get(r.property.lower())))
                            for r in policy.rules)
                by_type.setdefault(type_name, []).append((cp, cp.filtered, crs))
        self._by_type: dict[str, tuple[_Entry, ...]] = {k: tuple(v) for k, v in by_type.items()}
        self._programs: dict[str, _TypeProgram] = {k: _TypeProgram(k, v) for k, v in self._by_type.items()}
        self._many: list[Callable[..., Any] | None] = [None, None]     # generated loops, on first use
        for key in list(self._by_type):                     # also index the catalogue spelling
            rt = lookup_type(key)
            if rt is not None:
                self._by_type[rt.name] = self._by_type[key]
                self._programs[rt.name] = self._programs[key]

    @property
    def shadow(self) -> "CompiledPolicySet | None":
        """The ``mode: shadow`` resource policies compiled on their own (same engine), or None when
        there are none. Their results are recorded as ``shadow`` rows, never acted on."""
        if self.is_shadow:
            return None
        if self._shadow is None:
            if not any(isinstance(p, Policy) and p.mode == "shadow" for p in self.all_policies):
                return None
            self._shadow = CompiledPolicySet(self.all_policies, shadow=True)
        return self._shadow

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

    def _program(self, resource_type: str) -> _TypeProgram | None:
        prog = self._programs.get(resource_type)
        if prog is None:
            prog = self._programs.get(resource_type.lower())
        return prog

    def candidates(self, resource_type: str, subscription_id: str | None = None,
                   resource_group: str | None = None) -> list[Policy]:
        """Policies that may apply before the resource is read (no tag check; mode off
        excluded; exact type). An unknown (``None``) subscription/group does not exclude here;
        ``evaluate`` takes them from the resource id and excludes what it cannot prove."""
        entries = self._entries(resource_type)
        if not entries:
            return []
        return [cp.policy for cp, _, _ in entries if cp.scope_ok(subscription_id, resource_group, True)]

    def violations(self, body: Mapping[str, Any], resource_type: str, subscription_id: str | None = None,
                   resource_group: str | None = None, resource_id: str | None = None
                   ) -> Sequence[tuple[str, str]]:
        """Filter only: the ``(policy ref "id@version", rule id)`` of every violated rule, in
        policy then rule order — the same rules, same predicates and same selection as
        ``evaluate`` (exempted rules included, as there), without planning anything.

        ``resource_id`` (for a subscription/resource-group selector, when those are not given)
        defaults to ``body["id"]``. Allocates nothing: the result is a precomputed tuple (empty
        when compliant), or a new list for a type with more than ``_MASK_RULES`` rules."""
        prog = self._programs.get(resource_type)
        if prog is None:
            prog = self._programs.get(resource_type.lower())
            if prog is None:
                return _NONE  # type: ignore[return-value]
        return prog.check(body, subscription_id, resource_group, resource_id, prog.keys) or _NONE

    def violations_many(self, bodies: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Sequence[tuple[str, str]]]]:
        """``violations`` over many REST-shaped resources (each with its ``type`` and ``id``), for a
        sweep: ``(resource, violated (policy ref, rule id) pairs)`` for the violating ones only.

        One generated loop (``_generate_many``, built on first use: the event path never needs
        it) with every type's rules inlined; the results are the same tuples ``violations``
        returns, type by type."""
        return self._loop(False, bodies)(bodies, self._other)

    def violation_pairs(self, bodies: Sequence[Mapping[str, Any]]) -> list[tuple[Any, tuple[str, str]]]:
        """``violations_many`` flattened: ``(resource id, (policy ref, rule id))`` for every
        violated rule of every resource, in input then policy then rule order — the set of
        violations of a list of resources, allocating one pair per violation and nothing else."""
        return self._loop(True, bodies)(bodies, self._other)

    def _loop(self, pairs: bool, first: Sequence[Mapping[str, Any]] = ()) -> Callable[..., Any]:
        """The generated loop, built on first use. Its branches are an equality chain on the
        type, so they go in the order of how often the first call's resources (its first 2,000)
        have each type: the common types are found after the fewest comparisons."""
        many = self._many[pairs]
        if many is None:
            names: dict[int, str] = {}
            for name, prog in self._programs.items():        # the catalogue spelling first
                rt = lookup_type(name)
                if rt is not None and rt.name == name:
                    names[id(prog)] = name
            for name, prog in self._programs.items():        # types outside the catalogue: as written
                names.setdefault(id(prog), name)
            seen: dict[str, int] = {}
            for body in first[:2000]:
                t = body.get("type") if isinstance(body, Mapping) else None
                if isinstance(t, str):               # a list or object type is no type (and unhashable)
                    seen[t] = seen.get(t, 0) + 1
            order = sorted(names.values(), key=lambda n: -seen.get(n, 0))      # stable: ties keep their order
            many = self._many[pairs] = _generate_many(self._programs, order, pairs)
        return many

    def _other(self, body: Mapping[str, Any], rtype: Any) -> Sequence[tuple[str, str]] | None:
        """``violations_many`` for a type spelled other than in the catalogue (or not a string)."""
        if not isinstance(rtype, str):
            return None
        prog = self._programs.get(rtype)
        if prog is None:
            prog = self._programs.get(rtype.lower())
            if prog is None:
                return None
        return prog.check(body, None, None, None, prog.keys)

    def evaluate(self, snapshot: ResourceSnapshot, *, now: datetime,
                 subscription_id: str | None = None, resource_group: str | None = None) -> list[RuleResult]:
        """The VIOLATED rules of every matching policy, in policy then rule order.

        Subscription and resource group default to those in ``snapshot.resource_id``; the tag
        selector is checked on the live tags. Compliant rules produce nothing.
        """
        prog = self._program(snapshot.type)
        if prog is None:
            return []
        found = prog.check(snapshot.body, subscription_id, resource_group, snapshot.resource_id, prog.rules)
        if not found:
            return []
        out: list[RuleResult] = []
        start = 0
        n = len(found)
        while start < n:                    # one run of rules per policy (generated in order)
            cp = found[start].cp
            end = start + 1
            while end < n and found[end].cp is cp:
                end += 1
            _results(cp, found[start:end], snapshot, now, out)
            start = end
        return out


def _results(cp: _CompiledPolicy, violated: list[_CompiledRule], snapshot: ResourceSnapshot,
             now: datetime, out: list[RuleResult]) -> None:
    exemption = cp.exemption_for(snapshot.resource_id, now) if cp.exemptions else None
    for cr in violated:
        raw = cr.read(snapshot.body)
        value = cr.default if raw is None else raw
        change = None if exemption is not None else cr.action.plan(cr.rule, snapshot, value)
        out.append(RuleResult(cp.policy, cr.rule, value, raw is not None, change, cr.notify, exemption))


_NONE: tuple = ()


def compile_policies(policies: Sequence[AnyPolicy]) -> CompiledPolicySet:
    return CompiledPolicySet(policies)
