"""Selection and evaluation: live snapshot + compiled policies -> the violated rules only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardrails.model.decision import Change
from guardrails.model.policy import Policy
from guardrails.model.resource import ResourceSnapshot
from guardrails.policy import operators
from guardrails.policy.evaluate import CompiledPolicySet, RuleResult, compile_policies
from guardrails.policy.loader import load_directory, load_documents

BASELINE = Path(__file__).resolve().parents[2] / "metadata"
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
OTHER_SUB = "0b7c2d4e-1f3a-4b5c-8d9e-6f7a8b9c0d1e"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)

WS = "Microsoft.MachineLearningServices/workspaces"
MLREG = "Microsoft.MachineLearningServices/registries"
COMPUTE = "Microsoft.MachineLearningServices/workspaces/computes"
STORAGE = "Microsoft.Storage/storageAccounts"
VAULT = "Microsoft.KeyVault/vaults"
ACR = "Microsoft.ContainerRegistry/registries"


def arm_id_available() -> bool:
    try:
        import guardrails.model.arm_id  # noqa: F401
    except ImportError:
        return False
    return True


needs_arm_id = pytest.mark.skipif(not arm_id_available(), reason="guardrails.model.arm_id not there yet")


def rid(type_: str, name: str = "res1", rg: str = "rg-ml", sub: str = SUB) -> str:
    ns, *types = type_.split("/")
    names = ["parent"] * (len(types) - 1) + [name]
    return (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}"
            + "".join(f"/{t}/{n}" for t, n in zip(types, names)))


def snap(type_: str, props: dict, *, tags: dict | None = None, **id_kw) -> ResourceSnapshot:
    body: dict = {"id": rid(type_, **id_kw), "type": type_, "properties": props}
    if tags is not None:
        body["tags"] = tags
    return ResourceSnapshot(body["id"], type_, body)


def policy(pid: str = "test-policy", *, types=(STORAGE,), mode="enforce", selector=None, rules=None, exemptions=None) -> Policy:
    doc = {
        "id": pid, "version": 1, "description": "test policy", "mode": mode,
        "selector": {"resource_types": list(types), **(selector or {})},
        "rules": rules or [{"id": "pna", "property": "properties.publicNetworkAccess",
                            "expect": {"equals": "Disabled"},
                            "action": {"type": "set-property", "value": "Disabled"}}],
    }
    if exemptions:
        doc["exemptions"] = exemptions
    (p,) = load_documents([(pid, doc)])
    return p


@pytest.fixture(scope="module")
def baseline() -> CompiledPolicySet:
    return compile_policies(load_directory(BASELINE))


def violations(results: list[RuleResult]) -> list[tuple[str, str, Change | None, bool]]:
    return [(r.policy.id, r.rule.id, r.change, r.notify) for r in results]


# ---------------------------------------------------------------- the baseline, type by type

COMPLIANT = {
    WS: {"publicNetworkAccess": "Disabled"},
    MLREG: {"publicNetworkAccess": "Disabled"},
    STORAGE: {"publicNetworkAccess": "Disabled", "allowBlobPublicAccess": False},
    VAULT: {"publicNetworkAccess": "Disabled", "enableRbacAuthorization": True},
    ACR: {"publicNetworkAccess": "Disabled", "adminUserEnabled": False},
    COMPUTE: {"computeType": "AmlCompute", "properties": {"enableNodePublicIp": False}},
}

FLIPPED = [
    (WS, {"publicNetworkAccess": "Enabled"}, "aml-workspace-private", "public-network-access-disabled",
     Change("properties.publicNetworkAccess", "Enabled", "Disabled")),
    (MLREG, {"publicNetworkAccess": "Enabled"}, "aml-registry-private", "public-network-access-disabled",
     Change("properties.publicNetworkAccess", "Enabled", "Disabled")),
    (STORAGE, {"publicNetworkAccess": "Enabled"}, "storage-private", "public-network-access-disabled",
     Change("properties.publicNetworkAccess", "Enabled", "Disabled")),
    (STORAGE, {"allowBlobPublicAccess": True}, "storage-private", "blob-public-access-off",
     Change("properties.allowBlobPublicAccess", True, False)),
    (VAULT, {"publicNetworkAccess": "Enabled"}, "keyvault-private", "public-network-access-disabled",
     Change("properties.publicNetworkAccess", "Enabled", "Disabled")),
    (VAULT, {"enableRbacAuthorization": False}, "keyvault-private", "rbac-authorization-enabled", None),
    (ACR, {"publicNetworkAccess": "Enabled"}, "acr-private", "public-network-access-disabled",
     Change("properties.publicNetworkAccess", "Enabled", "Disabled")),
    (ACR, {"adminUserEnabled": True}, "acr-private", "admin-user-disabled",
     Change("properties.adminUserEnabled", True, False)),
    (ACR, {"anonymousPullEnabled": True}, "acr-private", "anonymous-pull-disabled",
     Change("properties.anonymousPullEnabled", True, False)),
    (COMPUTE, {"computeType": "AmlCompute", "properties": {"enableNodePublicIp": True}}, "aml-compute-no-public-ip",
     "node-public-ip-disabled", None),
]


@pytest.mark.parametrize("type_", sorted(COMPLIANT))
def test_a_compliant_resource_produces_nothing(baseline, type_):
    assert baseline.evaluate(snap(type_, COMPLIANT[type_]), now=NOW) == []


@pytest.mark.parametrize("type_,flip,policy_id,rule_id,change", FLIPPED, ids=[f"{f[2]}/{f[3]}" for f in FLIPPED])
def test_each_baseline_rule_flipped_is_a_violation_with_the_right_change(baseline, type_, flip, policy_id, rule_id, change):
    # GIVEN a compliant resource with one property flipped
    props = {**COMPLIANT[type_], **flip}
    # WHEN it is evaluated
    (result,) = baseline.evaluate(snap(type_, props), now=NOW)
    # THEN exactly that rule is violated, with the planned fix (or a notification)
    assert (result.policy.id, result.rule.id, result.change) == (policy_id, rule_id, change)
    assert result.notify is (change is None)
    assert result.present is True and result.exemption is None
    assert result.policy.mode == "enforce"


# ---------------------------------------------------------------- values: defaults, case, strings

def test_absent_property_takes_the_catalogue_default_and_violates(baseline):
    # GIVEN a workspace whose publicNetworkAccess is absent (documented default: Enabled)
    (result,) = baseline.evaluate(snap(WS, {}), now=NOW)
    assert result.present is False and result.before == "Enabled"
    assert result.change == Change("properties.publicNetworkAccess", "Enabled", "Disabled")


def test_null_property_is_treated_as_absent(baseline):
    results = baseline.evaluate(snap(STORAGE, {"publicNetworkAccess": None, "allowBlobPublicAccess": None}), now=NOW)
    # a null allowBlobPublicAccess permits anonymous access on accounts made before late 2023: it
    # counts as true (fail closed), and the fix writes false
    assert [(r.rule.id, r.before, r.present) for r in results] == [
        ("public-network-access-disabled", "Enabled", False), ("blob-public-access-off", True, False)]


def test_absent_property_with_a_compliant_default_is_compliant(baseline):
    # GIVEN a container registry without adminUserEnabled (documented default: false)
    assert baseline.evaluate(snap(ACR, {"publicNetworkAccess": "Disabled"}), now=NOW) == []


def test_absent_property_without_default_is_none_for_the_operator():
    compiled = compile_policies([policy(rules=[
        {"id": "eq", "property": "properties.minimumTlsVersion", "expect": {"equals": "TLS1_2"},
         "action": {"type": "set-property", "value": "TLS1_2"}},
        {"id": "ne", "property": "properties.minimumTlsVersion", "expect": {"not_equals": "TLS1_0"},
         "action": {"type": "notify"}},
    ])])
    (result,) = compiled.evaluate(snap(STORAGE, {}), now=NOW)
    assert (result.rule.id, result.before, result.present) == ("eq", None, False)
    assert result.change == Change("properties.minimumTlsVersion", None, "TLS1_2")


def test_enum_values_compare_case_insensitively(baseline):
    assert baseline.evaluate(snap(STORAGE, {"publicNetworkAccess": "disabled", "allowBlobPublicAccess": False}), now=NOW) == []
    (result,) = baseline.evaluate(snap(STORAGE, {"publicNetworkAccess": "ENABLED", "allowBlobPublicAccess": False}),
                                  now=NOW)
    assert result.change == Change("properties.publicNetworkAccess", "ENABLED", "Disabled")


def test_string_booleans_from_arm_equal_booleans(baseline):
    props = {"publicNetworkAccess": "Disabled"}
    assert baseline.evaluate(snap(STORAGE, {**props, "allowBlobPublicAccess": "False"}), now=NOW) == []
    (result,) = baseline.evaluate(snap(STORAGE, {**props, "allowBlobPublicAccess": "true"}), now=NOW)
    assert result.change == Change("properties.allowBlobPublicAccess", "true", False)


def test_property_keys_echoed_in_another_case_are_found(baseline):
    assert baseline.evaluate(snap(VAULT, {"PublicNetworkAccess": "Disabled", "EnableRbacAuthorization": True}), now=NOW) == []


# ---------------------------------------------------------------- selection

def test_type_matching_is_exact_not_prefix(baseline):
    # a compute (child of a workspace) is not a workspace
    assert [p.id for p in baseline.candidates(COMPUTE, SUB, "rg-ml")] == ["aml-compute-no-public-ip"]
    assert [p.id for p in baseline.candidates(WS, SUB, "rg-ml")] == ["aml-workspace-private"]
    results = baseline.evaluate(snap(COMPUTE, {"publicNetworkAccess": "Enabled", "properties": {"enableNodePublicIp": False}}), now=NOW)
    assert results == []
    assert baseline.candidates("Microsoft.Storage/storageAccounts/blobServices", SUB, "rg") == []


def test_type_matching_ignores_case(baseline):
    assert [p.id for p in baseline.candidates(STORAGE.lower(), None, None)] == ["storage-private"]
    assert len(baseline.evaluate(snap(STORAGE.upper(), {}), now=NOW)) == 2     # both rules, absent = open


def test_mode_off_is_never_selected():
    compiled = compile_policies([policy("off-one", mode="off"), policy("on-one")])
    assert [p.id for p in compiled.candidates(STORAGE, SUB, "rg-ml")] == ["on-one"]
    assert [r.policy.id for r in compiled.evaluate(snap(STORAGE, {}), now=NOW)] == ["on-one"]


def test_audit_policies_still_produce_results():
    # mode handling (apply or not) is the service's job
    (result,) = compile_policies([policy(mode="audit")]).evaluate(snap(STORAGE, {}), now=NOW)
    assert result.policy.mode == "audit"
    assert result.change == Change("properties.publicNetworkAccess", "Enabled", "Disabled")


def test_two_matching_policies_both_report():
    compiled = compile_policies([policy("first"), policy("second", rules=[
        {"id": "tls", "property": "properties.minimumTlsVersion", "expect": {"in": ["TLS1_2", "TLS1_3"]},
         "action": {"type": "set-property", "value": "TLS1_2"}}])])
    results = compiled.evaluate(snap(STORAGE, {"publicNetworkAccess": "Enabled", "minimumTlsVersion": "TLS1_0"}), now=NOW)
    assert violations(results) == [
        ("first", "pna", Change("properties.publicNetworkAccess", "Enabled", "Disabled"), False),
        ("second", "tls", Change("properties.minimumTlsVersion", "TLS1_0", "TLS1_2"), False),
    ]


def test_subscription_and_resource_group_selectors():
    compiled = compile_policies([policy(selector={"subscriptions": [SUB.upper()], "resource_groups": ["RG-ML"]})])
    # pre-read: known values filter (case-insensitively), unknown ones do not exclude
    assert len(compiled.candidates(STORAGE, SUB, "rg-ml")) == 1
    assert compiled.candidates(STORAGE, OTHER_SUB, "rg-ml") == []
    assert compiled.candidates(STORAGE, SUB, "rg-other") == []
    assert len(compiled.candidates(STORAGE, None, None)) == 1
    # evaluation: explicit values, else the ones in the resource id
    assert len(compiled.evaluate(snap(STORAGE, {}), now=NOW)) == 1
    assert compiled.evaluate(snap(STORAGE, {}, rg="rg-other"), now=NOW) == []
    assert compiled.evaluate(snap(STORAGE, {}, sub=OTHER_SUB), now=NOW) == []
    assert compiled.evaluate(snap(STORAGE, {}), now=NOW, subscription_id=OTHER_SUB, resource_group="rg-ml") == []


def test_tag_selector_matches_live_tags_key_case_insensitive_value_exact():
    compiled = compile_policies([policy(selector={"tags": {"Environment": "prod"}})])
    # candidates() does not look at tags (they are read with the resource)
    assert len(compiled.candidates(STORAGE, SUB, "rg-ml")) == 1
    assert len(compiled.evaluate(snap(STORAGE, {}, tags={"environment": "prod", "owner": "a"}), now=NOW)) == 1
    assert compiled.evaluate(snap(STORAGE, {}, tags={"environment": "Prod"}), now=NOW) == []
    assert compiled.evaluate(snap(STORAGE, {}, tags={"env": "prod"}), now=NOW) == []
    assert compiled.evaluate(snap(STORAGE, {}), now=NOW) == []


# ---------------------------------------------------------------- exemptions

def exempted(scope: str, expires: str | None = None) -> CompiledPolicySet:
    ex = {"scope": scope, "reason": "lab without data", "owner": "alice@contoso.com"}
    if expires:
        ex["expires"] = expires
    return compile_policies([policy(exemptions=[ex])])


@needs_arm_id
def test_active_exemption_covers_the_resource_and_no_change_is_planned():
    compiled = exempted(f"/subscriptions/{SUB}/resourceGroups/rg-a", "2027-01-31T00:00:00Z")
    (result,) = compiled.evaluate(snap(STORAGE, {}, rg="RG-A"), now=NOW)
    assert result.exemption is not None and result.exemption.owner == "alice@contoso.com"
    assert result.change is None and result.before == "Enabled"


@needs_arm_id
def test_expired_exemption_no_longer_applies():
    compiled = exempted(f"/subscriptions/{SUB}/resourceGroups/rg-a", "2026-11-24T12:00:00Z")
    (result,) = compiled.evaluate(snap(STORAGE, {}, rg="rg-a"), now=NOW)
    assert result.exemption is None and result.change is not None
    (earlier,) = compiled.evaluate(snap(STORAGE, {}, rg="rg-a"), now=NOW - timedelta(seconds=1))
    assert earlier.exemption is not None


@needs_arm_id
def test_exemption_scope_is_segment_wise_not_a_string_prefix():
    compiled = exempted(f"/subscriptions/{SUB}/resourceGroups/rg-a")
    (result,) = compiled.evaluate(snap(STORAGE, {}, rg="rg-ab"), now=NOW)
    assert result.exemption is None and result.change is not None


@needs_arm_id
def test_exemption_on_a_resource_id_covers_only_that_resource():
    compiled = exempted(rid(STORAGE, "sa1"))
    assert compiled.evaluate(snap(STORAGE, {}, name="sa1"), now=NOW)[0].exemption is not None
    assert compiled.evaluate(snap(STORAGE, {}, name="sa10"), now=NOW)[0].exemption is None


# ---------------------------------------------------------------- operators

scalars = st.one_of(st.text(max_size=8), st.booleans(), st.integers(-5, 5), st.none())


@given(value=scalars, operand=st.one_of(st.text(min_size=1, max_size=8), st.booleans(), st.integers(-5, 5)))
def test_not_equals_is_the_negation_of_equals(value, operand):
    assert operators.satisfies({"not_equals": operand}, value) is (not operators.satisfies({"equals": operand}, value))


@given(text=st.text(alphabet="abcXYZ", min_size=1, max_size=8))
def test_string_equality_ignores_case(text):
    assert operators.satisfies({"equals": text}, text.swapcase())
    assert operators.satisfies({"in": ["zzz", text.upper()]}, text.lower())
    assert not operators.satisfies({"not_in": [text]}, text.upper())


def test_booleans_are_not_numbers_and_absent_fails_in():
    assert not operators.satisfies({"equals": True}, 1)
    assert not operators.satisfies({"equals": 1}, True)
    assert not operators.satisfies({"in": ["a"]}, None)
    assert operators.satisfies({"not_in": ["a"]}, None)
    assert not operators.satisfies({"equals": "a"}, ["a"])
    assert operators.values_equal({"a": 1}, {"a": 1}) and operators.values_equal("TRUE", True)


@pytest.mark.parametrize("type_, path", [(VAULT, "properties.networkAcls.defaultAction"),
                                         (STORAGE, "properties.networkAcls.defaultAction"),
                                         (ACR, "properties.networkRuleSet.defaultAction")])
def test_an_absent_firewall_counts_as_allowing_every_network(type_, path):
    # GIVEN a policy that refuses an open firewall, and a resource with no firewall block at all
    rule = {"id": "firewall-deny", "property": path, "expect": {"not_equals": "Allow"}, "action": {"type": "notify"}}
    compiled = compile_policies([policy(types=(type_,), rules=[rule])])
    # THEN no firewall means every network is allowed (Azure's default): a violation, as an explicit Allow is
    (absent,) = compiled.evaluate(snap(type_, {}), now=NOW)
    assert (absent.before, absent.present) == ("Allow", False)
    assert compiled.evaluate(snap(type_, {path.split(".")[1]: {"defaultAction": "Deny"}}), now=NOW) == []


@pytest.mark.parametrize("compute_type, inner, violated", [
    ("AmlCompute", {}, True),                                  # absent: public IPs are provisioned
    ("ComputeInstance", {"enableNodePublicIp": True}, True),
    ("amlcompute", {"enableNodePublicIp": False}, False),
    ("Kubernetes", {}, False),                                 # attached computes have no node public IP
    ("AKS", {}, False), ("Databricks", None, False), ("VirtualMachine", {}, False), ("SynapseSpark", {}, False),
])
def test_the_node_public_ip_rule_applies_to_clusters_and_instances_only(baseline, compute_type, inner, violated):
    props = {"computeType": compute_type, **({} if inner is None else {"properties": inner})}
    s = snap(COMPUTE, props)
    got = [r.rule.id for r in baseline.evaluate(s, now=NOW)]
    assert got == (["node-public-ip-disabled"] if violated else [])
    # the filter and the sweep loop run the same generated code
    assert bool(baseline.violations(s.body, COMPUTE)) is violated
    assert bool(baseline.violations_many([s.body])) is violated
