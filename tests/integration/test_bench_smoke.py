"""The benchmark code paths on tiny inputs, so they cannot rot. Product side only: the Cloud
Custodian half needs bench/.c7n-venv, which CI does not build. Asserts shapes and invariants
(identical work, calls per event), never timings: figures come from ``make bench``."""

from __future__ import annotations

import json

import pytest

from bench import coldstart, evaluation, pipeline, report
from bench import resources as R
from bench.counting import classify

pytestmark = pytest.mark.integration


def _quiet(_msg: str) -> None:
    pass


def test_generated_resources_are_seeded_arm_shaped_and_mixed():
    a, b = R.generate(60, seed=5), R.generate(60, seed=5)
    assert a == b
    assert {r["type"] for r in a} <= set(R.TYPES)
    assert all(r["id"].startswith("/subscriptions/") and r["id"].endswith("/" + r["name"]) for r in a)
    ev, ev_pairs, c7n_keys = evaluation.product_evaluator(evaluation.baseline_policies())
    pairs = evaluation.pairs_of(ev(a))
    assert pairs == {(rid, tuple(key)) for rid, key in ev_pairs(a)}      # the two output forms agree
    violating = {rid for rid, _ in pairs}
    assert 0 < len(violating) < len(a)
    # every product key is the image of one c7n spec key: the two sets are comparable
    assert {key for _, key in pairs} <= set(c7n_keys.values())
    assert len(set(c7n_keys.values())) == len(c7n_keys)


def test_the_pipeline_pools_are_what_their_names_say():
    """The pipeline's compliant pool breaks no rule and its fix pool breaks some, whatever the
    generator's mixes draw (the phases check each event's verdict; this checks many at once)."""
    import random

    ev, _pairs, _keys = evaluation.product_evaluator(evaluation.baseline_policies())
    rng = random.Random(7)
    sub, rg = "0fd630f1-f29d-4da9-953f-48f1a09f76b5", "rg-bench-0"
    for t in R.TYPES:
        good = [R.compliant(t, rng, i, sub, rg) for i in range(400)]
        bad = [R.violating(t, rng, i, sub, rg) for i in range(400)]
        assert evaluation.pairs_of(ev(good)) == set(), t
        assert {rid for rid, _ in evaluation.pairs_of(ev(bad))} == {r["id"] for r in bad}, t


def test_c7n_translation_covers_every_resource_rule_of_the_five_types():
    pols = evaluation.c7n_policies(evaluation.baseline_policies())
    assert {p["type"] for p in pols} == set(R.TYPES)
    keys = {p["key"] for p in pols}
    assert "storage-private/blob-public-access-off" in keys
    assert "keyvault-private/rbac-authorization-enabled" in keys
    assert all(p["c7n"]["filters"] for p in pols)
    # absent publicNetworkAccess is public: a lone `ne` filter, no `present` guard
    pna = next(p for p in pols if p["key"] == "storage-private/public-network-access-disabled")
    assert pna["c7n"]["filters"] == [{"type": "value", "key": "properties.publicNetworkAccess", "op": "ne",
                                      "value": "disabled", "value_type": "normalize"}]


def test_evaluation_runs_product_side():
    out = evaluation.run(n=400, reps=1, c7n_python=None, log=_quiet)
    assert out["product"]["per_s"]["n"] == 1 and out["violations"] > 0
    assert out["product_pairs"]["per_s"]["n"] == 1
    assert "c7n" not in out


def test_the_identical_set_check_refuses_a_difference():
    same = {("/subscriptions/s/r/a", ("p", "r1"))}
    evaluation._check_identical(same, set(same), 1)
    with pytest.raises(evaluation.Mismatch, match="run 3"):
        evaluation._check_identical(same, same | {("/subscriptions/s/r/b", ("p", "r1"))}, 3)


def test_the_evaluation_refuses_data_that_leaves_a_rule_untested(monkeypatch):
    real = R.generate

    def without_public_acr(n, *, seed):
        out = real(n, seed=seed)
        for r in out:
            if r["type"] == R.ACR:
                r["properties"]["anonymousPullEnabled"] = False
        return out

    monkeypatch.setattr(R, "generate", without_public_acr)
    with pytest.raises(evaluation.Mismatch, match="anonymous-pull"):
        evaluation.run(n=300, reps=1, c7n_python=None, log=_quiet)


def test_table_call_classification():
    assert classify("POST", "http://127.0.0.1:1/devstoreaccount1/BxIdempotency", {}, "Bx") == ("Idempotency", "create")
    assert classify("PUT", "http://h/a/BxIdempotency(PartitionKey='a',RowKey='b')", {"If-Match": 'W/"1"'},
                    "Bx") == ("Idempotency", "update")
    assert classify("PATCH", "http://h/a/BxAudit(PartitionKey='a',RowKey='b')", {}, "Bx") == ("Audit", "upsert")
    assert classify("GET", "http://h/a/BxPendingFixes()", {}, "Bx") == ("PendingFixes", "query")


def test_pipeline_and_calls_per_event_on_tiny_inputs(azurite):
    out = pipeline.run(events=6, reps=1, threads=2, connection=azurite.connection_string, round_trip=1,
                       request_count=3, log=_quiet)
    assert set(out["phases"]) == set(pipeline.PHASES)
    for name, ph in out["phases"].items():
        assert ph["events"] == 6 and ph["per_s"]["median"] > 0, name
        assert ph["share_of_ceiling"]["median"] > 0, name
    calls = out["calls"]
    assert calls["compliant"]["arm"]["max"] == 1 and calls["compliant"]["arm_reads"]["max"] == 1
    assert calls["fix"]["arm_writes"]["min"] == 1
    for name in ("own_write", "duplicate", "duplicate, another instance", "ignored: type not covered",
                 "ignored: delete event", "invalid"):
        assert calls[name]["arm"]["max"] == 0, name
    # no resource event calls Key Vault or Graph (counted from every host the emulator serves)
    assert all(c["other"]["max"] == 0 for c in calls.values())
    # a redelivery another instance meets is answered by the table (create refused, then a read),
    # the same worker's from its memory
    assert calls["duplicate, another instance"]["table_reads"] >= 1 and calls["duplicate"]["table_reads"] == 0
    assert out["phases"]["duplicate_other"]["table_reads_per_event"]["median"] >= 1
    # the whole pipeline section renders, with a verdict on every judged row
    text = report.render({"started": report.started(), "quick": True, "machine": report.machine(), "seconds": 1.0,
                          "versions": report.versions(None), "pipeline": out})
    for label in report.PHASE_LABEL.values():
        assert f"{label}: share of ceiling (serial single upserts/s" in text, label
    assert "duplicate, another instance: Key Vault + Graph calls" in text
    assert calls["compliant"]["table_writes"] >= 3
    assert out["ceiling"]["client_cpu_ms_per_write"]["median"] > 0
    assert out["ceiling"]["asyncio"]["median"] > 0 and out["ceiling"]["asyncio_cpu_ms_per_write"]["median"] > 0
    assert all(ph["share_of_asyncio"]["median"] > 0 for ph in out["phases"].values())
    assert set(out["request_cpu_ms"]) == {"ARM GET (read, confirm)", "ARM PATCH", "table create",
                                          "table upsert, audit-sized"}
    assert all(v["median"] > 0 for v in out["request_cpu_ms"].values())
    assert all(0 < ph["product_busy"]["median"] <= 2 for ph in out["phases"].values())
    alone = out["requests_alone"]
    for shape in ("fix", "compliant"):
        assert alone[f"{shape}_sync_per_s"]["median"] > 0 and alone[f"{shape}_sync_share"]["median"] > 0
        assert 0 < alone[f"{shape}_asyncio_bound"]["median"] <= 1.5
    # a fix makes more requests than a compliant event, whichever client makes them
    assert alone["fix_asyncio_cpu_ms"]["median"] > alone["compliant_asyncio_cpu_ms"]["median"]


def test_coldstart_and_report(tmp_path):
    cs = coldstart.run(reps=1, c7n_python=None, log=_quiet)
    assert 0 < cs["product"]["import_s"]["median"] < 30
    results = {"started": report.started(), "quick": True, "machine": report.machine(), "seconds": 1.0,
               "versions": report.versions(None), "coldstart": cs,
               "evaluation": evaluation.run(n=400, reps=1, c7n_python=None, log=_quiet)}
    text = report.render(results)
    assert "import function_app" in text and "product, resources/s" in text
    path = tmp_path / "latest.json"
    report.write_json(results, path)
    doc = json.loads(path.read_text())
    assert doc["table"] and doc["versions"]["azure-core"]
    # what the figures depend on: Azurite (the ceiling), Node, the product's commit
    assert doc["versions"]["azurite"] not in ("", "absent") and doc["versions"]["node"].startswith("v")
    assert doc["versions"]["commit"]
