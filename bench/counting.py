"""Count Table Storage calls through the azure-core pipeline, without touching product code.

The product builds its ``TableServiceClient`` with ``from_connection_string(conn, **kwargs)``.
While ``counting_tables(counter)`` is active, that classmethod gets one more keyword,
``raw_response_hook=counter.hook``: azure-core's ``CustomHookPolicy`` (in every Tables pipeline,
shared by the table clients ``get_table_client`` makes) then reports each HTTP response.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import unquote, urlsplit

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})


def classify(method: str, url: str, headers, prefix: str = "") -> tuple[str, str]:
    """(table role, operation) of one Tables REST call, e.g. ("Idempotency", "create"): the role
    is the table name without the deployment's ``prefix``."""
    path = unquote(urlsplit(url).path)
    last = path.rstrip("/").rsplit("/", 1)[-1]
    name, _, keys = last.partition("(")
    if name == "Tables":
        return "-", "create_table" if method == "POST" else f"{method.lower()}_table"
    role = name[len(prefix):] if prefix and name.startswith(prefix) else name
    if method == "POST":
        op = "create"                                    # create_entity (insert)
    elif method in ("PUT", "PATCH", "MERGE"):
        op = "update" if headers.get("If-Match") not in (None, "*") else "upsert"
    elif method == "DELETE":
        op = "delete"
    elif method == "GET":
        op = "get" if keys.strip(")") else "query"
    else:
        op = method.lower()
    return role, op


class TableCalls:
    """Thread-safe tally of (role, op, status) for every Tables response."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, str, int, str]] = Counter()

    def hook(self, pipeline_response) -> None:
        req = pipeline_response.http_request
        status = pipeline_response.http_response.status_code
        role, op = classify(req.method.upper(), req.url, req.headers, self.prefix)
        with self._lock:
            self.calls[(role, op, status, req.method.upper())] += 1

    def take(self) -> Counter:
        with self._lock:
            out, self.calls = self.calls, Counter()
        return out


def totals(calls: Counter) -> dict[str, int]:
    writes = sum(n for (role, op, status, method), n in calls.items() if method in WRITE_METHODS and role != "-")
    reads = sum(n for (role, op, status, method), n in calls.items() if method == "GET")
    return {"writes": writes, "reads": reads, "total": sum(calls.values())}


def describe(calls: Counter, events: int) -> str:
    """``Idempotency create + Idempotency update + Audit upsert + AuditByResource upsert``."""
    parts = []
    for (role, op, status, _method), n in sorted(calls.items()):
        per = n / events if events else 0
        label = f"{role} {op}" + (f" ({status})" if status >= 300 else "")
        parts.append(label if abs(per - 1) < 1e-9 else f"{per:g}x {label}")
    return " + ".join(parts) or "none"


@contextmanager
def counting_tables(counter: TableCalls) -> Iterator[None]:
    from azure.data.tables import TableServiceClient

    original = TableServiceClient.__dict__["from_connection_string"]

    def from_connection_string(cls, conn_str, **kwargs):
        kwargs.setdefault("raw_response_hook", counter.hook)
        return original.__func__(cls, conn_str, **kwargs)

    TableServiceClient.from_connection_string = classmethod(from_connection_string)
    try:
        yield
    finally:
        TableServiceClient.from_connection_string = original
