"""How Azure's refusals map to ``ArmError.reason`` (``errors.refusal_reason``, applied by
``BudgetedCaller``): what the answer's status and ``error.code`` say, never its message."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError

from guardrails.adapters.retry import BudgetedCaller
from guardrails.errors import FORBIDDEN, POLICY_DENIED, SCOPE_LOCKED, ArmError, ArmTransient, refusal_reason


class _Resp:
    """An answer as azure-core hands it to ``HttpResponseError`` (status, headers, body text)."""

    def __init__(self, status: int, code: str | None = None, message: str = "refused") -> None:
        self.status_code, self.reason, self.headers = status, "x", {"Content-Type": "application/json"}
        self._body = json.dumps({"error": {"code": code, "message": message}}) if code else ""

    def text(self, encoding=None) -> str:
        return self._body


def _refusal(status: int, code: str | None = None, message: str = "refused") -> ArmError:
    caller = BudgetedCaller(timeout=1.0, sleep=lambda s: None)
    with pytest.raises(ArmError) as info:
        caller.call(lambda: (_ for _ in ()).throw(HttpResponseError(response=_Resp(status, code, message))),
                    deadline=10 ** 12, what="PATCH /subscriptions/s/resourceGroups/rg/providers/X/y/z")
    return info.value


@pytest.mark.parametrize("status, code, reason", [
    (403, "AuthorizationFailed", FORBIDDEN),
    (403, "LinkedAuthorizationFailed", FORBIDDEN),
    (403, "Forbidden", FORBIDDEN),
    (403, None, FORBIDDEN),                                   # a 403 without a body still refuses the caller
    (403, "RequestDisallowedByPolicy", POLICY_DENIED),
    (403, "requestdisallowedbypolicy", POLICY_DENIED),        # codes compared without case
    (409, "ScopeLocked", SCOPE_LOCKED),
    (409, "Conflict", None),                                  # another operation in progress: no lock
    (409, None, None),
    (400, "InvalidRequestContent", None),
    (401, "InvalidAuthenticationToken", "unauthenticated"),      # session 30: was None (arm_error)
    (412, "PreconditionFailed", None),
    (None, "ScopeLocked", SCOPE_LOCKED),                      # a long-running operation that ended Failed
    (None, "RequestDisallowedByPolicy", POLICY_DENIED),
    (None, "AuthorizationFailed", FORBIDDEN),
    (None, "InternalServerError", None),
    (None, None, None),
])
def test_refusal_reason(status, code, reason):
    assert refusal_reason(status, code) == reason


@pytest.mark.parametrize("status, code, reason", [
    (403, "AuthorizationFailed", "forbidden"),
    (403, "RequestDisallowedByPolicy", "policy_denied"),
    (409, "ScopeLocked", "scope_locked"),
    (409, "Conflict", "arm_error"),
    (400, "BadRequest", "arm_error"),
])
def test_the_caller_raises_the_refusal_with_its_reason_status_and_code_once(status, code, reason):
    err = _refusal(status, code, message="The client 'x' with object id 'y' does not have authorization")
    assert (err.reason, err.status, err.attempts) == (reason, status, 1)
    assert type(err) is ArmError
    assert f"answered {status} {code}" in str(err)
    assert "object id" not in str(err)                        # Azure's message is not copied into ours


def test_a_throttled_or_failing_service_keeps_its_own_reasons():
    caller = BudgetedCaller(timeout=1.0, sleep=lambda s: None, clock=lambda: 0.0)
    with pytest.raises(ArmTransient) as info:
        caller.call(lambda: (_ for _ in ()).throw(HttpResponseError(response=_Resp(503, "ServiceUnavailable"))),
                    deadline=0.1, what="GET x")
    assert info.value.reason == "transient"


@pytest.mark.parametrize("inner, reason", [
    ("ForbiddenByRbac", "forbidden"),
    ("ForbiddenByFirewall", "network_forbidden"),
    ("ForbiddenByConnection", "network_forbidden"),
    ("SecretDisabled", "secret_disabled"),
])
def test_key_vault_still_tells_a_missing_role_from_a_network_path_and_a_disabled_secret(inner, reason):
    """Key Vault's 403s share ``forbidden`` from the caller; the gateway then reads its inner code."""
    from guardrails.adapters.keyvault import KeyVaultGateway

    class _KvResp(_Resp):
        def __init__(self) -> None:
            super().__init__(403)
            self._body = json.dumps({"error": {"code": "Forbidden", "message": "Caller is not authorized.",
                                               "innererror": {"code": inner}}})

    gw = KeyVaultGateway(object(), url_template="https://{vault}.vault.azure.net")
    with pytest.raises(ArmError) as info:
        gw._call(lambda: (_ for _ in ()).throw(HttpResponseError(response=_KvResp())), deadline=10 ** 12,
                 what="GET secret kv/api-token")
    assert (info.value.reason, info.value.status) == (reason, 403)
