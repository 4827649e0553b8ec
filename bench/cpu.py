"""CPU seconds of this process and of each of its descendant processes (Linux /proc), labelled
by role, so a phase can say where its CPU went per event: the product (this process), Azurite
(node), the HTTPS emulator (its own process)."""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(x) for x in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def _descendants(pid: int) -> list[int]:
    seen, stack = [], _children(pid)
    while stack:
        p = stack.pop()
        seen.append(p)
        stack.extend(_children(p))
    return seen


def _label(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    if "azurite" in cmd:
        return "azurite"
    if "bench.emulator_proc" in cmd:
        return "emulator"
    return "other"


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK     # utime + stime


def snapshot() -> dict[str, float]:
    """{"product": s, "azurite": s, "emulator": s, ...} CPU seconds so far."""
    out = {"product": time.process_time()}
    if not Path("/proc/self/stat").exists():
        return out
    for pid in _descendants(os.getpid()):
        label = _label(pid)
        out[label] = out.get(label, 0.0) + _cpu(pid)
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if k != "other"}
