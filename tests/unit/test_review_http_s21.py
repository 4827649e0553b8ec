"""Review of the HTTP checks (s21): the pure pieces. GIVEN / WHEN / THEN."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from guardrails.checks.api import BadRequest, DuplicateKey, _redacted, reject_duplicates
from guardrails.checks.models import ErrorDetail, JobCheckRequest, credential_fields
from guardrails.checks.service import _asked
from guardrails.model.decision import AuditRow, ViolationRecord
from guardrails.resource_guardrail import _found
from guardrails.secrets.credentials import classify

PAT = ("github_pat_11ABCDEFG0" + "aB3dE5fG7hJ9kL1mN3pQ5r" + "_"
       + "S7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5xY7zA9bC1dE3fG5hJ7k")
JOB = {"job_id": 201, "network_zone": "pe-databricks-eastus", "permissions": ["execute_inference"],
       "secret_references": [{"vault": "ml-vault", "secret": "databricks-token"}]}


def test_credential_fields_finds_a_github_fine_grained_token():
    # GIVEN a GitHub fine-grained PAT, a shape classify knows (since the s21 review's second pass)
    assert classify(PAT) == "GitHub fine-grained token"
    req = JobCheckRequest.model_validate({**JOB, "permissions": ["execute_inference", PAT]})
    # WHEN the request is screened THEN the field is named
    assert credential_fields(req) == ["permissions.1"]


def test_a_bad_request_is_redacted_before_it_is_answered_or_recorded():
    # GIVEN a rejection whose text quotes what was sent (as InvalidArmId does)
    quoted = f"invalid resource id '/subscriptions/{PAT[:60]}…': subscription id '{PAT[:70]}…' is not a GUID"
    bad = BadRequest("invalid_resource_id", quoted, [ErrorDetail(field="resource_id", code="invalid_resource_id",
                                                                 message=quoted)])
    # WHEN it is made safe
    safe = _redacted(bad)
    # THEN no part of the token is left, and the code and field stay
    text = json.dumps([safe.message, [d.model_dump() for d in safe.details]])
    assert PAT[11:27] not in text and safe.code == "invalid_resource_id"
    assert safe.details[0].field == "resource_id" and "not a GUID" in safe.message


def test_an_unquoted_credential_left_in_a_message_replaces_the_whole_message():
    safe = _redacted(BadRequest("invalid_value", f"{PAT}: bad"))
    assert PAT[11:27] not in safe.message and safe.message.startswith("invalid_value:")


def test_reject_duplicates_refuses_a_key_sent_twice_and_keeps_order_otherwise():
    with pytest.raises(DuplicateKey) as exc:
        json.loads('{"a": 1, "b": {"c": 1, "c": 2}}', object_pairs_hook=reject_duplicates)
    assert exc.value.key == "c"
    assert json.loads('{"a": 1, "b": [{"a": 2}]}', object_pairs_hook=reject_duplicates) == {"a": 1, "b": [{"a": 2}]}


def test_what_a_job_check_asked_about_never_holds_a_credential():
    # GIVEN a request that reached the service unscreened with a key-like secret name
    opaque = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3"
    req = JobCheckRequest.model_validate({**JOB, "secret_references": [{"vault": "ml-vault", "secret": opaque}]})
    # WHEN the row's account of the request is built THEN it names identity and zone, never the value
    text = _asked(req, "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f")
    assert "identity 9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f" in text and "zone pe-databricks-eastus" in text
    assert opaque[:16] not in text and "ml-vault/<not shown" in text


@pytest.mark.parametrize("mode, outcome, notify", [("audit", "dry_run", False), ("enforce", "violation", True)])
def test_a_reported_finding_is_dry_run_under_an_audit_mode_policy(mode, outcome, notify):
    # GIVEN a notify rule's finding under a policy in ``mode``
    row = AuditRow(event_id="e", event_type="t", resource_id="r", verdict="compliant")
    rec = ViolationRecord(policy="p@1", rule="r", property="x", before=1, after=None, outcome="violation")
    result = SimpleNamespace(policy=SimpleNamespace(mode=mode))
    # WHEN it is recorded
    _found(row, rec, result, "notify only")
    # THEN audit mode observes (still on the row), enforce notifies
    assert (rec.outcome, row.notify) == (outcome, notify)
    assert rec.message == ("audit mode: would notify (notify only)" if mode == "audit" else "notify only")
