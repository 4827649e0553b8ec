"""A new secret version is written once even when the answer to its PUT is lost: Key Vault makes a
version per PUT, so the retry first looks for the version the lost attempt made (exactly this
write's tags, expiry and content type, created since the first attempt) and takes it as the
write's own. The HTTPS emulator (Key Vault) through the real ``SecretClient``."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from guardrails.adapters.keyvault import KeyVaultGateway
from guardrails.adapters.retry import BudgetedCaller
from guardrails.local.credential import LocalTokenCredential
from guardrails.local.emulator import AzureEmulator
from guardrails.secrets.values import Redacted
from tests.integration.test_emulator_keyvault import OID, VAULT, forget_challenges, secret_bundle, vault_resource

pytestmark = pytest.mark.integration

NAME = "db-password"
TAGS = {"guardrails-managed": "true", "guardrails-reason": "expiring"}
EXPIRES = datetime(2027, 3, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc)    # Key Vault keeps whole seconds


@pytest.fixture
def emu():
    with AzureEmulator([vault_resource()]) as e:
        forget_challenges(e)
        old = secret_bundle(NAME, "0" * 32, "old-value", 1_700_000_000)
        yield e, old


def _gateway(e: AzureEmulator, *, extra_wait: float = 0.0) -> KeyVaultGateway:
    # a 0.5 s read timeout; ``extra_wait``: the retry comes that much later (after a slow write landed)
    caller = BudgetedCaller(timeout=0.5, sleep=lambda s: time.sleep(s + extra_wait))
    return KeyVaultGateway(LocalTokenCredential(object_id=OID), url_template=e.vault_url_template,
                           verify_challenge_resource=False, ca_bundle=e.ca_path, caller=caller)


def _set(gw: KeyVaultGateway, value: str):
    return gw.set_secret(VAULT, NAME, Redacted(value), tags=dict(TAGS), expires_on=EXPIRES,
                         content_type="text/plain", deadline=time.monotonic() + 20)


def test_a_write_that_landed_though_its_answer_was_lost_is_not_written_again(emu):
    e, old = emu
    e.put_secret(old)
    # the PUT lands after 1.2 s, the client gave up after 0.5 s: no answer, a new version all the same
    e.add_fault(method="PUT", path_regex=rf"/vaults/{VAULT}/secrets/{NAME}$", delay_ms=1200, times=1)

    new = _set(_gateway(e, extra_wait=1.5), "new-value")

    versions = e.secret_versions(VAULT, NAME)
    assert len(versions) == 2, [v["id"] for v in versions]            # the old one and one new one
    assert versions[-1]["id"].endswith("/" + new.version) and versions[-1]["value"] == "new-value"
    assert new.tags == TAGS and new.enabled
    puts = [q for q in e.requests if q["method"] == "PUT" and q["path"].endswith(f"/secrets/{NAME}") and q["caller"]]
    assert len(puts) == 1


def test_a_refused_attempt_is_sent_again_and_an_older_version_with_the_same_tags_is_not_taken(emu):
    e, old = emu
    # the current version already carries the same tags and expiry, written long ago
    e.put_secret({**old, "tags": dict(TAGS), "attributes": {**old["attributes"], "exp": int(EXPIRES.timestamp())}})
    e.add_fault(method="PUT", path_regex=rf"/vaults/{VAULT}/secrets/{NAME}$", status=503, times=1)

    new = _set(_gateway(e), "second-value")

    versions = e.secret_versions(VAULT, NAME)
    assert len(versions) == 2 and versions[-1]["value"] == "second-value"
    assert new.version != "0" * 32 and versions[-1]["id"].endswith("/" + new.version)


def test_a_write_answered_at_once_lists_nothing(emu):
    e, old = emu
    e.put_secret(old)
    e.clear_requests()
    _set(_gateway(e), "plain")
    assert [q["method"] for q in e.requests if q["caller"]] == ["PUT"]
    assert len(e.secret_versions(VAULT, NAME)) == 2
