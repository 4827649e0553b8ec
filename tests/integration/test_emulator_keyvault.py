"""Key Vault data plane and storage account keys on the local Azure emulator, driven by the REAL
azure-keyvault-secrets / azure-keyvault-keys clients and azure-mgmt-resource's ``send_request``.

SDK findings (azure-keyvault-secrets 4.12.0, azure-keyvault-keys 4.11.3, azure-core 1.41):
* Both keep a path prefix of ``vault_url``: ``{vault_url}/secrets/{name}/{version}`` goes out as
  ``/vaults/<vault>/secrets/...``; the emulator serves every vault on one port under ``/vaults/<vault>``.
* Default api-versions differ: secrets ``2026-04-01``, keys ``2025-07-01``.
* ``get_secret(name)`` / ``get_key(name)`` / ``update_*_properties(name)`` without a version send
  ``/secrets/<name>/`` (trailing slash, empty version).
* The challenge is cached per host:port in a process-global cache, one per package: only the first
  request of the process to that port (per package) is sent unauthenticated (and body-less).
  ``verify_challenge_resource=True`` (the default) refuses the emulator's challenge with ValueError.
* ``KeyVaultSecretIdentifier`` parses ids with a 2-3 segment path only: ids must keep the real
  ``https://<vault>.vault.azure.net/secrets/<name>/<version>`` form (the emulator never rewrites them);
  ``properties.vault_url`` is then the real vault URL, not the emulator's.
* Paging follows the ``nextLink`` as given (api-version replaced); ``max_page_size`` → ``maxresults``.
* azure-mgmt-storage is not installed: storage ``listKeys``/``regenerateKey`` go through the public
  ``ResourceManagementClient.send_request(HttpRequest(...))`` (the same ARM pipeline, bearer policy included).
"""

from __future__ import annotations

import copy
import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.keyvault.keys import KeyClient, KeyVaultKeyIdentifier
from azure.keyvault.keys._shared import client_base as keys_base
from azure.keyvault.keys._shared import http_challenge_cache as keys_cache
from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient
from azure.keyvault.secrets._shared import client_base as secrets_base
from azure.keyvault.secrets._shared import http_challenge_cache as secrets_cache
from azure.mgmt.resource.resources import ResourceManagementClient

from guardrails.local.credential import LocalTokenCredential
from guardrails.local.emulator import DEFAULT_KEYVAULT_SCOPE, AzureEmulator
from guardrails.local.keyvault_routes import KEYVAULT_API_VERSIONS
from guardrails.model.resource import lookup_type

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-000000000001"
OID = "11111111-2222-3333-4444-555555555555"
VAULT = "kv-ml-prod"
VAULT_ID = f"/subscriptions/{SUB}/resourceGroups/rg-sec/providers/Microsoft.KeyVault/vaults/{VAULT}"
ST = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1"
V_ST = lookup_type("Microsoft.Storage/storageAccounts").api_version
KV_SAMPLES = Path("/work/shared/azure-samples/keyvault")
EXP = int(datetime(2031, 1, 1, tzinfo=timezone.utc).timestamp())
NBF = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())


def fresh_value() -> str:
    return "s3cr3t-" + uuid.uuid4().hex          # made at run time, never committed


def vault_resource() -> dict:
    return {"id": VAULT_ID, "name": VAULT, "type": "Microsoft.KeyVault/vaults", "location": "eastus",
            "properties": {"tenantId": "00000000-0000-0000-0000-0000000000aa", "enableRbacAuthorization": True,
                           "sku": {"family": "A", "name": "standard"}}}


def storage_resource() -> dict:
    return {"id": ST, "name": "st1", "type": "Microsoft.Storage/storageAccounts", "location": "eastus",
            "properties": {"keyCreationTime": {"key1": None, "key2": None}}}


def secret_bundle(name: str, version: str, value: str, created: int, **attrs) -> dict:
    return {"value": value, "id": f"https://{VAULT}.vault.azure.net/secrets/{name}/{version}",
            "attributes": {"enabled": True, **attrs, "created": created, "updated": created,
                           "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
            "tags": {"owner": "ml"}, "contentType": "text/plain"}


def key_bundle(name: str, version: str, created: int, kty: str = "RSA", **attrs) -> dict:
    return {"key": {"kid": f"https://{VAULT}.vault.azure.net/keys/{name}/{version}", "kty": kty,
                    "key_ops": ["sign", "verify"] + (["wrapKey", "unwrapKey"] if kty == "RSA" else [])},
            "attributes": {"enabled": True, **attrs, "created": created, "updated": created,
                           "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
            "tags": {"rotation": "auto"}}


def forget_challenges(emu: AzureEmulator) -> None:
    """The SDK caches the challenge per host:port, process-wide: start from a clean state."""
    secrets_cache.remove_challenge_for_url(emu.base_url)
    keys_cache.remove_challenge_for_url(emu.base_url)


def kv_kwargs(emu: AzureEmulator, **kw) -> dict:
    return {"credential": LocalTokenCredential(object_id=OID), "connection_verify": emu.ca_path,
            "verify_challenge_resource": False, "retry_total": 0, **kw}


def secret_client(emu: AzureEmulator, vault: str = VAULT, **kw) -> SecretClient:
    return SecretClient(vault_url=emu.vault_url(vault), **kv_kwargs(emu, **kw))


def key_client(emu: AzureEmulator, vault: str = VAULT, **kw) -> KeyClient:
    return KeyClient(vault_url=emu.vault_url(vault), **kv_kwargs(emu, **kw))


def arm_client(emu: AzureEmulator) -> ResourceManagementClient:
    return ResourceManagementClient(LocalTokenCredential(object_id=OID), SUB, base_url=emu.base_url,
                                    connection_verify=emu.ca_path, retry_total=0)


def raw(emu: AzureEmulator, method: str, path: str, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(emu.base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    ctx = ssl.create_default_context(cafile=emu.ca_path)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


def bearer() -> dict:
    return {"Authorization": f"Bearer {LocalTokenCredential(object_id=OID).token}"}


@pytest.fixture
def emu():
    with AzureEmulator([vault_resource(), storage_resource()]) as e:
        forget_challenges(e)
        yield e


# ---- addressing and the challenge ---------------------------------------------------------

def test_vault_addressing_and_challenge_dance(emu):
    assert emu.vault_url(VAULT) == f"{emu.base_url}/vaults/{VAULT}"
    assert emu.vault_url_template == f"https://127.0.0.1:{emu.port}/vaults/{{vault}}"
    assert emu.vault_url_template.format(vault=VAULT) == emu.vault_url(VAULT)

    value = fresh_value()
    with secret_client(emu) as client:
        created = client.set_secret("db-password", value)
        assert client.get_secret("db-password").value == value
    challenge, put, get = emu.requests
    # the first request goes out without token and without its body, then again with both
    assert (challenge["method"], challenge["status"], challenge["caller"], challenge["body"]) == ("PUT", 401, None, None)
    assert put["status"] == 200 and put["caller"] == OID and put["body"]["value"] == value
    assert {r["host"] for r in emu.requests} == {VAULT}
    assert put["path"] == f"/vaults/{VAULT}/secrets/db-password"
    assert get["path"] == f"/vaults/{VAULT}/secrets/db-password/" and get["status"] == 200
    assert put["query"] == {"api-version": secrets_base.DEFAULT_VERSION.value}
    # ids keep the real vault URL form, and the SDK parses them
    assert created.id == f"https://{VAULT}.vault.azure.net/secrets/db-password/{created.properties.version}"
    ident = KeyVaultSecretIdentifier(created.id)
    assert (ident.vault_url, ident.name, ident.version) == (f"https://{VAULT}.vault.azure.net", "db-password",
                                                            created.properties.version)

    status, headers, body = raw(emu, "GET", f"/vaults/{VAULT}/secrets/db-password?api-version=7.5")
    assert status == 401 and body["error"]["code"] == "Unauthorized"
    assert headers["WWW-Authenticate"] == ('Bearer authorization="https://login.microsoftonline.com/'
                                           f'{emu.tenant_id}", resource="https://vault.azure.net"')
    status, _, _ = raw(emu, "GET", f"/vaults/{VAULT}/secrets/db-password?api-version=7.5",
                       headers={"Authorization": "Bearer not-a-local-token"})
    assert status == 401

    # with the production default the SDK refuses a challenge from a host outside vault.azure.net
    forget_challenges(emu)
    with SecretClient(vault_url=emu.vault_url(VAULT), credential=LocalTokenCredential(object_id=OID),
                      connection_verify=emu.ca_path, retry_total=0) as strict:
        with pytest.raises(ValueError, match="verify_challenge_resource"):
            strict.get_secret("db-password")


def test_api_versions_of_the_installed_sdks_accepted_others_rejected(emu):
    assert secrets_base.DEFAULT_VERSION.value in KEYVAULT_API_VERSIONS
    assert keys_base.DEFAULT_VERSION.value in KEYVAULT_API_VERSIONS
    with secret_client(emu, api_version="7.4") as old:
        with pytest.raises(HttpResponseError) as exc:
            old.set_secret("x", fresh_value())
    assert exc.value.status_code == 400 and exc.value.error.code == "BadParameter"
    assert "7.4" in exc.value.error.message
    status, _, body = raw(emu, "GET", f"/vaults/{VAULT}/secrets/x", headers=bearer())
    assert status == 400 and body["error"]["code"] == "BadParameter"
    with secret_client(emu, api_version="7.5") as v75:
        assert v75.set_secret("x", "y").name == "x"
    status, _, body = raw(emu, "GET", f"/vaults/{VAULT}/certificates/c?api-version=7.5", headers=bearer())
    assert status == 501 and body["error"]["code"] == "NotImplemented"


# ---- secrets ------------------------------------------------------------------------------

def test_secret_set_get_versions_and_update_properties(emu):
    exp = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=90)
    with secret_client(emu) as client:
        v1 = client.set_secret("api-key", fresh_value(), content_type="text/plain", tags={"owner": "ml"})
        v2_value = fresh_value()
        v2 = client.set_secret("api-key", v2_value, expires_on=exp,
                               not_before=datetime.fromtimestamp(NBF, timezone.utc), tags={"rotated": "yes"})
        client.set_secret("other", fresh_value())
        current = client.get_secret("api-key")
        assert current.value == v2_value and current.properties.version == v2.properties.version
        assert current.properties.expires_on == exp and current.properties.tags == {"rotated": "yes"}
        assert client.get_secret("api-key", v1.properties.version).properties.content_type == "text/plain"

        versions = list(client.list_properties_of_secret_versions("api-key", max_page_size=1))
        assert [p.version for p in versions] == sorted([v1.properties.version, v2.properties.version])
        assert all(p.enabled for p in versions)
        listed = {p.name: p for p in client.list_properties_of_secrets()}
        assert sorted(listed) == ["api-key", "other"] and listed["api-key"].version is None
        assert listed["api-key"].expires_on == exp                          # the current version's attributes

        # disable the old version, give the current one a later expiry
        disabled = client.update_secret_properties("api-key", v1.properties.version, enabled=False)
        assert disabled.enabled is False and disabled.version == v1.properties.version
        later = exp + timedelta(days=30)
        updated = client.update_secret_properties("api-key", expires_on=later)      # current version
        assert updated.version == v2.properties.version and updated.expires_on == later
        assert updated.tags == {"rotated": "yes"} and updated.not_before == datetime.fromtimestamp(NBF, timezone.utc)
        with pytest.raises(HttpResponseError) as exc:
            client.get_secret("api-key", v1.properties.version)
        assert exc.value.status_code == 403 and exc.value.error.code == "Forbidden"
        assert exc.value.error.innererror["code"] == "SecretDisabled"

    pages = [r for r in emu.requests if r["path"].endswith("/api-key/versions")]
    assert [r["status"] for r in pages] == [200, 200]
    assert pages[0]["query"]["maxresults"] == "1" and "$skiptoken" in pages[1]["query"]
    patch = next(r for r in emu.requests if r["method"] == "PATCH")
    assert patch["body"] == {"attributes": {"enabled": False}}                    # REST shape on the wire
    stored = emu.secret_versions(VAULT, "API-KEY")                               # names: case-insensitive
    assert [b["id"].rsplit("/", 1)[1] for b in stored] == [v1.properties.version, v2.properties.version]
    assert stored[0]["attributes"]["enabled"] is False and stored[1]["attributes"]["exp"] == int(later.timestamp())
    assert stored[1]["attributes"]["updated"] >= stored[1]["attributes"]["created"]
    assert emu.get_secret(VAULT, "api-key")["value"] == v2_value
    assert emu.get_secret(VAULT, "api-key", "f" * 32) is None and emu.secret_versions(VAULT, "nope") == []


def test_secret_not_found_and_bad_bodies(emu):
    with secret_client(emu) as client:
        with pytest.raises(ResourceNotFoundError) as exc:
            client.get_secret("missing")
        assert exc.value.error.code == "SecretNotFound" and "missing" in exc.value.error.message
        client.set_secret("present", fresh_value())
        with pytest.raises(ResourceNotFoundError) as exc:
            client.get_secret("present", "0" * 32)
        assert exc.value.error.code == "SecretNotFound"
        with pytest.raises(ResourceNotFoundError):
            client.update_secret_properties("missing", enabled=False)
        assert list(client.list_properties_of_secret_versions("missing")) == []
    path = f"/vaults/{VAULT}/secrets/present?api-version=7.5"
    for body in ({"value": "x", "content_type": "text/plain"},           # snake_case body trap
                 {"value": "x", "attributes": {"expires": 1}},
                 {"value": "x", "attributes": {"exp": "2030-01-01"}},
                 {"contentType": "text/plain"}):                          # no value
        status, _, err = raw(emu, "PUT", path, body, bearer())
        assert status == 400 and err["error"]["code"] == "BadParameter", body
    status, _, err = raw(emu, "PUT", f"/vaults/{VAULT}/secrets/bad_name?api-version=7.5", {"value": "x"}, bearer())
    assert status == 400 and "invalid name" in err["error"]["message"]
    assert len(emu.secret_versions(VAULT, "present")) == 1


# ---- keys ---------------------------------------------------------------------------------

def test_key_get_rotate_versions_and_update(emu):
    now = int(time.time())
    emu.put_key(key_bundle("cmk", "a" * 32, now - 100, exp=now + 86400))    # no material: generated on read
    emu.put_key(key_bundle("sig", "b" * 32, now - 100, kty="EC"))
    with key_client(emu) as client:
        key = client.get_key("cmk")
        assert key.id == f"https://{VAULT}.vault.azure.net/keys/cmk/{'a' * 32}"
        assert key.key_type == "RSA" and len(key.key.n) == 256 and key.key.e == b"\x01\x00\x01"
        assert key.properties.expires_on == datetime.fromtimestamp(now + 86400, timezone.utc)
        assert client.get_key("cmk", "a" * 32).key.n == key.key.n                 # stable once generated

        rotated = client.rotate_key("cmk")
        assert rotated.properties.version != "a" * 32 and rotated.key_type == "RSA"
        assert len(rotated.key.n) == 256 and rotated.key.n != key.key.n
        assert sorted(rotated.key_operations) == sorted(key.key_operations)
        assert rotated.properties.tags == {"rotation": "auto"} and rotated.properties.expires_on is None
        assert client.get_key("cmk").id == rotated.id
        assert KeyVaultKeyIdentifier(rotated.id).version == rotated.properties.version

        versions = [p.version for p in client.list_properties_of_key_versions("cmk")]
        assert versions == sorted(["a" * 32, rotated.properties.version])
        assert sorted(p.name for p in client.list_properties_of_keys()) == ["cmk", "sig"]
        old = client.update_key_properties("cmk", "a" * 32, enabled=False)
        assert old.properties.enabled is False
        assert client.update_key_properties("cmk", tags={"t": "1"}).properties.version == rotated.properties.version

        ec = client.rotate_key("sig")
        assert ec.key_type == "EC" and ec.key.crv == "P-256" and len(ec.key.x) == 32

        with pytest.raises(ResourceNotFoundError) as exc:
            client.rotate_key("missing")
        assert exc.value.error.code == "KeyNotFound"

    events = emu.drain_events()
    assert [e["eventType"] for e in events] == ["Microsoft.KeyVault.KeyNewVersionCreated"] * 2
    assert events[0]["data"]["Id"] == rotated.id and events[0]["data"]["ObjectType"] == "Key"
    assert events[0]["subject"] == "cmk" and events[0]["topic"] == VAULT_ID
    assert emu.get_key(VAULT, "cmk", "a" * 32)["attributes"]["enabled"] is False
    assert [b["key"]["kid"] for b in emu.key_versions(VAULT, "cmk")] == [key.id, rotated.id]


# ---- events -------------------------------------------------------------------------------

def test_secret_writes_emit_new_version_events(emu):
    with secret_client(emu) as client:
        s1 = client.set_secret("db", fresh_value())
        s2 = client.set_secret("db", fresh_value(), expires_on=datetime.fromtimestamp(EXP, timezone.utc),
                               not_before=datetime.fromtimestamp(NBF, timezone.utc))
        client.update_secret_properties("db", s1.properties.version, enabled=False)   # no event
    with secret_client(emu, vault="kv-elsewhere") as other:
        other.set_secret("token", fresh_value())
    e1, e2, e3 = emu.drain_events()
    assert e1["eventType"] == e2["eventType"] == "Microsoft.KeyVault.SecretNewVersionCreated"
    assert e1["topic"] == VAULT_ID and e1["subject"] == "db"
    assert e1["data"] == {"Id": s1.id, "VaultName": VAULT, "ObjectType": "Secret", "ObjectName": "db",
                          "Version": s1.properties.version, "NBF": None, "EXP": None}
    assert (e2["data"]["NBF"], e2["data"]["EXP"]) == (NBF, EXP) and type(e2["data"]["EXP"]) is int
    assert e2["data"]["Version"] == s2.properties.version
    assert e3["topic"] == f"{DEFAULT_KEYVAULT_SCOPE}/providers/Microsoft.KeyVault/vaults/kv-elsewhere"
    assert e3["data"]["VaultName"] == "kv-elsewhere"
    for event in (e1, e2, e3):
        assert "claims" not in event["data"] and "authorization" not in event["data"]   # no caller identity
        assert event["dataVersion"] == "1" and event["metadataVersion"] == "1"
        assert len(event["eventTime"].split(".")[1]) == 8
    if KV_SAMPLES.is_dir():
        sample = json.loads((KV_SAMPLES / "Microsoft.KeyVault.SecretNewVersionCreated.eventgrid.json").read_text())
        assert set(e1) == set(sample) and set(e1["data"]) == set(sample["data"])


def test_keyvault_event_helper(emu):
    now = int(time.time())
    emu.put_secret(secret_bundle("db", "1" * 32, fresh_value(), now - 200, exp=now + 86400, nbf=now - 300))
    emu.put_secret(secret_bundle("db", "2" * 32, fresh_value(), now - 100))
    emu.put_key(key_bundle("cmk", "a" * 32, now - 100, exp=now - 5))
    near = emu.keyvault_event("SecretNearExpiry", VAULT, "db", "1" * 32)
    assert near["eventType"] == "Microsoft.KeyVault.SecretNearExpiry" and near["topic"] == VAULT_ID
    assert near["data"]["Version"] == "1" * 32 and (near["data"]["NBF"], near["data"]["EXP"]) == (now - 300, now + 86400)
    assert emu.keyvault_event("Microsoft.KeyVault.SecretExpired", VAULT, "db")["data"]["Version"] == "2" * 32
    expired = emu.keyvault_event("KeyExpired", VAULT, "cmk")
    assert expired["data"]["ObjectType"] == "Key" and expired["data"]["EXP"] == now - 5
    assert expired["data"]["Id"] == f"https://{VAULT}.vault.azure.net/keys/cmk/{'a' * 32}"
    policy = emu.keyvault_event("VaultAccessPolicyChanged", VAULT)
    assert policy["subject"] == VAULT and policy["data"]["ObjectType"] == "Vault"
    assert (policy["data"]["Version"], policy["data"]["NBF"], policy["data"]["EXP"]) == (None, None, None)
    cloud = emu.keyvault_event("KeyNearExpiry", VAULT, "cmk", schema="cloudevents")
    assert cloud["source"] == VAULT_ID and cloud["type"] == "Microsoft.KeyVault.KeyNearExpiry"
    assert cloud["specversion"] == "1.0" and cloud["subject"] == "cmk"
    cert = emu.keyvault_event("CertificateNearExpiry", VAULT, "tls", "c" * 32)
    assert cert["data"]["Id"].endswith("/certificates/tls/" + "c" * 32)
    with pytest.raises(ValueError):
        emu.keyvault_event("SecretNearExpiry", VAULT, "unknown")             # unknown object, no version
    with pytest.raises(ValueError):
        emu.keyvault_event("SecretRotated", VAULT, "db")
    assert emu.drain_events() == []                                         # built, not queued


# ---- storage account keys -----------------------------------------------------------------

def test_storage_list_and_regenerate_keys(emu):
    with arm_client(emu) as client:
        listed = client.send_request(HttpRequest("POST", f"{ST}/listKeys", params={"api-version": V_ST}))
        listed.raise_for_status()
        keys = listed.json()["keys"]
        assert [k["keyName"] for k in keys] == ["key1", "key2"]
        assert all(len(k["value"]) == 88 and k["permissions"] == "FULL" and k["creationTime"] for k in keys)
        again = client.send_request(HttpRequest("POST", f"{ST}/listKeys", params={"api-version": V_ST})).json()
        assert again["keys"] == keys

        regen = client.send_request(HttpRequest("POST", f"{ST}/regenerateKey", params={"api-version": V_ST},
                                                json={"keyName": "key1"}))
        regen.raise_for_status()
        new = {k["keyName"]: k["value"] for k in regen.json()["keys"]}
        assert new["key1"] != keys[0]["value"] and new["key2"] == keys[1]["value"]
        assert {k["keyName"]: k["value"] for k in emu.storage_keys(ST)} == new

        bad = client.send_request(HttpRequest("POST", f"{ST}/regenerateKey", params={"api-version": V_ST},
                                              json={"keyName": "key3"}))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidValuesForRequestParameters"
        snake = client.send_request(HttpRequest("POST", f"{ST}/regenerateKey", params={"api-version": V_ST},
                                                json={"key_name": "key1"}))
        assert snake.status_code == 400
        missing = client.send_request(HttpRequest("POST", ST.replace("st1", "nope") + "/listKeys",
                                                  params={"api-version": V_ST}))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
        wrong = client.send_request(HttpRequest("POST", f"{ST}/listKeys", params={"api-version": "2019-06-01"}))
        assert wrong.status_code == 400

    [event] = emu.drain_events()
    assert event["eventType"] == "Microsoft.Resources.ResourceActionSuccess" and event["subject"] == ST
    data = event["data"]
    assert data["operationName"] == data["authorization"]["Action"] == \
        "Microsoft.Storage/storageAccounts/regenerateKey/action"
    assert data["resourceUri"] == ST and data["authorization"]["Evidence"]["PrincipalId"] == OID.replace("-", "")
    log = [(r["method"], r["host"], r["path"], r["status"]) for r in emu.requests[:3]]
    assert log == [("POST", "management", f"{ST}/listKeys", 200), ("POST", "management", f"{ST}/listKeys", 200),
                   ("POST", "management", f"{ST}/regenerateKey", 200)]
    assert emu.get(ST)["properties"]["keyCreationTime"]["key1"] == regen.json()["keys"][0]["creationTime"]
    assert all(new["key1"] not in json.dumps(r) for r in emu.requests)         # values only in answers


# ---- faults -------------------------------------------------------------------------------

def test_faults_on_a_vault_path(emu):
    emu.add_fault(method="GET", path_regex=rf"vaults/{VAULT}/secrets/db/?$", status=429, retry_after=3, times=1)
    emu.add_fault(method="PUT", path_regex=rf"vaults/{VAULT}/secrets/flaky$", status=500, times=1)
    emu.put_secret(secret_bundle("db", "1" * 32, fresh_value(), 1))
    with secret_client(emu) as client:
        # the unauthenticated challenge request is not faulted: the 429 hits the real GET
        with pytest.raises(HttpResponseError) as exc:
            client.get_secret("db")
        assert exc.value.status_code == 429 and exc.value.response.headers["Retry-After"] == "3"
        assert client.get_secret("db").properties.version == "1" * 32
        with pytest.raises(HttpResponseError) as exc:
            client.set_secret("flaky", fresh_value())
        assert exc.value.status_code == 500
        assert emu.secret_versions(VAULT, "flaky") == []                  # the faulted write did nothing
        client.set_secret("flaky", fresh_value())
    with secret_client(emu, vault="kv-other") as other:                  # another vault is untouched
        with pytest.raises(ResourceNotFoundError):
            other.get_secret("db")
    assert [r["status"] for r in emu.requests if r["host"] == VAULT] == [401, 429, 200, 500, 200]
    assert len(emu.drain_events()) == 1

    # a retrying client (the product's policy) gets through after Retry-After
    emu.add_fault(method="GET", path_regex="secrets/db", status=429, retry_after=0, times=1)
    with secret_client(emu, retry_total=2, retry_backoff_factor=0) as retrying:
        assert retrying.get_secret("db").properties.version == "1" * 32


# ---- world --------------------------------------------------------------------------------

def test_world_round_trip_with_redaction():
    v_old, v_new = fresh_value(), fresh_value()
    world = {"resources": [vault_resource(), storage_resource()],
             # versions listed newest first: ordered by attributes.created
             "secrets": [secret_bundle("db", "2" * 32, v_new, 2000, exp=EXP),
                         secret_bundle("db", "1" * 32, v_old, 1000, enabled=False)],
             "keys": [key_bundle("cmk", "a" * 32, 1000)],
             "storageKeys": {ST: [{"keyName": "key1", "value": "A" * 88, "creationTime": "2024-01-01T00:00:00.0000000Z"},
                                  {"keyName": "key2", "value": "B" * 88, "creationTime": "2024-01-01T00:00:00.0000000Z"}]}}
    with AzureEmulator.from_world(copy.deepcopy(world)) as emu:
        forget_challenges(emu)
        assert [b["id"][-32:] for b in emu.secret_versions(VAULT, "db")] == ["1" * 32, "2" * 32]
        with secret_client(emu) as client:
            assert client.get_secret("db").value == v_new
        with key_client(emu) as client:
            material = client.get_key("cmk").key.n
        full = emu.world(include_values=True)
        redacted = emu.world()
    assert full["secrets"] == sorted(world["secrets"], key=lambda b: b["attributes"]["created"])
    assert full["keys"][0]["key"]["n"] and full["storageKeys"][ST][0]["value"] == "A" * 88
    text = json.dumps(redacted)
    assert v_old not in text and v_new not in text and "A" * 88 not in text
    assert {b["value"] for b in redacted["secrets"]} == {"<redacted>"}
    assert set(redacted["keys"][0]["key"]) == {"kid", "kty", "key_ops"}
    assert [k["value"] for k in redacted["storageKeys"][ST]] == ["<redacted>"] * 2
    assert redacted["secrets"][0]["attributes"] == full["secrets"][0]["attributes"]

    with AzureEmulator.from_world(full) as again:
        assert again.world(include_values=True) == full
    with AzureEmulator.from_world(redacted) as again:                   # a redacted world still loads
        assert again.world() == redacted
        assert again.get_key(VAULT, "cmk")["key"]["n"] != material       # fresh material, made at run time
        assert len(again.storage_keys(ST)[0]["value"]) == 88             # "<redacted>" storage keys regenerated
    with pytest.raises(ValueError):
        AzureEmulator.from_world({"secrets": [{"value": "x", "id": "https://kv.vault.azure.net/secrets/db"}]})
