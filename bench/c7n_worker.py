"""Cloud Custodian side of the evaluation benchmark. Runs INSIDE bench/.c7n-venv (c7n +
c7n_azure pin old Azure SDKs), never imports the product.

    bench/.c7n-venv/bin/python bench/c7n_worker.py SPEC.json

SPEC: {"resources": "<path of a JSON array>", "policies": [{"key": "<policy>/<rule>",
"c7n": <one Cloud Custodian policy>}], "types": {"<c7n resource>": "<ARM type>"}}.

Protocol (one JSON object per line): the worker loads c7n, validates and builds every policy,
then prints {"ready": true, "import_s": ..., "versions": {...}}. Each "run" line on stdin makes it
take a fresh copy of the resources (untimed: c7n annotates the resources it matches), then
time, with perf_counter, exactly the unit of work both sides do: split the resources by type
(what each policy's query would return) and run each policy's filters over its type
(``resource_manager.filter_resources``, the code ``custodian run`` executes after the query):
c7n's own output, the violating resources of each rule. Then, timed on its own
(``pairs_seconds``), the (resource id, rule) pairs both sides are compared by. It answers
{"seconds": ..., "pairs_seconds": ..., "violations": [[id, key]]}. "quit" (or EOF) ends it.
"""

from __future__ import annotations

import gc
import json
import sys
import time


def main() -> int:
    t0 = time.perf_counter()
    from c7n.config import Config
    from c7n.policy import Policy
    from c7n.resources import load_resources
    from c7n.schema import generate, validate
    import c7n.version
    import c7n_azure.provider  # noqa: F401  (the Azure provider, as `custodian run` loads it)

    spec = json.loads(open(sys.argv[1], encoding="utf-8").read())
    names = sorted({p["c7n"]["resource"] for p in spec["policies"]})
    load_resources(names)
    import_s = time.perf_counter() - t0

    errors = validate({"policies": [p["c7n"] for p in spec["policies"]]}, generate(names))
    if errors:
        print(json.dumps({"ready": False, "error": "; ".join(str(e)[:300] for e in errors[:3])}), flush=True)
        return 2
    options = Config.empty(region="", output_dir="null://", cache="", account_id="bench")
    policies = []
    for p in spec["policies"]:
        pol = Policy(p["c7n"], options)
        pol.validate()
        policies.append((p["key"], spec["types"][p["c7n"]["resource"]].lower(), pol.resource_manager))
    resources_text = open(spec["resources"], encoding="utf-8").read()

    def versions() -> dict:
        from importlib.metadata import version
        return {"c7n": c7n.version.version, "c7n_azure": version("c7n_azure"),
                "python": sys.version.split()[0]}

    print(json.dumps({"ready": True, "import_s": import_s, "versions": versions(),
                      "policies": len(policies)}), flush=True)

    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd != "run":
            continue
        resources = violations = by_type = matched = None   # the last copy gone first, as on the product side
        resources = json.loads(resources_text)          # fresh, unannotated copy (untimed)
        gc.collect()                                    # same on both sides: no collection of the
        gc.disable()                                    # previous run's garbage inside the timing
        start = time.perf_counter()
        by_type: dict[str, list] = {}
        for r in resources:
            by_type.setdefault(r["type"].lower(), []).append(r)
        found = []
        for key, arm_type, manager in policies:
            found.append((key, manager.filter_resources(by_type.get(arm_type, []))))
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        violations = [(r["id"], key) for key, matched in found for r in matched]
        pairs_seconds = time.perf_counter() - start
        gc.enable()
        found = matched = None
        print(json.dumps({"seconds": seconds, "pairs_seconds": pairs_seconds, "violations": violations,
                          "resources": len(resources)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
