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
                       deadline: float) -> WriteResult: ...

    def put_resource(self, resource_id: str, body: Mapping[str, Any], *, api_version: str,
                     etag: str | None, deadline: float) -> WriteResult: ...


class PolicyRepository(Protocol):
    def list_documents(self) -> list[tuple[str, dict]]:
        """(source, validated policy document) for every stored policy."""

    def replace_all(self, documents: Sequence[tuple[str, dict]]) -> dict[str, int]:
        """Make the store hold exactly these documents; returns counts of changes."""


@dataclass(frozen=True)
class Claim:
    """Result of trying to take an event id: ``acquired`` (we act), or ``completed``
    (someone already did; ``verdict`` is what they recorded)."""

    state: Literal["acquired", "completed"]
    token: Any = None          # opaque handle for complete/release (etag)
    verdict: str | None = None


class IdempotencyStore(Protocol):
    def acquire(self, key: str, *, holder: str) -> Claim:
        """Raises IdempotencyError when another live delivery holds the key."""

    def complete(self, key: str, claim: Claim, *, verdict: str) -> None: ...

    def release(self, key: str, claim: Claim) -> None: ...


class AuditSink(Protocol):
    def write(self, row: AuditRow) -> None:
        """Persist one audit row (and its per-resource index). Raises StoreError."""
