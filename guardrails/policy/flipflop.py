"""Flip-flop escalation, pure: one step of a resource's revert history.

A pipeline or IaC run that keeps setting a property the guardrail keeps reverting produces an
endless write war (and an Event Grid storm). The guardrail counts its reverts per resource in a
sliding window; the revert that would exceed ``max_reverts`` in ``window_minutes`` is not made:
the resource is *escalated* (verdict ``escalated``), the actors whose changes were reverted are
named, and the owner is told. While escalated, further changes are recorded, never reverted,
until an operator runs ``guardrails escalation reset RESOURCE_ID`` (or, when the policy sets
``hold_minutes``, until that long passes without a new attempt).

``step(state, now=, actor=, rule=, event=)`` returns the next state and the decision; the table
adapter (``guardrails/adapters/escalations.py``) stores the state with optimistic concurrency.

A revert is counted once per event: Event Grid redelivers an event whose revert failed (ARM
throttling, a 5xx, a read-back that disagreed), and counting each attempt would escalate one
change after three failed tries and leave it in place. ``event`` names the attempt; one already
counted inside the window is allowed again without counting.

The counted write also keeps what the revert is about to change (``intent``: policy, rule,
property, before, after), the last ``MAX_INTENTS`` inside the window. A worker that dies between
its ARM write and its audit row leaves no other trace of the fix; the delivery that takes the
event over finds the resource already compliant and, with the intent, still records the
violation and its revert instead of a bare ``compliant`` (``ResourceGuardrail.recover``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from guardrails.model.policy import FlipFlop

MAX_ACTORS = 10   # actors kept per resource (most recent, distinct)
MAX_EVENTS = 50   # event keys of counted reverts kept per resource (inside the window)
MAX_INTENTS = 8   # what the latest counted reverts set out to change (event key, JSON), inside the window
MAX_INTENT_CHARS = 2000   # a larger intent is not kept (its event is still counted)


@dataclass(frozen=True)
class FlipFlopState:
    times: tuple[float, ...] = ()            # epoch seconds of the reverts inside the window
    actors: tuple[Mapping[str, Any], ...] = ()   # {"object_id", "upn", "app_id", "at"}, newest last
    escalated: bool = False
    escalated_at: float | None = None
    last_attempt: float | None = None
    events: tuple[tuple[str, float], ...] = ()   # (event key, when counted) of the counted reverts
    intents: tuple[tuple[str, str], ...] = ()    # (event key, JSON of the changes) of the latest reverts


@dataclass(frozen=True)
class FlipFlopDecision:
    allowed: bool                   # make this revert
    escalated_now: bool = False     # this attempt tripped the escalation
    reverts: int = 0                # reverts inside the window (before this attempt)
    actors: tuple[Mapping[str, Any], ...] = field(default=())
    counted: bool = False           # this attempt took a count (not a redelivery re-allowed)


def strictest(settings: Iterable[FlipFlop]) -> FlipFlop:
    """Several policies fix one resource in one write: the smallest revert budget over the
    longest window (and the longest hold) wins."""
    items = list(settings)
    if not items:
        return FlipFlop()
    holds = [f.hold_minutes for f in items]
    hold = None if any(h is None for h in holds) else max(h for h in holds if h is not None)
    return FlipFlop(max_reverts=min(f.max_reverts for f in items),
                    window_minutes=max(f.window_minutes for f in items), hold_minutes=hold)


def _with_actor(actors: tuple[Mapping[str, Any], ...], actor: Mapping[str, Any] | None,
                now: float) -> tuple[Mapping[str, Any], ...]:
    if not actor or not any(actor.get(k) for k in ("object_id", "upn", "app_id")):
        return actors
    entry = {"object_id": actor.get("object_id"), "upn": actor.get("upn"), "app_id": actor.get("app_id"), "at": now}
    same = lambda a: (a.get("object_id"), a.get("app_id"), a.get("upn")) == (  # noqa: E731
        entry["object_id"], entry["app_id"], entry["upn"])
    return tuple([a for a in actors if not same(a)] + [entry])[-MAX_ACTORS:]


def _with_intent(intents: tuple[tuple[str, str], ...], event: str | None,
                 intent: str | None) -> tuple[tuple[str, str], ...]:
    if event is None or intent is None or len(intent) > MAX_INTENT_CHARS:
        return intents
    return tuple([(k, i) for k, i in intents if k != event] + [(event, intent)])[-MAX_INTENTS:]


def step(state: FlipFlopState | None, *, now: float, actor: Mapping[str, Any] | None, rule: FlipFlop,
         event: str | None = None, intent: str | None = None) -> tuple[FlipFlopState, FlipFlopDecision]:
    """One attempted revert at ``now`` of a change made by ``actor``; ``event`` names the attempt
    (a redelivery of an event already counted is allowed again, not counted twice); ``intent``
    is what an allowed revert sets out to change, kept with the event."""
    state = state or FlipFlopState()
    window = rule.window_minutes * 60.0
    if state.escalated and rule.hold_minutes is not None and state.last_attempt is not None \
            and now - state.last_attempt > rule.hold_minutes * 60.0:
        state = FlipFlopState()                         # quiet for the hold: start afresh
    horizon = now - window
    times = tuple(t for t in state.times if t > horizon)
    events = tuple((k, t) for k, t in state.events if t > horizon)
    intents = tuple((k, i) for k, i in state.intents if any(k == e for e, _t in events))
    actors = tuple(a for a in state.actors if float(a.get("at") or 0) > horizon or state.escalated)
    actors = _with_actor(actors, actor, now)
    if state.escalated:
        new = replace(state, times=times, actors=actors, last_attempt=now, events=events, intents=intents)
        return new, FlipFlopDecision(False, False, len(times), actors)
    if event is not None and any(k == event for k, _t in events):
        # this event's revert was counted on an earlier delivery (that one failed): try it again
        new = FlipFlopState(times=times, actors=actors, escalated=False, last_attempt=now, events=events,
                            intents=_with_intent(intents, event, intent))
        return new, FlipFlopDecision(True, False, max(len(times) - 1, 0), actors)
    if len(times) >= rule.max_reverts:
        new = FlipFlopState(times=times, actors=actors, escalated=True, escalated_at=now, last_attempt=now,
                            events=events, intents=intents)
        return new, FlipFlopDecision(False, True, len(times), actors)
    if event is not None:
        events = (events + ((event, now),))[-MAX_EVENTS:]
        intents = tuple((k, i) for k, i in intents if any(k == e for e, _t in events))
    new = FlipFlopState(times=times + (now,), actors=actors, escalated=False, last_attempt=now, events=events,
                        intents=_with_intent(intents, event, intent))
    return new, FlipFlopDecision(True, False, len(times), actors, counted=True)


def withdraw(state: FlipFlopState, event: str) -> FlipFlopState:
    """``state`` without the count ``event`` took: its revert was not made after all (the circuit
    breaker refused it), and a revert that never happened must not bring the resource nearer to
    escalation. An escalated state, or an event not counted, is returned as it is."""
    hit = [t for k, t in state.events if k == event]
    if not hit or state.escalated:
        return state
    times = list(state.times)
    if hit[-1] in times:
        times.remove(hit[-1])
    return replace(state, times=tuple(times), events=tuple((k, t) for k, t in state.events if k != event),
                   intents=tuple((k, i) for k, i in state.intents if k != event))


def describe_actors(actors: Iterable[Mapping[str, Any]]) -> str:
    names = []
    for a in actors:
        name = a.get("upn") or a.get("object_id") or a.get("app_id")
        if name and name not in names:
            names.append(str(name)[:80])
    return ", ".join(names) or "unknown actor"


__all__ = ["FlipFlopState", "FlipFlopDecision", "step", "strictest", "describe_actors", "withdraw", "MAX_ACTORS", "MAX_EVENTS", "MAX_INTENTS"]
