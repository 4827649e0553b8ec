"""Code generation for the compiled resource-policy evaluator (``guardrails.policy.evaluate``).

``_generate`` turns the policies of one resource type (their ``_Entry``s, compiled by
``guardrails.policy.compiled``) into one Python function, once per policy set: the rules laid out
on the tree of their property paths (``_rule_lines``: each object read once, exact keys), the
operator inlined for string and boolean equality (``_inline_test``), the catalogue default of an
absent or null property decided at compile time, and the result a precomputed tuple per set of
violated rules (``_reports``; a list past ``_MASK_RULES`` rules). ``_generate_many`` generates the
sweep loop, with every type inlined. ``_TypeProgram`` is one type's generated ``check`` with what
it reports.

The generated code runs in a namespace of its own (``_namespace``: ``_nocase``, ``_learn``,
``_decode``, and the per-rule names ``_rule_lines`` adds), never in this module's globals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from guardrails.policy.compiled import _reader
from guardrails.policy.operators import _NOMATCH, Predicate, canon, split_expect

if TYPE_CHECKING:       # annotations only
    from guardrails.policy.compiled import _CompiledPolicy, _CompiledRule, _Entry


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
