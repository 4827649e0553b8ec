"""Policy value types: what is wanted of a resource, as loaded from ``metadata/``.

Two kinds share one format and one loader: ``Policy`` (``kind: resource``, the default when
``kind`` is absent) judges resource properties; ``RolePolicy`` (``kind: role-assignments``)
judges role assignments. The on-demand check kinds (``job``, ``model-registry``,
``check-access``) use the same loader; their value types live in ``guardrails/checks/policies.py``.

Instances are immutable (nested mappings are read-only, sequences are tuples) so one compiled
policy set can be shared by every invocation of a warm Functions host. Build them through
``guardrails.policy.loader`` (files) or ``Policy.from_document`` (Table Storage rows; returns
either kind): both run the same three validation passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Mapping, Union

Mode = Literal["enforce", "audit", "off", "shadow"]
MODES: tuple[str, ...] = ("enforce", "audit", "off")
# ``kind: resource`` only: a ``shadow`` version runs beside the enforced version of the same id on
# the live stream and records what it would have done (``shadow`` rows) without acting
RESOURCE_MODES: tuple[str, ...] = MODES + ("shadow",)
RESOURCE_KIND = "resource"
ROLE_KIND = "role-assignments"
# on-demand check kinds (value types in guardrails/checks/policies.py)
JOB_KIND = "job"
MODEL_REGISTRY_KIND = "model-registry"
CHECK_ACCESS_KIND = "check-access"
SECRETS_KIND = "secrets"        # value types in guardrails/secrets/policy.py
KINDS: tuple[str, ...] = (RESOURCE_KIND, ROLE_KIND, JOB_KIND, MODEL_REGISTRY_KIND, CHECK_ACCESS_KIND, SECRETS_KIND)
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
class PrivateEndpointFirst:
    """Disable public access only once private connectivity works: the resource needs at least
    one ``Approved`` private endpoint connection (``properties.privateEndpointConnections``; an ML
    registry's ``properties.registryPrivateEndpointConnections``).
    Without one, ``when_missing`` decides: ``notify`` (violation + notify, no change) or
    ``enforce`` (fix anyway; the record says the endpoint was missing)."""

    when_missing: Literal["notify", "enforce"] = "notify"


@dataclass(frozen=True)
class Rule:
    id: str
    property: str                                  # dotted REST path
    expect: Mapping[str, Any] = field(hash=False)  # exactly one operator -> operand
    action: Mapping[str, Any] = field(hash=False)  # {"type": <registered action>, ...}
    description: str = ""
    private_endpoint: PrivateEndpointFirst | None = None
    allow_unlisted_property: bool = False         # the path need not be in the type's property list

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
class FlipFlop:
    """Flip-flop escalation: when one resource has been reverted ``max_reverts`` times within
    ``window_minutes`` (a pipeline or IaC run fighting the guardrail), the next revert is not
    made: the decision is ``escalated`` and the owner is told. It holds until ``guardrails
    escalation reset`` (or ``hold_minutes`` without a new attempt, when set)."""

    max_reverts: int = 3
    window_minutes: int = 60
    hold_minutes: int | None = None


DEFAULT_FLIP_FLOP = FlipFlop()


def _put_flip_flop(doc: dict[str, Any], ff: FlipFlop) -> None:
    """A policy document's ``flip_flop``: written only when it is not the default."""
    if ff != DEFAULT_FLIP_FLOP:
        out: dict[str, Any] = {"max_reverts": ff.max_reverts, "window_minutes": ff.window_minutes}
        if ff.hold_minutes is not None:
            out["hold_minutes"] = ff.hold_minutes
        doc["flip_flop"] = out


@dataclass(frozen=True)
class Policy:
    kind: ClassVar[str] = RESOURCE_KIND

    id: str
    version: int
    description: str
    mode: Mode
    selector: Selector
    rules: tuple[Rule, ...]
    exemptions: tuple[Exemption, ...] = ()
    notify_tag: str = DEFAULT_NOTIFY_TAG
    breaker: Breaker = DEFAULT_BREAKER
    flip_flop: FlipFlop = DEFAULT_FLIP_FLOP
    contact: str = ""              # who to tell when the resource has no owner tag (mail, team, group)
    source: str = field(default="", compare=False)   # file path or table row it came from

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def row_key(self) -> str:
        """Key of its Table Storage row: a shadow version lives beside the enforced one."""
        return f"{self.id}@shadow" if self.mode == "shadow" else self.id

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
            if r.private_endpoint is not None:
                rd["private_endpoint"] = {"required": True, "when_missing": r.private_endpoint.when_missing}
            if r.allow_unlisted_property:
                rd["allow_unlisted_property"] = True
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
            doc["exemptions"] = _exemptions_doc(self.exemptions)
        doc["notify_tag"] = self.notify_tag
        doc["breaker"] = {"max_actions": self.breaker.max_actions, "window_seconds": self.breaker.window_seconds}
        if self.contact:
            doc["contact"] = self.contact
        _put_flip_flop(doc, self.flip_flop)
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, source: str = "<document>") -> "AnyPolicy":
        """Re-validate (all three passes) and build; raises ``MetadataValidationError``.

        Returns the document's kind: a ``RolePolicy`` for ``kind: role-assignments``, else a
        ``Policy``. A document read back from Table Storage is not trusted: a tampered row is
        rejected.
        """
        return _from_document(doc, source)


def _from_document(doc: Mapping[str, Any], source: str) -> "AnyPolicy":
    from guardrails.policy.loader import load_documents   # policy layer builds model values

    (policy,) = load_documents([(source, doc)], check_paths=False)   # rows: checked by validate/sync
    return policy


def _exemptions_doc(exemptions: tuple[Exemption, ...]) -> list[dict[str, Any]]:
    return [
        {"scope": e.scope, "reason": e.reason, "owner": e.owner,
         **({"expires": e.expires.isoformat()} if e.expires else {})}
        for e in exemptions
    ]


# -- role-assignment policies ---------------------------------------------------------------
PRINCIPAL_TYPES: tuple[str, ...] = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")


@dataclass(frozen=True)
class RoleSelector:
    """Which subscriptions a role policy covers; empty means all."""

    subscriptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrivilegedRoles:
    """What counts as privileged at subscription scope (or above).

    ``roles`` / ``conditional_roles`` are kept as written (built-in names or GUIDs);
    ``role_ids`` / ``conditional_role_ids`` are the same resolved to GUIDs by the loader.
    """

    roles: tuple[str, ...] = ()
    custom_role_actions: tuple[str, ...] = ()
    custom_role_data_actions: tuple[str, ...] = ()     # the same for dataActions (notDataActions honoured)
    conditional_roles: tuple[str, ...] = ()
    allowed_service_principals: tuple[str, ...] = ()   # object ids, lower-case dashed
    role_ids: frozenset[str] = frozenset()
    conditional_role_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RoleGrant:
    """Who may hold ``role`` and where: an assignment of the role is excess unless its scope
    lies in one of ``scopes`` and its principal is listed, in a listed group, or of a listed type."""

    role: str                                  # as written: built-in name or GUID
    role_id: str                               # resolved GUID
    scopes: tuple[str, ...]
    principals: tuple[str, ...] = ()           # object ids, lower-case dashed
    groups: tuple[str, ...] = ()               # Entra group object ids, lower-case dashed
    principal_types: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class RolePolicy:
    """A ``kind: role-assignments`` policy (see ``metadata/README.md``)."""

    kind: ClassVar[str] = ROLE_KIND

    id: str
    version: int
    description: str
    mode: Mode
    action: Mapping[str, Any] = field(hash=False)  # {"type": "delete-role-assignment", ...}
    selector: RoleSelector = RoleSelector()
    privileged: PrivilegedRoles = PrivilegedRoles()
    break_glass: tuple[str, ...] = ()              # object ids, lower-case dashed
    grants: tuple[RoleGrant, ...] = ()
    strict_scopes: tuple[str, ...] = ()
    exemptions: tuple[Exemption, ...] = ()
    breaker: Breaker = DEFAULT_BREAKER
    # a principal re-granted the role it keeps losing: past this budget the removal still happens,
    # and the grant is escalated (see ``guardrails.role_removal``)
    flip_flop: FlipFlop = DEFAULT_FLIP_FLOP
    source: str = field(default="", compare=False)

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def action_type(self) -> str:
        return str(self.action["type"])

    def to_document(self) -> dict[str, Any]:
        """The validated content as plain JSON-serialisable data (datetimes as ISO strings)."""
        doc: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "kind": self.kind,
            "description": self.description,
            "mode": self.mode,
        }
        if self.selector.subscriptions:
            doc["selector"] = {"subscriptions": list(self.selector.subscriptions)}
        pr = self.privileged
        doc["privileged"] = {
            "roles": list(pr.roles),
            "custom_role_actions": list(pr.custom_role_actions),
            "custom_role_data_actions": list(pr.custom_role_data_actions),
            "conditional_roles": list(pr.conditional_roles),
            "allowed_service_principals": list(pr.allowed_service_principals),
        }
        doc["break_glass"] = list(self.break_glass)
        grants = []
        for g in self.grants:
            gd: dict[str, Any] = {"role": g.role}
            if g.description:
                gd["description"] = g.description
            gd.update(scopes=list(g.scopes), principals=list(g.principals), groups=list(g.groups),
                      principal_types=list(g.principal_types))
            grants.append(gd)
        doc["grants"] = grants
        doc["strict_scopes"] = list(self.strict_scopes)
        doc["action"] = thaw(self.action)
        if self.exemptions:
            doc["exemptions"] = _exemptions_doc(self.exemptions)
        doc["breaker"] = {"max_actions": self.breaker.max_actions, "window_seconds": self.breaker.window_seconds}
        _put_flip_flop(doc, self.flip_flop)
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, source: str = "<document>") -> "AnyPolicy":
        """As ``Policy.from_document``: validates all three passes, returns the document's kind."""
        return _from_document(doc, source)


AnyPolicy = Union[Policy, RolePolicy]
