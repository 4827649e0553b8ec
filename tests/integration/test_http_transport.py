"""The product's HTTP transport (``guardrails.adapters.http_transport``) against real sockets: a small
scripted HTTP server for the failures a network makes (refused, dropped after sending, a body that
breaks off or stalls, no answer in time), the Azure emulator's HTTPS with the test CA, and Azurite
through the real SDK clients. The errors must be azure-core's, as ``RequestsTransport`` raises them,
because the product's retry and lost-answer logic reads them."""

from __future__ import annotations

import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.core.exceptions import (IncompleteReadError, ServiceRequestError, ServiceResponseError,
                                   ServiceResponseTimeoutError)
from azure.core.pipeline.transport import HttpRequest as LegacyRequest
from azure.core.rest import HttpRequest
from azure.data.tables import TableServiceClient

from guardrails.adapters import http_transport as H
from guardrails.adapters.retry import lost_answer
from guardrails.adapters.transport import client_options

from .scripted_http import ok

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def emulator():
    from guardrails.local.emulator import AzureEmulator
    emu = AzureEmulator.from_world({"resources": []}).start()
    yield emu
    emu.stop()


def _send(transport, request, **kwargs):
    return transport.send(request, **kwargs)


# -- the happy path ---------------------------------------------------------------------------------
def test_a_request_and_its_answer(server):
    srv = server(lambda req: ok(b'{"n": 1}', b"X-Thing: a\r\nx-thing: b\r\n"))
    t = H.Urllib3Transport(connection_timeout=2, read_timeout=2)
    resp = _send(t, HttpRequest("PATCH", srv.url + "/x?api-version=1", json={"name": "café"},
                                headers={"X-Custom": "1"}))
    assert resp.status_code == 200 and resp.json() == {"n": 1} and resp.content == b'{"n": 1}'
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["X-THING"] == "a, b"                       # case-insensitive, repeated joined
    head, _, body = srv.requests[0].partition(b"\r\n\r\n")
    lines = {l.split(b":")[0].lower(): l.partition(b":")[2].strip() for l in head.split(b"\r\n")[1:]}
    assert head.startswith(b"PATCH /x?api-version=1 HTTP/1.1")
    assert lines[b"x-custom"] == b"1" and int(lines[b"content-length"]) == len(body)
    assert body.decode("utf-8") in ('{"name": "caf\\u00e9"}', '{"name": "café"}')
    assert b"gzip" not in lines.get(b"accept-encoding", b"")       # Azure answers identity unless asked


def test_a_str_body_goes_as_utf8_and_a_bodyless_write_says_length_zero(server):
    srv = server(lambda req: ok())
    t = H.Urllib3Transport()
    req = HttpRequest("PUT", srv.url + "/a", content="naïve ✓")
    _send(t, req)
    _send(t, HttpRequest("POST", srv.url + "/b"))
    head, _, body = srv.requests[0].partition(b"\r\n\r\n")
    assert body == "naïve ✓".encode("utf-8") and b"Content-Length: %d" % len(body) in head
    assert b"Content-Length: 0" in srv.requests[1]


def test_connections_are_kept_alive_and_a_half_read_stream_is_not_reused(server):
    srv = server(lambda req: ok(b"x" * 10_000))
    t = H.Urllib3Transport()
    for _ in range(5):
        _send(t, HttpRequest("GET", srv.url + "/k"))
    assert srv.connections == 1
    resp = _send(t, HttpRequest("GET", srv.url + "/s"), stream=True)
    next(resp.iter_bytes())                 # one block of the body, then given up
    resp.close()
    _send(t, HttpRequest("GET", srv.url + "/k"))
    assert srv.connections == 2             # the half-read connection was dropped, not reused
    streamed = _send(t, HttpRequest("GET", srv.url + "/s"), stream=True)
    assert b"".join(streamed.iter_bytes()) == b"x" * 10_000
    _send(t, HttpRequest("GET", srv.url + "/k"))
    assert srv.connections == 2             # a stream read to its end gives its connection back


def test_many_threads_share_one_transport(server):
    srv = server(lambda req: ok(req.split(b" ")[1]))
    t = H.Urllib3Transport()
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda i: _send(t, HttpRequest("GET", f"{srv.url}/{i}")).content, range(200)))
    assert bodies == [f"/{i}".encode() for i in range(200)]
    assert srv.connections <= 8 + H.POOL_MAXSIZE


# -- failures, as azure-core names them ----------------------------------------------------------
def test_nothing_listening_is_a_request_that_never_left():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ServiceRequestError) as err:
        _send(H.Urllib3Transport(connection_timeout=2), HttpRequest("GET", f"http://127.0.0.1:{port}/"))
    assert not isinstance(err.value, ServiceResponseError) and not lost_answer(err.value)


def test_a_connection_dropped_after_the_request_is_a_lost_answer(server):
    srv = server(lambda req: "close")
    with pytest.raises(ServiceResponseError) as err:
        _send(H.Urllib3Transport(), HttpRequest("PUT", srv.url + "/w", json={"a": 1}))
    assert lost_answer(err.value) and len(srv.requests) == 1


def test_no_answer_in_time_is_a_response_timeout(server):
    srv = server(lambda req: ("stall", b""))
    with pytest.raises(ServiceResponseTimeoutError) as err:
        _send(H.Urllib3Transport(), HttpRequest("GET", srv.url + "/slow"), read_timeout=0.3)
    assert lost_answer(err.value)


@pytest.mark.parametrize("stream", [False, True])
def test_a_body_that_breaks_off_is_an_incomplete_read(server, stream):
    srv = server(lambda req: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"y" * 10 + b"#close")
    t = H.Urllib3Transport()
    with pytest.raises(IncompleteReadError) as err:
        resp = _send(t, HttpRequest("GET", srv.url + "/b"), stream=stream)
        b"".join(resp.iter_bytes())
    assert lost_answer(err.value)


@pytest.mark.parametrize("stream", [False, True])
def test_a_body_that_stalls_is_a_response_timeout_not_a_request_never_sent(server, stream):
    srv = server(lambda req: ("stall", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 10))
    t = H.Urllib3Transport()
    with pytest.raises(ServiceResponseTimeoutError) as err:
        resp = _send(t, HttpRequest("GET", srv.url + "/b"), stream=stream, read_timeout=0.3)
        b"".join(resp.iter_bytes())
    assert lost_answer(err.value)


def test_an_unknown_option_is_refused_as_requests_would():
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        H.Urllib3Transport().send(HttpRequest("GET", "http://127.0.0.1:9/"), bogus=1)


# -- TLS --------------------------------------------------------------------------------------------
def test_tls_is_verified_against_the_bundle(emulator):
    url = emulator.base_url + "/subscriptions?api-version=2022-12-01"
    with pytest.raises(ServiceRequestError, match="(?i)certificate"):
        _send(H.Urllib3Transport(), HttpRequest("GET", url))          # certifi's roots: not the test CA
    resp = _send(H.Urllib3Transport(connection_verify=emulator.ca_path), HttpRequest("GET", url))
    assert resp.status_code in (200, 401)


# -- proxies ----------------------------------------------------------------------------------------
def test_a_proxy_with_credentials_is_sent_them_and_errors_never_show_them(server):
    srv = server(lambda req: ok(b"via proxy"))
    t = H.Urllib3Transport(proxies={"http": f"http://svc:s3cr%3At@127.0.0.1:{srv.port}"})
    resp = _send(t, HttpRequest("GET", "http://management.example/sub"))
    assert resp.content == b"via proxy"
    head = srv.requests[0].split(b"\r\n\r\n")[0]
    assert head.startswith(b"GET http://management.example/sub HTTP/1.1")
    assert b"proxy-authorization: basic c3ZjOnMzY3I6dA==" in head.lower().replace(b"c3zjonmzy3i6da==", b"c3ZjOnMzY3I6dA==")
    dead = H.Urllib3Transport(proxies={"http": "http://svc:hunter2@127.0.0.1:9"}, connection_timeout=1)
    with pytest.raises(ServiceRequestError) as err:
        _send(dead, HttpRequest("GET", "http://management.example/sub"))
    assert "hunter2" not in str(err.value) and "hunter2" not in repr(err.value.inner_exception)


# -- what it hands to requests ---------------------------------------------------------------------
def test_forms_files_and_legacy_requests_go_through_requests(server):
    srv = server(lambda req: ok(b"fine"))
    t = H.Urllib3Transport()
    form = HttpRequest("POST", srv.url + "/form", data={"a": "1", "b": "two words"})
    assert _send(t, form).content == b"fine"
    assert srv.requests[-1].endswith(b"a=1&b=two+words")
    legacy = LegacyRequest("GET", srv.url + "/legacy")
    assert _send(t, legacy).status_code == 200
    assert t._fallback is not None
    t.close()
    assert t._fallback is None and t._managers == {}
    assert _send(t, HttpRequest("GET", srv.url + "/again")).content == b"fine"     # usable after close


# -- the product's clients -------------------------------------------------------------------------
def test_every_client_gets_its_own_transport_with_the_settings(monkeypatch):
    monkeypatch.setenv("GUARDRAILS_HTTPS_PROXY", "http://proxy.internal:3128")
    a = client_options("/ca.pem", retry_total=0, read_timeout=7)
    b = client_options("/ca.pem", retry_total=0, read_timeout=7)
    assert a["transport"] is not b["transport"]
    t = a["transport"]
    assert isinstance(t, H.Urllib3Transport)
    assert (t.verify, t.read_timeout, t.connection_timeout) == ("/ca.pem", 7, 5.0)
    assert t.proxies == {"https": "http://proxy.internal:3128", "http": "http://proxy.internal:3128"}
    assert {k: v for k, v in a.items() if k != "transport"} == {"retry_total": 0}


def test_real_table_clients_through_it(azurite):
    svc = TableServiceClient.from_connection_string(azurite.connection_string, **client_options(retry_total=0))
    table = svc.create_table("T" + uuid.uuid4().hex[:12])
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "text": "ünïcode ✓", "n": 3})
    assert table.get_entity("p", "r")["text"] == "ünïcode ✓"
    assert [e["RowKey"] for e in table.query_entities("PartitionKey eq 'p'")] == ["r"]
    batch = [("upsert", {"PartitionKey": "p", "RowKey": f"b{i}"}) for i in range(3)]
    table.submit_transaction(batch)                                        # multipart/mixed body
    assert len(list(table.list_entities())) == 4


# -- the mapping itself, for the failures a local socket cannot make -------------------------------
@pytest.mark.parametrize("exc, expected", [
    (H.ConnectTimeoutError("connect timed out"), "ServiceRequestTimeoutError"),
    (H.NewConnectionError(None, "refused"), "ServiceRequestError"),
    (H.SSLError("handshake"), "ServiceRequestError"),
    (H.ProxyError("proxy said no", OSError()), "ServiceRequestError"),
    (H.ReadTimeoutError(None, "/", "read timed out"), "ServiceResponseTimeoutError"),
    (H.ProtocolError("Connection aborted.", ConnectionResetError()), "ServiceResponseError"),
])
def test_send_errors_map_to_azure_cores(exc, expected):
    assert type(H._send_error(exc)).__name__ == expected


def test_an_error_that_is_not_the_networks_is_raised_as_it_is():
    bug = KeyError("x")
    assert H._send_error(bug) is bug and H._body_error(bug) is bug
