"""Review of session 26's urllib3 transport (``guardrails.adapters.http_transport``): defects found
against real sockets. Each test fails on the code as reviewed; its docstring says what is wrong and
why it matters. The scripted server is the one ``test_http_transport`` uses."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.rest import HttpRequest

from guardrails.adapters import http_transport as H
from guardrails.adapters.retry import lost_answer
from guardrails.adapters.transport import client_options

from .scripted_http import ok

pytestmark = pytest.mark.integration


# -- 1. a proxy named host:port ---------------------------------------------------------------------
def test_a_proxy_named_without_a_scheme_is_used_as_before(server, monkeypatch):
    """``GUARDRAILS_HTTPS_PROXY=proxy.internal:3128`` (no ``http://``, the usual way HTTPS_PROXY is
    written) worked until this session: the product passed it per call to ``RequestsTransport``, and
    requests prepends ``http://``. ``Urllib3Transport._proxy_manager`` hands it to
    ``urllib3.ProxyManager`` as is, which raises ``ProxySchemeUnknown`` -- and it is raised from
    ``_manager()``, outside the error mapping, so every call of every client crashes with a raw urllib3
    exception that ``BudgetedCaller`` does not know (no retry, no azure-core error, no audit reason)."""
    srv = server(lambda req: ok(b"via proxy"))
    monkeypatch.setenv("GUARDRAILS_HTTPS_PROXY", f"127.0.0.1:{srv.port}")
    t = client_options(retry_total=0)["transport"]
    resp = t.send(HttpRequest("GET", "http://management.example/sub"), read_timeout=2)
    assert resp.content == b"via proxy"
    assert srv.requests[0].startswith(b"GET http://management.example/sub HTTP/1.1")


# -- 2. a TLS error after the request was written ---------------------------------------------------
@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server (trustme CA) that completes the handshake, reads the whole request, then puts
    bytes that are not a TLS record on the wire (what a broken middlebox or a load balancer that
    loses its TLS state does) instead of an answer."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca_path = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(ca_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                tls = ctx.wrap_socket(raw, server_side=True)
                buf = b""
                while b"\r\n\r\n" not in buf or len(buf.partition(b"\r\n\r\n")[2]) < 8:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                received.append(buf)
                socket.socket.send(tls, b"garbage, not a TLS record")     # under the TLS layer
                stop.wait(0.5)
            except OSError:
                pass
            finally:
                raw.close()
    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", ca_path, received
    stop.set()
    listener.close()


def test_a_tls_error_after_the_request_was_written_is_a_lost_answer_not_never_sent(tls_server):
    """The request (a PUT with its body) reached the server; the TLS stream then broke before the
    status line. ``_send_error`` maps every urllib3 ``SSLError`` to ``ServiceRequestError``, "the
    request never left" (the module's docstring says so only for the handshake), so
    ``lost_answer`` is False: the product retries the write as if it had not happened, a conditional
    PUT then sees its own If-Match used up and reports a refusal, and a table insert (retry_total=2)
    is sent twice. RequestsTransport had the same flaw; this transport claims to fix exactly this
    class of misreport for read timeouts, and it must for TLS errors raised after the request was
    written too (``ServiceResponseError``)."""
    url, ca_path, received = tls_server
    t = H.Urllib3Transport(connection_verify=ca_path, connection_timeout=2, read_timeout=2)
    with pytest.raises((ServiceRequestError, ServiceResponseError)) as err:
        t.send(HttpRequest("PUT", url + "/w", json={"a": 1}))
    assert len(received) == 1 and received[0].startswith(b"PUT /w HTTP/1.1")    # it was sent, whole
    assert isinstance(err.value, ServiceResponseError) and lost_answer(err.value)


# -- 3. header values http.client refuses -----------------------------------------------------------
def test_a_header_set_to_none_is_left_out_as_requests_did(server):
    """``requests`` drops a header whose value is None (``merge_setting``), so a request built with
    an optional header left unset (``headers={"If-Match": etag}`` with no etag, an SDK's optional
    header) went out without it. ``Urllib3Transport.send`` passes it to http.client, which raises a
    raw ``TypeError`` -- not an azure-core error, so nothing in the product handles it."""
    srv = server(lambda req: ok())
    t = H.Urllib3Transport(connection_timeout=2, read_timeout=2)
    resp = t.send(HttpRequest("GET", srv.url + "/h", headers={"If-Match": None, "X-Custom": "1"}))
    assert resp.status_code == 200
    assert b"if-match" not in srv.requests[0].lower() and b"X-Custom: 1" in srv.requests[0]


def test_an_invalid_header_value_is_an_azure_core_error_that_never_left(server):
    """A header value with CR/LF cannot be sent. http.client refuses it with a raw ``ValueError``
    that escapes ``send`` unmapped, past ``BudgetedCaller`` and every ``except AzureError`` in the
    adapters (the module promises azure-core's errors). Nothing was written, so the right error is
    ``ServiceRequestError`` (``lost_answer`` False); RequestsTransport raised
    ``ServiceResponseError`` here, which was wrong the other way."""
    srv = server(lambda req: ok())
    t = H.Urllib3Transport(connection_timeout=2, read_timeout=2)
    with pytest.raises(ServiceRequestError) as err:
        t.send(HttpRequest("GET", srv.url + "/h", headers={"X-Custom": "a\r\nInjected: 1"}))
    assert not lost_answer(err.value) and srv.requests == []
