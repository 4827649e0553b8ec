"""Review of 3624fea (refusal reasons): Key Vault's 403s that refuse the caller are ``forbidden``,
whichever of its permission models refused: ``ForbiddenByRbac`` (a missing role), ``AccessDenied``
(no such permission in the vault's access policies) and ``ForbiddenByPolicy`` (the vault's *access
policy* refuses the caller, e.g. one requiring the on-behalf-of flow). ``ForbiddenByPolicy`` is not
Azure Policy's deny (ARM's ``RequestDisallowedByPolicy``, ``policy_denied``): what to change is the
vault's access policy for the guardrails' identity. The review asked; this pins the answer."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError

from guardrails.errors import ArmError


class _KvResp:
    def __init__(self, inner: str, message: str) -> None:
        self.status_code, self.reason, self.headers = 403, "Forbidden", {"Content-Type": "application/json"}
        self._body = json.dumps({"error": {"code": "Forbidden", "message": message, "innererror": {"code": inner}}})

    def text(self, encoding=None) -> str:
        return self._body


def _kv_refusal(inner: str, message: str) -> ArmError:
    from guardrails.adapters.keyvault import KeyVaultGateway

    gw = KeyVaultGateway(object(), url_template="https://{vault}.vault.azure.net")
    with pytest.raises(ArmError) as info:
        gw._call(lambda: (_ for _ in ()).throw(HttpResponseError(response=_KvResp(inner, message))),
                 deadline=10 ** 12, what="SET secret kv/api-token")
    return info.value


@pytest.mark.parametrize("inner, message", [
    ("ForbiddenByPolicy", "The policy requires the caller 'appid=x;oid=y' to use on-behalf-of (OBO) flow."),
    ("AccessDenied", "The user, group or application 'appid=x;oid=y' does not have secrets set permission on key "
                     "vault 'kv;location=eastus'."),
])
def test_a_key_vault_access_policy_refusal_is_forbidden_not_an_azure_policy_deny(inner, message):
    err = _kv_refusal(inner, message)
    assert (err.status, err.reason) == (403, "forbidden"), err.reason
    assert "appid" not in str(err)                # Key Vault's message (it names the caller) is not copied


def test_a_key_vault_missing_role_stays_forbidden():          # control: passes
    err = _kv_refusal("ForbiddenByRbac", "Caller is not authorized to perform action on resource.")
    assert err.reason == "forbidden"
