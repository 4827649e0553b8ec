"""Review (session 32) of the operator-facing CLI paths: ``simulate`` and ``report``.

Each test fails on the code as reviewed because of the defect its name states:

- ``simulate`` promises exit 2 and one line for a usage or input-file error (README "simulate",
  cli.py docstring), and exit 1 only when a delivery ended ``failed``; a malformed world entry or
  an event whose time does not parse escapes as a Python traceback, exit 1, and no result file;
- ``simulate`` redacts secret values in the result's world unless ``--include-secret-values``,
  but the result's request log carries every value the guardrail wrote to Key Vault;
- ``report``'s shadow-vs-enforced comparison is per event (README), but an event Event Grid
  redelivered after a failed delivery is compared once per delivery;
- ``report --html`` to a path that cannot be written ends in a traceback, not ``error:`` / exit 2.
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid

import pytest

from guardrails import settings as S
from guardrails.cli import main as cli_main
from guardrails.local.emulator import AzureEmulator
from tests import builders as b
from tests.integration.test_safety_rails import SHADOW
from tests.integration.test_secret_guardrail import ACCOUNT, POLICY, VAULT
from tests.integration.test_simulate_cli import _run, _write

pytestmark = pytest.mark.integration


def _tables_env(azurite) -> dict[str, str]:
    """The session's Azurite, a fresh table prefix: the CLI does not start an Azurite of its own."""
    return {S.TABLES_CONNECTION: azurite.connection_string, S.TABLE_PREFIX: "S" + uuid.uuid4().hex[:12]}


# ---- simulate: input errors are exit 2 and one line, never a traceback (exit 1 = a delivery failed) ----
def test_simulate_world_with_a_malformed_secret_bundle_is_a_usage_error_not_a_traceback(tmp_path, azurite):
    # GIVEN a world whose Key Vault secret bundle has no id (the emulator refuses it: ValueError)
    world = {"resources": [b.storage()], "secrets": [{"value": "x", "attributes": {"enabled": True}}]}
    events = [b.write_event(b.storage()["id"])]
    # WHEN simulate runs it
    p = _run("simulate", "--world", _write(tmp_path, "w.json", world), "--events", _write(tmp_path, "e.json", events),
             "--out", str(tmp_path / "r.json"), env=_tables_env(azurite))
    # THEN it is an input-file error: exit 2, one line naming the problem, no traceback
    assert "Traceback" not in p.stderr, p.stderr[-1500:]
    assert p.returncode == 2, (p.returncode, p.stderr[-500:])


def test_simulate_event_whose_time_does_not_parse_does_not_crash_the_run(tmp_path, azurite):
    # GIVEN two events: a good one, then one whose eventTime is not a time
    res = b.storage()
    good = b.write_event(res["id"])
    bad = {**b.write_event(res["id"]), "eventTime": "yesterday"}
    # WHEN simulate runs them
    out = tmp_path / "r.json"
    p = _run("simulate", "--world", _write(tmp_path, "w.json", {"resources": [res]}),
             "--events", _write(tmp_path, "e.json", [good, bad]), "--out", str(out), env=_tables_env(azurite))
    # THEN no traceback, and the run is not lost: either a one-line input error (exit 2) or the
    # result file, with the good event's decision in it
    assert "Traceback" not in p.stderr, p.stderr[-1500:]
    assert p.returncode == 2 or out.exists(), (p.returncode, p.stderr[-500:])
    if p.returncode != 2:
        assert json.loads(out.read_text())["decisions"][0]["verdict"] == "remediated"


# ---- simulate: no secret value in the result unless --include-secret-values ---------------------------


def _bundle(name: str, value: str) -> dict:
    now = int(time.time())
    return {"value": value, "id": f"https://{VAULT}.vault.azure.net/secrets/{name}/{uuid.uuid4().hex}",
            "attributes": {"enabled": True, "created": now - 86400, "updated": now - 86400, "exp": now + 20 * 86400},
            "tags": {}}


def test_simulate_result_carries_no_secret_value_without_include_secret_values(tmp_path, azurite):
    # GIVEN a vault with two secrets near expiry that the secrets policy rotates
    key1, key2 = "A" * 86 + "==", "B" * 86 + "=="
    conn = f"DefaultEndpointsProtocol=https;AccountName=stmlprod;AccountKey={key1};EndpointSuffix=core.windows.net"
    world = {"keyvault_private_access": True,
             "resources": [b.storage(pna="Disabled", blob=False), b.key_vault(pna="Disabled", rbac=True)],
             "secrets": [_bundle("storage-connection", conn), _bundle("api-token", "t" * 48)],
             "storageKeys": {ACCOUNT: [{"keyName": "key1", "value": key1, "creationTime": "2026-01-01T00:00:00Z"},
                                       {"keyName": "key2", "value": key2, "creationTime": "2026-01-01T00:00:00Z"}]}}
    emu = AzureEmulator.from_world(world)          # only to build the vault's events, as a world file's author would
    events = [emu.keyvault_event("Microsoft.KeyVault.SecretNearExpiry", VAULT, n)
              for n in ("storage-connection", "api-token")]
    md = tmp_path / "md"
    md.mkdir()
    (md / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY.format(mode="enforce")))
    out = tmp_path / "r.json"
    # WHEN simulate rotates them, without --include-secret-values
    p = _run("simulate", "--world", _write(tmp_path, "w.json", world), "--events", _write(tmp_path, "e.json", events),
             "--metadata", str(md), "--out", str(out), env=_tables_env(azurite))
    assert p.returncode == 0, p.stderr[-1500:]
    result = json.loads(out.read_text())
    assert [d["verdict"] for d in result["decisions"][:2]] == ["remediated", "remediated"], result["decisions"]
    # the world is redacted, as the flag's help says ...
    assert {s["value"] for s in result["world"]["secrets"]} == {"<redacted>"}
    # THEN ... and so is everything else in the file: no new secret value in the request log either
    written = [q for q in result["requests"] if q["method"] == "PUT" and "/secrets/" in q["path"]]
    assert written, "the rotations wrote new versions"
    leaked = [q["path"] for q in written if isinstance(q.get("body"), dict)
              and q["body"].get("value") not in (None, "<redacted>")]
    assert leaked == [], f"secret values written in clear to the result's request log: {leaked}"
    assert "AccountKey=" not in out.read_text()


# ---- report: shadow vs enforced is per event, not per delivery -----------------------------------------


def test_report_compares_a_redelivered_events_shadow_decision_once(harness, tmp_path, monkeypatch, capsys):
    # GIVEN a shadow version of the storage policy, and one write event whose first delivery's fix is
    # refused (a missing role: failed, Event Grid redelivers) and whose redelivery fixes it
    d = tmp_path / "meta"
    d.mkdir()
    (d / "storage-v2-shadow.yaml").write_text(SHADOW)
    res = b.storage(blob=False)
    h = harness([res], extra_metadata=[d])
    h.emu.add_fault(method="PATCH", path_regex="storageAccounts/", status=403, code="AuthorizationFailed",
                    message="The client does not have authorization to perform action.")
    event = b.write_event(res["id"])
    assert h.deliver(event).verdict == "failed"
    h.emu.clear_faults()
    assert h.deliver(event).verdict == "remediated"
    shadows = [r for r in h.recorder.rows if r.verdict == "shadow"]
    assert {r.event_id for r in shadows} == {event["id"]}          # one event (each delivery judged it again)
    # WHEN the operator runs the report over the audit table
    monkeypatch.setenv(S.TABLES_CONNECTION, h.env[S.TABLES_CONNECTION])
    monkeypatch.setenv(S.TABLE_PREFIX, h.env[S.TABLE_PREFIX])
    capsys.readouterr()
    assert cli_main(["report", "--days", "2", "--json"]) == 0
    shadow = json.loads(capsys.readouterr().out)["shadow"]
    # THEN the one event is compared once (README: "shadow vs enforced per event")
    assert shadow["compared"] + shadow["not_comparable"] == 1, shadow


# ---- report: an --html path that cannot be written is an error line, exit 2 ---------------------------
def test_report_html_to_an_unwritable_path_is_an_error_not_a_traceback(azurite, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(S.TABLES_CONNECTION, azurite.connection_string)
    monkeypatch.setenv(S.TABLE_PREFIX, "R" + uuid.uuid4().hex[:12])
    from guardrails.adapters.tables import Tables
    Tables.from_settings(S.Settings.from_env()).ensure()
    blocker = tmp_path / "report"
    blocker.write_text("a file where the page's directory should be")
    # WHEN the page's directory cannot be made (a file is in the way)
    try:
        rc = cli_main(["report", "--days", "1", "--html", str(blocker / "page.html")])
    except OSError as exc:              # the defect: the OSError escapes main() as a traceback
        pytest.fail(f"report --html raised {type(exc).__name__}: {exc}")
    # THEN one error line and exit 2, as for every other input error of the report
    assert rc == 2
    assert "error:" in capsys.readouterr().err
