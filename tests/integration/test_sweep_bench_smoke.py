"""The sweep benchmark's code path on a tiny estate, so it cannot rot. Shapes and invariants only
(every drifted resource fixed, no failure, figures present): timings come from ``make bench``."""

from __future__ import annotations

import pytest

from bench import report, sweep_bench

pytestmark = pytest.mark.integration


def test_sweep_bench_runs_and_lands_in_the_table(azurite):
    out = sweep_bench.repeated(reps=2, n=60, drift=0.1, latency_ms=1, rate=1000, burst=1000,
                               connection=azurite.connection_string, log=lambda _m: None)
    assert out["runs"] == 2 and out["stats"]["reads"]["n"] == 2       # median [min - max] over real runs
    assert out["resources"] >= 60 and out["failed"] == 0 and out["throttled_429"] == 0
    drifted = sum(1 for r in sweep_bench._estate(60, 0.1) if r.get("properties", {}).get("publicNetworkAccess") == "Enabled")
    assert out["drifted_fixed"] == drifted == out["writes"] > 0
    assert out["reads"] >= out["pages"] > 0 and out["reads_per_s"] > 0
    rows: list = []
    notes: list = []
    sweep_bench.table_rows(out, report._row, rows, notes)
    assert [r["section"] for r in rows] == ["5 sweep"] * 5 and notes[0].startswith("5: ")
