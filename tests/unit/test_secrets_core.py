"""Pure parts of the secret guardrail: Key Vault event views, credential detection, secret
references, rotation strategies over an in-memory store."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from guardrails.errors import InvalidEvent
from guardrails.model.events import parse_envelope
from guardrails.model.keyvault_events import parse_keyvault_event
from guardrails.secrets.credentials import classify, find_credentials
from guardrails.secrets.policy import SCHEMA, semantics
from guardrails.secrets.rotation import RandomStrategy, RotationError, StorageAccountKeyStrategy
from guardrails.secrets.values import LIVE_KEY_TAG, MARKER_TAG, Redacted, SecretVersion

SAMPLES = Path("/work/shared/azure-samples/keyvault")
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
VAULT_ID = f"/subscriptions/{SUB}/resourceGroups/rg-ml-prod/providers/Microsoft.KeyVault/vaults/kv-ml-prod"


def kv_event(event_type="Microsoft.KeyVault.SecretNearExpiry", **data):
    d = {"Id": "https://kv-ml-prod.vault.azure.net/secrets/api-token/0123456789abcdef0123456789abcdef",
         "VaultName": "kv-ml-prod", "ObjectType": "Secret", "ObjectName": "api-token",
         "Version": "0123456789abcdef0123456789abcdef", "NBF": None, "EXP": 1893456000}
    d.update(data)
    return {"id": "e1", "topic": VAULT_ID, "subject": "api-token", "eventType": event_type,
            "eventTime": "2026-11-24T10:00:00Z", "dataVersion": "1", "metadataVersion": "1",
            "data": {k: v for k, v in d.items() if v is not ...}}


# ---- Key Vault events ------------------------------------------------------------------------
@pytest.mark.parametrize("nbf, exp", [("1559081980", "1559082102"), (1559081980, 1559082102), (None, None)])
def test_nbf_and_exp_arrive_as_strings_numbers_or_null(nbf, exp):
    ev = parse_keyvault_event(parse_envelope(kv_event(NBF=nbf, EXP=exp)))
    assert (ev.not_before is None) == (nbf is None) and (ev.expires is None) == (exp is None)
    if exp is not None:
        assert ev.expires == datetime.fromtimestamp(1559082102, tz=timezone.utc)


def test_shared_samples_parse_in_both_schemas_including_the_typo_variant():
    for f in sorted(SAMPLES.glob("*.json")):
        raw = json.loads(f.read_text())
        raw = raw[0] if isinstance(raw, list) else raw
        ev = parse_keyvault_event(parse_envelope(raw))
        assert (ev.vault_name, ev.object_name, ev.kind) == ("sample-kv", "newsecret", "NewVersionCreated")
        assert ev.version == "ee059b2bb5bc48398a53b168c6cdcb10"


def test_vault_id_comes_from_the_topic_and_must_name_the_same_vault():
    assert str(parse_keyvault_event(parse_envelope(kv_event())).vault_id) == VAULT_ID
    other = kv_event()
    other["topic"] = VAULT_ID.replace("kv-ml-prod", "kv-other")
    assert parse_keyvault_event(parse_envelope(other)).vault_id is None


@pytest.mark.parametrize("change, reason", [
    ({"VaultName": None}, "missing_field"),
    ({"VaultName": "x"}, "invalid_value"),
    ({"ObjectName": "../etc/passwd"}, "invalid_value"),
    ({"ObjectName": 5}, "wrong_type"),
    ({"EXP": "soon"}, "invalid_value"),
    ({"EXP": True}, "wrong_type"),
    ({"Id": "https://evil.example.com/secrets/api-token/1"}, "invalid_value"),
    ({"Id": "https://kv-other.vault.azure.net/secrets/api-token/1"}, "invalid_value"),
    ({"ObjectType": "Key"}, "invalid_value"),
])
def test_bad_key_vault_data_is_invalid_with_a_reason(change, reason):
    with pytest.raises(InvalidEvent) as err:
        parse_keyvault_event(parse_envelope(kv_event(**change)))
    assert err.value.reason == reason


def test_no_data_is_missing_data():
    raw = kv_event()
    raw.pop("data")
    with pytest.raises(InvalidEvent) as err:
        parse_keyvault_event(parse_envelope(raw))
    assert err.value.reason == "missing_data"


# ---- no inline secrets -------------------------------------------------------------------------
def _fake(prefix: str, n: int = 40) -> str:
    # credential-shaped strings are made at run time, never committed
    import secrets
    return prefix + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


@pytest.mark.parametrize("make, label", [
    (lambda: "DefaultEndpointsProtocol=https;AccountName=st;" + _fake("AccountKey=") + "==;", "AccountKey"),
    (lambda: "https://st.blob.core.windows.net/c?sv=2022-11-02&" + _fake("sig=") + "%3D", "SAS"),
    (lambda: _fake("Bearer eyJ", 60), "bearer"),
    (lambda: "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE", "private key"),
    (lambda: "Server=db;User Id=sa;" + _fake("Password=", 12), "password"),
    (lambda: _fake("ghp_", 36), "GitHub"),
])
def test_credential_looking_strings_are_found_without_echoing_them(make, label):
    value = make()
    doc = {"secrets": [{"vault": "kv", "name": "x", "description": value}]}
    hits = list(find_credentials(doc))
    assert hits and hits[0][0] == "$.secrets[0].description"
    assert label.lower() in hits[0][1].lower()
    assert value not in repr(hits)


@pytest.mark.parametrize("text", ["kv-ml-prod", "storage-connection", "Disabled", "https://kv.vault.azure.net/secrets/x",
                                  "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg"])
def test_ordinary_metadata_is_not_a_credential(text):
    assert classify(text) is None


# ---- secret references -----------------------------------------------------------------------
def _doc(**over):
    d = {"id": "ml-secrets", "version": 1, "kind": "secrets", "description": "d", "mode": "enforce",
         "selector": {"vaults": ["kv-ml-prod"]},
         "secrets": [{"vault": "kv-ml-prod", "name": "api-token", "owner": "o",
                      "rotation": {"strategy": "random", "length": 32}}]}
    d.update(over)
    return d


def test_secret_policy_semantics_build_references():
    import jsonschema
    jsonschema.validate(_doc(), SCHEMA)
    policy, found = semantics(_doc())
    assert found == [] and policy.secret("KV-ML-PROD", "api-token").rotation.length == 32
    assert policy.governs("kv-ml-prod") and not policy.governs("kv-other")


@pytest.mark.parametrize("secrets, needle", [
    ([{"vault": "kv-ml-prod", "name": "a", "owner": "o", "rotation": {"strategy": "storage-account-key"}}], "needs 'account'"),
    ([{"vault": "kv-ml-prod", "name": "a", "owner": "o", "rotation": {"strategy": "storage-account-key",
       "account": "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/r/providers/Microsoft.KeyVault/vaults/v"}}],
     "storageAccounts"),
    ([{"vault": "kv-other", "name": "a", "owner": "o", "rotation": {"strategy": "random"}}], "outside"),
    ([{"vault": "kv-ml-prod", "name": "a", "owner": "o", "rotation": {"strategy": "random"}}] * 2, "twice"),
])
def test_secret_policy_semantic_findings(secrets, needle):
    policy, found = semantics(_doc(secrets=secrets))
    assert policy is None and any(needle in m for _p, m in found)


# ---- rotation strategies ---------------------------------------------------------------------
class FakeIO:
    def __init__(self, keys):
        self.keys = {k: Redacted(v) for k, v in keys.items()}
        self.written = []
        self.fail_set = False
        self.regenerated = []

    def set_secret(self, vault, name, value, *, tags, expires_on, content_type):
        if self.fail_set:
            from guardrails.errors import ArmTransient
            raise ArmTransient("SET: answered 503")
        self.written.append((value, dict(tags)))
        return SecretVersion(vault, name, f"v{len(self.written)}", tags=tags, expires_on=expires_on)

    def list_storage_keys(self, account_id):
        return dict(self.keys)

    def regenerate_storage_key(self, account_id, key_name):
        self.regenerated.append(key_name)
        self.keys[key_name] = Redacted(f"fresh-{key_name}-{len(self.regenerated)}")
        return dict(self.keys)


def _ref(strategy="storage-account-key", **rot):
    from guardrails.secrets.policy import Rotation, SecretReference
    return SecretReference("kv-ml-prod", "storage-connection", "o", Rotation(
        strategy=strategy, account="/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/stmlprod", **rot))


def test_two_key_pattern_regenerates_the_key_not_in_use_and_records_the_live_one():
    io = FakeIO({"key1": "value-one", "key2": "value-two"})
    current = SecretVersion("kv-ml-prod", "storage-connection", "v0", value=Redacted("value-one"))
    out = StorageAccountKeyStrategy().rotate(_ref(), current, io, reason="expiring-secret", expires_on=None)
    assert io.regenerated == ["key2"]
    (value, tags), = io.written
    assert value.reveal() == "fresh-key2-1" and tags[LIVE_KEY_TAG] == "key2" and tags[MARKER_TAG] == "true"
    assert "key2" in out.detail and "fresh" not in out.detail
    # next rotation flips back to key1: the value holds key2 (the tag is never taken for it, session 34)
    import dataclasses
    io2 = FakeIO({"key1": "a", "key2": "b"})
    StorageAccountKeyStrategy().rotate(_ref(), dataclasses.replace(out.new, value=Redacted("b")), io2,
                                       reason="expiring-secret", expires_on=None)
    assert io2.regenerated == ["key1"]


def test_connection_string_format_embeds_the_new_key():
    io = FakeIO({"key1": "k1", "key2": "k2"})
    current = SecretVersion("kv-ml-prod", "storage-connection", "v0",
                            value=Redacted("DefaultEndpointsProtocol=https;AccountName=stmlprod;AccountKey=k2;EndpointSuffix=x"))
    StorageAccountKeyStrategy().rotate(_ref(format="connection-string"), current, io, reason="r", expires_on=None)
    assert io.regenerated == ["key1"]
    assert "AccountKey=fresh-key1-1" in io.written[0][0].reveal()


def test_half_way_failure_says_what_is_live_and_never_the_value():
    io = FakeIO({"key1": "k1", "key2": "k2"})
    io.fail_set = True
    current = SecretVersion("kv-ml-prod", "storage-connection", "v0", value=Redacted("k1"))
    with pytest.raises(RotationError) as err:
        StorageAccountKeyStrategy().rotate(_ref(), current, io, reason="r", expires_on=None)
    assert "key2" in str(err.value) and "key1" in str(err.value) and "stays valid" in str(err.value)
    assert "fresh" not in str(err.value) and "k1" not in str(err.value).replace("key1", "")


def test_random_strategy_uses_the_policy_length_and_alphabet():
    io = FakeIO({})
    from guardrails.secrets.policy import Rotation, SecretReference
    ref = SecretReference("kv", "tok", "o", Rotation(strategy="random", length=40, alphabet="hex"))
    RandomStrategy().rotate(ref, None, io, reason="r", expires_on=None)
    value = io.written[0][0].reveal()
    assert len(value) == 40 and set(value) <= set("0123456789abcdef")


def test_redacted_never_shows_its_value():
    r = Redacted("hunter2-very-secret")
    assert "hunter2" not in f"{r} {r!r} {r:>30} {[r]} {json.dumps(str(r))}"


def test_metadata_sync_refuses_an_inline_credential_naming_file_and_field(tmp_path):
    from guardrails.errors import MetadataValidationError
    from guardrails.policy.loader import load_directory
    leaked = "DefaultEndpointsProtocol=https;AccountName=st;" + _fake("AccountKey=", 60) + "==;"
    (tmp_path / "ml-secrets.yaml").write_text(
        "id: ml-secrets\nversion: 1\nkind: secrets\ndescription: d\nmode: enforce\nsecrets:\n"
        "  - vault: kv-ml-prod\n    name: storage-connection\n    owner: o\n"
        f"    description: '{leaked}'\n    rotation: {{strategy: notify-only}}\n")
    with pytest.raises(MetadataValidationError) as err:
        load_directory(tmp_path)
    text = str(err.value)
    assert "ml-secrets.yaml" in text and "$.secrets[0].description" in text and "credential" in text
    assert leaked not in text and leaked[50:70] not in text


def test_a_resource_policy_with_a_token_in_its_description_is_refused_too(tmp_path):
    from guardrails.errors import MetadataValidationError
    from guardrails.policy.loader import load_documents
    doc = {"id": "x-policy", "version": 1, "description": "call with " + _fake("Bearer ", 50), "mode": "enforce",
           "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
           "rules": [{"id": "r", "property": "properties.publicNetworkAccess", "expect": {"equals": "Disabled"},
                      "action": {"type": "set-property", "value": "Disabled"}}]}
    with pytest.raises(MetadataValidationError) as err:
        load_documents([("table", doc)])
    assert "$.description" in str(err.value) and "bearer" in str(err.value)


def test_rotation_lead_is_key_vaults_warning_or_half_a_short_validity():
    from datetime import timedelta

    from guardrails.secrets.rotation import NEAR_EXPIRY, rotation_lead

    assert rotation_lead(None) == NEAR_EXPIRY == timedelta(days=30)
    assert rotation_lead(90) == rotation_lead(60) == NEAR_EXPIRY
    assert rotation_lead(40) == timedelta(days=20)
    assert rotation_lead(1) == timedelta(hours=12)
    # a version the guardrail writes is never due the moment it is written
    for days in (1, 7, 20, 30, 59, 60, 61, 90, 3650):
        assert timedelta(days=days) > rotation_lead(days), days
