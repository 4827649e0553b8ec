"""The local HTTPS Azure emulator (``guardrails.local.emulator.AzureEmulator``, unchanged) in its
own process, so that its TLS server does not share the benchmarked process's GIL: in production
ARM is another machine. Same surface as the in-process emulator for what the benchmark uses:
``base_url``, ``ca_path``, ``take_requests()`` (the request log, then cleared), ``drain_events()``.
By default its sockets get TCP_NODELAY (see ``nodelay``); ``tcp_nodelay=False`` runs it as shipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def nodelay(enabled: bool = True) -> bool:
    """Make the emulator answer like a real front end: TCP_NODELAY on its accepted sockets.

    As shipped, the emulator's ``BaseHTTPRequestHandler`` writes the status line and headers,
    then the body, in two sends on a Nagle socket; the client's delayed ACK then holds the body
    back ~40 ms, so every emulated ARM call costs ~44 ms instead of ~1 ms (measured by
    ``arm_round_trip``). ``StreamRequestHandler.disable_nagle_algorithm`` is the standard switch;
    set on the base class, it reaches the emulator's handler without touching its code.
    Returns the previous value."""
    import socketserver

    previous = socketserver.StreamRequestHandler.disable_nagle_algorithm
    socketserver.StreamRequestHandler.disable_nagle_algorithm = enabled
    return previous


def _make(cls, world):
    """A list is the resources; a dict is a whole world (role assignments, directory, …)."""
    return cls.from_world(world) if isinstance(world, dict) else cls(world)


def _serve(resources_path: str, tcp_nodelay: bool) -> None:
    """Child: one JSON command per stdin line, one JSON answer per stdout line."""
    from guardrails.local.emulator import AzureEmulator

    nodelay(tcp_nodelay)

    emu = _make(AzureEmulator, json.loads(Path(resources_path).read_text(encoding="utf-8"))).start()
    out = sys.stdout
    out.write(json.dumps({"base_url": emu.base_url, "ca_path": emu.ca_path}) + "\n")
    out.flush()
    try:
        for line in sys.stdin:
            cmd, arg = json.loads(line)
            if cmd == "stop":
                return
            if cmd == "take_requests":
                ans: Any = emu.requests
                emu.clear_requests()
            elif cmd == "drain_events":
                ans = emu.drain_events()
            elif cmd == "get":
                ans = emu.get(arg)
            else:
                ans = {"error": f"unknown command {cmd!r}"}
            out.write(json.dumps(ans, default=str) + "\n")
            out.flush()
    finally:
        emu.stop()


class InProcessEmulator:
    """The emulator as ``simulate`` runs it (same thread-served process)."""

    def __init__(self, resources: list[dict], *, tcp_nodelay: bool = True) -> None:
        from guardrails.local.emulator import AzureEmulator

        self._previous = nodelay(tcp_nodelay)
        self._emu = _make(AzureEmulator, resources).start()
        self.base_url, self.ca_path = self._emu.base_url, self._emu.ca_path

    def take_requests(self) -> list[dict]:
        reqs = self._emu.requests
        self._emu.clear_requests()
        return reqs

    def drain_events(self) -> list[dict]:
        return self._emu.drain_events()

    def get(self, rid: str) -> dict | None:
        return self._emu.get(rid)

    def stop(self) -> None:
        self._emu.stop()
        nodelay(self._previous)


class EmulatorProcess:
    def __init__(self, resources: list[dict], *, tcp_nodelay: bool = True) -> None:
        fd, self._resources_path = tempfile.mkstemp(prefix="bench-world-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(resources, f)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen([sys.executable, "-m", "bench.emulator_proc", self._resources_path,
                                       "nodelay" if tcp_nodelay else "as-shipped"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                      cwd=str(REPO), env=env)
        line = self._proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("emulator process did not start")
        hello = json.loads(line)
        self.base_url, self.ca_path = hello["base_url"], hello["ca_path"]

    def _ask(self, cmd: str, arg: Any = None) -> Any:
        self._proc.stdin.write(json.dumps([cmd, arg]) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"emulator process exited ({self._proc.poll()})")
        ans = json.loads(line)
        if isinstance(ans, dict) and set(ans) == {"error"}:
            raise RuntimeError(ans["error"])
        return ans

    def take_requests(self) -> list[dict]:
        return self._ask("take_requests")

    def drain_events(self) -> list[dict]:
        return self._ask("drain_events")

    def get(self, rid: str) -> dict | None:
        return self._ask("get", rid)

    def stop(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(json.dumps(["stop", None]) + "\n")
                self._proc.stdin.flush()
            except OSError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream:
                stream.close()
        try:
            os.unlink(self._resources_path)
        except OSError:
            pass


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2] == "nodelay")
