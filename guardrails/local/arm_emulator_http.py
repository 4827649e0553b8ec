"""HTTP plumbing of the local Azure emulator: request/response values, ARM error shape,
and the TLS ``ThreadingHTTPServer`` that hands every request to a dispatch callable.

Nothing here knows about resources; route families live in ``arm_emulator_routes``.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from guardrails.local.credential import decode_local_token

_NO_BODY = object()


@dataclass
class EmuRequest:
    method: str
    raw_path: str                    # as received, percent-encoded, without query
    path: str                        # urllib.parse.unquote(raw_path)
    segments: list[str]              # non-empty path segments, each unquoted
    query: dict[str, str]
    headers: Mapping[str, str]       # case-insensitive (email.message.Message)
    body_bytes: bytes
    host: str = "management"         # set by the route family that claims the request
    body: Any = None                 # parsed JSON (None when empty)
    body_is_json: bool = True        # False when a non-empty body is not JSON
    claims: dict | None = None       # decoded local bearer token, if any
    log_entry: dict | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def caller(self) -> str | None:
        if not self.claims:
            return None
        return self.claims.get("oid") or self.claims.get("appid")

    @classmethod
    def parse(cls, method: str, target: str, headers: Mapping[str, str], body: bytes) -> "EmuRequest":
        parts = urlsplit(target)
        raw_path = parts.path or "/"
        segments = [unquote(s) for s in raw_path.split("/") if s]
        query = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
        req = cls(method.upper(), raw_path, unquote(raw_path), segments, query, headers, body)
        if body:
            try:
                req.body = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                req.body_is_json = False
        auth = headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            req.claims = decode_local_token(auth[7:])
        return req


@dataclass
class EmuResponse:
    status: int
    body: Any = None                 # JSON-serialisable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)


class ArmError(Exception):
    """An ARM failure answered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def to_error(self) -> dict:
        return {"code": self.code, "message": self.message}

    def response(self) -> EmuResponse:
        return EmuResponse(self.status, {"error": self.to_error()}, dict(self.headers))


def arm_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> EmuResponse:
    return ArmError(status, code, message, headers).response()


def status_code_name(status: int) -> str:
    """ARM-style error code for a bare HTTP status: 429 -> TooManyRequests, 503 -> ServiceUnavailable."""
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return "InternalServerError" if status >= 500 else "BadRequest"


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, ssl_context: ssl.SSLContext, dispatch: Callable[[EmuRequest], EmuResponse]):
        super().__init__(addr, handler)
        self.ssl_context = ssl_context
        self.dispatch = dispatch
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:  # client hang-ups, TLS noise
        pass

    def close_connections(self) -> None:
        with self.connections_lock:
            conns, self.connections = list(self.connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True     # headers and body go out separately: no delayed-ACK stall
    server_version = "AzureEmulator/1.0"
    sys_version = ""
    timeout = 60

    def setup(self) -> None:
        server: _TLSServer = self.server  # type: ignore[assignment]
        self.request.settimeout(self.timeout)
        # TLS handshake in the connection's own thread, never in the accept loop.
        self.request = server.ssl_context.wrap_socket(self.request, server_side=True)
        with server.connections_lock:
            server.connections.add(self.request)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            server: _TLSServer = self.server  # type: ignore[assignment]
            with server.connections_lock:
                server.connections.discard(self.request)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        req = EmuRequest.parse(self.command, self.path, self.headers, body)
        resp = self.server.dispatch(req)  # type: ignore[attr-defined]
        payload = b"" if resp.body is None else json.dumps(resp.body).encode("utf-8")
        self.send_response(resp.status)
        headers = {k.lower(): (k, v) for k, v in resp.headers.items()}
        if payload and "content-type" not in headers:
            headers["content-type"] = ("Content-Type", "application/json; charset=utf-8")
        headers.setdefault("x-ms-request-id", ("x-ms-request-id", str(uuid.uuid4())))
        corr = req.header("x-ms-correlation-request-id") or str(uuid.uuid4())
        headers.setdefault("x-ms-correlation-request-id", ("x-ms-correlation-request-id", corr))
        headers["content-length"] = ("Content-Length", str(len(payload)))
        for name, value in headers.values():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = do_HEAD = do_OPTIONS = _serve


def make_server(ssl_context: ssl.SSLContext, dispatch: Callable[[EmuRequest], EmuResponse]) -> _TLSServer:
    """An HTTPS server on 127.0.0.1 and a free port (not yet serving)."""
    return _TLSServer(("127.0.0.1", 0), _Handler, ssl_context, dispatch)
