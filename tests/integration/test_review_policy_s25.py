"""Review s25 of the policy-as-metadata path, on Azurite through the real SDK clients and the trigger.

1. a path too deep to compile: refused by sync; a row holding one (written by hand) is audited
   ``failed``/``policy_unreadable`` by a cold worker (never an unaudited crash), a warm one keeps its set
2. fail closed: the worker never creates the policy table; a missing table or an empty partition is
   ``failed``/``policy_unreadable`` and redelivered, never ``ignored``/``no_policy``; sync creates it
4. sync refuses a downgrade or a same-version change of what the table holds
5. a row nested too deep is rejected as a row (no RecursionError out of the load)
8. a transaction whose answer was lost is reported as written, or as of unknown outcome
"""

from __future__ import annotations

import hashlib
import json
import logging
import textwrap
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient, UpdateMode

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.adapters.policy_tables import TablePolicyRepository
from guardrails.adapters.tables import Tables
from guardrails.errors import MetadataValidationError, PolicyUnreadable, StoreError
from guardrails.service import DeliveryFailed
from guardrails.sync import metadata_dirs, sync_metadata
from tests import builders as b

pytestmark = pytest.mark.integration


def _site(tmp_path: Path, name: str, text: str) -> Path:
    d = tmp_path / name / "policies"
    d.mkdir(parents=True, exist_ok=True)
    (d / "site.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return tmp_path / name


SITE = """
id: site-storage
version: {version}
description: site storage accounts stay private
mode: {mode}
selector: {{resource_types: [Microsoft.Storage/storageAccounts]}}
rules:
  - id: pna
    property: {path}
    expect: {{equals: Disabled}}
    action: {{type: notify}}
    allow_unlisted_property: true
"""


def _rows(h) -> dict[str, dict]:
    table = h.tables.table(h.tables.policies_name)
    return {e["RowKey"]: dict(e) for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": "policy"})}


def _write_as_sync(h, doc: dict) -> None:
    """A row exactly as a sync writes one (sha256 of its document), bypassing validation."""
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    h.tables.table(h.tables.policies_name).upsert_entity({
        "PartitionKey": "policy", "RowKey": doc["id"], "document": body,
        "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(), "version": doc["version"],
        "source": "by hand"}, mode=UpdateMode.REPLACE)


def _deep_doc(segments: int = 120) -> dict:
    return {"id": "deep-site", "version": 1, "description": "a path too deep to compile", "mode": "audit",
            "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
            "rules": [{"id": "r1", "property": "properties." + ".".join(["a"] * segments), "expect": {"equals": "x"},
                       "action": {"type": "notify"}, "allow_unlisted_property": True}]}


# ---------------------------------------------------------------- 1. a path too deep to compile

def test_sync_refuses_a_path_too_deep_to_compile_and_writes_nothing(harness, tmp_path):
    h = harness([])
    before = {k: r["document"] for k, r in _rows(h).items()}
    deep = _site(tmp_path, "deep", SITE.format(version=1, mode="audit", path="properties." + ".".join(["a"] * 120)))
    with pytest.raises(MetadataValidationError, match="a property path of 121 segments"):
        sync_metadata(h.repo, metadata_dirs([deep]))
    assert {k: r["document"] for k, r in _rows(h).items()} == before


def test_a_row_too_deep_to_compile_is_audited_failed_by_a_cold_worker_and_kept_out_by_a_warm_one(harness, caplog):
    res = b.storage(blob=False)
    h = harness([res])
    # GIVEN a warm worker: it loaded the synced set
    assert h.service.policies.get()
    # WHEN a row that validates but cannot compile is written to the table (by hand, or an older sync)
    _write_as_sync(h, _deep_doc())
    h.service.policies.invalidate()
    # THEN the warm worker keeps its whole last set: the event is decided on it (storage-private enforced)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)
    assert "policy_set_kept" in caplog.text
    # AND a cold worker (a new instance) decides nothing: audited failed, redelivered; no crash, no write
    cold = bootstrap.build_service(h.settings)
    cold.audit = h.recorder
    before = len(h.recorder.rows)
    with pytest.raises(DeliveryFailed):
        cold.handle_event(b.write_event(res["id"]))
    (failed,) = h.recorder.rows[before:]
    assert (failed.verdict, failed.reason) == ("failed", "policy_unreadable") and "does not compile" in failed.message


# ---------------------------------------------------------------- 2. fail closed

def test_a_worker_with_a_mistyped_prefix_creates_no_policy_table_and_fails_every_event(harness):
    res = b.storage(blob=False)
    h = harness([res])
    typo = S.Settings.from_env({**h.env, S.TABLE_PREFIX: h.env[S.TABLE_PREFIX] + "x"})
    svc = bootstrap.build_service(typo)                 # worker start: its own tables only
    names = {t.name for t in Tables.from_settings(typo).service.list_tables()}
    assert f"{typo.table_prefix}Policies" not in names and f"{typo.table_prefix}Audit" in names
    with pytest.raises(DeliveryFailed):
        svc.handle_event(b.write_event(res["id"]))
    (row,) = svc.audit.read_day(datetime.now(timezone.utc).date())
    assert (row.verdict, row.reason) == ("failed", "policy_unreadable")
    assert "does not exist" in row.message and "GUARDRAILS_TABLE_PREFIX" in row.message
    assert h.resource(res["id"])["properties"]["publicNetworkAccess"] == "Enabled"


def test_a_policy_table_never_synced_is_unreadable_not_an_empty_set(harness):
    res = b.storage(blob=False)
    h = harness([res])
    other = Tables.from_settings(S.Settings.from_env({**h.env, S.TABLE_PREFIX: "E" + uuid.uuid4().hex[:12]}))
    other.ensure([other.policies_name])                  # e.g. created by infra/, sync never run
    with pytest.raises(PolicyUnreadable, match="holds no policy"):
        TablePolicyRepository(other).list_documents()
    # a partition emptied by hand is the same: never "no policy"
    h.repo.replace_all([])
    h.service.policies.invalidate()
    row = h.deliver(b.write_event(res["id"]))
    assert (row.verdict, row.reason) == ("failed", "policy_unreadable") and "holds no policy" in row.message
    # AND a deleted table too
    h.tables.service.delete_table(h.tables.policies_name)
    h.service.policies.invalidate()
    row = h.deliver(b.write_event(res["id"]))
    assert (row.verdict, row.reason) == ("failed", "policy_unreadable") and "does not exist" in row.message


def test_sync_creates_the_policy_table_the_worker_no_longer_does(azurite):
    tables = Tables.from_settings(S.Settings.from_env({S.TABLES_CONNECTION: azurite.connection_string,
                                                       S.TABLE_PREFIX: "C" + uuid.uuid4().hex[:12]}))
    tables.ensure()
    assert tables.policies_name not in {t.name for t in tables.service.list_tables()}
    counts = sync_metadata(TablePolicyRepository(tables), metadata_dirs())
    assert counts["added"] > 0 and TablePolicyRepository(tables).list_documents()


# ---------------------------------------------------------------- 4. versions against the table

def test_sync_refuses_a_downgrade_and_a_same_version_change_unless_allowed(harness, tmp_path):
    h = harness([])
    path = "properties.publicNetworkAccess"
    sync_metadata(h.repo, metadata_dirs([_site(tmp_path, "v3", SITE.format(version=3, mode="enforce", path=path))]))
    before = {k: r["document"] for k, r in _rows(h).items()}
    old = _site(tmp_path, "v2", SITE.format(version=2, mode="audit", path=path))
    with pytest.raises(MetadataValidationError, match="version 2 would replace version 3"):
        sync_metadata(h.repo, metadata_dirs([old]))
    same = _site(tmp_path, "same", SITE.format(version=3, mode="off", path=path))
    with pytest.raises(MetadataValidationError, match="content differs from version 3"):
        sync_metadata(h.repo, metadata_dirs([same]))
    assert {k: r["document"] for k, r in _rows(h).items()} == before
    # an unchanged set, and a newer version, go through; --allow-downgrade takes the table back on purpose
    assert sync_metadata(h.repo, metadata_dirs([_site(tmp_path, "v3", SITE.format(version=3, mode="enforce",
                                                                                  path=path))]))["updated"] == 0
    sync_metadata(h.repo, metadata_dirs([old]), allow_downgrade=True)
    assert json.loads(_rows(h)["site-storage"]["document"])["version"] == 2


def test_a_hand_edited_row_is_still_put_back_at_the_same_version(harness):
    # a row whose document no longer matches its sha256 was not written by a sync: no version check
    h = harness([])
    table = h.tables.table(h.tables.policies_name)
    row = dict(table.get_entity("policy", "storage-private"))
    row["document"] = row["document"].replace('"mode":"enforce"', '"mode":"off"')
    table.upsert_entity(row, mode=UpdateMode.REPLACE)
    assert sync_metadata(h.repo, metadata_dirs())["updated"] == 1


# ---------------------------------------------------------------- 5. a row nested too deep

@pytest.mark.parametrize("same_sha", [False, True])
def test_a_row_nested_too_deep_is_rejected_as_a_row(harness, caplog, same_sha):
    res = b.storage(blob=False)
    h = harness([res])
    h.service.policies.get()                               # a warm worker
    table = h.tables.table(h.tables.policies_name)
    row = dict(table.get_entity("policy", "acr-private"))
    row["document"] = "[" * 5000 + "]" * 5000
    if same_sha:                                           # the sha256 column recomputed too
        row["sha256"] = hashlib.sha256(row["document"].encode("utf-8")).hexdigest()
    table.upsert_entity(row, mode=UpdateMode.REPLACE)
    docs = dict(h.repo.list_documents())                   # no RecursionError
    assert docs[f"table:{h.tables.policies_name}/acr-private"]["__corrupt__"] is True
    assert "policy_row_tampered" in caplog.text
    h.service.policies.invalidate()
    row = h.deliver(b.write_event(res["id"]))              # the warm worker keeps its whole set
    assert row.verdict == "remediated", (row.verdict, row.reason, row.message)


# ---------------------------------------------------------------- 8. a lost answer

class LostAnswer(RequestsTransport):
    """``timeout``: the batch is applied, its answer lost; ``503``: a gateway answers 503 after the
    commit (the SDK retries: 412); ``unsent``: the batch never reaches the service; ``blind``: the
    batch is lost AND the re-read fails."""
    mode: str | None = None

    def send(self, request, **kw):
        mode = self.mode
        is_batch = request.method == "POST" and "$batch" in request.url
        if mode in ("unsent", "blind") and is_batch:
            if mode == "unsent":
                self.mode = None
            else:
                self.mode = "reads-fail"
            raise ServiceResponseError("connection reset before the request was sent")
        if mode == "reads-fail" and request.method == "GET":
            raise ServiceRequestError("no route to host")
        resp = super().send(request, **kw)
        if is_batch and mode in ("timeout", "503"):
            self.mode = None
            if mode == "timeout":
                raise ServiceResponseError("read timed out")
            resp.status_code = 503
        return resp


def _lossy(azurite) -> tuple[Tables, LostAnswer]:
    transport = LostAnswer()
    # retries as the product's clients make them (``client_options``: retry_total=2)
    svc = TableServiceClient.from_connection_string(azurite.connection_string, transport=transport, retry_total=2)
    tables = Tables(svc, "L" + uuid.uuid4().hex[:10])
    tables.ensure([tables.policies_name])
    sync_metadata(TablePolicyRepository(tables), metadata_dirs())
    return tables, transport


def _in_audit_mode(tmp_path, shipped: str, name: str) -> Path:
    """A metadata folder holding the shipped policy ``shipped`` (a file of metadata/policies) at
    version 2 in ``audit`` mode, as ``name``: its findings stay open (``dry_run``) run after run."""
    src = (metadata_dirs()[0] / "policies" / shipped).read_text(encoding="utf-8")
    d = tmp_path / "site" / "policies"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(src.replace("mode: enforce", "mode: audit").replace("version: 1", "version: 2"),
                          encoding="utf-8")
    return tmp_path / "site"


def _audit_acr(tmp_path) -> Path:
    return _in_audit_mode(tmp_path, "acr-private.yaml", "acr.yaml")


def _acr_mode(tables: Tables) -> str:
    return json.loads(tables.table(tables.policies_name).get_entity("policy", "acr-private")["document"])["mode"]


@pytest.mark.parametrize("mode", ["timeout", "503"])
def test_a_committed_sync_whose_answer_was_lost_is_reported_written(azurite, tmp_path, caplog, mode):
    tables, transport = _lossy(azurite)
    transport.mode = mode
    caplog.set_level(logging.WARNING, logger="guardrails")
    counts = sync_metadata(TablePolicyRepository(tables), metadata_dirs([_audit_acr(tmp_path)]))
    assert counts["updated"] == 1 and _acr_mode(tables) == "audit"
    assert "policy_sync_answer_lost" in caplog.text


def test_a_sync_that_never_reached_the_table_still_says_nothing_was_written(azurite, tmp_path):
    tables, transport = _lossy(azurite)
    transport.mode = "unsent"
    with pytest.raises(StoreError, match="nothing was written"):
        sync_metadata(TablePolicyRepository(tables), metadata_dirs([_audit_acr(tmp_path)]))
    assert _acr_mode(tables) == "enforce"


def test_a_sync_whose_outcome_cannot_be_read_back_says_it_is_unknown(azurite, tmp_path):
    tables, transport = _lossy(azurite)
    transport.mode = "blind"
    with pytest.raises(StoreError) as err:
        sync_metadata(TablePolicyRepository(tables), metadata_dirs([_audit_acr(tmp_path)]))
    assert "outcome is unknown" in str(err.value) and "nothing was written" not in str(err.value)
