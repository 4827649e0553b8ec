"""Small interfaces between the use cases and the outside world.

The service depends on these Protocols only; ``guardrails/adapters`` implements them over the
Azure SDKs, and functional tests implement them in memory with the same failure behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Protocol, Sequence

from .model.decision import AuditRow
from .model.resource import ResourceSnapshot


@dataclass(frozen=True)
class WriteResult:
    """``done``: ARM answered the write as finished; ``requested``: a long-running
    operation was accepted and still runs (never reported as done)."""

    state: Literal["done", "requested"]
    body: Mapping[str, Any] | None = None


class ResourceGateway(Protocol):
    def get_resource(self, resource_id: str, *, api_version: str) -> ResourceSnapshot:
        """Raises ResourceNotFound, ArmThrottled, ArmTransient, ArmError."""

    def patch_resource(self, resource_id: str, body: Mapping[str, Any], *, api_version: str,
                       deadline: float, correlation_id: str | None = None) -> WriteResult: ...

    def put_resource(self, resource_id: str, body: Mapping[str, Any], *, api_version: str,
                     etag: str | None, deadline: float, correlation_id: str | None = None) -> WriteResult:
        """``correlation_id`` is sent as ``x-ms-correlation-request-id``: ARM's correlation id of
        the write, which its ResourceWriteSuccess event carries as ``data.correlationId``."""


class PolicyRepository(Protocol):
    def list_documents(self) -> list[tuple[str, dict]]:
        """(source, validated policy document) for every stored policy."""

    def replace_all(self, documents: Sequence[tuple[str, dict]], *, guard=None) -> dict[str, int]:
        """Make the store hold exactly these documents; returns counts of changes. ``guard`` gets
        the documents as read first and may refuse (``metadata sync``'s version check)."""


@dataclass(frozen=True)
class Claim:
    """Result of trying to take an event id: ``acquired`` (we act), or ``completed``
    (someone already did; ``verdict`` is what they recorded)."""

    state: Literal["acquired", "completed"]
    token: Any = None          # opaque handle for complete/release (etag)
    verdict: str | None = None
    previous_holder: str | None = None   # acquired by taking over an attempt that died: its delivery id
    parked: dict | None = None   # the decision an earlier attempt acted on but could not audit (a row dict)
    intent: str | None = None    # taken over: what that attempt noted it set out to do before it acted (JSON)


class IdempotencyStore(Protocol):
    def acquire(self, key: str, *, holder: str) -> Claim:
        """Raises IdempotencyError when another live delivery holds the key."""

    def complete(self, key: str, claim: Claim, *, verdict: str) -> None: ...

    def release(self, key: str, claim: Claim) -> None: ...

    def hand_on(self, key: str, claim: Claim) -> None:
        """``release`` after a failed attempt: a claim that took over a dead attempt leaves that
        attempt (holder, noted intent) for the next one to take over, expired, rather than nothing."""

    def park(self, key: str, claim: Claim, row: dict) -> None:
        """Keep a decision that was acted on but could not be audited (status UNAUDITED) for
        the next attempt, which audits it instead of deciding again. Raises StoreError."""

    def note(self, key: str, claim: Claim, intent: str) -> Claim:
        """Keep, before an act that cannot be read back as a change (a deletion), what this
        attempt sets out to do: an attempt that takes the record over gets it as ``intent``.
        Returns the claim to use from now on. Raises IdempotencyError when taken over, StoreError."""


class AuditSink(Protocol):
    def write(self, row: AuditRow) -> None:
        """Persist one audit row (and its per-resource index). Raises StoreError."""

    def rows_of_delivery(self, resource_id: str, delivery_id: str) -> list[AuditRow]:
        """The rows one delivery wrote for one resource. Raises StoreError."""

    def rows_of_event(self, resource_id: str, event_id: str) -> list[AuditRow]:
        """The rows every delivery of one event wrote for one resource, oldest first. Raises
        StoreError."""


class BreakerStore(Protocol):
    def try_acquire(self, policy_id: str, subscription_id: str, *, max_actions: int, window_seconds: int,
                    key: str | None = None) -> bool:
        """Record one remediation if the window has room; False when the breaker is (now) open.
        ``key`` (the event id): a redelivery reuses the permit its event took inside the window."""

    def reset(self, policy_id: str, subscription_id: str) -> bool: ...

    # optional (``SafetyRails`` falls back to ``try_acquire`` and gives nothing back without them):
    # ``acquire`` -> (allowed, counted by this call); ``release(policy, subscription, key)`` gives
    # back the permit ``key`` took when its fix was not made


class PendingFixStore(Protocol):
    def add(self, resource_id: str, event_id: str, record: dict) -> None: ...

    def list(self, resource_id: str) -> list[tuple[str, dict]]: ...

    def remove(self, resource_id: str, key: str) -> None: ...
