"""The dead-letter container Event Grid writes undeliverable events to (``infra/modules/app.bicep``:
``eventgrid-deadletter`` in the deployment's own storage account), read only: listing names and
sizes, downloading one blob (never more than a dead letter can hold). The replay's progress is kept
in Table Storage, not on the blobs, so the identity needs no write access to what Event Grid wrote.

Configured like the tables: ``GUARDRAILS_DEAD_LETTER_CONNECTION`` (a connection string: Azurite,
never logged) or ``GUARDRAILS_DEAD_LETTER_ENDPOINT`` (``https://<account>.blob.core.windows.net``,
the managed identity), and ``GUARDRAILS_DEAD_LETTER_CONTAINER``. ``azure-storage-blob`` is
imported on first use only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from ..deadletter import MAX_BLOB_BYTES
from ..errors import ConfigError, StoreError


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    last_modified: str      # ISO 8601 UTC, or ""


def _error(what: str, exc: Exception) -> StoreError:
    status = getattr(exc, "status_code", None)
    return StoreError(f"dead-letter container {what} failed ({type(exc).__name__}, status {status})")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ""


class DeadLetterContainer:
    # guardrails.permissions: on the deployment's own storage account (Storage Blob Data Owner,
    # which the Functions host's identity-based storage needs anyway)
    own_permissions = ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",)

    def __init__(self, container_client: Any) -> None:
        self._c = container_client
        self.name = getattr(container_client, "container_name", "")

    @classmethod
    def from_settings(cls, settings, credential=None) -> "DeadLetterContainer | None":
        """The configured container, or None when dead-letter replay is not configured."""
        if not settings.dead_letter_replay:
            return None
        from azure.storage.blob import ContainerClient

        from .transport import client_options
        kwargs = client_options(retry_total=2, connection_timeout=5, read_timeout=30)
        if settings.dead_letter_connection:
            conn = settings.dead_letter_connection
            if conn.replace(" ", "").lower() == "usedevelopmentstorage=true":
                from ..local.azurite import blob_connection_string
                conn = blob_connection_string(10000)    # Azurite's fixed default blob port
            try:
                client = ContainerClient.from_connection_string(conn, settings.dead_letter_container, **kwargs)
            except ValueError:
                raise ConfigError("setting GUARDRAILS_DEAD_LETTER_CONNECTION is not a storage connection string "
                                  "with a blob endpoint") from None
        else:
            client = ContainerClient(settings.dead_letter_endpoint, settings.dead_letter_container,
                                     credential=credential, **kwargs)
        return cls(client)

    def list(self) -> Iterator[BlobInfo]:
        """Every blob in the container (names, sizes, times: no content), streamed page by page as
        the service returns them (5,000 a page), never held as a whole: a failure may come while
        iterating, as ``StoreError``."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError
        try:
            for b in self._c.list_blobs():
                yield BlobInfo(str(b.name), int(b.size or 0), _iso(b.last_modified))
        except ResourceNotFoundError:      # infra/ creates it: a wrong name or account, not "nothing lost"
            raise StoreError(f"dead-letter container {self.name!r} not found: check "
                             "GUARDRAILS_DEAD_LETTER_CONTAINER / _ENDPOINT") from None
        except AzureError as exc:
            raise _error("list", exc) from exc

    def read(self, name: str) -> bytes | None:
        """One blob's content, at most ``MAX_BLOB_BYTES`` + 1 bytes whatever it has grown to since it
        was listed (more is unreadable to ``deadletter.parse_blob``: never downloaded whole), or None
        when it is gone (deleted since it was listed)."""
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
        try:
            # a range: the SDK asks for bytes 0-MAX_BLOB_BYTES and takes what the blob has, when less
            return self._c.download_blob(name, offset=0, length=MAX_BLOB_BYTES + 1).readall()
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            if exc.status_code == 416:      # a range from 0 of an empty blob: the service's "InvalidRange"
                return b""
            raise _error("read", exc) from exc
        except AzureError as exc:
            raise _error("read", exc) from exc


__all__ = ["BlobInfo", "DeadLetterContainer"]
