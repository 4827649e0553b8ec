"""Event coverage (guardrails.coverage): the pure verdict on listed system topics and event
subscriptions, Event Grid's filter semantics, and what the sweep records over time."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from guardrails.coverage import (Coverage, Gap, WRITE_EVENT, assess, destination_for, subscription_expectation,
                                 transition, vault_expectation, workspace_expectation)
from guardrails.local.eventgrid_world import event_subscription, system_topic, vault_wiring, workspace_wiring
from guardrails.permissions import covered_operations, keyvault_event_types, ml_event_types
from tests.builders import SUB, key_vault, workspace

APP = f"/subscriptions/{SUB}/resourceGroups/rg-guardrails/providers/Microsoft.Web/sites/func-guardrails-x"
DEST = destination_for(APP)
OPS = covered_operations()
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
EXPECT = subscription_expectation(SUB, OPS)


def _assess(topics, subs_by_topic=None, expected=EXPECT):
    topics = list(topics)
    if subs_by_topic is None:
        subs_by_topic = {}
    return assess(expected, topics, {k.lower(): v for k, v in subs_by_topic.items()}, function_app_id=APP, now=NOW)


def _wired(**props):
    t = system_topic(SUB)
    return _assess([t], {t["id"]: [event_subscription(SUB, APP, **props)]})


def _with_filter(**filt):
    es = event_subscription(SUB, APP)
    es["properties"]["filter"].update(filt)
    t = system_topic(SUB)
    return _assess([t], {t["id"]: [es]})


def _codes(cov: Coverage) -> list[str]:
    return [g.code for g in cov.gaps]


def test_the_deployed_wiring_covers_the_subscription():
    cov = _wired()
    assert cov.covered and cov.gaps == () and cov.missing_operations == ()
    assert cov.event_subscription_id.endswith("/eventSubscriptions/guardrails-resource-events")
    assert cov.resource_id == f"/subscriptions/{SUB}"


def test_no_system_topic_for_the_subscription_is_a_gap_whatever_other_topics_exist():
    other_sub = system_topic("11111111-2222-4333-8444-555555555555")
    vault_topic = system_topic(SUB)
    vault_topic["properties"]["topicType"] = "Microsoft.KeyVault.vaults"
    for topics in ([], [other_sub], [vault_topic]):
        cov = _assess(topics)
        assert _codes(cov) == ["no_system_topic"], topics


def test_a_topic_without_an_event_subscription_to_this_app_is_a_gap():
    t = system_topic(SUB)
    elsewhere = event_subscription(SUB, APP.replace("func-guardrails-x", "func-other"))
    cov = _assess([t], {t["id"]: [elsewhere]})
    assert _codes(cov) == ["no_event_subscription"]
    assert "1 deliver elsewhere" in cov.gaps[0].detail
    assert _codes(_assess([t], {t["id"]: []})) == ["no_event_subscription"]


def test_a_webhook_to_anything_is_not_this_app():
    es = event_subscription(SUB, APP)
    es["properties"]["destination"] = {"endpointType": "WebHook",
                                       "properties": {"endpointBaseUrl": "https://example.net/api/events"}}
    t = system_topic(SUB)
    assert _codes(_assess([t], {t["id"]: [es]})) == ["no_event_subscription"]


def test_delivery_with_the_topics_identity_counts_and_ids_compare_case_insensitively():
    es = event_subscription(SUB, APP)
    dest = es["properties"].pop("destination")
    dest["properties"]["resourceId"] = dest["properties"]["resourceId"].upper()
    es["properties"]["deliveryWithResourceIdentity"] = {"identity": {"type": "SystemAssigned"}, "destination": dest}
    t = system_topic(SUB)
    assert _assess([t], {t["id"]: [es]}).covered


def test_not_provisioned_and_expired_are_gaps_a_future_expiry_is_not():
    assert _codes(_wired(provisioningState="Failed")) == ["not_provisioned"]
    assert _codes(_wired(provisioningState="AwaitingManualAction")) == ["not_provisioned"]
    assert _codes(_wired(expirationTimeUtc="2026-11-24T11:59:59.1234567Z")) == ["expired"]
    assert _wired(expirationTimeUtc="2026-11-25T00:00:00Z").covered
    assert _wired(expirationTimeUtc=None).covered


def test_event_types_without_resource_write_success_are_a_gap_none_listed_means_all():
    cov = _with_filter(includedEventTypes=["Microsoft.Resources.ResourceDeleteSuccess"])
    assert _codes(cov) == ["event_type_filtered"] and cov.missing_event_types == (WRITE_EVENT,)
    assert _with_filter(includedEventTypes=[]).covered
    assert _with_filter(includedEventTypes=None).covered
    assert _with_filter(includedEventTypes=[WRITE_EVENT.upper()]).covered


def test_subject_filters_that_narrow_the_subscription_are_gaps():
    assert _codes(_with_filter(subjectBeginsWith=f"/subscriptions/{SUB}/resourceGroups/rg-a")) == ["subject_filtered"]
    assert _codes(_with_filter(subjectEndsWith="stmlprod")) == ["subject_filtered"]
    assert _with_filter(subjectBeginsWith=f"/subscriptions/{SUB.upper()}").covered
    assert _with_filter(subjectBeginsWith="").covered


def test_an_operation_filter_dropping_covered_writes_names_them():
    cov = _wired(filter={"includedEventTypes": [WRITE_EVENT], "advancedFilters": [
        {"operatorType": "StringIn", "key": "data.operationName",
         "values": [op.upper() for op in OPS if "Storage" not in op]}]})
    assert _codes(cov) == ["operations_filtered"]
    assert cov.missing_operations == ("Microsoft.Storage/storageAccounts/write",)
    assert "Microsoft.Storage/storageAccounts/write" in cov.message()


@pytest.mark.parametrize("flt, missing", [
    ({"operatorType": "StringNotIn", "values": ["microsoft.keyvault/vaults/write"]}, ["Microsoft.KeyVault/vaults/write"]),
    ({"operatorType": "StringBeginsWith", "values": ["Microsoft.Storage/"]}, [o for o in OPS if "Storage" not in o]),
    ({"operatorType": "StringNotBeginsWith", "values": ["Microsoft.Authorization"]},
     ["Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleDefinitions/write"]),
    ({"operatorType": "StringEndsWith", "values": ["/write"]}, []),
    ({"operatorType": "StringNotEndsWith", "values": ["registries/write"]},
     [o for o in OPS if o.lower().endswith("registries/write")]),
    ({"operatorType": "StringContains", "values": ["MachineLearning"]}, [o for o in OPS if "MachineLearning" not in o]),
    ({"operatorType": "StringNotContains", "values": ["computes"]}, [o for o in OPS if "computes" in o]),
    ({"operatorType": "IsNotNull"}, []),
    ({"operatorType": "IsNullOrUndefined"}, OPS),
    ({"operatorType": "NumberIn", "values": [1]}, OPS),
])
def test_advanced_filter_operators_follow_event_grid(flt, missing):
    cov = _with_filter(advancedFilters=[{"key": "data.operationName", **flt}])
    assert list(cov.missing_operations) == missing
    assert _codes(cov) == (["operations_filtered"] if missing else [])


def test_advanced_filters_are_anded():
    cov = _with_filter(advancedFilters=[
        {"operatorType": "StringBeginsWith", "key": "data.operationName", "values": ["Microsoft.Storage", "Microsoft.KeyVault"]},
        {"operatorType": "StringNotIn", "key": "data.operationName", "values": ["Microsoft.KeyVault/vaults/write"]}])
    assert set(OPS) - set(cov.missing_operations) == {"Microsoft.Storage/storageAccounts/write"}


def test_filters_this_check_cannot_evaluate_are_gaps_not_passes():
    cov = _with_filter(advancedFilters=[{"operatorType": "StringIn", "key": "data.resourceProvider",
                                         "values": ["Microsoft.Storage"]}])
    assert _codes(cov) == ["unverified_filter"] and "data.resourceProvider" in cov.gaps[0].detail
    cov = _with_filter(advancedFilters=[{"operatorType": "StringMatchesRegex", "key": "data.operationName",
                                         "values": [".*"]}])
    assert _codes(cov) == ["unverified_filter"]


def test_an_event_type_advanced_filter_is_evaluated():
    ok = _with_filter(advancedFilters=[{"operatorType": "StringIn", "key": "eventType", "values": [WRITE_EVENT]}])
    assert ok.covered
    bad = _with_filter(advancedFilters=[{"operatorType": "StringNotIn", "key": "eventType", "values": [WRITE_EVENT]}])
    assert _codes(bad) == ["event_type_filtered"]


def test_any_one_covering_event_subscription_is_enough_else_the_closest_is_reported():
    t = system_topic(SUB)
    broken = event_subscription(SUB, APP, name="a-broken", provisioningState="Failed", expirationTimeUtc="2020-01-01T00:00:00Z")
    partial = event_subscription(SUB, APP, name="b-partial", operations=OPS[1:])
    good = event_subscription(SUB, APP, name="c-good")
    assert _assess([t], {t["id"]: [broken, partial, good]}).covered
    cov = _assess([t], {t["id"]: [broken, partial]})
    assert cov.event_subscription_id.endswith("b-partial") and _codes(cov) == ["operations_filtered"]


def test_garbage_in_the_listing_is_not_a_crash():
    t = system_topic(SUB)
    junk = [None, 3, {"id": 7}, {"properties": "x"}]
    assert _codes(_assess([*junk, t], {t["id"]: junk})) == ["no_event_subscription"]
    es = event_subscription(SUB, APP)
    es["properties"]["filter"] = {"advancedFilters": ["x", None, {"operatorType": None, "key": None}]}
    assert _codes(_assess([t], {t["id"]: [es]})) == ["unverified_filter"]


# ---- governed vaults and ML workspaces -----------------------------------------------------------
VAULT = key_vault()["id"]
WS = workspace()["id"]
KV_EXPECT = vault_expectation(VAULT, keyvault_event_types())
WS_EXPECT = workspace_expectation(WS, ml_event_types())


def _source(expected, wiring):
    topic, es = wiring
    return _assess([system_topic(SUB), topic], {topic["id"]: [es]}, expected=expected)


def test_a_governed_vault_is_covered_by_its_own_topic_to_keyvault_events():
    cov = _source(KV_EXPECT, vault_wiring(VAULT, APP))
    assert cov.covered and cov.resource_id == VAULT and cov.to_dict()["kind"] == "vault"
    assert cov.to_dict()["subscription_id"] == SUB
    # the subscription topic is no vault topic; resource_events is not where vault events go
    assert _codes(_assess([system_topic(SUB)], {}, expected=KV_EXPECT)) == ["no_system_topic"]
    topic, es = vault_wiring(VAULT, APP)
    es["properties"]["destination"]["properties"]["resourceId"] = destination_for(APP)     # resource_events
    assert _codes(_source(KV_EXPECT, (topic, es))) == ["no_event_subscription"]


def test_a_vault_subscription_missing_an_event_type_names_it_and_any_subject_filter_is_a_gap():
    types = keyvault_event_types()
    cov = _source(KV_EXPECT, vault_wiring(VAULT, APP, event_types=[t for t in types if "NearExpiry" not in t]))
    assert _codes(cov) == ["event_type_filtered"]
    assert set(cov.missing_event_types) == {t for t in types if "NearExpiry" in t}
    topic, es = vault_wiring(VAULT, APP)
    es["properties"]["filter"]["subjectBeginsWith"] = "prod-"          # secret names: some would be dropped
    assert _codes(_source(KV_EXPECT, (topic, es))) == ["subject_filtered"]
    es["properties"]["filter"] = {"advancedFilters": [{"operatorType": "StringIn", "key": "data.operationName",
                                                       "values": ["x"]}]}
    assert _codes(_source(KV_EXPECT, (topic, es))) == ["unverified_filter"]


def test_a_governed_workspace_is_covered_by_its_topic_and_a_narrowed_one_is_not():
    assert _source(WS_EXPECT, workspace_wiring(WS, APP)).covered
    topic, es = workspace_wiring(WS, APP)
    es["properties"]["filter"]["advancedFilters"] = [{"operatorType": "StringNotIn", "key": "eventType",
                                                      "values": ["Microsoft.MachineLearningServices.ModelRegistered"]}]
    cov = _source(WS_EXPECT, (topic, es))
    assert cov.missing_event_types == ("Microsoft.MachineLearningServices.ModelRegistered",)
    assert "Azure ML events of" in cov.message()


# ---- transitions over sweeps ---------------------------------------------------------------
GAP = Coverage(EXPECT, (Gap("no_event_subscription", "…"),))
OTHER_GAP = Coverage(EXPECT, (Gap("operations_filtered", "…"),), missing_operations=("Microsoft.Storage/storageAccounts/write",))
OK = Coverage(EXPECT, (), event_subscription_id="es")


def test_a_new_gap_notifies_a_lasting_one_is_recorded_without_notifying_a_changed_one_notifies():
    first = transition(None, GAP, "t1")
    assert (first.write_row, first.verdict, first.notify) == (True, "violation", True)
    again = transition(first.state, GAP, "t2")
    assert (again.write_row, again.verdict, again.notify) == (True, "violation", False)
    assert again.state["since"] == "t1"
    changed = transition(again.state, OTHER_GAP, "t3")
    assert (changed.write_row, changed.notify) == (True, True) and changed.state["since"] == "t1"


def test_closing_a_gap_writes_one_compliant_row_staying_covered_writes_none():
    gap = transition(None, GAP, "t1").state
    closed = transition(gap, OK, "t2")
    assert (closed.write_row, closed.verdict, closed.notify) == (True, "compliant", False)
    assert closed.state == {"covered": True, "signature": OK.signature(), "since": "t2"}
    stays = transition(closed.state, OK, "t3")
    assert not stays.write_row and stays.state["since"] == "t2"
    assert not transition(None, OK, "t1").write_row
    reopened = transition(closed.state, GAP, "t4")
    assert reopened.notify and reopened.state["since"] == "t4"


def test_the_message_names_the_gaps_and_no_secret_bearing_fields():
    es = event_subscription(SUB, APP, provisioningState="Failed")
    es["properties"]["destination"]["properties"]["endpointUrl"] = "https://x/api?code=SECRET-KEY"
    t = system_topic(SUB)
    cov = _assess([t], {t["id"]: [copy.deepcopy(es)]})
    text = cov.message() + repr(cov.to_dict())
    assert "not_provisioned" in text and "SECRET-KEY" not in text


# ---- the setting -----------------------------------------------------------------------------
def test_the_function_app_id_setting_takes_a_site_id_and_rejects_anything_else():
    from guardrails import settings as S
    from guardrails.errors import ConfigError

    assert S.Settings.from_env({S.FUNCTION_APP_ID: f" {APP}/ "}).function_app_id == APP
    assert S.Settings.from_env({}).function_app_id is None
    for bad in ("func-guardrails", f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x",
                f"{APP}/functions/resource_events", f"/subscriptions//resourceGroups/rg/providers/Microsoft.Web/sites/x"):
        with pytest.raises(ConfigError, match="GUARDRAILS_FUNCTION_APP_ID must be a function app's resource id"):
            S.Settings.from_env({S.FUNCTION_APP_ID: bad})
    assert destination_for(APP + "/") == APP + "/functions/resource_events"


# ---- the sweep summary keeps valid JSON however large the estate ------------------------------
def test_a_long_summary_list_is_cut_to_valid_json_that_says_how_much_was_left_out():
    import json

    from guardrails.adapters.sweep_tables import MAX_PROPERTY_CHARS, bounded_json

    subs = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(2000)]        # 2,000 subscriptions
    text = bounded_json(subs)
    kept = json.loads(text)
    assert len(text) <= MAX_PROPERTY_CHARS and kept[:-1] == subs[:len(kept) - 1]
    assert kept[-1] == f"… {2000 - (len(kept) - 1)} more" and len(kept) > 500
    coverage = [Coverage(subscription_expectation(s, OPS), (Gap("no_system_topic", "x" * 200),)).to_dict() for s in subs]
    assert json.loads(bounded_json(coverage, 5000))[-1].endswith("more")
    assert bounded_json(subs[:3]) == json.dumps(subs[:3], sort_keys=True)
    assert json.loads(bounded_json({"k": "v" * 100}, 50)).endswith("too long to keep")
    assert json.loads(bounded_json(["y" * 100], 50)) == ["… 1 more"]


def test_the_governed_source_settings_take_ids_of_their_type_only():
    from guardrails import settings as S
    from guardrails.errors import ConfigError

    s = S.Settings.from_env({S.GOVERNED_VAULT_IDS: f"{VAULT}, {VAULT.upper()}/", S.GOVERNED_ML_WORKSPACE_IDS: WS})
    assert s.governed_vaults == (VAULT, VAULT.upper()) and s.governed_ml_workspaces == (WS,)
    with pytest.raises(ConfigError, match="GUARDRAILS_GOVERNED_VAULT_IDS must list Microsoft.KeyVault/vaults"):
        S.Settings.from_env({S.GOVERNED_VAULT_IDS: WS})
    with pytest.raises(ConfigError, match="GUARDRAILS_GOVERNED_ML_WORKSPACE_IDS must list"):
        S.Settings.from_env({S.GOVERNED_ML_WORKSPACE_IDS: f"{WS}/computes/cpu"})


def test_the_swept_subscriptions_setting_takes_subscription_ids_only():
    from guardrails import settings as S
    from guardrails.errors import ConfigError

    sub = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
    # one subscription named twice (in another case) is one subscription, as first spelled
    assert S.Settings.from_env({S.SWEEP_SUBSCRIPTIONS: f" {sub} ,{sub.upper()}"}).sweep_subscriptions == (sub,)
    for bad in ("sub-prod", f"/subscriptions/{sub}", sub[:-1]):
        with pytest.raises(ConfigError, match="GUARDRAILS_SWEEP_SUBSCRIPTIONS: .* is not a subscription id"):
            S.Settings.from_env({S.SWEEP_SUBSCRIPTIONS: f"{sub},{bad}"})
