"""App Service authentication's X-MS-CLIENT-PRINCIPAL, decoded and validated (pure)."""

import base64
import json

import pytest

from guardrails.checks.principal import MAX_HEADER_CHARS, InvalidPrincipal, decode_principal, encode_principal

OID = "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def b64(obj) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


# the shape App Service sends for an Entra caller (claims mapped, as documented)
AS_SENT = {
    "auth_typ": "aad",
    "claims": [
        {"typ": "aud", "val": "api://guardrails"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": OID.upper()},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TID},
        {"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "val": "alice@contoso.com"},
        {"typ": "name", "val": "Alice"},
        {"typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "val": "Pipeline.Check"},
        {"typ": "appid", "val": "04b07795-8ddb-461a-bbee-02f9e1bf7b46"},
    ],
    "name_typ": "name",
    "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
}


def test_decodes_the_documented_shape():
    p = decode_principal(b64(AS_SENT), principal_id=OID)
    assert (p.object_id, p.tenant_id, p.upn, p.name, p.auth_type) == (OID, TID, "alice@contoso.com", "Alice", "aad")
    assert p.roles == ("Pipeline.Check",) and p.app_id == "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
    assert str(p) == "alice@contoso.com"


def test_raw_claim_names_and_missing_padding_are_accepted():
    raw = {"auth_typ": "aad", "claims": [{"typ": "oid", "val": OID}, {"typ": "tid", "val": TID}]}
    assert decode_principal(b64(raw).rstrip("=")).object_id == OID


def test_absent_header_is_no_identity_and_round_trips():
    assert decode_principal(None) is None
    assert decode_principal(encode_principal(OID, upn="a@b.c")).upn == "a@b.c"


@pytest.mark.parametrize("header", [
    "", "   ", "%%%", b64([1, 2]), b64("text"), base64.b64encode(b"\xff\xfe").decode(),
    b64({"claims": []}),                                                        # no auth_typ
    b64({"auth_typ": "aad", "claims": {"typ": "oid"}}),                         # claims not a list
    b64({"auth_typ": "aad", "claims": [{"typ": "oid", "val": 7}]}),             # val not a string
    b64({"auth_typ": "aad", "claims": [{"typ": "oid", "val": "alice"}]}),       # oid not a GUID
    b64({"auth_typ": "aad", "claims": []}),                                     # no oid at all
    b64({"auth_typ": "aad", "claims": [{"typ": "oid", "val": OID}, {"typ": "tid", "val": "contoso"}]}),
    b64({"auth_typ": "aad", "name_typ": 3, "claims": [{"typ": "oid", "val": OID}]}),
    "A" * (MAX_HEADER_CHARS + 4),
    b64({"auth_typ": "aad", "claims": [{"typ": "oid", "val": OID}]})[:-3],     # truncated
])
def test_anything_malformed_is_rejected(header):
    with pytest.raises(InvalidPrincipal) as exc:
        decode_principal(header)
    assert exc.value.reason == "invalid_principal_header"


def test_the_id_header_must_agree_and_never_stands_alone():
    with pytest.raises(InvalidPrincipal):
        decode_principal(b64(AS_SENT), principal_id="2b7e151e-1c2d-4e3f-8a9b-0c1d2e3f4a5b")
    with pytest.raises(InvalidPrincipal):
        decode_principal(None, principal_id=OID)


# ---- the identity a token of the process's own credential names (the CLI's actor) --------------
def _jwt(claims) -> str:
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_a_user_token_names_the_user():
    from guardrails.checks.principal import principal_from_token

    p = principal_from_token(_jwt({"oid": OID.upper(), "tid": TID, "upn": "alice@contoso.com", "name": "Alice",
                                   "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46"}))
    assert (p.object_id, p.tenant_id, p.upn, p.name, p.app_id) == (
        OID, TID, "alice@contoso.com", "Alice", "04b07795-8ddb-461a-bbee-02f9e1bf7b46")
    assert p.auth_type == "credential" and str(p) == "alice@contoso.com"


def test_a_managed_identity_token_names_its_object_and_app():
    from guardrails.checks.principal import principal_from_token

    p = principal_from_token(_jwt({"oid": OID, "tid": TID, "azp": "5b4c2a1e-0000-4000-8000-00000000c0de"}))
    assert p.object_id == OID and p.app_id == "5b4c2a1e-0000-4000-8000-00000000c0de" and p.upn is None


def test_the_local_emulators_token_is_read_too():
    from guardrails.checks.principal import principal_from_token
    from guardrails.local.credential import LocalTokenCredential

    token = LocalTokenCredential(object_id=OID, name="guardrails-local").get_token("https://x/.default").token
    assert principal_from_token(token).object_id == OID


@pytest.mark.parametrize("token", [
    "", "not-a-token", "a.b", "a.!!!.c", _jwt(["oid"]), _jwt({"oid": "not-a-guid"}), _jwt({"upn": "alice@contoso.com"}),
    _jwt({"oid": OID, "padding": "x" * MAX_HEADER_CHARS}), None, 42,
])
def test_a_token_naming_no_object_id_names_no_one(token):
    from guardrails.checks.principal import principal_from_token

    assert principal_from_token(token) is None
