"""Resource snapshots and the catalogue of covered ARM resource types.

The catalogue holds *platform facts* (api-version the product speaks, how a type is
written, documented defaults of absent properties, immutable properties). What is
*wanted* of a resource is policy and lives in ``metadata/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

_MISSING = object()


@dataclass(frozen=True)
class ResourceType:
    name: str                       # ARM type as documented, e.g. "Microsoft.Storage/storageAccounts"
    api_version: str                # the api-version the product reads and writes with
    write_method: Literal["patch", "put"]  # "put": read-modify-write of the full body with If-Match
    defaults: Mapping[str, Any] = field(default_factory=dict)  # dotted path -> documented default
    immutable: frozenset[str] = frozenset()  # dotted paths that cannot change after creation
    # dotted path -> (path, accepted values lower-case, why): the platform refuses a write of
    # the property unless the other one holds one of the values (e.g. a registry's SKU)
    write_requires: Mapping[str, tuple[str, frozenset[str], str]] = field(default_factory=dict)
    # dotted path -> (path, values lower-case): the property exists only on resources whose other
    # property holds one of the values (a compute's node public IP: clusters and instances only);
    # on the others a rule about it does not apply, so its default never makes a violation
    applies_when: Mapping[str, tuple[str, frozenset[str]]] = field(default_factory=dict)

    def write_refused(self, path: str, body: Mapping[str, Any]) -> str | None:
        """Why the platform would refuse a write of ``path`` on this body, or None. A key of
        ``write_requires`` covers that property and everything below it."""
        low = path.lower()
        need = next((v for k, v in self.write_requires.items()
                     if low == k.lower() or low.startswith(k.lower() + ".")), None)
        if need is None:
            return None
        other, accepted, why = need
        have = get_path(body, other, None)
        return None if isinstance(have, str) and have.lower() in accepted else f"{why} ({other} is {have!r})"

    @property
    def key(self) -> str:
        return self.name.lower()


CATALOG: dict[str, ResourceType] = {
    t.key: t
    for t in (
        ResourceType(
            "Microsoft.MachineLearningServices/workspaces", "2025-09-01", "patch",
            # absent publicNetworkAccess means the workspace is reachable publicly
            {"properties.publicNetworkAccess": "Enabled"},
        ),
        ResourceType(
            # registries' PATCH only takes tags/identity/sku: properties need a full PUT
            "Microsoft.MachineLearningServices/registries", "2025-09-01", "put",
            {"properties.publicNetworkAccess": "Enabled"},
        ),
        ResourceType(
            "Microsoft.MachineLearningServices/workspaces/computes", "2025-09-01", "patch",
            # AmlCompute/ComputeInstance provision node public IPs unless told not to; attached
            # computes (Kubernetes, AKS, Databricks, VirtualMachine, SynapseSpark …) have no such setting
            {"properties.properties.enableNodePublicIp": True},
            frozenset({"properties.properties.enableNodePublicIp"}),
            applies_when={"properties.properties.enableNodePublicIp": (
                "properties.computeType", frozenset({"amlcompute", "computeinstance"}))},
        ),
        ResourceType(
            "Microsoft.Storage/storageAccounts", "2025-06-01", "patch",
            # null publicNetworkAccess is treated as Enabled. allowBlobPublicAccess: accounts made
            # before late 2023 do not return it, and for them null permits anonymous access ("the
            # account permits anonymous access when the value is null or true"; older API specs:
            # "default interpretation is true"); newer accounts default to false. Absent counts as
            # true, as Azure Policy's built-in audit does: a fix writes false, harmless on new ones.
            # No networkAcls means the firewall is off: every network is allowed.
            {"properties.publicNetworkAccess": "Enabled", "properties.allowBlobPublicAccess": True,
             "properties.networkAcls.defaultAction": "Allow"},
        ),
        ResourceType(
            "Microsoft.KeyVault/vaults", "2025-05-01", "patch",
            # no networkAcls: the vault firewall is disabled and all networks can reach it
            {"properties.publicNetworkAccess": "Enabled", "properties.enableRbacAuthorization": False,
             "properties.networkAcls.defaultAction": "Allow"},
        ),
        ResourceType(
            "Microsoft.ContainerRegistry/registries", "2025-04-01", "patch",
            # network rules (and so their default action) exist on Premium only: absent is Allow
            {"properties.publicNetworkAccess": "Enabled", "properties.adminUserEnabled": False,
             "properties.anonymousPullEnabled": False, "properties.networkRuleSet.defaultAction": "Allow"},
            # Basic/Standard refuse it: 400 DisablingPublicNetworkAccessNotSupported
            write_requires={
                "properties.publicNetworkAccess": (
                    "sku.name", frozenset({"premium"}),
                    "only a Premium registry can disable public network access (private endpoints need Premium)"),
                # a merged PATCH with network rules would be refused whole on Basic/Standard, and
                # take the admin-user and anonymous-pull fixes down with it
                "properties.networkRuleSet": (
                    "sku.name", frozenset({"premium"}), "only a Premium registry has network rules"),
            },
        ),
    )
}


def lookup_type(type_name: str) -> ResourceType | None:
    """Exact (case-insensitive) match of a full ARM type name; never a prefix match."""
    return CATALOG.get(type_name.lower())


def get_path(body: Mapping[str, Any], path: str, default: Any = _MISSING) -> Any:
    """Read a dotted path (``properties.publicNetworkAccess``) from a REST-shaped body.

    Key lookup is exact first, then case-insensitive (ARM echoes some keys in other cases).
    Returns ``default`` (or raises KeyError when no default) if any segment is absent or null.
    """
    cur: Any = body
    for seg in path.split("."):
        if not isinstance(cur, Mapping):
            cur = None
            break
        if seg in cur:
            cur = cur[seg]
        else:
            low = seg.lower()
            for k, v in cur.items():
                if isinstance(k, str) and k.lower() == low:
                    cur = v
                    break
            else:
                cur = None
        if cur is None:
            break
    if cur is None:
        if default is _MISSING:
            raise KeyError(path)
        return default
    return cur


@dataclass(frozen=True)
class ResourceSnapshot:
    """A resource as ARM's GET returned it (REST shape, camelCase), read just now."""

    resource_id: str
    type: str
    body: Mapping[str, Any]
    etag: str | None = None

    @property
    def tags(self) -> Mapping[str, str]:
        tags = self.body.get("tags") or {}
        return tags if isinstance(tags, Mapping) else {}

    @property
    def location(self) -> str | None:
        return self.body.get("location")

    def value(self, path: str) -> tuple[Any, bool]:
        """(value, present). Absent or null -> (None, False)."""
        try:
            return get_path(self.body, path), True
        except KeyError:
            return None, False
