"""The check policy kinds (job, model-registry, check-access) through the loader's three passes."""

import copy
from pathlib import Path

import pytest
import yaml

from guardrails.checks.policies import CheckAccessPolicy, JobPolicy, ModelRegistryPolicy
from guardrails.errors import MetadataValidationError
from guardrails.model.policy import Policy
from guardrails.policy.evaluate import compile_policies
from guardrails.policy.loader import load_directory, load_documents
from guardrails.policy.model_rules import DEFAULT_RULES

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "metadata" / "jobs"
GROUP = "d5000000-0000-4000-8000-0000000000d5"


def shipped(name: str) -> dict:
    return yaml.safe_load((JOBS / f"{name}.yaml").read_text())


def findings(*docs: dict) -> list[str]:
    with pytest.raises(MetadataValidationError) as exc:
        load_documents([(f"jobs/{d.get('id', 'x')}.yaml", d) for d in docs])
    return exc.value.findings


def test_the_shipped_check_policies_load_and_survive_the_table_round_trip():
    loaded = {p.id: p for p in load_directory(JOBS)}
    assert set(loaded) == {"job-201", "model-registry", "check-access"}
    assert type(loaded["job-201"]) is JobPolicy and loaded["job-201"].job_id == "201"
    assert type(loaded["model-registry"]) is ModelRegistryPolicy and loaded["model-registry"].rules == DEFAULT_RULES
    access = loaded["check-access"]
    assert type(access) is CheckAccessPolicy and access.on_behalf == () and access.remediate == ()   # zero trust
    for p in loaded.values():
        assert p.mode == "enforce" and len(p.description) > 80
        again = Policy.from_document(p.to_document(), source="table")
        assert again == p and type(again) is type(p)


def test_structure_pass_names_unknown_keys_with_a_hint():
    doc = shipped("job-201")
    doc["access_policy"]["permisions"] = doc["access_policy"].pop("permissions")
    (f,) = findings(doc)
    assert f.startswith("jobs/job-201.yaml: policy 'job-201': $.access_policy: unknown key 'permisions'")
    assert "did you mean 'permissions'" in f


def test_a_secret_value_has_no_place_in_a_job_policy():
    doc = shipped("job-201")
    doc["secret_references"][0]["value"] = "dapi-0000"
    fs = findings(doc)
    assert any("policy 'job-201': $.secret_references[0]" in f and "value" in f for f in fs), fs
    assert not any("dapi-0000" in f for f in fs)


@pytest.mark.parametrize("path, value, where", [
    (("secret_references", 0, "vault"), "ml_vault!", "$.secret_references[0].vault"),
    (("network_rules", 0, "private_endpoint"), "pe databricks", "$.network_rules[0].private_endpoint"),
    (("access_policy", "permissions"), [], "$.access_policy.permissions"),
    (("job_id",), True, "$.job_id"),
    (("mode",), "on", "$.mode"),
])
def test_schema_pass_points_at_the_value(path, value, where):
    doc = shipped("job-201")
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    fs = findings(doc)
    assert any(f"policy 'job-201': {where}:" in f for f in fs), fs


def test_semantic_pass_group_id_duplicates_and_a_job_that_could_never_run():
    doc = shipped("job-201")
    doc["access_policy"]["entra_group_id"] = "ds_team"
    doc["secret_references"].append({"vault": "ML-VAULT", "secret": "Databricks-Token"})
    doc["network_rules"] = []
    fs = findings(doc)
    assert any("$.access_policy.entra_group_id: 'ds_team' is not the Entra group's object id" in f for f in fs)
    assert any("$.secret_references[1]: 'ML-VAULT/Databricks-Token' repeats" in f for f in fs)
    assert any(f.endswith("could never be allowed to run (zero trust); name where it runs from") for f in fs)


def test_one_policy_per_job_id():
    a = shipped("job-201")
    b = {**copy.deepcopy(a), "id": "job-201-copy"}
    (f,) = findings(a, b)
    assert "policy 'job-201-copy': $.job_id: job_id '201' is already covered by policy 'job-201'" in f


def test_model_registry_and_check_access_semantics():
    mr = shipped("model-registry")
    mr["explicit_version_stages"] = ["prod"]
    (f,) = findings(mr)
    assert "policy 'model-registry': $.explicit_version_stages[0]: 'prod' is not one of the stages" in f
    ca = shipped("check-access")
    ca["on_behalf"] = [{"principals": ["adf"], "checks": ["job"]}, {"groups": []}]
    ca["remediate"] = [{"principals": [GROUP], "scopes": ["/subscriptions/nope"]}]
    fs = findings(ca)
    assert any("$.on_behalf[0].principals[0]: 'adf' is not a principal object id" in f for f in fs)
    assert any("$.on_behalf[1]: names nobody" in f for f in fs)
    assert any("$.remediate[0].scopes[0]: not a valid ARM scope" in f for f in fs)
    ca = shipped("check-access")
    ca["mode"] = "audit"
    assert any("$.mode" in f for f in findings(ca))


def test_model_registry_registries_are_ids_of_the_registries_they_name():
    rid = "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg-shared/providers/" \
          "Microsoft.MachineLearningServices/registries/mlreg-shared"
    mr = shipped("model-registry")
    mr["registries"] = {"mlreg-shared": rid}
    (p,) = load_documents([("jobs/model-registry.yaml", mr)])
    assert p.rules.registry_id("MLREG-shared") == rid and p.rules.registry_id("other") is None
    assert Policy.from_document(p.to_document(), source="table") == p             # survives the table
    mr["registries"] = {"mlreg-shared": rid.replace("mlreg-shared", "mlreg-other"), "notes": "not-an-id",
                        "wsreg": rid.replace("registries/mlreg-shared", "workspaces/wsreg")}
    fs = findings(mr)
    assert any("$.registries.mlreg-shared: must be the id of the Azure ML registry 'mlreg-shared'" in f for f in fs)
    assert any("$.registries.wsreg: must be the id of the Azure ML registry 'wsreg'" in f for f in fs)
    assert any("$.registries.notes: not an ARM id" in f for f in fs)
    mr["registries"] = {"x": rid}                                      # not a registry name
    assert any("$.registries" in f for f in findings(mr))


def test_the_compiled_set_exposes_check_kinds_in_force():
    everything = load_directory(ROOT / "metadata")
    compiled = compile_policies(everything)
    assert [p.ref for p in compiled.checks.job(201)] == ["job-201@1"] == [p.ref for p in compiled.checks.job(" 201 ")]
    assert list(compiled.job_policies) == ["201"]
    assert [p.ref for p in compiled.model_registry_policies] == ["model-registry@1"]
    assert [p.ref for p in compiled.check_access_policies] == ["check-access@1"]
    off = [p if p.id != "job-201" else JobPolicy(**{**p.__dict__, "mode": "off"}) for p in everything]
    assert compile_policies(off).checks.job(201) == ()
    assert compiled.candidates("Microsoft.Storage/storageAccounts")          # resource kinds untouched


@pytest.mark.parametrize("path, where", [
    (("job_id",), "$.job_id"),
    (("secret_references", 0, "vault"), "$.secret_references[0].vault"),
    (("secret_references", 0, "secret"), "$.secret_references[0].secret"),
    (("network_rules", 0, "private_endpoint"), "$.network_rules[0].private_endpoint"),
])
def test_a_name_ending_in_a_line_break_is_refused(path, where):
    """A YAML block scalar (``|``) ends its value with a line break, which ``$`` lets through in
    the JSON Schema pass (``re.search``): the job would then never match the request's name."""
    doc = shipped("job-201")
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = f"{target[path[-1]]}\n"
    fs = findings(doc)
    assert any(f"policy 'job-201': {where}:" in f for f in fs), fs
