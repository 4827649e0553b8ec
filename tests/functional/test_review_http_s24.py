"""Review of the HTTP checks (s24), through the blueprint functions with real
``azure.functions.HttpRequest`` objects over the in-memory stores of ``test_http_checks``:

- an on-demand resource check waits for the resource's lock only within its time budget (64
  stripes are shared by unrelated resources; a holder may be polling a long-running fix), then
  answers 503 ``busy`` with Retry-After, audited ``failed``: it waited without limit;
- a key sent that is not a field (an unknown field) is named in the 400 answer and the audit row
  only when it prints: CR/LF forged lines in the row's message, a bidi override disguised it."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

from tests import builders as b
from tests.functional.test_http_checks import SEED_JOB, request, world  # noqa: F401


def test_a_resource_check_does_not_wait_past_its_budget_for_a_held_lock(world):
    st = b.storage(pna="Enabled")
    w = world([st])
    w.service.settings = dataclasses.replace(w.service.settings, time_budget_seconds=0.3)
    lock = w.service._resource_lock(st["id"])
    holder = threading.Event()

    def hold() -> None:          # another decision of a resource on the same stripe, taking long
        with lock:
            holder.set()
            time.sleep(3.0)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    holder.wait(2)
    t0 = time.monotonic()
    status, body, resp = request("checks/resource", {"resource_id": st["id"]})
    waited = time.monotonic() - t0
    t.join(5)

    assert status == 503 and body["error"]["code"] == "unavailable" and "busy" in body["error"]["message"]
    assert resp.headers.get("Retry-After") == "5"
    assert waited < 2.0, f"waited {waited:.1f} s for a 0.3 s budget"
    row = w.audit.rows[-1]
    assert (row.verdict, row.reason) == ("failed", "busy") and row.resource_id.lower() == st["id"].lower()
    # with the lock free, the same check answers
    status, body, _ = request("checks/resource", {"resource_id": st["id"]})
    assert status == 200 and body["allowed"] is False


def test_an_unknown_key_that_does_not_print_is_not_named(world):
    w = world()
    forged = "x\u202egnp.exe\r\nFAKE-LOG-LINE verdict=compliant"
    status, body, _ = request("checks/job", {**SEED_JOB, forged: 1})

    assert status == 400 and body["error"]["code"] == "unknown_field"
    shown = str(body)
    assert "FAKE-LOG-LINE" not in shown and "\u202e" not in shown and "\r" not in shown
    assert any(d["field"] == "<key not shown>" for d in body["error"]["details"])
    row = w.audit.rows[-1]
    assert row.verdict == "invalid" and "FAKE-LOG-LINE" not in row.message and "\n" not in row.message
    # a printable unknown key is still named, so the caller can fix its request
    status, body, _ = request("checks/job", {**SEED_JOB, "colour": 1})
    assert status == 400 and body["error"]["details"][0]["field"] == "colour"


def test_the_cli_audits_bad_input_as_the_http_api_does(world, capsys):
    """The CLI's docstring and the README promise the same rows: bad input is one ``invalid`` row
    (it printed an error and wrote none); a credential given where a name belongs is not stored."""
    from guardrails.cli import main

    w = world()
    dapi = "dapi" + "0123456789abcdef" * 2
    assert main(["check", "job", "--job-id", "201", "--identity", b.ALICE, "--zone", "bad zone!",
                 "--permission", "x"]) == 2
    assert main(["check", "job", "--job-id", "201", "--identity", b.ALICE, "--zone", "corp",
                 "--permission", "x", "--secret", f"ml-vault/{dapi}"]) == 2
    assert main(["check", "resource", "/subscriptions/x/../y"]) == 2
    err = capsys.readouterr().err
    assert dapi not in err
    rows = [(r.event_type, r.verdict, r.reason) for r in w.audit.rows]
    assert rows == [("Guardrails.CheckJob", "invalid", "invalid_value"),
                    ("Guardrails.CheckJob", "invalid", "invalid_value"),
                    ("Guardrails.CheckResource", "invalid", "invalid_resource_id")], rows
    assert all(dapi not in r.message for r in w.audit.rows)
    # the same zone over HTTP: the same code
    status, body, _ = request("checks/job", {**SEED_JOB, "network_zone": "bad zone!"})
    assert status == 400 and body["error"]["code"] == w.audit.rows[-1].reason == "invalid_value"


def test_a_denied_job_names_what_was_asked_never_what_its_policy_allows(world):
    """Any holder of the function key may ask: the reasons name each broken rule and the value
    asked, never the job's allowed secret references, zones, private endpoints, role or group
    (they mapped where the job's credentials live). The audit row names the policy version."""
    w = world()
    status, body, _ = request("checks/job", {"job_id": 201, "network_zone": "somewhere", "permissions": ["x"],
                                             "secret_references": [{"vault": "aaa", "secret": "b"}], "role": "r"},
                              principal=b.BOB)
    assert status == 200 and body["allowed"] is False
    rules = {r["rule"] for r in body["reasons"]}
    assert {"network-zone", "permissions", "secret-references", "role", "access-group"} <= rules
    told = json.dumps(body)
    for allowed in ("databricks-token", "ml-vault", "pe-databricks", "DataScientist", "ds_team", b.DS_GROUP,
                    "execute_inference"):
        assert allowed not in told, allowed
    assert "'somewhere'" in told and "'x'" in told and "aaa/b" in told
    row = w.audit.rows[-1]
    assert row.verdict == "violation" and row.policies == ["job-201@1"]
