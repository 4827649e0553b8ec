"""guardrails.deadletter: Event Grid's dead-letter blobs (both schemas, as documented) back into the
events as they were delivered, and what cannot be used named without its content."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from guardrails.deadletter import DELIVERY_FIELDS, blob_name, from_ranges, parse_blob, to_ranges
from guardrails.local.deadletters import dead_letter_items
from guardrails.model.events import parse_envelope
from tests.builders import storage, write_event

NAME = "EVGT-GUARDRAILS-SUB/GUARDRAILS-RESOURCE_EVENTS/2026/11/5/7/0b5c6a1e-1111-4c1e-9f1a-2d3e4f5a6b7c.json"


def test_event_grid_schema_dead_letter_becomes_the_delivered_event_and_its_delivery_record():
    ev = write_event(storage()["id"])
    item = {**ev, "deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30,
            "lastDeliveryOutcome": "Probation", "publishTime": "2026-11-05T07:00:01.1234567Z",
            "lastDeliveryAttemptTime": "2026-11-06T07:00:00.0000000Z", "lastHttpStatusCode": 503}
    parsed = parse_blob(NAME, json.dumps([item]).encode())
    assert not parsed.unreadable and not parsed.problems
    [dl] = parsed.events
    assert dl.envelope == ev                               # exactly what was delivered
    assert (dl.reason, dl.attempts, dl.last_outcome, dl.last_status) == ("MaxDeliveryAttemptsExceeded", 30,
                                                                        "Probation", 503)
    assert dl.publish_time.startswith("2026-11-05T07:00:01") and dl.event_id == ev["id"] and dl.index == 0
    assert parse_envelope(dl.envelope).event_type == "Microsoft.Resources.ResourceWriteSuccess"
    assert parsed.subscription == "guardrails-resource_events"


def test_cloudevents_dead_letter_fields_are_lower_case_and_removed_too():
    ce = {"specversion": "1.0", "id": "ce-1", "source": "/subscriptions/x", "type": "Microsoft.KeyVault.SecretNearExpiry",
          "subject": "api-token", "time": "2026-11-05T07:00:00Z", "data": {"VaultName": "kv"}}
    [item] = dead_letter_items([ce], reason="TimeToLiveExceeded", attempts=7, last_outcome="NotFound")
    assert {"deadletterreason", "deliveryattempts", "lastdeliveryoutcome", "publishtime"} <= item.keys()
    [dl] = parse_blob("A/B/2026/1/1/0/x.json", json.dumps([item]).encode()).events
    assert dl.envelope == ce and (dl.reason, dl.attempts, dl.last_outcome) == ("TimeToLiveExceeded", 7, "NotFound")
    assert parse_envelope(dl.envelope).schema == "cloudevents"


def test_unreadable_blobs_are_named_without_their_content():
    secret = "AccountKey=" + "k" * 40
    for data, needle in ((b"\xff\xfe" + secret.encode(), "not UTF-8"), (secret.encode(), "not JSON"),
                         (json.dumps(secret).encode(), "a JSON str, not an array"),
                         (b"42", "a JSON int")):
        parsed = parse_blob(NAME, data)
        assert parsed.unreadable.startswith(needle) or needle in parsed.unreadable, parsed.unreadable
        assert not parsed.events and secret not in parsed.unreadable and "kkkk" not in parsed.unreadable


def test_items_that_are_not_events_are_kept_for_an_invalid_row_and_named_by_position():
    ev = write_event(storage()["id"])
    parsed = parse_blob(NAME, json.dumps([ev, "AccountKey=abc", 7, None]).encode())
    assert [d.index for d in parsed.events] == [0, 1, 2, 3]
    assert parsed.events[1].envelope == "AccountKey=abc" and parsed.events[1].event_id == ""
    assert parsed.problems == ["item 1 is a JSON str, not an event object", "item 2 is a JSON int, not an event object",
                               "item 3 is a JSON NoneType, not an event object"]
    assert all("abc" not in p for p in parsed.problems)


def test_a_single_object_and_an_empty_array():
    ev = write_event(storage()["id"])
    assert [d.envelope for d in parse_blob(NAME, json.dumps(ev).encode()).events] == [ev]
    empty = parse_blob(NAME, b"[]")
    # no usable content: unreadable, so the replay audits one ``invalid`` row for it
    assert not empty.events and empty.unreadable == "an empty array: no event"


def test_what_json_can_hold_but_python_cannot_read_is_unreadable_not_a_crash():
    assert parse_blob(NAME, b"[" * 100000 + b"]" * 100000).unreadable == "JSON nested too deeply to read"
    assert parse_blob(NAME, b"[" + b"9" * 5000 + b"]").unreadable.startswith("not JSON")
    odd = {"id": "e", "eventType": "t", "deliveryAttempts": "\u00b2", "lastHttpStatusCode": "9" * 5000}
    [dl] = parse_blob(NAME, json.dumps([odd]).encode()).events
    assert (dl.attempts, dl.last_status) == (None, None)


@given(st.sets(st.integers(min_value=0, max_value=3000), max_size=200))
def test_progress_ranges_round_trip(indexes):
    assert from_ranges(to_ranges(indexes)) == indexes


def test_blob_names_as_event_grid_writes_them():
    at = datetime(2026, 3, 4, 5, tzinfo=timezone.utc)
    name = blob_name("evgt-guardrails-sub1", "guardrails-keyvault_events", at.year, at.month, at.day, at.hour, "g")
    assert name == "EVGT-GUARDRAILS-SUB1/GUARDRAILS-KEYVAULT_EVENTS/2026/3/4/5/g.json"
    assert parse_blob(name, b"[]").subscription == "guardrails-keyvault_events"
    assert parse_blob("no-subscription-path.json", b"[]").subscription == ""


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_any_json_never_raises_and_never_keeps_a_delivery_field(doc):
    parsed = parse_blob(NAME, json.dumps(doc).encode())
    for dl in parsed.events:
        if isinstance(dl.envelope, dict):
            assert not {k.lower() for k in dl.envelope} & DELIVERY_FIELDS
    assert bool(parsed.unreadable) != bool(parsed.events or parsed.problems)
