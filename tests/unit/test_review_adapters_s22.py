"""How what ARM answers (and what the network loses) maps to the adapters' answers: tests of SDK
error mapping. ARM is a scripted ``requests`` adapter under the real azure-core pipeline of the
real ``azure-mgmt-resource`` client, so the SDK raises exactly what it raises in production
(``ServiceResponseTimeoutError`` for a read timeout, ``IncompleteReadError`` for a body cut off,
``BadStatus`` for a 503 on a status URL); time is a fake clock the gateway's sleep advances."""

from __future__ import annotations

import io
import json
import threading

import pytest
import requests
import urllib3
from azure.core.exceptions import IncompleteReadError
from azure.core.pipeline.transport import RequestsTransport

from guardrails.adapters import transport
from guardrails.adapters.arm import MIN_POLL_INTERVAL, POLL_INTERVAL, ArmGateway
from guardrails.adapters.retry import BudgetedCaller
from guardrails.errors import ArmError, ArmTransient
from guardrails.local.credential import LocalTokenCredential

ARM = "https://management.test"
RID = ("/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg/providers/"
       "Microsoft.ContainerRegistry/registries/acr1")
STATUS = f"{ARM}/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/providers/Microsoft.ContainerRegistry/locations/x/operationStatuses/op1?api-version=2025-04-01"
BODY = {"properties": {"adminUserEnabled": False}}


class Clock:
    def __init__(self) -> None:
        self.now, self.slept = 1000.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class ScriptedArm(requests.adapters.HTTPAdapter):
    """Answers requests in order: ``(status, headers, body)`` or an exception to raise."""

    def __init__(self, *answers) -> None:
        super().__init__()
        self.answers, self.sent = list(answers), []

    def send(self, request, **kwargs):
        self.sent.append((request.method, request.url.split("?")[0], dict(request.headers)))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        status, headers, body = answer
        content = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        raw = urllib3.HTTPResponse(body=io.BytesIO(content), status=status, preload_content=False,
                                   headers={**headers, "Content-Length": str(len(content)),
                                            "Content-Type": "application/json"})
        return self.build_response(request, raw)


def _gateway(arm: ScriptedArm, clock: Clock) -> ArmGateway:
    from azure.mgmt.resource.resources import ResourceManagementClient

    gw = ArmGateway(LocalTokenCredential(object_id="6a1f5c3e-0d7b-4a8e-9c2f-51e0d1a9b7c4"), endpoint=ARM,
                    timeout=5, sleep=clock.sleep, clock=clock)
    session = requests.Session()
    session.mount("https://", arm)
    gw._client = ResourceManagementClient(
        LocalTokenCredential(object_id="6a1f5c3e-0d7b-4a8e-9c2f-51e0d1a9b7c4"), "0", base_url=ARM, retry_total=0,
        transport=RequestsTransport(session=session, session_owner=False))
    return gw


def _accepted(code=202, **headers):
    return (code, {"Azure-AsyncOperation": STATUS, **headers}, {"properties": {"provisioningState": "Updating"}}
            if code == 201 else None)


def _status(state: str, **extra):
    return (200, {}, {"status": state, **extra})


def _patch(gw: ArmGateway, clock: Clock, within: float = 10.0):
    return gw.patch_resource(RID, BODY, api_version="2025-04-01", deadline=clock() + within)


def _put(gw: ArmGateway, clock: Clock, within: float = 10.0):
    return gw.put_resource(RID, BODY, api_version="2025-04-01", etag='W/"e1"', deadline=clock() + within)


def _read_timeout():
    return requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")


def _cut_off():
    return requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(12 bytes read, 30 more expected)")


# ---- 1. 201 is an accepted write -------------------------------------------------------------
def test_a_patch_answered_201_with_an_async_operation_is_polled_to_done():
    clock = Clock()
    arm = ScriptedArm(_accepted(201), _status("InProgress"), _status("Succeeded"))
    assert _patch(_gateway(arm, clock), clock).state == "done"
    assert [m for m, _u, _h in arm.sent] == ["PATCH", "GET", "GET"]
    assert all(u == STATUS.split("?")[0] for _m, u, _h in arm.sent[1:])     # no final GET of the resource


def test_a_patch_answered_201_still_updating_at_the_deadline_is_requested():
    clock = Clock()
    arm = ScriptedArm(_accepted(201), *[_status("InProgress")] * 20)
    assert _patch(_gateway(arm, clock), clock, within=2.5).state == "requested"


# ---- 2. errors while polling: unknown outcome, not failed --------------------------------------
def test_a_5xx_on_the_status_url_is_polled_again_then_requested_at_the_deadline():
    clock = Clock()
    arm = ScriptedArm(_accepted(), *[(503, {}, {"error": {"code": "ServiceUnavailable"}})] * 20)
    assert _patch(_gateway(arm, clock), clock, within=3).state == "requested"
    assert len(arm.sent) >= 3


def test_a_429_on_the_status_url_honours_its_retry_after_and_polls_on_to_done():
    clock = Clock()
    arm = ScriptedArm(_accepted(), (429, {"Retry-After": "2"}, {"error": {"code": "TooManyRequests"}}),
                      _status("Succeeded"))
    assert _patch(_gateway(arm, clock), clock).state == "done"
    assert clock.slept == [POLL_INTERVAL, 2.0]


@pytest.mark.parametrize("lost", [_read_timeout, _cut_off, lambda: requests.exceptions.ConnectionError("reset")])
def test_a_status_request_lost_on_the_network_is_polled_again(lost):
    clock = Clock()
    arm = ScriptedArm(_accepted(), lost(), _status("Succeeded"))
    assert _patch(_gateway(arm, clock), clock).state == "done"


@pytest.mark.parametrize("answer", [(404, {}, {"error": {"code": "NotFound"}}), (200, {}, {"no": "status"}),
                                    (200, {}, None)])
def test_a_status_answer_that_says_nothing_is_requested_at_once(answer):
    clock = Clock()
    arm = ScriptedArm(_accepted(), answer)
    assert _patch(_gateway(arm, clock), clock).state == "requested"
    assert len(arm.sent) == 2


@pytest.mark.parametrize("state", ["Failed", "Canceled"])
def test_an_operation_that_ends_failed_or_canceled_is_an_error(state):
    clock = Clock()
    arm = ScriptedArm(_accepted(), _status(state, error={"code": "RegistrySkuNotSupported", "message": "x"}))
    with pytest.raises(ArmError) as info:
        _patch(_gateway(arm, clock), clock)
    assert not isinstance(info.value, ArmTransient)
    assert state in str(info.value) and "RegistrySkuNotSupported" in str(info.value)


# ---- 2b. a write whose answer was lost -------------------------------------------------------
def test_a_conditional_put_refused_412_after_a_lost_answer_is_requested():
    clock = Clock()
    arm = ScriptedArm(_read_timeout(), (412, {}, {"error": {"code": "PreconditionFailed"}}))
    assert _put(_gateway(arm, clock), clock).state == "requested"
    assert [h.get("If-Match") for _m, _u, h in arm.sent] == ['W/"e1"', 'W/"e1"']


def test_a_conditional_put_whose_first_attempt_never_arrived_is_made_by_the_retry():
    clock = Clock()
    arm = ScriptedArm(_read_timeout(), (200, {}, {"properties": {"provisioningState": "Succeeded"}}))
    assert _put(_gateway(arm, clock), clock).state == "done"


@pytest.mark.parametrize("before", [[], [requests.exceptions.ConnectTimeout("never sent")]])
def test_a_412_without_a_lost_answer_stays_a_refusal(before):
    """A 412 first, or after an attempt that never left (a connect timeout): a real refusal."""
    clock = Clock()
    arm = ScriptedArm(*before, (412, {}, {"error": {"code": "PreconditionFailed"}}))
    with pytest.raises(ArmError) as info:
        _put(_gateway(arm, clock), clock)
    assert info.value.status == 412


def test_a_patch_whose_answers_are_lost_until_the_budget_ends_is_requested():
    clock = Clock()
    arm = ScriptedArm(*[_read_timeout()] * 50)
    assert _patch(_gateway(arm, clock), clock, within=1.0).state == "requested"


def test_a_patch_retried_after_a_lost_answer_lands():
    clock = Clock()
    arm = ScriptedArm(_cut_off(), (200, {}, {"properties": {"provisioningState": "Succeeded"}}))
    assert _patch(_gateway(arm, clock), clock).state == "done"
    assert [m for m, _u, _h in arm.sent] == ["PATCH", "PATCH"]


def test_a_write_never_sent_until_the_budget_ends_is_a_transient_failure():
    clock = Clock()
    arm = ScriptedArm(*[requests.exceptions.ConnectTimeout("connect")] * 50)
    with pytest.raises(ArmTransient):
        _patch(_gateway(arm, clock), clock, within=1.0)


# ---- 3. an answer cut off mid-body is transient -----------------------------------------------
def test_an_answer_without_a_status_is_retried_within_the_budget():
    clock = Clock()
    caller = BudgetedCaller(sleep=clock.sleep, clock=clock)
    answers = [IncompleteReadError("cut"), "ok"]

    def fn():
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a
    assert caller.call(fn, deadline=clock() + 5, what="GET x") == "ok"

    def always():
        raise IncompleteReadError("cut")
    with pytest.raises(ArmTransient):
        caller.call(always, deadline=clock() + 1, what="GET x")


# ---- 4. connection timeouts ------------------------------------------------------------------
def test_every_client_connects_within_a_short_timeout_unless_told_otherwise():
    assert transport.client_options()["transport"].connection_timeout <= 5
    assert transport.client_options(retry_total=0, connection_timeout=2)["transport"].connection_timeout == 2


def test_the_built_clients_carry_the_short_connection_timeout():
    from guardrails.adapters.keyvault import KeyVaultGateway, StorageKeysGateway

    cred = LocalTokenCredential(object_id="6a1f5c3e-0d7b-4a8e-9c2f-51e0d1a9b7c4")
    arm = ArmGateway(cred, endpoint=ARM)
    keys = StorageKeysGateway(cred, endpoint=ARM)
    vault = KeyVaultGateway(cred, url_template="https://{vault}.vault.test", verify_challenge_resource=False)
    transports = [arm._client._client._pipeline._transport, keys._client._client._pipeline._transport,
                  vault._secret_client("kv")._client._client._pipeline._transport,
                  vault._key_client("kv")._client._client._pipeline._transport]
    assert [type(t).__name__ for t in transports] == ["Urllib3Transport"] * 4
    assert [t.connection_timeout <= 5 for t in transports] == [True] * 4


# ---- 5. polling stays in the delivery's thread and budget ------------------------------------
def test_polling_honours_retry_after_never_below_the_minimum_and_stops_at_the_deadline():
    clock = Clock()
    arm = ScriptedArm(_accepted(**{"Retry-After": "0"}), (200, {"Retry-After": "3"}, {"status": "InProgress"}),
                      (200, {}, {"status": "InProgress"}), *[_status("InProgress")] * 20)
    threads = threading.active_count()
    assert _patch(_gateway(arm, clock), clock, within=6).state == "requested"
    assert clock.slept[:3] == [MIN_POLL_INTERVAL, 3.0, POLL_INTERVAL]
    assert sum(clock.slept) <= 6                         # nothing slept past the deadline
    assert threading.active_count() == threads          # no poller thread left running
    sent = len(arm.sent)
    clock.now += 60
    assert len(arm.sent) == sent


def test_one_last_status_request_at_the_deadline_can_still_find_the_write_done():
    clock = Clock()
    arm = ScriptedArm(_accepted(), _status("InProgress"), _status("InProgress"), _status("Succeeded"))
    assert _patch(_gateway(arm, clock), clock, within=2.2).state == "done"
    assert clock.slept == pytest.approx([POLL_INTERVAL, POLL_INTERVAL, 0.2])


def test_a_retry_after_past_the_deadline_is_honoured_not_polled_early():
    clock = Clock()
    arm = ScriptedArm(_accepted(**{"Retry-After": "30"}), _status("Succeeded"))
    assert _patch(_gateway(arm, clock), clock, within=10).state == "requested"
    assert [m for m, _u, _h in arm.sent] == ["PATCH"] and clock.slept == []


def test_a_status_answer_that_is_not_json_is_requested_at_once():
    """An unreadable status (a proxy's HTML page with 200) will not read better on the next poll:
    ``requested`` at once, not polled every second to the deadline (a guard: azure-core reports it
    as ``BadResponse``, which ``_poll`` takes as unreadable, not as a lost answer)."""
    clock = Clock()
    arm = ScriptedArm(_accepted(), (200, {}, b"<html>gateway says hello</html>"), *[_status("Succeeded")] * 5)
    assert _patch(_gateway(arm, clock), clock).state == "requested"
    assert len(arm.sent) == 2


def test_one_default_azure_credential_per_process():
    """Adapters review: every consumer (the event path's service, the sweeper's, the replayer's, the
    checks) built its own DefaultAzureCredential, each with its own token cache."""
    from types import SimpleNamespace

    from guardrails.adapters.arm import build_credential
    default = SimpleNamespace(credential="default")
    first, second = build_credential(default), build_credential(default)
    assert first is second and type(first).__name__ == "DefaultAzureCredential"
    local = SimpleNamespace(credential="local", local_object_id="6a1f5c3e-0d7b-4a8e-9c2f-51e0d1a9b7c4",
                            local_app_id=None)
    assert build_credential(local) is not first
