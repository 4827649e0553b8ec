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
from guardrails.policy.operators import _NOMATCH, Predicate, canon, compile_expect, split_expect
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


def _nocase(low: str, obj: dict) -> bool:
    """No key of ``obj`` is ``low`` in any case (False when unsure: a non-string key)."""
    try:
        return low not in map(_lower, obj)
    except TypeError:
        return False


_lower = str.lower


def _slow_check(path: str, default: Any, ok: Predicate) -> Callable[[Mapping[str, Any]], bool]:
    """``body -> rule passes`` through the full reader, with ``ok(default)`` worked out once:
    the path of absent, null, differently-cased or oddly-shaped properties."""
    read = _reader(path)
    ok_default = bool(ok(default))

    def slow(body: Mapping[str, Any]) -> bool:
        v = read(body)
        return ok_default if v is None else bool(ok(v))

    return slow


def _inline_test(expect: Mapping[str, Any], ok_name: str) -> str:
    """Python source of ``passes`` for a non-None value ``v``, the same as ``compile_expect``'s
    predicate: equality with a string or boolean operand is inlined, the rest calls it."""
    name, operand = split_expect(expect)
    if name in ("equals", "not_equals"):
        key = canon(operand)
        expr = None
        if key is not None and key is not _NOMATCH and key[0] == "s":
            expr = f"(v == {operand!r} or (type(v) is str and v.lower() == {key[1]!r}))"
        elif key is not None and key is not _NOMATCH and key[0] == "b":
            expr = f"(v is {key[1]!r} or (type(v) is str and v.lower() == {'true' if key[1] else 'false'!r}))"
        if expr is not None:
            return expr if name == "equals" else f"(not {expr})"
    return f"{ok_name}(v)"


_MASK_RULES = 8     # up to this many rules per type, every set of violated rules is precomputed


def _generate(type_name: str, entries: Sequence[tuple["_CompiledPolicy", bool, Sequence["_CompiledRule"]]]
              ) -> Callable[..., Any]:
    """One function per resource type, generated once at compile time:
    ``fn(body, sub, rg, resource_id, K)`` -> what ``K`` holds for the violated rules.

    With at most ``_MASK_RULES`` rules, ``K`` has one precomputed tuple per set of violated
    rules (``K[bitmask]``, ``K[0]`` empty), so nothing is allocated at all; with more, ``K`` has
    one item per rule and the result is a new list of them, or ``None``.

    Shared path prefixes are read once (exact keys); a non-null value is tested inline (the
    operator's predicate, inlined for string and boolean equality); an explicit null takes the
    default's verdict, precomputed; anything else (absent, other case, not an object) takes the
    rule's ``_slow_check``. ``K`` decides what is reported, so ``evaluate`` and ``violations``
    run the very same code."""
    ns: dict[str, Any] = {"_nocase": _nocase}
    rules = [cr for _, _, crs in entries for cr in crs]
    mask = len(rules) <= _MASK_RULES
    lines = ["def check(body, sub, rg, rid, K):", "    m = 0" if mask else "    out = None"]
    nodes: dict[tuple[str, ...], str] = {(): "body"}
    for cr in rules:                                   # the intermediate objects, read once
        segs = tuple(cr.rule.property.split("."))
        for depth in range(1, len(segs)):
            prefix = segs[:depth]
            if prefix in nodes:
                continue
            var = f"n{len(nodes)}"
            parent = nodes[prefix[:-1]]
            get = f"{parent}.get({prefix[-1]!r})"
            lines.append(f"    {var} = {get}" if parent == "body" else f"    {var} = {get} if {parent} is not None else None")
            lines.append(f"    if type({var}) is not dict: {var} = None")
            nodes[prefix] = var
    i = 0
    for j, (cp, filtered, crs) in enumerate(entries):
        indent = "    "
        if filtered:
            ns[f"SEL{j}"] = cp.selects_body
            lines.append(f"    if SEL{j}(body, sub, rg, rid):")
            indent = "        "
        if not crs:
            lines.append(indent + "pass")
        for cr in crs:
            segs = tuple(cr.rule.property.split("."))
            parent, last = nodes[segs[:-1]], segs[-1]
            ns[f"S{i}"] = _slow_check(cr.rule.property, cr.default, cr.ok)
            ns[f"OK{i}"] = cr.ok
            ok_default = bool(cr.ok(cr.default))
            hit = [f"m |= {1 << i}"] if mask else [f"if out is None: out = [K[{i}]]", f"else: out.append(K[{i}])"]
            w = indent
            lines.append(w + (f"v = {parent}.get({last!r})" if parent == "body"
                              else f"v = {parent}.get({last!r}) if {parent} is not None else None"))
            lines.append(w + "if v is not None:")
            lines.append(w + f"    if not {_inline_test(cr.rule.expect, f'OK{i}')}:")
            lines += [w + "        " + h for h in hit]
            cond = f"{last!r} in {parent}" if parent == "body" else f"{parent} is not None and {last!r} in {parent}"
            lines.append(w + f"elif {cond}:")              # explicit null: the default's verdict
            lines += [w + "    " + h for h in hit] if not ok_default else [w + "    pass"]
            if parent != "body":                           # absent: no key of any case, checked in C
                lines.append(w + f"elif {parent} is not None and _nocase({last.lower()!r}, {parent}):")
                lines += [w + "    " + h for h in hit] if not ok_default else [w + "    pass"]
            lines.append(w + f"elif not S{i}(body):")
            lines += [w + "    " + h for h in hit]
            i += 1
    lines.append("    return K[m]" if mask else "    return out")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<guardrails policies for {type_name}>", "exec"), ns)
    fn = ns["check"]
    fn.source = source                                # for debugging: the generated code
    fn.mask = mask
    return fn


def _reports(check: Any, items: Sequence[Any]) -> tuple:
    """The ``K`` of a generated ``check`` for reporting ``items`` (one per rule)."""
    if not check.mask:
        return tuple(items)
    n = len(items)
    return tuple(tuple(items[i] for i in range(n) if m >> i & 1) for m in range(1 << n))


class _CompiledRule:
    __slots__ = ("rule", "read", "default", "ok", "action", "notify", "cp", "key")

    def __init__(self, rule: Rule, default: Any, action: Action, cp: "_CompiledPolicy") -> None:
        self.rule, self.read, self.default = rule, _reader(rule.property), default
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


class _TypeProgram:
    """The compiled policies of one resource type: the generated ``check`` and what it reports
    per rule (``keys`` for ``violations``, ``rules`` for ``evaluate``)."""

    __slots__ = ("entries", "check", "keys", "rules")

    def __init__(self, type_name: str, entries: tuple[_Entry, ...]) -> None:
        self.entries = entries
        rules = tuple(cr for _, _, crs in entries for cr in crs)
        self.check = _generate(type_name, entries)
        self.keys: tuple = _reports(self.check, [cr.key for cr in rules])
        self.rules: tuple = _reports(self.check, rules)


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
                crs = tuple(_CompiledRule(r, defaults.get(r.property.lower()), actions.build(r.action), cp)
                            for r in policy.rules)
                by_type.setdefault(type_name, []).append((cp, cp.filtered, crs))
        self._by_type: dict[str, tuple[_Entry, ...]] = {k: tuple(v) for k, v in by_type.items()}
        self._programs: dict[str, _TypeProgram] = {k: _TypeProgram(k, v) for k, v in self._by_type.items()}
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
        sweep: ``(resource, violated (policy ref, rule id) pairs)`` for the violating ones only."""
        programs = self._programs
        out: list[tuple[Mapping[str, Any], Sequence[tuple[str, str]]]] = []
        append = out.append
        for body in bodies:
            rtype = body.get("type")
            prog = programs.get(rtype)
            if prog is None:
                if not isinstance(rtype, str):
                    continue
                prog = programs.get(rtype.lower())
                if prog is None:
                    continue
            found = prog.check(body, None, None, None, prog.keys)
            if found:
                append((body, found))
        return out

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


_ABSENT = object()
_NONE: tuple = ()


def _compile_exemptions(exemptions: Sequence[Exemption]) -> list[tuple[Exemption, Any]]:
    if not exemptions:
        return []
    from guardrails.model.arm_id import parse_scope   # lazy: only policies with exemptions need it

    return [(ex, parse_scope(ex.scope)) for ex in exemptions]


def compile_policies(policies: Sequence[AnyPolicy]) -> CompiledPolicySet:
    return CompiledPolicySet(policies)
