"""How an error raised while a long-running write is polled maps to the gateway's answer (an SDK
error-mapping test: the poller's status call fails after ARM accepted the write)."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.polling import LROPoller, PollingMethod

from guardrails.adapters.arm import ArmGateway
from guardrails.adapters.retry import BudgetedCaller
from guardrails.errors import ArmTransient

RID = ("/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg/providers/"
       "Microsoft.MachineLearningServices/workspaces/mlw")


class _FailingPoll(PollingMethod):
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def initialize(self, client, initial_response, deserialization_callback) -> None:
        pass

    def run(self) -> None:
        raise self.exc

    def status(self) -> str:
        return "InProgress"

    def finished(self) -> bool:
        return False

    def resource(self):
        return None


def _gateway(exc: Exception) -> ArmGateway:
    class Resources:
        def begin_update_by_id(self, rid, body, **kw):          # ARM accepted the PATCH (202)
            return LROPoller(None, object(), lambda r: None, _FailingPoll(exc))

    gw = ArmGateway.__new__(ArmGateway)
    gw._client = type("Client", (), {"resources": Resources()})()
    gw._caller = BudgetedCaller(sleep=lambda s: None)
    gw._clock = time.monotonic
    gw._endpoint = "https://management.local"
    gw._polling = lambda timeout: None
    return gw


@pytest.mark.parametrize("exc", [ServiceResponseError("Read timed out"), ServiceRequestError("connection reset")])
def test_a_transport_error_while_polling_an_accepted_write_is_requested_not_an_escape(exc):
    result = _gateway(exc).patch_resource(RID, {"properties": {"publicNetworkAccess": "Disabled"}},
                                          api_version="2025-06-01", deadline=time.monotonic() + 5)
    assert result.state == "requested"


def test_an_http_error_while_polling_keeps_its_meaning():
    err = HttpResponseError("boom")
    err.status_code = 503
    with pytest.raises(ArmTransient):
        _gateway(err).patch_resource(RID, {"properties": {}}, api_version="2025-06-01",
                                     deadline=time.monotonic() + 5)
