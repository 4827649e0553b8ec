"""List operations of the emulated ARM control plane, with paging, and ARM's read throttling.

    GET /subscriptions                                                        subscriptions seen
    GET /subscriptions/{sub}/providers/{ns}/{type}                            list by subscription
    GET /subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}        list by resource group
    GET /subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}/{childType}
                                                                              children of one parent

Besides the catalogue and Azure ML types, Event Grid system topics and their event subscriptions
are listed (``SystemTopics_ListBySubscription``, ``…_ListBySystemTopic``), for the sweep's
event-coverage check; they are seeded into the world like any resource.

Each answers ``{"value": [full resources as GET returns them], "nextLink": ...}`` in pages of
``emu.page_size`` (as the types' own list operations do: ``Microsoft.Storage/storageAccounts``,
``Microsoft.KeyVault/vaults`` listBySubscription, ``workspaces/{ws}/computes`` …), ``nextLink``
carrying ``$skiptoken``. Only catalogue types are known; the type's api-version is required. A
list of children under a parent that does not exist is answered 404 ``ParentResourceNotFound``.

``ReadThrottle`` makes the emulator answer GETs like ARM's read bucket (per subscription and
caller; 250 burst, 25/s refill by default): past it, 429 ``TooManyRequests`` with ``Retry-After``.
Install it with ``emu.read_throttle = ReadThrottle(...)``; give it the client's fake clock in
tests so a limit is proven without waiting.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Callable

from guardrails.local.arm_emulator_authz_routes import page
from guardrails.local.arm_emulator_http import ArmError, EmuRequest, EmuResponse
from guardrails.local.arm_emulator_routes import authenticate
from guardrails.model.resource import ResourceType, lookup_type
from guardrails.ratelimit import TokenBucket, limit_key

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

SUBSCRIPTIONS_API_VERSIONS = ("2022-12-01", "2021-01-01", "2020-01-01")
EVENTGRID_TYPES = {t.key: t for t in (ResourceType("Microsoft.EventGrid/systemTopics", "2022-06-15", "put"),
                                      ResourceType("Microsoft.EventGrid/systemTopics/eventSubscriptions",
                                                   "2022-06-15", "put"))}


def _list_shape(segments: list[str]) -> tuple[str, str] | None:
    """(lower-cased id prefix every listed resource starts with, type name as spelled) of a list
    path, else None."""
    s = [x.lower() for x in segments]
    n = len(s)
    if n == 5 and s[0] == "subscriptions" and s[2] == "providers":
        return f"/subscriptions/{s[1]}/", "/".join(segments[3:5])
    if n >= 7 and n % 2 == 1 and s[0] == "subscriptions" and s[2] == "resourcegroups" and s[4] == "providers":
        if n == 7:
            return f"/subscriptions/{s[1]}/resourcegroups/{s[3]}/", "/".join(segments[5:7])
        rest = segments[6:]          # type, name, [type, name ...], childType
        parent = "/" + "/".join(s[:n - 1]) + "/"
        return parent, "/".join([segments[5], *rest[0::2]])
    return None


class ArmListRoute:
    host = "management"

    def claims(self, req: EmuRequest) -> bool:
        if req.method != "GET":
            return False
        s = req.segments
        return (len(s) == 1 and s[0].lower() == "subscriptions") or _list_shape(s) is not None

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        authenticate(req, emu.tenant_id)
        version = req.query.get("api-version")
        if len(req.segments) == 1:
            if version not in SUBSCRIPTIONS_API_VERSIONS:
                raise ArmError(400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid. "
                               f"Supported: {', '.join(SUBSCRIPTIONS_API_VERSIONS)}.")
            return page(emu, req, self._subscriptions(emu))
        prefix, type_name = _list_shape(req.segments)  # type: ignore[misc]
        rtype = lookup_type(type_name) or EVENTGRID_TYPES.get(type_name.lower())
        container = None
        if rtype is None:
            from guardrails.local.ml_emulator import CONTAINERS, TYPES as ML_TYPES   # Azure ML children list too
            rtype = ML_TYPES.get(type_name.lower())
            if rtype is None and type_name.lower() in CONTAINERS:
                rtype, container = CONTAINERS[type_name.lower()][1], CONTAINERS[type_name.lower()][0]
        if rtype is None:
            raise ArmError(400, "InvalidResourceType", f"The resource type '{type_name}' could not be found "
                           f"in the namespace '{type_name.split('/')[0]}'.")
        if version != rtype.api_version:
            raise ArmError(400, "NoRegisteredProviderFound", f"No registered resource provider found for API "
                           f"version '{version}' and type '{rtype.name}'. The supported api-versions are "
                           f"'{rtype.api_version}'.")
        key = rtype.key
        with emu.store.lock:
            emu.store.complete_due()
            if len(req.segments) > 7:
                _parent_must_exist(emu, prefix, "/".join(req.segments[7:-1:2]))
            items = [r for rid, r in sorted(_resources(emu).items())
                     if rid.startswith(prefix) and str(r.get("type", "")).lower() == key]
            if container is not None:
                from guardrails.local.ml_emulator import model_containers
                items = model_containers(items, container)
            return page(emu, req, items)

    @staticmethod
    def _subscriptions(emu: "AzureEmulator") -> list[dict]:
        with emu.store.lock:
            subs = sorted({limit_key(rid) for rid in _resources(emu)} - {"tenant"})
        return [{"id": f"/subscriptions/{s}", "subscriptionId": s, "tenantId": emu.tenant_id,
                 "displayName": f"subscription {s[:8]}", "state": "Enabled"} for s in subs]


def _parent_must_exist(emu: "AzureEmulator", prefix: str, names: str) -> None:
    """A list of children under a parent that does not exist is answered 404
    ``ParentResourceNotFound``, as ARM's resource providers must (an empty list only when every
    parent exists: the ARM RPC contract), e.g. a workspace deleted while a sweep lists its
    endpoints. A parent exists when stored or when anything is stored under it (ARM holds no
    child without its parent; a model container is no resource of its own here, and a test world
    may seed a version without its workspace). Called under ``store.lock``."""
    resources = _resources(emu)
    if prefix[:-1] in resources or any(rid.startswith(prefix) for rid in resources):
        return
    raise ArmError(404, "ParentResourceNotFound", "Can not perform requested operation on nested resource. "
                   f"Parent resource '{names}' not found.")


def _resources(emu: "AzureEmulator") -> dict[str, dict]:
    """The store's resources by lower-cased id (read under ``store.lock``; never mutated here)."""
    return emu.store._resources   # noqa: SLF001 - the list view of the same store, no copy of 5,000 bodies


class ReadThrottle:
    """ARM's read bucket per (subscription, caller): GETs on the management host take a token;
    without one the answer is 429 with ``Retry-After`` (whole seconds, rounded up, as ARM sends)."""

    def __init__(self, rate: float = 25.0, burst: float = 250.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self.throttled = 0

    def check(self, req: EmuRequest) -> None:
        if req.method != "GET" or req.host != "management":
            return
        key = f"{limit_key(req.path)}|{req.caller or ''}"
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, clock=self.clock)
        wait = bucket.try_take()
        if wait > 0.0:
            with self._lock:
                self.throttled += 1
            raise ArmError(429, "TooManyRequests", "Number of 'read' requests for subscription actor exceeded. "
                           "Please try again after some time.",
                           {"Retry-After": str(max(1, math.ceil(wait))),
                            "x-ms-ratelimit-remaining-subscription-reads": "0"})
