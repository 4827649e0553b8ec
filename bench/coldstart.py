"""4. Cold start: a fresh process importing the function app, beside Cloud Custodian's provider.

Each sample is a new interpreter that times ``import function_app`` with perf_counter and reports
its peak RSS: ``VmHWM`` from /proc/self/status (the whole process: interpreter plus imports).
``getrusage(RUSAGE_SELF).ru_maxrss`` is not used: Linux carries it over exec from the forked copy
of the parent, so a big benchmark process would inflate every child's figure. Samples alternate product / c7n (``import c7n_azure.provider`` in bench/.c7n-venv).
Also reported, not a target: the modules ``bootstrap.build_service`` imports lazily on the first
event (SDK adapters), timed in the same child right after the app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.stats import summary

REPO = Path(__file__).resolve().parents[1]

_HWM = """
def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

_PRODUCT = _HWM + """
import json, sys, time
t0 = time.perf_counter()
import function_app
t1 = time.perf_counter()
rss_app = hwm_kb()
import guardrails.bootstrap, guardrails.service, guardrails.policy.cache
import guardrails.adapters.arm, guardrails.adapters.tables, guardrails.adapters.audit_tables
import guardrails.adapters.idempotency_tables, guardrails.adapters.remediation_tables, guardrails.adapters.outbox_tables
import azure.mgmt.resource.resources
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "maxrss_kb": rss_app, "lazy_s": t2 - t1,
                  "maxrss_lazy_kb": hwm_kb()}))
"""

_C7N = _HWM + """
import json, time
t0 = time.perf_counter()
import c7n_azure.provider
t1 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "maxrss_kb": hwm_kb()}))
"""


def _sample(python: str, code: str, cwd: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    t0 = time.perf_counter()
    done = subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"cold start sample failed ({python}): {done.stderr.strip()[-500:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


def run(*, reps: int = 7, c7n_python: Path | None = None, log=print) -> dict:
    product, c7n = [], []
    for i in range(reps):
        order = ("product", "c7n") if i % 2 == 0 else ("c7n", "product")
        for side in order:
            if side == "product":
                product.append(_sample(sys.executable, _PRODUCT, str(REPO)))  # function_app.py lives here
            elif c7n_python is not None:
                c7n.append(_sample(str(c7n_python), _C7N, tempfile.gettempdir()))
    out = {
        "reps": reps,
        "product": {"import_s": summary(s["import_s"] for s in product),
                    "maxrss_mb": summary(s["maxrss_kb"] / 1024 for s in product),
                    "process_s": summary(s["process_s"] for s in product),
                    "lazy_s": summary(s["lazy_s"] for s in product),
                    "maxrss_lazy_mb": summary(s["maxrss_lazy_kb"] / 1024 for s in product)},
        "pyc": any((REPO / "guardrails").glob("__pycache__/*.pyc")),
        "dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
    }
    if c7n:
        out["c7n"] = {"import_s": summary(s["import_s"] for s in c7n),
                      "maxrss_mb": summary(s["maxrss_kb"] / 1024 for s in c7n),
                      "process_s": summary(s["process_s"] for s in c7n)}
        out["ratio_import"] = summary(p["import_s"] / c["import_s"] for p, c in zip(product, c7n))
        out["ratio_rss"] = summary(p["maxrss_kb"] / c["maxrss_kb"] for p, c in zip(product, c7n))
    log(f"  cold start: import function_app {out['product']['import_s']['median'] * 1000:.0f} ms"
        + (f", import c7n_azure.provider {out['c7n']['import_s']['median'] * 1000:.0f} ms" if c7n else ""))
    return out
