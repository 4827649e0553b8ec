"""Event Grid events of a Key Vault system topic, as delivered (see ``/work/shared/azure-samples/keyvault``).

Event Grid schema: ``topic`` = the vault's ARM id, ``subject`` = the bare object name (the vault name
for ``VaultAccessPolicyChanged``), ``data`` = ``{"Id", "VaultName", "ObjectType", "ObjectName",
"Version", "NBF", "EXP"}`` with ``NBF``/``EXP`` as epoch-second numbers or null (real deliveries;
the docs' sample has strings), ``dataVersion`` ``"1"``. No caller identity: Key Vault events have
none. :func:`to_cloud_event` gives the CloudEvents 1.0 form of the same event.
"""

from __future__ import annotations

import uuid
from typing import Any

from guardrails.local.arm_emulator_events import event_time

PREFIX = "Microsoft.KeyVault."
# short event type -> ObjectType in data
EVENT_OBJECT_TYPES: dict[str, str] = {
    "SecretNewVersionCreated": "Secret", "SecretNearExpiry": "Secret", "SecretExpired": "Secret",
    "KeyNewVersionCreated": "Key", "KeyNearExpiry": "Key", "KeyExpired": "Key",
    "CertificateNewVersionCreated": "Certificate", "CertificateNearExpiry": "Certificate",
    "CertificateExpired": "Certificate",
    "VaultAccessPolicyChanged": "Vault",
}


def short_event_type(event_type: str) -> str:
    """``SecretNearExpiry`` for ``SecretNearExpiry`` or ``Microsoft.KeyVault.SecretNearExpiry``."""
    short = event_type[len(PREFIX):] if event_type.lower().startswith(PREFIX.lower()) else event_type
    match = next((k for k in EVENT_OBJECT_TYPES if k.lower() == short.lower()), None)
    if match is None:
        raise ValueError(f"unknown Key Vault event type {event_type!r}; known: {sorted(EVENT_OBJECT_TYPES)}")
    return match


def vault_arm_id(subscription_id: str, resource_group: str, vault: str) -> str:
    return (f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/Microsoft.KeyVault/vaults/{vault}")


def keyvault_event(event_type: str, *, topic: str, vault: str, object_name: str | None, object_id: str,
                   version: str | None, nbf: int | None, exp: int | None) -> dict[str, Any]:
    """One Event Grid-schema event. ``object_id`` is the ``Id`` in data: the object's versioned URL in
    the real vault form (``https://<vault>.vault.azure.net/secrets/<name>/<version>``), or the vault
    URL for ``VaultAccessPolicyChanged``."""
    short = short_event_type(event_type)
    object_type = EVENT_OBJECT_TYPES[short]
    name = vault if object_type == "Vault" else object_name
    if not name:
        raise ValueError(f"{short} needs an object name")
    return {
        "id": str(uuid.uuid4()),
        "topic": topic,
        "subject": name,
        "eventType": PREFIX + short,
        "eventTime": event_time(),
        "data": {
            "Id": object_id,
            "VaultName": vault,
            "ObjectType": object_type,
            "ObjectName": name,
            "Version": version,
            "NBF": nbf,
            "EXP": exp,
        },
        "dataVersion": "1",
        "metadataVersion": "1",
    }


def to_cloud_event(event: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvents 1.0 schema of an Event Grid-schema event (``source`` = the topic)."""
    return {"source": event["topic"], "subject": event["subject"], "type": event["eventType"],
            "time": event["eventTime"], "id": event["id"], "data": dict(event["data"]), "specversion": "1.0"}
