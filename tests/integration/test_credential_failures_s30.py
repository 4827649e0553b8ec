"""The guardrails' own identity failing to authenticate says so, and never passes for a lost answer
(Azurite, the HTTPS emulator, the real SDK clients and credentials).

Before session 30, a credential that gave no token (``DefaultAzureCredential`` with no managed
identity, a federated credential the identity platform refused: a ``ClientAuthenticationError``
without a status, raised in the pipeline before anything is sent) looked to the retry loop like an
answer cut off mid-body: it was asked again with backoff until the delivery's budget ran out, and
audited ``transient`` "answer cut off". Worse, when it happened on a fix's PATCH (a token refreshed
between the read and the write), the write counted as a lost answer that "may have been applied":
the row said ``requested`` and a pending fix was recorded, for a PATCH that never left. A 401 from
the service was one more ``arm_error``.

Now either is ``unauthenticated`` (a missing token asked for once more first): the row ``failed`` (Event
Grid redelivers),
nothing recorded as requested, the identity platform's text not copied (its ``AADSTS`` code is).
A write whose first attempt's answer was lost and whose retry then got no token is still
``requested``: the lost attempt may have been applied."""

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
from tests.integration.test_http_checks import _call
from tests.integration.test_secret_guardrail import planted  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration

AADSTS = ("AADSTS700024: Client assertion is not within its valid time range. Current time: 2026-11-26T05:00:00Z, "
          "assertion valid from 2026-11-25T04:00:00Z. Trace ID: 3c1f-SENSITIVE-TRACE Correlation ID: 77aa-corr "
          "Timestamp: 2026-11-26 05:00:00Z")


class _Counting:
    """Wraps a real credential: counts its token requests, and (``fail_after``) fails the ones past
    that many as the identity platform would refuse a refresh. Tokens it passes on live a minute,
    so azure-core's bearer policy asks for one before every request, as it does near expiry."""

    def __init__(self, inner, *, fail_after: int | None = None) -> None:
        self.inner, self.fail_after, self.asked = inner, fail_after, 0

    def get_token(self, *scopes, **kwargs):
        self.asked += 1
        if self.fail_after is not None and self.asked > self.fail_after:
            raise ClientAuthenticationError(message=AADSTS)
        token = self.inner.get_token(*scopes, **kwargs)
        return AccessToken(token.token, int(time.time()) + 60)


def _local():
    return LocalTokenCredential(object_id=GUARDRAIL_OID, name="guardrails-local")


def _gateway(h, credential, timeout: float = 5.0) -> ArmGateway:
    return ArmGateway(credential, endpoint=h.settings.arm_endpoint, ca_bundle=h.settings.ca_bundle, timeout=timeout)


def _public(h, res) -> str:
    return h.resource(res["id"])["properties"]["publicNetworkAccess"]


def _pending(h) -> list:
    return list(h.tables.table(h.tables.pending_name).list_entities())


def test_no_token_at_all_is_unauthenticated_after_one_more_try_and_sends_nothing(harness, monkeypatch, caplog):
    """A real ``EnvironmentCredential`` with nothing configured (``CredentialUnavailableError``)."""
    from azure.identity import EnvironmentCredential

    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
                 "AZURE_USERNAME", "AZURE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    res = b.storage(blob=False)
    h = harness([res])
    cred = _Counting(EnvironmentCredential())
    h.service.arm = _gateway(h, cred)
    event = b.write_event(res["id"])
    row = h.deliver(event)
    assert (row.verdict, row.reason) == ("failed", "unauthenticated"), (row.verdict, row.reason, row.message)
    said = json.dumps(row.to_dict())
    assert "got no token (CredentialUnavailableError)" in said and "nothing was sent" in said, said
    assert "cut off" not in said
    assert cred.asked == 2                        # once more, not again and again until the budget ran out
    assert h.arm_requests() == [] and _public(h, res) == "Enabled"
    # the identity is fixed; Event Grid's redelivery of the same event makes the fix
    h.service.arm = _gateway(h, _local())
    row = h.deliver(event)
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)
    assert _public(h, res) == "Disabled"


def test_a_token_refused_before_the_fix_is_not_a_fix_requested(harness, caplog):
    """The read gets a token, the PATCH's refresh is refused: before, ``requested`` with a pending
    fix recorded and no PATCH sent. Now ``failed`` / ``unauthenticated``, the AADSTS code named and
    the rest of the identity platform's text (trace ids, times) not copied anywhere."""
    res = b.storage(blob=False)
    h = harness([res])
    cred = _Counting(_local(), fail_after=1)
    h.service.arm = _gateway(h, cred)
    row = h.deliver(b.write_event(res["id"]))
    assert (row.verdict, row.reason) == ("failed", "unauthenticated"), (row.verdict, row.reason, row.message)
    assert "AADSTS700024" in json.dumps(row.to_dict())
    assert len(h.arm_requests("GET")) == 1 and h.arm_requests("PATCH") == []
    assert _public(h, res) == "Enabled"
    assert _pending(h) == []
    stored = [r.to_dict() for r in h.stored_rows()]
    assert "AADSTS700024" in repr(stored)
    for text in ("SENSITIVE-TRACE", "77aa-corr", "valid time range"):
        assert text not in repr(stored) and text not in caplog.text


def test_a_lost_write_whose_retry_gets_no_token_stays_requested(harness):
    """The PATCH's answer is lost (the emulator applies it after the client gave up), the retry's
    token is refused: the write may have been applied, so the fix is ``requested``, not ``failed``."""
    res = b.storage(blob=False)
    h = harness([res])
    cred = _Counting(_local(), fail_after=2)            # the GET's token, the first PATCH's; not the retry's
    h.service.arm = _gateway(h, cred, timeout=1.0)
    h.emu.add_fault(method="PATCH", path_regex="storageAccounts/", delay_ms=1500, times=1)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "requested", (row.verdict, row.reason, row.message)
    assert cred.asked == 4                              # GET, PATCH, the retry's token twice
    deadline = time.monotonic() + 5
    while _public(h, res) != "Disabled" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _public(h, res) == "Disabled"                # the lost attempt was applied after all


@pytest.mark.parametrize("code", ["InvalidAuthenticationToken", "ExpiredAuthenticationToken"])
def test_a_token_the_service_rejects_is_unauthenticated(harness, code):
    res = b.storage(blob=False)
    h = harness([res])
    h.emu.add_fault(method="PATCH", path_regex="storageAccounts/", status=401, code=code,
                    message="The access token is invalid.")
    row = h.deliver(b.write_event(res["id"]))
    assert (row.verdict, row.reason) == ("failed", "unauthenticated"), (row.verdict, row.reason, row.message)
    assert f"401 {code}" in json.dumps(row.to_dict())
    assert len(h.arm_requests("PATCH")) == 1 and _public(h, res) == "Enabled"
    assert _pending(h) == []


def test_a_key_vault_401_is_unauthenticated(harness, tmp_path, planted):
    from tests.integration.test_secret_guardrail import _event, _harness

    h = _harness(harness, tmp_path, planted)
    h.emu.add_fault(method="PUT", path_regex="/secrets/api-token", status=401, code="Unauthorized",
                    message="AKV10032: Invalid issuer.")
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (row.verdict, row.reason) == ("failed", "unauthenticated"), (row.verdict, row.reason, row.message)


@pytest.mark.parametrize("how", ["401", "no token"])
def test_a_resource_check_that_cannot_authenticate_is_unavailable(harness, monkeypatch, how):
    """No answer could be made: a 503 naming the reason, never an answer."""
    from azure.identity import EnvironmentCredential

    from guardrails.triggers.http_checks import check_resource

    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    res = b.storage()
    h = harness([res])
    if how == "401":
        h.emu.add_fault(method="GET", path_regex="storageAccounts/", status=401, code="InvalidAuthenticationToken")
    else:
        h.service.arm = _gateway(h, EnvironmentCredential())
    http_status, body = _call(check_resource, "checks/resource", {"resource_id": res["id"]})
    assert http_status == 503 and body["error"]["code"] == "unavailable", body
    assert "(unauthenticated)" in body["error"]["message"]
    (row,) = [r for r in h.stored_rows() if r.delivery_id == body["error"]["correlation_id"]]
    assert (row.verdict, row.reason) == ("failed", "unauthenticated")
