"""A local HTTPS emulator of the Azure endpoints the product talks to, for the REAL SDK clients.

    with AzureEmulator(resources) as emu:
        client = ResourceManagementClient(LocalTokenCredential(object_id=...), SUB,
                                          base_url=emu.base_url, connection_verify=emu.ca_path,
                                          retry_total=0, polling_interval=0)

Pieces: ``arm_emulator_http`` (TLS server, request/response, ARM error shape),
``arm_emulator_routes`` (route families), ``arm_emulator_state`` (resources, LROs, events),
``arm_emulator_events`` (Event Grid payloads), ``arm_emulator_authz`` + ``arm_emulator_authz_routes``
(role assignments and definitions, api-version 2022-04-01), ``graph_emulator`` (Microsoft Graph
``/v1.0`` group membership, host ``graph`` in the request log), ``keyvault_emulator`` +
``keyvault_routes`` + ``keyvault_events`` (Key Vault data plane: secrets, keys, the bearer challenge,
served per vault at ``emu.vault_url(vault)``, host = the vault name in the request log),
``storage_keys_emulator`` (storage account ``listKeys`` / ``regenerateKey``), ``ml_emulator`` (Azure ML
model versions, online endpoints and deployments, and the workspace events their writes emit),
``management_groups`` (the management-group hierarchy and its descendants list). This module wires
them together and owns the request log and fault injection.

Key Vault clients of the emulator::

    SecretClient(vault_url=emu.vault_url("kv1"), credential=LocalTokenCredential(object_id=...),
                 connection_verify=emu.ca_path, verify_challenge_resource=False, retry_total=0)

``verify_challenge_resource=False`` is needed because ``127.0.0.1`` is not under ``vault.azure.net``
(a product setting, True in production). Ids in bundles and events keep the real vault form
``https://<vault>.vault.azure.net/...``; ``emu.vault_url_template`` (``.../vaults/{vault}``) maps them here.
"""

from __future__ import annotations

import copy
import re
import shutil
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import trustme

from guardrails.local.arm_emulator_http import (
    ArmError, EmuRequest, EmuResponse, arm_error, make_server, status_code_name,
)
from guardrails.local.arm_emulator_authz import AuthzStore
from guardrails.local.arm_emulator_authz_routes import RoleAssignmentRoute, RoleDefinitionRoute
from guardrails.local.arm_emulator_list import ArmListRoute
from guardrails.local.resource_graph_emulator import ResourceGraphRoute
from guardrails.local.arm_emulator_routes import ArmOperationRoute, ArmResourceRoute
from guardrails.local.arm_emulator_pec import PrivateEndpointConnectionRoute
from guardrails.local.arm_emulator_state import ArmStore
from guardrails.local.credential import DEFAULT_TENANT_ID
from guardrails.local.eventgrid_emulator import EventGridTopicRoute, TopicStore
from guardrails.local.graph_emulator import Directory, GraphRoute
from guardrails.local.keyvault_emulator import VaultStore
from guardrails.local.keyvault_routes import KeyVaultRoute
from guardrails.local.management_groups import ManagementGroupDescendantsRoute, ManagementGroupTree
from guardrails.local.ml_emulator import MlResourceRoute
from guardrails.local.storage_keys_emulator import StorageKeys, StorageKeysRoute

__all__ = ["AzureEmulator", "DEFAULT_KEYVAULT_SCOPE"]

# where a vault not found among the ARM resources lives (the topic of its events)
DEFAULT_KEYVAULT_SCOPE = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-keyvault"


@dataclass
class _Fault:
    method: str | None
    path_regex: str
    status: int | None
    retry_after: int | None
    times: int | None
    delay_ms: int
    code: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        self.method = self.method.upper() if self.method else None
        self._pattern = re.compile(self.path_regex or ".*", re.IGNORECASE)

    def matches(self, req: EmuRequest) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method != req.method:
            return False
        return self._pattern.search(req.path) is not None

    def response(self) -> EmuResponse:
        assert self.status is not None
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        code = self.code or status_code_name(self.status)
        return arm_error(self.status, code, self.message or f"Injected fault: {self.status} {code}.", headers)


class AzureEmulator:
    def __init__(
        self,
        resources: Iterable[dict] = (),
        *,
        faults: Iterable[dict] = (),
        lro_seconds: float = 0.0,
        tenant_id: str = DEFAULT_TENANT_ID,
        role_assignments: Iterable[dict] = (),
        role_definitions: Iterable[dict] = (),
        directory: dict | None = None,
        page_size: int = 100,
        secrets: Iterable[dict] = (),
        keys: Iterable[dict] = (),
        storage_keys: dict[str, list[dict]] | None = None,
        keyvault_scope: str = DEFAULT_KEYVAULT_SCOPE,
        etagless_types: Iterable[str] = (),
        management_groups: Iterable[dict] = (),
    ) -> None:
        self.tenant_id = tenant_id
        self.lro_seconds = float(lro_seconds)
        self.page_size = page_size  # items per page of every list (resources, role assignments / definitions)
        self.store = ArmStore(tenant_id, etagless_types=etagless_types)
        self._lock = self.store.lock  # one lock around all state
        self.directory = Directory(directory)
        self.authz = AuthzStore(self.store, self.directory)
        self.management_groups = ManagementGroupTree(management_groups)   # the hierarchy (management_groups)
        self.authz.groups_above = self.management_groups.groups_above
        self.vaults = VaultStore(self.store, keyvault_scope)
        self.storage = StorageKeys(self.store, storage_keys)
        self._faults: list[_Fault] = []
        self._log: list[dict] = []
        # tried in order; the first that claims a request handles it
        self.topics = TopicStore()  # Event Grid custom topics (eventgrid_emulator)
        self.routes: list[Any] = [GraphRoute(), ResourceGraphRoute(), KeyVaultRoute(), EventGridTopicRoute(), ArmOperationRoute(),
                                  StorageKeysRoute(),
                                  RoleAssignmentRoute(), RoleDefinitionRoute(), PrivateEndpointConnectionRoute(),
                                  MlResourceRoute(), ManagementGroupDescendantsRoute(), ArmListRoute(),
                                  ArmResourceRoute()]
        self.read_throttle: Any = None   # arm_emulator_list.ReadThrottle: ARM's read bucket, 429 past it
        for resource in resources:
            self.put(resource)
        for definition in role_definitions:
            self.authz.seed_definition(definition)
        for assignment in role_assignments:
            self.put_role_assignment(assignment)
        self.vaults.seed("secrets", secrets)
        self.vaults.seed("keys", keys)
        for fault in faults:
            self.add_fault(**{k: fault[k] for k in
                              ("method", "path_regex", "status", "retry_after", "times", "delay_ms", "code", "message")
                              if k in fault})
        self._server = None
        self._thread: threading.Thread | None = None
        self._tmpdir: str | None = None
        self._ca_path: str | None = None

    @classmethod
    def from_world(cls, world: dict) -> "AzureEmulator":
        """``{"resources": [...], "roleAssignments": [...], "roleDefinitions": [...], "directory": {...},
        "secrets": [...], "keys": [...], "storageKeys": {...}, "keyVaultScope": "/subscriptions/<s>/resourceGroups/<rg>",
        "managementGroups": [...], "faults": [...], "lro_seconds": N}``; unknown keys are ignored. Role assignments and role
        definitions (custom roles, and built-ins the product catalogue does not hold) are objects
        exactly as ARM GET returns them; ``directory`` is
        ``{"groups": {"<group id>": ["<member id>", ...]}}`` (see ``graph_emulator``). ``secrets`` /
        ``keys`` are bundles exactly as Key Vault GET returns them, one per version, the vault taken
        from the id URL (key bundles may omit key material: generated when first read);
        ``storageKeys`` is ``{"<storage account id>": [{"keyName", "value", "creationTime"}]}``;
        ``etaglessTypes``: resource types answered with no etag (no ``etag`` in the body, no
        ``ETag`` header), as the documented bodies of ML registries and online endpoints show:
        a write back can then not be made conditional. ``keyvault_private_access`` (default false):
        the callers reach every vault through an approved private endpoint, so a vault whose
        ``publicNetworkAccess`` is ``Disabled`` still serves them (else 403 ForbiddenByConnection).
        ``managementGroups``: the group hierarchy, ``[{"name", "parent", "subscriptions"}]``
        (``management_groups``: none, every group has nothing below it)."""
        emu = cls(world.get("resources") or (), faults=world.get("faults") or (),
                  lro_seconds=world.get("lro_seconds") or 0.0,
                  role_assignments=world.get("roleAssignments") or (),
                  role_definitions=world.get("roleDefinitions") or (),
                  directory=world.get("directory"),
                  secrets=world.get("secrets") or (), keys=world.get("keys") or (),
                  storage_keys=world.get("storageKeys") or None,
                  keyvault_scope=world.get("keyVaultScope") or DEFAULT_KEYVAULT_SCOPE,
                  etagless_types=world.get("etaglessTypes") or (),
                  management_groups=world.get("managementGroups") or ())
        emu.vaults.private_access = bool(world.get("keyvault_private_access", False))
        return emu

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> "AzureEmulator":
        if self._server is not None:
            return self
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tmpdir = tempfile.mkdtemp(prefix="azure-emulator-")
        self._ca_path = str(Path(self._tmpdir) / "ca.pem")
        ca.cert_pem.write_to_path(self._ca_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self._server = make_server(ctx, self._dispatch)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"azure-emulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> "AzureEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def vault_url(self, vault: str) -> str:
        """Where the emulator serves ``https://<vault>.vault.azure.net``: ``{base_url}/vaults/<vault>``."""
        return f"{self.base_url}/vaults/{vault.lower()}"

    @property
    def vault_url_template(self) -> str:
        """``https://127.0.0.1:PORT/vaults/{vault}``: the product's vault-URL mapping setting."""
        return f"{self.base_url}/vaults/{{vault}}"

    @property
    def ca_path(self) -> str:
        if self._ca_path is None or self._server is None:
            raise RuntimeError("emulator not started")
        return self._ca_path

    # ---- state -----------------------------------------------------------------------
    def world(self, include_values: bool = False) -> dict:
        """The state as a world file. Secret and storage key values are ``"<redacted>"`` and key
        material is dropped unless ``include_values``."""
        with self._lock:
            self.store.complete_due()
            vaults = self.vaults.to_world(include_values)
            return {"resources": self.store.snapshot(), "roleAssignments": self.authz.assignments(),
                    "roleDefinitions": self.authz.definitions(), "directory": self.directory.to_world(),
                    "secrets": vaults["secrets"], "keys": vaults["keys"],
                    "storageKeys": self.storage.to_world(include_values),
                    "managementGroups": self.management_groups.to_world()}

    def get(self, resource_id: str) -> dict | None:
        with self._lock:
            self.store.complete_due()
            res = self.store.find(resource_id)
            return copy.deepcopy(res) if res is not None else None

    def put(self, resource: dict) -> None:
        """Seed or replace a resource as-is (an etag is assigned if absent). No event, no log."""
        self.store.seed(resource)

    def role_assignments(self) -> list[dict]:
        """Every role assignment, as ARM GET returns it, sorted by id."""
        return self.authz.assignments()

    def get_role_assignment(self, assignment_id: str) -> dict | None:
        with self._lock:
            found = self.authz.find_assignment(assignment_id)
            return copy.deepcopy(found) if found is not None else None

    def put_role_assignment(self, assignment: dict) -> None:
        """Seed or replace a role assignment as-is (the ARM GET shape). No event, no log."""
        self.authz.seed_assignment(assignment)

    def put_role_definition(self, definition: dict) -> None:
        """Seed or replace a role definition as-is (the ARM GET shape): a custom role, or a built-in
        outside the product catalogue (``BuiltInRole``, assignable at ``/``). No event, no log."""
        self.authz.seed_definition(definition)

    # ---- Key Vault and storage keys --------------------------------------------------
    def put_secret(self, bundle: dict) -> None:
        """Seed one secret version (a Key Vault GET bundle; the newest ``created`` is current). No event."""
        self.vaults.seed("secrets", [bundle])

    def put_key(self, bundle: dict) -> None:
        """Seed one key version (a Key Vault GET key bundle, material optional). No event."""
        self.vaults.seed("keys", [bundle])

    def secret_versions(self, vault: str, name: str) -> list[dict]:
        """Every version's bundle, values included, newest (current) last; [] if unknown."""
        with self._lock:
            obj = self.vaults.find("secrets", vault, name)
            return copy.deepcopy(obj.versions) if obj else []

    def get_secret(self, vault: str, name: str, version: str | None = None) -> dict | None:
        """One version's bundle (the current one by default), value included; None if unknown."""
        with self._lock:
            obj = self.vaults.find("secrets", vault, name)
            found = obj.find(version) if obj else None
            return copy.deepcopy(found) if found is not None else None

    def key_versions(self, vault: str, name: str) -> list[dict]:
        with self._lock:
            obj = self.vaults.find("keys", vault, name)
            for bundle in obj.versions if obj else []:
                self.vaults.ensure_material(bundle)
            return copy.deepcopy(obj.versions) if obj else []

    def get_key(self, vault: str, name: str, version: str | None = None) -> dict | None:
        with self._lock:
            obj = self.vaults.find("keys", vault, name)
            found = obj.find(version) if obj else None
            if found is not None:
                self.vaults.ensure_material(found)
            return copy.deepcopy(found) if found is not None else None

    def storage_keys(self, account_id: str) -> list[dict]:
        """The account's keys as listKeys answers them (generated at first use, like listKeys, when the
        account exists); [] for an account with neither keys nor a resource."""
        with self._lock:
            return self.storage.keys(account_id, create=self.store.find(account_id) is not None)

    def keyvault_event(self, event_type: str, vault: str, name: str | None = None, version: str | None = None,
                       *, schema: str = "eventgrid") -> dict:
        """A Key Vault event as the vault's system topic delivers it (``SecretNearExpiry``, ``SecretExpired``,
        ``KeyNearExpiry``, ``KeyExpired``, ``VaultAccessPolicyChanged``, ``*NewVersionCreated``,
        ``Certificate*``), for world files and tests; NOT queued. The object's current version unless
        ``version``; ``NBF``/``EXP`` from its attributes. ``schema="cloudevents"`` for the CloudEvents form."""
        from guardrails.local.keyvault_events import to_cloud_event

        with self._lock:
            event = self.vaults.event(event_type, vault, name, version)
        if schema == "cloudevents":
            return to_cloud_event(event)
        if schema != "eventgrid":
            raise ValueError("schema is 'eventgrid' or 'cloudevents'")
        return event

    # ---- Event Grid custom topics -----------------------------------------------------
    def add_topic(self, name: str, *, keys: Iterable[str] | None = None,
                  senders: Iterable[str] | None = None) -> tuple[str, ...]:
        """Create a custom topic; its access keys (two, generated unless given). ``senders``: the
        object/app ids a bearer token may carry (None: any local token)."""
        with self._lock:
            return self.topics.add(name, keys=keys, senders=senders).keys

    def topic_endpoint(self, name: str) -> str:
        """Where the emulator serves ``https://<topic>.<region>-1.eventgrid.azure.net/api/events``."""
        return f"{self.base_url}/topics/{name.lower()}/api/events"

    def published_events(self, name: str) -> list[dict]:
        """Every event the topic accepted, as sent, in arrival order."""
        with self._lock:
            return self.topics.events(name)

    def drain_events(self) -> list[dict]:
        """Every queued event (ARM, role assignment and Key Vault events, in emission order)."""
        return self.store.drain_events()

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def add_fault(self, method: str | None = None, path_regex: str = ".*", status: int | None = None,
                  retry_after: int | None = None, times: int | None = None, delay_ms: int = 0,
                  code: str | None = None, message: str | None = None) -> None:
        """The first matching fault with times left fires: sleep ``delay_ms``, then answer ``status``
        (ARM error shape, ``Retry-After`` if given; its ``error.code`` ``code``, e.g. ARM's
        ``AuthorizationFailed`` / ``ScopeLocked``, else the status's name) or, with no status, carry
        on. ``path_regex`` is
        searched (case-insensitive) in the decoded path as logged (Key Vault: ``/vaults/<vault>/secrets/...``).
        Key Vault's unauthenticated challenge requests are never faulted, so ``times`` counts real calls."""
        with self._lock:
            self._faults.append(_Fault(method, path_regex, status, retry_after, times, int(delay_ms or 0),
                                       code, message))

    def clear_faults(self) -> None:
        """Forget every fault ``add_fault`` set (those with times left included)."""
        with self._lock:
            self._faults.clear()

    def fail_operations(self, path_regex: str, *, code: str = "InternalServerError",
                        message: str = "The operation failed.", times: int | None = None) -> None:
        """Long-running writes whose resource id matches ``path_regex`` (case-insensitive) end
        ``Failed`` with ``code`` instead of applying (``times`` of them; None: all), and ARM's
        ``ResourceWriteFailure`` for them is queued with the write's correlation id."""
        import re
        with self._lock:
            self.store.operation_faults.append({"regex": re.compile(path_regex, re.IGNORECASE), "code": code,
                                                "message": message, "times": times})

    # ---- dispatch --------------------------------------------------------------------
    def _dispatch(self, req: EmuRequest) -> EmuResponse:
        route = next((r for r in self.routes if r.claims(req)), None)
        if route is not None:
            req.host = route.host_for(req) if hasattr(route, "host_for") else route.host
        faultable = route is None or not hasattr(route, "faultable") or route.faultable(req)
        entry = {"method": req.method, "host": req.host, "path": req.path, "query": dict(req.query),
                 "status": None, "caller": req.caller,
                 "correlation_id": req.header("x-ms-correlation-request-id"),
                 "body": copy.deepcopy(req.body) if req.body_is_json else None}
        with self._lock:
            self._log.append(entry)
            fault = next((f for f in self._faults if f.matches(req)), None) if faultable else None
            if fault is not None and fault.times is not None:
                fault.times -= 1
        try:
            resp = self._respond(req, route, fault)
        except ArmError as exc:
            resp = exc.response()
        except Exception as exc:  # an emulator bug must still answer, and show in the log
            resp = arm_error(500, "InternalServerError", f"emulator error: {type(exc).__name__}: {exc}")
        with self._lock:
            entry["status"] = resp.status
        return resp

    def _respond(self, req: EmuRequest, route: Any, fault: _Fault | None) -> EmuResponse:
        if fault is not None:
            if fault.delay_ms:
                time.sleep(fault.delay_ms / 1000.0)
            if fault.status is not None:
                return fault.response()
        if self.read_throttle is not None:
            self.read_throttle.check(req)
        self.store.complete_due()
        if route is None:
            return arm_error(404, "NotFound", f"No route for '{req.method} {req.path}'.")
        return route.handle(self, req)
