"""``KeyVaultGateway.list_secrets`` against the emulator's Key Vault (real azure-keyvault-secrets
client, 25 secrets to a page): a throttled page is retried on its own, from its continuation
token, never by listing the vault again from page 1."""

from __future__ import annotations

import base64

import pytest

from guardrails.adapters.keyvault import KeyVaultGateway
from guardrails.adapters.retry import BudgetedCaller
from guardrails.errors import ArmThrottled
from guardrails.local.credential import LocalTokenCredential
from guardrails.local.emulator import AzureEmulator, _Fault
from guardrails.ratelimit import FakeClock
from tests.integration.test_emulator_keyvault import OID, VAULT, forget_challenges, secret_bundle, vault_resource

pytestmark = pytest.mark.integration

SECRETS = 200                     # 8 pages of 25


class _PageFault(_Fault):
    """A fault on the list page that starts at item ``at`` only (its ``$skiptoken``)."""

    at = 0

    def matches(self, req):
        token = req.query.get("$skiptoken")
        if not token or not super().matches(req):
            return False
        return _start(token) == self.at


def _start(token: str | None) -> int:
    if not token:
        return 0
    return int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().removeprefix("kv:"))


def _page_fault(at: int, *, retry_after: int, times: int | None) -> _PageFault:
    fault = _PageFault("GET", rf"/vaults/{VAULT}/secrets$", 429, retry_after, times, 0)
    fault.at = at
    return fault


@pytest.fixture
def emu():
    with AzureEmulator([vault_resource()]) as e:
        forget_challenges(e)
        for i in range(SECRETS):
            e.put_secret(secret_bundle(f"app-{i:04d}", f"{i:032x}", "x", 1_700_000_000 + i))
        yield e


def _gateway(emu: AzureEmulator, clock: FakeClock) -> KeyVaultGateway:
    caller = BudgetedCaller(timeout=10.0, sleep=clock.sleep, clock=clock)
    return KeyVaultGateway(LocalTokenCredential(object_id=OID), url_template=emu.vault_url_template,
                           verify_challenge_resource=False, ca_bundle=emu.ca_path, caller=caller)


def _list_pages(emu: AzureEmulator) -> list[int]:
    """The start item of every authenticated list-page request sent, in order."""
    return [_start(q["query"].get("$skiptoken")) for q in emu.requests
            if q["method"] == "GET" and q["path"].rstrip("/") == f"/vaults/{VAULT}/secrets" and q["caller"]]


def test_a_throttled_page_is_retried_alone_not_the_whole_list(emu):
    clock = FakeClock()
    gateway = _gateway(emu, clock)
    emu._faults.append(_page_fault(150, retry_after=1, times=3))      # page 7 of 8: three 429s
    emu.clear_requests()

    listed = gateway.list_secrets(VAULT, deadline=clock() + 60)

    assert sorted(s.name for s in listed) == [f"app-{i:04d}" for i in range(SECRETS)]
    pages = _list_pages(emu)
    # pages 1-6 once each, page 7 four times (3 throttled + 1 answered), page 8 once: 11 requests
    # (the whole-list retry sent 6 + 1, 6 + 1, 6 + 1, 8 = 29)
    assert pages == [0, 25, 50, 75, 100, 125, 150, 150, 150, 150, 175]
    assert clock() == pytest.approx(1003.0)                            # slept Retry-After, 3 x 1 s


def test_a_page_throttled_past_the_deadline_fails_without_resending_earlier_pages(emu):
    clock = FakeClock()
    gateway = _gateway(emu, clock)
    emu._faults.append(_page_fault(100, retry_after=5, times=None))   # page 5 answers 429 forever
    emu.clear_requests()

    with pytest.raises(ArmThrottled) as raised:
        gateway.list_secrets(VAULT, deadline=clock() + 12)

    assert raised.value.status == 429
    # two Retry-After waits fit the 12 s budget, the third would not
    assert _list_pages(emu) == [0, 25, 50, 75, 100, 100, 100]


def test_a_throttled_list_page_drains_its_subscriptions_read_bucket_for_every_sweep_thread(harness):
    """The sweep's lister reports a 429's Retry-After to the read limiter it shares with the paced
    gateways: the other threads wait for that subscription instead of each meeting its own 429."""
    from guardrails import bootstrap
    from guardrails.model.resource import lookup_type
    from guardrails.ratelimit import FakeClock
    from tests import builders as b

    h = harness([b.storage("stok", pna="Disabled", blob=False)])
    h.emu.add_fault(method="GET", path_regex=rf"/subscriptions/{b.SUB}/providers/Microsoft\.Storage/storageAccounts$",
                    status=429, retry_after=30, times=1)
    clock = FakeClock()
    sweeper = bootstrap.build_sweeper(h.settings, clock=clock, sleep=clock.sleep)
    rtype = lookup_type("Microsoft.Storage/storageAccounts")
    listed = list(sweeper.lister.list_type(b.SUB, rtype, deadline=clock() + 120))
    assert [r["name"] for r in listed] == ["stok"]
    assert sweeper.reads.penalties == 1         # the subscription's bucket waits out the Retry-After


def test_a_list_stops_between_pages_once_its_callers_budget_has_ended(emu):
    """The sweep's budget ends while a vault of 8 pages is listed: the rest is not read (the
    sweep's run is cut short there and the vault is its next run's unit again)."""
    from guardrails.errors import ArmTransient

    clock = FakeClock()
    gateway = _gateway(emu, clock)
    emu.clear_requests()
    asked = []

    def go_on() -> bool:
        asked.append(1)
        return len(asked) < 2                 # the budget ends after the second page

    with pytest.raises(ArmTransient, match="budget ended after 2 page"):
        gateway.list_secrets(VAULT, deadline=clock() + 60, go_on=go_on)
    assert _list_pages(emu) == [0, 25]
