"""Review of 71acd47 (ARM GET through the client's ``PipelineClient.send_request``).

The GET used to ask the pipeline for a streamed response (``get_by_id(..., stream=True)``) and read
the body itself inside the budgeted call. ``_send`` now runs it with ``stream=False``, so azure-core's
``ContentDecodePolicy`` decodes every answer's body inside the pipeline before the gateway sees it:

- every resource body is decoded and ``json.loads``-ed twice (once by the policy, once by
  ``get_resource``): for bodies past ~10 KB (NSGs, vaults with many access policies, storage
  accounts with many IP rules) a GET costs more CPU than before the commit;
- an answer whose ``Content-Type`` the policy does not know raises a ``DecodeError`` *without a
  response*: ``BudgetedCaller`` reads a status-less ``HttpResponseError`` as "answer cut off" and
  re-sends the GET until the budget ends (``ArmTransient``), a 429 loses its throttling
  (``ArmThrottled``, its ``Retry-After``, the rate limiter's penalty), and a 200 with a JSON body
  the old code read is never read.

ARM here is a scripted transport under the real ``azure-mgmt-resource`` pipeline; its responses are
the product's own ``Urllib3TransportResponse`` (body preloaded unless the call streams)."""

from __future__ import annotations

import io
import json

import pytest
import urllib3
from azure.core.pipeline.policies import ContentDecodePolicy
from azure.core.pipeline.transport import HttpTransport

from guardrails.adapters.arm import ArmGateway
from guardrails.adapters.http_transport import Urllib3TransportResponse
from guardrails.errors import ArmThrottled
from guardrails.local.credential import LocalTokenCredential

ARM = "https://management.test"
RID = "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"
BODY = {"id": RID, "type": "Microsoft.Storage/storageAccounts", "properties": {"publicNetworkAccess": "Enabled"}}
OID = "6a1f5c3e-0d7b-4a8e-9c2f-51e0d1a9b7c4"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ScriptedTransport(HttpTransport):
    """Answers in order ``(status, headers, body)``; the last answer repeats."""

    def __init__(self, *answers) -> None:
        self.answers, self.sent = list(answers), 0

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request, **kwargs):
        self.sent += 1
        status, headers, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        raw = urllib3.HTTPResponse(body=io.BytesIO(content), status=status, preload_content=False,
                                   headers={"Content-Type": "application/json; charset=utf-8", **headers,
                                            "Content-Length": str(len(content))})
        if kwargs.get("stream"):
            return Urllib3TransportResponse(request=request, internal_response=raw, block_size=4096)
        return Urllib3TransportResponse(request=request, internal_response=raw, block_size=4096, content=raw.read())


def _gateway(arm: ScriptedTransport, clock: Clock) -> ArmGateway:
    from azure.mgmt.resource.resources import ResourceManagementClient

    gw = ArmGateway(LocalTokenCredential(object_id=OID), endpoint=ARM, timeout=5, sleep=clock.sleep, clock=clock)
    gw._client = ResourceManagementClient(LocalTokenCredential(object_id=OID), "0", base_url=ARM, retry_total=0,
                                          transport=arm)
    return gw


def test_a_get_body_is_decoded_once_not_again_by_the_sdk_pipeline(monkeypatch):
    """Before 71acd47 the GET streamed (``stream=True``): the pipeline left the body alone and
    ``get_resource`` parsed it once. Now ``ContentDecodePolicy`` parses it too."""
    decoded = []
    original = ContentDecodePolicy.deserialize_from_http_generics.__func__

    def counting(cls, response, encoding=None):
        decoded.append(response.status_code)
        return original(cls, response, encoding)
    monkeypatch.setattr(ContentDecodePolicy, "deserialize_from_http_generics", classmethod(counting))
    clock = Clock()
    arm = ScriptedTransport((200, {"ETag": '"e1"'}, BODY))
    snap = _gateway(arm, clock).get_resource(RID, api_version="2023-05-01", deadline=clock() + 10)
    assert snap.body == BODY and snap.etag == '"e1"'
    assert decoded == []


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/x-json"])
def test_a_200_with_a_content_type_the_sdk_does_not_know_is_still_the_resource(content_type):
    """The body is JSON; before 71acd47 it was read (one GET). Now the pipeline's DecodeError has
    no response, so it is taken for an answer cut off and the GET is sent until the budget ends."""
    clock = Clock()
    arm = ScriptedTransport((200, {"Content-Type": content_type}, BODY))
    snap = _gateway(arm, clock).get_resource(RID, api_version="2023-05-01", deadline=clock() + 5)
    assert snap.body == BODY
    assert arm.sent == 1


def test_a_429_stays_throttled_and_honours_retry_after_whatever_its_content_type():
    """A 429 is ``ArmThrottled`` after waiting its ``Retry-After`` (the rate limiter is told);
    now it is an ``ArmTransient`` "answer cut off" retried on backoff, Retry-After ignored."""
    clock = Clock()
    arm = ScriptedTransport((429, {"Retry-After": "2", "Content-Type": "application/octet-stream"}, b"slow down"))
    start = clock()
    with pytest.raises(ArmThrottled) as info:
        _gateway(arm, clock).get_resource(RID, api_version="2023-05-01", deadline=start + 5)
    assert info.value.status == 429
    assert clock() - start == pytest.approx(4.0)        # two Retry-After waits of 2 s, the third did not fit
