"""Policy metadata: the shipped baseline loads; each validation pass rejects its own kind of bad
input with a finding that names the file, the policy id and the JSON path."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from guardrails.errors import MetadataValidationError, PolicyError
from guardrails.model.policy import Policy
from guardrails.policy.loader import load_directory, load_documents
from guardrails.policy.schema import policy_schema

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "metadata"
FIXTURES = Path(__file__).parent / "fixtures_metadata"
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"


def arm_id_available() -> bool:
    try:
        import guardrails.model.arm_id  # noqa: F401
    except ImportError:
        return False
    return True


needs_arm_id = pytest.mark.skipif(not arm_id_available(), reason="guardrails.model.arm_id not there yet")


def storage_doc(**overrides) -> dict:
    doc = {
        "id": "storage-private",
        "version": 3,
        "description": "Storage accounts are reachable only through private endpoints.",
        "mode": "enforce",
        "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
        "rules": [
            {"id": "public-network-access-disabled", "property": "properties.publicNetworkAccess",
             "expect": {"equals": "Disabled"}, "action": {"type": "set-property", "value": "Disabled"}},
            {"id": "blob-public-access-off", "property": "properties.allowBlobPublicAccess",
             "expect": {"equals": False}, "action": {"type": "set-property", "value": False}},
        ],
    }
    doc.update(overrides)
    return doc


def findings_of(fixture: str) -> list[str]:
    with pytest.raises(MetadataValidationError) as info:
        load_directory(FIXTURES / fixture)
    return info.value.findings


def only_finding(fixture: str) -> str:
    findings = findings_of(fixture)
    assert len(findings) == 1, findings
    return findings[0]


# ---------------------------------------------------------------- the baseline

def test_every_baseline_file_loads_on_its_own(tmp_path):
    # GIVEN each shipped policy file
    files = sorted((BASELINE / "policies").glob("*.yaml"))
    assert len(files) == 7
    for path in files:
        # WHEN it is loaded alone
        alone = tmp_path / path.stem
        alone.mkdir()
        (alone / path.name).write_text(path.read_text())
        (policy,) = load_directory(alone)
        # THEN it is an enforced, well-described policy named like its file that survives
        # the Table Storage round trip
        assert policy.mode == "enforce"
        assert policy.id == path.stem
        assert len(policy.description) > 80 and all(r.description for r in getattr(policy, "rules", ()))
        assert Policy.from_document(policy.to_document(), source="table") == policy


def test_baseline_covers_the_catalogue_with_the_expected_rules():
    # WHEN the baseline directory loads
    policies = {p.id: p for p in load_directory(BASELINE)}
    # THEN each resource type has the rules of the table in the brief
    rules = {
        (p.selector.resource_types[0], r.property, r.operator, r.action_type)
        for p in policies.values() if p.kind == "resource" for r in p.rules
    }
    assert rules == {
        ("Microsoft.MachineLearningServices/workspaces", "properties.publicNetworkAccess", ("equals", "Disabled"), "set-property"),
        ("Microsoft.MachineLearningServices/registries", "properties.publicNetworkAccess", ("equals", "Disabled"), "set-property"),
        ("Microsoft.Storage/storageAccounts", "properties.publicNetworkAccess", ("equals", "Disabled"), "set-property"),
        ("Microsoft.Storage/storageAccounts", "properties.allowBlobPublicAccess", ("equals", False), "set-property"),
        ("Microsoft.KeyVault/vaults", "properties.publicNetworkAccess", ("equals", "Disabled"), "set-property"),
        ("Microsoft.KeyVault/vaults", "properties.enableRbacAuthorization", ("equals", True), "notify"),
        ("Microsoft.ContainerRegistry/registries", "properties.publicNetworkAccess", ("equals", "Disabled"), "set-property"),
        ("Microsoft.ContainerRegistry/registries", "properties.adminUserEnabled", ("equals", False), "set-property"),
        ("Microsoft.ContainerRegistry/registries", "properties.anonymousPullEnabled", ("equals", False), "set-property"),
        ("Microsoft.MachineLearningServices/workspaces/computes", "properties.properties.enableNodePublicIp", ("equals", False), "notify"),
    }
    assert [p.id for p in load_directory(BASELINE)] == sorted(policies)


# ---------------------------------------------------------------- pass 1: structure

def test_invalid_yaml_is_reported_with_its_position():
    finding = only_finding("bad_yaml")
    assert finding.startswith(f"{FIXTURES / 'bad_yaml' / 'policy.yaml'}: policy ?: $: invalid YAML")
    assert "line 7" in finding


def test_two_documents_in_one_file_are_rejected():
    finding = only_finding("two_documents")
    assert "two_documents/policy.yaml: policy 'first-doc': $: expected exactly one YAML document, found 2" in finding


def test_a_file_that_is_not_a_mapping_is_rejected():
    assert "policy ?: $: expected a mapping (one policy), found a list" in only_finding("not_a_mapping")


def test_unknown_nested_key_names_file_policy_path_and_suggests():
    assert only_finding("unknown_key").endswith(
        "unknown_key/policy.yaml: policy 'storage-typo': $.rules[1]: unknown key 'expct' (did you mean 'expect'?)")


def test_unknown_top_level_key_and_missing_required_keys():
    doc = storage_doc(notes="x")
    del doc["mode"]
    with pytest.raises(MetadataValidationError) as info:
        load_documents([("row-1", doc)])
    assert info.value.findings == [
        "row-1: policy 'storage-private': $: missing required key(s) 'mode'",
        "row-1: policy 'storage-private': $: unknown key 'notes'",
    ]


def test_unknown_action_type_suggests_the_registered_one():
    assert "$.rules[0].action.type: unknown action type 'set-proprety' (did you mean 'set-property'?)" in (
        only_finding("unknown_action_type"))


def test_duplicate_yaml_keys_are_rejected(tmp_path):
    (tmp_path / "dup.yaml").write_text("id: a-policy\nid: b-policy\n")
    with pytest.raises(MetadataValidationError, match=r"dup.yaml: policy \?: \$: invalid YAML: found duplicate key 'id'"):
        load_directory(tmp_path)


def test_non_string_keys_are_flagged(tmp_path):
    # GIVEN a boolean used as a key (``true:`` is True, not "true")
    text = (FIXTURES / "bad_mode" / "policy.yaml").read_text().replace("mode: block", "mode: audit\ntrue: 1")
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(MetadataValidationError, match=r"policy 'storage-bad-mode': \$: key True must be a string"):
        load_directory(tmp_path)


# ---------------------------------------------------------------- pass 2: JSON Schema

def test_wrong_type_is_reported_at_its_path():
    assert only_finding("wrong_type").endswith(
        "wrong_type/policy.yaml: policy 'storage-wrong-type': $.version: 'three' is not of type 'integer'")


def test_bad_mode_is_reported():
    assert "policy 'storage-bad-mode': $.mode: 'block' is not one of ['enforce', 'audit', 'off', 'shadow']" in only_finding("bad_mode")


def test_schema_errors_are_all_collected_and_action_errors_are_specific():
    # GIVEN a document with several schema problems, one inside an action (a oneOf branch)
    doc = storage_doc(version=0, mode="enforce")
    doc["rules"][0]["action"] = {"type": "set-property"}
    doc["rules"][1]["expect"] = {"in": []}
    # WHEN it is validated
    with pytest.raises(MetadataValidationError) as info:
        load_documents([("row", doc)])
    # THEN every problem is reported, the action one from the matching branch only
    assert info.value.findings == [
        "row: policy 'storage-private': $.rules[0].action: 'value' is a required property",
        "row: policy 'storage-private': $.rules[1].expect.in: [] should be non-empty",
        "row: policy 'storage-private': $.version: 0 is less than the minimum of 1",
    ]


def test_schema_action_is_a_oneof_over_registered_fragments():
    action = policy_schema()["properties"]["rules"]["items"]["properties"]["action"]
    assert {b["properties"]["type"]["const"] for b in action["oneOf"]} >= {"set-property", "notify"}
    assert all(b["additionalProperties"] is False for b in action["oneOf"])


# ---------------------------------------------------------------- pass 3: semantics

def test_unknown_resource_type_is_rejected_with_a_suggestion():
    assert only_finding("unknown_resource_type").endswith(
        "$.selector.resource_types[0]: resource type 'Microsoft.Storage/storageAccount' is not in the catalogue"
        " (did you mean 'Microsoft.Storage/storageAccounts'?)")


def test_duplicate_policy_id_across_files_names_both_files():
    finding = only_finding("duplicate_policy_id")
    a, b = FIXTURES / "duplicate_policy_id" / "a.yaml", FIXTURES / "duplicate_policy_id" / "b.yaml"
    assert finding == f"{b}: policy 'same-id': $.id: duplicate policy id 'same-id': also defined in {a}"


def test_duplicate_rule_id_is_rejected():
    assert "policy 'acr-duplicate-rule': $.rules[1].id: duplicate rule id 'locked-down' (also $.rules[0])" in (
        only_finding("duplicate_rule_id"))


def test_set_property_on_an_immutable_property_is_rejected():
    finding = only_finding("immutable_set_property")
    assert "policy 'compute-set-immutable': $.rules[0].action: property 'properties.properties.enableNodePublicIp'" in finding
    assert "use action type 'notify'" in finding


def test_a_fix_value_that_does_not_satisfy_expect_is_rejected():
    assert "policy 'vault-looping-fix': $.rules[0].action: value 'Enabled' does not satisfy expect equals 'Disabled'" in (
        only_finding("value_not_satisfying_expect"))


def test_expect_with_two_operators_is_rejected():
    assert "$.rules[0].expect: exactly one operator expected, found 'equals', 'not_in'" in only_finding("two_operators")


def test_subscriptions_must_be_guids():
    assert "$.selector.subscriptions[0]: 'my-subscription' is not a subscription GUID" in only_finding("bad_subscription")


@needs_arm_id
def test_exemption_scope_must_be_an_arm_scope():
    assert "policy 'storage-bad-exemption': $.exemptions[0].scope: not a valid ARM scope 'rg-lab'" in (
        only_finding("bad_exemption_scope"))


@needs_arm_id
def test_naive_expiry_is_rejected():
    assert "policy 'storage-naive-expiry': $.exemptions[0].expires: '2027-01-31T00:00:00' has no timezone" in (
        only_finding("naive_expires"))


@needs_arm_id
def test_exemption_expiry_parses_as_aware_datetime():
    doc = storage_doc(exemptions=[{"scope": f"/subscriptions/{SUB}/resourceGroups/rg-lab", "reason": "lab",
                                   "owner": "alice@contoso.com", "expires": "2027-01-31T00:00:00Z"}])
    (policy,) = load_documents([("row", doc)])
    assert policy.exemptions[0].expires == datetime(2027, 1, 31, tzinfo=timezone.utc)
    assert policy.to_document()["exemptions"][0]["expires"] == "2027-01-31T00:00:00+00:00"


def test_all_bad_files_are_reported_together(tmp_path):
    # GIVEN two bad files and a good one in one directory
    for name in ("bad_mode", "wrong_type"):
        (tmp_path / f"{name}.yaml").write_text((FIXTURES / name / "policy.yaml").read_text())
    (tmp_path / "good.yml").write_text(json.dumps(storage_doc()))
    # WHEN the directory loads THEN both findings come in one error
    with pytest.raises(MetadataValidationError) as info:
        load_directory(tmp_path)
    assert [f.split(":")[0] for f in info.value.findings] == [str(tmp_path / "bad_mode.yaml"), str(tmp_path / "wrong_type.yaml")]
    assert isinstance(info.value, PolicyError)


# ---------------------------------------------------------------- directories and documents

def test_a_later_directory_overrides_the_baseline():
    # GIVEN the baseline and a site directory redefining storage-private
    policies = {p.id: p for p in load_directory(BASELINE, FIXTURES / "override")}
    # THEN the later definition replaces the earlier one, the others stay
    assert policies["storage-private"].ref == "storage-private@2"
    assert policies["storage-private"].mode == "audit"
    assert policies["storage-private"].source.endswith("override/storage-private.yaml")
    assert len(policies) == len(load_directory(BASELINE))


def test_missing_directory_is_a_finding(tmp_path):
    with pytest.raises(MetadataValidationError, match="not a directory"):
        load_directory(tmp_path / "nope")


def test_to_document_is_json_and_round_trips():
    (policy,) = load_documents([("row", storage_doc(selector={
        "resource_types": ["Microsoft.Storage/storageAccounts"], "subscriptions": [SUB],
        "resource_groups": ["rg-ml"], "tags": {"environment": "prod"}}, notify_tag="team"))])
    doc = json.loads(json.dumps(policy.to_document()))
    again = Policy.from_document(doc, source="table/row")
    assert again == policy and again.source == "table/row" and again.ref == "storage-private@3"


def test_from_document_rejects_a_tampered_row():
    # GIVEN a valid policy stored as a document, then tampered with in the table
    (policy,) = load_documents([("row", storage_doc())])
    doc = copy.deepcopy(policy.to_document())
    doc["rules"][0]["action"]["value"] = "Enabled"         # the "fix" would now open the account
    # WHEN it is read back THEN it is rejected, not trusted
    with pytest.raises(MetadataValidationError) as info:
        Policy.from_document(doc, source="policies/storage-private")
    assert info.value.findings == [
        "policies/storage-private: policy 'storage-private': $.rules[0].action: value 'Enabled' does not satisfy"
        " expect equals 'Disabled': the fix would never make the resource compliant"]


def test_load_documents_rejects_duplicate_ids():
    with pytest.raises(MetadataValidationError, match="b: policy 'storage-private': \\$.id: duplicate policy id"
                                                      " 'storage-private': also defined in a"):
        load_documents([("a", storage_doc()), ("b", storage_doc())])


@needs_arm_id
def test_load_documents_accepts_aware_datetimes_from_python_and_rejects_naive_ones():
    def doc(expires):
        return storage_doc(exemptions=[{"scope": f"/subscriptions/{SUB}", "reason": "r", "owner": "o",
                                        "expires": expires}])
    (policy,) = load_documents([("row", doc(datetime(2027, 1, 31, tzinfo=timezone.utc)))])
    assert policy.exemptions[0].expires == datetime(2027, 1, 31, tzinfo=timezone.utc)
    with pytest.raises(MetadataValidationError, match=r"\$.exemptions\[0\].expires: .* has no timezone"):
        load_documents([("row", doc(datetime(2027, 1, 31)))])


def test_policy_values_are_immutable():
    (policy,) = load_documents([("row", storage_doc())])
    with pytest.raises(TypeError):
        policy.rules[0].expect["equals"] = "Enabled"   # type: ignore[index]
    with pytest.raises(AttributeError):
        policy.mode = "off"                            # type: ignore[misc]
    assert hash(policy) == hash(Policy.from_document(policy.to_document()))


def test_yaml_words_yes_no_on_off_stay_words(tmp_path):
    # YAML 1.1 would read `mode: off` as the boolean false and reject the policy; YAML 1.2 does not
    text = (ROOT / "metadata/policies/storage-private.yaml").read_text().replace("mode: enforce", "mode: off")
    (tmp_path / "p.yaml").write_text(text + "notify_tag: NO\n")
    (policy,) = load_directory(tmp_path)
    assert policy.mode == "off" and policy.notify_tag == "NO"
    assert policy.rules[1].expect == {"equals": False}       # true/false are still booleans


# ---- review 2026-11-25: what validate must catch before sync writes anything --------------------
REPO_METADATA = Path(__file__).resolve().parents[2] / "metadata"


def test_a_yaml_merge_key_is_refused_not_flattened(tmp_path):
    text = (REPO_METADATA / "policies" / "storage-private.yaml").read_text()
    (tmp_path / "p.yaml").write_text(text + "\n<<: {mode: 'off'}\n")
    with pytest.raises(MetadataValidationError, match="merge keys"):
        load_directory(tmp_path)


def test_one_job_id_in_two_directories_is_a_finding(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    doc = (REPO_METADATA / "jobs" / "job-201.yaml").read_text().replace("id: job-201", "id: site-job-201")
    (site / "site-job-201.yaml").write_text(doc)
    with pytest.raises(MetadataValidationError, match="already covered by policy 'job-201'"):
        load_directory(REPO_METADATA / "policies", REPO_METADATA / "jobs", site)


def test_a_policy_too_large_for_one_table_row_is_a_validation_finding(tmp_path):
    text = (REPO_METADATA / "policies" / "storage-private.yaml").read_text()
    items = "".join(f"""
  - scope: /subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg-{i:04d}
    reason: a long list of exemptions, each with its own reason text to make the row large
    owner: alice@contoso.com
    expires: "2030-01-01T00:00:00Z\"""" for i in range(250))
    (tmp_path / "p.yaml").write_text(text + "\nexemptions:" + items + "\n")
    with pytest.raises(MetadataValidationError, match="too large for one table row"):
        load_directory(tmp_path)


def test_bare_azure_keys_are_detected_and_never_echoed(tmp_path):
    import base64
    import os

    from guardrails.secrets.credentials import classify

    account_key = base64.b64encode(os.urandom(64)).decode()           # 88 characters, ends "=="
    client_secret = "abc8Q~" + base64.b64encode(os.urandom(30)).decode().replace("+", "x").replace("/", "y")[:34]
    assert classify(account_key) == "storage account key"
    assert classify(client_secret) == "Entra client secret"
    for i, value in enumerate((account_key, client_secret)):
        d = tmp_path / f"d{i}"
        d.mkdir()
        text = (REPO_METADATA / "policies" / "storage-private.yaml").read_text()
        (d / "p.yaml").write_text(text.replace("\nversion: 1\n", f'\nversion: 1\nhint: "see {value}"\n', 1))
        with pytest.raises(MetadataValidationError) as err:
            load_directory(d)
        assert value not in str(err.value) and "credential" in str(err.value)
    # pasted where a name belongs: the schema refuses it, and no finding quotes it (a slice with
    # '+' or '/' and one without: either way, not in the policy id's place of a finding)
    text = (REPO_METADATA / "policies" / "storage-private.yaml").read_text()
    alnum = "".join(c for c in base64.b64encode(os.urandom(96)).decode() if c.isalnum())[:60]
    for i, pasted in enumerate((account_key[:60], alnum)):
        d = tmp_path / f"name{i}"
        d.mkdir()
        (d / "p.yaml").write_text(text.replace("id: storage-private", f"id: '{pasted}'", 1))
        with pytest.raises(MetadataValidationError) as err:
            load_directory(d)
        assert pasted not in str(err.value)


@needs_arm_id
def test_a_management_group_exemption_of_a_resource_policy_is_refused():
    # a resource id names its subscription, never its management group: such an exemption would
    # silently exempt nothing
    doc = storage_doc(exemptions=[{"scope": "/providers/Microsoft.Management/managementGroups/mg-lab",
                                   "reason": "lab", "owner": "alice@contoso.com"}])
    with pytest.raises(MetadataValidationError) as err:
        load_documents([("mg.yaml", doc)])
    assert "$.exemptions[0].scope: a management group scope never matches" in str(err.value)


def _typo_rule(prop: str, **extra) -> dict:
    return {"id": "pna", "property": prop, "expect": {"not_equals": "Enabled"}, "action": {"type": "notify"}, **extra}


def test_a_misspelt_property_path_is_refused_with_the_nearest_known_one():
    # a typo would judge every resource by the absent value: not_equals would pass them all
    doc = storage_doc(rules=[_typo_rule("properties.publicNetworkAcess")])
    with pytest.raises(MetadataValidationError) as err:
        load_documents([("typo.yaml", doc)])
    (finding,) = err.value.findings
    assert finding.startswith("typo.yaml: policy 'storage-private': $.rules[0].property: "
                              "'properties.publicNetworkAcess' is not a known property of "
                              "Microsoft.Storage/storageAccounts (did you mean 'properties.publicNetworkAccess'?)")
    assert "allow_unlisted_property: true" in finding


def test_a_path_one_of_two_selected_types_lacks_is_refused_for_that_type():
    # enableRbacAuthorization is a Key Vault property; a storage account never has it
    doc = storage_doc(selector={"resource_types": ["Microsoft.KeyVault/vaults", "Microsoft.Storage/storageAccounts"]},
                      rules=[_typo_rule("properties.enableRbacAuthorization")])
    with pytest.raises(MetadataValidationError) as err:
        load_documents([("two.yaml", doc)])
    (finding,) = err.value.findings
    assert "of Microsoft.Storage/storageAccounts" in finding and "KeyVault" not in finding


def test_known_paths_in_any_case_and_under_maps_load():
    rules = [_typo_rule("PROPERTIES.publicnetworkaccess"), dict(_typo_rule("tags.costCenter"), id="tag"),
             dict(_typo_rule("properties.networkAcls.defaultAction"), id="acl")]
    (policy,) = load_documents([("ok.yaml", storage_doc(rules=rules))])
    assert [r.property for r in policy.rules] == ["PROPERTIES.publicnetworkaccess", "tags.costCenter",
                                                  "properties.networkAcls.defaultAction"]


def test_allow_unlisted_property_accepts_a_path_the_list_lacks_and_must_be_a_boolean():
    (policy,) = load_documents([("ok.yaml", storage_doc(rules=[_typo_rule("properties.previewOnlyFlag",
                                                                         allow_unlisted_property=True)]))])
    assert policy.rules[0].property == "properties.previewOnlyFlag"
    with pytest.raises(MetadataValidationError) as err:
        load_documents([("bad.yaml", storage_doc(rules=[_typo_rule("properties.previewOnlyFlag",
                                                                   allow_unlisted_property="yes")]))])
    assert "$.rules[0].allow_unlisted_property" in str(err.value)


def test_allow_unlisted_property_survives_the_table_round_trip():
    (policy,) = load_documents([("ok.yaml", storage_doc(rules=[_typo_rule("properties.previewOnlyFlag",
                                                                         allow_unlisted_property=True)]))])
    doc = json.loads(json.dumps(policy.to_document()))
    assert doc["rules"][0]["allow_unlisted_property"] is True
    assert Policy.from_document(doc, source="table") == policy
    (plain,) = load_documents([("ok.yaml", storage_doc())])
    assert "allow_unlisted_property" not in json.dumps(plain.to_document())


def test_a_table_row_is_not_held_to_this_releases_property_lists_again():
    # a row an earlier release synced must keep loading on the worker after an upgrade whose
    # lists lack its path (else PolicyUnreadable stops every decision); validate and sync refuse it
    doc = storage_doc(rules=[_typo_rule("properties.previewOnlyFlag")])
    with pytest.raises(MetadataValidationError):
        load_documents([("new.yaml", doc)])
    policy = Policy.from_document(json.loads(json.dumps(doc)), source="table:Policies/storage-private")
    assert policy.rules[0].property == "properties.previewOnlyFlag"
