"""The local HTTPS Azure emulator (``guardrails.local.emulator.AzureEmulator``, unchanged) in its
own process, so that its TLS server does not share the benchmarked process's GIL: in production
ARM is another machine. Same surface as the in-process emulator for what the benchmark uses:
``base_url``, ``ca_path``, ``take_requests()`` (the request log, then cleared), ``drain_events()``.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any


def _serve(conn, resources: list[dict]) -> None:
    from guardrails.local.emulator import AzureEmulator

    emu = AzureEmulator(resources).start()
    conn.send(("ready", emu.base_url, emu.ca_path))
    try:
        while True:
            try:
                cmd, arg = conn.recv()
            except EOFError:
                return
            if cmd == "stop":
                return
            if cmd == "take_requests":
                reqs = emu.requests
                emu.clear_requests()
                conn.send(reqs)
            elif cmd == "drain_events":
                conn.send(emu.drain_events())
            elif cmd == "put":
                for r in arg:
                    emu.put(r)
                conn.send(len(arg))
            elif cmd == "get":
                conn.send(emu.get(arg))
            else:
                conn.send(ValueError(f"unknown command {cmd!r}"))
    finally:
        emu.stop()


class InProcessEmulator:
    """The emulator as ``simulate`` runs it (same thread-served process)."""

    def __init__(self, resources: list[dict]) -> None:
        from guardrails.local.emulator import AzureEmulator

        self._emu = AzureEmulator(resources).start()
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


class EmulatorProcess:
    def __init__(self, resources: list[dict]) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, resources), name="bench-azure-emulator", daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(60):
            self.stop()
            raise RuntimeError("emulator process did not start")
        _tag, self.base_url, self.ca_path = self._conn.recv()

    def _ask(self, cmd: str, arg: Any = None) -> Any:
        self._conn.send((cmd, arg))
        ans = self._conn.recv()
        if isinstance(ans, Exception):
            raise ans
        return ans

    def take_requests(self) -> list[dict]:
        return self._ask("take_requests")

    def drain_events(self) -> list[dict]:
        return self._ask("drain_events")

    def get(self, rid: str) -> dict | None:
        return self._ask("get", rid)

    def stop(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(("stop", None))
            except OSError:
                pass
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout=5)
        self._conn.close()
