"""Azure Resource Manager through the real SDK (``azure-mgmt-resource`` generic by-id
operations with the catalogue's api-versions), with retries bounded by the delivery's time
budget. Bodies are REST-shaped dicts (``{"properties": {"publicNetworkAccess": ...}}``): the
TypeSpec-style SDK sends dicts verbatim, so snake_case would be silently ignored by ARM.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import quote

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

from ..errors import ArmError, ArmThrottled, ArmTransient, ResourceNotFound
from ..model.resource import ResourceSnapshot
from ..ports import WriteResult
from .retry import BudgetedCaller, describe
from .transport import client_options

T = TypeVar("T")
_PLACEHOLDER_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"  # by-id calls do not use it


def build_credential(settings):
    """One credential per process, passed to every client."""
    if settings.credential == "local":
        from ..local.credential import LocalTokenCredential
        return LocalTokenCredential(object_id=settings.local_object_id, app_id=settings.local_app_id,
                                    name="guardrails-local")
    from azure.identity import DefaultAzureCredential
    return DefaultAzureCredential()


def encode_id(resource_id: str) -> str:
    """Percent-encode (UTF-8) an ARM id for the URL path; the SDK inserts it unquoted."""
    return quote(resource_id.lstrip("/"), safe="/()")


@functools.cache
def _status_only_polling() -> type:
    from azure.mgmt.core.polling.arm_polling import ARMPolling

    class StatusOnlyPolling(ARMPolling):
        """``ARMPolling`` whose result is None instead of a ``GenericResource`` built from the final
        body (~0.1 ms of CPU per write the guardrail never looks at)."""

        def resource(self):
            return None

    return StatusOnlyPolling


class ArmGateway:
    """Implements ``ports.ResourceGateway``."""

    @staticmethod
    def permissions() -> tuple[str, ...]:
        """GET / PATCH / PUT by id of every catalogue type (``guardrails.permissions``)."""
        from ..model.resource import CATALOG
        return tuple(f"{t.name}/{verb}" for t in CATALOG.values() for verb in ("read", "write"))

    def __init__(self, credential, *, endpoint: str, ca_bundle: str | None = None,
                 timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from azure.mgmt.resource.resources import ResourceManagementClient

        kwargs = client_options(ca_bundle, retry_total=0, polling_interval=1)
        self._client = ResourceManagementClient(credential, _PLACEHOLDER_SUBSCRIPTION, base_url=endpoint, **kwargs)
        self._caller = BudgetedCaller(timeout=timeout, sleep=sleep, clock=clock)
        self._clock = clock
        self._endpoint = endpoint

    @property
    def calls(self) -> int:
        return self._caller.calls

    def _call(self, fn: Callable[[], T], *, deadline: float | None, what: str) -> T:
        return self._caller.call(fn, deadline=deadline, what=what)

    def _timeout_for(self, deadline: float | None) -> float:
        return self._caller.timeout_for(deadline)

    # -- ResourceGateway ----------------------------------------------------------------
    def get_resource(self, resource_id: str, *, api_version: str, deadline: float | None = None) -> ResourceSnapshot:
        def go():
            # stream=True: the SDK hands back the raw response instead of building a GenericResource
            # model the guardrail would throw away (~0.15 ms of CPU per read); the body is read here,
            # inside the budgeted call, so a connection dropped mid-body is retried like any other
            resp = self._client.resources.get_by_id(
                encode_id(resource_id), api_version=api_version, stream=True,
                cls=lambda pipeline_response, _stream, _headers: pipeline_response.http_response,
                read_timeout=self._timeout_for(deadline))
            resp.read()
            return resp

        resp = self._call(go, deadline=deadline, what=f"GET {resource_id}")
        try:
            body = json.loads(resp.content)
        except ValueError:
            raise ArmError(f"GET {resource_id}: ARM returned a body that is not JSON") from None
        if not isinstance(body, dict):
            raise ArmError(f"GET {resource_id}: ARM returned a non-object body")
        etag = resp.headers.get("ETag") or body.get("etag")
        return ResourceSnapshot(resource_id=body.get("id") or resource_id, type=body.get("type") or "",
                                body=body, etag=etag)

    def _polling(self, read_timeout: float):
        """ARM's long-running-operation algorithms (Azure-AsyncOperation, Location, body status)
        polling every 0.2 s, without turning the final body into a model: nothing reads it, the
        guardrail confirms a write by its own GET."""
        return _status_only_polling()(0.2, path_format_arguments={"endpoint": self._endpoint}, read_timeout=read_timeout)

    def _write(self, begin: Callable[[], Any], *, deadline: float, what: str) -> WriteResult:
        poller = self._call(begin, deadline=deadline, what=what)
        remaining = deadline - self._clock()
        if remaining > 0:
            try:
                poller.result(timeout=remaining)
            except ResourceNotFoundError as exc:
                raise ResourceNotFound(f"{what}: resource not found", status=404) from exc
            except HttpResponseError as exc:
                status = exc.status_code or 0
                kind = ArmThrottled if status == 429 else ArmTransient if status >= 500 else ArmError
                raise kind(f"{what}: {describe(exc)}", status=status) from exc
            except AzureError:
                # the write was accepted; only polling its status failed (a connection reset, a
                # read timeout): its outcome is unknown, as when the budget runs out: ``requested``,
                # confirmed by the write's own event (a pending record), never an unaudited error
                return WriteResult("requested")
        if not poller.done():
            return WriteResult("requested")
        return WriteResult("done")

    def patch_resource(self, resource_id: str, body: Mapping[str, Any], *, api_version: str,
                       deadline: float, correlation_id: str | None = None) -> WriteResult:
        headers = {"x-ms-correlation-request-id": correlation_id} if correlation_id else {}

        def begin():
            timeout = self._timeout_for(deadline)
            return self._client.resources.begin_update_by_id(
                encode_id(resource_id), dict(body), api_version=api_version, headers=headers,
                polling=self._polling(timeout), read_timeout=timeout)
        return self._write(begin, deadline=deadline, what=f"PATCH {resource_id}")

    def put_resource(self, resource_id: str, body: Mapping[str, Any], *, api_version: str,
                     etag: str | None, deadline: float, correlation_id: str | None = None) -> WriteResult:
        headers = {"If-Match": etag} if etag else {}
        if correlation_id:
            headers["x-ms-correlation-request-id"] = correlation_id

        def begin():
            timeout = self._timeout_for(deadline)
            return self._client.resources.begin_create_or_update_by_id(
                encode_id(resource_id), dict(body), api_version=api_version, headers=headers,
                polling=self._polling(timeout), read_timeout=timeout)
        return self._write(begin, deadline=deadline, what=f"PUT {resource_id}")
