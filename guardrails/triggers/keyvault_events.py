"""Event Grid trigger for Key Vault system-topic events (and the ``Guardrails.SecretExposed``
custom-topic event), both schemas. Same service, same audit, same idempotency as ARM events."""

from __future__ import annotations

import azure.functions as func

from ..bootstrap import get_service
from .resource_events import event_to_envelope

bp = func.Blueprint()


@bp.function_name("keyvault_events")
@bp.event_grid_trigger(arg_name="event")
def keyvault_events(event: func.EventGridEvent) -> None:
    get_service().handle_event(event_to_envelope(event))
