"""``DeadLetterContainer.read`` (session 32): never more than a dead letter can hold, whatever the blob
grew to after the listing; how it maps the SDK's answers (an empty blob's 416, a gone blob, a failure)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from guardrails.adapters.deadletters import DeadLetterContainer
from guardrails.deadletter import MAX_BLOB_BYTES, parse_blob
from guardrails.errors import StoreError


class Downloader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def readall(self) -> bytes:
        return self.data


class Client:
    """``ContainerClient.download_blob`` as the SDK answers a range: at most ``length`` bytes."""

    container_name = "eventgrid-deadletter"

    def __init__(self, blobs: dict[str, bytes], error: Exception | None = None) -> None:
        self.blobs, self.error, self.calls = blobs, error, []

    def download_blob(self, name, offset=None, length=None, **kw):
        self.calls.append((name, offset, length))
        if self.error is not None:
            raise self.error
        if name not in self.blobs:
            raise ResourceNotFoundError("BlobNotFound")
        data = self.blobs[name]
        return Downloader(data[offset:offset + length] if offset is not None else data)


def _http_error(status: int) -> HttpResponseError:
    err = HttpResponseError(message=f"status {status}")
    err.status_code = status
    return err


def test_a_blob_is_read_as_a_range_of_one_byte_more_than_a_dead_letter_holds():
    c = Client({"small": b"[]", "grown": b"[" + b" " * (MAX_BLOB_BYTES + 100) + b"]"})
    box = DeadLetterContainer(c)
    assert box.read("small") == b"[]"
    grown = box.read("grown")
    # THEN never more than the limit and one byte: enough for parse_blob to call it unreadable
    assert len(grown) == MAX_BLOB_BYTES + 1
    assert parse_blob("grown", grown).unreadable.endswith(f"more than the {MAX_BLOB_BYTES} a dead-letter blob can hold")
    assert {(o, n) for _, o, n in c.calls} == {(0, MAX_BLOB_BYTES + 1)}


def test_an_empty_blob_answered_416_is_read_as_empty_not_as_a_failure():
    # a range from byte 0 of an empty blob is the service's 416 InvalidRange (the SDK retries without
    # a range only when none was asked for)
    box = DeadLetterContainer(Client({}, error=_http_error(416)))
    assert box.read("empty") == b""
    assert parse_blob("empty", b"").unreadable.startswith("not JSON")


def test_a_gone_blob_is_none_and_a_failure_is_a_store_error_without_content():
    assert DeadLetterContainer(Client({})).read("gone") is None
    with pytest.raises(StoreError, match=r"dead-letter container read failed \(HttpResponseError, status 503\)"):
        DeadLetterContainer(Client({}, error=_http_error(503))).read("x")
