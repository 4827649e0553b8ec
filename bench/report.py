"""The one table ``make bench`` prints, the machine and versions that produced it, and targets."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

PRODUCT_PACKAGES = ("azure-core", "azure-data-tables", "azure-mgmt-resource", "azure-functions", "azure-identity")

# targets from the benchmark issue
T_RATIO = 10.0
T_P99_MS = 50.0
T_SHARE = 0.70
T_IMPORT_S = 0.3
T_COLD_RATIO = 0.7


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": os.cpu_count(), "platform": platform.platform(),
                            "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return info


def versions(c7n_python: Path | None) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PRODUCT_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    root = Path(__file__).resolve().parents[1]
    try:        # the ceiling is Azurite's: its version and Node's stand beside the figures
        out["azurite"] = json.loads((root / "node_modules" / "azurite" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        out["azurite"] = "absent"
    for key, cmd in (("node", ["node", "--version"]), ("commit", ["git", "-C", str(root), "rev-parse", "--short", "HEAD"])):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
            out[key] = done.stdout.strip() if done.returncode == 0 else "unknown"
        except (OSError, subprocess.TimeoutExpired):
            out[key] = "unknown"
    if c7n_python is not None and Path(c7n_python).exists():
        code = "import importlib.metadata as m; print(m.version('c7n'), m.version('c7n_azure'))"
        done = subprocess.run([str(c7n_python), "-c", code], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            out["c7n"], out["c7n_azure"] = done.stdout.split()
    return out


# ---------------------------------------------------------------------------------------------
def _fmt(spec: str, scale: float = 1.0, suffix: str = "") -> Callable[[float], str]:
    """A cell formatter: ``format(v * scale, spec) + suffix``."""
    return lambda v: f"{format(v * scale, spec)}{suffix}"


_num = _fmt(",.0f")          # 1,173,888
_ms = _mb = _fmt(".1f")      # 19.7
_ms2 = _frac = _fmt(".2f")   # 0.58
_x = _fmt(".2f", suffix="x")
_pct = _fmt(".0f", 100.0, "%")
_s = _fmt(".3f")
_calls = _fmt("g")


def _row(rows: list, section: str, measure: str, stats: dict | None, fmt: Callable[[float], str],
         target: str = "", met: bool | None = None) -> None:
    if stats is None:
        return
    rows.append({"section": section, "measure": measure, "median": fmt(stats["median"]), "min": fmt(stats["min"]),
                 "max": fmt(stats["max"]), "target": target,
                 "met": "" if met is None else ("yes" if met else "NO"), "raw": stats})


PHASE_LABEL = {"compliant": "(a) compliant", "fix": "(b) needs a fix", "own_write": "(c) ignored: own write",
               "duplicate": "(c) duplicate, same worker", "duplicate_other": "(c) duplicate, another instance",
               "role": "(d) role assignment, compliant"}


def rows(results: dict) -> tuple[list[dict], list[str]]:
    """Table rows and footnotes."""
    out: list[dict] = []
    notes: list[str] = []
    ev = results.get("evaluation")
    if ev:
        sec = "1 evaluation"
        n = ev["resources"]
        _row(out, sec, f"product, resources/s ({n:,} resources)", ev["product"]["per_s"], _num)
        if "c7n" in ev:
            _row(out, sec, "Cloud Custodian filters, resources/s", ev["c7n"]["per_s"], _num)
            r = ev["ratio"]
            _row(out, sec, "product / c7n (per alternating pair)", r, _x, f">= {T_RATIO:g}x", r["median"] >= T_RATIO)
            if "ratio_pairs" in ev:          # info: both sides also building (id, rule) pairs in the timing
                _row(out, sec, "  (info) with (id, rule) pairs built in the timing: product, resources/s",
                     ev["product_pairs"]["per_s"], _num)
                _row(out, sec, "  (info) ... Cloud Custodian, resources/s", ev["c7n_pairs"]["per_s"], _num)
                _row(out, sec, "  (info) ... product / c7n", ev["ratio_pairs"], _x)
            notes.append("1: timed, each engine's own output: the product's violations_many (the sweep's entry "
                         "point: each violating resource with its rules), c7n's filter_resources per rule; both "
                         "turned into (id, rule) pairs outside the timing")
            notes.append(f"1: identical violation sets in every run: {ev['violations']:,} (resource, rule) pairs on "
                         f"{ev['violating_resources']:,} of {n:,} resources, {len(ev['rules'])} rules; "
                         f"c7n: {len(ev['c7n_policies'])} policies of value filters (bench/evaluation.py c7n_filters)")
        else:
            notes.append("1: Cloud Custodian side skipped (--skip-c7n)")
    pl = results.get("pipeline")
    if pl:
        sec = "2 pipeline"
        for p, label in PHASE_LABEL.items():
            ph = pl["phases"][p]
            _row(out, sec, f"{label}: p50 ms", ph["p50_ms"], _ms)
            p99_target = f"<= {T_P99_MS:g}" if p in ("compliant", "role") else ""
            _row(out, sec, f"{label}: p99 ms", ph["p99_ms"], _ms, p99_target,
                 ph["p99_ms"]["median"] <= T_P99_MS if p in ("compliant", "role") else None)
            _row(out, sec, f"{label}: events/s", ph["per_s"], _num)
            w = ph["table_writes_per_event"]["median"]
            _row(out, sec, f"{label}: share of ceiling (serial single upserts/s / {w:g} writes)",
                 ph["share_of_ceiling"], _pct, f">= {T_SHARE * 100:g}%", ph["share_of_ceiling"]["median"] >= T_SHARE)
            _row(out, sec, "  (info) share of what Azurite takes from one asyncio client", ph.get("share_of_asyncio"),
                 _pct)
            alone = (pl.get("requests_alone") or {}) if p in ("compliant", "fix") else {}
            if alone:
                shape = "fix" if p == "fix" else "compliant"
                _row(out, sec, f"  (info) its requests alone, no guardrail work, {pl['threads']} threads: share of "
                     "ceiling", alone[f"{shape}_sync_share"], _pct)
                _row(out, sec, "  (info) its requests alone, asyncio clients, CPU-bound: share of the asyncio "
                     "ceiling", alone[f"{shape}_asyncio_bound"], _pct)
        _row(out, sec, "Azurite single upserts/s, serial", pl["ceiling"]["serial"], _num)
        _row(out, sec, f"Azurite single upserts/s, {pl['threads']} threads", pl["ceiling"]["concurrent"], _num)
        _row(out, sec, "  ceiling client CPU per upsert, ms", pl["ceiling"].get("client_cpu_ms_per_write"), _ms2)
        if "asyncio" in pl["ceiling"]:
            _row(out, sec, f"Azurite single upserts/s, one asyncio client, {pl.get('asyncio_in_flight', 8)} in flight "
                 "(info)", pl["ceiling"]["asyncio"], _num)
            _row(out, sec, "  asyncio client process CPU per upsert, ms", pl["ceiling"]["asyncio_cpu_ms_per_write"],
                 _ms2)
        for label, stats in (pl.get("request_cpu_ms") or {}).items():
            _row(out, sec, f"  product CPU per request, {label}, ms", stats, _ms2)
        for p, label in PHASE_LABEL.items():
            _row(out, sec, f"  product process busy, {label.split(' ', 1)[1]} (1.00 = one core)",
                 pl["phases"][p].get("product_busy"), _frac)
        rt = pl.get("arm_round_trip_ms")
        if rt:
            _row(out, sec, "ARM GET via emulator as shipped, ms", rt["as_shipped"], _ms)
            _row(out, sec, "ARM GET via emulator with TCP_NODELAY, ms", rt["nodelay"], _ms)
        thr = pl["threads_setting"]
        notes.append(f"2: {pl['events_per_phase']} events per phase x {pl['reps']} runs; "
                     f"{pl['threads']} worker threads (PYTHON_THREADPOOL_THREAD_COUNT="
                     f"{thr if thr is not None else 'unset: host default min(32, cpu+4)'}); emulator in "
                     f"{'this process' if pl['emulator'] == 'in-process' else 'its own process'}"
                     f"{', TCP_NODELAY' if pl['tcp_nodelay'] else ', as shipped (Nagle)'}; policy cache loaded before "
                     f"each phase, reloads inside phases: {sum(ph['policy_reloads'] for ph in pl['phases'].values())}")
        cpu_parts = []
        for p, label in PHASE_LABEL.items():
            c = pl["phases"][p]["cpu_ms_per_event"]
            cpu_parts.append(f"{label.split(' ', 1)[1]} " + "/".join(f"{c[k]['median']:.1f}" for k in ("product", "azurite", "emulator") if k in c))
        notes.append("2: CPU ms per event, product/Azurite/emulator: " + "; ".join(cpu_parts))
        sec = "3 calls/event"
        for name, c in pl["calls"].items():
            arm = c["arm"]
            if name in ("compliant", "role assignment"):
                target, met = "1 ARM read", arm["max"] == 1 and c["arm_reads"]["max"] == 1
            elif name == "fix":
                target = "read+write+confirm"
                met = arm["max"] == 3 and c["arm_reads"]["min"] == 2 and c["arm_writes"]["min"] == 1
            else:
                target, met = "0 ARM", arm["max"] == 0
            other = c.get("other")
            if other is not None:        # Key Vault and Graph: no resource event needs either
                target, met = target + ", 0 other", met and other["max"] == 0
            _row(out, sec, f"{name}: ARM calls", arm, _calls, target, met)
            if other is not None:
                _row(out, sec, f"{name}: Key Vault + Graph calls", other, _calls)
            notes.append(f"3: {name}: ARM {c['arm']['median']:g} ({c['arm_reads']['median']:g} GET, "
                         f"{c['arm_writes']['median']:g} write); table {c['table_writes']:g} writes + "
                         f"{c['table_reads']:g} reads = {c['table_detail']}")
    cs = results.get("coldstart")
    if cs:
        sec = "4 cold start"
        pr = cs["product"]
        _row(out, sec, "import function_app, s", pr["import_s"], _s, f"<= {T_IMPORT_S:g} s",
             pr["import_s"]["median"] <= T_IMPORT_S)
        _row(out, sec, "  peak RSS, MB", pr["maxrss_mb"], _mb)
        if "c7n" in cs:
            _row(out, sec, "import c7n_azure.provider, s", cs["c7n"]["import_s"], _s)
            _row(out, sec, "  peak RSS, MB", cs["c7n"]["maxrss_mb"], _mb)
            _row(out, sec, "product / c7n, import time", cs["ratio_import"], _x, f"<= {T_COLD_RATIO:g}x",
                 cs["ratio_import"]["median"] <= T_COLD_RATIO)
            _row(out, sec, "product / c7n, peak RSS", cs["ratio_rss"], _x, f"<= {T_COLD_RATIO:g}x",
                 cs["ratio_rss"]["median"] <= T_COLD_RATIO)
        _row(out, sec, "first event's lazy SDK imports, s (info)", pr["lazy_s"], _s)
        notes.append(f"4: {cs['reps']} fresh processes per side, alternating; product .pyc cache present: "
                     f"{'yes' if cs['pyc'] else 'no'} (PYTHONDONTWRITEBYTECODE "
                     f"{'set' if cs['dont_write_bytecode'] else 'unset'})")
    if results.get("sweep"):
        from bench.sweep_bench import table_rows
        table_rows(results["sweep"], _row, out, notes)
    return out, notes


def render(results: dict) -> str:
    table, notes = rows(results)
    m, v = results["machine"], results["versions"]
    head = [
        f"guardrails benchmark  {results['started']}  ({'quick' if results['quick'] else 'full'} run, "
        f"{results['seconds']:.0f} s)",
        f"machine: {m.get('nproc')} CPUs, {m.get('cpu', '?')}, {m.get('mem_gib', '?')} GiB; {m.get('platform')}; "
        f"load average {_load(m.get('loadavg_start'))} at start, {_load(m.get('loadavg_end'))} at end",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "every figure: median [min - max] over the runs of this invocation",
        "",
    ]
    cols = ("section", "measure", "median", "min", "max", "target", "met")
    widths = {c: max(len(c), *(len(r[c]) for r in table)) if table else len(c) for c in cols}
    right = {"median", "min", "max"}

    def line(r: dict) -> str:
        return "  ".join(r[c].rjust(widths[c]) if c in right else r[c].ljust(widths[c]) for c in cols).rstrip()

    body = [line({c: c for c in cols}), "  ".join("-" * widths[c] for c in cols)]
    last = None
    for r in table:
        shown = dict(r)
        if r["section"] == last:
            shown["section"] = ""
        last = r["section"]
        body.append(line(shown))
    return "\n".join(head + body + [""] + [f"  {n}" for n in notes]) + "\n"


def _load(la) -> str:
    return "?" if not la else "/".join(f"{x:.2f}" for x in la)


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table, notes = rows(results)
    doc = {**results, "table": [{k: v for k, v in r.items()} for r in table], "notes": notes}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")


def started() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["machine", "versions", "rows", "render", "write_json", "started"]
