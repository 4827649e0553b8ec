"""Envelope then payload: parsing Event Grid / CloudEvents deliveries of ARM resource events."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from guardrails.errors import InvalidArmId, InvalidEvent
from guardrails.model.decision import Actor
from guardrails.model.events import (
    MAX_DATA_BYTES, RESOURCE_EVENT_TYPES, Envelope, ResourceEvent, normalize_guid,
    parse_envelope, parse_resource_event,
)
from tests.events import (
    RESOURCE_EVENT_SAMPLES, SP_APP_ID, SP_OBJECT_ID, STORAGE_ACCOUNT_ID, SUBSCRIPTION_ID,
    TENANT_ID, USER_APP_ID, USER_OBJECT_ID, USER_UPN, load, load_event, names,
)

WRITE = "Microsoft.Resources.ResourceWriteSuccess.eventgrid"
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
NAME_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"


def parse(raw: Any) -> ResourceEvent:
    return parse_resource_event(parse_envelope(raw))


def write_event(**data_changes: Any) -> dict[str, Any]:
    raw = load_event(WRITE)
    for key, value in data_changes.items():
        if value is _DROP:
            raw["data"].pop(key, None)
        else:
            raw["data"][key] = value
    return raw


_DROP = object()


# -- every shared sample ----------------------------------------------------------------------
EVENT_FIXTURES = [n for n in names() if not n.endswith("expected-response")]


@pytest.mark.parametrize("name", EVENT_FIXTURES)
def test_every_sample_envelope_parses(name: str) -> None:
    # GIVEN a real-shaped delivery in either schema  WHEN its envelope is parsed
    env = parse_envelope(load_event(name))
    # THEN the schema is recognised and time is tz-aware
    assert env.schema == ("cloudevents" if ".cloudevents" in name else "eventgrid")
    assert env.id and env.event_type
    assert env.time is not None and env.time.tzinfo is not None


@pytest.mark.parametrize("name", RESOURCE_EVENT_SAMPLES)
def test_every_resource_sample_parses(name: str) -> None:
    # GIVEN an ARM resource event  WHEN parsed
    event = parse(load_event(name))
    # THEN the resource id comes from data.resourceUri and the caller is known
    raw = load_event(name)
    assert str(event.resource_id).lower() == raw["data"]["resourceUri"].lower()
    assert event.subscription_id == SUBSCRIPTION_ID and event.tenant_id == TENANT_ID
    assert event.actor.object_id in (USER_OBJECT_ID, SP_OBJECT_ID)
    assert event.authorization_action == event.operation_name


def test_write_success_fields() -> None:
    event = parse(load(WRITE))
    assert event.is_write_success and event.event_type in RESOURCE_EVENT_TYPES
    assert str(event.resource_id) == STORAGE_ACCOUNT_ID     # resourcegroups normalised
    assert event.resource_id.resource_type == "Microsoft.Storage/storageAccounts"
    assert event.operation_name == "Microsoft.Storage/storageAccounts/write"
    assert event.status == "Succeeded"
    assert event.actor == Actor(USER_OBJECT_ID, USER_APP_ID, USER_UPN)
    assert event.envelope.time == datetime(2018, 7, 19, 18, 38, 4, 611735, tzinfo=timezone.utc)
    assert event.envelope.source.endswith("/resourceGroups/rg-guardrails-demo")


def test_wrong_sample_status_does_not_change_the_type() -> None:
    # GIVEN the published ResourceWriteFailure sample with status "Succeeded"
    event = parse(load("Microsoft.Resources.ResourceWriteFailure.eventgrid"))
    # THEN the event type decides: not a write success
    assert event.status == "Succeeded" and not event.is_write_success


def test_cloudevents_capital_v_spec_version() -> None:
    raw = load("Microsoft.Resources.ResourceWriteFailure.cloudevents")
    assert "specVersion" in raw and "specversion" not in raw
    env = parse_envelope(raw)
    assert env.schema == "cloudevents" and env.source.startswith("/subscriptions/")


def test_subscription_validation_event_envelope() -> None:
    env = parse_envelope(load_event("Microsoft.EventGrid.SubscriptionValidationEvent.eventgrid"))
    assert env.event_type == "Microsoft.EventGrid.SubscriptionValidationEvent" and env.subject == ""
    with pytest.raises(InvalidEvent) as info:
        parse_resource_event(env)
    assert info.value.reason == "unsupported_event_type"


# -- captured-delivery variants ---------------------------------------------------------------
def test_pascalcase_authorization_and_empty_http_request() -> None:
    # GIVEN PascalCase authorization keys, dashless evidence GUIDs and httpRequest {}
    raw = load("Microsoft.Resources.ResourceWriteSuccess.captured-pascalcase.eventgrid")
    assert raw["data"]["httpRequest"] == {} and "Action" in raw["data"]["authorization"]
    # WHEN parsed  THEN the action is read regardless of key case
    event = parse(raw)
    assert event.authorization_action == "Microsoft.Storage/storageAccounts/write"


def test_http_request_absent() -> None:
    raw = write_event(httpRequest=_DROP)
    assert parse(raw).resource_id == parse(load(WRITE)).resource_id


def test_service_principal_actor_has_no_upn() -> None:
    event = parse(load("Microsoft.Resources.ResourceWriteSuccess.captured-service-principal.eventgrid"))
    assert event.actor == Actor(SP_OBJECT_ID, SP_APP_ID, None)


@pytest.mark.parametrize("label, scope", [
    ("subscription", f"/subscriptions/{SUBSCRIPTION_ID}"),
    ("resource-group", f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-guardrails-demo"),
    ("storage-account", STORAGE_ACCOUNT_ID),
])
def test_role_assignment_writes(label: str, scope: str) -> None:
    # GIVEN a role-assignment write at each scope
    schema = "cloudevents" if label == "storage-account" else "eventgrid"
    event = parse(load(f"Microsoft.Resources.ResourceWriteSuccess.roleAssignment-{label}.{schema}"))
    # THEN it is a write success on a role assignment attached to that scope
    assert event.is_write_success
    assert event.operation_name == "Microsoft.Authorization/roleAssignments/write"
    assert event.resource_id.resource_type == "Microsoft.Authorization/roleAssignments"
    assert str(event.resource_id.scope) == scope


def test_dashless_and_upper_case_claims_are_normalised() -> None:
    raw = write_event()
    raw["data"]["claims"][OID_CLAIM] = USER_OBJECT_ID.replace("-", "").upper()
    raw["data"]["claims"]["appid"] = USER_APP_ID.upper()
    raw["data"]["subscriptionId"] = SUBSCRIPTION_ID.replace("-", "")
    event = parse(raw)
    assert event.actor.object_id == USER_OBJECT_ID and event.actor.app_id == USER_APP_ID
    assert event.subscription_id == SUBSCRIPTION_ID


def test_short_claim_names_and_name_as_email() -> None:
    # GIVEN v2-style claims: oid / azp and only a name claim that is an email
    event = parse(write_event(claims={"oid": USER_OBJECT_ID, "azp": USER_APP_ID, NAME_CLAIM: USER_UPN}))
    assert event.actor == Actor(USER_OBJECT_ID, USER_APP_ID, USER_UPN)
    # a display name is not a upn; the short "upn" claim is
    assert parse(write_event(claims={NAME_CLAIM: "Alex Martin"})).actor.upn is None
    assert parse(write_event(claims={"upn": USER_UPN})).actor.upn == USER_UPN


def test_unusable_claim_values_are_absent() -> None:
    claims = {OID_CLAIM: 12, "appid": "x" * 1000, UPN_CLAIM: "a\nb@c.d"}
    assert parse(write_event(claims=claims)).actor == Actor(None, None, None)
    assert parse(write_event(claims=_DROP, authorization=_DROP)).actor == Actor()


def test_subject_is_not_used() -> None:
    raw = write_event()
    raw["subject"] = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/other"
    assert str(parse(raw).resource_id) == STORAGE_ACCOUNT_ID


# -- invalid data -----------------------------------------------------------------------------
SP = f"{STORAGE_ACCOUNT_ID}/../x"
INVALID_DATA = {
    "missing-data": (lambda r: r.pop("data"), "missing_data"),
    "null-data": (lambda r: r.update(data=None), "missing_data"),
    "list-data": (lambda r: r.update(data=[r["data"]]), "wrong_type"),
    "string-data": (lambda r: r.update(data="{}"), "wrong_type"),
    "oversized": (lambda r: r["data"].update(blob="x" * (MAX_DATA_BYTES + 1)), "oversized"),
    "no-resource-uri": (lambda r: r["data"].pop("resourceUri"), "missing_field"),
    "null-resource-uri": (lambda r: r["data"].update(resourceUri=None), "missing_field"),
    "int-resource-uri": (lambda r: r["data"].update(resourceUri=7), "wrong_type"),
    "traversal-resource-uri": (lambda r: r["data"].update(resourceUri=SP), "invalid_resource_id"),
    "query-resource-uri": (lambda r: r["data"].update(resourceUri=STORAGE_ACCOUNT_ID + "?x=1"),
                           "invalid_resource_id"),
    "claims-list": (lambda r: r["data"].update(claims=["a"]), "wrong_type"),
    "authorization-string": (lambda r: r["data"].update(authorization="Owner"), "wrong_type"),
    "action-number": (lambda r: r["data"]["authorization"].update(action=1), "wrong_type"),
    "operation-name-number": (lambda r: r["data"].update(operationName=1), "wrong_type"),
    "status-dict": (lambda r: r["data"].update(status={}), "wrong_type"),
    "correlation-list": (lambda r: r["data"].update(correlationId=[]), "wrong_type"),
    "subscription-bool": (lambda r: r["data"].update(subscriptionId=True), "wrong_type"),
    "tenant-number": (lambda r: r["data"].update(tenantId=1.5), "wrong_type"),
    "unsupported-type": (lambda r: r.update(eventType="Microsoft.Storage.BlobCreated"),
                         "unsupported_event_type"),
}


@pytest.mark.parametrize("mutate, reason", INVALID_DATA.values(), ids=INVALID_DATA.keys())
def test_invalid_data_reason_codes(mutate: Any, reason: str) -> None:
    # GIVEN a write event with one broken part
    raw = write_event()
    mutate(raw)
    # WHEN parsed  THEN InvalidEvent with a stable reason and a short message
    with pytest.raises(InvalidEvent) as info:
        parse(raw)
    assert info.value.reason == reason
    assert len(str(info.value)) < 400


def test_invalid_resource_uri_message_names_the_field() -> None:
    with pytest.raises(InvalidArmId, match=r"^data\.resourceUri: "):
        parse(write_event(resourceUri=SP))


def test_messages_never_echo_claims() -> None:
    raw = write_event(resourceUri=STORAGE_ACCOUNT_ID + "#" + "s3cret" * 100)
    raw["data"]["claims"]["aio"] = "TOKEN-VALUE"
    with pytest.raises(InvalidEvent) as info:
        parse(raw)
    assert "TOKEN-VALUE" not in str(info.value) and len(str(info.value)) < 300


# -- invalid envelopes ------------------------------------------------------------------------
INVALID_ENVELOPES = {
    "list": ([load_event(WRITE)], "not_an_object"),
    "string": ("{}", "not_an_object"),
    "none": (None, "not_an_object"),
    "no-type-either-schema": ({"id": "1", "data": {}}, "missing_field"),
    "eg-no-id": ({"eventType": "x"}, "missing_field"),
    "eg-empty-id": ({"id": "", "eventType": "x"}, "missing_field"),
    "eg-int-id": ({"id": 5, "eventType": "x"}, "wrong_type"),
    "eg-long-id": ({"id": "i" * 257, "eventType": "x"}, "wrong_type"),
    "eg-null-type": ({"id": "1", "eventType": None}, "missing_field"),
    "eg-list-type": ({"id": "1", "eventType": ["x"]}, "wrong_type"),
    "eg-newline-id": ({"id": "1\n2", "eventType": "x"}, "invalid_value"),
    "eg-bad-time": ({"id": "1", "eventType": "x", "eventTime": "yesterday"}, "invalid_value"),
    "eg-int-time": ({"id": "1", "eventType": "x", "eventTime": 1700000000}, "wrong_type"),
    "eg-int-subject": ({"id": "1", "eventType": "x", "subject": 3}, "wrong_type"),
    "eg-dict-topic": ({"id": "1", "eventType": "x", "topic": {}}, "wrong_type"),
    "ce-no-specversion": ({"id": "1", "type": "x", "source": "/s"}, "missing_field"),
    "ce-specversion-0.3": ({"specversion": "0.3", "id": "1", "type": "x"}, "invalid_value"),
    "ce-specversion-number": ({"specversion": 1.0, "id": "1", "type": "x"}, "wrong_type"),
    "ce-no-type": ({"specversion": "1.0", "id": "1"}, "missing_field"),
    "ce-long-type": ({"specversion": "1.0", "id": "1", "type": "t" * 300}, "wrong_type"),
}


@pytest.mark.parametrize("raw, reason", INVALID_ENVELOPES.values(), ids=INVALID_ENVELOPES.keys())
def test_invalid_envelopes(raw: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_envelope(raw)
    assert info.value.reason == reason


def test_naive_time_is_taken_as_utc() -> None:
    env = parse_envelope({"id": "1", "eventType": "x", "eventTime": "2024-01-02T03:04:05"})
    assert env.time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_optional_envelope_fields_may_be_absent() -> None:
    env = parse_envelope({"id": "1", "eventType": "x"})
    assert (env.subject, env.source, env.time, env.data) == (None, None, None, None)


# -- redaction --------------------------------------------------------------------------------
def test_str_and_repr_redact_data_and_claims() -> None:
    raw = write_event()
    raw["data"]["claims"]["aio"] = "TOKEN-VALUE"
    event = parse(raw)
    for text in (str(event), repr(event), str(event.envelope), repr(event.envelope)):
        assert "TOKEN-VALUE" not in text and USER_UPN not in text and "claims" not in text
    assert event.event_id in str(event) and STORAGE_ACCOUNT_ID in str(event)
    assert "Microsoft.Resources.ResourceWriteSuccess" in repr(event.envelope)


def test_envelope_is_frozen() -> None:
    env = parse_envelope(load(WRITE))
    with pytest.raises(AttributeError):
        env.id = "other"  # type: ignore[misc]


# -- normalize_guid ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (None, None),
    ("5C1D9A2E8B3F4E6AA7D09F1E2C3B4A58", "5c1d9a2e-8b3f-4e6a-a7d0-9f1e2c3b4a58"),
    ("5C1D9A2E-8B3F-4E6A-A7D0-9F1E2C3B4A58", "5c1d9a2e-8b3f-4e6a-a7d0-9f1e2c3b4a58"),
    ("{ID}", "{ID}"),
    (" 5c1d9a2e8b3f4e6aa7d09f1e2c3b4a58", " 5c1d9a2e8b3f4e6aa7d09f1e2c3b4a58"),
    ("not-a-guid", "not-a-guid"),
])
def test_normalize_guid(value: str | None, expected: str | None) -> None:
    assert normalize_guid(value) == expected


# -- property: nothing but InvalidEvent -------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_id_ish = st.sampled_from([
    STORAGE_ACCOUNT_ID, STORAGE_ACCOUNT_ID.upper(), f"{STORAGE_ACCOUNT_ID}/../x", "/", "",
    f"/subscriptions/{SUBSCRIPTION_ID}", "/providers/A.B/c/d", f"{STORAGE_ACCOUNT_ID}?a=b",
]) | st.text(max_size=40)
_maybe = lambda s: st.one_of(s, _json)  # noqa: E731
_data = st.fixed_dictionaries({}, optional={
    "resourceUri": _maybe(_id_ish),
    "claims": _maybe(st.dictionaries(st.sampled_from([OID_CLAIM, "oid", "appid", "azp", UPN_CLAIM,
                                                      "upn", NAME_CLAIM]), _json | st.text())),
    "authorization": _maybe(st.dictionaries(st.sampled_from(["action", "Action", "ACTION", "scope"]),
                                            _json)),
    "operationName": _json, "status": _json, "correlationId": _json,
    "subscriptionId": _maybe(st.uuids().map(lambda u: u.hex)), "tenantId": _json, "httpRequest": _json,
})
_envelopes = st.fixed_dictionaries({}, optional={
    "id": _maybe(st.text(max_size=300)), "eventType": _maybe(st.sampled_from(sorted(RESOURCE_EVENT_TYPES))),
    "type": _maybe(st.sampled_from(sorted(RESOURCE_EVENT_TYPES))),
    "specversion": _maybe(st.just("1.0")), "specVersion": _maybe(st.just("1.0")),
    "subject": _json, "topic": _json, "source": _json,
    "eventTime": _maybe(st.datetimes().map(datetime.isoformat) | st.text(max_size=70)),
    "time": _maybe(st.datetimes().map(datetime.isoformat)),
    "data": _maybe(_data),
})

_valid_data = st.fixed_dictionaries(
    {"resourceUri": st.one_of(st.just(STORAGE_ACCOUNT_ID), _id_ish)},
    optional={
        "claims": st.dictionaries(st.sampled_from([OID_CLAIM, "oid", "appid", "azp", UPN_CLAIM, "upn",
                                                   NAME_CLAIM]), st.text(max_size=40) | st.uuids().map(str)),
        "authorization": st.dictionaries(st.sampled_from(["action", "Action", "scope"]), st.text(max_size=9)),
        "operationName": st.text(max_size=9), "status": st.sampled_from(["Succeeded", "Failed"]),
        "subscriptionId": st.uuids().map(lambda u: u.hex.upper()), "tenantId": st.uuids().map(str),
        "httpRequest": st.just({}), "extra": _json,
    },
)
_near_valid = st.fixed_dictionaries({
    "id": st.uuids().map(str),
    "eventType": st.sampled_from(sorted(RESOURCE_EVENT_TYPES) + ["Microsoft.Storage.BlobCreated"]),
    "eventTime": st.just("2018-07-19T18:38:04.6117357Z"),
    "data": st.one_of(_valid_data, _valid_data.map(lambda d: {**d, "blob": "x" * MAX_DATA_BYTES}),
                      _json),
})
_near_valid_ce = _near_valid.map(
    lambda r: {"specversion": "1.0", "id": r["id"], "type": r["eventType"], "data": r["data"]})


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json, _envelopes, _near_valid, _near_valid_ce))
def test_property_only_invalid_event_escapes(raw: Any) -> None:
    # GIVEN arbitrary JSON-like input  WHEN parsed  THEN success or InvalidEvent, nothing else
    before = copy.deepcopy(raw)
    try:
        parsed = parse_resource_event(parse_envelope(raw))
    except InvalidEvent as exc:
        event(exc.reason)
        assert exc.reason in {
            "not_an_object", "missing_field", "wrong_type", "invalid_value", "missing_data",
            "oversized", "invalid_resource_id", "unsupported_event_type",
        }
    else:
        event("parsed")
        assert isinstance(parsed.envelope, Envelope) and str(parsed)
    assert [raw] == [before]    # input is never mutated (list compare: NaN is identical)
