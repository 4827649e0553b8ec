"""The ML lifecycle guardrail's signals that change no resource (no ARM calls): dataset drift
alerts and run outcomes, judged against the ``kind: model-registry`` thresholds, recorded and
told to their owner (``report``: ``MlLifecycleGuardrail._report``).

One run completion is judged once. ``RunCompleted`` and ``RunStatusChanged`` (status Completed)
both announce it, under two event ids, so the service's claim on the event id lets both through.
A promotion candidate's completion takes a second claim, on the completion itself (workspace and
run id), while it is decided: the later announcement finds it completed and is a ``duplicate``
(reason ``duplicate_run_completion``: nothing recorded twice, nobody told twice). The claim is
completed after the row is written and released when the decision never reached its row, so a
retry — of either announcement — decides again (at least once: ``MlLifecycleGuardrail.on_event``).
"""

from __future__ import annotations

import logging
from typing import Callable

from .errors import IdempotencyError, StoreError
from .logs import emit
from .ml_fixes import Found, owner_of, policy_contact
from .model.decision import ViolationRecord
from .model.ml_events import DriftDetected, RunEvent
from .policy import model_rules as mr

log = logging.getLogger("guardrails")

Report = Callable[[object, list, tuple], None]      # (row, findings, (owner, where from))


def judge_drift(report: Report, row, ev: DriftDetected, policies) -> None:
    found, judged, owner = [], False, ""
    for p in policies:
        findings, threshold = mr.evaluate_drift(p.rules, monitor=ev.monitor_name, coefficient=ev.coefficient)
        judged = judged or threshold is not None
        owner = owner or mr.drift_threshold(p.rules, ev.monitor_name)[1]
        found += [Found(p, ViolationRecord(policy=p.ref, rule=f.rule, property="DriftCoefficient",
                                            before=ev.coefficient, after=threshold, outcome="violation",
                                            message=f.message[:300])) for f in findings]
    if not judged:
        row.verdict, row.reason = "ignored", "no_threshold"
        row.message = f"no drift threshold set for monitor {ev.monitor_name[:64]!r}"
    elif not found:
        row.verdict, row.reason, row.message = "compliant", "", f"drift {ev.coefficient:.4g} within threshold"
    else:
        report(row, found, (owner, "drift monitor owner") if owner else (policy_contact(policies)))


def run_completion_key(ev: RunEvent) -> str:
    """The idempotency key of one run's completion, whichever event announces it (the store
    hashes keys: any characters may appear)."""
    return f"ml-run-completed:{str(ev.workspace_id).lower()}/{ev.run_id}"


def judge_run(store, report: Report, ctx, row, ev: RunEvent, policies, held: list) -> None:
    """A completed run: a promotion candidate's metrics against the thresholds, once per
    completion (module docstring); the completion's claim is appended to ``held`` for the
    caller to settle after the row (``settle_claim``)."""
    found, candidate = [], False
    for p in policies:
        findings = mr.evaluate_run(p.rules, tags=ev.tags, properties=ev.properties)
        candidate = candidate or findings is not None
        found += [Found(p, ViolationRecord(policy=p.ref, rule=f.rule, property="runTags", before=None, after=None,
                                            outcome="violation", message=f.message[:300])) for f in findings or ()]
    if not candidate:
        row.verdict, row.reason, row.message = "ignored", "not_a_candidate", "run not tagged as a promotion candidate"
        return
    key = run_completion_key(ev)
    claim = store.acquire(key, holder=ctx.delivery_id)      # IdempotencyError: the delivery is retried later
    if claim.state == "completed":
        row.verdict, row.reason = "duplicate", "duplicate_run_completion"
        row.message = (f"completion of run {ev.run_id[:80]} already judged from its other announcement "
                       f"(verdict {claim.verdict or 'unknown'}); nothing done")
        return
    held.append((key, claim))
    if not found:
        row.verdict, row.reason, row.message = "compliant", "", f"candidate run {ev.run_id[:80]} meets every metric"
    else:
        report(row, found, owner_of(ev.tags, policies))


def settle_claim(store, key: str, claim, verdict: str | None) -> None:
    """Complete a run completion's claim (``verdict``) or release it (None). Never raises: the
    decision is audited or has failed already; a claim left held expires (``in_progress_ttl``)
    and the other announcement then decides again."""
    try:
        if verdict is None:
            store.release(key, claim)
        else:
            store.complete(key, claim, verdict=verdict)
    except (IdempotencyError, StoreError) as exc:
        emit(log, logging.ERROR, "guardrail_run_claim_unsettled", error=type(exc).__name__,
             completed=verdict is not None)
