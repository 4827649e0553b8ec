"""Pure parts of the 2026-11 review (s20) fixes: the strictest validity across policies, the order
of an exposure's storage-key revoke and what a failure part way says, free text that looks like a
credential."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from guardrails.errors import ArmError
from guardrails.secrets.credentials import looks_like_credential
from guardrails.secrets.rotation import (RotationError, StorageAccountKeyStrategy, finish_revoke, rotation_lead,
                                         strictest_validity)
from guardrails.secrets.values import LIVE_KEY_TAG, REVOKE_PENDING_TAG, Redacted, SecretVersion
from tests.unit.test_secrets_core import FakeIO, _ref


def _p(mode, days):
    return SimpleNamespace(mode=mode, max_validity_days=days)


def test_the_strictest_validity_is_the_shortest_of_the_enforcing_policies_and_the_acting_one():
    # GIVEN the team's policy (90 days) and a baseline (20 days), both enforcing, and an audit one (5)
    team, baseline, observe = _p("enforce", 90), _p("enforce", 20), _p("audit", 5)
    # THEN a version the team's policy writes lives 20 days and is rotated 10 days before it expires
    assert strictest_validity([team, baseline, observe], team) == 20
    assert rotation_lead(strictest_validity([team, baseline, observe], team)).days == 10
    # an audit-mode policy bounds only itself; no validity anywhere: the default applies
    assert strictest_validity([team, observe], observe) == 5
    assert strictest_validity([team, observe]) == 90
    assert strictest_validity([_p("enforce", None)]) is None


class _IO(FakeIO):
    def __init__(self, keys, fail_on=()):
        super().__init__(keys)
        self.calls = []
        self.fail_on = set(fail_on)
        self.tagged = []

    def set_secret(self, vault, name, value, **kw):
        self.calls.append("set")
        return super().set_secret(vault, name, value, **kw)

    def regenerate_storage_key(self, account_id, key_name):
        self.calls.append(key_name)
        if key_name in self.fail_on:
            raise ArmError("POST regenerateKey: answered 409 Conflict", status=409)
        return super().regenerate_storage_key(account_id, key_name)

    def set_tags(self, vault, name, version, tags):
        self.calls.append("tags")
        self.tagged.append(dict(tags))
        return SecretVersion(vault, name, version, tags=tags)


def test_an_exposure_stores_the_new_live_key_before_revoking_the_others():
    io = _IO({"key1": "k1", "key2": "k2"})
    current = SecretVersion("kv-ml-prod", "storage-connection", "v0", value=Redacted("k1"))
    out = StorageAccountKeyStrategy().rotate(_ref(), current, io, reason="exposed-secret", expires_on=None,
                                             revoke=True, tags={"guardrails-exposure": "e1"})
    assert io.calls == ["key2", "set", "key1", "tags"]
    (_, tags), = io.written
    assert tags[REVOKE_PENDING_TAG] == "key1" and tags[LIVE_KEY_TAG] == "key2" and tags["guardrails-exposure"] == "e1"
    assert REVOKE_PENDING_TAG not in io.tagged[-1] and REVOKE_PENDING_TAG not in out.new.tags
    assert "key1" in out.detail and "key2" in out.detail


def test_a_revoke_failing_part_way_names_what_was_regenerated_and_what_was_not():
    io = _IO({"key1": "k1", "key2": "k2"}, fail_on={"key1"})
    current = SecretVersion("kv-ml-prod", "storage-connection", "v0", value=Redacted("k1"))
    with pytest.raises(RotationError) as err:
        StorageAccountKeyStrategy().rotate(_ref(), current, io, reason="exposed-secret", expires_on=None, revoke=True)
    text = str(err.value)
    assert err.value.new is not None and err.value.new.version == "v1"      # the secret holds a working key
    assert "NOT regenerated: key1" in text and "key2 live" in text and "before any change" not in text
    assert "k1" not in text.replace("key1", "") and "fresh" not in text
    # a retry finishes from the version's tag
    io.fail_on.clear()
    new, detail = finish_revoke(_ref(), err.value.new, io)
    assert io.calls[-2:] == ["key1", "tags"] and "key1" in detail and REVOKE_PENDING_TAG not in new.tags


def test_a_disabled_version_without_a_value_is_rotated_by_the_revoke_path():
    io = _IO({"key1": "k1", "key2": "k2"})
    current = SecretVersion("kv-ml-prod", "storage-connection", "v0", enabled=False)     # no readable value
    StorageAccountKeyStrategy().rotate(_ref(), current, io, reason="exposed-secret", expires_on=None, revoke=True)
    assert sorted(io.regenerated) == ["key1", "key2"]


@pytest.mark.parametrize("text, hidden", [
    ("github-secret-scanning", False), ("incident-42 (responder jdoe@contoso.com)", False),
    ("https://github.com/contoso/ml/security/secret-scanning/17", False),
    ("trufflehog match AccountKey=" + "Ab1" * 20, True),
    ("found " + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7sU9", True),
])
def test_free_text_that_looks_like_a_credential(text, hidden):
    assert looks_like_credential(text) is hidden
