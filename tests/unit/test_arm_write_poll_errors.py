"""How an error raised while a long-running write is polled maps to the gateway's answer (an SDK
error-mapping test: the status request fails after ARM accepted the write). ARM is the scripted
adapter of ``test_review_adapters_s22`` under the real SDK pipeline."""

from __future__ import annotations

import pytest
import requests

from tests.unit.test_review_adapters_s22 import Clock, ScriptedArm, _accepted, _gateway, _patch


@pytest.mark.parametrize("exc", [requests.exceptions.ReadTimeout("Read timed out"),
                                 requests.exceptions.ConnectionError("connection reset")])
def test_a_transport_error_while_polling_an_accepted_write_is_requested_not_an_escape(exc):
    clock = Clock()
    arm = ScriptedArm(_accepted(), *[exc] * 20)
    assert _patch(_gateway(arm, clock), clock, within=5).state == "requested"


def test_an_http_error_while_polling_leaves_the_outcome_unknown():
    """A 503 on the status URL says nothing about the write ARM accepted: polled again while the
    budget allows, then ``requested`` (confirmed by the write's own event), never ``failed``."""
    clock = Clock()
    arm = ScriptedArm(_accepted(), *[(503, {}, {"error": {"code": "ServiceUnavailable"}})] * 20)
    assert _patch(_gateway(arm, clock), clock, within=5).state == "requested"
