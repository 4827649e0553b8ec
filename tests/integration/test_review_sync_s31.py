"""Review s31 of ``metadata sync`` and the policy table, on Azurite through the real SDK clients.

1. The sync lease does not know its own row: when the answer to the lease's Insert Entity is lost
   after Table Storage applied it (a gateway 503 the SDK retries: 409), the sync waits for ITSELF,
   fails saying another sync holds the table (on its own host and pid), and leaves the lease
   behind, so every sync for the next 5 minutes fails too.
2. A worker's read of a policy partition that spans more than one query page (Table Storage
   answers at most 1,000 entities per page) is not one snapshot: a sync landing between two page
   reads gives the worker a set no sync wrote (a policy retired, its rule moved into another:
   the old version of the one beside the new absence of the other enforces the rule nowhere).
"""

from __future__ import annotations

import uuid

import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient

from guardrails.adapters.policy_tables import TablePolicyRepository
from guardrails.adapters.tables import Tables
from guardrails.errors import PolicyUnreadable
from guardrails.sync import metadata_dirs, sync_metadata

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- 1. the lease's own answer lost

class _LeaseAnswerLost(RequestsTransport):
    """Armed: the next Insert Entity into the policy table (a POST to the table itself, no
    ``$batch``: in a sync, only the lease's) reaches the table and is applied, and its answer
    becomes a 503, as a gateway's would. The SDK retries a POST answered 500/503/504, and the
    retry meets the row its first attempt wrote (409)."""
    armed = False

    def send(self, request, **kw):
        resp = super().send(request, **kw)
        if self.armed and request.method == "POST" and request.url.split("?")[0].endswith("Policies"):
            self.armed = False
            resp.status_code = 503
        return resp


def _lease_rows(tables: Tables) -> list[dict]:
    table = tables.table(tables.policies_name)
    return list(table.query_entities("PartitionKey eq @pk", parameters={"pk": "sync"}))


def test_a_sync_whose_lease_answer_was_lost_does_not_wait_for_itself(azurite):
    transport = _LeaseAnswerLost()
    # retries as the product's clients make them (``client_options``: retry_total=2)
    svc = TableServiceClient.from_connection_string(azurite.connection_string, transport=transport,
                                                    retry_total=2, retry_backoff_factor=0.01)
    tables = Tables(svc, "S" + uuid.uuid4().hex[:10])
    tables.ensure([tables.policies_name])
    # GIVEN no other sync anywhere, and a sync whose lease write lands but whose answer is lost
    transport.armed = True
    # WHEN it syncs the shipped metadata
    counts = sync_metadata(TablePolicyRepository(tables, sync_wait_seconds=3), metadata_dirs())
    # THEN it recognises the lease as its own (its ``holder``) and writes the set ...
    assert counts["added"] > 0
    # ... and gives the lease back, so the next sync is not held up for SYNC_LEASE_SECONDS
    assert _lease_rows(tables) == []


# ---------------------------------------------------------------- 2. a read across query pages

def _doc(pid: str, version: int, rules: list[str]) -> dict:
    return {"id": pid, "version": version, "description": f"storage accounts stay private ({pid})",
            "mode": "enforce", "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
            "rules": [{"id": r, "property": "properties.publicNetworkAccess", "expect": {"equals": "Disabled"},
                       "action": {"type": "notify"}} for r in rules]}


class _SyncBetweenPages(Tables):
    """The worker's tables: the policy query is read page by page as the SDK reads it, and
    ``between`` (a sync, through its own clients) runs after the first page was read and before
    the second is asked for — the order in which a worker's paged read and a sync can meet."""

    def __init__(self, service, prefix, between) -> None:
        super().__init__(service, prefix)
        self._between = between

    def table(self, name):
        real = super().table(name)
        between = self._between

        class _Paged:
            def __getattr__(self, attr):
                return getattr(real, attr)

            def query_entities(self, *a, **kw):
                pages = real.query_entities(*a, **kw).by_page()

                def rows():
                    for n, page in enumerate(pages):
                        yield from page
                        if n == 0:
                            between()
                return rows()
        return _Paged()


def test_a_worker_reading_a_partition_of_two_pages_never_gets_a_mix_of_two_syncs(azurite):
    prefix = "P" + uuid.uuid4().hex[:10]
    writer = Tables(TableServiceClient.from_connection_string(azurite.connection_string), prefix)
    repo = TablePolicyRepository(writer)
    fillers = [(f"t/m-{i:04d}", _doc(f"m-{i:04d}", 1, ["r"])) for i in range(1000)]
    # GIVEN a synced set of 1,002 policies: "aa-private" (first page) and "zz-legacy" (second page),
    # which holds the rule "public-network-access-disabled"
    set1 = [("t/aa", _doc("aa-private", 1, ["r"])), *fillers,
            ("t/zz", _doc("zz-legacy", 1, ["public-network-access-disabled"]))]
    repo.replace_all(set1)
    # AND the next sync retires "zz-legacy" and moves its rule into "aa-private" v2 (2 changes: one
    # all-or-nothing transaction)
    set2 = [("t/aa", _doc("aa-private", 2, ["r", "public-network-access-disabled"])), *fillers]
    landed = []

    def sync_set2() -> None:
        landed.append(repo.replace_all(set2))

    worker = TablePolicyRepository(_SyncBetweenPages(
        TableServiceClient.from_connection_string(azurite.connection_string), prefix, sync_set2))
    # WHEN a worker reads the partition while that sync lands between its two page reads
    try:
        docs = worker.list_documents()
    except PolicyUnreadable:
        return                  # failing closed (the event is redelivered) is as good as a whole set
    assert landed and landed[0]["removed"] == 1, "the sync ran between the worker's page reads"
    # THEN it read a set exactly as one sync wrote it: the first, or the second
    got = {d["id"]: d for _, d in docs}
    wanted = [{d["id"]: d for _, d in s} for s in (set1, set2)]
    read = {"aa-private": got.get("aa-private", {}).get("version"), "zz-legacy": "zz-legacy" in got}
    assert got in wanted, (
        f"the worker read a set no sync wrote: {read} (aa-private v1 without the rule, zz-legacy already "
        "gone: public-network-access-disabled is enforced by no policy)")
