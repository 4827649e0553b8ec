"""Review of the dead-letter replay (session 32), on Azurite (Table + Blob) and the local emulator:
defects proved by failing tests."""

from __future__ import annotations

import json
import textwrap
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from guardrails.local.deadletters import write_dead_letters
from tests import builders as b
from tests.integration.test_deadletter_replay import dead  # noqa: F401  (the harness reading its own container)
from tests.integration.test_review_deadletter_s25 import _replayer, _states
from tests.integration.test_secret_exposure_and_hygiene import _exposure, _keys
from tests.integration.test_secret_guardrail import ACCOUNT, POLICY, VAULT, _bundle, planted  # noqa: F401

pytestmark = pytest.mark.integration


def _secrets_world(planted):
    return {"keyvault_private_access": True,
            "secrets": [_bundle("storage-connection", planted["conn"]), _bundle("api-token", planted["api"]),
                        _bundle("databricks-token", planted["dbx"])],
            "keys": [],
            "storageKeys": {ACCOUNT: [{"keyName": "key1", "value": planted["key1"], "creationTime": "2026-01-01T00:00:00Z"},
                                      {"keyName": "key2", "value": planted["key2"], "creationTime": "2026-01-01T00:00:00Z"}]}}


def test_a_forged_exposure_wearing_a_deliverable_event_type_next_to_its_cloudevents_type_rotates_nothing(
        dead, tmp_path, planted):
    """The gate (``deadletter.undeliverable_events`` -> ``DeadLetter.event_type``) reads ``eventType``
    first; ``handle_event`` (``model.events.parse_envelope``) reads ``type`` whenever ``specversion`` is
    present. A blob under GUARDRAILS-KEYVAULT-EVENTS whose item carries both a Key Vault ``eventType``
    and ``type: Guardrails.SecretExposed`` passes the gate as a Key Vault event and is handled as an
    exposure: the storage account's key is regenerated. README: only the event types the subscription
    delivers are replayed, never a ``Guardrails.*`` type."""
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY.format(mode="enforce")))
    h = dead([b.storage(pna="Disabled", blob=False), b.key_vault(pna="Disabled", rbac=True)],
             world=_secrets_world(planted), extra_metadata=[d])
    before = _keys(h)
    forged = {**_exposure("storage-connection", event_id=str(uuid.uuid4())),
              "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",      # what the gate reads
              "specversion": "1.0", "type": "Guardrails.SecretExposed",        # what handle_event reads
              "source": f"/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{VAULT}",
              "time": "2026-11-24T10:00:00Z"}
    name = write_dead_letters(h.blobs, [forged], topic="EVGT-GUARDRAILS-KV-ML-PROD",
                              subscription="GUARDRAILS-KEYVAULT-EVENTS")
    h.emu.clear_requests()

    _replayer(h).run()

    # nothing rotated, no exposure row: the blob is one rejection, as a plain Guardrails.* item is
    assert not [r for r in h.stored_rows() if r.event_type == "Guardrails.SecretExposed"]
    assert _keys(h) == before
    assert _states(h)[name]["outcome"] == "rejected"


def _refuse_upserts(monkeypatch, refuse, *, status=503, times=None):
    """Table Storage answering ``upsert_entity`` with an HTTP error for the entities ``refuse``
    picks (``times``: that many, then as before): an SDK error, simulated at the SDK's method."""
    from azure.core.exceptions import HttpResponseError
    from azure.data.tables import TableClient

    real = TableClient.upsert_entity
    left = {"n": times}

    def upsert(self, entity, *a, **kw):
        if refuse(entity) and (left["n"] is None or left["n"] > 0):
            if left["n"] is not None:
                left["n"] -= 1
            err = HttpResponseError(message=f"simulated {status}")
            err.status_code = status
            raise err
        return real(self, entity, *a, **kw)
    monkeypatch.setattr(TableClient, "upsert_entity", upsert)


def test_a_run_stopped_by_a_failed_state_write_is_not_reported_as_a_clean_run(dead, monkeypatch, capsys):
    """``_Stop`` raised by ``_store`` around a blob's state save (``_save``, ``save``) reaches
    ``_run``'s handler, which counts an error only for a ``StoreError``: the run stops half way, the
    summary row says ``failed: 0`` with no error, and ``deadletter replay`` exits 0 ("nothing failed")."""
    from guardrails.cli import main

    first, second = b.storage("stmlstopa", pna="Enabled"), b.storage("stmlstopb", pna="Enabled")
    h = dead([first, second])
    for k, v in h.env.items():
        monkeypatch.setenv(k, v)
    write_dead_letters(h.blobs, [b.write_event(first["id"])])
    write_dead_letters(h.blobs, [b.write_event(second["id"])])
    # one write of a blob's replay state refused (a 503 after the SDK's own retries); the summary row is written
    _refuse_upserts(monkeypatch, lambda e: e.get("PartitionKey") == "deadletter", times=1)

    code = main(["deadletter", "replay", "--json"])
    summary = json.loads(capsys.readouterr().out)

    # the run stopped after the first blob it replayed: the other is still open
    assert sorted(h.resource(r["id"])["properties"]["publicNetworkAccess"] for r in (first, second)) == [
        "Disabled", "Enabled"]
    assert summary["failed"] >= 1 and summary["errors"], summary
    assert code == 1


def test_one_event_table_storage_refuses_does_not_hold_back_every_newer_blob_for_ever(dead, monkeypatch):
    """A ``StoreError`` out of ``handle_event`` (other than ``IdempotencyError``) stops the whole run
    and is never put on the event's give-up clock. When Table Storage refuses something of one event
    alone (here its audit row; likewise "pending fix record too large", a breaker or escalation row
    that keeps conflicting) every run stops at that event, oldest blob first, so no newer blob is ever
    replayed and the event is never given up. README: an event whose handling raises is retried on
    later runs "while the blob's other events go on … so newer blobs are not held up"; given up after
    24 h and at least 3 tries."""
    fine, later_res = b.storage("stmlpoison", pna="Disabled", blob=False), b.storage("stmlstarved", pna="Enabled")
    h = dead([fine, later_res])
    poison = b.write_event(fine["id"])
    old = write_dead_letters(h.blobs, [poison], when=datetime(2026, 1, 1, tzinfo=timezone.utc))
    __import__("time").sleep(1.1)                  # listed after it (last-modified has whole seconds)
    write_dead_letters(h.blobs, [b.write_event(later_res["id"])])
    # Table Storage refuses that one event's audit row (as it refuses a property over 64 KiB)
    _refuse_upserts(monkeypatch, lambda e: e.get("event_id") == poison["id"], status=400)

    for later in (timedelta(0), timedelta(hours=25), timedelta(hours=50), timedelta(hours=75)):
        _replayer(h, later=later).run()

    assert h.resource(later_res["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    assert _states(h)[old]["outcome"] == "gave_up"


def test_deadletter_replay_with_a_blob_name_replays_that_blob_or_nothing(dead, monkeypatch):
    """``deadletter replay BLOB`` is accepted (the positional is ``retry``'s) and silently ignored:
    every pending blob is replayed, fixes made, exit 0: an operator who meant one blob (or mistyped
    it) changes resources they did not ask for."""
    from guardrails.cli import main

    res = b.storage("stmlother", pna="Enabled")
    h = dead([res])
    for k, v in h.env.items():
        monkeypatch.setenv(k, v)
    write_dead_letters(h.blobs, [b.write_event(res["id"])])

    code = main(["deadletter", "replay", "EVGT-GUARDRAILS/GUARDRAILS-RESOURCE-EVENTS/2026/1/1/0/no-such.json"])

    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"
    assert code != 0


def test_the_audit_row_of_a_replayed_event_says_it_was_replayed_from_a_dead_letter(dead):
    """A replayed event's audit row is indistinguishable from a live delivery's: nothing in it names
    the dead-letter blob, the replay run or the dead-letter reason (only the replay state in
    TimerState, which the lifecycle drops after 90 days, joins them by delivery id)."""
    res = b.storage("stmlmarked", pna="Enabled")
    h = dead([res])
    ev = b.write_event(res["id"])
    name = write_dead_letters(h.blobs, [ev])

    _replayer(h).run()

    [row] = [r for r in h.stored_rows() if r.event_id == ev["id"]]
    assert row.verdict == "remediated"
    text = json.dumps(row.to_dict()).lower()
    assert name.lower() in text or any(w in text for w in ("dead-letter", "dead letter", "deadletter", "replay"))


def test_a_blob_grown_after_the_listing_is_not_downloaded_whole(dead):
    """The size limit is checked on the listing's size only; ``DeadLetterContainer.read`` then
    ``readall()``s whatever the blob holds by the time it is read (a run reads blobs for up to 540 s
    after listing them). Anyone with blob write on the container (README: Event Grid is not its only
    writer) can overwrite a small blob after the listing with one of any size: the worker, which also
    serves live deliveries, holds it all in memory before ``parse_blob`` calls it unreadable."""
    from guardrails.deadletter import MAX_BLOB_BYTES

    res = b.storage("stmlgrown", pna="Enabled")
    h = dead([res])
    name = write_dead_letters(h.blobs, [b.write_event(res["id"])])
    replayer = _replayer(h)
    real_list, real_read = replayer.container.list, replayer.container.read
    read_sizes = []

    def listing():
        yield from real_list()
        # after the run has listed it, its content is replaced by more than a dead letter can hold
        h.blobs.upload_blob(name, b"[" + b" " * (MAX_BLOB_BYTES + (1 << 20)) + b"]", overwrite=True)

    def read(blob):
        data = real_read(blob)
        read_sizes.append(len(data or b""))
        return data
    replayer.container.list, replayer.container.read = listing, read

    replayer.run()

    assert _states(h)[name]["outcome"] == "unreadable"
    assert read_sizes and max(read_sizes) <= MAX_BLOB_BYTES + 1, read_sizes
