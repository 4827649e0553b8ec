"""Timer triggers: the reconciling sweep, the exemption-expiry re-enforcement and the dead-letter
replay.

Schedules are app settings (``%GUARDRAILS_SWEEP_SCHEDULE%``, ``%GUARDRAILS_EXPIRY_SCHEDULE%``,
``%GUARDRAILS_DEAD_LETTER_SCHEDULE%``, NCRONTAB with seconds), resolved by the Functions host. ``use_monitor`` keeps the schedule
status in storage so a run missed while the app was down happens once at start (``past_due``);
never ``run_on_startup`` (every scale-out instance would sweep). A run that cannot go on raises
(the host logs a failed invocation) and the next occurrence tries again (expiry: a scope that could
not be listed and a resource whose re-enforcement failed are retried first by the next runs, a scope
that is gone is done, and the window moves up to the last exemption a run handled in full,
``expiry``). What a run goes on past is reported, not raised: in its summary row (``failed``,
``errors``) and a WARNING log line. The dead-letter replay raises for none of its blobs or events,
nor for Table Storage stopping it half way (each failing event has its own retry clock,
``guardrails.replay``, which a host error would only repeat): only when even its summary row cannot
be written.
"""

from __future__ import annotations

import logging

import azure.functions as func

from ..bootstrap import get_sweeper
from ..logs import emit

bp = func.Blueprint()
log = logging.getLogger("guardrails")


@bp.function_name("reconciling_sweep")
@bp.timer_trigger(arg_name="timer", schedule="%GUARDRAILS_SWEEP_SCHEDULE%", run_on_startup=False, use_monitor=True)
def reconciling_sweep(timer: func.TimerRequest) -> None:
    if timer.past_due:
        emit(log, logging.WARNING, "guardrail_timer_past_due", timer="reconciling_sweep")
    get_sweeper().run()


@bp.function_name("exemption_expiry")
@bp.timer_trigger(arg_name="timer", schedule="%GUARDRAILS_EXPIRY_SCHEDULE%", run_on_startup=False, use_monitor=True)
def exemption_expiry(timer: func.TimerRequest) -> None:
    from ..expiry import ExpiryReEnforcer

    if timer.past_due:
        emit(log, logging.WARNING, "guardrail_timer_past_due", timer="exemption_expiry")
    ExpiryReEnforcer(get_sweeper()).run()


@bp.function_name("deadletter_replay")
@bp.timer_trigger(arg_name="timer", schedule="%GUARDRAILS_DEAD_LETTER_SCHEDULE%", run_on_startup=False,
                  use_monitor=True)
def deadletter_replay(timer: func.TimerRequest) -> None:
    from ..bootstrap import get_replayer

    if timer.past_due:
        emit(log, logging.WARNING, "guardrail_timer_past_due", timer="deadletter_replay")
    replayer = get_replayer()
    if replayer is None:
        emit(log, logging.INFO, "guardrail_deadletter_replay_off",
             reason="GUARDRAILS_DEAD_LETTER_ENDPOINT / _CONNECTION not set")
        return
    # not raised on failure, deliberately: what failed (blobs, events, a run Table Storage stopped) is in the
    # summary row and a WARNING log line, and the replay retries each failing event on its own clock
    replayer.run()
