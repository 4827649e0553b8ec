"""Dead-letter review (session 25) on Azurite + the emulator: blobs in the dead-letter container that
Event Grid cannot have written for a guardrails event subscription are audited and never acted on
(a forged ``Guardrails.SecretExposed`` regenerated storage keys; a forged deletion hid an open
violation from the compliance report); ``deadletter retry`` keeps the events already handled; the
gone blobs' states go in entity-group transactions; the local dead-letter writer names blobs as
Event Grid does for the deployed subscriptions, so the demo's dead letters are replayed."""

from __future__ import annotations

import textwrap
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.adapters.sweep_tables import TableTimerState
from guardrails.local.deadletters import container_client, write_dead_letters
from guardrails.ratelimit import FakeClock
from guardrails.replay import GIVE_UP_AFTER, MIN_ATTEMPTS
from guardrails.report import build_report
from tests import builders as b
from tests.integration.test_deadletter_replay import dead  # noqa: F401  (the harness reading its own container)
from tests.integration.test_secret_exposure_and_hygiene import _exposure, _keys
from tests.integration.test_secret_guardrail import ACCOUNT, POLICY, VAULT, _bundle, planted  # noqa: F401

pytestmark = pytest.mark.integration
REJECTED = "not_deliverable_here"


def _replayer(h, *, later=None):
    settings = S.Settings.from_env(h.env)
    sweeper = bootstrap.build_sweeper(settings, clock=FakeClock(), sleep=lambda s: None)
    replayer = bootstrap.build_replayer(settings, sweeper=sweeper)
    if later is not None:
        replayer._wall = lambda: datetime.now(timezone.utc) + later
    return replayer


def _states(h) -> dict:
    return TableTimerState(h.tables).deadletter_states()


def test_a_forged_exposure_in_the_dead_letter_container_rotates_nothing(dead, tmp_path, planted):
    # GIVEN a vault and a rotated storage account under an enforcing secrets policy
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY.format(mode="enforce")))
    world = {"keyvault_private_access": True,
             "secrets": [_bundle("storage-connection", planted["conn"]), _bundle("api-token", planted["api"]),
                         _bundle("databricks-token", planted["dbx"])],
             "keys": [],
             "storageKeys": {ACCOUNT: [{"keyName": "key1", "value": planted["key1"], "creationTime": "2026-01-01T00:00:00Z"},
                                       {"keyName": "key2", "value": planted["key2"], "creationTime": "2026-01-01T00:00:00Z"}]}}
    h = dead([b.storage(pna="Disabled", blob=False), b.key_vault(pna="Disabled", rbac=True)], world=world,
             extra_metadata=[d])
    before = _keys(h)
    versions = [v["attributes"]["enabled"] for v in h.emu.secret_versions(VAULT, "storage-connection")]
    # AND an exposure report written into the container by someone other than Event Grid: under a name
    # no guardrails event subscription has, and under the Key Vault subscription's own prefix
    outside = write_dead_letters(h.blobs, [_exposure("storage-connection", event_id=str(uuid.uuid4()))],
                                 topic="ANYTHING", subscription="NOT-OURS")
    inside = write_dead_letters(h.blobs, [_exposure("storage-connection", event_id=str(uuid.uuid4()))],
                                topic="EVGT-GUARDRAILS-KV-ML-PROD", subscription="GUARDRAILS-KEYVAULT-EVENTS")
    h.emu.clear_requests()
    # WHEN the replay runs
    summary = _replayer(h).run()
    # THEN no key is regenerated, no secret version disabled, nothing asked of ARM or the vault
    assert _keys(h) == before
    assert [v["attributes"]["enabled"] for v in h.emu.secret_versions(VAULT, "storage-connection")] == versions
    assert h.writes() == [] and not [r for r in h.stored_rows() if r.event_type == "Guardrails.SecretExposed"]
    # AND each blob is one invalid row under its name, reported, settled
    rows = sorted((r for r in h.stored_rows() if r.event_type == "Guardrails.DeadLetter"), key=lambda r: r.event_id)
    assert sorted((r.verdict, r.reason, r.event_id) for r in rows) == sorted(
        ("invalid", REJECTED, f"deadletter:{n}") for n in (outside, inside))
    assert summary.verdicts == {"invalid": 2} and summary.failed == 2
    assert {n: s["outcome"] for n, s in _states(h).items()} == {outside: "rejected", inside: "rejected"}
    again = _replayer(h).run()
    assert (again.failed, again.verdicts) == (0, {}) and len(
        [r for r in h.stored_rows() if r.event_type == "Guardrails.DeadLetter"]) == 2


def test_a_forged_deletion_does_not_hide_an_open_violation(dead):
    # GIVEN an open violation (its fix refused by ARM)
    acct = b.storage("stmlopen", pna="Enabled")
    h = dead([acct], env={S.TIME_BUDGET_SECONDS: "2"})
    h.emu.add_fault(method="PATCH", path_regex="stmlopen", status=403, times=100)
    assert h.deliver(b.write_event(acct["id"])).verdict == "failed"
    now = datetime.now(timezone.utc)

    def report():
        return build_report(h.stored_rows(), since=now - timedelta(days=1), until=now + timedelta(days=1))
    assert [v.resource_id for v in report().open_violations] == [acct["id"]]
    rg = acct["id"].split("/providers/")[0]
    forged = b.write_event(rg, "Microsoft.Resources/resourceGroups", event_type="Microsoft.Resources.ResourceDeleteSuccess",
                           op="delete")
    forged["eventTime"] = "2099-01-01T00:00:00Z"
    # WHEN it is written outside the deployed subscriptions' prefixes: rejected, nothing in the report moves
    name = write_dead_letters(h.blobs, [forged], topic="X", subscription="Y")
    _replayer(h).run()
    assert [(r.reason, r.event_id) for r in h.stored_rows() if r.verdict == "invalid"] == [(REJECTED, f"deadletter:{name}")]
    assert [v.resource_id for v in report().open_violations] == [acct["id"]] and report().deleted == 0
    # AND under the deletions' own prefix (it may pass there): it ends the resource only as of its row,
    # so the resource decided again after it is back in the report, not hidden until 2099
    write_dead_letters(h.blobs, [{**forged, "id": str(uuid.uuid4())}], topic="EVGT-GUARDRAILS-X")
    _replayer(h).run()
    assert report().open_violations == []                 # as the replayed event says, until a decision
    assert h.deliver(b.write_event(acct["id"])).verdict == "failed"
    assert [v.resource_id for v in report().open_violations] == [acct["id"]] and report().deleted == 0


def test_retry_hands_on_only_the_given_up_events(dead, monkeypatch, capsys):
    from guardrails.cli import main
    flaky, steady = b.storage("stmlflaky", pna="Enabled"), b.storage("stmlsteady", pna="Enabled")
    h = dead([flaky, steady], env={S.TIME_BUDGET_SECONDS: "1"})
    ev, ok = b.write_event(flaky["id"]), b.write_event(steady["id"])
    name = write_dead_letters(h.blobs, [ev, ok])
    h.emu.add_fault(method="GET", path_regex="stmlflaky", status=503)
    _replayer(h).run()
    for attempt in range(2, MIN_ATTEMPTS + 1):          # a day later, the third try gives up
        _replayer(h, later=GIVE_UP_AFTER + timedelta(hours=7) * (attempt - 2)).run()
    assert (_states(h)[name]["outcome"], _states(h)[name]["done"]) == ("gave_up", "1")
    # WHEN the fault is gone and the operator retries the blob
    h.emu._faults.clear()
    for k, v in h.env.items():
        monkeypatch.setenv(k, v)
    assert main(["deadletter", "retry", name]) == 0
    after_retry = _states(h).get(name) or {}
    # THEN the next replay fixes the given-up one and decides the handled one no second time
    again = _replayer(h).run()
    assert [r.verdict for r in h.stored_rows() if r.event_id == ok["id"]] == ["remediated"]     # no duplicate row
    assert again.remediated == 1 and again.seen == 1 and again.verdicts == {"remediated": 1}
    assert h.resource(flaky["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert "1 given-up" in capsys.readouterr().out
    assert (after_retry["outcome"], after_retry["done"], after_retry["abandoned"]) == ("retrying", "1", "")
    st = _states(h)[name]
    assert (st["outcome"], st["done"]) == ("replayed", "0-1")
    assert sorted(e["event_id"] for e in st["events"]) == sorted([ev["id"], ok["id"]])


def test_gone_blobs_states_go_in_transactions_and_a_run_reads_outcomes_only(dead):
    res = b.storage("stmlgone", pna="Enabled")
    h = dead([res])
    state = TableTimerState(h.tables)
    gone = [f"EVGT-X/GUARDRAILS-RESOURCE-EVENTS/2026/8/1/{i % 24}/{uuid.uuid4()}.json" for i in range(250)]
    for n in gone:
        state.set_deadletter_state(n, {"outcome": "replayed", "events": [{"index": 0, "verdict": "compliant"}],
                                       "done": "0"})
    assert set(state.deadletter_outcomes()) == set(gone) and set(state.deadletter_outcomes().values()) == {"replayed"}
    new = write_dead_letters(h.blobs, [b.write_event(res["id"])])
    summary = _replayer(h).run()
    assert summary.remediated == 1 and list(_states(h)) == [new]
    # a transaction meeting a row already gone is done row by row
    more = [f"EVGT-X/GUARDRAILS-RESOURCE-EVENTS/2026/8/2/0/{i}.json" for i in range(5)]
    for n in more:
        state.set_deadletter_state(n, {"outcome": "replayed"})
    state.delete_deadletter_state(more[2])
    state.delete_deadletter_states(more + ["never/there.json"])
    assert state.deadletter_outcomes() == {new: "replayed"} and state.deadletter_state(more[0]) is None
    assert state.deadletter_state(new)["outcome"] == "replayed"


def test_the_local_writer_names_blobs_as_event_grid_does_for_the_deployed_subscriptions(dead):
    """tests and ``make demo`` write their dead letters with it: under the subscription that would
    have delivered them (a name Event Grid allows: hyphens, upper-cased), so the replay takes them."""
    h = dead([])
    vault_event = {"id": "kv-1", "eventType": "Microsoft.KeyVault.SecretNearExpiry", "subject": "api-token",
                   "topic": "/subscriptions/x", "eventTime": "2026-11-25T00:00:00Z", "dataVersion": "1", "data": {}}
    names = [write_dead_letters(h.blobs, [b.write_event(b.storage()["id"])]),
             write_dead_letters(h.blobs, [vault_event]),
             write_dead_letters(h.blobs, [b.write_event(b.storage()["id"], event_type="Microsoft.Resources.ResourceDeleteSuccess",
                                                        op="delete")])]
    assert [n.split("/")[1] for n in names] == ["GUARDRAILS-RESOURCE-EVENTS", "GUARDRAILS-KEYVAULT-EVENTS",
                                                "GUARDRAILS-RESOURCE-EVENTS-DELETES"]
    from guardrails.deadletter import not_deliverable
    assert [not_deliverable(n) for n in names] == ["", "", ""]
    assert {n for n in (x.name for x in h.blobs.list_blobs())} == set(names)

