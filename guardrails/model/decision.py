"""Decisions and the audit row: the format other teams test against. Keep it stable.

Verdicts (never rename; later issues may add):
    compliant, remediated, requested, violation, dry_run, failed, ignored, invalid, duplicate,
    escalated (a resource reverted too often: reverting stopped, owner notified),
    shadow (a row of a ``mode: shadow`` policy version: what it would have done; its ``reason``
    is the verdict it would have reached)
Per-rule outcomes in ``violations``: remediated, requested, violation, dry_run, failed, exempted,
skipped (a fix planned but not applied because another rule of the same write failed),
escalated (not reverted: flip-flop escalation holds the resource), shadow (shadow rows only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Literal

Verdict = Literal[
    "compliant", "remediated", "requested", "violation", "dry_run",
    "failed", "ignored", "invalid", "duplicate", "escalated", "shadow",
]
VERDICTS: tuple[str, ...] = (
    "compliant", "remediated", "requested", "violation", "dry_run",
    "failed", "ignored", "invalid", "duplicate", "escalated", "shadow",
)

# most serious first: the verdict of an event whose rules ended differently
SEVERITY: tuple[str, ...] = ("failed", "escalated", "violation", "requested", "remediated", "dry_run", "compliant")
_RANK = {v: i for i, v in enumerate(SEVERITY)}
# per-rule outcome -> the verdict it pushes the event towards
_OUTCOME_VERDICT = {
    "failed": "failed", "skipped": "failed", "violation": "violation", "requested": "requested",
    "remediated": "remediated", "dry_run": "dry_run", "exempted": "compliant", "compliant": "compliant",
    "escalated": "escalated", "shadow": "dry_run",
}


def combine_verdict(outcomes: list[str]) -> str:
    """The most serious verdict among the rule outcomes; ``compliant`` when there are none."""
    best = "compliant"
    for o in outcomes:
        v = _OUTCOME_VERDICT[o]
        if _RANK[v] < _RANK[best]:
            best = v
    return best


def short_repr(value: Any) -> str:
    """A value as an audit message shows it: its ``repr``, cut to 80 characters; never one that
    looks like a credential (a token someone put in a tag or a property a policy reads)."""
    text = repr(scrub(value))
    return text if len(text) <= 80 else text[:77] + "..."


def fix_line(v: "ViolationRecord") -> str:
    """One fix as an audit message lists it: ``policy/rule: property -> value (outcome)``."""
    return f"{v.policy}/{v.rule}: {v.property} -> {short_repr(v.after)} ({v.outcome})"


def scrub(value: Any) -> Any:
    """A recorded value as the audit keeps it (a violation's ``before``/``after``, a message's
    value): every string in it that looks like a credential (``secrets.credentials``) replaced by a
    description, in lists and mappings too (keys included). Secrets never reach an audit row, a
    decision event or a log, whichever property a policy reads. Strings under 12 characters (the
    values policies set: ``Enabled``, ``AADToken``) cost one length check."""
    if isinstance(value, str):
        if len(value) < 12:
            return value
        from guardrails.secrets.credentials import looks_like_credential

        return f"<{len(value)} characters not shown: they look like a credential>" \
            if looks_like_credential(value) else value
    if isinstance(value, Mapping):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


@dataclass(frozen=True)
class Change:
    """Set ``property`` (dotted REST path) from ``before`` to ``after``."""

    property: str
    before: Any
    after: Any


@dataclass
class ViolationRecord:
    policy: str          # "policy-id@version"
    rule: str
    property: str
    before: Any
    after: Any           # the value the fix sets (None for notify-only)
    outcome: str
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """As every sink writes it (audit rows, decision events, parked rows): values ``scrub``bed
        (``scrub`` copies every mapping and list, so nothing here is shared with the record).
        Written out: ``dataclasses.asdict`` deep-copies field by field, ~20x the time."""
        return {"policy": self.policy, "rule": self.rule, "property": self.property,
                "before": scrub(self.before), "after": scrub(self.after), "outcome": self.outcome,
                "message": self.message}


@dataclass
class Actor:
    object_id: str | None = None
    app_id: str | None = None
    upn: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"object_id": self.object_id, "app_id": self.app_id, "upn": self.upn}


@dataclass
class AuditRow:
    """One row per delivered event, whatever happened."""

    event_id: str
    event_type: str
    resource_id: str
    verdict: str
    reason: str = ""
    message: str = ""
    violations: list[ViolationRecord] = field(default_factory=list)
    notify: bool = False
    actor: Actor = field(default_factory=Actor)
    correlation_id: str = ""
    duration_ms: float = 0.0
    time: str = ""
    policies: list[str] = field(default_factory=list)   # every "id@version" that applied
    delivery_id: str = ""                                # unique per delivery (row key suffix)
    event_time: str = ""     # when the change happened (the event's time, ISO 8601 UTC); "" when unknown

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "resource_id": self.resource_id,
            "verdict": self.verdict,
            "reason": self.reason,
            "message": self.message,
            "violations": [v.to_dict() for v in self.violations],
            "notify": self.notify,
            "actor": self.actor.to_dict(),
            "correlation_id": self.correlation_id,
            "duration_ms": self.duration_ms,
            "time": self.time,
            "policies": list(self.policies),
            "delivery_id": self.delivery_id,
            "event_time": self.event_time,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditRow":
        return cls(
            event_id=d.get("event_id", ""),
            event_type=d.get("event_type", ""),
            resource_id=d.get("resource_id", ""),
            verdict=d["verdict"],
            reason=d.get("reason", ""),
            message=d.get("message", ""),
            violations=[ViolationRecord(**v) for v in d.get("violations", [])],
            notify=bool(d.get("notify", False)),
            actor=Actor(**(d.get("actor") or {})),
            correlation_id=d.get("correlation_id", ""),
            duration_ms=float(d.get("duration_ms", 0.0)),
            time=d.get("time", ""),
            policies=list(d.get("policies", [])),
            delivery_id=d.get("delivery_id", ""),
            event_time=d.get("event_time", "") or "",
        )


def acted(row: AuditRow) -> bool:
    """Whether the decision behind ``row`` changed something (a fix made or accepted)."""
    return any(v.outcome in ("remediated", "requested") for v in row.violations)


def as_it_stood(row: AuditRow) -> AuditRow:
    """A decision that stopped after acting (a table write after the act failed), as its row: the
    verdict of its records so far, what was done, and why the row is incomplete."""
    row.verdict = combine_verdict([v.outcome for v in row.violations])
    row.reason = row.reason or "store_error"
    done = row.message or "; ".join(fix_line(v) for v in row.violations)
    row.message = (done[:1800] + " [the decision stopped after acting: a table write failed; "
                   "later steps (a pending-fix record) may be missing]")
    return row
