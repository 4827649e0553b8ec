"""State of the emulated ARM control plane: resources, pending long-running operations,
and the Event Grid events emitted for applied writes.

All methods expect ``store.lock`` to be held by the caller unless they say otherwise;
the lock is re-entrant, so the public helpers simply take it again.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Literal

from guardrails.local.arm_emulator_events import resource_event
from guardrails.local.arm_emulator_http import ArmError
from guardrails.model.resource import ResourceType, get_path, lookup_type

# Types whose PATCH only takes these top-level keys (the real API rejects the rest).
PATCH_ONLY_KEYS: dict[str, frozenset[str]] = {
    "microsoft.machinelearningservices/registries": frozenset({"tags", "identity", "sku"}),
}


# Types whose PATCH, when it takes time, ARM answers ``201`` + ``Azure-AsyncOperation`` (no
# Location) with the resource as requested and ``provisioningState: Updating``, which a GET also
# shows until the operation ends (REST spec containerregistry 2025-04-01 ``RegistryUpdate.json``),
# instead of the ``202`` the generic spec lists.
PATCH_ANSWERS_CREATED = frozenset({"microsoft.containerregistry/registries"})


def new_etag() -> str:
    return f'W/"{uuid.uuid4().hex}"'


def _iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


@dataclass(frozen=True)
class ArmTarget:
    """A resource addressed by an ARM URL of a covered type."""

    subscription_id: str
    resource_group: str
    rtype: ResourceType
    url_id: str          # id built from the URL: keyword, namespace and type segments canonicalised
    relative: str        # "Namespace/type/name[/childType/childName]" as the URL spelled it
    name: str

    @property
    def namespace(self) -> str:
        return self.rtype.name.split("/", 1)[0]


def parse_arm_path(segments: list[str]) -> tuple[str, str, str, list[str]] | None:
    """(subscription, resourceGroup, type name as spelled, names) of a resource path, else None."""
    if len(segments) < 8 or (len(segments) - 6) % 2:
        return None
    if [s.lower() for s in (segments[0], segments[2], segments[4])] != ["subscriptions", "resourcegroups", "providers"]:
        return None
    rest = segments[6:]
    type_name = "/".join([segments[5], *rest[0::2]])
    return segments[1], segments[3], type_name, list(rest[1::2])


def resolve_target(segments: list[str]) -> ArmTarget:
    parsed = parse_arm_path(segments)
    if parsed is None:
        raise ArmError(400, "InvalidResourceType", f"The resource path '/{'/'.join(segments)}' is not a supported resource id.")
    sub, rg, type_name, names = parsed
    rtype = lookup_type(type_name)
    if rtype is None:
        raise ArmError(400, "InvalidResourceType",
                       f"The resource type '{type_name}' could not be found in the namespace '{type_name.split('/')[0]}'.")
    canon = rtype.name.split("/")
    parts = ["", "subscriptions", sub, "resourceGroups", rg, "providers", canon[0]]
    for type_seg, name in zip(canon[1:], names):
        parts += [type_seg, name]
    return ArmTarget(sub, rg, rtype, "/".join(parts), "/".join(segments[5:]), names[-1])


# PATCH members a resource provider replaces whole instead of merging: Storage's ``networkAcls``
# (setting only ``defaultAction`` drops the ``ipRules``, ``virtualNetworkRules`` and ``bypass``:
# Azure/azure-cli#4825; Cloud Custodian's storage set-firewall re-sends them for that reason)
PATCH_REPLACES = {"microsoft.storage/storageaccounts": frozenset({"networkacls"})}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _set_path(body: dict, path: str, value: Any) -> None:
    cur = body
    segs = path.split(".")
    for seg in segs[:-1]:
        key = next((k for k in cur if isinstance(k, str) and k.lower() == seg.lower()), seg)
        if not isinstance(cur.get(key), dict):
            cur[key] = {}
        cur = cur[key]
    key = next((k for k in cur if isinstance(k, str) and k.lower() == segs[-1].lower()), segs[-1])
    cur[key] = value


@dataclass
class Operation:
    op_id: str
    method: Literal["PUT", "PATCH", "DELETE"]
    target: ArmTarget
    body: dict | None
    claims: dict | None
    correlation_id: str | None
    due_at: float                       # time.monotonic() deadline
    start_time: str = field(default_factory=_iso_now)
    status: str = "InProgress"          # InProgress | Succeeded | Failed
    end_time: str | None = None
    error: dict | None = None
    result: dict | None = None          # resource after an applied PUT/PATCH
    prior_state: str | None = None      # provisioningState shown before an "Updating" one (restored on failure)


class ArmStore:
    def __init__(self, tenant_id: str, *, etagless_types: Iterable[str] = ()) -> None:
        self.lock = threading.RLock()
        self.tenant_id = tenant_id
        self.etagless_types = frozenset(t.lower() for t in etagless_types)
        self.operation_faults: list[dict] = []     # {"regex", "code", "message", "times"}: operations that fail
        self._resources: dict[str, dict] = {}
        self._ops: dict[str, Operation] = {}
        self._events: list[dict] = []

    # ---- resources -------------------------------------------------------------------
    def find(self, resource_id: str) -> dict | None:
        return self._resources.get(resource_id.lower())

    def seed(self, resource: dict) -> None:
        """Store as given (deep copy), filling name/type/etag when absent. No event."""
        if not isinstance(resource, dict) or not isinstance(resource.get("id"), str):
            raise ValueError("a resource needs a string 'id'")
        res = copy.deepcopy(resource)
        segments = [s for s in res["id"].split("/") if s]
        parsed = parse_arm_path(segments)
        if parsed is not None:
            rtype = lookup_type(parsed[2])
            res.setdefault("name", parsed[3][-1])
            res.setdefault("type", rtype.name if rtype else parsed[2])
        if str(res.get("type", "")).lower() in self.etagless_types:
            res.pop("etag", None)
        elif not res.get("etag"):
            res["etag"] = new_etag()
        with self.lock:
            self._resources[res["id"].lower()] = res

    def unseed(self, resource_id: str) -> bool:
        """Drop a resource as if deleted out of band (no event, no operation): test and demo set-up."""
        with self.lock:
            return self._resources.pop(resource_id.lower(), None) is not None

    def find_by_type_and_name(self, type_name: str, name: str) -> dict | None:
        """The first stored resource (in id order) of that type and name, both case-insensitive."""
        t, n = type_name.lower(), name.lower()
        with self.lock:
            hits = [(rid, r) for rid, r in self._resources.items()
                    if str(r.get("type", "")).lower() == t and str(r.get("name", "")).lower() == n]
        return min(hits, key=lambda h: h[0])[1] if hits else None

    def snapshot(self) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(r) for _, r in sorted(self._resources.items())]

    # ---- writes ----------------------------------------------------------------------
    def _finish(self, body: dict, target: ArmTarget, existing: dict | None, claims: dict | None) -> dict:
        res = {"id": existing["id"] if existing else target.url_id,
               "name": existing.get("name", target.name) if existing else target.name,
               "type": existing.get("type", target.rtype.name) if existing else target.rtype.name}
        res.update({k: v for k, v in body.items() if k not in ("id", "name", "type", "etag")})
        if str(res["type"]).lower() not in self.etagless_types:
            res["etag"] = new_etag()
        props = res.get("properties")
        if props is None:
            props = res["properties"] = {}
        if existing is not None and isinstance(props, dict):
            # read-only on the parent, as in ARM: connections change through their own child resource
            kept = (existing.get("properties") or {}).get("privateEndpointConnections")
            props.pop("privateEndpointConnections", None)
            if kept is not None:
                props["privateEndpointConnections"] = copy.deepcopy(kept)
        if isinstance(props, dict):
            props["provisioningState"] = "Succeeded"
        claims = claims or {}
        who = claims.get("upn") or claims.get("appid") or claims.get("oid")
        who_type = "User" if claims.get("upn") else "Application"
        now = _iso_now()
        old_sd = (existing or {}).get("systemData") or {}
        res["systemData"] = {
            "createdBy": old_sd.get("createdBy", who), "createdByType": old_sd.get("createdByType", who_type),
            "createdAt": old_sd.get("createdAt", now),
            "lastModifiedBy": who, "lastModifiedByType": who_type, "lastModifiedAt": now,
        }
        return res

    @staticmethod
    def _enforce_immutable(rtype: ResourceType, existing: dict | None, candidate: dict) -> None:
        if existing is None:
            return
        for path in sorted(rtype.immutable):
            old = get_path(existing, path, None)
            new = get_path(candidate, path, None)
            if new is None:
                if old is not None:  # omitted: the service keeps the value it has
                    _set_path(candidate, path, copy.deepcopy(old))
                continue
            effective_old = old if old is not None else rtype.defaults.get(path)
            if new != effective_old:
                raise ArmError(400, "PropertyChangeNotAllowed",
                               f"Changing property '{path}' is not allowed for an existing "
                               f"'{rtype.name}' resource (current {effective_old!r}, requested {new!r}).")

    @staticmethod
    def _enforce_requires(rtype: ResourceType, existing: dict | None, candidate: dict) -> None:
        """A change the service refuses on this resource, as it does (a Basic/Standard registry
        cannot disable public network access: 400 DisablingPublicNetworkAccessNotSupported)."""
        for path in sorted(rtype.write_requires):
            new = get_path(candidate, path, None)
            if new is None or new == get_path(existing or {}, path, None):
                continue
            why = rtype.write_refused(path, candidate)
            if why is not None:
                code = ("DisablingPublicNetworkAccessNotSupported" if path.endswith("publicNetworkAccess")
                        else "InvalidRequestContent")
                raise ArmError(400, code, f"Setting '{path}' to {new!r} is not supported: {why}.")

    def prepare_put(self, target: ArmTarget, body: dict, claims: dict | None) -> tuple[dict, bool]:
        existing = self.find(target.url_id)
        candidate = copy.deepcopy(body)
        self._enforce_immutable(target.rtype, existing, candidate)
        self._enforce_requires(target.rtype, existing, candidate)
        return self._finish(candidate, target, existing, claims), existing is None

    def prepare_patch(self, target: ArmTarget, patch: dict, claims: dict | None) -> dict:
        allowed = PATCH_ONLY_KEYS.get(target.rtype.key)
        if allowed is not None:
            extra = sorted(k for k in patch if k.lower() not in allowed)
            if extra:
                raise ArmError(400, "InvalidRequestContent",
                               f"PATCH of '{target.rtype.name}' accepts only {sorted(allowed)}; "
                               f"found {extra}. Use PUT to change other properties.")
        existing = self.find(target.url_id)
        if existing is None:
            raise not_found(target)
        candidate = merge_patch(existing, patch)
        replaced = PATCH_REPLACES.get(target.rtype.key, frozenset())
        props, sent = candidate.get("properties"), patch.get("properties")
        if replaced and isinstance(props, dict) and isinstance(sent, dict):
            for key, value in sent.items():
                if isinstance(key, str) and key.lower() in replaced and value is not None:
                    props[key] = copy.deepcopy(value)        # whole, as sent: siblings not sent are gone
        self._enforce_immutable(target.rtype, existing, candidate)
        self._enforce_requires(target.rtype, existing, candidate)
        return self._finish(candidate, target, existing, claims)

    def commit(self, resource: dict, target: ArmTarget, claims: dict | None, correlation_id: str | None) -> dict:
        self._resources[resource["id"].lower()] = resource
        self._events.append(resource_event(
            "write", resource_id=resource["id"], type_name=target.rtype.name,
            subscription_id=target.subscription_id, claims=claims,
            correlation_id=correlation_id, tenant_id=self.tenant_id))
        return copy.deepcopy(resource)

    def remove(self, target: ArmTarget, claims: dict | None, correlation_id: str | None) -> bool:
        existing = self._resources.pop(target.url_id.lower(), None)
        if existing is None:
            return False
        self._events.append(resource_event(
            "delete", resource_id=existing["id"], type_name=target.rtype.name,
            subscription_id=target.subscription_id, claims=claims,
            correlation_id=correlation_id, tenant_id=self.tenant_id))
        return True

    # ---- long-running operations -----------------------------------------------------
    def add_operation(self, method: Literal["PUT", "PATCH", "DELETE"], target: ArmTarget, body: dict | None,
                      claims: dict | None, correlation_id: str | None, seconds: float) -> Operation:
        op = Operation(str(uuid.uuid4()), method, target, copy.deepcopy(body), claims, correlation_id,
                       time.monotonic() + max(0.0, seconds))
        self._ops[op.op_id] = op
        return op

    def begin_update(self, op: Operation, requested: dict) -> dict:
        """The stored resource reads ``provisioningState: Updating`` until ``op`` ends (no new
        etag, no event: nothing is applied yet); returns the body of the ``201`` answer: the
        resource as requested, still ``Updating``, with the etag it has now."""
        existing = self.find(op.target.url_id)
        props = existing.get("properties") if existing is not None else None
        if isinstance(props, dict):
            op.prior_state = props.get("provisioningState")
            props["provisioningState"] = "Updating"
        body = copy.deepcopy(requested)
        if isinstance(body.get("properties"), dict):
            body["properties"]["provisioningState"] = "Updating"
        body["etag"] = existing.get("etag") if existing is not None else body.get("etag")
        return body

    def operation(self, op_id: str) -> Operation | None:
        return self._ops.get(op_id.lower())

    def complete_due(self) -> None:
        """Apply every pending operation whose time has come (exactly once, in due order)."""
        with self.lock:
            now = time.monotonic()
            due = [op for op in self._ops.values() if op.status == "InProgress" and op.due_at <= now]
            for op in sorted(due, key=lambda o: o.due_at):
                self._complete(op)

    def _operation_fault(self, op: Operation) -> ArmError | None:
        for fault in self.operation_faults:
            if fault["times"] != 0 and fault["regex"].search(op.target.url_id):
                if fault["times"] is not None:
                    fault["times"] -= 1
                return ArmError(500, fault["code"], fault["message"])
        return None

    def _complete(self, op: Operation) -> None:
        try:
            fault = self._operation_fault(op)
            if fault is not None:
                raise fault
            if op.method == "PUT":
                res, _ = self.prepare_put(op.target, op.body or {}, op.claims)
                op.result = self.commit(res, op.target, op.claims, op.correlation_id)
            elif op.method == "PATCH":
                res = self.prepare_patch(op.target, op.body or {}, op.claims)
                op.result = self.commit(res, op.target, op.claims, op.correlation_id)
            else:
                self.remove(op.target, op.claims, op.correlation_id)
            op.status = "Succeeded"
        except ArmError as exc:
            op.status, op.error = "Failed", exc.to_error()
            if op.method in ("PUT", "PATCH"):      # ARM tells the subscription's topic the write failed
                self._events.append(resource_event(
                    "write_failure", resource_id=op.target.url_id, type_name=op.target.rtype.name,
                    subscription_id=op.target.subscription_id, claims=op.claims,
                    correlation_id=op.correlation_id, tenant_id=self.tenant_id))
            existing = self.find(op.target.url_id)
            props = existing.get("properties") if existing is not None else None
            if op.prior_state is not None and isinstance(props, dict) and props.get("provisioningState") == "Updating":
                props["provisioningState"] = op.prior_state     # nothing changed: as it was
        op.end_time = _iso_now()

    # ---- events ----------------------------------------------------------------------
    def emit(self, event: dict) -> None:
        """Queue an event built elsewhere (role assignments, role definitions)."""
        with self.lock:
            self._events.append(event)

    def drain_events(self) -> list[dict]:
        with self.lock:
            self.complete_due()
            events, self._events = self._events, []
            return events


def not_found(target: ArmTarget) -> ArmError:
    return ArmError(404, "ResourceNotFound",
                    f"The Resource '{target.relative}' under resource group '{target.resource_group}' was not found.")
