"""Event Grid wiring as ARM returns it, for the emulator's world (tests, demo, benchmark).

``subscription_wiring`` gives the three resources ``infra/modules/subscription.bicep`` deploys in a
governed subscription: the ``Microsoft.Resources.Subscriptions`` system topic, its event
subscription delivering ``ResourceWriteSuccess`` of the covered operations to ``resource_events``
and a second one delivering ``ResourceDeleteSuccess`` of the covered deletions there.
``vault_wiring`` / ``workspace_wiring`` give what ``vault.bicep`` / ``ml-workspace.bicep`` deploy
beside a governed vault or ML workspace (GET shapes of api-version 2022-06-15:
``SystemTopics_Get``, ``SystemTopicEventSubscriptions_Get``).
"""

from __future__ import annotations

from typing import Any, Sequence

from guardrails.coverage import (DELETE_EVENT, FUNCTION_NAME, KEYVAULT_FUNCTION, TOPIC_TYPE, VAULT_TOPIC_TYPE,
                                 WORKSPACE_TOPIC_TYPE, destination_for)

EVENTS_RG = "rg-guardrails-events"


def event_subscription_name(function: str) -> str:
    """``infra/modules/topic.bicep``'s name for the event subscription to ``function``: Event Grid
    allows letters, digits and hyphens only, so ``resource_events`` -> ``guardrails-resource-events``."""
    return f"guardrails-{function.replace('_', '-')}"


def topic_id(subscription_id: str, *, rg: str = EVENTS_RG) -> str:
    """The subscription topic's id (``evgt-guardrails-{subscription id}`` in ``rg``)."""
    return (f"/subscriptions/{subscription_id}/resourceGroups/{rg}/providers/Microsoft.EventGrid/"
            f"systemTopics/evgt-guardrails-{subscription_id}")


def _source_topic_id(source: str, name: str) -> str:
    """A vault's or workspace's topic: in the source's own resource group."""
    seg = source.split("/")
    return f"/subscriptions/{seg[2]}/resourceGroups/{seg[4]}/providers/Microsoft.EventGrid/systemTopics/{name}"


def _topic(tid: str, source: str, topic_type: str) -> dict[str, Any]:
    return {"id": tid, "name": tid.rsplit("/", 1)[-1], "type": "Microsoft.EventGrid/systemTopics",
            "location": "global",
            "properties": {"source": source, "topicType": topic_type,
                           "metricResourceId": "00000000-0000-0000-0000-000000000000",
                           "provisioningState": "Succeeded"}}


def _event_subscription(tid: str, function_app_id: str, function: str, event_types: Sequence[str],
                        advanced: list[dict[str, Any]], name: str, properties: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {
        "topic": tid, "provisioningState": "Succeeded", "eventDeliverySchema": "EventGridSchema",
        "destination": {"endpointType": "AzureFunction",
                        "properties": {"resourceId": destination_for(function_app_id, function), "maxEventsPerBatch": 1,
                                       "preferredBatchSizeInKilobytes": 64}},
        "filter": {"includedEventTypes": list(event_types), "enableAdvancedFilteringOnArrays": True,
                   "advancedFilters": advanced},
        "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
    }
    props.update(properties)
    return {"id": f"{tid}/eventSubscriptions/{name}", "name": name,
            "type": "Microsoft.EventGrid/systemTopics/eventSubscriptions", "properties": props}


def system_topic(subscription_id: str, *, rg: str = EVENTS_RG) -> dict[str, Any]:
    return _topic(topic_id(subscription_id, rg=rg), f"/subscriptions/{subscription_id}", TOPIC_TYPE)


def event_subscription(subscription_id: str, function_app_id: str, *, operations: Sequence[str] | None = None,
                       rg: str = EVENTS_RG, name: str = event_subscription_name(FUNCTION_NAME),
                       **properties: Any) -> dict[str, Any]:
    """The deployed event subscription; ``operations`` None: every covered operation.
    ``properties`` override top-level properties (``provisioningState``, ``expirationTimeUtc`` …)."""
    if operations is None:
        from guardrails.permissions import covered_operations
        operations = covered_operations()
    from guardrails.permissions import RESOURCE_EVENT_TYPES_DELIVERED
    advanced = [{"operatorType": "StringIn", "key": "data.operationName", "values": list(operations)}]
    # as subscription.bicep lists them: a write, and the failure or cancellation of one
    return _event_subscription(topic_id(subscription_id, rg=rg), function_app_id, FUNCTION_NAME,
                               list(RESOURCE_EVENT_TYPES_DELIVERED), advanced, name, properties)


def deletions_subscription(subscription_id: str, function_app_id: str, *, operations: Sequence[str] | None = None,
                           rg: str = EVENTS_RG, name: str = event_subscription_name(FUNCTION_NAME) + "-deletes",
                           **properties: Any) -> dict[str, Any]:
    """``topic.bicep``'s second event subscription: ``ResourceDeleteSuccess`` of the covered
    deletions (``operations`` None: ``permissions.covered_delete_operations()``)."""
    if operations is None:
        from guardrails.permissions import covered_delete_operations
        operations = covered_delete_operations()
    advanced = [{"operatorType": "StringIn", "key": "data.operationName", "values": list(operations)}]
    return _event_subscription(topic_id(subscription_id, rg=rg), function_app_id, FUNCTION_NAME, [DELETE_EVENT],
                               advanced, name, properties)


def subscription_wiring(subscription_id: str, function_app_id: str, *, deletions: bool = True,
                        **kw: Any) -> list[dict[str, Any]]:
    """The topic and its writes' subscription (``kw``: ``event_subscription``'s) and, unless
    ``deletions`` is False, its deletions' subscription, as ``subscription.bicep`` deploys them."""
    out = [system_topic(subscription_id), event_subscription(subscription_id, function_app_id, **kw)]
    if deletions:
        out.append(deletions_subscription(subscription_id, function_app_id, rg=kw.get("rg", EVENTS_RG)))
    return out


def _source_wiring(source: str, function_app_id: str, topic_type: str, function: str, tag: str,
                   event_types: Sequence[str], properties: dict[str, Any]) -> list[dict[str, Any]]:
    tid = _source_topic_id(source, f"evgt-guardrails-{tag}-{source.rsplit('/', 1)[-1]}")
    return [_topic(tid, source, topic_type),
            _event_subscription(tid, function_app_id, function, event_types, [], event_subscription_name(function),
                                properties)]


def vault_wiring(vault_id: str, function_app_id: str, *, event_types: Sequence[str] | None = None,
                 **properties: Any) -> list[dict[str, Any]]:
    """A governed vault's topic and its subscription to ``keyvault_events`` (``event_types`` None:
    every Key Vault event type the secret guardrail acts on)."""
    from guardrails.permissions import keyvault_event_types
    return _source_wiring(vault_id, function_app_id, VAULT_TOPIC_TYPE, KEYVAULT_FUNCTION, "kv",
                          keyvault_event_types() if event_types is None else event_types, properties)


def workspace_wiring(workspace_id: str, function_app_id: str, *, event_types: Sequence[str] | None = None,
                     **properties: Any) -> list[dict[str, Any]]:
    """A governed ML workspace's topic and its subscription to ``resource_events``."""
    from guardrails.permissions import ml_event_types
    return _source_wiring(workspace_id, function_app_id, WORKSPACE_TOPIC_TYPE, FUNCTION_NAME, "mlw",
                          ml_event_types() if event_types is None else event_types, properties)


LOCAL_SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"     # an estate with no resources: the app's


def wire_estate(resources: Sequence[dict[str, Any]], function_app_id: str | None = None,
                ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The Event Grid wiring ``infra/`` deploys for an estate, delivering to ``function_app_id``
    (None: a local one in the estate's first subscription): each subscription's topic and event
    subscriptions, each Key Vault's and each ML workspace's topic and subscription; and the
    settings that govern those vaults and workspaces (``GUARDRAILS_FUNCTION_APP_ID``,
    ``GUARDRAILS_GOVERNED_VAULT_IDS``, ``GUARDRAILS_GOVERNED_ML_WORKSPACE_IDS``) for ``coverage``
    to check them against."""
    from guardrails.settings import FUNCTION_APP_ID, GOVERNED_ML_WORKSPACE_IDS, GOVERNED_VAULT_IDS

    def ids(rtype: str) -> list[str]:
        return sorted({r["id"] for r in resources if isinstance(r.get("id"), str)
                       and str(r.get("type", "")).lower() == rtype.lower() and len(r["id"].split("/")) == 9})

    subscriptions = sorted({r["id"].split("/")[2] for r in resources if isinstance(r.get("id"), str)
                            and r["id"].lower().startswith("/subscriptions/") and len(r["id"].split("/")) > 2})
    vaults, workspaces = ids("Microsoft.KeyVault/vaults"), ids("Microsoft.MachineLearningServices/workspaces")
    home = (subscriptions or [LOCAL_SUBSCRIPTION])[0]
    function_app_id = function_app_id or (
        f"/subscriptions/{home}/resourceGroups/rg-guardrails/providers/Microsoft.Web/sites/func-guardrails-local")
    wired = [w for sub in subscriptions for w in subscription_wiring(sub, function_app_id)]
    wired += [w for v in vaults for w in vault_wiring(v, function_app_id)]
    wired += [w for ws in workspaces for w in workspace_wiring(ws, function_app_id)]
    return wired, {FUNCTION_APP_ID: function_app_id, GOVERNED_VAULT_IDS: ",".join(vaults),
                   GOVERNED_ML_WORKSPACE_IDS: ",".join(workspaces)}


__all__ = ["EVENTS_RG", "deletions_subscription", "event_subscription", "event_subscription_name", "subscription_wiring", "system_topic",
           "topic_id", "vault_wiring", "wire_estate", "workspace_wiring"]
