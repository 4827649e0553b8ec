"""ARM id grammar, views, containment and round-trips."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from guardrails.errors import InvalidArmId, InvalidEvent
from guardrails.model.arm_id import ArmId, fold, parse_arm_id, parse_scope, scope_contains

SUB = "3f2b8c1d-6a4e-4b7f-9c0d-2e5a1b7c8d90"
RG_ID = f"/subscriptions/{SUB}/resourceGroups/rg-a"
SA_ID = f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/sa"
CONTAINER_ID = f"{SA_ID}/blobServices/default/containers/c"
RA = "a8c3e5f7-2b4d-4e6f-8a1c-3e5f7a9b1c2d"


# -- valid ids --------------------------------------------------------------------------------
def test_storage_account_fields() -> None:
    # GIVEN a storage account id  WHEN parsed
    rid = parse_arm_id(SA_ID)
    # THEN every part is exposed
    assert (rid.subscription_id, rid.resource_group, rid.provider) == (SUB, "rg-a", "Microsoft.Storage")
    assert (rid.types, rid.names, rid.scope) == (("storageAccounts",), ("sa",), None)
    assert rid.resource_type == "Microsoft.Storage/storageAccounts"
    assert rid.name == "sa"
    assert str(rid.parent) == RG_ID


def test_subscription_and_resource_group() -> None:
    # GIVEN subscription and rg ids  WHEN parsed  THEN they get the Microsoft.Resources types
    sub = parse_arm_id(f"/subscriptions/{SUB.upper()}")
    assert sub.resource_type == "Microsoft.Resources/subscriptions"
    assert sub.name == SUB.upper() and sub.parent is None
    rg = parse_arm_id(RG_ID)
    assert rg.resource_type == "Microsoft.Resources/resourceGroups"
    assert rg.name == "rg-a" and rg.parent == ArmId(SUB, None, None)


def test_non_ascii_rg_lowercase_provider_and_keyword() -> None:
    # GIVEN a real-event spelling: `resourcegroups`, lower-case namespace, non-ASCII rg
    text = f"/subscriptions/{SUB}/resourcegroups/rg-données-ü/providers/microsoft.storage/storageAccounts/sa"
    # WHEN parsed
    rid = parse_arm_id(text)
    # THEN names keep their spelling, keywords are normalised
    assert rid.resource_group == "rg-données-ü" and rid.provider == "microsoft.storage"
    assert str(rid) == text.replace("resourcegroups", "resourceGroups")
    assert rid.url_path() == str(rid).replace("données-ü", "donn%C3%A9es-%C3%BC")


@pytest.mark.parametrize("rg", ["rg-กลุ่มข้อมูล",  # Thai: vowel and tone marks are Mn
                                "rg-cafe\u0301",                                # a decomposed accent (Mn)
                                "rg-data\u203fprod"])                          # UNDERTIE (Pc)
def test_rg_names_in_dotnet_word_class_are_accepted(rg) -> None:
    # ARM's rg pattern is ^[-\w\._\(\)]+$ in .NET, whose \w takes non-spacing marks and
    # connector punctuation: refusing them made a public resource in such a group unfixable
    rid = parse_arm_id(f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/sa")
    assert rid.resource_group == rg


@pytest.mark.parametrize("rg", ["rg a", "rg/a", "rg\u2028a", "rg*"])
def test_rg_names_outside_the_word_class_stay_refused(rg) -> None:
    with pytest.raises(InvalidArmId):
        parse_arm_id(f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/sa")


def test_child_resource_has_exact_type_not_parent_type() -> None:
    # GIVEN a blob container under a storage account  WHEN parsed
    rid = parse_arm_id(CONTAINER_ID)
    # THEN its type is the full child type and its parent chain walks up
    assert rid.resource_type == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert rid.resource_type != "Microsoft.Storage/storageAccounts"
    assert str(rid.parent) == f"{SA_ID}/blobServices/default"
    assert str(rid.parent.parent) == SA_ID


def test_ml_compute_parent_is_workspace() -> None:
    ws = f"{RG_ID}/providers/Microsoft.MachineLearningServices/workspaces/mlw"
    rid = parse_arm_id(f"{ws}/computes/cpu-1")
    assert rid.resource_type == "Microsoft.MachineLearningServices/workspaces/computes"
    assert str(rid.parent) == ws


@pytest.mark.parametrize("scope", [f"/subscriptions/{SUB}", RG_ID, SA_ID])
def test_role_assignment_at_three_scopes(scope: str) -> None:
    # GIVEN a role assignment attached to a subscription, an rg and a storage account
    text = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{RA}"
    # WHEN parsed
    rid = parse_arm_id(text)
    # THEN it is an extension resource whose scope is what it is attached to
    assert rid.resource_type == "Microsoft.Authorization/roleAssignments"
    assert rid.name == RA and rid.subscription_id == SUB
    assert str(rid.scope) == scope and rid.parent == rid.scope
    assert str(rid) == text


def test_tenant_level_role_definition_and_management_group() -> None:
    # GIVEN tenant-level ids  WHEN parsed  THEN no subscription, no parent
    rd = parse_arm_id(f"/providers/Microsoft.Authorization/roleDefinitions/{RA}")
    assert rd.subscription_id is None and rd.resource_type == "Microsoft.Authorization/roleDefinitions"
    assert rd.parent is None and rd.scope is None
    mg = parse_scope("/providers/Microsoft.Management/managementGroups/mg-root")
    assert mg.resource_type == "Microsoft.Management/managementGroups" and mg.name == "mg-root"
    ra = parse_arm_id("/providers/Microsoft.Management/managementGroups/mg-root"
                      f"/providers/Microsoft.Authorization/roleAssignments/{RA}")
    assert ra.scope == mg


def test_subscription_level_resource_without_rg() -> None:
    rid = parse_arm_id(f"/subscriptions/{SUB}/providers/Microsoft.Security/pricings/VirtualMachines")
    assert rid.resource_group is None and rid.scope is None
    assert rid.parent == ArmId(SUB, None, None)


def test_resource_named_providers_is_a_name() -> None:
    rid = parse_arm_id(f"{RG_ID}/providers/Microsoft.Web/sites/providers")
    assert rid.name == "providers" and rid.resource_type == "Microsoft.Web/sites"


# -- invalid ids ------------------------------------------------------------------------------
BAD = {
    "dotdot": f"{RG_ID}/../../providers/Microsoft.Storage/storageAccounts/sa",
    "dot": f"/subscriptions/{SUB}/./resourceGroups/rg",
    "query": f"{SA_ID}?api-version=2023-01-01",
    "fragment": f"{SA_ID}#x",
    "percent": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/sa%2F..%2Fx",
    "script": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/<script>",
    "space": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/my sa",
    "newline": f"{SA_ID}\n",
    "nbsp": f"{SA_ID}\u00a0x",
    "zero-width": f"{SA_ID}\u200b",
    "lone-surrogate": f"{SA_ID}\ud800",
    "too-long": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/" + "a" * 3000,
    "non-guid-sub": "/subscriptions/my-subscription/resourceGroups/rg",
    "missing-name": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts",
    "double-slash": f"/subscriptions/{SUB}//resourceGroups/rg",
    "trailing-slash": f"{SA_ID}/",
    "no-leading-slash": SA_ID[1:],
    "empty": "",
    "root": "/",
    "unknown-head": f"/tenants/{SUB}",
    "rg-trailing-dot": f"/subscriptions/{SUB}/resourceGroups/rg.",
    "rg-bad-char": f"/subscriptions/{SUB}/resourceGroups/rg@x",
    "rg-too-long": f"/subscriptions/{SUB}/resourceGroups/" + "r" * 91,
    "name-trailing-dot": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/sa.",
    "name-too-long": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/" + "n" * 261,
    "bad-namespace": f"{RG_ID}/providers/Storage/storageAccounts/sa",
    "bad-type": f"{RG_ID}/providers/Microsoft.Storage/storage-accounts/sa",
    "no-type": f"{RG_ID}/providers/Microsoft.Storage",
    "providers-without-namespace": f"{RG_ID}/providers",
    "rg-without-name": f"/subscriptions/{SUB}/resourceGroups",
    "junk-after-rg": f"{RG_ID}/foo/bar",
    "nested-extension": (f"{SA_ID}/providers/Microsoft.Authorization/locks/l"
                         "/providers/Microsoft.Authorization/roleAssignments/x"),
    "backslash": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/a\\b",
    "colon": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/a:b",
    "braces": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/{{storage-name}}",
    "pipe-semicolon": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/a;b|c",
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_invalid_ids_are_rejected(text: str) -> None:
    # GIVEN an injection-looking or malformed id  WHEN parsed  THEN InvalidArmId
    with pytest.raises(InvalidArmId) as info:
        parse_arm_id(text)
    assert info.value.reason == "invalid_resource_id"
    assert isinstance(info.value, InvalidEvent)
    assert len(str(info.value)) < 300          # never echoes a huge value


@pytest.mark.parametrize("value", [None, 42, b"/subscriptions", ["/"]])
def test_non_strings_are_rejected(value: object) -> None:
    with pytest.raises(InvalidArmId, match="must be a string"):
        parse_arm_id(value)  # type: ignore[arg-type]


def test_messages_are_specific() -> None:
    with pytest.raises(InvalidArmId, match="is not a GUID"):
        parse_arm_id("/subscriptions/nope")
    with pytest.raises(InvalidArmId, match="has no name"):
        parse_arm_id(BAD["missing-name"])
    with pytest.raises(InvalidArmId, match="percent-encoded"):
        parse_arm_id(BAD["percent"])


def test_tenant_level_non_management_group_is_not_a_scope() -> None:
    with pytest.raises(InvalidArmId, match="not scopes"):
        parse_scope(f"/providers/Microsoft.Authorization/roleDefinitions/{RA}")
    for scope in (f"/subscriptions/{SUB}", RG_ID, SA_ID):
        assert str(parse_scope(scope)) == scope


# -- containment ------------------------------------------------------------------------------
def test_containment_is_segment_wise_and_case_insensitive() -> None:
    # GIVEN an rg scope  THEN it contains its resources, not a sibling rg sharing a prefix
    assert scope_contains(RG_ID, SA_ID)
    assert scope_contains(RG_ID.upper().replace("SUBSCRIPTIONS", "subscriptions"), SA_ID)
    assert not scope_contains(RG_ID, SA_ID.replace("rg-a", "rg-ab"))
    assert not scope_contains(SA_ID, RG_ID)
    # a storage account contains its container; equal ids contain each other
    assert scope_contains(SA_ID, CONTAINER_ID)
    assert not scope_contains(CONTAINER_ID, SA_ID)
    assert scope_contains(SA_ID, SA_ID.replace("resourceGroups", "resourcegroups"))
    sa = parse_arm_id(SA_ID)
    assert sa.contains(sa)
    assert parse_arm_id(f"/subscriptions/{SUB}").contains(
        parse_arm_id(f"{SA_ID}/providers/Microsoft.Authorization/roleAssignments/{RA}"))


def test_scope_contains_is_false_for_illegal_input() -> None:
    assert scope_contains(RG_ID, f"{SA_ID}/../x") is False
    assert scope_contains("/", SA_ID) is False
    assert scope_contains(None, SA_ID) is False  # type: ignore[arg-type]


def test_segments_are_case_folded() -> None:
    assert parse_arm_id(SA_ID.replace("sa", "SA")).segments() == parse_arm_id(SA_ID).segments()
    assert parse_arm_id(RG_ID).segments() == ("SUBSCRIPTIONS", SUB.upper(), "RESOURCEGROUPS", "RG-A")


# -- string forms -----------------------------------------------------------------------------
def test_str_round_trip_and_repr() -> None:
    for text in (SA_ID, CONTAINER_ID, f"{SA_ID}/providers/Microsoft.Authorization/roleAssignments/{RA}"):
        rid = parse_arm_id(text)
        assert str(rid) == text and parse_arm_id(str(rid)) == rid
        assert repr(rid) == f"ArmId({text!r})"


def test_url_path_leaves_ascii_ids_unchanged() -> None:
    text = f"{RG_ID}/providers/Microsoft.Web/sites/app(1)_x~y.z@!$,="
    assert parse_arm_id(text).url_path() == text
    assert parse_arm_id(f"{RG_ID}/providers/Microsoft.Web/sites/a[1]").url_path().endswith("a%5B1%5D")


def test_mismatched_types_and_names_rejected() -> None:
    with pytest.raises(InvalidArmId):
        ArmId(SUB, "rg", "Microsoft.Storage", ("storageAccounts",), ())


# -- properties -------------------------------------------------------------------------------
_FORBIDDEN = set('/?#%\\<>*&:+"\';|{}`')
_name_char = st.characters(
    blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"),
    blacklist_characters="".join(_FORBIDDEN),
)
_names = st.text(_name_char, min_size=1, max_size=30).filter(lambda s: not s.endswith("."))
_rg_names = st.text(
    st.one_of(st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd")), st.sampled_from("_-.()")),
    min_size=1, max_size=90,
).filter(lambda s: not s.endswith(".") and all(c.isalnum() or c in "_-.()" for c in s))
_guids = st.uuids().map(str).flatmap(lambda g: st.sampled_from([g, g.upper()]))
_namespaces = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}(\.[A-Za-z][A-Za-z0-9]{0,8}){1,2}", fullmatch=True)
_types = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,12}", fullmatch=True).filter(
    lambda t: t.lower() != "providers")
_keyword = lambda word: st.sampled_from([word, word.lower(), word.upper()])  # noqa: E731


@st.composite
def arm_id_texts(draw: st.DrawFn) -> str:
    text = f"/{draw(_keyword('subscriptions'))}/{draw(_guids)}" if draw(st.booleans()) else ""
    if text and draw(st.booleans()):
        text += f"/{draw(_keyword('resourceGroups'))}/{draw(_rg_names)}"
    blocks = draw(st.integers(min_value=0 if text else 1, max_value=2))
    for _ in range(blocks):
        text += f"/{draw(_keyword('providers'))}/{draw(_namespaces)}"
        for _ in range(draw(st.integers(1, 3))):
            text += f"/{draw(_types)}/{draw(_names)}"
    return text


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arm_id_texts())
def test_property_str_reparses_to_equal_id(text: str) -> None:
    # GIVEN a grammatical id (any keyword case, non-ASCII names)
    assume(len(text) <= 2048)
    try:
        rid = parse_arm_id(text)
    except InvalidArmId as exc:
        # only a second extension level is refused (an Authorization resource under sub/rg
        # already counts as an extension)
        assert "one level of extension" in str(exc)
        return
    # THEN its canonical string re-parses to an equal id and is stable
    again = parse_arm_id(str(rid))
    assert again == rid and str(again) == str(rid)
    assert rid.segments() == tuple(fold(s) for s in text[1:].split("/"))
    assert rid.contains(again) and again.contains(rid)


_tokens = st.sampled_from(list("/abcSPR.-%?:\u00e9 ") + [
    "subscriptions", "providers", SUB, "resourceGroups", "Microsoft.Web", "sites"])


@settings(max_examples=500, deadline=None)
@given(st.lists(_tokens, max_size=20).map("".join))
def test_property_arbitrary_text_parses_or_raises_invalid_arm_id(text: str) -> None:
    # GIVEN id-ish text  THEN it parses (and round-trips) or raises InvalidArmId, nothing else
    try:
        rid = parse_arm_id(text)
    except InvalidArmId:
        return
    assert parse_arm_id(str(rid)) == rid


def test_contains_folds_case_as_arm_does_not_as_unicode_casefold_does():
    """ARM compares names with .NET OrdinalIgnoreCase (simple upper-case mapping per character):
    "rg-straße" is not "rg-strasse", the Kelvin sign is not "k"; plain case differences match."""
    from guardrails.model.arm_id import fold, parse_arm_id

    sub = "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/"
    assert not parse_arm_id(sub + "rg-strasse").contains(parse_arm_id(sub + "rg-straße"))
    assert not parse_arm_id(sub + "rg-keep").contains(parse_arm_id(sub + "rg-\u212aeep"))
    assert parse_arm_id(sub + "RG-Keep").contains(parse_arm_id(sub.upper() + "rg-keep/providers/Microsoft.Storage/"
                                                                           "storageAccounts/st1"))
    assert parse_arm_id(sub + "rg-Ærø").contains(parse_arm_id(sub + "RG-æRØ"))
    assert fold("ıd") == fold("ID")          # dotless i upper-cases to I in .NET as well
