"""``make demo``: the product's main job on an embedded sample world, printed for a person.

Starts Azurite and the local Azure emulator, syncs metadata/, delivers demo/events.json (every
covered type flipped public, Owner granted at subscription scope and then granted again by a
pipeline until the grant is escalated, a compliant change, a duplicate, a CloudEvents delivery, an
invalid event, a delete) plus the events the guardrail's own fixes emit, then runs the reconciling
sweep once. Before the sweep the dead-letter replay runs on demo/dead-letters.json, a write Event
Grid gave up on (written to Azurite's Blob service as Event Grid dead-letters it): decided late, with
the actor its event names. The main subscription, its Key Vault and its ML workspace are wired as ``infra/`` deploys
them (their system topics deliver to this app); a sandbox subscription added later is not, so its
drifted storage account sent no event: the sweep fixes it and reports the event-coverage gap. Prints
the decisions, the audit rows as stored in Table Storage, the sweep, and what changed in the world.
"""

from __future__ import annotations

import json
from pathlib import Path

from .simulate import load_inputs, run_simulation, writable, write_result

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"
DEMO_SUBSCRIPTION = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
# the deployment's function app (GUARDRAILS_FUNCTION_APP_ID): where the wired topic delivers
DEMO_APP = (f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-guardrails/providers/Microsoft.Web/sites/"
            "func-guardrails-demo")


def _short_id(rid: str) -> str:
    parts = rid.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else rid or "-"


def _fmt(v) -> str:
    if isinstance(v, dict) and "role_name" in v:
        return f"{v['role_name']} for {v['principal_type']} {str(v['principal_id'])[:8]}… at {_short_id(v['scope'])}"
    return json.dumps(v) if not isinstance(v, str) else v


def _property(path: str) -> str:
    """``properties.properties.enableNodePublicIp`` -> ``enableNodePublicIp``: the setting's name."""
    while path.startswith("properties."):
        path = path[len("properties."):]
    return path


def _finding(v: dict) -> str:
    """One finding: rule, the property it is about, before -> after, outcome."""
    if v["property"] == "roleAssignment":           # the value names the assignment itself
        what = _fmt(v["before"])
        after = " -> deleted" if v["outcome"] == "remediated" and v["after"] is None else ""
    else:
        what = f"{_property(v['property'])} {_fmt(v['before'])}"
        after = ""
    if v["after"] is not None:
        after = f" -> {_fmt(v['after'])}"
    return f"{v['rule']}: {what}{after} [{v['outcome']}]"


def _findings(violations: list[dict]) -> list[str]:
    """The findings, one per line; the same one shown once with how many there were (a model
    version archived for three missing tags is three ``required-tags`` findings of one change)."""
    counts: dict[str, int] = {}
    for v in violations:
        text = _finding(v)
        counts[text] = counts.get(text, 0) + 1
    return [t + (f" ({n} findings)" if n > 1 else "") for t, n in counts.items()]


def arm_summary(requests: list[dict]) -> str:
    """ARM requests by method: reads, writes (PATCH, PUT, DELETE: a role assignment removed is a
    write), and any other (POST actions)."""
    arm = [q for q in requests if q["host"] == "management"]
    by: dict[str, int] = {}
    for q in arm:
        by[q["method"]] = by.get(q["method"], 0) + 1
    writes = [(m, by[m]) for m in ("PATCH", "PUT", "DELETE") if by.get(m)]
    other = [(m, n) for m, n in sorted(by.items()) if m not in ("GET", "PATCH", "PUT", "DELETE")]
    text = f"ARM requests: {len(arm)} ({by.get('GET', 0)} GET, {sum(n for _m, n in writes)} writes"
    if writes:
        text += ": " + ", ".join(f"{n} {m}" for m, n in writes)
    if other:
        text += "; " + ", ".join(f"{n} {m}" for m, n in other)
    return text + ")"


def render(result) -> str:
    lines = []
    lines.append(f"{'#':>2}  {'verdict':<10} {'reason':<22} {'resource':<34} {'ms':>7}  what happened")
    lines.append("-" * 120)
    for i, d in enumerate(result.decisions, 1):
        what = _findings(d["violations"]) if d["violations"] else [d["message"]]
        head = f"{i:>2}  {d['verdict']:<10} {d['reason'] or '-':<22} {_short_id(d['resource_id'])[:34]:<34} " \
               f"{d['duration_ms']:>7.1f}  "
        lines.append(head + what[0][:140])
        lines += [" " * len(head) + w[:140] for w in what[1:]]        # one finding per line
    return "\n".join(lines)


def main(args) -> int:
    import os

    from .local.eventgrid_world import wire_estate

    world, events = load_inputs(DEMO_DIR / "world.json", DEMO_DIR / "events.json")
    out = writable(Path(args.out), "--out")         # before the run, not lost at its end
    dead_letters = json.loads((DEMO_DIR / "dead-letters.json").read_text(encoding="utf-8"))
    before = {r["id"]: r for r in world["resources"]}
    wired, wiring = wire_estate([r for r in world["resources"] if r["id"].split("/")[2] == DEMO_SUBSCRIPTION],
                                DEMO_APP)        # as infra/ deploys it for the governed subscription
    world["resources"] += wired
    print(f"guardrails demo: {len(before)} resources, {len(events)} incoming events, {len(dead_letters)} dead-lettered "
          "event, then one reconciling sweep (Azurite + local HTTPS Azure emulator, real SDK clients)\n")
    result = run_simulation(world, events, read_back_audit=True, sweep=True, dead_letters=dead_letters,
                            env={**os.environ, **wiring})
    print("Decisions (one audit row per delivery; the last rows are the guardrail's own writes coming back):")
    print(render(result))
    print("\nAudit rows as stored in Table Storage (GuardrailsAudit, read back by day partition):")
    for row in result.stored_audit:
        compact = {k: row[k] for k in ("time", "event_id", "verdict", "reason", "resource_id", "policies", "notify")}
        compact["actor"] = row["actor"].get("upn") or row["actor"].get("object_id")
        compact["violations"] = [f"{v['policy']}/{v['rule']}:{v['outcome']}" for v in row["violations"]]
        print("  " + json.dumps(compact, ensure_ascii=False))
    rp = result.replay or {}
    lost = {e["id"] for e in dead_letters if isinstance(e, dict)}
    print(f"\nDead-letter replay {rp.get('sweep_id')}: {rp.get('seen', 0)} event(s) Event Grid gave up "
          f"on, handled now: {dict(sorted((rp.get('verdicts') or {}).items()))}")
    for d in result.decisions:
        if d["event_id"] in lost:
            who = d["actor"].get("upn") or d["actor"].get("object_id") or "-"
            print(f"  {d['event_id']}  {d['verdict']:<10} {_short_id(d['resource_id'])}  changed by {who} at "
                  f"{d['event_time'] or '?'}")
    sw = result.sweep or {}
    print(f"\nReconciling sweep {sw.get('sweep_id')}: {len(sw.get('subscriptions', []))} subscriptions, "
          f"{sw.get('seen', 0)} resources seen, {sw.get('remediated', 0)} remediated, "
          + (f"{sw['requested']} requested (not yet confirmed), " if sw.get("requested") else "")
          + f"{sw.get('open', 0)} left open; "
          f"{sw.get('reads', 0)} ARM reads")
    for cov in sw.get("coverage", []):
        gaps = "; ".join(f"{g['code']}: {g['detail']}" for g in cov.get("gaps", []))
        print(f"  event coverage of {cov['kind']} {_short_id(cov['source']) if cov['kind'] != 'subscription' else cov['source']}: "
              + ("its events reach the guardrails" if cov.get("covered") else f"GAP: {gaps}"))
    print("\nWorld changes made by the guardrail:")
    from .model.resource import get_path
    for r in result.world["resources"]:
        old = before.get(r["id"])
        if old is None:
            continue
        for path in ("properties.publicNetworkAccess", "properties.allowBlobPublicAccess", "properties.adminUserEnabled",
                     "properties.isArchived", "properties.traffic", "properties.authMode"):
            a, b = get_path(old, path, None), get_path(r, path, None)
            if a != b:
                print(f"  {_short_id(r['id']):<40} {path:<36} {_fmt(a)} -> {_fmt(b)}")
    kept = {a["id"].lower() for a in result.world.get("roleAssignments", [])}
    for a in world.get("roleAssignments", []):
        if a["id"].lower() not in kept:
            p = a["properties"]
            print(f"  {_short_id(a['id']):<40} role assignment removed: {p['principalType']} {p['principalId']} "
                  f"at {p['scope']}")
    print("\n" + arm_summary(result.requests))
    write_result(out, json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n", "--out")
    print(f"Full result (decisions, final world, request log): {out}")
    return 0
