"""A worker's read of the policy partition is one sync's set: a partition of two query pages read
while syncs keep landing between the pages fails closed after ``SNAPSHOT_ROUNDS`` reads (never a
mixed set); a sync that lands between the read and its check costs one more read, never a miss."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables import TableServiceClient

from guardrails.adapters.policy_tables import TablePolicyRepository
from guardrails.adapters.tables import Tables
from guardrails.errors import PolicyUnreadable
from tests.integration.test_review_sync_s31 import _doc, _SyncBetweenPages

pytestmark = pytest.mark.integration


def _fillers() -> list:
    return [(f"t/m-{i:04d}", _doc(f"m-{i:04d}", 1, ["r"])) for i in range(1000)]


def test_syncs_landing_between_every_pair_of_pages_fail_closed_after_the_rounds(azurite):
    prefix = "Q" + uuid.uuid4().hex[:10]
    repo = TablePolicyRepository(Tables(TableServiceClient.from_connection_string(azurite.connection_string), prefix))
    fillers = _fillers()
    repo.replace_all([("t/aa", _doc("aa-private", 1, ["r"])), *fillers])
    versions = iter(range(2, 100))
    queries = []

    def another_sync() -> None:           # a new version of the first page's policy, every time
        queries.append(1)
        repo.replace_all([("t/aa", _doc("aa-private", next(versions), ["r"])), *fillers])

    worker = TablePolicyRepository(_SyncBetweenPages(
        TableServiceClient.from_connection_string(azurite.connection_string), prefix, another_sync))
    with pytest.raises(PolicyUnreadable, match="changed while it was read, 3 times"):
        worker.list_documents()
    # a full read and a read of the keys per round, each met by a sync between its pages
    assert len(queries) == 2 * TablePolicyRepository.SNAPSHOT_ROUNDS


def test_a_sync_between_the_read_and_its_check_costs_one_more_read(azurite):
    prefix = "Q" + uuid.uuid4().hex[:10]
    tables = Tables(TableServiceClient.from_connection_string(azurite.connection_string), prefix)
    repo = TablePolicyRepository(tables)
    repo.replace_all([("t/aa", _doc("aa-private", 1, ["r"])), ("t/bb", _doc("bb-private", 1, ["r"]))])
    real = tables.table(tables.policies_name)
    calls = []

    class _Once:                          # one page only; a sync lands after the first full read
        def __getattr__(self, attr):
            return getattr(real, attr)

        def query_entities(self, *a, **kw):
            rows = list(real.query_entities(*a, **kw))
            calls.append("keys" if kw.get("select") else "full")
            if len(calls) == 1:
                repo.replace_all([("t/aa", _doc("aa-private", 2, ["r"])), ("t/bb", _doc("bb-private", 1, ["r"]))])
            return iter(rows)

    class _Tables(Tables):
        def table(self, name):
            return _Once() if name == tables.policies_name else super().table(name)

    worker = TablePolicyRepository(_Tables(tables.service, prefix))
    docs = {d["id"]: d["version"] for _, d in worker.list_documents()}
    assert docs == {"aa-private": 2, "bb-private": 1}        # the later set, read whole
    assert calls == ["full", "keys", "full", "keys"]


def test_a_takeover_of_a_dead_syncs_lease_whose_answer_was_lost_is_recognised_as_its_own(azurite):
    from datetime import datetime, timedelta, timezone

    from azure.core.pipeline.transport import RequestsTransport

    from guardrails.sync import metadata_dirs, sync_metadata

    class _TakeoverAnswerLost(RequestsTransport):
        armed = False

        def send(self, request, **kw):
            resp = super().send(request, **kw)
            if self.armed and request.method == "PUT" and "RowKey='lease'" in request.url:
                self.armed = False
                resp.status_code = 503          # applied; the SDK's retry meets the new etag: 412
            return resp

    transport = _TakeoverAnswerLost()
    svc = TableServiceClient.from_connection_string(azurite.connection_string, transport=transport,
                                                    retry_total=2, retry_backoff_factor=0.01)
    tables = Tables(svc, "L" + uuid.uuid4().hex[:10])
    tables.ensure([tables.policies_name])
    now = datetime.now(timezone.utc)
    # GIVEN the lease of a sync that died an hour ago
    tables.table(tables.policies_name).create_entity({
        "PartitionKey": "sync", "RowKey": "lease", "holder": "dead", "host": "gone pid 1",
        "taken_at": now - timedelta(hours=1), "expires_at": now - timedelta(minutes=55)})
    transport.armed = True
    # WHEN a sync takes it over and the answer to its takeover is lost
    counts = sync_metadata(TablePolicyRepository(tables, sync_wait_seconds=3), metadata_dirs())
    # THEN it writes the set and gives the lease back
    assert counts["added"] > 0 and not transport.armed
    assert list(tables.table(tables.policies_name).query_entities("PartitionKey eq 'sync'")) == []
