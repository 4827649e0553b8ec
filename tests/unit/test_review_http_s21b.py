"""Review of the HTTP checks (s21b): a name is not a credential for being long. The pure pieces:
which strings ``credential_fields`` refuses where a name belongs and where free text is, what
``classify`` knows, and the secrets policy schema's names ending at the end of the text.
GIVEN / WHEN / THEN."""

from __future__ import annotations

import pytest

from guardrails.checks.models import (
    JobCheckRequest, ModelPromotionRequest, ResourceCheckRequest, credential_fields,
)
from guardrails.errors import MetadataValidationError
from guardrails.policy.loader import load_directory, load_documents
from guardrails.secrets.credentials import classify, looks_like_credential

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
JOB = {"job_id": 201, "network_zone": "pe-databricks-eastus", "permissions": ["execute_inference"],
       "secret_references": [{"vault": "ml-vault", "secret": "databricks-token"}]}
PROMOTION = {"model": "fraud-classifier", "version": "7", "from_stage": "validated", "to_stage": "production",
             "tags": {"data_version": "2026-11-01", "git_sha": "3f2a9c1", "metric_summary": "auc=0.93",
                      "owner": "ds_team"}}

# ordinary names a platform team uses, each a 40+ run of mixed case and digits (no separator but ``_``)
JOB_NAME = "Train_ResNet50_ImageNet_Baseline_Experiment_Run1"
ZONE = "ContosoCorpNet_Internal_Zone_WestEurope01"
RG = "MC_MLPlatformProd_AksInference01_westeurope"
SECRET = "StorageAccountConnectionStringForProduction2024"
MODEL = "modelRegistry_ProductionChampionModel_Version2"

# credentials in known formats, each legal in the name grammars below
DAPI = "dapi" + "0123456789abcdef" * 2
PAT = ("github_pat_11ABCDEFG0" + "aB3dE5fG7hJ9kL1mN3pQ5r" + "_"
       + "S7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5xY7zA9bC1dE3fG5hJ7k")
# the shape GitHub issues: ``github_pat_`` + 22 + ``_`` + 59
PAT_REAL = ("github_pat_" + "11AAB2CDE0" + "fGh3Ij4Kl5Mn" + "_"
            + "oP6qR7sT8uV9wX0yZ1aB2cD3eF4gH5iJ6kL7mN8oP9qR0sT1uV2wX3yZ4aB")
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
JWT = "eyJhbGciOiJIUzI1NiJ9" + "." + "eyJzdWIiOiJhbGljZSJ9" + "." + "c2lnbmF0dXJlX2hlcmU"
OPAQUE = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3"        # no known format: free text only


def test_classify_knows_a_github_fine_grained_token_and_not_a_name_after_its_prefix():
    # GIVEN fine-grained PATs (the fixture of s21 and GitHub's own shape) and names that merely start alike
    # WHEN classified THEN the tokens are known, by kind, and the names are not
    assert classify(PAT) == classify(PAT_REAL) == "GitHub fine-grained token"
    assert classify(f"/subscriptions/{PAT}") == "GitHub fine-grained token"
    assert classify("github_pat_rotation_policy_for_the_ml_platform_pipelines_2024_v2") is None
    assert classify("github_pat_reader") is None


@pytest.mark.parametrize("name", [JOB_NAME, ZONE, RG, SECRET, MODEL])
def test_a_long_mixed_case_name_is_not_a_known_credential(name):
    # GIVEN a name free text would hide (an opaque-looking run)
    assert looks_like_credential(name)
    # THEN it has no credential's format
    assert classify(name) is None


@pytest.mark.parametrize("body", [
    {**JOB, "job_id": JOB_NAME},
    {**JOB, "network_zone": ZONE},
    {**JOB, "secret_references": [{"vault": "ml-vault", "secret": SECRET}]},
    {**JOB, "permissions": ["execute_inference", "ExecuteInference_OnProductionWorkspaces2024"],
     "role": "AzureML_DataScientist_CustomRole_Prod2024v1"},
], ids=["job-id", "zone", "secret", "permission-role"])
def test_names_in_a_job_check_are_not_refused_as_credentials(body):
    # GIVEN a job check whose names are long CamelCase / snake_case names
    req = JobCheckRequest.model_validate(body)
    # WHEN screened THEN nothing is taken for a credential
    assert credential_fields(req) == []


def test_an_arm_id_whose_resource_group_is_a_long_name_is_not_a_credential():
    rid = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/st01"
    assert credential_fields(ResourceCheckRequest.model_validate({"resource_id": rid})) == []


def test_a_model_name_version_and_tag_key_are_names():
    req = ModelPromotionRequest.model_validate({
        **PROMOTION, "model": MODEL, "version": "Version2024_ReleaseCandidate_Build01a_WestEurope",
        "tags": {**PROMOTION["tags"], "ExperimentTrackingRunIdentifierForModel2024Q1": "x"}})
    assert credential_fields(req) == []


@pytest.mark.parametrize("value", [DAPI, PAT, AWS, JWT], ids=["dapi", "github-pat", "aws", "jwt"])
@pytest.mark.parametrize("field, body", [
    ("job_id", lambda v: {**JOB, "job_id": v}),
    ("network_zone", lambda v: {**JOB, "network_zone": v}),
    ("permissions.1", lambda v: {**JOB, "permissions": ["execute_inference", v]}),
    ("secret_references.0.secret", lambda v: {**JOB, "secret_references": [{"vault": "ml-vault", "secret": v}]}),
], ids=["job-id", "zone", "permission", "secret"])
def test_a_credential_where_a_name_belongs_is_still_found(field, body, value):
    # GIVEN a credential in a known format sent as a name (when the field's grammar lets it through)
    try:
        req = JobCheckRequest.model_validate(body(value))
    except ValueError:                       # the grammar refuses it already (a JWT's dots, a PAT's length)
        return
    # WHEN screened THEN the field is named
    assert credential_fields(req) == [field]


@pytest.mark.parametrize("value", [DAPI, AWS, JWT, PAT])
def test_a_credential_inside_an_arm_id_is_still_found(value):
    rid = f"/subscriptions/{SUB}/resourceGroups/{value}/providers/Microsoft.Storage/storageAccounts/st01"
    assert credential_fields(ResourceCheckRequest.model_validate({"resource_id": rid})) == ["resource_id"]


def test_free_text_keeps_the_opaque_run_test_and_a_key_named_like_a_token_is_refused():
    # GIVEN a tag value holding an opaque key (no known format), and a tag key that is a token
    req = ModelPromotionRequest.model_validate({**PROMOTION, "tags": {**PROMOTION["tags"], "note": f"key {OPAQUE}",
                                                                      DAPI: "x"}})
    # WHEN screened THEN both are named, the key never by itself
    assert credential_fields(req) == ["tags.<key not shown>", "tags.note"]


def test_an_opaque_run_is_a_name_where_a_name_belongs():
    # the trade-off, stated: a name grammar takes a run without a known format (as it takes any name)
    req = JobCheckRequest.model_validate({**JOB, "secret_references": [{"vault": "ml-vault", "secret": OPAQUE}]})
    assert credential_fields(req) == []


# ---------------------------------------------------------------- secrets policy: names end at the end
SECRETS_POLICY = """\
id: ml-secrets
version: 1
kind: secrets
description: d
mode: enforce
selector:
  vaults:
    - {selector}
secrets:
  - vault: {vault}
    name: {name}
    owner: o
    rotation: {{strategy: notify-only}}
keys:
  - {{vault: kv-ml-prod, name: {key}, owner: o}}
"""


def _load(tmp_path, **over) -> list:
    values = {"selector": "kv-ml-prod", "vault": "kv-ml-prod", "name": "storage-connection", "key": "cmk-storage",
              **over}
    (tmp_path / "ml-secrets.yaml").write_text(SECRETS_POLICY.format(**values))
    return load_directory(tmp_path)


def test_the_secrets_policy_loads_with_names_on_one_line(tmp_path):
    (p,) = _load(tmp_path)
    assert p.governs("kv-ml-prod") and p.secret("kv-ml-prod", "storage-connection") is not None


@pytest.mark.parametrize("over, path", [
    ({"name": "|\n      storage-connection"}, "$.secrets[0].name"),
    ({"vault": "|\n      kv-ml-prod"}, "$.secrets[0].vault"),
    ({"selector": "|\n        kv-ml-prod"}, "$.selector.vaults[0]"),
    ({"key": '"cmk-storage\\n"'}, "$.keys[0].name"),
], ids=["secret-name", "secret-vault", "selector-vault", "key-name"])
def test_a_block_scalar_name_is_refused_at_validation_naming_the_path(tmp_path, over, path):
    # GIVEN a secrets policy whose vault or secret name is a YAML block scalar (it keeps its line break)
    # WHEN it is validated THEN it is refused, the finding naming the path (it would never match Key Vault's name)
    with pytest.raises(MetadataValidationError) as exc:
        _load(tmp_path, **over)
    # (the schema pass's own finding, with its hint: not a later pass tripping over the line break)
    assert any(f"policy 'ml-secrets': {path}:" in f and "line break" in f for f in exc.value.findings), \
        exc.value.findings


def test_a_parsed_document_with_a_line_break_in_a_vault_is_refused_too():
    doc = {"id": "ml-secrets", "version": 1, "kind": "secrets", "description": "d", "mode": "enforce",
           "selector": {"vaults": ["kv-ml-prod\n"]}, "secrets": []}
    with pytest.raises(MetadataValidationError) as exc:
        load_documents([("sync", doc)])
    assert any("$.selector.vaults[0]" in f and "line break" in f for f in exc.value.findings)


# ---------------------------------------------------------------- metadata/README.md says what audit mode does
def _paragraph(text: str, start: str) -> str:
    """The bullet or sentence of the README that begins with ``start``, up to the next one."""
    i = text.index(start)
    end = min(k for k in (text.find("\n- ", i + 1), text.find("\n\n", i + 1), len(text)) if k != -1)
    return " ".join(text[i:end].split())


@pytest.mark.parametrize("start", ["- `notify` — `{type: notify}`", "one, `when_missing: notify` records"])
def test_the_metadata_readme_says_an_audit_mode_notify_is_dry_run_and_notifies_nobody(start):
    from pathlib import Path
    from types import SimpleNamespace

    from guardrails.model.decision import AuditRow, ViolationRecord
    from guardrails.resource_guardrail import _found

    # GIVEN what the guardrail does with an audit-mode policy's notify finding
    row = AuditRow(event_id="e", event_type="t", resource_id="r", verdict="compliant")
    rec = ViolationRecord(policy="p@1", rule="r", property="x", before=1, after=None, outcome="violation")
    _found(row, rec, SimpleNamespace(policy=SimpleNamespace(mode="audit")), "no approved private endpoint")
    assert (rec.outcome, row.notify) == ("dry_run", False)
    # THEN the policy author's reference says so where it describes the notify action / when_missing
    readme = Path(__file__).resolve().parents[2] / "metadata" / "README.md"
    text = _paragraph(readme.read_text(encoding="utf-8"), start)
    assert "`audit`-mode" in text and "`dry_run`" in text and "nobody" in text, text
