"""Selection and evaluation: snapshot + policies -> the violated rules. Pure and fast.

``compile_policies`` turns the policies of each resource type once into one generated Python
function (``_generate``): the rules laid out on the tree of their property paths (each object
read once, exact keys), the operator inlined for string and boolean equality, the catalogue
default of an absent or null property decided at compile time, and the result a precomputed
tuple per set of violated rules. ``evaluate`` and ``violations`` then cost one dict lookup and
one call per resource and allocate only for violations (value, change, exemption are worked out
again on that slow path). ``violations_many`` / ``violation_pairs`` (a sweep, the benchmark) run
one generated loop with every type inlined: no call at all per resource.

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


_KNOWN_KEYS = 4096     # keys remembered per rule by ``_learn``; past it, every absent key is scanned


def _learn(known: set, low: str, obj: dict) -> bool:
    """``_nocase_ascii``, remembering the keys of an object proven to hold no spelling of ``low``.

    A property absent in every case takes its default, which takes a scan of the object's keys.
    ARM returns the same few dozen keys for a type, so after the first objects the generated
    check asks ``known.issuperset(obj)`` instead: one C-level pass of hash lookups. Exact: a key
    in ``known`` is a ``str`` (only exact ``str`` keys are kept) whose lower case is not ``low``,
    and an equal string lowers the same; any other key still gets the scan. Thread-safe: set
    updates and ``issuperset`` over ``str`` keys run no Python code, so they never interleave."""
    if not _nocase_ascii(low, obj):
        return False
    if len(known) + len(obj) <= _KNOWN_KEYS:
        known.update([k for k in obj if type(k) is str])
    return True


def _nocase_ascii(low: str, obj: dict) -> bool:
    """``_nocase`` for an ASCII ``low``, skipping keys of another length unlowered: ``str.lower``
    keeps the length of every character but U+0130, whose lower case is not ASCII (U+212A, the
    one non-ASCII character lowering to ASCII, keeps it), so only keys of ``low``'s length can
    match."""
    n = len(low)
    try:
        for key in obj:
            if len(key) == n and key.lower() == low:
                return False
    except (TypeError, AttributeError):
        return False
    return True


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
            # another length cannot lower to an ASCII operand (see ``_nocase_ascii``): no lower()
            size = f" and len(v) == {len(key[1])}" if key[1].isascii() else ""
            expr = f"(v == {operand!r} or (type(v) is str{size} and v.lower() == {key[1]!r}))"
        elif key is not None and key is not _NOMATCH and key[0] == "b":
            expr = f"(v is {key[1]!r} or (type(v) is str and v.lower() == {'true' if key[1] else 'false'!r}))"
        if expr is not None:
            return expr if name == "equals" else f"(not {expr})"
    return f"{ok_name}(v)"


_MASK_RULES = 8     # up to this many rules per type, every set of violated rules is precomputed


def _rule_lines(entries: Sequence[tuple["_CompiledPolicy", bool, Sequence["_CompiledRule"]]],
                ns: dict[str, Any], tag: str, indent: str) -> list[str]:
    """The generated statements that judge one resource ``body`` of one type: they leave in
    ``m`` the bitmask of its violated rules (bit ``i`` for the ``i``-th rule, policy then rule
    order). Names they need go into ``ns``, suffixed with ``tag`` (one namespace may hold several
    types); they read ``sub``, ``rg`` and ``rid`` for selectors.

    The rules are laid out on the tree of their property paths: each intermediate object is read
    once (exact key) and, when it is an object, its rules run on it: a non-null value is tested
    inline (the operator's predicate, inlined for string and boolean equality); an explicit null
    or a key absent in every case takes the default's verdict, precomputed; anything else (the
    key in another case) takes the rule's ``_slow_check``, as do all rules under an intermediate
    that is absent or not an object. A selector is only asked when one of its policy's rules was
    violated."""
    rules = [cr for _, _, crs in entries for cr in crs]
    bit = {id(cr): 1 << i for i, cr in enumerate(rules)}
    for i, cr in enumerate(rules):
        ns[f"S{tag}_{i}"] = _slow_check(cr.rule.property, cr.default, cr.ok)
        ns[f"OK{tag}_{i}"] = cr.ok
    index = {id(cr): i for i, cr in enumerate(rules)}
    paths = {id(cr): tuple(cr.rule.property.split(".")) for cr in rules}
    lines = [indent + "m = 0"]
    counter = [0]

    def slow(cr: _CompiledRule, w: str) -> None:
        lines.append(w + f"if not S{tag}_{index[id(cr)]}(body): m |= {bit[id(cr)]}")

    def fast(cr: _CompiledRule, var: str, w: str) -> None:
        i, last = index[id(cr)], paths[id(cr)][-1]
        hit, ok_default = f"m |= {bit[id(cr)]}", bool(cr.ok(cr.default))
        lines.append(w + f"v = {var}.get({last!r})")
        lines.append(w + "if v is not None:")
        lines.append(w + f"    if not {_inline_test(cr.rule.expect, f'OK{tag}_{i}')}: {hit}")
        if var == "body":                   # the resource itself may be any Mapping: no key scan
            lines.append(w + f"elif {last!r} in body:")
            lines.append(w + ("    pass" if ok_default else f"    {hit}"))
        elif last.lower().isascii():        # explicit null, or absent in every case: the default
            known = f"KN{tag}_{i}"          # keys proven not to spell it (``_learn``)
            ns[known] = set()
            lines.append(w + f"elif {last!r} in {var} or {known}.issuperset({var}) "
                             f"or _learn({known}, {last.lower()!r}, {var}):")
            lines.append(w + ("    pass" if ok_default else f"    {hit}"))
        else:
            lines.append(w + f"elif {last!r} in {var} or _nocase({last.lower()!r}, {var}):")
            lines.append(w + ("    pass" if ok_default else f"    {hit}"))
        lines.append(w + "else:")
        lines.append(w + "    " + f"if not S{tag}_{i}(body): {hit}")

    def node(var: str, prefix: tuple[str, ...], under: list[_CompiledRule], w: str) -> None:
        children: dict[str, list[_CompiledRule]] = {}
        for cr in under:
            path = paths[id(cr)]
            if len(path) == len(prefix) + 1:
                fast(cr, var, w)
            else:
                children.setdefault(path[len(prefix)], []).append(cr)
        for seg, crs in children.items():
            counter[0] += 1
            child = f"n{counter[0]}"
            lines.append(w + f"try: {child} = {var}[{seg!r}]")      # zero-cost when present
            lines.append(w + f"except KeyError: {child} = None")
            lines.append(w + f"if type({child}) is dict:")
            node(child, prefix + (seg,), crs, w + "    ")
            lines.append(w + "else:")
            for cr in crs:
                slow(cr, w + "    ")

    node("body", (), rules, indent)
    for i, cr in enumerate(rules):         # a property this resource does not have: asked only if violated
        if cr.applies is not None:
            ns[f"AP{tag}_{i}"] = cr.applies
            lines.append(indent + f"if m & {bit[id(cr)]} and not AP{tag}_{i}(body): m &= ~{bit[id(cr)]}")
    for j, (cp, filtered, crs) in enumerate(entries):
        if filtered and crs:
            ns[f"SEL{tag}_{j}"] = cp.selects_body
            bits = sum(bit[id(cr)] for cr in crs)
            lines.append(indent + f"if m & {bits} and not SEL{tag}_{j}(body, sub, rg, rid): m &= ~{bits}")
    return lines


def _decode(items: Sequence[Any], m: int) -> list[Any]:
    """The items of the set bits of ``m`` (a type with more than ``_MASK_RULES`` rules)."""
    return [items[i] for i in range(m.bit_length()) if m >> i & 1]


def _namespace() -> dict[str, Any]:
    return {"_nocase": _nocase, "_learn": _learn, "_decode": _decode}


def _uses_mask(entries: Sequence[tuple[Any, bool, Sequence[Any]]]) -> bool:
    return sum(len(crs) for _, _, crs in entries) <= _MASK_RULES


def _result(mask: bool, table: str) -> str:
    """The expression of what is reported for ``m``: one precomputed tuple per bitmask, or a
    new list of the rules' items (``None`` when nothing is violated)."""
    return f"{table}[m]" if mask else f"(_decode({table}, m) if m else None)"


def _run(source: str, name: str, ns: dict[str, Any], fn: str) -> Callable[..., Any]:
    exec(compile(source, f"<guardrails policies: {name}>", "exec"), ns)
    out = ns[fn]
    out.source = source                               # for debugging: the generated code
    return out


def _generate(type_name: str, entries: Sequence[tuple["_CompiledPolicy", bool, Sequence["_CompiledRule"]]]
              ) -> Callable[..., Any]:
    """One function per resource type, generated once at compile time:
    ``fn(body, sub, rg, resource_id, K)`` -> what ``K`` holds for the violated rules.

    With at most ``_MASK_RULES`` rules, ``K`` has one precomputed tuple per set of violated
    rules (``K[bitmask]``, ``K[0]`` empty), so nothing is allocated at all; with more, ``K`` has
    one item per rule and the result is a new list of them, or ``None``. ``K`` decides what is
    reported, so ``evaluate`` and ``violations`` run the very same code."""
    ns = _namespace()
    mask = _uses_mask(entries)
    lines = ["def check(body, sub, rg, rid, K):", *_rule_lines(entries, ns, "", "    "),
             f"    return {_result(mask, 'K')}"]
    fn = _run("\n".join(lines) + "\n", type_name, ns, "check")
    fn.mask = mask
    return fn


def _generate_many(programs: Mapping[str, "_TypeProgram"], names: Sequence[str], pairs: bool) -> Callable[..., Any]:
    """The sweep loop, generated once: ``many(bodies, other)`` -> ``[(body, keys)]`` for the
    violating bodies, or with ``pairs`` ``[(body["id"], key)]`` for every violated rule. Each of
    ``names`` (the exact type spellings, as ARM sends them) gets its rules inlined in one branch
    of an equality chain on ``body["type"]`` (no hashing of the type string, no call per
    resource, nothing allocated for a compliant one); any other type goes to
    ``other(body, type) -> keys``."""
    ns = _namespace()
    lines = ["def many(bodies, other):", "    out = []", "    append = out.append",
             "    sub = rg = rid = None", "    for body in bodies:",
             "        try: t = body['type']", "        except KeyError: t = None"]
    for t, name in enumerate(names):
        prog = programs[name]
        ns[f"K{t}"] = prog.keys
        lines.append(f"        {'if' if t == 0 else 'elif'} t == {name!r}:")
        lines += _rule_lines(prog.entries, ns, str(t), " " * 12)
        lines.append(f"            found = {_result(prog.check.mask, f'K{t}')}")
    lines += ["        else:" if names else "        if True:", "            found = other(body, t)",
              "        if found:"]
    lines += (["            ident = body.get('id')", "            for key in found: append((ident, key))"] if pairs
              else ["            append((body, found))"])
    lines.append("    return out")
    return _run("\n".join(lines) + "\n", "sweep", ns, "many")


def _reports(check: Any, items: Sequence[Any]) -> tuple:
    """The ``K`` of a generated ``check`` for reporting ``items`` (one per rule)."""
    if not check.mask:
        return tuple(items)
    n = len(items)
    return tuple(tuple(items[i] for i in range(n) if m >> i & 1) for m in range(1 << n))


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
            seen: dict[Any, int] = {}
            for body in first[:2000]:
                t = body.get("type") if isinstance(body, Mapping) else None
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


_ABSENT = object()
_NONE: tuple = ()


def _compile_exemptions(exemptions: Sequence[Exemption]) -> list[tuple[Exemption, Any]]:
    if not exemptions:
        return []
    from guardrails.model.arm_id import parse_scope   # lazy: only policies with exemptions need it

    return [(ex, parse_scope(ex.scope)) for ex in exemptions]


def compile_policies(policies: Sequence[AnyPolicy]) -> CompiledPolicySet:
    return CompiledPolicySet(policies)
