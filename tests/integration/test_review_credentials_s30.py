"""Review of session 30 (``unauthenticated``), end to end on Azurite + the HTTPS emulator.

1. (defect, fixed) Functions' managed identity endpoint in an outage (every token request answered
   503): under the product's credential (``DefaultAzureCredential``) the status is gone before the
   guardrails see it, so the delivery was audited "the guardrails' identity got no token" at once,
   never retried, though nothing is wrong with the identity. Now it is asked once more, and the row
   names both causes (the identity misconfigured, or its token endpoint not answering).
2. (fine) A secret rotation whose write gets no token from Key Vault's challenge policy writes
   nothing and gives its circuit-breaker permit back (``refused_outright``).
"""

from __future__ import annotations

import json
import time

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from guardrails.adapters.arm import ArmGateway
from guardrails.local.credential import LocalTokenCredential
from tests import builders as b
from tests.builders import GUARDRAIL_OID
from tests.integration.test_review_permits_s28 import _fast_harness
from tests.integration.test_secret_guardrail import VAULT, _event, planted  # noqa: F401  (a fixture)
from tests.unit.test_review_credentials_s30 import _dac_managed_identity_only, mi_outage  # noqa: F401

pytestmark = pytest.mark.integration


def test_a_managed_identity_endpoint_outage_is_audited_naming_the_endpoint_as_a_cause(harness, mi_outage):
    res = b.storage(blob=False)
    h = harness([res])
    h.service.arm = ArmGateway(_dac_managed_identity_only(), endpoint=h.settings.arm_endpoint,
                               ca_bundle=h.settings.ca_bundle, timeout=5.0)
    row = h.deliver(b.write_event(res["id"]))
    assert mi_outage.hits, "the managed identity endpoint was asked, and answered 503"
    assert h.arm_requests() == []
    assert (row.verdict, row.reason) == ("failed", "unauthenticated"), (row.reason, row.message)
    assert "token endpoint not answering" in json.dumps(row.to_dict())


class _Switchable:
    """The local credential, refusing token requests (as the identity platform would) while
    ``refuse`` is set. Its tokens live a minute, so every request asks for one."""

    def __init__(self) -> None:
        self.inner = LocalTokenCredential(object_id=GUARDRAIL_OID, name="guardrails-local")
        self.refuse, self.refused = False, 0

    def get_token(self, *scopes, **kwargs):
        if self.refuse:
            self.refused += 1
            raise ClientAuthenticationError(message="AADSTS700024: Client assertion is not within its valid time range.")
        token = self.inner.get_token(*scopes, **kwargs)
        return AccessToken(token.token, int(time.time()) + 60)


def test_a_rotation_write_that_gets_no_token_writes_nothing_and_gives_the_permit_back(harness, tmp_path, planted):
    h = _fast_harness(harness, tmp_path, planted, arm_timeout="5")        # one rotation per window
    guardrail = h.service.secrets
    store = guardrail.store
    cred = _Switchable()
    store._credential, store._secrets, store._keys = cred, {}, {}
    set_secret = store.set_secret

    def refused_set_secret(*args, **kwargs):
        cred.refuse = True                      # the reads got tokens; the write's is refused
        try:
            return set_secret(*args, **kwargs)
        finally:
            cred.refuse = False
    store.set_secret = refused_set_secret
    before = len(h.emu.secret_versions(VAULT, "api-token"))
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (row.verdict, row.reason) == ("failed", "unauthenticated"), (row.verdict, row.reason, row.message)
    assert cred.refused == 2                    # asked once more, then not again within the delivery
    assert "before any change" in row.violations[0].message, row.violations[0].message
    assert "AADSTS700024" in row.violations[0].message and "valid time range" not in row.violations[0].message
    assert len(h.emu.secret_versions(VAULT, "api-token")) == before
    # the permit went back: the window's one rotation is still there for the next secret
    store.set_secret = set_secret
    nxt = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert nxt.verdict == "remediated", (nxt.verdict, nxt.reason, nxt.message)
