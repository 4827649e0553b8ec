"""Structured (JSON) log lines with per-invocation context bound once.

``bind(event_id=..., resource_id=...)`` sets context for the current invocation (contextvars);
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


def bind(**fields: Any) -> None:
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def emit(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    if not logger.isEnabledFor(level):
        return
    record = {"event": event, **_context.get(), **fields}
    logger.log(level, "%s", json.dumps(record, default=str, sort_keys=True))
