"""``make bench`` / ``python -m bench``: every benchmark, one table, bench/results/latest.json.

    python -m bench [--quick] [--threads N] [--only evaluation|pipeline|coldstart ...] [--skip-c7n]

See bench/README.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench import report

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
PARTS = ("evaluation", "pipeline", "coldstart", "sweep")


def parse(argv: list[str]) -> argparse.Namespace:
    from bench.pipeline import THREADPOOL_ENV, default_threads

    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer and smaller runs (about a minute)")
    ap.add_argument("--only", action="append", choices=PARTS, help="run only these parts (repeatable)")
    ap.add_argument("--skip-c7n", action="store_true", help="product side only: no Cloud Custodian venv")
    ap.add_argument("--threads", type=int, default=default_threads(),
                    help=f"worker threads for the pipeline (default: ${THREADPOOL_ENV}, else the Functions "
                         "Python worker's default on 3.9+: ThreadPoolExecutor(max_workers=None))")
    ap.add_argument("--resources", type=int, help="evaluation: number of resources (default 10000)")
    # one product pass takes ~8 ms, so one stray interrupt moves a sample by ~10 per cent: many
    # alternating pairs keep the median of the ratio steady
    ap.add_argument("--eval-reps", type=int, help="evaluation runs per side (default 15, quick 5)")
    ap.add_argument("--events", type=int, help="pipeline: events per phase per run (default 500, quick 100)")
    ap.add_argument("--pipeline-reps", type=int, help="pipeline runs (default 5, quick 2)")
    ap.add_argument("--cold-reps", type=int, help="cold start processes per side (default 9, quick 7)")
    ap.add_argument("--sweep-reps", type=int, help="sweep runs (default 3, quick 1)")
    ap.add_argument("--emulator-in-process", action="store_true",
                    help="run the HTTPS emulator inside the benchmark process, as simulate does")
    ap.add_argument("--emulator-as-shipped", action="store_true",
                    help="leave Nagle on in the emulator (each ARM call then waits ~40 ms for a delayed ACK)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = ap.parse_args(argv)
    if args.cold_reps is not None and args.cold_reps < 7:
        ap.error("--cold-reps: the issue asks for the median of at least 7 fresh processes")
    if args.sweep_reps is not None and args.sweep_reps < 1:
        ap.error("--sweep-reps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    parts = args.only or list(PARTS)
    q = args.quick
    t0 = time.perf_counter()
    results: dict = {"started": report.started(), "quick": q, "machine": report.machine(), "argv": sys.argv[1:]}

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    c7n_python = None
    if not args.skip_c7n and ("evaluation" in parts or "coldstart" in parts):
        from bench import c7n_env
        c7n_python = c7n_env.ensure(log)
    results["versions"] = report.versions(c7n_python)

    if "evaluation" in parts:
        from bench import evaluation
        log("1. evaluation vs Cloud Custodian")
        results["evaluation"] = evaluation.run(n=args.resources or 10_000, reps=args.eval_reps or (5 if q else 15),
                                               c7n_python=c7n_python, log=log)
    if "pipeline" in parts:
        from bench import pipeline
        log("2./3. pipeline through the trigger function (Azurite, HTTPS emulator, real SDK clients)")
        results["pipeline"] = pipeline.run(events=args.events or (100 if q else 500),
                                           reps=args.pipeline_reps or (2 if q else 5), threads=args.threads,
                                           emulator_in_process=args.emulator_in_process,
                                           tcp_nodelay=not args.emulator_as_shipped, log=log)
    if "coldstart" in parts:
        from bench import coldstart
        log("4. cold start")
        results["coldstart"] = coldstart.run(reps=args.cold_reps or (7 if q else 9), c7n_python=c7n_python, log=log)

    if "sweep" in parts:
        from bench import sweep_bench
        log("5. reconciling sweep (ARM reads at 50 ms, 25/s read budget)")
        results["sweep"] = sweep_bench.repeated(reps=args.sweep_reps or (1 if q else 3), n=500 if q else 2000, log=log)

    results["machine"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["seconds"] = time.perf_counter() - t0
    sys.stdout.write(report.render(results))
    report.write_json(results, args.out)
    log(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
