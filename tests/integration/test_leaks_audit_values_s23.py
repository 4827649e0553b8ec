"""A value a policy reads is recorded in the audit row (a violation's ``before``) and its message:
a token someone put in a tag, or in any property a policy reads, reached the audit table, the
decision event and the owner's notice whole. It is described there now, never shown (the security
review's note on the resource path, 2026-11-25); ordinary values are recorded as they were."""

from __future__ import annotations

import json
import logging
import textwrap

import pytest

from tests import builders as b

pytestmark = pytest.mark.integration

SAS = "https://stmlprod.blob.core.windows.net/data?sv=2022-11-02&sp=r&sig=Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA%3D"
POLICY = textwrap.dedent("""\
    id: storage-owner-tag
    version: 1
    description: every storage account names one of the owning teams
    mode: enforce
    selector: {resource_types: [Microsoft.Storage/storageAccounts]}
    rules:
      - id: owner-is-a-team
        property: tags.owner
        expect: {in: [ml-platform@contoso.com, data-science@contoso.com]}
        action: {type: notify}
    """)


def test_a_token_in_a_property_a_policy_reads_is_described_in_the_row_never_recorded(harness, tmp_path, caplog):
    d = tmp_path / "owner"
    d.mkdir()
    (d / "owner.yaml").write_text(POLICY)
    res = b.storage(pna="Disabled", blob=False)
    res["tags"] = {"owner": SAS}                      # a SAS URL pasted into the owner tag
    h = harness([res], extra_metadata=[d], decision_topic=True)
    caplog.set_level(logging.DEBUG)
    row = h.deliver(b.write_event(res["id"]))
    assert row.verdict == "violation"
    (v,) = [v for v in row.violations if v.rule == "owner-is-a-team"]
    stored = [json.dumps(r.to_dict(), default=str) for r in h.stored_rows()]
    published = [json.dumps(e, default=str) for e in h.emu.published_events("decisions")]
    logs = [r.getMessage() for r in caplog.records]
    for text in [*stored, *published, *logs]:
        assert "Zm9vYmFyYmF6" not in text and "sig=" not in text
    assert any("characters not shown: they look like a credential" in t for t in stored)
    assert published, "the violation is published"


def test_ordinary_values_are_recorded_as_they_were(harness, tmp_path):
    d = tmp_path / "owner"
    d.mkdir()
    (d / "owner.yaml").write_text(POLICY)
    res = b.storage(pna="Disabled", blob=False)
    res["tags"] = {"owner": "data platform team"}
    h = harness([res], extra_metadata=[d])
    row = h.deliver(b.write_event(res["id"]))
    (stored,) = h.stored_rows()
    (v,) = [v for v in stored.violations if v.rule == "owner-is-a-team"]
    assert v.before == "data platform team" and "'data platform team'" in stored.message
