"""Review s20 of the secret guardrail, the pure parts: the rotation lease over the in-memory
idempotency store, the new version's tag set within Key Vault's limit, the sweep skipping a
secret whose lease is held."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from guardrails.errors import IdempotencyError, StoreError
from guardrails.secrets.lease import lease_key, rotation_lease
from guardrails.secrets.rotation import fit_tags
from guardrails.secrets.values import (EXPOSURE_TAG, LIVE_KEY_TAG, MARKER_TAG, MAX_TAGS, ORIGIN_TAG, REASON_TAG,
                                       REVOKE_PENDING_TAG, SecretVersion)
from guardrails.sweep_secrets import _decide
from tests.functional.fakes import MemoryIdempotency


def _store():
    now = [datetime(2026, 11, 25, 9, tzinfo=timezone.utc)]
    store = MemoryIdempotency(clock=lambda: now[0], in_progress=timedelta(minutes=2))
    return store, lambda: now.__setitem__(0, now[0] + timedelta(minutes=3))


# -- the lease -----------------------------------------------------------------------------------
def test_the_lease_is_one_per_secret_whatever_the_case_and_released_after():
    store, _ = _store()
    assert lease_key("KV-ML-Prod", "Storage-Connection") == "rotate:kv-ml-prod/storage-connection"
    with rotation_lease(store, "kv-ml-prod", "storage-connection", holder="a"):
        assert set(store.records) == {"rotate:kv-ml-prod/storage-connection"}
        with pytest.raises(IdempotencyError):
            with rotation_lease(store, "KV-ML-PROD", "STORAGE-CONNECTION", holder="b"):
                pass
        with rotation_lease(store, "kv-ml-prod", "api-token", holder="b"):    # another secret: its own
            pass
    assert store.records == {}, "released, never completed"
    with rotation_lease(store, "kv-ml-prod", "storage-connection", holder="b"):
        pass


def test_the_lease_is_released_when_the_rotation_raises():
    store, _ = _store()
    with pytest.raises(RuntimeError):
        with rotation_lease(store, "kv", "s", holder="a"):
            raise RuntimeError("boom")
    assert store.records == {}


def test_a_lease_whose_holder_died_is_taken_over_once_stale(caplog):
    store, later = _store()
    store.acquire("rotate:kv/s", holder="dead")
    with pytest.raises(IdempotencyError):
        with rotation_lease(store, "kv", "s", holder="a"):
            pass
    later()
    caplog.set_level(logging.WARNING)
    with rotation_lease(store, "kv", "s", holder="a"):
        assert store.records["rotate:kv/s"]["holder"] == "a"
    assert "guardrail_rotation_lease_taken_over" in caplog.text and store.records == {}


def test_a_release_the_store_refuses_neither_masks_the_outcome_nor_raises(caplog):
    store, _ = _store()

    def refuse(*a, **k):
        raise StoreError("table storage unavailable")
    store.release = refuse
    caplog.set_level(logging.WARNING)
    with rotation_lease(store, "kv", "s", holder="a"):
        pass
    with pytest.raises(ValueError):
        with rotation_lease(SimpleNamespace(acquire=MemoryIdempotency().acquire, release=refuse), "kv", "s",
                            holder="a"):
            raise ValueError("the rotation's own error")
    assert "guardrail_rotation_lease_not_released" in caplog.text


# -- tags within Key Vault's 15 ------------------------------------------------------------------
def _version(tags):
    return SecretVersion(vault="kv", name="s", version="v1", tags=tags)


EXPOSURE_EXTRA = {ORIGIN_TAG: "d1 e1", EXPOSURE_TAG: "e1", LIVE_KEY_TAG: "key2", REVOKE_PENDING_TAG: "key1"}


def test_a_few_user_tags_are_all_carried_and_the_old_guardrail_tags_replaced():
    tags, dropped = fit_tags(_version({"team": "ml", REASON_TAG: "old", "guardrails-stale": "x"}),
                             "exposed-secret", EXPOSURE_EXTRA)
    assert dropped == 0
    assert tags == {"team": "ml", MARKER_TAG: "true", REASON_TAG: "exposed-secret", **EXPOSURE_EXTRA}


def test_past_the_limit_the_audit_aid_goes_first_then_the_last_user_tags():
    user = {f"t{i:02d}": str(i) for i in range(10)}             # 10 + 6 of ours: one too many
    tags, dropped = fit_tags(_version(user), "exposed-secret", EXPOSURE_EXTRA)
    assert (len(tags), dropped) == (MAX_TAGS, 0) and ORIGIN_TAG not in tags and set(user) <= set(tags)
    user = {f"t{i:02d}": str(i) for i in range(13)}
    tags, dropped = fit_tags(_version(user), "exposed-secret", EXPOSURE_EXTRA)
    assert len(tags) == MAX_TAGS and dropped == 3
    assert [k for k in tags if k.startswith("t")] == [f"t{i:02d}" for i in range(10)]
    assert {MARKER_TAG, REASON_TAG, EXPOSURE_TAG, LIVE_KEY_TAG, REVOKE_PENDING_TAG} <= set(tags)


def test_a_plain_rotation_keeps_its_origin_tag_when_it_fits():
    user = {f"t{i:02d}": str(i) for i in range(11)}             # 11 + marker, reason, live key, origin
    tags, dropped = fit_tags(_version(user), "expiring-secret", {ORIGIN_TAG: "d e", LIVE_KEY_TAG: "key2"})
    assert len(tags) == MAX_TAGS and dropped == 0 and tags[ORIGIN_TAG] == "d e"
    tags, dropped = fit_tags(None, "expiring-secret", None)
    assert tags == {MARKER_TAG: "true", REASON_TAG: "expiring-secret"} and dropped == 0


# -- the sweep: a held lease skips the secret ----------------------------------------------------
class _Tally:
    def __init__(self):
        self.verdicts, self.errors, self.seen_n = [], [], 0

    def seen(self, n=1, compliant=0):
        self.seen_n += n

    def decided(self, verdict):
        self.verdicts.append(verdict)

    def error(self, text):
        self.errors.append(text)


def test_the_sweep_skips_a_secret_whose_rotation_lease_another_worker_holds(caplog):
    def busy(*a, **k):
        raise IdempotencyError("event is being handled by another delivery; retry later")
    # the sweep finds the current version from one list of the versions' properties (session 34)
    store = SimpleNamespace(list_versions=lambda vault, name, deadline: [SimpleNamespace(version="v1", created_on=None)])
    sw = SimpleNamespace(service=SimpleNamespace(secrets=SimpleNamespace(store=store), reconcile_secret=busy))
    tally = _Tally()
    caplog.set_level(logging.INFO)
    _decide(sw, tally, "kv", "s", "Secret", False, "sweep-1", False, 0.0)
    assert tally.verdicts == ["duplicate"] and tally.errors == [] and tally.seen_n == 1
    assert "guardrail_sweep_secret_busy" in caplog.text


def test_only_key_vaults_own_disabled_answer_reads_as_a_disabled_object():
    from types import SimpleNamespace

    from guardrails.adapters.keyvault import _disabled

    def answer(code="Forbidden", inner=None, message=""):
        return SimpleNamespace(error=SimpleNamespace(code=code, innererror=inner or {}, message=message))

    assert _disabled(answer(inner={"code": "SecretDisabled"}))
    assert _disabled(answer(message="Operation get is not allowed on a disabled secret."))
    # a firewall or a name with "disabled" in it is a missing permission
    assert not _disabled(answer(inner={"code": "ForbiddenByFirewall"},
                                message="Public network access is disabled and request is not from a trusted service"))
    assert not _disabled(answer(message="Caller is not authorized to get secret 'disabled-feature-flag'"))
    assert not _disabled(answer(code="PublicNetworkAccessDisabled"))
