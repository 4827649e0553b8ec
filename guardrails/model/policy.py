"""Policy value types: what is wanted of a resource, as loaded from ``metadata/``.

Instances are immutable (nested mappings are read-only, sequences are tuples) so one compiled
policy set can be shared by every invocation of a warm Functions host. Build them through
``guardrails.policy.loader`` (files) or ``Policy.from_document`` (Table Storage rows): both run
the same three validation passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, Mapping

Mode = Literal["enforce", "audit", "off"]
MODES: tuple[str, ...] = ("enforce", "audit", "off")
DEFAULT_NOTIFY_TAG = "owner"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def freeze(value: Any) -> Any:
    """Deep read-only copy: mappings -> MappingProxyType, lists -> tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of ``freeze``: plain dicts and lists (JSON-serialisable for JSON values)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Selector:
    """Which resources a policy covers. Empty ``subscriptions``/``resource_groups``/``tags``
    mean "any"; ``tags`` must all match (key case-insensitive, value exact)."""

    resource_types: tuple[str, ...]
    subscriptions: tuple[str, ...] = ()
    resource_groups: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)


@dataclass(frozen=True)
class Exemption:
    """A reviewed exception: resources under ``scope`` are not remediated while active."""

    scope: str                      # ARM scope or resource id
    reason: str
    owner: str
    expires: datetime | None = None  # timezone-aware; None = until removed

    def active(self, now: datetime) -> bool:
        return self.expires is None or now < self.expires


@dataclass(frozen=True)
class Rule:
    id: str
    property: str                                  # dotted REST path
    expect: Mapping[str, Any] = field(hash=False)  # exactly one operator -> operand
    action: Mapping[str, Any] = field(hash=False)  # {"type": <registered action>, ...}
    description: str = ""

    @property
    def operator(self) -> tuple[str, Any]:
        ((name, operand),) = self.expect.items()
        return name, operand

    @property
    def action_type(self) -> str:
        return str(self.action["type"])


@dataclass(frozen=True)
class Breaker:
    """Circuit breaker: at most ``max_actions`` remediations per subscription in any
    ``window_seconds``; the next one is not taken and the policy drops to audit there."""

    max_actions: int = 50
    window_seconds: int = 600


DEFAULT_BREAKER = Breaker()


@dataclass(frozen=True)
class Policy:
    id: str
    version: int
    description: str
    mode: Mode
    selector: Selector
    rules: tuple[Rule, ...]
    exemptions: tuple[Exemption, ...] = ()
    notify_tag: str = DEFAULT_NOTIFY_TAG
    breaker: Breaker = DEFAULT_BREAKER
    source: str = field(default="", compare=False)   # file path or table row it came from

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def to_document(self) -> dict[str, Any]:
        """The validated content as plain JSON-serialisable data (datetimes as ISO strings)."""
        sel: dict[str, Any] = {"resource_types": list(self.selector.resource_types)}
        if self.selector.subscriptions:
            sel["subscriptions"] = list(self.selector.subscriptions)
        if self.selector.resource_groups:
            sel["resource_groups"] = list(self.selector.resource_groups)
        if self.selector.tags:
            sel["tags"] = dict(self.selector.tags)
        rules = []
        for r in self.rules:
            rd: dict[str, Any] = {"id": r.id}
            if r.description:
                rd["description"] = r.description
            rd.update(property=r.property, expect=thaw(r.expect), action=thaw(r.action))
            rules.append(rd)
        doc: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "description": self.description,
            "mode": self.mode,
            "selector": sel,
            "rules": rules,
        }
        if self.exemptions:
            doc["exemptions"] = [
                {"scope": e.scope, "reason": e.reason, "owner": e.owner,
                 **({"expires": e.expires.isoformat()} if e.expires else {})}
                for e in self.exemptions
            ]
        doc["notify_tag"] = self.notify_tag
        doc["breaker"] = {"max_actions": self.breaker.max_actions, "window_seconds": self.breaker.window_seconds}
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, source: str = "<document>") -> "Policy":
        """Re-validate (all three passes) and build; raises ``MetadataValidationError``.

        A document read back from Table Storage is not trusted: a tampered row is rejected.
        """
        from guardrails.policy.loader import load_documents   # policy layer builds model values

        (policy,) = load_documents([(source, doc)])
        return policy
