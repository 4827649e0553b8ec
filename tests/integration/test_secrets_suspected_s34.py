"""Session 34: five suspected defects of the secret guardrail and the adapters' retry loop, each
shown on the emulator's vault and storage account through the real SDK clients (Azurite for the
tables). Each test that is not labelled a control failed on the code as suspected and states what
was wrong and what is expected."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import settings as S
from guardrails.secrets.values import LIVE_KEY_TAG
from tests import builders as b
from tests.integration.test_secret_exposure_and_hygiene import _edit_policy
from tests.integration.test_secret_guardrail import ACCOUNT, VAULT, _event, _harness, _val, planted  # noqa: F401

pytestmark = pytest.mark.integration


def _keys(h) -> dict[str, str]:
    return {k["keyName"]: k["value"] for k in h.emu.storage_keys(ACCOUNT)}


def _version_id(bundle: dict) -> str:
    return bundle["id"].rsplit("/", 1)[-1]


def _older(name: str, n: int) -> list[dict]:
    """``n`` enabled versions of ``name`` older than the planted one (created a day ago)."""
    now = int(time.time())
    out = []
    for k in range(n):
        created = now - 86400 * (k + 2)
        out.append({"value": _val(), "id": f"https://{VAULT}.vault.azure.net/secrets/{name}/{'%032x' % (k + 1)}",
                    "attributes": {"enabled": True, "created": created, "updated": created,
                                   "exp": now + 20 * 86400, "recoveryLevel": "Recoverable+Purgeable"},
                    "tags": {}})
    return out


def _exposure(name: str, event_id: str = "exp-s34") -> dict:
    return {"id": event_id, "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/leaks",
            "subject": name, "eventType": "Guardrails.SecretExposed", "eventTime": "2026-11-24T10:00:00Z",
            "dataVersion": "1", "data": {"VaultName": VAULT, "ObjectName": name, "Source": "incident-34"}}


# -- 1. disabling the exposed versions runs past the delivery's deadline ------------------------
def test_disabling_older_versions_stops_at_the_deadline_and_a_redelivery_finishes(harness, tmp_path, planted):
    """``SecretGuardrail._disable_older`` disables every enabled older version without looking at
    the delivery's deadline: each PATCH is bounded by it (with ``timeout_for``'s 0.5 s floor), but
    the loop sends one after another past it, so a secret rotated for years (hundreds of enabled
    versions) keeps the worker busy until the Functions host kills it: no audit row at all. Here
    the budget is 3 s and each PATCH takes 0.3 s for 20 older versions: the delivery ran ~6 s, every
    PATCH after the deadline still sent. Expected: it stops at the deadline (as the rest of the
    path: ``svc._clock() > ctx.deadline``), the row is ``failed`` and names the versions still
    enabled, and the redelivery (Event Grid retries a failed row) disables the rest without a
    second rotation."""
    h = _harness(lambda *a, **kw: harness(*a, **{**kw, "env": {S.TIME_BUDGET_SECONDS: "3"}}),
                 tmp_path, planted, extra_secrets=_older("api-token", 19))
    assert h.settings.time_budget_seconds == 3
    h.emu.add_fault(method="PATCH", path_regex=f"/vaults/{VAULT}/secrets/api-token/", delay_ms=300)
    event = _exposure("api-token")
    start = time.monotonic()
    row = h.deliver(event)
    took = time.monotonic() - start
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert len(versions) == 21                                  # 20 older, one new
    still = sorted(_version_id(v) for v in versions[:-1] if v["attributes"]["enabled"])
    assert took < 3 + 1.5, took                         # the budget, one PATCH and the audit past it
    assert still, "every older version disabled: the loop never looked at the deadline"
    assert (row.verdict, row.reason) == ("failed", "transient"), (row.verdict, row.reason, row.message)
    left = [r for r in row.violations if isinstance(r.before, dict) and "enabled_versions" in r.before]
    assert len(left) == 1 and sorted(left[0].before["enabled_versions"]) == still, left
    assert "still enabled" in row.message, row.message

    h.emu.clear_faults()
    again = h.deliver(event)                                     # Event Grid's retry of the failed row
    versions = h.emu.secret_versions(VAULT, "api-token")
    assert len(versions) == 21                                  # no second rotation
    assert [v["attributes"]["enabled"] for v in versions] == [False] * 20 + [True]
    assert again.verdict == "remediated", (again.verdict, again.reason, again.message)


# -- 2. the storage-account-key strategy trusts the live-key tag -----------------------------------
def test_a_live_key_tag_edited_to_the_other_key_does_not_regenerate_the_key_in_use(harness, tmp_path, planted):
    """The secret holds key1 (its value's ``AccountKey=``); someone edits the current version's
    ``guardrails-live-key`` tag to ``key2`` (anyone who may write the secret may). The strategy
    took the tag for the truth whenever it names a key of the account and regenerated the key it
    does not name: key1, the key every consumer of the secret uses (an outage), leaving key2. The
    account's keys are listed anyway. Expected: the value decides (it holds key1): key2 is
    regenerated and stored, key1 keeps working."""
    h = _harness(harness, tmp_path, planted)
    current = h.emu.secret_versions(VAULT, "storage-connection")[-1]
    h.service.secrets.store.update_version(VAULT, "storage-connection", _version_id(current),
                                           tags={LIVE_KEY_TAG: "key2"}, deadline=time.monotonic() + 10)
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    keys = _keys(h)
    assert keys["key1"] == planted["key1"], "the key the secret holds (in use) was regenerated"
    assert keys["key2"] != planted["key2"]
    assert row.verdict == "remediated", (row.verdict, row.message)
    new = h.emu.secret_versions(VAULT, "storage-connection")[-1]
    assert f"AccountKey={keys['key2']};" in new["value"] and new["tags"][LIVE_KEY_TAG] == "key2"


def test_a_secret_holding_none_of_the_accounts_keys_is_not_rotated_on_its_tag(harness, tmp_path, planted):
    """The secret's value holds a key the account no longer has (its keys were regenerated by hand)
    and its tag says ``key1``. The strategy trusted the tag and regenerated key2, which whoever
    rotated by hand may have handed out: which key is in use is not established. Expected: nothing
    regenerated, nothing written; ``failed`` (``rotation_failed``) and the owner told, the permit
    given back."""
    stale = f"DefaultEndpointsProtocol=https;AccountName=stmlprod;AccountKey={_val(86)}==;EndpointSuffix=core.windows.net"
    now = int(time.time())
    bundle = {"value": stale, "id": f"https://{VAULT}.vault.azure.net/secrets/storage-connection/{'b' * 32}",
              "attributes": {"enabled": True, "created": now - 3600, "updated": now - 3600, "exp": now + 5 * 86400},
              "tags": {LIVE_KEY_TAG: "key1", "guardrails-rotated": "true"}}
    h = _harness(harness, tmp_path, planted, extra_secrets=[bundle])
    _edit_policy(h, tmp_path, "secrets:\n", "breaker: {max_actions: 1, window_seconds: 600}\nsecrets:\n")
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert _keys(h) == {"key1": planted["key1"], "key2": planted["key2"]}, "a key was regenerated on a guess"
    assert len(h.emu.secret_versions(VAULT, "storage-connection")) == 2          # nothing written
    assert (row.verdict, row.reason, row.notify) == ("failed", "rotation_failed", True), (row.verdict, row.message)
    assert "none of the keys" in row.violations[0].message, row.violations[0].message
    # the permit went back: the breaker (one action) still lets the next rotation through
    assert h.deliver(_event(h, "SecretNearExpiry", "api-token")).verdict == "remediated"


# -- 3. a rotated key gets no expiry -------------------------------------------------------------
def _exp(bundle: dict) -> datetime | None:
    exp = (bundle.get("attributes") or {}).get("exp")
    return datetime.fromtimestamp(exp, timezone.utc) if exp else None


def test_a_rotated_key_gets_the_policys_validity_as_its_expiry(harness, tmp_path, planted):
    """Key Vault's ``rotate_key`` gives the new version an expiry only when the key's rotation
    policy sets one (the emulator's key has none); the guardrail kept the version as it came: a
    key the guardrail rotated because it was expiring lives for ever, while a rotated secret gets
    ``expiry_for(now, validity)``. Expected: the new version expires after the policy's
    ``max_validity_days`` (90)."""
    h = _harness(harness, tmp_path, planted)
    row = h.deliver(_event(h, "KeyNearExpiry", "cmk-storage"))
    assert row.verdict == "remediated", (row.verdict, row.message)
    versions = h.emu.key_versions(VAULT, "cmk-storage")
    assert len(versions) == 2
    exp = _exp(versions[-1])
    assert exp is not None, "the rotated key has no expiry"
    assert abs(exp - (datetime.now(timezone.utc) + timedelta(days=90))) < timedelta(minutes=5), exp


def test_a_key_rotated_with_a_short_validity_is_not_rotated_again_by_its_own_warning(harness, tmp_path, planted):
    """With ``max_validity_days: 20`` the rotated key expires in 20 days: Key Vault warns 30 days
    ahead, so its ``KeyNearExpiry`` comes at once. Taken as due (the key's lead was a fixed 30
    days), every rotation would bring the next. Expected: the version gets 20 days, and the warning
    for it is ``compliant`` (a key's lead is its secret's: half the validity when that is shorter)."""
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "max_validity_days: 90", "max_validity_days: 20")
    assert h.deliver(_event(h, "KeyNearExpiry", "cmk-storage")).verdict == "remediated"
    new = h.emu.key_versions(VAULT, "cmk-storage")[-1]
    exp = _exp(new)
    assert exp is not None and abs(exp - (datetime.now(timezone.utc) + timedelta(days=20))) < timedelta(minutes=5)
    row = h.deliver(_event(h, "KeyNearExpiry", "cmk-storage"))          # Key Vault's warning for the new one
    assert row.verdict == "compliant", (row.verdict, row.message)
    assert len(h.emu.key_versions(VAULT, "cmk-storage")) == 2


# -- 4. a write throttled on every attempt is taken for one that may have landed -------------------
def test_a_write_answered_429_on_every_attempt_gives_its_permit_back(harness, tmp_path, planted):
    """Key Vault answers the new version's PUT 429 three times (Retry-After 0, 0, then beyond the
    budget): no attempt was processed. ``refused_outright`` only trusted a lone attempt
    (``attempts == 1``) since ``BudgetedCaller`` kept no attempt's answer, so the row said the
    write "may have been made" and the permit was kept: a throttling episode fills the breaker's
    window with rotations never made. Expected: as for a lone 429, the permit is given back and
    the row says the rotation failed before any change."""
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "secrets:\n", "breaker: {max_actions: 1, window_seconds: 600}\nsecrets:\n")
    put = f"/vaults/{VAULT}/secrets/api-token$"
    h.emu.add_fault(method="PUT", path_regex=put, status=429, retry_after=0, times=2)
    h.emu.add_fault(method="PUT", path_regex=put, status=429, retry_after=60, times=1)
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (row.verdict, row.reason) == ("failed", "throttled"), (row.verdict, row.reason, row.message)
    assert len([q for q in h.emu.requests if q["method"] == "PUT" and q["status"] == 429]) == 3
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1            # nothing was written
    assert "may have been made" not in row.violations[0].message, row.violations[0].message
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert (row.verdict, row.reason) == ("remediated", ""), (row.verdict, row.reason, row.message)


def test_control_a_write_with_a_5xx_among_its_attempts_keeps_its_permit(harness, tmp_path, planted):
    """Control: a 500 first (Key Vault may have stored the version), then a 429 beyond the budget:
    the outcome is unknown, the permit kept, and the row says the write may have been made."""
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "secrets:\n", "breaker: {max_actions: 1, window_seconds: 600}\nsecrets:\n")
    put = f"/vaults/{VAULT}/secrets/api-token$"
    h.emu.add_fault(method="PUT", path_regex=put, status=500, times=1)
    h.emu.add_fault(method="PUT", path_regex=put, status=429, retry_after=60, times=1)
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (row.verdict, row.reason) == ("failed", "throttled"), (row.verdict, row.reason, row.message)
    assert "may have been made" in row.violations[0].message, row.violations[0].message
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert row.reason == "circuit_open", (row.verdict, row.reason, row.message)     # the permit still counts


# -- 5. a Retry-After of inf, nan or 1e300 ---------------------------------------------------------
@pytest.mark.parametrize("header", ["inf", "Infinity"])
def test_a_non_finite_retry_after_is_taken_as_no_retry_after(harness, tmp_path, planted, header):
    """``retry_after_header`` took ``float(raw)`` as given: ``inf`` / ``Infinity`` was a wait past
    any budget, so a write Key Vault throttled once failed at once (``throttled``) instead of being
    retried. (``nan`` came out as 0.0: ``max(0.0, nan)`` keeps its first argument, so it was retried
    at once without a backoff; no crash: tests/unit/test_secrets_suspected_s34.py.) Expected: as an
    absent header (a backoff within the budget): the write is retried and the rotation done."""
    h = _harness(harness, tmp_path, planted)
    h.emu.add_fault(method="PUT", path_regex=f"/vaults/{VAULT}/secrets/api-token$", status=429,
                    retry_after=header, times=1)
    row = h.deliver(_event(h, "SecretNearExpiry", "api-token"))
    assert (row.verdict, row.reason) == ("remediated", ""), (row.verdict, row.reason, row.message)
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2


def test_a_huge_retry_after_holds_the_subscription_back_only_for_a_bounded_time(harness):
    """An ARM read answered 429 with ``Retry-After: 1e300`` inside a paced gateway (the sweep's
    ``ThrottledArm``): the call fails at once (the wait is past its budget, rightly), but the
    penalty it reported to the rate limiter was 1e300 s: the subscription's bucket closed for the
    life of the process, every later call on it ``ArmThrottled`` at once (or, without a deadline,
    a thread sleeping for ever: ``time.sleep`` raises ``OverflowError`` on it). Expected: the
    penalty is bounded (by the caller's remaining budget, or ``MAX_RETRY_AFTER`` when that is
    longer, so that a real Retry-After past a short budget still holds the others back): a later
    call with the time to wait that out waits it and is made."""
    from guardrails.adapters.retry import MAX_RETRY_AFTER
    from guardrails.errors import ArmThrottled
    from guardrails.ratelimit import FakeClock, RateLimiter, ThrottledArm

    account = b.storage(pna="Disabled", blob=False)
    h = harness([account])
    limiter_clock = FakeClock(50_000.0)
    reads = RateLimiter(25.0, 250.0, clock=limiter_clock, sleep=limiter_clock.sleep)
    arm = ThrottledArm(h.service.arm, reads, None, clock=time.monotonic)
    h.emu.add_fault(method="GET", path_regex="/storageAccounts/", status=429, retry_after="1e300", times=1)
    with pytest.raises(ArmThrottled):
        arm.get_resource(account["id"], api_version="2025-06-01", deadline=time.monotonic() + 5)
    snap = arm.get_resource(account["id"], api_version="2025-06-01",
                            deadline=time.monotonic() + MAX_RETRY_AFTER + 60)
    assert snap.body["id"].lower() == account["id"].lower()
    assert 0 < limiter_clock() - 50_000.0 <= MAX_RETRY_AFTER, limiter_clock() - 50_000.0
