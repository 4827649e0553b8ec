"""Job pre-flight evaluation and caller grants (pure; group membership through a fake resolver)."""

from pathlib import Path

import pytest

from guardrails.checks.access import on_behalf_grant, remediate_grant
from guardrails.checks.job import JobRequest, evaluate_job
from guardrails.checks.policies import CallerGrant, CheckAccessPolicy, IdentitySet, JobPolicy, SecretReference
from guardrails.model.arm_id import parse_arm_id
from guardrails.policy.loader import load_directory

ROOT = Path(__file__).resolve().parents[2]
ALICE = "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
BOB = "2b7e151e-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
DS_TEAM = "d5000000-0000-4000-8000-0000000000d5"
OPS = "0b000000-0000-4000-8000-0000000000b0"
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"


class Directory:
    def __init__(self, groups):
        self.groups, self.asked = groups, []

    def is_member(self, principal_id, group_id):
        self.asked.append((principal_id, group_id))
        return principal_id in self.groups.get(group_id, ())


def seed_job() -> JobPolicy:
    (job,) = [p for p in load_directory(ROOT / "metadata") if p.id == "job-201"]
    return job


GOOD = JobRequest(job_id="201", network_zone="pe-databricks-eastus", permissions=("execute_inference",),
                  secret_references=(SecretReference("ml-vault", "databricks-token"),))
DIRECTORY = Directory({DS_TEAM: {ALICE}})


def rules(findings):
    return [f.rule for f in findings]


def test_the_seed_sample_is_expressed_as_is():
    job = seed_job()
    ap = job.access_policy
    assert (job.job_id, ap.role, ap.permissions, ap.entra_group) == ("201", "DataScientist",
                                                                     ("execute_inference", "read_model"), "ds_team")
    assert [str(s) for s in job.secret_references] == ["ml-vault/databricks-token"]
    assert [(r.service, r.private_endpoint) for r in job.network_rules] == [("Databricks", "pe-databricks-eastus")]


def test_a_ds_team_member_in_the_zone_asking_execute_inference_is_allowed():
    assert evaluate_job(seed_job(), GOOD, identity=ALICE, groups=DIRECTORY) == []
    # names compare case-insensitively, both permissions of the role may be asked
    again = JobRequest(job_id="201", network_zone="PE-Databricks-EastUS", permissions=("read_model", "EXECUTE_INFERENCE"),
                       secret_references=(SecretReference("ML-Vault", "Databricks-Token"),), role="datascientist")
    assert evaluate_job(seed_job(), again, identity=ALICE, groups=DIRECTORY) == []


@pytest.mark.parametrize("change, rule, named", [
    ({"network_zone": "vnet-public"}, "network-zone", "vnet-public"),
    ({"permissions": ("execute_inference", "train_model")}, "permissions", "train_model"),
    ({"secret_references": (SecretReference("ml-vault", "storage-key"),)}, "secret-references", "ml-vault/storage-key"),
    ({"role": "Administrator"}, "role", "Administrator"),
])
def test_each_broken_condition_is_named(change, rule, named):
    req = JobRequest(**{**GOOD.__dict__, **change})
    (finding,) = evaluate_job(seed_job(), req, identity=ALICE, groups=DIRECTORY)
    assert finding.rule == rule and named in finding.message


def test_an_identity_outside_the_group_breaks_access_group_and_nothing_is_asked_without_one():
    (finding,) = evaluate_job(seed_job(), GOOD, identity=BOB, groups=DIRECTORY)
    # named by the rule; the group (its name, its object id) is not given away to the caller
    assert finding.rule == "access-group" and "ds_team" not in finding.message and DS_TEAM not in finding.message
    d = Directory({})
    assert evaluate_job(seed_job(), GOOD, identity=None, groups=d) == [] and d.asked == []


def test_allowed_identities_restrict_further_when_listed():
    job = seed_job()
    listed = JobPolicy(**{**job.__dict__, "allowed_identities": IdentitySet(principals=(BOB,))})
    assert rules(evaluate_job(listed, GOOD, identity=ALICE, groups=DIRECTORY)) == ["allowed-identity"]
    by_group = JobPolicy(**{**job.__dict__, "allowed_identities": IdentitySet(groups=(DS_TEAM,))})
    assert evaluate_job(by_group, GOOD, identity=ALICE, groups=DIRECTORY) == []


def test_network_zones_and_rule_endpoints_are_both_places_to_run_from():
    job = JobPolicy(**{**seed_job().__dict__, "network_zones": ("vnet-ml-batch",)})
    assert job.allowed_zones == ("vnet-ml-batch", "pe-databricks-eastus")
    req = JobRequest(**{**GOOD.__dict__, "network_zone": "vnet-ml-batch"})
    assert evaluate_job(job, req, identity=ALICE, groups=DIRECTORY) == []


def test_every_broken_condition_at_once():
    req = JobRequest(job_id="201", network_zone="x", permissions=("a",), secret_references=(SecretReference("v-1", "s"),),
                     role="r")
    assert rules(evaluate_job(seed_job(), req, identity=BOB, groups=DIRECTORY)) == [
        "role", "permissions", "secret-references", "network-zone", "access-group"]


# ---------------------------------------------------------------- caller grants
ACCESS = CheckAccessPolicy(
    id="check-access", version=1, description="d", mode="enforce",
    on_behalf=(CallerGrant(principals=(ALICE,), checks=("job",)), CallerGrant(groups=(OPS,))),
    remediate=(CallerGrant(principals=(ALICE,), scopes=(f"/subscriptions/{SUB}/resourceGroups/rg-ml",)),))
RES = parse_arm_id(f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/st1")
OTHER = parse_arm_id(f"/subscriptions/{SUB}/resourceGroups/rg-ml2/providers/Microsoft.Storage/storageAccounts/st1")


def test_on_behalf_grants_by_principal_check_and_group():
    d = Directory({OPS: {BOB}})
    assert on_behalf_grant([ACCESS], ALICE, "job", d) is ACCESS
    assert on_behalf_grant([ACCESS], ALICE, "model-promotion", Directory({})) is None
    assert on_behalf_grant([ACCESS], BOB, "model-promotion", d) is ACCESS
    assert on_behalf_grant([ACCESS], None, "job", d) is None
    assert on_behalf_grant([], ALICE, "job", d) is None


def test_remediate_grants_are_scoped_segment_wise():
    d = Directory({})
    assert remediate_grant([ACCESS], ALICE, RES, d) is ACCESS
    assert remediate_grant([ACCESS], ALICE, OTHER, d) is None          # rg-ml does not cover rg-ml2
    assert remediate_grant([ACCESS], BOB, RES, d) is None
    assert remediate_grant([ACCESS], None, RES, d) is None
