"""Dead-letter replay fixes (session 32) on Azurite's Blob service and the local emulator: the ranged
read of a dead-letter blob through azure-storage-blob (an empty blob, one shorter than the range),
and a CloudEvents dead letter still replayed by the gate that reads types as ``handle_event`` does."""

from __future__ import annotations

import uuid

import pytest

from guardrails import settings as S
from guardrails.adapters.deadletters import DeadLetterContainer
from guardrails.local.deadletters import container_client, write_dead_letters
from tests import builders as b
from tests.integration.test_deadletter_replay import _replayer, _states

pytestmark = pytest.mark.integration


@pytest.fixture
def dead(harness, azurite_blob):
    """A harness reading dead letters from its own container on Azurite (as test_deadletter_replay's)."""
    container = "deadletters-" + uuid.uuid4().hex[:12]

    def make(resources):
        h = harness(resources, env={S.DEAD_LETTER_CONNECTION: azurite_blob.connection_string,
                                    S.DEAD_LETTER_CONTAINER: container})
        h.blobs = container_client(azurite_blob.connection_string, container)
        return h
    return make


def test_the_ranged_read_takes_a_short_blob_whole_and_an_empty_one_as_empty(azurite_blob):
    client = container_client(azurite_blob.connection_string, "deadletters-" + uuid.uuid4().hex[:12])
    client.upload_blob("short.json", b'[{"id": "x"}]')
    client.upload_blob("empty.json", b"")
    box = DeadLetterContainer(client)
    # a range past the blob's end: the service answers what the blob has
    assert box.read("short.json") == b'[{"id": "x"}]'
    # a range from 0 of an empty blob is a 416 to the service: read as empty (unreadable), not a failure
    assert box.read("empty.json") == b""
    assert box.read("gone.json") is None


def test_an_empty_dead_letter_blob_is_audited_unreadable_once(dead):
    h = dead([b.storage("stmlempty", pna="Enabled")])
    name = write_dead_letters(h.blobs, [], raw=b"")
    first = _replayer(h).run()
    assert _states(h)[name]["outcome"] == "unreadable" and first.verdicts.get("invalid") == 1
    assert _replayer(h).run().failed == 0


def test_a_cloudevents_dead_letter_with_its_type_alone_is_replayed_with_its_blob_named(dead):
    public = b.storage("stmlcloud", pna="Enabled")
    h = dead([public])
    ev = b.write_event(public["id"])
    cloud = {"specversion": "1.0", "id": ev["id"], "type": ev["eventType"], "source": ev["topic"],
             "subject": ev["subject"], "time": ev["eventTime"], "data": ev["data"]}
    name = write_dead_letters(h.blobs, [cloud])
    _replayer(h).run()
    assert h.resource(public["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    [row] = [r for r in h.stored_rows() if r.event_id == ev["id"]]
    assert row.verdict == "remediated" and row.message.endswith(f" [replayed from dead-letter blob {name}]")
    assert _states(h)[name]["outcome"] == "replayed"
