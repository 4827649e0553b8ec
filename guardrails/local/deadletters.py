"""Dead letters written the way Event Grid writes them (tests and the demo): a blob per batch in the
dead-letter container, named ``<TOPIC>/<EVENT SUBSCRIPTION>/<y>/<m>/<d>/<h>/<guid>.json``, holding
the events with Event Grid's delivery fields added (``guardrails.deadletter`` documents the format).
Written to Azurite's Blob service through the real ``azure-storage-blob`` client."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

from ..deadletter import DELETES_SUBSCRIPTION, KEYVAULT_SUBSCRIPTION, RESOURCE_SUBSCRIPTION, blob_name, deliverable_types


def dead_letter_items(events: Iterable[Any], *, reason: str = "MaxDeliveryAttemptsExceeded", attempts: int = 30,
                      last_outcome: str = "TimedOut", last_status: int | None = None,
                      published: datetime | None = None) -> list[Any]:
    """``events`` as Event Grid dead-letters them (CloudEvents get the lower-case field names);
    an item that is not an object is kept as it is."""
    when = (published or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out: list[Any] = []
    for ev in events:
        if not isinstance(ev, dict):
            out.append(ev)
            continue
        fields = {"deadLetterReason": reason, "deliveryAttempts": attempts, "lastDeliveryOutcome": last_outcome,
                  "publishTime": when, "lastDeliveryAttemptTime": when}
        if last_status is not None:
            fields["lastHttpStatusCode"] = last_status
        if "specversion" in ev:
            fields = {k.lower(): v for k, v in fields.items() if k != "lastDeliveryAttemptTime"}
        out.append({**ev, **fields})
    return out


def container_client(connection: str, container: str):
    """A ``ContainerClient`` on Azurite (the container created if missing)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(connection, container)
    try:
        client.create_container()
    except ResourceExistsError:
        pass
    return client


def subscription_for(events: Iterable[Any]) -> str:
    """The deployed event subscription that delivers ``events`` (by the first event object's type: a
    blob is one subscription's batch): the Key Vault one, the deletions' one, else the resource one."""
    for ev in events:
        if isinstance(ev, dict):
            etype = str(ev.get("eventType", ev.get("type", ""))).lower()
            for sub in (KEYVAULT_SUBSCRIPTION, DELETES_SUBSCRIPTION):
                if etype in deliverable_types()[sub]:
                    return sub
            break
    return RESOURCE_SUBSCRIPTION


def write_dead_letters(client, events: Iterable[Any], *, topic: str = "EVGT-GUARDRAILS",
                       subscription: str | None = None, when: datetime | None = None,
                       raw: bytes | None = None, **fields: Any) -> str:
    """One dead-letter blob of ``events`` (or exactly ``raw`` bytes); returns its name.
    ``subscription`` None: the one infra deploys for the events (``subscription_for``)."""
    events = list(events)
    at = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    name = blob_name(topic, subscription or subscription_for(events), at.year, at.month, at.day, at.hour,
                     str(uuid.uuid4()))
    data = raw if raw is not None else json.dumps(dead_letter_items(events, published=at, **fields)).encode("utf-8")
    client.upload_blob(name, data, overwrite=False)
    return name


__all__ = ["container_client", "dead_letter_items", "subscription_for", "write_dead_letters"]
