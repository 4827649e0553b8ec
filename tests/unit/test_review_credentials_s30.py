"""Review of session 30 (``unauthenticated``): how the product's *real* credential raises.

The production credential is ``DefaultAzureCredential`` (``adapters.arm.build_credential``), a
``ChainedTokenCredential``: whatever one of its credentials raises (a ``ClientAuthenticationError``
carrying the identity endpoint's 503, a connection error), the chain raises a *new*
``ClientAuthenticationError(message=...)`` with no response and no status. And Functions' own
managed identity (App Service ``IDENTITY_ENDPOINT``) reports an endpoint answering 5xx as a
``CredentialUnavailableError`` ("configuration not found"), no status either. So under the product's
credential ``retry.credential_failure`` sees *every* token failure as "no token", and an identity
endpoint outage was audited ``unauthenticated`` ("the guardrails' identity got no token") at once and
never retried, contrary to ``retry``'s contract ("an identity platform answering 429 / 5xx is
retried like the service's").

Fixed: the contract no longer promises what the credential cannot tell. A missing token is asked for
once more (azure-identity has retried its endpoint already), then ``unauthenticated`` with a message
naming both causes (the identity misconfigured, or its token endpoint not answering). The tests
below pin that, and that the identity platform's text stays out of the product's errors, audit rows
and own log lines (azure-identity's own WARNING line keeps it: ``GUARDRAILS_AZURE_LOG_LEVEL``).
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ChainedTokenCredential, CredentialUnavailableError, DefaultAzureCredential

from guardrails.adapters.arm import ArmGateway
from guardrails.adapters.retry import BudgetedCaller
from guardrails.errors import ArmError, ArmTransient
from tests.unit.test_refusal_reasons_s29 import _Resp
from tests.unit.test_review_adapters_s22 import Clock

_SCOPE = "https://management.azure.com/.default"
_RID = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa1"


class _Raises:
    def __init__(self, exc: BaseException) -> None:
        self.exc, self.asked = exc, 0

    def get_token(self, *scopes, **kwargs):
        self.asked += 1
        raise self.exc


def test_dac_is_a_chain():
    assert issubclass(DefaultAzureCredential, ChainedTokenCredential)


def test_an_identity_platform_503_seen_through_the_products_credential_is_asked_once_more():
    """A bare credential's 503 is retried as any 5xx; wrapped by DAC's chain (as in production) the
    status is gone: asked once more, then ``unauthenticated`` naming the endpoint as a cause."""
    inner = _Raises(ClientAuthenticationError(message="ManagedIdentityCredential: 503", response=_Resp(503)))
    chain = ChainedTokenCredential(inner)
    clock = Clock()
    caller = BudgetedCaller(timeout=5.0, sleep=clock.sleep, clock=clock)
    with pytest.raises(ArmError) as info:
        caller.call(lambda: chain.get_token(_SCOPE), deadline=1003.0, what="GET /x")
    assert inner.asked == 2 and len(clock.slept) == 1
    assert not isinstance(info.value, ArmTransient)
    assert info.value.reason == "unauthenticated" and "token endpoint not answering" in str(info.value)


class _ManagedIdentityEndpoint:
    """Functions' managed identity endpoint (``IDENTITY_ENDPOINT``) in an outage: every token
    request answered 503."""

    def __init__(self) -> None:
        hits = self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                body = json.dumps({"error": {"code": "ServiceUnavailable", "message": "busy"}}).encode()
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/msi/token"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mi_outage(monkeypatch):
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
                 "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "MSI_SECRET",
                 "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)
    endpoint = _ManagedIdentityEndpoint()
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", "header")
    yield endpoint
    endpoint.close()


def _dac_managed_identity_only():
    return DefaultAzureCredential(
        exclude_environment_credential=True, exclude_workload_identity_credential=True,
        exclude_shared_token_cache_credential=True, exclude_visual_studio_code_credential=True,
        exclude_cli_credential=True, exclude_powershell_credential=True, exclude_developer_cli_credential=True,
        exclude_interactive_browser_credential=True)


@pytest.mark.parametrize("make", [_dac_managed_identity_only], ids=["DefaultAzureCredential"])
def test_a_managed_identity_endpoint_outage_says_the_endpoint_may_be_the_cause(mi_outage, make):
    """The real credential, the real ARM pipeline: the identity endpoint answers 503 (an outage,
    nothing wrong with the identity). DAC cannot say which it is; the error names both causes, and
    nothing is sent to ARM."""
    arm = ArmGateway(make(), endpoint="https://127.0.0.1:9", timeout=2.0)
    with pytest.raises(ArmError) as info:
        arm.get_resource(_RID, api_version="2023-05-01", deadline=time.monotonic() + 3.0)
    assert mi_outage.hits, "the managed identity endpoint was asked (and answered 503)"
    assert info.value.reason == "unauthenticated" and info.value.attempts == 0
    assert "misconfigured, or its token endpoint not answering" in str(info.value), str(info.value)


def test_the_identity_platform_text_stays_out_of_the_products_errors_and_log_lines(caplog):
    """Through DAC's chain, azure-identity itself logs the whole text (trace ids, subjects) at
    WARNING on the ``azure.identity`` logger (the README says so: ``GUARDRAILS_AZURE_LOG_LEVEL``);
    the product's error and its own log lines keep only the ``AADSTS`` code."""
    caplog.set_level(logging.WARNING)
    text = ("AADSTS70021: No matching federated identity record found for presented assertion. "
            "Subject: 'repo:secret-org/x'. Trace ID: 3c1f-SENSITIVE-TRACE")
    chain = ChainedTokenCredential(_Raises(ClientAuthenticationError(message=text)))
    arm = ArmGateway(chain, endpoint="https://127.0.0.1:9", timeout=2.0)
    with pytest.raises(ArmError) as info:
        arm.get_resource(_RID, api_version="2023-05-01", deadline=time.monotonic() + 3.0)
    assert info.value.reason == "unauthenticated" and "AADSTS70021" in str(info.value)
    assert "SENSITIVE-TRACE" not in str(info.value)
    ours = [r.getMessage() for r in caplog.records if r.name.split(".")[0] == "guardrails"]
    assert not any("SENSITIVE-TRACE" in m or "secret-org" in m for m in ours), ours
    assert any("SENSITIVE-TRACE" in r.getMessage() for r in caplog.records if r.name.startswith("azure.identity"))


def test_the_decision_topic_without_a_token_is_unauthorized_not_unavailable():
    """``adapters.eventgrid``: a credential that gave no token (nothing sent) is a
    ``HttpResponseError`` with no status: "decision topic answered None", reason ``unavailable``."""
    from guardrails.adapters.eventgrid import EventGridTopic
    from guardrails.outbox import PublishError

    cred = _Raises(CredentialUnavailableError("no managed identity endpoint"))
    topic = EventGridTopic("https://decisions.example.invalid/api/events", credential=cred)
    with pytest.raises(PublishError) as info:
        topic.send([{"source": "/guardrails", "type": "Guardrails.Decision", "id": "1", "data": {}}])
    assert cred.asked == 1
    assert "None" not in str(info.value) and "got no token" in str(info.value), str(info.value)
    assert info.value.reason == "unauthorized", (info.value.reason, str(info.value))
