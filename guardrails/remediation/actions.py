"""The action registry: what a rule does about a violation. Planning only (pure).

Each action is a class registered by name, with its JSON Schema fragment beside the code
(``additionalProperties: false``), a ``validate()`` for cross-field rules checked when metadata
loads, and ``plan()`` which turns a violation into a ``Change`` (or ``None``). Applying a change
goes through the ports elsewhere. The policy schema's ``action`` is a ``oneOf`` over every
registered fragment, so a new action is one more class here:

    @actions.register("rotate-secret")
    class RotateSecret(Action):
        '''...metadata example...'''
        schema = type_schema("rotate-secret", grace_days={"type": "integer", "minimum": 0})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Mapping, Sequence, TypeVar

from guardrails.errors import PolicyError
from guardrails.model.decision import Change
from guardrails.model.policy import thaw
from guardrails.model.resource import ResourceSnapshot, lookup_type
from guardrails.policy import operators

if TYPE_CHECKING:
    from guardrails.model.policy import Rule

A = TypeVar("A", bound="type[Action]")


def type_schema(name: str, *, required: Sequence[str] = (), **props: Any) -> dict[str, Any]:
    """A closed object schema ``{"type": <name>, **props}`` (Cloud Custodian's helper)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", *required],
        "properties": {"type": {"const": name}, **props},
    }


class Action:
    """Base of every action. Instances are built per rule from its ``action`` mapping."""

    type: ClassVar[str] = ""
    schema: ClassVar[dict[str, Any]] = {}
    notify: ClassVar[bool] = False     # True: the row says "notify the owner", nothing is changed
    kinds: ClassVar[tuple[str, ...]] = ("resource",)   # policy kinds whose schema offers it

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data: dict[str, Any] = thaw(data)

    def validate(self, rule: "Rule", resource_types: Sequence[str]) -> list[str]:
        """Semantic findings (messages only; the loader adds file, policy and path)."""
        return []

    def plan(self, rule: "Rule", snapshot: ResourceSnapshot, current: Any) -> Change | None:
        """The change that fixes ``rule`` on ``snapshot``; ``current`` is the effective value."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


class ActionRegistry:
    def __init__(self) -> None:
        self._classes: dict[str, type[Action]] = {}
        self.generation = 0            # bumps on every registration (schema caches key on it)

    def register(self, name: str) -> Callable[[A], A]:
        def decorator(cls: A) -> A:
            if name in self._classes:
                raise ValueError(f"action {name!r} is already registered")
            schema = cls.schema
            if (schema.get("additionalProperties") is not False
                    or schema.get("properties", {}).get("type") != {"const": name}
                    or "type" not in schema.get("required", ())):
                raise ValueError(f"action {name!r}: schema must be closed and require type const {name!r}")
            cls.type = name
            self._classes[name] = cls
            self.generation += 1
            return cls
        return decorator

    def get(self, name: str) -> type[Action] | None:
        return self._classes.get(name)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def schemas(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Fragments of every action, or of those offered to policies of ``kind``."""
        return [self._classes[n].schema for n in self.names()
                if kind is None or kind in self._classes[n].kinds]

    def build(self, mapping: Mapping[str, Any]) -> Action:
        cls = self._classes.get(mapping.get("type"))  # type: ignore[arg-type]
        if cls is None:
            raise PolicyError(f"unknown action type {mapping.get('type')!r}; known: {', '.join(self.names())}")
        return cls(mapping)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


actions = ActionRegistry()

_JSON_VALUE = {"type": ["string", "number", "boolean", "object"]}


@actions.register("set-property")
class SetProperty(Action):
    """Write ``value`` at the rule's ``property`` (PATCH or full PUT, per the catalogue).

    ```yaml
    - id: public-network-access-disabled
      property: properties.publicNetworkAccess
      expect: {equals: Disabled}
      action: {type: set-property, value: Disabled}
    ```
    The value must itself satisfy ``expect`` (else the fix would never converge), and the
    property must not be immutable on any selected resource type (use ``notify`` there).
    """

    schema = type_schema("set-property", required=["value"], value=_JSON_VALUE)

    @staticmethod
    def permissions() -> tuple[str, ...]:   # guardrails.permissions: a write of any catalogue type
        from guardrails.model.resource import CATALOG
        return tuple(f"{t.name}/write" for t in CATALOG.values())

    @property
    def value(self) -> Any:
        return self.data["value"]

    def validate(self, rule: "Rule", resource_types: Sequence[str]) -> list[str]:
        found = []
        if not operators.satisfies(rule.expect, self.value):
            found.append(
                f"value {self.value!r} does not satisfy expect {operators.describe(rule.expect)}:"
                " the fix would never make the resource compliant")
        prop = rule.property.lower()
        from guardrails.permissions import unwritable_catalogue_writes
        unwritable = {w.lower() for w in unwritable_catalogue_writes()}
        for name in resource_types:
            rt = lookup_type(name)
            if rt is not None and any(p.lower() == prop for p in rt.immutable):
                found.append(
                    f"property '{rule.property}' is immutable on {rt.name}: it cannot be set after"
                    " creation; use action type 'notify'")
            elif rt is not None and f"{rt.name}/write".lower() in unwritable:
                found.append(
                    f"the guardrail's role does not grant {rt.name}/write (nothing the catalogue knows of"
                    " the type can be set: guardrails.permissions.settable); use action type 'notify'")
        return found

    def plan(self, rule: "Rule", snapshot: ResourceSnapshot, current: Any) -> Change | None:
        if current is not None and operators.values_equal(current, self.value):
            return None
        return Change(rule.property, before=current, after=thaw(self.value))


@actions.register("notify")
class Notify(Action):
    """Report only: nothing is changed, the audit row asks the owner (``notify_tag``) to act.

    ```yaml
    - id: no-node-public-ip
      property: properties.properties.enableNodePublicIp
      expect: {equals: false}
      action: {type: notify}
    ```
    For immutable properties, or where an automatic fix is too disruptive.
    """

    schema = type_schema("notify")
    notify = True
    permissions = ()   # changes nothing


@actions.register("delete-role-assignment")
class DeleteRoleAssignment(Action):
    """Remove an excess role assignment (``kind: role-assignments`` policies only).

    ```yaml
    kind: role-assignments
    action: {type: delete-role-assignment}
    ```
    Planning only: ``plan_assignment`` names the assignment to delete. The safety rails (own
    identities, break-glass principals, the last Owner at a scope) and the circuit breaker are
    applied by the service before anything is deleted; deleting one already gone is success.
    """

    schema = type_schema("delete-role-assignment")
    kinds = ("role-assignments",)
    permissions = ("Microsoft.Authorization/roleAssignments/delete",)

    def plan_assignment(self, assignment: Any) -> Change:
        """``assignment`` is a ``guardrails.policy.roles.Assignment``: before = what it grants,
        after = None (gone)."""
        before = {
            "id": assignment.id,
            "scope": assignment.scope,
            "role_definition_id": assignment.role_definition_id,
            "principal_id": assignment.principal_id,
            "principal_type": assignment.principal_type,
        }
        if assignment.condition:
            before["condition"] = assignment.condition
        return Change("roleAssignment", before=before, after=None)
