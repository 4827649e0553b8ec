"""What one decision carries while it is made (``_Ctx``), and the small value helpers the entry
points share (``service`` for events and checks, ``timer_decisions`` for the timers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


def _now_iso(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event_time(when: datetime | None) -> str:
    """The event's time for the audit, in UTC; "" when absent or beyond what UTC can express."""
    if when is None:
        return ""
    try:
        return _now_iso(when)
    except (OverflowError, ValueError):     # e.g. 0001-01-01T00:00:00+01:00 has no UTC equivalent
        return ""


@dataclass
class _Ctx:
    delivery_id: str
    started: float
    deadline: float
    now: datetime
    dry_run: bool = False      # on-demand check without ?remediate: decide, never act
    takeover: str = ""         # the delivery id of an attempt at this event that died holding it
    taken_intent: str = ""     # what that attempt noted it set out to do (``note_intent``), JSON
    claim: tuple | None = None  # (key, Claim) while the event's idempotency claim is held
    timer: bool = False        # a timer's decision (sweep, exemption expiry): never redelivered
    said_by: str = ""          # an on-demand check: who asked (``Caller.describe``), ending its row's message


def kv_object_id(ev) -> str:
    """The audit's resource id for a Key Vault object: its data-plane URL, without version."""
    if ev.object_name is None:
        return str(ev.vault_id) if ev.vault_id is not None else f"https://{ev.vault_name.lower()}.vault.azure.net"
    kind = {"Secret": "secrets", "Key": "keys", "Certificate": "certificates"}.get(ev.object_type or "Secret", "secrets")
    return f"https://{ev.vault_name.lower()}.vault.azure.net/{kind}/{ev.object_name}"


class _CheckTarget:
    """What an on-demand check knows: the resource id, no event time (always read fresh)."""

    class _Env:
        time = None

    def __init__(self, resource_id) -> None:
        self.resource_id = resource_id
        self.envelope = self._Env()


def note_intent_or_warn(svc, ctx, intent, **where) -> None:
    """``svc.note_intent`` as a recovery aid: a note the store refuses is logged (WARNING
    ``guardrail_intent_not_noted``, ``where`` naming the object) and the act goes ahead,
    unrecoverable should its worker die; a claim another delivery took over
    (``IdempotencyError``) is raised: that delivery decides."""
    import logging

    from .errors import IdempotencyError, StoreError
    from .logs import emit

    try:
        svc.note_intent(ctx, intent)
    except IdempotencyError:
        raise
    except StoreError as exc:
        emit(logging.getLogger("guardrails"), logging.WARNING, "guardrail_intent_not_noted", **where,
             error=str(exc)[:200])
