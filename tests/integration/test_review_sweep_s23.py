"""The reconciling sweep's listing within the run's budget, its ``nextLink`` kept on the ARM
endpoint, and one run at a time (review s23).

The lister's paging is driven through the real SDK pipeline over a canned requests transport (no
emulator needed: the token is the point); the rest over Azurite and the HTTPS emulator, on a fake
clock (no waiting)."""
from __future__ import annotations

import io
import json
import threading
from collections import Counter

import pytest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.adapters import listing
from guardrails.errors import ArmError
from guardrails.model.resource import lookup_type
from guardrails.ratelimit import FakeClock, RateLimiter
from guardrails.sweep import SWEEP_TIMER
from tests import builders as b
from tests.integration.conftest import *  # noqa: F401,F403  (azurite, harness fixtures)

pytestmark = pytest.mark.integration

ARM = "https://management.azure.com"
STORAGE = lookup_type("Microsoft.Storage/storageAccounts")


# ---- B: nextLink -------------------------------------------------------------------------------
class _Transport:
    """Answers canned pages (``pages(url, n)``); records each URL asked and its Authorization."""

    def __init__(self, pages, clock=None, page_seconds=0.0):
        import requests
        import urllib3
        from requests.adapters import BaseAdapter

        self.seen = []
        outer = self

        class Adapter(BaseAdapter):
            def send(self, request, **kw):
                outer.seen.append((request.url, request.headers.get("Authorization")))
                if clock is not None:
                    clock.sleep(page_seconds)
                r = requests.Response()
                r.status_code = 200
                data = json.dumps(pages(request.url, len(outer.seen))).encode()
                r.raw = urllib3.response.HTTPResponse(body=io.BytesIO(data), status=200, preload_content=False,
                                                      headers={"Content-Type": "application/json"})
                r.headers["Content-Type"] = "application/json"
                r.url, r.request = request.url, request
                return r

            def close(self):
                pass

        self.session = requests.Session()
        self.session.mount("https://", Adapter())


class _Cred:
    def get_token(self, *scopes, **kw):
        from azure.core.credentials import AccessToken
        return AccessToken("ARM-TOKEN", 4102444800)


def _lister(pages, *, clock=None, page_seconds=0.0):
    from azure.core.pipeline.transport import RequestsTransport
    from azure.mgmt.resource.resources import ResourceManagementClient

    t = _Transport(pages, clock, page_seconds)
    kw = {"clock": clock, "sleep": clock.sleep} if clock is not None else {}
    lister = listing.ArmLister(_Cred(), endpoint=ARM, reads=RateLimiter(1000, 1000), **kw)
    lister._client = ResourceManagementClient(_Cred(), "00000000-0000-0000-0000-000000000000", base_url=ARM,
                                              transport=RequestsTransport(session=t.session))
    return lister, t


@pytest.mark.parametrize("link", ["https://collector.example.net/steal?page=2",
                                  "http://management.azure.com/subscriptions/s/x?page=2",
                                  "https://management.azure.com:8443/subscriptions/s/x?page=2",
                                  "https://evil@management.azure.com/subscriptions/s/x?page=2",
                                  "//collector.example.net/x", "/subscriptions/s/x?page=2"])
def test_a_next_link_off_the_arm_endpoint_is_not_followed_and_the_list_fails(link):
    lister, t = _lister(lambda url, n: {"value": [{"id": f"r{n}"}], "nextLink": link} if n == 1 else {"value": []})
    got = []
    with pytest.raises(ArmError, match="off the ARM endpoint") as caught:
        for item in lister.list_type("sub1", STORAGE):
            got.append(item["id"])
    assert got == ["r1"] and len(t.seen) == 1 and "steal" not in str(caught.value)


def test_a_next_link_on_the_endpoint_in_another_case_is_followed():
    lister, t = _lister(lambda url, n: {"value": [{"id": f"r{n}"}], "nextLink": "https://MANAGEMENT.azure.com:443/"
                                        "subscriptions/sub1/x?page=2"} if n == 1 else {"value": [{"id": "r2"}]})
    assert [i["id"] for i in lister.list_type("sub1", STORAGE)] == ["r1", "r2"] and len(t.seen) == 2


def test_a_next_link_naming_a_page_already_read_stops_the_list_with_an_error():
    # the old lister fetched the same page for ever; this fake stops after 50 so it ends either way
    lister, t = _lister(lambda url, n: {"value": [], "nextLink": url} if n < 50 else {"value": []})
    with pytest.raises(ArmError, match="already read"):
        list(lister.list_type("sub1", STORAGE))
    assert len(t.seen) == 1


def test_a_list_past_the_page_limit_stops_with_an_error(monkeypatch):
    monkeypatch.setattr(listing, "MAX_PAGES", 3)
    lister, t = _lister(lambda url, n: {"value": [{"id": f"r{n}"}], "nextLink": f"{ARM}/next?p={n}"}
                        if n < 10 else {"value": []})
    with pytest.raises(ArmError, match="more than 3 pages"):
        list(lister.list_type("sub1", STORAGE))
    assert len(t.seen) == 3


def test_no_page_is_requested_once_the_callers_deadline_has_passed():
    clock = FakeClock(0.0)
    lister, t = _lister(lambda url, n: {"value": [{"id": f"r{n}"}], "nextLink": f"{ARM}/next?p={n}"}
                        if n < 10 else {"value": []}, clock=clock, page_seconds=2.0)
    got = [i["id"] for i in lister.list_type("sub1", STORAGE, deadline=3.0)]
    assert got == ["r1", "r2"] and len(t.seen) == 2 and clock() <= 4.0


# ---- A: a 429's Retry-After is never waited out past the sweep's deadline ----------------------
def test_a_retry_after_longer_than_what_is_left_of_the_budget_is_not_waited_out(harness):
    h = harness([b.storage("st1", pna="Disabled", blob=False), b.key_vault("kv1", pna="Disabled", rbac=True)])
    for t in ("storageAccounts", "vaults", "registries", "workspaces"):
        h.emu.add_fault("GET", rf"^/subscriptions/[^/]+/providers/Microsoft\.[A-Za-z]+/{t}$", status=429,
                        retry_after=55, times=1)
    clock = FakeClock()
    sw = bootstrap.build_sweeper(S.Settings.from_env({**h.env, S.SWEEP_MAX_SECONDS: "5", S.SWEEP_CONCURRENCY: "1"}),
                                 clock=clock, sleep=clock.sleep)
    t0 = clock()
    summary = sw.run()
    assert clock() - t0 <= 5.0                        # the fake clock: no 55 s wait was taken
    # cut short by the budget (the next run begins there again), not a failure of the run
    assert summary.truncated and not summary.failed and summary.units_done < summary.units
    started = summary.started
    rows = sw.store.read_month(int(started[:4]), int(started[5:7]))
    assert [r["sweep_id"] for r in rows if r["sweep_id"] == summary.sweep_id] == [summary.sweep_id]


# ---- C: one sweep at a time --------------------------------------------------------------------
def test_a_sweep_that_finds_the_run_lease_held_fixes_nothing_then_the_next_one_does(harness):
    drifted = b.storage("stdrift", pna="Enabled", blob=False)
    h = harness([drifted])
    sw = bootstrap.build_sweeper(h.settings)
    sw.service.audit = h.recorder
    assert sw.state.take_run_lease(SWEEP_TIMER, "sweep-on-another-instance", 600)

    skipped = sw.run()

    assert h.writes() == [] and skipped.failed == 1 and "another sweep is running" in skipped.errors[0]
    sw.state.release_run_lease(SWEEP_TIMER, "sweep-on-another-instance")
    done = sw.run()
    assert done.remediated == 1 and h.resource(drifted["id"])["properties"]["publicNetworkAccess"] == "Disabled"
    # and it gave the lease back: another run may take it at once
    assert sw.state.take_run_lease(SWEEP_TIMER, "next", 600)


def test_two_sweeps_at_once_fix_and_notify_each_resource_once(harness):
    drifted = [b.storage(f"st{i:03d}", pna="Enabled", blob=False) for i in range(30)]
    ws = b.workspace("mlw1", pna="Disabled")
    computes = [b.compute(f"cpu{i}", workspace_name="mlw1", node_public_ip=True) for i in range(10)]  # report-only
    h = harness(drifted + [ws] + computes)
    env = {**h.env, S.SWEEP_CONCURRENCY: "4"}
    sweepers = [bootstrap.build_sweeper(S.Settings.from_env(env)) for _ in range(2)]   # two hosts
    for sw in sweepers:
        sw.service.audit = h.recorder
    go = threading.Barrier(2)
    out = []

    def run(sw):
        go.wait()
        out.append(sw.run())

    threads = [threading.Thread(target=run, args=(sw,)) for sw in sweepers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    patches = Counter(q["path"].lower() for q in h.writes() if q["method"] == "PATCH")
    notified = Counter(r.resource_id.lower() for r in h.recorder.rows
                       if r.event_type == "Guardrails.Sweep" and r.notify and "/computes/" in r.resource_id)
    assert sum(s.remediated for s in out) == len(drifted)
    assert patches and max(patches.values()) == 1
    assert len(notified) == len(computes) and max(notified.values()) == 1


def test_a_resource_graph_page_throttled_past_the_budget_is_not_waited_out(harness):
    """Resource Graph's lister kept its own 60 s page budget: a Retry-After past the sweep's budget
    was waited out there too. Now the first page gives up at the budget's end (the sweep lists
    through ARM instead, as when Resource Graph does not answer), within the run's budget."""
    h = harness([b.storage("st1", pna="Disabled", blob=False)])
    h.emu.add_fault("POST", r"/providers/Microsoft\.ResourceGraph/resources$", status=429, retry_after=55, times=1)
    clock = FakeClock()
    sw = bootstrap.build_sweeper(S.Settings.from_env({**h.env, S.SWEEP_MAX_SECONDS: "20", S.SWEEP_CONCURRENCY: "1",
                                                      "GUARDRAILS_SWEEP_LISTER": "graph"}),
                                 clock=clock, sleep=clock.sleep)
    t0 = clock()
    summary = sw.run(subscriptions=[b.SUB])
    assert clock() - t0 < 55                                   # the 55 s Retry-After was not slept
    assert any("Resource Graph did not answer" in e for e in summary.errors)
    assert summary.seen >= 1                                   # listed through ARM instead
