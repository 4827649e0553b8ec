"""The product's error tree. Every error the core raises on purpose is one of these.

    GuardrailsError
    ├── ConfigError            a setting is missing or malformed
    ├── EventError             an event cannot be accepted
    │   └── InvalidEvent       envelope or data fails validation (audited as ``invalid``)
    │       └── InvalidArmId   a string is not a legal ARM resource id
    ├── PolicyError            metadata cannot be loaded or is not valid
    │   └── MetadataValidationError   one or more findings, each naming file, policy id, path
    ├── StoreError             Table Storage (policy, audit, idempotency) failed
    │   └── IdempotencyError   an idempotency record is held by another delivery
    └── ArmError               Azure Resource Manager call failed (reason ``arm_error``; a 403
        │                      ``forbidden`` / ``policy_denied``, a 409 ScopeLocked ``scope_locked``)
        ├── ResourceNotFound   404 on read
        ├── ArmThrottled       429 after the retry budget
        ├── ArmTransient       5xx / connection trouble after the retry budget
        └── RemediationError   a fix was rejected or did not stick

Messages never contain secret values; callers pass identifiers only.
"""

from __future__ import annotations


class GuardrailsError(Exception):
    """Base of every error raised on purpose by guardrails."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(GuardrailsError):
    reason = "config_error"


class EventError(GuardrailsError):
    reason = "invalid_event"


class InvalidEvent(EventError):
    """The delivery is not an acceptable event. ``reason`` is a stable machine code."""

    reason = "invalid_event"


class InvalidArmId(InvalidEvent):
    reason = "invalid_resource_id"


class PolicyError(GuardrailsError):
    reason = "policy_error"


class MetadataValidationError(PolicyError):
    """Carries every finding; ``str()`` lists them one per line."""

    reason = "invalid_metadata"

    def __init__(self, findings: list[str]) -> None:
        self.findings = list(findings)
        super().__init__("\n".join(self.findings) or "invalid metadata")


class StoreError(GuardrailsError):
    reason = "store_error"
    status: int | None = None      # Table Storage's HTTP status, when it answered


class FindingStateChanged(StoreError):
    """A conditional finding-state write (the sweep's notice gate) met a state another run wrote
    since it was read."""


class IdempotencyError(StoreError):
    reason = "in_progress"


class PolicyUnreadable(StoreError):
    """A policy row does not validate and this worker has no earlier good version of it: no
    decision is made on a policy set missing a policy (the event fails and is redelivered)."""
    reason = "policy_unreadable"


# Why Azure refused a call (``ArmError.reason``), where its answer says more than "an error":
FORBIDDEN = "forbidden"            # 403: the guardrails' identity may not do it (no role, an RBAC deny assignment)
POLICY_DENIED = "policy_denied"    # 403 RequestDisallowedByPolicy: an Azure Policy assignment's deny effect
SCOPE_LOCKED = "scope_locked"      # 409 ScopeLocked: a management lock (ReadOnly / CanNotDelete) blocked it
UNAUTHENTICATED = "unauthenticated"  # the guardrails' own credential: no token could be had, or a 401
# the same refusals as the ``error.code`` of a long-running operation that ended Failed (no status of its own)
_REFUSAL_CODES = {"requestdisallowedbypolicy": POLICY_DENIED, "scopelocked": SCOPE_LOCKED,
                  "authorizationfailed": FORBIDDEN, "linkedauthorizationfailed": FORBIDDEN}


def refusal_reason(status: int | None, code: str | None) -> str | None:
    """The reason for a refusal Azure will repeat however often it is asked: a 401 (the token the
    guardrails' identity sent was rejected), a 403 (the code ``RequestDisallowedByPolicy`` is Azure
    Policy's deny, any other a missing permission) or a 409 ``ScopeLocked``; without a status (an
    operation's end), one of those codes. None for anything else (its reason stays ``arm_error``)."""
    c = (code or "").lower()
    if status is None:
        return _REFUSAL_CODES.get(c)
    if status == 401:
        return UNAUTHENTICATED
    if status == 403:
        return POLICY_DENIED if c == "requestdisallowedbypolicy" else FORBIDDEN
    return SCOPE_LOCKED if status == 409 and c == "scopelocked" else None


class ArmError(GuardrailsError):
    """``attempts``: how many requests the call that failed sent (``BudgetedCaller``; 1 when it
    did not say); ``answers``: what each was answered (its status, None for no whole answer;
    None when the caller did not say). ``reason``: ``arm_error``, or what ``refusal_reason`` says
    of the answer."""

    reason = "arm_error"

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None) -> None:
        super().__init__(message, reason=reason)
        self.status = status
        self.attempts = 1
        self.answers: tuple[int | None, ...] | None = None


class ResourceNotFound(ArmError):
    reason = "resource_not_found"


class ArmThrottled(ArmError):
    reason = "throttled"


class ArmTransient(ArmError):
    reason = "transient"


class ArmOperationFailed(ArmError):
    """A long-running write ARM accepted whose operation then ended ``Failed`` or ``Canceled``:
    ARM's own word that it was not carried out."""


class RemediationError(ArmError):
    reason = "remediation_failed"


# answers that refuse a request before Azure processes it: a bad request, no access, a missing target,
# throttling (a 409 refuses one only with a refusal reason, ``refused_outright``)
REFUSALS = frozenset({400, 401, 403, 404, 429})


def refused_outright(exc: BaseException) -> bool:
    """Whether a write's error says the service refused it before changing anything, so it was
    certainly not made (the product's one rule: its breaker permit goes back): every request sent
    was answered with a refusal (``REFUSALS``; the retries of a throttled write included; a 409
    only with a refusal reason, ARM's ``ScopeLocked``), or none was sent because the guardrails'
    identity got no token (``unauthenticated``, no status). Anything else leaves the write's
    outcome unknown: any other 409 (another operation, perhaps the write's own), a 5xx, a timeout
    or a dropped answer after the request left, and a refusal after any such attempt (that attempt
    may have been applied: its answer lost; Key Vault's retry of a secret write first lists the
    versions, and an attempt still in flight is not seen). Each request's answer is
    ``BudgetedCaller``'s ``answers``; an error that does not carry them is judged by its own
    status, for a lone request. A long-running write whose operation ARM reports ended ``Failed``
    or ``Canceled`` (``ArmOperationFailed``) counts as refused: ARM's own verdict on it."""
    if isinstance(exc, ArmOperationFailed):
        return True
    if not isinstance(exc, ArmError) or isinstance(exc, ArmTransient):
        return False
    sent = getattr(exc, "attempts", 1)          # requests sent (an attempt that got no token sent none)
    answers = exc.answers
    if answers is None or len(answers) != sent:     # each request's answer unknown: only a lone one's is
        answers = (exc.status,) * sent if sent <= 1 else (None,)
    if exc.status is None and exc.reason != UNAUTHENTICATED:
        return False
    # a 409 ends the call (never retried): it can only be the last answer, the error's own
    refusals = (REFUSALS | {409}) if exc.status == 409 and exc.reason == SCOPE_LOCKED else REFUSALS
    return all(a in refusals for a in answers)
