"""A scripted raw-socket HTTP/1.1 server for the transport tests (``server`` fixture in conftest)."""

from __future__ import annotations

import socket
import threading


class Script:
    """A one-port HTTP/1.1 server; each accepted request is answered by ``handler(request_bytes)``,
    which returns the bytes to send, and may ask to close or stall."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._exchange(conn)
        except OSError:                 # the client went away: that is what some tests do
            pass

    def _exchange(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(rest) < length:
                    rest += conn.recv(65536)
                request, buf = head + b"\r\n\r\n" + rest[:length], rest[length:]
                self.requests.append(request)
                action = self.handler(request)
                if action == "close":
                    return
                if isinstance(action, tuple) and action[0] == "stall":
                    conn.sendall(action[1])
                    self._stop.wait(5)
                    return
                conn.sendall(action)
                if isinstance(action, bytes) and action.endswith(b"#close"):
                    return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)
