"""Comparison operators of a rule's ``expect``: ``equals``, ``not_equals``, ``in``, ``not_in``.

Semantics (shared by evaluation, ``set-property`` validation and planning):

* strings compare case-insensitively (ARM echoes enum values as ``Disabled`` or ``disabled``);
* booleans compare exactly, and a resource string ``"true"``/``"false"`` (any case) equals the
  boolean, because ARM sometimes returns booleans as strings;
* numbers compare by value; a boolean is never a number (``True`` does not equal ``1``);
* ``None`` means absent: ``equals X`` fails, ``not_equals X`` passes, ``in`` fails, ``not_in``
  passes. Objects and arrays in the resource never equal a scalar operand.

Each operator declares its JSON Schema fragment beside its code; ``compile_expect`` turns an
``expect`` mapping into a predicate ``value -> bool`` once, so evaluation does no dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

Predicate = Callable[[Any], bool]

SCALAR_SCHEMA: dict[str, Any] = {"type": ["string", "boolean", "number"]}
_LIST_SCHEMA: dict[str, Any] = {"type": "array", "minItems": 1, "items": SCALAR_SCHEMA}

_NOMATCH = object()   # canonical form of values that equal nothing (objects, arrays)


def canon(value: Any) -> Any:
    """Canonical, hashable comparison key: ``("s", lower)``, ``("b", bool)``, ``("n", num)``.

    ``None`` stays ``None`` (absent); objects and arrays map to a key equal to nothing.
    """
    t = type(value)
    if t is str:
        low = value.lower()
        if low == "true":
            return ("b", True)
        if low == "false":
            return ("b", False)
        return ("s", low)
    if t is bool:
        return ("b", value)
    if t is int or t is float:
        return ("n", value)
    if value is None:
        return None
    return _NOMATCH


def values_equal(a: Any, b: Any) -> bool:
    """Equal under the operator semantics (objects/arrays: plain equality)."""
    ka, kb = canon(a), canon(b)
    if ka is _NOMATCH or kb is _NOMATCH:
        return a == b
    return ka == kb


def _equals(operand: Any) -> Predicate:
    key = canon(operand)
    if key[0] == "s":                      # the common case: an enum string
        exact, low = operand, key[1]

        def pred(v: Any) -> bool:
            return v == exact or (type(v) is str and v.lower() == low)
        return pred
    if key[0] == "b":
        flag, text = key[1], ("true" if key[1] else "false")

        def pred(v: Any) -> bool:
            return v is flag or (type(v) is str and v.lower() == text)
        return pred
    return lambda v: canon(v) == key


def _not_equals(operand: Any) -> Predicate:
    eq = _equals(operand)
    return lambda v: not eq(v)


def _in(operand: Any) -> Predicate:
    keys = frozenset(canon(o) for o in operand)
    return lambda v: v is not None and canon(v) in keys


def _not_in(operand: Any) -> Predicate:
    keys = frozenset(canon(o) for o in operand)
    return lambda v: v is None or canon(v) not in keys


@dataclass(frozen=True)
class Operator:
    name: str
    schema: Mapping[str, Any]                 # JSON Schema of the operand
    compile: Callable[[Any], Predicate]       # operand -> predicate over the effective value
    doc: str


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator("equals", SCALAR_SCHEMA, _equals, "value equals the operand"),
        Operator("not_equals", SCALAR_SCHEMA, _not_equals, "value differs from the operand (absent passes)"),
        Operator("in", _LIST_SCHEMA, _in, "value is one of the operands"),
        Operator("not_in", _LIST_SCHEMA, _not_in, "value is none of the operands (absent passes)"),
    )
}


def expect_schema() -> dict[str, Any]:
    """Schema of ``expect``: known operators only; the one-operator rule is a semantic check."""
    return {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {name: dict(op.schema) for name, op in OPERATORS.items()},
    }


def split_expect(expect: Mapping[str, Any]) -> tuple[str, Any]:
    """The single ``(operator, operand)`` of a validated ``expect``."""
    if len(expect) != 1:
        raise ValueError(f"expect needs exactly one operator, got {sorted(expect)}")
    ((name, operand),) = expect.items()
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}")
    return name, operand


def compile_expect(expect: Mapping[str, Any]) -> Predicate:
    """Predicate ``effective value -> passes``; ``None`` is absent."""
    name, operand = split_expect(expect)
    return OPERATORS[name].compile(operand)


def satisfies(expect: Mapping[str, Any], value: Any) -> bool:
    return compile_expect(expect)(value)


def describe(expect: Mapping[str, Any]) -> str:
    """``equals 'Disabled'`` — for messages."""
    name, operand = split_expect(expect)
    return f"{name} {list(operand) if isinstance(operand, tuple) else operand!r}"
