"""Azure Resource Manager through the real SDK (``azure-mgmt-resource`` generic by-id
operations with the catalogue's api-versions), with retries bounded by the delivery's time
budget. Bodies are REST-shaped dicts (``{"properties": {"publicNetworkAccess": ...}}``): the
TypeSpec-style SDK sends dicts verbatim, so snake_case would be silently ignored by ARM.

Writes (PATCH / PUT by id) go through the client's pipeline (``send_request``: credential,
request id, proxy, TLS) rather than ``begin_update_by_id`` / ``begin_create_or_update_by_id``,
for two reasons:

- the generic operations accept only the answers the generic spec lists (PATCH: 200, 202), but
  resource providers answer their own way: a Container Registry PATCH is ``201`` +
  ``Azure-AsyncOperation`` with ``provisioningState: Updating`` (REST spec
  ``RegistryUpdate.json``; Key Vault's vault update lists 201 too). The SDK raised "answered
  201" for a fix that went through. Any 200/201/202 is ARM accepting the write.
- ``LROPoller`` polls on a background thread: ``result(timeout=...)`` only stops *waiting*, the
  thread keeps polling after the delivery ended. ARM's long-running-operation algorithms
  (``ARMPolling``: Azure-AsyncOperation, Location, provisioningState) are driven here, one status
  request at a time on the delivery's thread, honouring ``Retry-After`` (never faster than
  ``MIN_POLL_INTERVAL``) and stopping when the budget ends: nothing polls afterwards.

Outcomes of a write: ``done`` (ARM says it finished), ``requested`` (accepted or possibly applied,
outcome not known within the budget: confirmed later by the write's own event), or an error
(refused, or the operation ended ``Failed`` / ``Canceled``).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import quote

from azure.core.exceptions import (AzureError, ClientAuthenticationError, HttpResponseError, ResourceExistsError,
                                   ResourceNotFoundError, ServiceRequestError, map_error)

from ..errors import UNAUTHENTICATED, ArmError, ArmOperationFailed, ArmThrottled, ArmTransient, refusal_reason
from ..model.resource import ResourceSnapshot
from ..ports import WriteResult
from .retry import BudgetedCaller, lost_answer, retry_after_header
from .transport import client_options

T = TypeVar("T")
_PLACEHOLDER_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"  # by-id calls do not use it

# Between two status requests of a long-running write: ARM's Retry-After when it sends one, else
# POLL_INTERVAL; never less than MIN_POLL_INTERVAL (a ``Retry-After: 0`` must not become a busy
# loop against the subscription's read bucket).
POLL_INTERVAL = 1.0
MIN_POLL_INTERVAL = 0.5

_ACCEPTED = frozenset({200, 201, 202})      # ARM took the write (201/202: it may still be running)
_ERROR_MAP = {401: ClientAuthenticationError, 404: ResourceNotFoundError, 409: ResourceExistsError}
_ACCEPT_JSON = {"Accept": "application/json"}


_shared_credential: list[Any] = []           # the process's DefaultAzureCredential, made once
_credential_lock = threading.Lock()


def build_credential(settings):
    """One credential per process, passed to every client: the event path's service, the
    sweeper's, the dead-letter replayer's and the checks share one ``DefaultAzureCredential`` and
    its token cache (one managed-identity token request per audience, not one per consumer). The
    local emulator's credential is made per call (it holds no tokens worth sharing)."""
    if settings.credential == "local":
        from ..local.credential import LocalTokenCredential
        return LocalTokenCredential(object_id=settings.local_object_id, app_id=settings.local_app_id,
                                    name="guardrails-local")
    with _credential_lock:
        if not _shared_credential:
            from azure.identity import DefaultAzureCredential
            _shared_credential.append(DefaultAzureCredential())
        return _shared_credential[0]


def encode_id(resource_id: str) -> str:
    """Percent-encode (UTF-8) an ARM id for the URL path; the SDK inserts it unquoted."""
    return quote(resource_id.lstrip("/"), safe="/()")


@functools.cache
def _status_polling() -> type:
    from azure.mgmt.core.polling.arm_polling import ARMPolling

    class StatusPolling(ARMPolling):
        """``ARMPolling`` driven one status request at a time by ``ArmGateway._poll`` (never by
        ``LROPoller``'s thread), each request's read timeout bounded by the delivery's deadline.
        Its result is None instead of a ``GenericResource`` (nothing reads it: the guardrail
        confirms a fix by its own GET, so no final GET of the resource is made either)."""

        def __init__(self, read_timeout: Callable[[], float]) -> None:
            super().__init__(POLL_INTERVAL)
            self._read_timeout = read_timeout

        def request_status(self, status_link):
            self._operation_config["read_timeout"] = self._read_timeout()
            return super().request_status(status_link)

        def last_response(self):
            """The last answer: the write's own, then each status request's (an error one too)."""
            return self._pipeline_response.http_response

        def resource(self):
            return None

    return StatusPolling


def _error_code(response) -> str | None:
    """``error.code`` of a status body that says Failed / Canceled, if it says one."""
    try:
        error = json.loads(response.text()).get("error")
    except (ValueError, AttributeError, TypeError):
        return None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code)[:100] if code else None


# the operation-status resources of the namespaces whose writes run long (Azure-AsyncOperation /
# Location answers): Azure ML (online endpoints: mfeOperationsStatus / mfeOperationResults;
# workspaces: workspaceOperationsStatus) and Container Registry (operationResults), as the Azure ML
# permissions reference and the Container Registry built-in roles name them. Storage and Key Vault
# PATCHes answer at once.
OPERATION_STATUS_READS = {
    "Microsoft.MachineLearningServices": ("Microsoft.MachineLearningServices/locations/mfeOperationResults/read",
                                          "Microsoft.MachineLearningServices/locations/mfeOperationsStatus/read",
                                          "Microsoft.MachineLearningServices/locations/workspaceOperationsStatus/read"),
    "Microsoft.ContainerRegistry": ("Microsoft.ContainerRegistry/locations/operationResults/read",),
}


class ArmGateway:
    """Implements ``ports.ResourceGateway``."""

    @staticmethod
    def permissions() -> tuple[str, ...]:
        """GET / PATCH / PUT by id of every catalogue type (``guardrails.permissions``), and the
        reads of the operation status a long-running write answers with (``_poll``: ARM checks a GET
        of ``/providers/<ns>/locations/<l>/<kind>/<id>`` as ``<ns>/locations/<kind>/read``; without
        it every such fix would end ``requested``, confirmed only by its own write event)."""
        from ..model.resource import CATALOG
        names = [t.name for t in CATALOG.values()]
        namespaces = {n.split("/", 1)[0].lower() for n in names}
        return tuple(f"{n}/{verb}" for n in names for verb in ("read", "write")) + tuple(
            a for ns, actions in OPERATION_STATUS_READS.items() if ns.lower() in namespaces for a in actions)

    def __init__(self, credential, *, endpoint: str, ca_bundle: str | None = None,
                 timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from azure.mgmt.resource.resources import ResourceManagementClient

        kwargs = client_options(ca_bundle, retry_total=0)
        self._client = ResourceManagementClient(credential, _PLACEHOLDER_SUBSCRIPTION, base_url=endpoint, **kwargs)
        self._caller = BudgetedCaller(timeout=timeout, sleep=sleep, clock=clock)
        self._clock = clock
        self._endpoint = endpoint.rstrip("/")

    @property
    def calls(self) -> int:
        return self._caller.calls

    def _call(self, fn: Callable[[], T], *, deadline: float | None, what: str) -> T:
        return self._caller.call(fn, deadline=deadline, what=what)

    def _send(self, request, **kwargs):
        """``request`` through the client's own pipeline (credential, request id, tracing, logging,
        transport), handed to its ``PipelineClient`` directly: the generated client's
        ``send_request`` deep-copies every request first (a PATCH's body too) and formats its URL
        again, and its ``get_by_id`` serializes the id and query through its model layer. Each
        request here is built once, absolute, and never reused (~0.05 ms of CPU less per call)."""
        client = self._client
        return getattr(client, "_client", client).send_request(request, **kwargs)

    def _url(self, resource_id: str, api_version: str) -> str:
        """The absolute URL of ``resource_id`` at ``api_version`` (the id percent-encoded)."""
        return f"{self._endpoint}/{encode_id(resource_id)}?api-version={quote(api_version, safe='')}"

    def _timeout_for(self, deadline: float | None) -> float:
        return self._caller.timeout_for(deadline)

    # -- ResourceGateway ----------------------------------------------------------------
    def get_resource(self, resource_id: str, *, api_version: str, deadline: float | None = None) -> ResourceSnapshot:
        from azure.core.rest import HttpRequest
        from azure.mgmt.core.exceptions import ARMErrorFormat

        url = self._url(resource_id, api_version)

        def go():
            # streamed, then read here, inside the budgeted call (a connection dropped mid-body is
            # retried like any other): not decoded by the pipeline's ContentDecodePolicy first,
            # which parses the JSON a second time and takes a content type it does not know for an
            # answer cut off (a 429 would lose its Retry-After); errors as get_by_id raises them
            resp = self._send(HttpRequest("GET", url, headers=_ACCEPT_JSON), stream=True,
                              read_timeout=self._timeout_for(deadline))
            resp.read()
            if resp.status_code != 200:
                map_error(status_code=resp.status_code, response=resp, error_map=_ERROR_MAP)
                raise HttpResponseError(response=resp, error_format=ARMErrorFormat)
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

    def _write(self, method: str, resource_id: str, body: Mapping[str, Any], *, api_version: str,
               headers: dict[str, str], deadline: float, what: str) -> WriteResult:
        from azure.core.pipeline import PipelineContext, PipelineResponse
        from azure.core.rest import HttpRequest
        from azure.mgmt.core.exceptions import ARMErrorFormat

        lost: list[BaseException] = []          # attempts sent whose answer never (wholly) came back
        url = self._url(resource_id, api_version)

        def send():
            request = HttpRequest(method, url, json=dict(body), headers={**_ACCEPT_JSON, **headers})
            try:
                # streamed and read here, as a GET (no second JSON parse, no decode error for a
                # content type the pipeline does not know)
                response = self._send(request, stream=True, read_timeout=self._timeout_for(deadline))
                response.read()
            except AzureError as exc:
                if lost_answer(exc):
                    lost.append(exc)
                raise
            if response.status_code not in _ACCEPTED:
                map_error(status_code=response.status_code, response=response, error_map=_ERROR_MAP)
                raise HttpResponseError(response=response, error_format=ARMErrorFormat)
            return response

        try:
            response = self._call(send, deadline=deadline, what=what)
        except ArmError as exc:
            if lost and self._maybe_applied(exc, conditional="If-Match" in headers):
                return WriteResult("requested")
            raise
        polling = _status_polling()(lambda: self._timeout_for(deadline))
        try:
            polling.initialize(self._client, PipelineResponse(response.request, response, PipelineContext(None)),
                               lambda _pipeline_response: None)
        except AzureError:
            return WriteResult("requested")      # accepted (2xx), but its answer names no readable state
        return self._poll(polling, deadline=deadline, what=what)

    @staticmethod
    def _maybe_applied(exc: ArmError, *, conditional: bool) -> bool:
        """After an attempt whose answer was lost (it may have been applied), whether this later
        error leaves the write's outcome unknown rather than refused:

        - the budget ran out (throttled, 5xx, more lost answers): nothing says it was not applied;
        - ``412`` on a conditional PUT: the lost attempt may be what changed the etag (retrying an
          ``If-Match`` PUT is safe, the condition stops a second application, so a first attempt
          that never arrived is still made; but its refusal is no proof of failure);
        - ``409``: ARM refuses a write while another operation on the resource runs, likely the
          lost attempt's own.

        Unknown is ``requested``: confirmed by the write's own event (its correlation id), never
        audited ``failed`` for a fix that went through. Any other refusal (400, 403, 404) would
        have refused the first attempt too, except the guardrails' own identity failing to get or use a
        token (``unauthenticated``: the token expired after the attempt that was lost), which says
        nothing about that attempt."""
        if isinstance(exc, (ArmThrottled, ArmTransient)) or exc.reason == UNAUTHENTICATED:
            return True
        return exc.status == 409 or (conditional and exc.status == 412)

    def _poll(self, polling, *, deadline: float, what: str) -> WriteResult:
        """Drive ``polling`` until the operation ends or the budget does. A status request that
        fails transiently (429 / 5xx, a connection lost) is made again while the budget allows;
        any other poll failure (an unreadable status, a 4xx on the status URL) says nothing about
        the write ARM accepted: ``requested``, like a write still running at the deadline. Only
        the operation itself ending ``Failed`` / ``Canceled`` is an error.

        When the next regular wait does not fit, one last status request is made at the deadline
        (unless ARM's Retry-After reaches past it), so a write that ends in the budget's last
        interval is ``done``, not ``requested``; then nothing more. Like every call at the edge of
        the budget, that request may take up to ``BudgetedCaller.timeout_for``'s floor (0.5 s)."""
        from azure.core.polling.base_polling import BadResponse, BadStatus

        last_call = False
        while not polling.finished():
            if last_call:
                return WriteResult("requested")
            after = retry_after_header(polling.last_response().headers)
            wait = max(MIN_POLL_INTERVAL, POLL_INTERVAL if after is None else after)
            left = deadline - self._clock()
            if wait >= left:
                if left <= 0 or (after is not None and after >= left):
                    return WriteResult("requested")
                wait, last_call = left, True
            self._caller.sleep(wait)
            try:
                polling.update_status()
            except BadStatus:
                code = polling.last_response().status_code
                if code == 429 or code >= 500:
                    continue
                return WriteResult("requested")
            except (BadResponse, AzureError) as exc:
                if isinstance(exc, ServiceRequestError) or lost_answer(exc):
                    continue
                return WriteResult("requested")
        status = polling.status()
        if str(status).lower() in ("failed", "canceled", "cancelled"):
            code = _error_code(polling.last_response())
            raise ArmOperationFailed(f"{what}: the operation ended {status}{' (' + code + ')' if code else ''}",
                           reason=refusal_reason(None, code))
        return WriteResult("done")

    def patch_resource(self, resource_id: str, body: Mapping[str, Any], *, api_version: str,
                       deadline: float, correlation_id: str | None = None) -> WriteResult:
        headers = {"x-ms-correlation-request-id": correlation_id} if correlation_id else {}
        return self._write("PATCH", resource_id, body, api_version=api_version, headers=headers,
                           deadline=deadline, what=f"PATCH {resource_id}")

    def put_resource(self, resource_id: str, body: Mapping[str, Any], *, api_version: str,
                     etag: str | None, deadline: float, correlation_id: str | None = None) -> WriteResult:
        headers = {"If-Match": etag} if etag else {}
        if correlation_id:
            headers["x-ms-correlation-request-id"] = correlation_id
        return self._write("PUT", resource_id, body, api_version=api_version, headers=headers,
                           deadline=deadline, what=f"PUT {resource_id}")
