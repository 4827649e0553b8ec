"""Review s21 of the policy core: inputs that validated and then silently covered nothing, or
crashed later, are now normalised or refused with a finding naming file, policy and path.

1. a subscription GUID with a trailing line break (a YAML block scalar) is stored normalised and
   selects its subscription (resource and role policies);
2. a rule on a path that is an object or an array is refused (a scalar comparison never matches
   one: ``not_equals`` / ``not_in`` passed every resource, whatever ``ipRules`` held);
4. a ``version`` past Edm.Int32 (the table's version column) is refused by validation;
5. ids with a trailing line break (``$`` in ``re.search``) are refused;
6. selector resource group names follow ARM's grammar;
7. YAML 1.1-only number forms (``010``, ``1:30``) are refused instead of read as 8 and 90.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from guardrails.cli import main as cli_main
from guardrails.errors import MetadataValidationError
from guardrails.model.known_properties import KNOWN, container_path
from guardrails.model.resource import ResourceSnapshot
from guardrails.policy.evaluate import compile_policies
from guardrails.policy.loader import load_directory, load_documents
from guardrails.policy.roles import CompiledRolePolicy
from guardrails.policy.structure import _parse_yaml

ROOT = Path(__file__).resolve().parents[2]
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
STORAGE = "Microsoft.Storage/storageAccounts"
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def storage_doc(*, rules=None, selector=None, **overrides) -> dict:
    doc = {
        "id": "storage-private", "version": 3, "description": "Storage stays private.", "mode": "enforce",
        "selector": {"resource_types": [STORAGE], **(selector or {})},
        "rules": rules or [{"id": "public-network-access-disabled", "property": "properties.publicNetworkAccess",
                            "expect": {"equals": "Disabled"}, "action": {"type": "set-property", "value": "Disabled"}}],
    }
    doc.update(overrides)
    return doc


def findings(*docs: dict, check_paths: bool = True) -> list[str]:
    with pytest.raises(MetadataValidationError) as info:
        load_documents([(f"p{i}.yaml", d) for i, d in enumerate(docs)], check_paths=check_paths)
    return info.value.findings


def write(tmp_path: Path, name: str, text: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "policy.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return d


def storage_body(props: dict, *, sub: str = SUB, rg: str = "rg-ml-prod") -> dict:
    rid = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/stprod"
    return {"id": rid, "type": STORAGE, "name": "stprod", "properties": props}


def violated_rules(policies, body: dict) -> list[str]:
    snap = ResourceSnapshot(body["id"], body["type"], body)
    return [r.rule.id for r in compile_policies(policies).evaluate(snap, now=NOW)]


# ---------------------------------------------------------------- 1. subscription GUIDs

BLOCK_SCALAR_SUBSCRIPTION = f"""
    id: storage-private
    version: 3
    description: Storage stays private in one subscription.
    mode: enforce
    selector:
      resource_types: [Microsoft.Storage/storageAccounts]
      subscriptions:
        - |
          {SUB}
    rules:
      - id: public-network-access-disabled
        property: properties.publicNetworkAccess
        expect: {{equals: Disabled}}
        action: {{type: set-property, value: Disabled}}
    """


def test_a_subscription_written_as_a_block_scalar_is_normalised_and_selects_its_subscription(tmp_path):
    # GIVEN a selector subscription written as a YAML block scalar ("<guid>\n")
    (policy,) = load_directory(write(tmp_path, "m", BLOCK_SCALAR_SUBSCRIPTION))
    # THEN the stored value is the bare GUID, in the synced document too
    assert policy.selector.subscriptions == (SUB,)
    assert policy.to_document()["selector"]["subscriptions"] == [SUB]
    # AND a public account in that subscription is a violation (it was silently not selected)
    assert violated_rules([policy], storage_body({"publicNetworkAccess": "Enabled"})) == [
        "public-network-access-disabled"]
    # AND one in another subscription is still not selected
    other = "00000000-0000-4000-8000-000000000001"
    assert violated_rules([policy], storage_body({"publicNetworkAccess": "Enabled"}, sub=other)) == []


def test_subscription_spellings_are_normalised_and_a_repeat_is_refused():
    (p,) = load_documents([("p.yaml", storage_doc(selector={"subscriptions": [SUB.upper()]}))])
    assert p.selector.subscriptions == (SUB,)
    (p,) = load_documents([("p.yaml", storage_doc(selector={"subscriptions": ["{" + SUB.replace("-", "") + "}"]}))])
    assert p.selector.subscriptions == (SUB,)
    (f,) = findings(storage_doc(selector={"subscriptions": [SUB, SUB.upper()]}))
    assert "$.selector.subscriptions[1]: subscription " + SUB + " is listed twice" in f
    (f,) = findings(storage_doc(selector={"subscriptions": [SUB + "x"]}))
    assert "$.selector.subscriptions[0]:" in f and "is not a subscription GUID" in f


def test_a_role_policy_subscription_with_a_line_break_selects_its_subscription():
    import yaml
    doc = yaml.safe_load((ROOT / "metadata" / "policies" / "rbac-least-privilege.yaml").read_text())
    doc["selector"] = {"subscriptions": [SUB + "\n"]}
    (policy,) = load_documents([("rbac.yaml", doc)])
    assert policy.selector.subscriptions == (SUB,)
    assert CompiledRolePolicy(policy).subs == frozenset({SUB})


# ---------------------------------------------------------------- 2. object and array paths

@pytest.mark.parametrize("prop,expect,what", [
    ("properties.networkAcls.ipRules", {"not_equals": "0.0.0.0/0"}, "is an array"),
    ("properties.networkAcls.ipRules", {"not_in": ["0.0.0.0/0", "*"]}, "is an array"),
    ("properties.networkAcls", {"not_equals": "Allow"}, "is an object"),
    ("properties.networkAcls", {"equals": "Deny"}, "is an object"),
    ("tags", {"in": ["prod"]}, "is an object"),
    ("Properties.NetworkAcls.IpRules", {"not_equals": "0.0.0.0/0"}, "is an array"),
])
def test_a_comparison_on_an_object_or_array_path_is_refused(prop, expect, what):
    # GIVEN a rule whose path the REST specification types as an object or an array
    rule = {"id": "firewall", "property": prop, "expect": expect, "action": {"type": "notify"}}
    # WHEN it is validated THEN it is refused, saying why and naming the rule's path
    (f,) = findings(storage_doc(rules=[rule]))
    assert "policy 'storage-private': $.rules[0].property:" in f and what in f, f
    assert "not_equals/not_in pass every one" in f


def test_allow_unlisted_property_does_not_make_a_container_comparable_nor_reach_into_an_array():
    # the flag accepts paths the list lacks; these it lists as an array (and a path inside one)
    for prop in ("properties.networkAcls.ipRules", "properties.networkAcls.ipRules.value"):
        rule = {"id": "firewall", "property": prop, "expect": {"not_equals": "0.0.0.0/0"},
                "action": {"type": "notify"}, "allow_unlisted_property": True}
        (f,) = findings(storage_doc(rules=[rule]))
        assert "$.rules[0].property:" in f and "array" in f, f
    # an unlisted scalar path keeps working with the flag
    rule = {"id": "preview", "property": "properties.somePreviewFlag", "expect": {"equals": True},
            "action": {"type": "notify"}, "allow_unlisted_property": True}
    (p,) = load_documents([("p.yaml", storage_doc(rules=[rule]))])
    assert p.rules[0].allow_unlisted_property


def test_a_scalar_member_of_an_object_is_still_accepted_and_judged():
    rule = {"id": "acl-deny", "property": "properties.networkAcls.defaultAction", "expect": {"equals": "Deny"},
            "action": {"type": "notify"}}
    (p,) = load_documents([("p.yaml", storage_doc(rules=[rule]))])
    assert violated_rules([p], storage_body({"networkAcls": {"defaultAction": "Allow"}})) == ["acl-deny"]


def test_a_worker_reading_rows_does_not_refuse_a_container_path_again():
    # rows an earlier release wrote must keep loading on a worker (check_paths=False)
    rule = {"id": "firewall", "property": "properties.networkAcls", "expect": {"not_equals": "Allow"},
            "action": {"type": "notify"}}
    (p,) = load_documents([("table:x/storage-private", storage_doc(rules=[rule]))], check_paths=False)
    assert p.rules[0].property == "properties.networkAcls"


def test_the_generated_lists_name_objects_and_arrays():
    for key, props in KNOWN.items():
        assert props.objects <= props.paths and props.arrays <= props.paths, key
        assert not props.objects & props.arrays, key
        # every intermediate path is an object; open prefixes (maps) are objects too
        parents = {p.rsplit(".", 1)[0] for p in props.paths if "." in p}
        assert parents <= props.objects, (key, parents - props.objects)
        assert props.open_prefixes <= props.objects, key
    storage = KNOWN[STORAGE.lower()]
    assert "properties.networkAcls.ipRules" in storage.arrays
    assert "properties.networkAcls" in storage.objects
    assert container_path(STORAGE, "properties.publicNetworkAccess") is None
    assert container_path(STORAGE, "tags.owner") is None


@pytest.mark.skipif(not Path("/tmp/mgmtpk/x").is_dir(), reason="the SDK wheels are not unpacked here")
def test_the_data_block_is_what_the_generator_writes():
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_known_properties.py"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr


# ---------------------------------------------------------------- 4. version fits Edm.Int32

def test_a_version_past_int32_is_refused_by_validation():
    (f,) = findings(storage_doc(version=2**31))
    assert "policy 'storage-private': $.version:" in f and "2147483647" in f
    (p,) = load_documents([("p.yaml", storage_doc(version=2**31 - 1))])
    assert p.version == 2**31 - 1


def test_validate_cli_refuses_a_version_past_int32(tmp_path, capsys):
    d = write(tmp_path, "m", """
        id: storage-private
        version: 2147483648
        description: too big a version
        mode: enforce
        selector: {resource_types: [Microsoft.Storage/storageAccounts]}
        rules:
          - id: public-network-access-disabled
            property: properties.publicNetworkAccess
            expect: {equals: Disabled}
            action: {type: set-property, value: Disabled}
        """)
    assert cli_main(["metadata", "validate", "--metadata", str(d)]) == 1
    err = capsys.readouterr().err
    assert "nothing changed" in err and "$.version: 2147483648 is greater than the maximum of 2147483647" in err


# ---------------------------------------------------------------- 5. ids end where they end

def test_ids_with_a_trailing_line_break_are_refused():
    doc = storage_doc(id="storage-private\n")
    doc["rules"][0]["id"] = "r1\n"
    found = findings(doc)
    assert any("$.id:" in f and "line break" in f for f in found), found
    assert any("$.rules[0].id:" in f and "line break" in f for f in found), found
    # the refused id is not echoed with its line break as the finding's policy name
    assert all("policy 'storage-private\n'" not in f for f in found)


def test_an_id_from_a_block_scalar_is_refused_and_does_not_shadow_the_shipped_policy(tmp_path):
    d = write(tmp_path, "site", """
        id: |
          storage-private
        version: 9
        description: a site override written with a block scalar
        mode: audit
        selector: {resource_types: [Microsoft.Storage/storageAccounts]}
        rules:
          - id: public-network-access-disabled
            property: properties.publicNetworkAccess
            expect: {equals: Disabled}
            action: {type: notify}
        """)
    with pytest.raises(MetadataValidationError) as info:
        load_directory(ROOT / "metadata", d)
    assert any("$.id:" in f for f in info.value.findings), info.value.findings


def test_a_property_or_role_action_with_a_line_break_is_refused():
    rule = {"id": "r1", "property": "properties.publicNetworkAccess\n", "expect": {"equals": "Disabled"},
            "action": {"type": "notify"}, "allow_unlisted_property": True}
    (f,) = findings(storage_doc(rules=[rule]))
    assert "$.rules[0].property:" in f
    import yaml
    doc = yaml.safe_load((ROOT / "metadata" / "policies" / "rbac-least-privilege.yaml").read_text())
    doc["privileged"]["custom_role_actions"] = ["Microsoft.Authorization/*/write\n"]
    (f,) = findings(doc)
    assert "$.privileged.custom_role_actions[0]:" in f and "line break" in f, f


# ---------------------------------------------------------------- 6. resource group names

@pytest.mark.parametrize("rg,says", [
    (f"/subscriptions/{SUB}/resourceGroups/rg1", "not a resource group name: write the name alone"),
    ("rg*", "wildcards are not supported"),
    ("rg 1 ", "contains ' '"),
    ("rg1.", "ends with '.'"),
    ("r" * 91, "longer than 90"),
])
def test_a_resource_group_that_is_not_a_name_is_refused(rg, says):
    (f,) = findings(storage_doc(selector={"resource_groups": [rg]}))
    assert "policy 'storage-private': $.selector.resource_groups[0]:" in f and says in f, f


def test_resource_group_names_in_arm_grammar_select_and_a_repeat_is_refused():
    (p,) = load_documents([("p.yaml", storage_doc(selector={"resource_groups": ["RG-ML-Prod", "rg_(1).x"]}))])
    assert violated_rules([p], storage_body({"publicNetworkAccess": "Enabled"}, rg="rg-ml-prod")) == [
        "public-network-access-disabled"]
    (f,) = findings(storage_doc(selector={"resource_groups": ["rg-ml-prod", "RG-ML-PROD"]}))
    assert "$.selector.resource_groups[1]:" in f and "listed twice" in f


def test_a_worker_reading_rows_does_not_refuse_a_resource_group_an_earlier_release_accepted():
    # validate/sync refuse it; a worker must not make its whole policy set unreadable over it
    doc = storage_doc(selector={"resource_groups": ["rg*"]})
    (p,) = load_documents([("table:x/storage-private", doc)], check_paths=False)
    assert p.selector.resource_groups == ("rg*",)


# ---------------------------------------------------------------- 7. YAML 1.1 number forms

@pytest.mark.parametrize("text,as11", [("010", "8"), ("1:30", "90"), ("0b11", "3"), ("1_000", "1000"),
                                       ("-0x1F", "-31"), ("1:30.5", "90.5")])
def test_yaml_1_1_only_number_forms_are_refused(text, as11):
    doc, found = _parse_yaml("p.yaml", f"expect: {{equals: {text}}}\n")
    assert doc is None
    (f,) = found
    assert f"{text} is read as {as11}" in f and f"quote it ('{text}')" in f and "line 1" in f, f


@pytest.mark.parametrize("text,value", [("10", 10), ("-1", -1), ("0", 0), ("'010'", "010"), ('"1:30"', "1:30"),
                                        ("1.5", 1.5), ("0x1F", 31), ("Disabled", "Disabled"), ("off", "off")])
def test_yaml_1_2_scalars_still_read_as_before(text, value):
    doc, found = _parse_yaml("p.yaml", f"expect: {{equals: {text}}}\n")
    assert found == [] and doc["expect"]["equals"] == value and type(doc["expect"]["equals"]) is type(value)


def test_a_policy_file_with_an_octal_looking_operand_is_refused_with_its_line(tmp_path):
    d = write(tmp_path, "m", """
        id: storage-tls
        version: 1
        description: an operand written 010
        mode: audit
        selector: {resource_types: [Microsoft.Storage/storageAccounts]}
        rules:
          - id: tls
            property: properties.minimumTlsVersion
            expect: {equals: 010}
            action: {type: notify}
        """)
    with pytest.raises(MetadataValidationError) as info:
        load_directory(d)
    (f,) = info.value.findings
    assert "010 is read as 8 by YAML 1.1" in f and "line 9" in f, f


def test_the_shipped_metadata_still_validates():
    assert load_directory(ROOT / "metadata")
