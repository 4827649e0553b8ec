"""Azure clients ignore proxy settings in the process environment (re-reading them cost CPU on
every call) and use the one proxy named in GUARDRAILS_HTTPS_PROXY. Real clients against Azurite."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.data.tables import TableServiceClient

from guardrails.adapters.transport import client_options

pytestmark = pytest.mark.integration

DEAD_PROXY = "http://127.0.0.1:9"      # nothing listens on the discard port


def _client(azurite):
    return TableServiceClient.from_connection_string(azurite.connection_string,
                                                     **client_options(retry_total=0, connection_timeout=2))


def test_environment_proxies_are_not_used(azurite, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, DEAD_PROXY)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("GUARDRAILS_HTTPS_PROXY", raising=False)
    _client(azurite).create_table("T" + uuid.uuid4().hex[:12])     # reached Azurite directly


def test_the_configured_proxy_is_used(azurite, monkeypatch):
    monkeypatch.setenv("GUARDRAILS_HTTPS_PROXY", DEAD_PROXY)
    with pytest.raises(ServiceRequestError):
        _client(azurite).create_table("T" + uuid.uuid4().hex[:12])


def test_options_keep_the_callers_and_give_the_transport_the_ca_bundle(monkeypatch):
    monkeypatch.delenv("GUARDRAILS_HTTPS_PROXY", raising=False)
    opts = client_options("/ca.pem", retry_total=0)
    transport = opts.pop("transport")
    assert opts == {"retry_total": 0}
    assert (transport.verify, transport.connection_timeout, transport.proxies) == ("/ca.pem", 5.0, None)
    assert client_options(connection_timeout=2)["transport"].connection_timeout == 2   # the caller's own wins
    assert client_options("/ca.pem", asyncio=True, retry_total=0) == {
        "retry_total": 0, "use_env_settings": False, "connection_verify": "/ca.pem", "connection_timeout": 5.0}
