"""1. Evaluation vs Cloud Custodian, same work.

Unit of work on both sides: from N ARM resources (bench.resources.generate), the violating
resources with the violated rules of the baseline (``load_directory(*metadata_dirs())``), each in
its engine's own output; both are then turned into (resource id, rule) pairs, untimed, and the
two sets must be identical in every run.

* product: ``compile_policies`` once (untimed, like c7n's policy load); timed:
  ``CompiledPolicySet.violations_many(resources)``, the reconciling sweep's entry point: one
  generated loop running the same compiled predicates as ``violations``/``evaluate`` (which the
  service calls after its GET, and which also plans the fixes), giving ``(resource, violated
  (policy ref, rule id) pairs)`` for each violating resource;
* Cloud Custodian 0.9.53 / c7n_azure: one c7n policy per (type, rule), value filters expressing the
  same condition (``c7n_policies``), run by ``bench/c7n_worker.py`` inside ``bench/.c7n-venv``,
  which times only the split by type and the filtering (``resource_manager.filter_resources``,
  whose output is each rule's violating resources), not its import.

Also reported (info, no target): both sides with the (resource id, rule) pairs built inside the
timing: the product's ``violation_pairs`` on its own fresh copy, c7n's filtering plus its pairs.

Runs alternate (product, c7n, c7n, product, ...).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench import resources as R
from bench.stats import summary

# the c7n resource that queries each ARM type; ML registries have none in c7n_azure, so the
# generic ARM resource with its resource-type filter stands in (what a c7n user would write)
C7N_RESOURCE = {
    R.STORAGE: "azure.storage",
    R.VAULTS: "azure.keyvault",
    R.ACR: "azure.container-registry",
    R.WORKSPACES: "azure.machine-learning-workspace",
    R.ML_REGISTRIES: "azure.armresource",
}
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


class Mismatch(SystemExit):
    pass


def baseline_policies():
    from guardrails.policy.loader import load_directory
    from guardrails.sync import metadata_dirs

    return load_directory(*metadata_dirs())


def c7n_filters(prop: str, expect: dict, default: Any) -> list[dict]:
    """Cloud Custodian value filters (implicit and) that match exactly the resources violating
    ``expect`` under our documented semantics: strings case-insensitive (``value_type:
    normalize``), a boolean also matches its string spelling, an absent or null property takes
    the catalogue ``default`` (absent publicNetworkAccess is public, so it violates)."""
    from guardrails.policy.operators import split_expect, values_equal

    op, operand = split_expect(expect)
    if op != "equals":
        raise NotImplementedError(f"no c7n translation for operator {op!r} yet")
    filters: list[dict] = []
    if default is not None and values_equal(default, operand):
        # absent/null takes a compliant default: only a present value can violate
        filters.append({"type": "value", "key": prop, "value": "present"})
    if isinstance(operand, bool):
        filters.append({"type": "value", "key": prop, "op": "ne", "value": operand})
        filters.append({"type": "value", "key": prop, "op": "ne", "value": "true" if operand else "false",
                        "value_type": "normalize"})
    elif isinstance(operand, str):
        filters.append({"type": "value", "key": prop, "op": "ne", "value": operand.lower(),
                        "value_type": "normalize"})
    else:
        raise NotImplementedError(f"no c7n translation for operand {operand!r}")
    return filters


def c7n_policies(policies) -> list[dict]:
    """One c7n policy per (covered type, rule) of every baseline policy in force."""
    from guardrails.model.policy import Policy
    from guardrails.model.resource import lookup_type

    out = []
    for p in policies:
        if not isinstance(p, Policy) or p.mode == "off":
            continue                  # role-assignment policies judge no resource properties
        for type_name in p.selector.resource_types:
            rt = lookup_type(type_name)
            if rt is None or rt.name not in C7N_RESOURCE:
                continue              # outside the five benchmarked types (e.g. AML computes)
            if p.selector.subscriptions or p.selector.resource_groups or p.selector.tags or p.exemptions:
                raise NotImplementedError(f"{p.id}: scoped selectors/exemptions are not translated to c7n")
            defaults = {k.lower(): v for k, v in rt.defaults.items()}
            for rule in p.rules:
                filters = c7n_filters(rule.property, dict(rule.expect), defaults.get(rule.property.lower()))
                resource = C7N_RESOURCE[rt.name]
                if resource == "azure.armresource":
                    filters.insert(0, {"type": "resource-type", "values": [rt.name]})
                name = f"{p.id}-{rule.id}-{rt.name.split('/')[-1]}".replace(".", "-")
                out.append({"key": f"{p.id}/{rule.id}", "type": rt.name,
                            "c7n": {"name": name, "resource": resource, "filters": filters}})
    return out


def product_evaluator(policies) -> tuple[Callable[[list[dict]], list[tuple[dict, Any]]],
                                         Callable[[list[dict]], list[tuple[str, tuple[str, str]]]], dict]:
    """The product's unit of work, its pairs form, and the key each of its violations carries
    for each c7n key.

    ``violations_many``: the sweep's filter-only entry point, the same compiled predicates as
    ``evaluate`` (one compile; tests/unit/test_evaluate_fast.py checks they agree) without
    planning the fixes, giving ``(resource, ((policy ref, rule id), ...))`` per violating
    resource; ``violation_pairs`` the same as ``(resource id, (policy ref, rule id))`` per
    violation. Each side reports the rule by a key precomputed at policy load (c7n its
    ``"<policy>/<rule>"`` spec key, the product its ``(ref, rule id)``); the c7n keys are mapped
    onto the product's after the timing."""
    from guardrails.policy.evaluate import compile_policies

    compiled = compile_policies(policies)
    c7n_keys = {f"{p.id}/{rule.id}": (p.ref, rule.id) for p in compiled.policies for rule in p.rules}
    return compiled.violations_many, compiled.violation_pairs, c7n_keys


def pairs_of(found: list[tuple[dict, Any]]) -> set[tuple[str, tuple[str, str]]]:
    """``violations_many``'s output as the (resource id, (policy ref, rule id)) set both sides
    are compared by (untimed). Through JSON, as the worker's results come: nothing of the
    evaluated copy survives it to scatter the next copy's heap."""
    flat = json.loads(json.dumps([(body["id"], key) for body, keys in found for key in keys]))
    return {(rid, tuple(key)) for rid, key in flat}


class C7nWorker:
    """The long-lived c7n process; one ``run()`` = one timed pass over the resources."""

    def __init__(self, python: Path, resources_path: Path, c7n_pols: list[dict]) -> None:
        self._dir = tempfile.mkdtemp(prefix="bench-c7n-")
        spec = {"resources": str(resources_path),
                "policies": [{"key": p["key"], "c7n": p["c7n"]} for p in c7n_pols],
                "types": {p["c7n"]["resource"]: p["type"] for p in c7n_pols}}
        spec_path = Path(self._dir) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        worker = Path(__file__).resolve().parent / "c7n_worker.py"
        # absolute, not resolved: a venv's python is a symlink that must stay inside the venv
        self.proc = subprocess.Popen([os.path.abspath(python), str(worker), str(spec_path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1, cwd=self._dir)
        hello = self._read()
        if not hello.get("ready"):
            self.close()
            raise SystemExit(f"c7n worker failed: {hello.get('error')}")
        self.versions = hello["versions"]
        self.import_s = hello["import_s"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"c7n worker exited ({self.proc.wait()})")
        return json.loads(line)

    def run(self) -> tuple[float, float, list[tuple[str, str]]]:
        """(filtering seconds, seconds to build the pairs after it, the pairs)."""
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        ans = self._read()
        return ans["seconds"], ans["pairs_seconds"], [tuple(v) for v in ans["violations"]]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        import shutil
        shutil.rmtree(self._dir, ignore_errors=True)


def _check_identical(product: set, c7n: set, run: int) -> None:
    if product != c7n:
        only_p = sorted(product - c7n)[:5]
        only_c = sorted(c7n - product)[:5]
        raise Mismatch(f"evaluation run {run}: product and Cloud Custodian disagree: "
                       f"{len(product - c7n)} only in product (e.g. {only_p}), "
                       f"{len(c7n - product)} only in c7n (e.g. {only_c})")


def run(*, n: int = 10_000, reps: int = 15, c7n_python: Path | None = None, seed: int = 20261124,
        log=print) -> dict:
    """Evaluation figures. ``c7n_python=None`` runs the product side only (smoke test)."""
    resources = R.generate(n, seed=seed)
    text = json.dumps(resources)
    policies = baseline_policies()
    evaluate, evaluate_pairs, c7n_keys = product_evaluator(policies)
    pols = c7n_policies(policies)
    by_type: dict[str, int] = {}
    for r in resources:
        by_type[r["type"]] = by_type.get(r["type"], 0) + 1

    worker = None
    tmp = None
    if c7n_python is not None:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        tmp.write(text)
        tmp.close()
        worker = C7nWorker(c7n_python, Path(tmp.name), pols)
    product_s: list[float] = []
    c7n_s: list[float] = []
    product_pairs_s: list[float] = []          # info: pairs built inside the timing, both sides
    c7n_pairs_s: list[float] = []

    def timed(fn: Callable[[list[dict]], Any]) -> tuple[float, Any]:
        # as in the c7n worker: the previous copy and its results are gone before a fresh copy is
        # parsed (untimed), so every run starts from the same heap (a copy parsed around survivors
        # of the last one is scattered, and slower to walk); no collection of the previous run's
        # garbage inside the timing
        fresh = json.loads(text)
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        found = fn(fresh)
        seconds = time.perf_counter() - t0
        gc.enable()
        return seconds, found

    expected: set | None = None
    try:
        # one untimed alternating pair first: each side's one-time set-up (the product builds its
        # generated loop on its first call; c7n resolves its filters) is not a run's figure
        timed(evaluate)
        if worker is not None:
            worker.run()
        for i in range(reps):
            order = ("product", "c7n") if i % 2 == 0 else ("c7n", "product")
            got: dict[str, set] = {}
            for side in order:
                if side == "product":
                    seconds, found = timed(evaluate)
                    product_s.append(seconds)
                    got["product"] = pairs_of(found)
                    found = None                 # nothing pins the copy
                    seconds, pairs = timed(evaluate_pairs)
                    product_pairs_s.append(seconds)
                    if {(rid, tuple(key)) for rid, key in json.loads(json.dumps(pairs))} != got["product"]:
                        raise Mismatch(f"evaluation run {i + 1}: violation_pairs and violations_many disagree")
                    pairs = None
                elif worker is not None:
                    seconds, pairs_seconds, pairs = worker.run()
                    c7n_s.append(seconds)
                    c7n_pairs_s.append(seconds + pairs_seconds)
                    got["c7n"] = {(rid, c7n_keys[key]) for rid, key in pairs}
            if "c7n" in got:
                _check_identical(got["product"], got["c7n"], i + 1)
            if expected is None:
                expected = got["product"]
            elif got["product"] != expected:
                raise Mismatch(f"evaluation run {i + 1}: product result changed between runs")
            log(f"  evaluation run {i + 1}/{reps}: product {n / product_s[-1]:,.0f}/s"
                + (f", c7n {n / c7n_s[-1]:,.0f}/s" if c7n_s else ""))
    finally:
        if worker is not None:
            worker.close()
        if tmp is not None:
            os.unlink(tmp.name)

    assert expected is not None
    violating = {rid for rid, _ in expected}
    # every rule is exercised both ways, so the identical-set check compares each c7n translation
    # on violating and on compliant values (a rule the data never breaks would prove nothing)
    rules_hit = {key for _, key in expected}
    idle = sorted(p["key"] for p in pols if c7n_keys[p["key"]] not in rules_hit)
    if idle:
        raise Mismatch(f"evaluation data: no resource violates {idle}; the comparison would not test them")
    out: dict[str, Any] = {
        "resources": n, "seed": seed, "by_type": by_type, "rules": sorted({p["key"] for p in pols}),
        "violations": len(expected), "violating_resources": len(violating),
        "product": {"seconds": summary(product_s), "per_s": summary(n / s for s in product_s)},
        "product_pairs": {"seconds": summary(product_pairs_s), "per_s": summary(n / s for s in product_pairs_s)},
        "identical": worker is not None,
        "c7n_policies": [p["c7n"] for p in pols],
    }
    if worker is not None:
        out["c7n"] = {"seconds": summary(c7n_s), "per_s": summary(n / s for s in c7n_s),
                      "versions": worker.versions, "worker_import_s": worker.import_s}
        out["c7n_pairs"] = {"seconds": summary(c7n_pairs_s), "per_s": summary(n / s for s in c7n_pairs_s)}
        # ratio per alternating pair, then median/min/max of the pairs
        out["ratio"] = summary(c / p for p, c in zip(product_s, c7n_s))
        out["ratio_pairs"] = summary(c / p for p, c in zip(product_pairs_s, c7n_pairs_s))
    return out
