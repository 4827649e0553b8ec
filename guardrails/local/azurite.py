"""Start and stop Azurite's Table service (or its Blob service: the dead-letter container) on
127.0.0.1 (a random free port) for tests, ``simulate`` and the demo. Azurite comes from the committed package.json/lockfile
(``npm ci``); we start its installed binary directly, never through npx."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError

# The public, documented Azurite development account (not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_ENV = "GUARDRAILS_AZURITE_BIN"


def connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"TableEndpoint=http://{host}:{port}/{DEV_ACCOUNT};"
    )


def blob_connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{DEV_ACCOUNT};"
    )


def find_binary(service: str = "table") -> str:
    """``azurite-table`` (``GUARDRAILS_AZURITE_BIN`` overrides it) or ``azurite-blob``."""
    explicit = os.environ.get(BIN_ENV) if service == "table" else None
    candidates = [explicit] if explicit else []
    candidates.append(str(REPO_ROOT / "node_modules" / ".bin" / f"azurite-{service}"))
    for c in candidates:
        if c and Path(c).exists():
            return c
    found = shutil.which(f"azurite-{service}")
    if found:
        return found
    raise ConfigError(f"azurite-{service} not found: run `make setup` (npm ci) first")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Azurite:
    """``with Azurite() as az: az.connection_string``. In-memory; gone when stopped."""

    def __init__(self, port: int | None = None, *, location: str | None = None, service: str = "table") -> None:
        """``location``: persist tables on disk there (survives a restart); default in memory.
        ``service``: ``table`` (default) or ``blob``."""
        if service not in ("table", "blob"):
            raise ValueError(f"Azurite service {service!r}: 'table' or 'blob'")
        self.service = service
        self._requested_port = port
        self._location = location
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._workdir: str | None = None

    @property
    def connection_string(self) -> str:
        if self.port is None:
            raise RuntimeError("Azurite is not running")
        return (connection_string if self.service == "table" else blob_connection_string)(self.port)

    def start(self, timeout: float = 20.0) -> "Azurite":
        binary = find_binary(self.service)
        last_err = ""
        for _attempt in range(3):
            port = self._requested_port or _free_port()
            self._workdir = tempfile.mkdtemp(prefix="azurite-")
            storage = ["--location", self._location] if self._location else ["--inMemoryPersistence"]
            self._proc = subprocess.Popen(
                [binary, f"--{self.service}Host", "127.0.0.1", f"--{self.service}Port", str(port), *storage,
                 "--silent", "--disableTelemetry", "--skipApiVersionCheck"],
                cwd=self._workdir,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    last_err = (self._proc.stderr.read() or b"").decode(errors="replace")[-300:]
                    break
                if _listening(port):
                    self.port = port
                    self._requested_port = port   # a restart comes back on the same port
                    return self
                time.sleep(0.05)
            self.stop()
        raise ConfigError(f"Azurite did not start: {last_err.strip() or 'timed out'}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # SIGINT is Azurite's graceful shutdown (it saves on-disk tables); SIGTERM is not
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        if proc is not None and proc.stderr:
            proc.stderr.close()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.port = None

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
