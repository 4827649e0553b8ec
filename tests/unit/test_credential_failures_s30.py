"""How the guardrails' own credential failing maps to ours (``retry.credential_failure``,
``retry.no_token``, ``BudgetedCaller``, ``lost_answer``, ``refused_outright``): SDK errors built as
azure-core and azure-identity raise them. The end-to-end proof is
``tests/integration/test_credential_failures_s30.py``."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, IncompleteReadError,
                                   ServiceResponseError)
from azure.identity import CredentialUnavailableError

from guardrails.adapters.arm import ArmGateway
from guardrails.adapters.retry import BudgetedCaller, credential_failure, lost_answer
from guardrails.errors import UNAUTHENTICATED, ArmError, ArmThrottled, ArmTransient
from guardrails.secrets.rotation import refused_outright
from tests.unit.test_refusal_reasons_s29 import _Resp
from tests.unit.test_review_adapters_s22 import Clock


def _raises(exc):
    def fn():
        raise exc
    return fn


def _caller() -> tuple[BudgetedCaller, Clock]:
    clock = Clock()
    return BudgetedCaller(timeout=5.0, sleep=clock.sleep, clock=clock), clock


@pytest.mark.parametrize("exc, failure", [
    (CredentialUnavailableError("no managed identity endpoint"), True),
    (ClientAuthenticationError("AADSTS7000215: Invalid client secret provided."), True),
    (ClientAuthenticationError(response=_Resp(400, "invalid_client")), True),     # the token endpoint's 400
    (ClientAuthenticationError(response=_Resp(401, "InvalidAuthenticationToken")), False),   # the service's 401
    (ClientAuthenticationError(response=_Resp(429)), False),                  # throttled: retried as any 429
    (ClientAuthenticationError(response=_Resp(503)), False),
    (HttpResponseError(response=_Resp(403, "AuthorizationFailed")), False),
    (ValueError("x"), False),
])
def test_credential_failure(exc, failure):
    assert credential_failure(exc) is failure


def test_a_credential_that_gave_no_token_is_no_lost_answer():
    assert lost_answer(CredentialUnavailableError("x")) is False
    assert lost_answer(ClientAuthenticationError("x")) is False
    assert lost_answer(IncompleteReadError("cut off")) is True       # a body cut off still is


def test_no_token_is_asked_once_more_then_unauthenticated_with_the_aadsts_code_only():
    caller, clock = _caller()
    calls = []
    exc = ClientAuthenticationError(
        "ClientAssertionCredential.get_token failed: AADSTS70021: No matching federated identity record found "
        "for presented assertion. Assertion Issuer: 'https://token.actions.example'. Subject: 'repo:secret-org/x'.")

    def fn():
        calls.append(1)
        raise exc
    with pytest.raises(ArmError) as info:
        caller.call(fn, deadline=1020.0, what="PATCH /subscriptions/s/x")
    err = info.value
    assert (err.reason, err.status, err.attempts) == (UNAUTHENTICATED, None, 0)    # no request sent
    assert not isinstance(err, (ArmTransient, ArmThrottled))
    assert calls == [1, 1] and len(clock.slept) == 1          # once more, then not until Event Grid redelivers
    assert caller.calls == 0
    assert "AADSTS70021" in str(err) and "ClientAuthenticationError" in str(err)
    assert "token endpoint not answering" in str(err)
    assert "secret-org" not in str(err) and "token.actions" not in str(err)


def test_no_token_without_room_for_the_wait_is_not_asked_again():
    caller, clock = _caller()
    calls = []

    def fn():
        calls.append(1)
        raise CredentialUnavailableError("x")
    with pytest.raises(ArmError) as info:
        caller.call(fn, deadline=clock.now + 0.05, what="GET /x")
    assert info.value.reason == UNAUTHENTICATED and calls == [1] and clock.slept == []


def test_a_lost_attempt_then_no_token_counts_the_one_request_sent():
    caller, _ = _caller()
    answers = [ServiceResponseError("read timeout"), CredentialUnavailableError("x"), CredentialUnavailableError("x")]

    def fn():
        raise answers.pop(0)
    with pytest.raises(ArmError) as info:
        caller.call(fn, deadline=1020.0, what="PATCH /x")
    assert (info.value.reason, info.value.attempts) == (UNAUTHENTICATED, 1)
    assert refused_outright(info.value) is False               # the request sent may have been applied


def test_an_identity_platform_503_is_retried_as_any_5xx():
    caller, clock = _caller()
    with pytest.raises(ArmTransient):
        caller.call(_raises(ClientAuthenticationError(response=_Resp(503))), deadline=1003.0, what="GET /x")
    assert clock.slept                                          # retried with backoff until the budget


def test_a_401_answer_is_unauthenticated_and_not_retried():
    caller, clock = _caller()
    with pytest.raises(ArmError) as info:
        caller.call(_raises(ClientAuthenticationError(response=_Resp(401, "ExpiredAuthenticationToken"))),
                    deadline=1020.0, what="GET /x")
    assert (info.value.reason, info.value.status) == (UNAUTHENTICATED, 401)
    assert "answered 401 ExpiredAuthenticationToken" in str(info.value) and clock.slept == []


def _err(reason, status, attempts):
    e = ArmError("x", reason=reason, status=status)
    e.attempts = attempts
    return e


@pytest.mark.parametrize("exc, outright", [
    (_err(UNAUTHENTICATED, None, 0), True),       # never sent: nothing written, the permit goes back
    (_err(UNAUTHENTICATED, None, 1), False),      # one request sent (its answer lost), then no token
    (_err(UNAUTHENTICATED, 401, 1), True),
    (_err(None, None, 1), False),                 # an arm_error without a status says nothing
])
def test_refused_outright(exc, outright):
    assert refused_outright(exc) is outright


def test_a_token_failure_after_a_lost_attempt_leaves_the_write_unknown():
    assert ArmGateway._maybe_applied(_err(UNAUTHENTICATED, None, 2), conditional=False) is True
    assert ArmGateway._maybe_applied(_err(UNAUTHENTICATED, 401, 2), conditional=False) is True
    assert ArmGateway._maybe_applied(_err("forbidden", 403, 2), conditional=False) is False
