"""Review s24 of the secret guardrail, the pure parts: a connection string keeps what it says when
its key is rotated, a certificate's backing secret is never written, a disabled key is left alone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from guardrails.errors import ArmError
from guardrails.model.decision import AuditRow
from guardrails.secret_guardrail import SecretGuardrail
from guardrails.secrets.rotation import RandomStrategy, RotationError, StorageAccountKeyStrategy, with_account_key
from guardrails.secrets.values import CERTIFICATE_MANAGED, SECRET_DISABLED, KeyVersion, Redacted, SecretVersion
from tests.functional.fakes import MemoryIdempotency
from tests.unit.test_secrets_core import FakeIO, _ref

NOW = datetime(2026, 11, 25, 9, tzinfo=timezone.utc)
GOV = ("DefaultEndpointsProtocol=https;AccountName=stmlprod;AccountKey={key};"
       "EndpointSuffix=core.usgovcloudapi.net")
CUSTOM = ("BlobEndpoint=https://stmlprod.blob.contoso-edge.net/;AccountName=stmlprod;"
          "AccountKey={key};QueueEndpoint=https://stmlprod.queue.contoso-edge.net/;")


def _rotate(value: str | None):
    io = FakeIO({"key1": "k1==", "key2": "k2=="})
    current = SecretVersion("kv-ml-prod", "storage-connection", "v0",
                            value=Redacted(value) if value is not None else None)
    StorageAccountKeyStrategy().rotate(_ref(format="connection-string"), current, io, reason="r", expires_on=None)
    (new, _tags), = io.written
    return io, new.reveal()


# -- 5. a connection string keeps its endpoints ---------------------------------------------------
@pytest.mark.parametrize("template", [GOV, CUSTOM])
def test_a_connection_string_gets_only_its_account_key_replaced(template):
    # GIVEN a string naming a sovereign cloud's suffix, or custom endpoints, holding key1
    io, new = _rotate(template.format(key="k1=="))
    # THEN key2 (not in use) is regenerated and only AccountKey= changes: every other field, and
    # their order, are what consumers rely on
    assert io.regenerated == ["key2"]
    assert new == template.format(key="fresh-key2-1")


def test_a_fresh_public_cloud_string_only_when_no_current_string_can_be_kept():
    fresh = ("DefaultEndpointsProtocol=https;AccountName=stmlprod;AccountKey=fresh-key2-1;"
             "EndpointSuffix=core.windows.net")
    assert _rotate("k1==")[1] == fresh                                      # a bare key
    # a value that holds none of the account's keys (a disabled version: no value; a SAS string)
    # tells no live key: nothing is regenerated on a guess (session 34), the owner is told
    for value in (None, "BlobEndpoint=https://x/;SharedAccessSignature=sv=1&sig=abc"):
        io = FakeIO({"key1": "k1==", "key2": "k2=="})
        current = SecretVersion("kv-ml-prod", "storage-connection", "v0",
                                value=Redacted(value) if value is not None else None)
        with pytest.raises(RotationError):
            StorageAccountKeyStrategy().rotate(_ref(format="connection-string"), current, io, reason="r",
                                               expires_on=None)
        assert io.regenerated == [] and io.written == []
    other = "DefaultEndpointsProtocol=https;AccountName=stother;AccountKey=k1==;EndpointSuffix=core.chinacloudapi.cn"
    assert _rotate(other)[1] == fresh                                       # another account's string


def test_with_account_key_keeps_spelling_and_spacing_and_compares_names_case_insensitively():
    assert (with_account_key("accountname=STMLPROD; accountkey=old==;EndpointSuffix=x", "new==", "stmlprod")
            == "accountname=STMLPROD; accountkey=new==;EndpointSuffix=x")
    assert with_account_key("AccountName=stmlprod;SharedAccessSignature=sig", "new", "stmlprod") is None


# -- 2. a certificate's backing secret -------------------------------------------------------------
def _managed(value="MIIK-pfx"):
    return SecretVersion("kv-ml-prod", "tls-web", "v0", content_type="application/x-pkcs12",
                         value=Redacted(value), managed=True)


@pytest.mark.parametrize("strategy", [StorageAccountKeyStrategy(), RandomStrategy()])
def test_neither_strategy_writes_a_certificates_secret_nor_regenerates_a_key(strategy):
    io = FakeIO({"key1": "k1", "key2": "k2"})
    with pytest.raises(RotationError) as err:
        strategy.rotate(_ref(length=32, alphabet="urlsafe") if strategy.name == "random" else _ref(), _managed(), io,
                        reason="expiring-secret", expires_on=None)
    assert io.written == [] and io.regenerated == []
    assert "re-issue the certificate" in str(err.value) and "MIIK" not in str(err.value)


def test_the_gateway_carries_managed_from_the_sdks_properties():
    from guardrails.adapters.keyvault import KeyVaultGateway

    def props(managed):
        return SimpleNamespace(name="tls-web", version="v1", enabled=True, expires_on=None, not_before=None,
                               created_on=None, tags=None, content_type="application/x-pkcs12", managed=managed)

    assert KeyVaultGateway._version("kv", props(True)).managed is True
    assert KeyVaultGateway._version("kv", props(None)).managed is False


class _Store:
    """Secrets and keys as the guardrail reads them; every write recorded."""

    def __init__(self, *, version=None, key=None):
        self.version, self.key, self.writes = version, key, []

    def get_properties(self, vault, name, *, version=None, deadline=None, **kw):
        return self.version

    def update_version(self, *a, **kw):
        self.writes.append(("update_version", a, kw))

    def set_secret(self, *a, **kw):
        self.writes.append(("set_secret", a))

    def get_key(self, vault, name, *, deadline=None):
        if isinstance(self.key, Exception):
            raise self.key
        return self.key

    def rotate_key(self, vault, name, *, deadline=None):
        self.writes.append(("rotate_key", name))
        return KeyVersion(vault, name, "v2")


def _policy(mode="enforce", *, secret_owner=None):
    ref = SimpleNamespace(owner=secret_owner) if secret_owner else None
    return SimpleNamespace(id="ml-secrets", ref="ml-secrets@1", mode=mode, require_expiry=True, max_validity_days=90,
                           breaker=SimpleNamespace(max_actions=5, window_seconds=600),
                           secret=lambda v, n: ref, key=lambda v, n: SimpleNamespace(owner="secops", rotate=True))


def _guardrail(store):
    svc = SimpleNamespace(idempotency=MemoryIdempotency(), settings=SimpleNamespace(time_budget_seconds=10),
                          breakers=SimpleNamespace(try_acquire=lambda *a, **k: True))
    return SecretGuardrail(svc, store)


def _ctx(dry_run=False):
    return SimpleNamespace(now=NOW, deadline=1e12, delivery_id="d1", dry_run=dry_run, claim=None)


def _ev(object_type="Secret", kind="NewVersionCreated", name="tls-web"):
    return SimpleNamespace(object_type=object_type, kind=kind, vault_name="kv-ml-prod", object_name=name, version="v0",
                           event_type=f"Microsoft.KeyVault.{object_type}{kind}", exposure_source=None)


def _row():
    return AuditRow(event_id="e1", event_type="x", resource_id="r", verdict="ignored")


def test_a_certificates_secret_beyond_the_validity_is_a_violation_for_its_owner_and_never_written(caplog):
    version = SecretVersion("kv-ml-prod", "tls-web", "v0", expires_on=NOW + timedelta(days=365), managed=True)
    store, row = _Store(version=version), _row()
    _guardrail(store).decide(_ctx(), row, _ev(), [_policy(secret_owner="web-platform@contoso.com")])
    assert store.writes == []
    assert (row.verdict, row.reason, row.notify) == ("violation", CERTIFICATE_MANAGED, True)
    assert "re-issue the certificate" in row.message and "web-platform@contoso.com" in caplog.text


def test_a_dry_run_on_a_certificates_secret_stays_a_dry_run():
    version = SecretVersion("kv-ml-prod", "tls-web", "v0", expires_on=None, managed=True)
    store, row = _Store(version=version), _row()
    _guardrail(store).decide(_ctx(dry_run=True), row, _ev(), [_policy()])
    assert store.writes == [] and (row.verdict, row.notify) == ("dry_run", False)


# -- 4. a disabled key -----------------------------------------------------------------------------
def _key_disabled_403():
    exc = ArmError("GET key kv-ml-prod/cmk: answered 403: Operation get is not allowed on a disabled key.", status=403)
    exc.reason = SECRET_DISABLED
    return exc


@pytest.mark.parametrize("key", [KeyVersion("kv-ml-prod", "cmk", "v0", enabled=False), "403"])
@pytest.mark.parametrize("kind", ["NearExpiry", "Expired"])
def test_a_disabled_key_is_ignored_never_failed_nor_rotated(key, kind):
    store, row = _Store(key=_key_disabled_403() if key == "403" else key), _row()
    _guardrail(store).decide(_ctx(), row, _ev("Key", kind, "cmk"), [_policy()])
    assert (row.verdict, row.reason) == ("ignored", SECRET_DISABLED), row.message
    assert store.writes == [] and row.policies == ["ml-secrets@1"]


def test_the_sweep_counts_no_error_for_a_key_key_vault_refuses_as_disabled():
    from guardrails.sweep_secrets import _sweep_keys
    from tests.unit.test_secrets_lease_s20 import _Tally

    store = _Store(key=_key_disabled_403())
    sw = SimpleNamespace(service=SimpleNamespace(secrets=SimpleNamespace(store=store)), _clock=lambda: 0.0,
                         _wall=lambda: NOW)
    tally = _Tally()
    _sweep_keys(sw, tally, {("kv-ml-prod", "cmk"): ("cmk", timedelta(days=30))}, "sweep-1", False, 1.0)
    assert tally.errors == [] and tally.verdicts == [] and store.writes == []
