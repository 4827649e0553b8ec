"""Timer: deliver the decision events the topic did not take when they were decided (the outbox),
with their original ids, so subscribers eventually see every non-compliant decision exactly as
audited. Schedule: app setting ``GUARDRAILS_DECISION_OUTBOX_SCHEDULE`` (NCRONTAB). A run delivers
1,000 events at a time and goes on while the topic takes them, within ``GUARDRAILS_SWEEP_MAX_SECONDS``."""

from __future__ import annotations

import logging

import azure.functions as func

from ..bootstrap import get_service
from ..logs import emit

bp = func.Blueprint()
log = logging.getLogger("guardrails")


@bp.function_name("decision_outbox")
@bp.timer_trigger(arg_name="timer", schedule="%GUARDRAILS_DECISION_OUTBOX_SCHEDULE%", run_on_startup=False)
def decision_outbox(timer: func.TimerRequest) -> None:
    service = get_service()
    publisher = service.publisher
    if publisher is None:
        emit(log, logging.INFO, "decision_outbox_skipped", reason="no decision topic configured")
        return
    # the whole backlog while the topic takes it, stopping itself before host.json's functionTimeout
    # (10 min) as the sweep does (GUARDRAILS_SWEEP_MAX_SECONDS, 540 s)
    result = publisher.drain(max_seconds=service.settings.sweep_max_seconds)
    emit(log, logging.WARNING if result.failed else logging.INFO, "decision_outbox_run",
         past_due=timer.past_due, **result.to_dict())
