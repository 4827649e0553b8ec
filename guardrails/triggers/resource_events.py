"""Event Grid trigger for ARM resource events (subscription or resource-group system topic).

Accepts both the Event Grid schema and CloudEvents 1.0: the worker hands us either a
``func.EventGridEvent`` or a ``func.CloudEvent``; both become the plain envelope dict the service
parses. The function returns normally for every decided event (including ``invalid``: a retry
cannot fix bad input) and raises only when Event Grid should redeliver.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from ..bootstrap import get_service

bp = func.Blueprint()


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def event_to_envelope(event: Any) -> dict[str, Any]:
    """Rebuild the delivered envelope from the worker's event object."""
    if isinstance(event, func.CloudEvent):
        return {"specversion": event.specversion, "id": event.id, "source": event.source,
                "type": event.type, "time": _iso(event.time), "subject": event.subject,
                "data": event.get_json()}
    return {"id": event.id, "topic": event.topic, "subject": event.subject, "eventType": event.event_type,
            "eventTime": _iso(event.event_time), "dataVersion": event.data_version, "data": event.get_json()}


@bp.function_name("resource_events")
@bp.event_grid_trigger(arg_name="event")
def resource_events(event: func.EventGridEvent) -> None:
    get_service().handle_event(event_to_envelope(event))
