"""`python -m guardrails simulate` as other teams call it: files in, result file out, exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import builders as b

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAILS_")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "guardrails", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=120)


def _write(tmp_path, name, obj) -> str:
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return str(p)


def test_simulate_fixes_the_world_and_delivers_the_guardrails_own_events(tmp_path):
    res = [b.storage(), b.workspace(), b.storage(name="stok", pna="Disabled", blob=False)]
    events = [b.write_event(r["id"]) for r in res]
    events.append(events[0])                                   # duplicate
    out = tmp_path / "result.json"
    p = _run("simulate", "--world", _write(tmp_path, "w.json", {"resources": res}),
             "--events", _write(tmp_path, "e.json", events), "--out", str(out))
    assert p.returncode == 0, p.stderr
    result = json.loads(out.read_text())
    verdicts = [d["verdict"] for d in result["decisions"]]
    # 4 input deliveries, then the 2 write events the emulator emitted for our own fixes
    assert verdicts == ["remediated", "remediated", "compliant", "duplicate", "ignored", "ignored"]
    assert {d["reason"] for d in result["decisions"][4:]} == {"own_write"}
    world = {r["id"]: r for r in result["world"]["resources"]}
    assert world[res[0]["id"]]["properties"]["publicNetworkAccess"] == "Disabled"
    assert world[res[1]["id"]]["properties"]["publicNetworkAccess"] == "Disabled"
    assert {"method", "host", "path", "query", "status", "caller", "body"} <= set(result["requests"][0])
    for d in result["decisions"]:
        assert set(d) >= {"event_id", "event_type", "resource_id", "verdict", "reason", "message", "violations",
                          "notify", "actor", "correlation_id", "duration_ms", "time"}


def test_simulate_exits_1_when_a_delivery_fails(tmp_path):
    res = b.storage()
    world = {"resources": [res], "faults": [{"method": "PATCH", "path_regex": ".*", "status": 403, "times": None}]}
    out = tmp_path / "r.json"
    p = _run("simulate", "--world", _write(tmp_path, "w.json", world),
             "--events", _write(tmp_path, "e.json", [b.write_event(res["id"])]), "--out", str(out))
    assert p.returncode == 1, p.stderr
    (d,) = json.loads(out.read_text())["decisions"]
    assert d["verdict"] == "failed" and d["violations"][0]["outcome"] == "failed"


@pytest.mark.parametrize("content, needle", [
    ("not json at all", "not JSON"),
    ('{"id": 1}', "JSON array"),
])
def test_simulate_usage_errors_exit_2_with_one_line(tmp_path, content, needle):
    ev = tmp_path / "e.json"
    ev.write_text(content)
    p = _run("simulate", "--world", _write(tmp_path, "w.json", {"resources": []}), "--events", str(ev),
             "--out", str(tmp_path / "r.json"))
    assert p.returncode == 2
    assert needle in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr


def test_simulate_missing_file_is_a_usage_error(tmp_path):
    p = _run("simulate", "--world", str(tmp_path / "nope.json"), "--events", str(tmp_path / "nope2.json"),
             "--out", str(tmp_path / "r.json"))
    assert p.returncode == 2 and "cannot read world file" in p.stderr


def test_demo_runs_and_shows_decisions(tmp_path):
    p = _run("demo", "--out", str(tmp_path / "demo.json"))
    assert p.returncode == 0, p.stderr
    for needle in ("remediated", "duplicate", "invalid", "own_write", "violation", "flip_flop", "Audit rows as stored"):
        assert needle in p.stdout
    # the sweep: the sandbox subscription's drift, which no event reported, fixed; its missing topic reported
    assert re.search(r"storageAccounts/stmlsandbox +properties\.publicNetworkAccess +Enabled -> Disabled", p.stdout)
    assert ("event coverage of subscription /subscriptions/9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d: GAP: no_system_topic"
            in p.stdout)
    # the dead-lettered write: decided late, with the actor its event names
    assert re.search(r"0d6c1c3a-5b1e-4f7a-9c2d-0000000000d1 +remediated storageAccounts/stmltraining +changed by "
                     r"bob@contoso\.com", p.stdout)
    assert re.search(r"storageAccounts/stmltraining +properties\.publicNetworkAccess +Enabled -> Disabled", p.stdout)
    for covered in ("subscription /subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31", "vault vaults/kv-ml-prod",
                    "workspace workspaces/mlw-prod"):
        assert f"event coverage of {covered}: its events reach the guardrails" in p.stdout
