"""Fixes after the session-32 CLI review (the three items it noticed, and what its fixes rest on),
on Azurite:

- ``breaker``/``escalation`` ``status`` and ``reset`` create no table: a table that is not there
  (a mistyped ``GUARDRAILS_TABLE_PREFIX``) is ``error:`` and exit 2, never a quiet "closed";
- ``simulate``'s audit tee offers every read of the real audit sink (the sweep's repeat-notice
  check ``settled_since`` went missing inside ``simulate``/``demo``);
- ``report --days`` together with ``--since`` is a usage error, not silently ignored;
- ``simulate --out`` that cannot be written is refused before anything runs;
- a world file's bad entry is named by key and index, never echoing a value.
"""

from __future__ import annotations

import inspect
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import settings as S
from guardrails import simulate
from guardrails.adapters.audit_tables import TableAuditSink
from guardrails.adapters.tables import Tables
from guardrails.cli import main as cli_main
from guardrails.model.decision import AuditRow
from tests import builders as b

pytestmark = pytest.mark.integration

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"


def _env(monkeypatch, azurite) -> Tables:
    """The CLI's settings on the session's Azurite, a fresh prefix (no table yet); the Tables of them."""
    for k in [k for k in __import__("os").environ if k.startswith("GUARDRAILS_")]:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv(S.TABLES_CONNECTION, azurite.connection_string)
    monkeypatch.setenv(S.TABLE_PREFIX, "F" + uuid.uuid4().hex[:12])
    return Tables.from_settings(S.Settings.from_env())


def _table_names(tables: Tables) -> set[str]:
    return {t.name for t in tables.service.list_tables() if t.name.startswith(tables.prefix)}


# ---- a. the operator's status/reset create nothing; a missing table is an error ----------------------
@pytest.mark.parametrize("argv", [
    ["breaker", "status", "storage-private", SUB],
    ["breaker", "reset", "storage-private", SUB],
    ["escalation", "status", b.storage()["id"]],
    ["escalation", "reset", b.storage()["id"]],
])
def test_status_and_reset_with_a_mistyped_prefix_create_no_table_and_say_so(argv, azurite, monkeypatch, capsys):
    # GIVEN a table prefix under which nothing was ever deployed (a typo)
    tables = _env(monkeypatch, azurite)
    # WHEN the operator asks for (or resets) a breaker's or an escalation's state
    rc = cli_main(argv)
    # THEN it is an error naming the missing table (exit 2), not "open: false" / "had_state: false" ...
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "does not exist" in err and tables.prefix in err
    # ... and no table was created by a read-only (or reset) command
    assert _table_names(tables) == set()


def test_status_and_reset_read_existing_tables_as_before(azurite, monkeypatch, capsys):
    tables = _env(monkeypatch, azurite)
    tables.ensure()
    assert cli_main(["breaker", "status", "storage-private", SUB]) == 0
    assert json.loads(capsys.readouterr().out)["open"] is False
    assert cli_main(["breaker", "reset", "storage-private", SUB]) == 0
    assert json.loads(capsys.readouterr().out)["had_state"] is False
    assert cli_main(["escalation", "status", b.storage()["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["escalated"] is False


# ---- b. simulate's audit tee answers every read of the real audit sink ---------------------------------
def test_the_simulation_audit_tee_offers_every_method_of_the_table_audit_sink(azurite, monkeypatch):
    tables = _env(monkeypatch, azurite)
    tables.ensure()
    sink = TableAuditSink(tables)
    tee = simulate._RecordingAudit(sink)
    public = {n for n, _f in inspect.getmembers(TableAuditSink, inspect.isfunction) if not n.startswith("_")}
    assert {n for n in public if not callable(getattr(tee, n, None))} == set()
    # the sweep's repeat-notice check (sweep.py: getattr(service.audit, "settled_since", None)) reads
    # the real table through the tee
    rid = b.storage()["id"]
    told = datetime.now(timezone.utc) - timedelta(minutes=1)
    tee.write(AuditRow(event_id=uuid.uuid4().hex, event_type="Guardrails.Sweep", resource_id=rid, verdict="compliant",
                       delivery_id=uuid.uuid4().hex, time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")))
    settled = getattr(tee, "settled_since", None)
    assert settled is not None and settled(rid, told) is True
    assert settled(rid, datetime.now(timezone.utc) + timedelta(minutes=1)) is False


# ---- c. report: --days and --since together are a usage error -----------------------------------------
def test_report_days_with_since_is_a_usage_error_not_silently_ignored(azurite, monkeypatch, capsys):
    tables = _env(monkeypatch, azurite)
    tables.ensure()
    assert cli_main(["report", "--days", "3", "--since", "2026-11-01", "--json"]) == 2
    assert "--days or --since" in capsys.readouterr().err
    # each alone still works (and --days with --until: the N days before it)
    assert cli_main(["report", "--since", "2026-11-01", "--until", "2026-11-03", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["since"] == "2026-11-01T00:00:00Z"
    assert cli_main(["report", "--days", "2", "--until", "2026-11-03", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["since"] == "2026-11-02T00:00:00Z"
    assert cli_main(["report", "--json"]) == 0                       # default: the last 7 days
    period = json.loads(capsys.readouterr().out)
    assert (datetime.fromisoformat(period["until"].replace("Z", "+00:00"))
            - datetime.fromisoformat(period["since"].replace("Z", "+00:00"))).days == 7


# ---- simulate --out: checked before the run ------------------------------------------------------------
def test_simulate_out_that_cannot_be_written_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    world, events = tmp_path / "w.json", tmp_path / "e.json"
    world.write_text(json.dumps({"resources": [b.storage()]}))
    events.write_text(json.dumps([b.write_event(b.storage()["id"])]))
    blocker = tmp_path / "out"
    blocker.write_text("a file where the result's directory should be")

    def run(*_a, **_k):
        pytest.fail("the simulation ran although its result could not be written")

    monkeypatch.setattr(simulate, "run_simulation", run)
    rc = cli_main(["simulate", "--world", str(world), "--events", str(events), "--out", str(blocker / "r.json")])
    assert rc == 2
    assert "cannot write --out" in capsys.readouterr().err


def test_demo_out_that_cannot_be_written_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    from guardrails import demo
    blocker = tmp_path / "out"
    blocker.write_text("a file where the result's directory should be")

    def run(*_a, **_k):
        pytest.fail("the demo ran although its result could not be written")

    monkeypatch.setattr(demo, "run_simulation", run)
    rc = cli_main(["demo", "--out", str(blocker / "demo.json")])
    assert rc == 2
    assert "cannot write --out" in capsys.readouterr().err


# ---- world files: the bad entry named by key and index, no value echoed --------------------------------
SECRET = "s3cr3t-VALUE-never-echoed"


@pytest.mark.parametrize("extra, named", [
    ({"secrets": [{"value": SECRET, "attributes": {"enabled": True}}]}, "secrets[0]"),
    ({"keys": [{"key": "x"}]}, "keys[0]"),
    ({"roleAssignments": [{"properties": {"principalId": "p", "roleDefinitionId": "r"}}]}, "roleAssignments[0]"),
    ({"storageKeys": [{"keyName": "key1", "value": SECRET}]}, "'storageKeys'"),
    ({"storageKeys": {b.storage()["id"]: [{"value": SECRET}]}}, "[0] needs a string 'keyName'"),
    ({"directory": ["g1"]}, "'directory'"),
    ({"lro_seconds": "soon"}, "'lro_seconds'"),
    ({"faults": [{"status": "500"}]}, "faults[0].status"),
    ({"faults": [{"path_regex": "(["}]}, "faults[0].path_regex"),
    ({"keyvault_private_access": "false"}, "'keyvault_private_access'"),
])
def test_a_malformed_world_entry_is_named_by_key_and_index(extra, named, tmp_path):
    world, events = tmp_path / "w.json", tmp_path / "e.json"
    world.write_text(json.dumps({"resources": [b.storage()], **extra}))
    events.write_text("[]")
    with pytest.raises(simulate.UsageError) as exc:
        simulate.load_inputs(world, events)
    assert named in str(exc.value) and str(world) in str(exc.value)
    assert SECRET not in str(exc.value)


def test_the_request_log_keeps_no_key_vault_value():
    """Unit of the redaction the result file gets: data-plane secret and key writes, and an ARM
    ``vaults/secrets`` write; an ARM body's other ``value`` fields (an IP rule) stay."""
    arm_secret = (f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1/secrets/s1")
    log = [
        {"method": "PUT", "path": "/vaults/kv1/secrets/s1", "body": {"value": SECRET, "attributes": {}}},
        {"method": "PUT", "path": "/vaults/kv1/keys/k1", "body": {"key": {"kty": "RSA", "n": "AQ", "d": SECRET}}},
        {"method": "PUT", "path": arm_secret, "body": {"properties": {"value": SECRET}}},
        {"method": "PATCH", "path": b.storage()["id"],
         "body": {"properties": {"networkAcls": {"ipRules": [{"value": "10.0.0.1"}]}}}},
    ]
    out = simulate.redact_requests(json.loads(json.dumps(log)))
    assert SECRET not in json.dumps(out)
    assert out[0]["body"]["value"] == "<redacted>" and out[1]["body"]["key"] == {"kty": "RSA"}
    assert out[3] == log[3]
