"""Value types of the check policy kinds, as loaded from ``metadata/`` (format: ``metadata/README.md``).

- ``JobPolicy`` (``kind: job``) — the seed's job metadata for one ``job_id``: allowed identities,
  required network zones, its access policy (role, permissions, Entra group), its secret
  references (Key Vault pointers: vault + secret name, never values) and its network rules
  (the private endpoint each service is reached through).
- ``ModelRegistryPolicy`` (``kind: model-registry``) — the model registry rule table
  (``guardrails.policy.model_rules``).
- ``CheckAccessPolicy`` (``kind: check-access``) — which callers may check on another identity's
  behalf, and which may ask a resource check to remediate (and where).

Immutable, like the other kinds; built only by the loader's three passes
(``guardrails.policy.loader``), so a table row is re-validated before use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping

from guardrails.model.policy import CHECK_ACCESS_KIND, DEFAULT_BREAKER, JOB_KIND, MODEL_REGISTRY_KIND, Breaker, Mode
from guardrails.policy.model_rules import ModelRegistryRules

CHECK_KINDS: tuple[str, ...] = (JOB_KIND, MODEL_REGISTRY_KIND, CHECK_ACCESS_KIND)
CHECK_NAMES: tuple[str, ...] = ("job", "resource", "model-promotion")


def job_key(job_id: str | int) -> str:
    """Job ids compare as trimmed, case-insensitive strings (``201`` = ``"201"``)."""
    return str(job_id).strip().lower()


@dataclass(frozen=True)
class SecretReference:
    """A pointer into Key Vault. Names compare case-insensitively, as Key Vault's do."""

    vault: str
    secret: str

    @property
    def key(self) -> tuple[str, str]:
        return self.vault.lower(), self.secret.lower()

    def __str__(self) -> str:
        return f"{self.vault}/{self.secret}"


@dataclass(frozen=True)
class NetworkRule:
    service: str
    private_endpoint: str


@dataclass(frozen=True)
class AccessPolicy:
    """Members of ``entra_group`` (object id ``entra_group_id``) act as ``role`` with ``permissions``."""

    role: str
    permissions: tuple[str, ...]
    entra_group: str
    entra_group_id: str                      # lower-case dashed GUID


@dataclass(frozen=True)
class IdentitySet:
    """Object ids listed directly, or members (transitive) of listed groups."""

    principals: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.principals or self.groups)


class _Versioned:
    id: str
    version: int

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, source: str = "<document>"):
        """Re-validate all three passes and build (any kind); raises ``MetadataValidationError``."""
        from guardrails.policy.loader import load_documents

        (policy,) = load_documents([(source, doc)])
        return policy


def _head(p) -> dict[str, Any]:
    return {"id": p.id, "version": p.version, "kind": p.kind, "description": p.description, "mode": p.mode}


def _ids(s: IdentitySet) -> dict[str, Any]:
    return {"principals": list(s.principals), "groups": list(s.groups)}


@dataclass(frozen=True)
class JobPolicy(_Versioned):
    kind: ClassVar[str] = JOB_KIND

    id: str
    version: int
    description: str
    mode: Mode
    job_id: str
    access_policy: AccessPolicy
    allowed_identities: IdentitySet = IdentitySet()
    network_zones: tuple[str, ...] = ()
    network_rules: tuple[NetworkRule, ...] = ()
    secret_references: tuple[SecretReference, ...] = ()
    source: str = field(default="", compare=False)

    @property
    def allowed_zones(self) -> tuple[str, ...]:
        """Where the job may run from: the required network zones, and the private endpoint of
        each network rule (the zone that reaches the service privately)."""
        return tuple(dict.fromkeys([*self.network_zones, *(r.private_endpoint for r in self.network_rules)]))

    def to_document(self) -> dict[str, Any]:
        a = self.access_policy
        doc = _head(self)
        doc.update(
            job_id=self.job_id,
            access_policy={"role": a.role, "permissions": list(a.permissions), "entra_group": a.entra_group,
                           "entra_group_id": a.entra_group_id},
            secret_references=[{"vault": s.vault, "secret": s.secret} for s in self.secret_references],
            network_rules=[{"service": r.service, "private_endpoint": r.private_endpoint} for r in self.network_rules],
            network_zones=list(self.network_zones),
        )
        if self.allowed_identities:
            doc["allowed_identities"] = _ids(self.allowed_identities)
        return doc


@dataclass(frozen=True)
class ModelRegistryPolicy(_Versioned):
    kind: ClassVar[str] = MODEL_REGISTRY_KIND

    id: str
    version: int
    description: str
    mode: Mode
    rules: ModelRegistryRules = ModelRegistryRules()
    breaker: Breaker = DEFAULT_BREAKER          # the ML lifecycle guardrail's fixes (archive, traffic)
    source: str = field(default="", compare=False)

    def to_document(self) -> dict[str, Any]:
        r = self.rules
        doc = _head(self)
        doc.update(stages=list(r.stages), required_tags=list(r.required_tags),
                   explicit_version_stages=list(r.explicit_version_stages),
                   floating_versions=list(r.floating_versions),
                   production_endpoints=_selector_doc(r.production_endpoints),
                   production_stages=list(r.production_stages),
                   sensitive_endpoints=_selector_doc(r.sensitive_endpoints),
                   endpoint_auth_modes=list(r.endpoint_auth_modes), endpoint_action=r.endpoint_action,
                   drift_monitors=[{"monitor": m.name, "threshold": m.threshold, **({"owner": m.owner} if m.owner else {})}
                                   for m in r.drift_monitors],
                   run_metrics=[{"metric": m.name, "minimum": m.minimum} for m in r.run_metrics],
                   notify_tag=r.notify_tag,
                   breaker={"max_actions": self.breaker.max_actions, "window_seconds": self.breaker.window_seconds})
        if r.drift_default_threshold is not None:
            doc["drift_default_threshold"] = r.drift_default_threshold
        if r.candidate_tag is not None:
            doc["candidate_tag"] = {"key": r.candidate_tag[0], "value": r.candidate_tag[1]}
        if r.registries:
            doc["registries"] = dict(r.registries)
        return doc


def _selector_doc(sel) -> dict[str, Any]:
    return {"tags": dict(sel.tags), "names": list(sel.names)}


@dataclass(frozen=True)
class CallerGrant:
    """Callers (object ids, or members of groups) allowed something; ``checks`` limits an
    on-behalf grant to some checks, ``scopes`` limits a remediate grant to ARM scopes."""

    principals: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    description: str = ""

    def to_document(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.description:
            d["description"] = self.description
        d.update(principals=list(self.principals), groups=list(self.groups))
        if self.checks:
            d["checks"] = list(self.checks)
        if self.scopes:
            d["scopes"] = list(self.scopes)
        return d


@dataclass(frozen=True)
class CheckAccessPolicy(_Versioned):
    kind: ClassVar[str] = CHECK_ACCESS_KIND

    id: str
    version: int
    description: str
    mode: Mode
    on_behalf: tuple[CallerGrant, ...] = ()
    remediate: tuple[CallerGrant, ...] = ()
    source: str = field(default="", compare=False)

    def to_document(self) -> dict[str, Any]:
        doc = _head(self)
        doc.update(on_behalf=[g.to_document() for g in self.on_behalf],
                   remediate=[g.to_document() for g in self.remediate])
        return doc


class CheckPolicies:
    """The check policies of one compiled set, mode ``off`` excluded, indexed for the hot path."""

    __slots__ = ("jobs", "model_registry", "access")

    def __init__(self, policies: Iterable[Any]) -> None:
        jobs: dict[str, list[JobPolicy]] = {}
        registry: list[ModelRegistryPolicy] = []
        access: list[CheckAccessPolicy] = []
        for p in policies:
            if getattr(p, "mode", "off") == "off":
                continue
            if isinstance(p, JobPolicy):
                jobs.setdefault(job_key(p.job_id), []).append(p)
            elif isinstance(p, ModelRegistryPolicy):
                registry.append(p)
            elif isinstance(p, CheckAccessPolicy):
                access.append(p)
        self.jobs: dict[str, tuple[JobPolicy, ...]] = {k: tuple(v) for k, v in jobs.items()}
        self.model_registry: tuple[ModelRegistryPolicy, ...] = tuple(registry)
        self.access: tuple[CheckAccessPolicy, ...] = tuple(access)

    def job(self, job_id: str | int) -> tuple[JobPolicy, ...]:
        """Policies in force for ``job_id`` (more than one is ambiguous: the check denies)."""
        return self.jobs.get(job_key(job_id), ())


def duplicate_job_findings(policies: Iterable[Any]) -> list[tuple[str, str, str]]:
    """``(source, policy id, message)`` for each job policy whose ``job_id`` another policy already
    claims (the loader reports them like any other finding)."""
    seen: dict[str, JobPolicy] = {}
    out = []
    for p in policies:
        if not isinstance(p, JobPolicy):
            continue
        first = seen.setdefault(job_key(p.job_id), p)
        if first is not p:
            out.append((p.source, p.id, f"job_id '{p.job_id}' is already covered by policy '{first.id}'"
                        f" ({first.source}): one policy per job"))
    return out
