"""Event Grid wiring as ARM returns it, for the emulator's world (tests, demo, benchmark).

``subscription_wiring`` gives the two resources ``infra/modules/subscription.bicep`` deploys in a
governed subscription: the ``Microsoft.Resources.Subscriptions`` system topic and its event
subscription delivering ``ResourceWriteSuccess`` of the covered operations to ``resource_events``
(GET shapes of api-version 2022-06-15: ``SystemTopics_Get``, ``SystemTopicEventSubscriptions_Get``).
"""

from __future__ import annotations

from typing import Any, Sequence

from guardrails.coverage import TOPIC_TYPE, WRITE_EVENT, destination_for

EVENTS_RG = "rg-guardrails-events"


def topic_id(subscription_id: str, *, rg: str = EVENTS_RG) -> str:
    return (f"/subscriptions/{subscription_id}/resourceGroups/{rg}/providers/Microsoft.EventGrid/"
            f"systemTopics/evgt-guardrails-{subscription_id}")


def system_topic(subscription_id: str, *, rg: str = EVENTS_RG) -> dict[str, Any]:
    tid = topic_id(subscription_id, rg=rg)
    return {"id": tid, "name": tid.rsplit("/", 1)[-1], "type": "Microsoft.EventGrid/systemTopics",
            "location": "global",
            "properties": {"source": f"/subscriptions/{subscription_id}", "topicType": TOPIC_TYPE,
                           "metricResourceId": "00000000-0000-0000-0000-000000000000",
                           "provisioningState": "Succeeded"}}


def event_subscription(subscription_id: str, function_app_id: str, *, operations: Sequence[str] | None = None,
                       rg: str = EVENTS_RG, name: str = "guardrails-resource_events",
                       **properties: Any) -> dict[str, Any]:
    """The deployed event subscription; ``operations`` None: every covered operation.
    ``properties`` override top-level properties (``provisioningState``, ``expirationTimeUtc`` …)."""
    if operations is None:
        from guardrails.permissions import covered_operations
        operations = covered_operations()
    tid = topic_id(subscription_id, rg=rg)
    props: dict[str, Any] = {
        "topic": tid, "provisioningState": "Succeeded", "eventDeliverySchema": "EventGridSchema",
        "destination": {"endpointType": "AzureFunction",
                        "properties": {"resourceId": destination_for(function_app_id), "maxEventsPerBatch": 1,
                                       "preferredBatchSizeInKilobytes": 64}},
        "filter": {"includedEventTypes": [WRITE_EVENT], "enableAdvancedFilteringOnArrays": True,
                   "advancedFilters": [{"operatorType": "StringIn", "key": "data.operationName",
                                        "values": list(operations)}]},
        "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
    }
    props.update(properties)
    return {"id": f"{tid}/eventSubscriptions/{name}", "name": name,
            "type": "Microsoft.EventGrid/systemTopics/eventSubscriptions", "properties": props}


def subscription_wiring(subscription_id: str, function_app_id: str, **kw: Any) -> list[dict[str, Any]]:
    return [system_topic(subscription_id), event_subscription(subscription_id, function_app_id, **kw)]


__all__ = ["EVENTS_RG", "event_subscription", "subscription_wiring", "system_topic", "topic_id"]
