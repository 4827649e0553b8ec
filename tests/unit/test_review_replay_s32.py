"""Review of the dead-letter replay (session 32), pure parts: the gate that decides which events of a
dead-letter blob may be replayed must read an event's type as ``handle_event`` will."""

from __future__ import annotations

import json

import pytest

from guardrails.deadletter import parse_blob, undeliverable_events
from guardrails.model.events import parse_envelope

KV = "EVGT-GUARDRAILS-KVPROD/GUARDRAILS-KEYVAULT-EVENTS/2026/11/25/9/6c1b.json"
RES = "EVGT-GUARDRAILS-0000/GUARDRAILS-RESOURCE-EVENTS/2026/11/25/9/6c1b.json"


@pytest.mark.parametrize("name, deliverable, spec_key", [
    (KV, "Microsoft.KeyVault.SecretNewVersionCreated", "specversion"),
    (RES, "Microsoft.Resources.ResourceWriteSuccess", "specversion"),
    (KV, "Microsoft.KeyVault.SecretNearExpiry", "specVersion"),
])
def test_an_item_whose_two_type_fields_disagree_is_judged_by_the_type_it_is_handled_as(name, deliverable, spec_key):
    """GIVEN an item carrying a deliverable ``eventType`` and, beside it, CloudEvents' ``specversion``
    with ``type: Guardrails.SecretExposed`` (Event Grid never writes both)
    WHEN the gate judges the blob
    THEN it is rejected: ``handle_event`` parses it as the ``Guardrails.*`` type, which no guardrails
    event subscription delivers (README: "never a ``Guardrails.*`` type")."""
    item = {"id": "e1", "eventType": deliverable, "subject": "x", "eventTime": "2026-11-25T09:00:00Z",
            "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
            spec_key: "1.0", "type": "Guardrails.SecretExposed", "source": "/x", "time": "2026-11-25T09:00:00Z",
            "data": {"VaultName": "kv", "ObjectName": "storage-connection"}, "deadLetterReason": "x"}
    parsed = parse_blob(name, json.dumps([item]).encode())
    assert parse_envelope(parsed.events[0].envelope).event_type == "Guardrails.SecretExposed"   # how it is handled
    assert undeliverable_events(parsed) != ""
