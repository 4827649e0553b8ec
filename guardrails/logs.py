"""Structured (JSON) log lines with per-invocation context bound once.

``with bound(event_id=..., resource_id=...):`` sets context for one invocation (contextvars),
reset when it ends (a pooled thread reused for the next invocation carries none of it over);
``emit(logger, level, "event_name", **fields)`` writes one JSON object. Never pass secrets.
"""

from __future__ import annotations

import contextvars
import json
import logging
from contextlib import contextmanager
from typing import Any, Iterator

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("guardrails_log_context", default={})


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def emit(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    if not logger.isEnabledFor(level):
        return
    record = {"event": event, **_context.get(), **fields}
    logger.log(level, "%s", json.dumps(record, default=str, sort_keys=True))


# -- owner notifications -------------------------------------------------------------------
NOTIFY_EVENT = "guardrail_violation_notify"
_held: contextvars.ContextVar[list[tuple[logging.Logger, dict[str, Any]]] | None] = contextvars.ContextVar(
    "guardrails_held_notices", default=None)


def notify_owner(logger: logging.Logger, **fields: Any) -> None:
    """The WARNING line that tells a finding's owner (``guardrail_violation_notify``). Inside
    ``holding_notices(True)`` it is kept until the decision knows whether it is news
    (``release_notices``) or a repeat the owner was already told of (dropped). Its values are
    ``scrub``bed: the owner tag it names the owner by may hold anything, a token included."""
    from .model.decision import scrub

    fields = {k: scrub(v) for k, v in fields.items()}
    held = _held.get()
    if held is not None:
        held.append((logger, dict(fields)))
        return
    emit(logger, logging.WARNING, NOTIFY_EVENT, **fields)


@contextmanager
def holding_notices(hold: bool) -> Iterator[list[tuple[logging.Logger, dict[str, Any]]]]:
    """``hold``: keep this decision's notices until the block ends, then emit those still held
    (whatever way it ends: a notice is dropped only by clearing the list, for a repeat); False:
    emit them at once, even inside an outer decision that holds its own (a nested re-decision's
    findings are news of their own)."""
    held: list[tuple[logging.Logger, dict[str, Any]]] = []
    token = _held.set(held if hold else None)
    try:
        yield held
    finally:
        _held.reset(token)
        while held:
            logger, fields = held.pop(0)
            emit(logger, logging.WARNING, NOTIFY_EVENT, **fields)
