"""Circuit-breaker review (session 22), on Azurite + the HTTPS emulator with the real SDK clients:
a redelivered event reuses its permit (throttled fixes no longer open the breaker for the whole
subscription), a breaker that refuses notifies, the window's state stays one table property
whatever ``max_actions`` allows, and ``reset`` says whether there was anything to reset."""

from __future__ import annotations

import json

import pytest

from guardrails.adapters.remediation_tables import TIME_BUCKETS, TableBreakerStore
from guardrails.adapters.tables import Tables
from tests import builders as b

pytestmark = pytest.mark.integration

POLICY = b.storage_private_policy(max_actions=3)


def _policy_dir(tmp_path):
    d = tmp_path / "extra"
    d.mkdir()
    (d / "storage-private.yaml").write_text(POLICY)
    return d


def test_a_throttled_fix_redelivered_many_times_takes_one_permit(harness, tmp_path):
    accounts = [b.storage(name=f"stthr{i}", blob=False) for i in range(3)]
    h = harness(accounts, extra_metadata=[_policy_dir(tmp_path)])
    h.emu.add_fault(method="PATCH", path_regex="stthr0", status=429, retry_after=60, times=8)   # past the budget
    event = b.write_event(accounts[0]["id"])
    rows = [h.deliver(event) for _ in range(8)]                 # Event Grid's redeliveries
    assert {r.verdict for r in rows} == {"failed"}
    assert h.deliver(event).verdict == "remediated"             # the ninth gets through
    # two more accounts still fit the breaker of 3: the throttled one counted once
    for a in accounts[1:]:
        assert h.deliver(b.write_event(a["id"])).verdict == "remediated"
    assert [h.resource(a["id"])["properties"]["publicNetworkAccess"] for a in accounts] == ["Disabled"] * 3


def test_an_open_breaker_leaves_the_violation_and_tells_the_owner(harness, tmp_path):
    accounts = [b.storage(name=f"stopen{i}", blob=False) for i in range(4)]
    h = harness(accounts, extra_metadata=[_policy_dir(tmp_path)])
    for a in accounts[:3]:
        assert h.deliver(b.write_event(a["id"])).verdict == "remediated"
    row = h.deliver(b.write_event(accounts[3]["id"]))
    assert (row.verdict, row.reason, row.notify) == ("dry_run", "circuit_open", True)
    assert h.resource(accounts[3]["id"])["properties"]["publicNetworkAccess"] == "Enabled"


def test_the_window_stays_one_property_past_thousands_of_permits(azurite):
    tables = Tables(_service(azurite), "Tbrk" + __import__("uuid").uuid4().hex[:8])
    tables.ensure()
    store = TableBreakerStore(tables)
    n = 2500                                  # ~20 characters each as bare times: 50,000 > 32K
    assert all(store.try_acquire("p", b.SUB, max_actions=100_000, window_seconds=3600, key=f"e{i}")
               for i in range(n))
    store2 = TableBreakerStore(tables)        # another worker: decides from the stored state
    assert store2.try_acquire("p", b.SUB, max_actions=n + 1, window_seconds=3600, key="last")
    assert not store2.try_acquire("p", b.SUB, max_actions=n + 1, window_seconds=3600, key="over")
    entity = tables.table(tables.breakers_name).get_entity(*TableBreakerStore._keys("p", b.SUB))
    assert len(json.loads(entity["buckets"])) <= TIME_BUCKETS and len(entity["buckets"]) < 32_000
    assert sum(c for _f, _l, c in json.loads(entity["buckets"])) == n + 1 and entity["open"] is True
    # ``times`` mirrors each bucket's last time as a bare number: what an earlier release reads
    mirror = json.loads(entity["times"])
    assert len(mirror) == len(json.loads(entity["buckets"])) and all(isinstance(t, float) for t in mirror)
    horizon = __import__("time").time() - 3600
    assert [t for t in mirror if t > horizon] == mirror        # the earlier release's own filter: no TypeError


def test_a_state_written_by_the_earlier_release_is_read(azurite):
    import time
    tables = Tables(_service(azurite), "Tbrk" + __import__("uuid").uuid4().hex[:8])
    tables.ensure()
    pk, rk = TableBreakerStore._keys("p", b.SUB)
    now = time.time()
    tables.table(tables.breakers_name).create_entity({"PartitionKey": pk, "RowKey": rk, "policy": "p",
                                                     "subscription": b.SUB, "open": False, "opened_at": "",
                                                     "times": json.dumps([now - 10, now - 5])})
    store = TableBreakerStore(tables)
    assert store.try_acquire("p", b.SUB, max_actions=3, window_seconds=3600, key="a")
    assert store.try_acquire("p", b.SUB, max_actions=3, window_seconds=3600, key="a")     # same event
    assert not store.try_acquire("p", b.SUB, max_actions=3, window_seconds=3600, key="b")


def test_reset_says_whether_there_was_a_breaker(azurite):
    tables = Tables(_service(azurite), "Tbrk" + __import__("uuid").uuid4().hex[:8])
    tables.ensure()
    store = TableBreakerStore(tables)
    assert store.reset("storage-privat", b.SUB) is False        # mistyped: nothing was open
    store.try_acquire("storage-private", b.SUB, max_actions=1, window_seconds=60, key="x")
    assert store.reset("storage-private", b.SUB) is True
    assert store.reset("storage-private", b.SUB) is False
    from guardrails.adapters.escalations import TableEscalationStore
    assert TableEscalationStore(tables).reset(b.storage()["id"]) is False


def _service(azurite):
    from azure.data.tables import TableServiceClient
    return TableServiceClient.from_connection_string(azurite.connection_string)


def test_operator_commands_reach_an_identity_based_table_endpoint(monkeypatch):
    """``breaker``/``escalation``/``report`` with ``GUARDRAILS_TABLES_ENDPOINT`` (a deployment):
    a credential is built as for ``metadata sync``, not a client without one that cannot sign."""
    from guardrails import cli
    from guardrails.errors import ConfigError
    from guardrails.settings import Settings
    env = {"GUARDRAILS_TABLES_ENDPOINT": "https://stguardrails.table.core.windows.net",
           "GUARDRAILS_CREDENTIAL": "local"}
    settings = Settings.from_env(env)
    with pytest.raises(ConfigError, match="needs an identity"):
        Tables.from_settings(settings)
    tables = cli._tables(settings)
    assert tables.service.credential is not None and tables.service.url.startswith("https://stguardrails.")


def test_reverts_the_breaker_refused_do_not_escalate_the_resource(harness, tmp_path):
    """Flip-flop counts a revert before the breaker is asked; one the breaker refuses was never
    made and is given back: after the reset the resource is fixed, not held as escalated."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    d = tmp_path / "extra"
    d.mkdir()
    (d / "storage-private.yaml").write_text(b.storage_private_policy(max_actions=1))
    first, other = b.storage(name="stfirst", blob=False), b.storage(name="stother", blob=False)
    h = harness([first, other], extra_metadata=[d])
    assert h.deliver(b.write_event(first["id"])).verdict == "remediated"
    rows = [h.deliver(b.write_event(other["id"])) for _ in range(5)]     # five changes, breaker open
    assert [(r.verdict, r.reason) for r in rows] == [("dry_run", "circuit_open")] * 5
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAILS_")}
    env.update(h.env)
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-m", "guardrails", "escalation", "status", other["id"]], cwd=root, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    status = json.loads(p.stdout)
    assert status["escalated"] is False and (status["state"] is None or status["state"]["times"] == [])
    h.service.breakers.reset("storage-private", b.SUB)
    assert h.deliver(b.write_event(other["id"])).verdict == "remediated"
    assert h.resource(other["id"])["properties"]["publicNetworkAccess"] == "Disabled"


def test_an_events_own_permit_stands_on_every_worker_after_the_breaker_opens(azurite):
    """Diff review: the worker that took event E1's permit honoured a redelivery of E1 from memory,
    another worker refused it from the table: the answer depended on the instance. Both honour it
    now, and neither lets a new event through."""
    tables = Tables(_service(azurite), "Tbrk" + __import__("uuid").uuid4().hex[:8])
    tables.ensure()
    one, two = TableBreakerStore(tables), TableBreakerStore(tables)
    assert one.try_acquire("p", b.SUB, max_actions=1, window_seconds=600, key="E1")
    assert not two.try_acquire("p", b.SUB, max_actions=1, window_seconds=600, key="E2")     # trips it
    assert one.try_acquire("p", b.SUB, max_actions=1, window_seconds=600, key="E1")
    assert two.try_acquire("p", b.SUB, max_actions=1, window_seconds=600, key="E1")
    assert not two.try_acquire("p", b.SUB, max_actions=1, window_seconds=600, key="E3")
    assert not one.try_acquire("p", b.SUB, max_actions=1, window_seconds=600, key="E3")
    assert two.is_open("p", b.SUB)


def test_a_redelivery_refused_by_the_breaker_keeps_the_count_its_first_delivery_took(harness, tmp_path):
    """Diff review: a revert whose read-back disagreed (failed, redelivered) was counted; when the
    breaker refused the redelivery, that count was withdrawn though the revert may have been made.
    Only a count the refused attempt took itself is given back."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    d = tmp_path / "extra"
    d.mkdir()
    (d / "storage-private.yaml").write_text(b.storage_private_policy(max_actions=1))
    res, other = b.storage(name="stkeep", blob=False), b.storage(name="stother2", blob=False)
    h = harness([res, other], extra_metadata=[d])
    h.emu.add_fault(method="PATCH", path_regex="stkeep", status=429, retry_after=60, times=1)
    event = b.write_event(res["id"])
    assert h.deliver(event).verdict == "failed"                       # counted for flip-flop, permit taken
    h.service.breakers.reset("storage-private", b.SUB)
    assert h.deliver(b.write_event(other["id"])).verdict == "remediated"   # the one permit: gone
    h.service.breakers._known.clear()                                  # another worker: decides from the table
    assert h.deliver(event).reason == "circuit_open"                   # its permit went with the reset
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAILS_")}
    env.update(h.env)
    p = subprocess.run([sys.executable, "-m", "guardrails", "escalation", "status", res["id"]],
                       cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=60)
    state = json.loads(p.stdout)["state"]
    assert state is not None and len(state["times"]) == 1 and [k for k, _t in state["events"]] == [event["id"]]
