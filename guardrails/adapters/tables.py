"""Table Storage: the client holder and table names (``Tables``) and the helpers every table adapter
shares (``NO_CONTENT``, ``resource_partition``, ``delete_existing``, ``_store_error`` ...).

Table layout (keys may not contain ``/ \\ # ?``; every key here is a hash or a date):

  <prefix>Policies          the policy rows and the ``metadata sync`` lease: see ``policy_tables``
  <prefix>Idempotency       PK sha[:2]             RK sha256(event id)  status, expires_at, verdict, holder
  <prefix>Audit             PK "YYYYMMDD-SS"       RK "<time>-<delivery>"   one row per delivery
  <prefix>AuditByResource   PK sha256(resource)[:32] RK "<time>-<delivery>" same row, per resource
  <prefix>Breakers          PK sha(policy|sub)[:32] RK "breaker"        action times in window, open flag
  <prefix>PendingFixes      PK sha256(resource)[:32] RK sha(event id)   fixes still running (requested)
  <prefix>Escalations       PK sha256(resource)[:32] RK "flipflop"      revert times in window, actors, escalated

The adapters: Policies in ``policy_tables`` (``TablePolicyRepository``); Idempotency in
``idempotency_tables``; Audit and AuditByResource in ``audit_tables``; Breakers and PendingFixes in
``remediation_tables``; Escalations in ``escalations``; the decision-event outbox
(``<prefix>Outbox``, created on first use) in ``outbox_tables``; the timers' tables in ``sweep_tables``.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Sequence

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient

from ..errors import StoreError

# Insert Entity answers 201 with the whole entity unless asked not to; the guardrail needs only the
# ETag header, so creates ask for 204 (less to send, nothing to parse)
NO_CONTENT = {"response_preference": "return-no-content"}
_log = logging.getLogger("guardrails")
_MAX_STRING = 30_000  # Table Storage strings are <= 64 KiB (32K UTF-16 chars)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _store_error(what: str, exc: Exception) -> StoreError:
    status = getattr(exc, "status_code", None)
    err = StoreError(f"table storage {what} failed ({type(exc).__name__}, status {status})")
    err.status = status
    return err


def resource_partition(resource_id: str) -> str:
    return _sha(resource_id.lower())[:32]


def delete_existing(table, pk: str, rk: str, what: str) -> bool:
    """Delete one entity; whether there was one. ``delete_entity`` answers a missing entity as a
    deleted one (the SDK swallows the 404), so an operator's reset of a mistyped name would
    report state it never had: a read says. Store failures raise ``StoreError``."""
    try:
        table.get_entity(pk, rk, select=["PartitionKey"])
        table.delete_entity(pk, rk)
    except ResourceNotFoundError:
        return False
    except AzureError as exc:
        raise _store_error(what, exc) from exc
    return True


class Tables:
    """Owns the TableServiceClient and the product's table names."""

    # guardrails.permissions: on the deployment's own storage account (Storage Table Data Contributor)
    own_permissions = tuple(f"Microsoft.Storage/storageAccounts/tableServices/tables/{a}" for a in (
        "write", "entities/read", "entities/write", "entities/add/action", "entities/update/action", "entities/delete"))

    def __init__(self, service: TableServiceClient, prefix: str = "Guardrails") -> None:
        self.service = service
        self.prefix = prefix
        self.policies_name = f"{prefix}Policies"
        self.idempotency_name = f"{prefix}Idempotency"
        self.audit_name = f"{prefix}Audit"
        self.audit_index_name = f"{prefix}AuditByResource"
        self.breakers_name = f"{prefix}Breakers"
        self.pending_name = f"{prefix}PendingFixes"
        self.escalations_name = f"{prefix}Escalations"
        self._clients: dict[str, TableClient] = {}

    @classmethod
    def from_settings(cls, settings, credential=None) -> "Tables":
        """The client the settings configure. A connection string the SDK cannot parse (or an
        endpoint it refuses) is a ``ConfigError`` naming the setting, never its value (it holds a key)."""
        from ..errors import ConfigError
        from ..settings import TABLES_CONNECTION, TABLES_ENDPOINT
        from .transport import client_options
        kwargs = client_options(retry_total=2, connection_timeout=5, read_timeout=10)
        if settings.tables_connection:
            conn = settings.tables_connection
            if conn.replace(" ", "").lower() == "usedevelopmentstorage=true":
                from ..local.azurite import connection_string
                conn = connection_string(10002)  # Azurite's fixed default port
            try:
                service = TableServiceClient.from_connection_string(conn, **kwargs)
            except ValueError:
                raise ConfigError(f"{TABLES_CONNECTION} is not a table storage connection string (AccountName=...;"
                                  "AccountKey=...;TableEndpoint=... or UseDevelopmentStorage=true)") from None
        elif settings.tables_endpoint:
            if credential is None:
                raise ConfigError(f"{TABLES_ENDPOINT} needs an identity: the caller passes no credential")
            try:
                service = TableServiceClient(endpoint=settings.tables_endpoint, credential=credential, **kwargs)
            except ValueError:
                raise ConfigError(f"{TABLES_ENDPOINT} is not a table service endpoint URL") from None
        else:
            raise ConfigError(f"no table storage configured: set {TABLES_CONNECTION} or "
                              f"{TABLES_ENDPOINT} (or AzureWebJobsStorage)")
        return cls(service, settings.table_prefix)

    def table(self, name: str) -> TableClient:
        client = self._clients.get(name)
        if client is None:
            client = self.service.get_table_client(name)
            self._clients[name] = client
        return client

    def exists(self, name: str) -> bool:
        """Whether table ``name`` exists, creating nothing: one query that matches no row (an entity
        reader's role suffices). For the operator's read and reset commands, where a table that is
        not there means a mistyped ``GUARDRAILS_TABLE_PREFIX``, not "no state". Other failures raise
        ``StoreError``."""
        try:
            for _row in self.table(name).query_entities("PartitionKey eq @pk", parameters={"pk": ""},
                                                        select=["PartitionKey"], results_per_page=1):
                break
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise _store_error(f"read table {name}", exc) from exc
        return True

    def ensure(self, names: Sequence[str] | None = None) -> None:
        """Create the tables (``names``, default the worker's own: every table but the policy
        table) that do not exist yet. Only ``metadata sync`` creates the policy table
        (``TablePolicyRepository.replace_all``): a worker that created it (a mistyped
        ``GUARDRAILS_TABLE_PREFIX``, a deleted table, a sync never run) would read an empty policy
        set and ignore every event; without it, its read fails (``PolicyUnreadable``)."""
        try:
            for name in names or (self.idempotency_name, self.audit_name, self.audit_index_name,
                                  self.breakers_name, self.pending_name, self.escalations_name):
                self.service.create_table_if_not_exists(name)
        except AzureError as exc:
            raise _store_error("create tables", exc) from exc
