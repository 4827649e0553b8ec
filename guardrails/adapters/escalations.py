"""Table-backed flip-flop escalation state, one entity per resource, shared by every worker.

``<prefix>Escalations``: PK sha256(resource id)[:32], RK ``flipflop``; the revert times inside the
window, the actors whose changes were reverted, the escalated flag. Every change is conditional
(create, or update with the etag read) so two workers can never both make the revert that should
have escalated. The state this worker wrote last is kept with its etag: the common case (a
resource reverted for the first time, or again by the same worker) is one conditional write, no
read. That memory is bounded (``size`` resources, the least recently written dropped first) and
an entry goes once its window has passed; it only ever saves a read: every write made from it is
conditional on its etag, and a resource it does not hold is read from the table (after a create
that fails when the row exists).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Mapping

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from ..errors import StoreError
from ..model.policy import FlipFlop
from ..policy.flipflop import FlipFlopDecision, FlipFlopState, step, withdraw
from .tables import NO_CONTENT, Tables, _store_error, delete_existing, resource_partition

_RK = "flipflop"


def _bounded(items: list, limit: int = 30000) -> str:
    """JSON of ``items``, oldest dropped until it fits one table property: never cut mid-value
    (a cut string would not parse back)."""
    while True:
        text = json.dumps(items)
        if len(text) <= limit or not items:
            return text
        items = items[1:]


def _to_entity(resource_id: str, state: FlipFlopState) -> dict[str, Any]:
    return {"PartitionKey": resource_partition(resource_id), "RowKey": _RK, "resource_id": resource_id[:4000],
            "times": json.dumps(list(state.times)), "actors": _bounded([dict(a) for a in state.actors]),
            "events": _bounded([[k[:300], t] for k, t in state.events]),
            "intents": _bounded([[k[:300], i] for k, i in state.intents]),   # also bounded by flipflop.MAX_INTENT*
            "escalated": state.escalated,
            "escalated_at": state.escalated_at if state.escalated_at is not None else -1.0,
            "last_attempt": state.last_attempt if state.last_attempt is not None else -1.0}


def _from_entity(e: Mapping[str, Any]) -> FlipFlopState:
    def opt(v):
        return None if v is None or float(v) < 0 else float(v)
    return FlipFlopState(times=tuple(float(t) for t in json.loads(e.get("times") or "[]")),
                         actors=tuple(json.loads(e.get("actors") or "[]")),
                         events=tuple((str(k), float(t)) for k, t in json.loads(e.get("events") or "[]")),
                         intents=tuple((str(k), str(i)) for k, i in json.loads(e.get("intents") or "[]")),
                         escalated=bool(e.get("escalated")), escalated_at=opt(e.get("escalated_at")),
                         last_attempt=opt(e.get("last_attempt")))


class TableEscalationStore:
    MAX_ATTEMPTS = 20

    def __init__(self, tables: Tables, *, clock=lambda: datetime.now(timezone.utc), size: int = 1024) -> None:
        self._t = tables
        self._clock = clock
        self._size = size
        # pk -> (state, etag, until): written here, kept until its window passes; oldest write first
        self._known: dict[str, tuple[FlipFlopState, str, float]] = {}
        self._lock = threading.Lock()

    def _take(self, pk: str, now: float) -> tuple[FlipFlopState, str, float] | None:
        """The state this worker wrote last for ``pk``, taken out (a concurrent attempt on the
        same resource reads the table); ``None`` once its window has passed."""
        with self._lock:
            cached = self._known.pop(pk, None)
        return cached if cached is not None and now < cached[2] else None

    def _keep(self, pk: str, state: FlipFlopState, etag: str | None, until: float, now: float) -> None:
        if etag is None or until <= now:
            return
        with self._lock:
            self._known.pop(pk, None)
            while self._known:
                oldest = next(iter(self._known))
                if len(self._known) < self._size and now < self._known[oldest][2]:
                    break
                del self._known[oldest]                 # window passed, or the bound reached
            if self._size > 0:
                self._known[pk] = (state, etag, until)

    def _table(self):
        return self._t.table(self._t.escalations_name)

    def attempt(self, resource_id: str, actor: Mapping[str, Any] | None, *, rule: FlipFlop,
                event: str | None = None, intent: str | None = None) -> FlipFlopDecision:
        """Account one revert the guardrail is about to make (``allowed``) or must not make;
        ``event`` names it, so a redelivery after a failed revert is not counted again;
        ``intent`` (JSON) is what it sets out to change, for ``intent()``."""
        table = self._table()
        pk = resource_partition(resource_id)
        fresh = True        # first try of a resource this worker knows nothing of: assume no history
        try:
            for _attempt in range(self.MAX_ATTEMPTS):
                now = self._clock().timestamp()
                cached = self._take(pk, now)
                if cached is not None:
                    state, etag, _until = cached
                elif fresh:
                    state, etag = None, None     # a conditional create: one call when that is true
                else:
                    try:
                        current = table.get_entity(pk, _RK)
                        state, etag = _from_entity(current), current.metadata["etag"]
                    except ResourceNotFoundError:
                        state, etag = None, None
                new, decision = step(state, now=now, actor=actor, rule=rule, event=event, intent=intent)
                entity = _to_entity(resource_id, new)
                try:
                    if etag is None:
                        meta = table.create_entity(entity, **NO_CONTENT)
                    else:
                        meta = table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                                   match_condition=MatchConditions.IfNotModified)
                except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                    fresh = False                # it has history (or another worker moved it): read it
                    continue
                # every time it holds is inside the window until ``now + window``: then it goes
                self._keep(pk, new, meta.get("etag"), now + rule.window_minutes * 60.0, now)
                return decision
        except AzureError as exc:
            raise _store_error("escalation update", exc) from exc
        raise StoreError("escalation update kept conflicting; retry later")

    def withdraw(self, resource_id: str, event: str) -> None:
        """Take back the count ``attempt`` took for ``event`` (``flipflop.withdraw``): the
        breaker refused the revert. Conditional like every change; nothing to do, no write."""
        table = self._table()
        pk = resource_partition(resource_id)
        try:
            for _attempt in range(self.MAX_ATTEMPTS):
                now = self._clock().timestamp()
                cached = self._take(pk, now)
                if cached is not None:
                    state, etag, until = cached
                else:
                    try:
                        current = table.get_entity(pk, _RK)
                    except ResourceNotFoundError:
                        return
                    # the rule's window is not known here: what is read is not kept
                    state, etag, until = _from_entity(current), current.metadata["etag"], now
                new = withdraw(state, event)
                if new == state:
                    self._keep(pk, state, etag, until, now)
                    return
                try:
                    meta = table.update_entity(_to_entity(resource_id, new), mode=UpdateMode.REPLACE, etag=etag,
                                               match_condition=MatchConditions.IfNotModified)
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue
                self._keep(pk, new, meta.get("etag"), until, now)
                return
        except AzureError as exc:
            raise _store_error("escalation update", exc) from exc
        raise StoreError("escalation update kept conflicting; retry later")

    def _read(self, resource_id: str) -> Mapping[str, Any] | None:
        try:
            return self._table().get_entity(resource_partition(resource_id), _RK)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _store_error("escalation read", exc) from exc

    def intent(self, resource_id: str, event: str) -> str | None:
        """What the revert counted for ``event`` set out to change (its JSON), if still kept:
        one read, made only when a delivery takes over an event another one died holding."""
        e = self._read(resource_id)
        return None if e is None else next((i for k, i in _from_entity(e).intents if k == event), None)

    def status(self, resource_id: str) -> dict[str, Any] | None:
        e = self._read(resource_id)
        if e is None:
            return None
        state = _from_entity(e)
        return {"resource_id": e.get("resource_id", resource_id), **asdict(state),
                "actors": [dict(a) for a in state.actors], "times": list(state.times)}

    def reset(self, resource_id: str) -> bool:
        """Forget the resource's history (an operator settled the fight). Whether there was any."""
        pk = resource_partition(resource_id)
        with self._lock:
            self._known.pop(pk, None)
        return delete_existing(self._table(), pk, _RK, "escalation reset")


__all__ = ["TableEscalationStore"]
