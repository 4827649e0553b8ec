"""Model registry rules (pure): tags, stage order, explicit versions."""

import pytest

from guardrails.policy.model_rules import (
    DEFAULT_RULES, ModelRegistryRules, evaluate_deployment, evaluate_promotion, evaluate_registration,
    is_explicit_version, missing_tags,
)

TAGS = {"data_version": "2026-11-01", "git_sha": "3f2a9c1", "metric_summary": "auc=0.93", "owner": "ds_team"}


def rules_of(findings):
    return [f.rule for f in findings]


def test_the_seed_rule_table_is_the_default():
    assert DEFAULT_RULES.stages == ("candidate", "validated", "production")
    assert DEFAULT_RULES.required_tags == ("data_version", "git_sha", "metric_summary", "owner")
    assert DEFAULT_RULES.explicit_version_stages == ("production",)


@pytest.mark.parametrize("from_stage, to_stage", [(None, "candidate"), ("candidate", "validated"),
                                                  ("validated", "production"), ("Validated", "PRODUCTION")])
def test_one_step_forward_with_tags_and_a_version_is_allowed(from_stage, to_stage):
    assert evaluate_promotion(DEFAULT_RULES, version="7", from_stage=from_stage, to_stage=to_stage, tags=TAGS) == []


@pytest.mark.parametrize("from_stage, to_stage", [(None, "validated"), ("candidate", "production"),
                                                  ("production", "validated"), ("validated", "validated"),
                                                  ("production", "production")])
def test_skipping_or_going_back_breaks_stage_order(from_stage, to_stage):
    (f,) = evaluate_promotion(DEFAULT_RULES, version="7", from_stage=from_stage, to_stage=to_stage, tags=TAGS)
    assert f.rule == "stage-order" and to_stage.lower() in f.message


def test_unknown_stages_are_named():
    found = evaluate_promotion(DEFAULT_RULES, version="7", from_stage="staging", to_stage="prod", tags=TAGS)
    assert rules_of(found) == ["known-stage", "known-stage"]
    assert "'prod'" in found[0].message and "'staging'" in found[1].message


def test_each_missing_or_blank_tag_is_named():
    tags = {**TAGS, "owner": "  "}
    del tags["git_sha"]
    found = evaluate_promotion(DEFAULT_RULES, version=3, from_stage="candidate", to_stage="validated", tags=tags)
    assert rules_of(found) == ["required-tags", "required-tags"]
    assert "git_sha" in found[0].message and "owner" in found[1].message
    assert missing_tags(DEFAULT_RULES, None) == DEFAULT_RULES.required_tags
    assert evaluate_registration(DEFAULT_RULES, tags=TAGS) == []


@pytest.mark.parametrize("version, explicit", [
    ("7", True), (7, True), ("1.2.0", True), (0, True), ("latest", False), ("LATEST", False), (" latest ", False),
    ("*", False), ("fraud-clf@latest", False), ("azureml:fraud-clf:latest", False), ("", False), (None, False),
    (True, False), (-1, False),
])
def test_explicit_versions(version, explicit):
    assert is_explicit_version(DEFAULT_RULES, version) is explicit


def test_production_never_takes_latest_but_earlier_stages_may():
    (f,) = evaluate_promotion(DEFAULT_RULES, version="latest", from_stage="validated", to_stage="production", tags=TAGS)
    assert f.rule == "explicit-version" and "latest" in f.message
    assert evaluate_promotion(DEFAULT_RULES, version="latest", from_stage="candidate", to_stage="validated", tags=TAGS) == []
    assert rules_of(evaluate_deployment(DEFAULT_RULES, version=None, stage="production")) == ["explicit-version"]


def test_a_custom_table_is_honoured():
    rules = ModelRegistryRules(stages=("dev", "prod"), required_tags=("owner",), explicit_version_stages=("prod",),
                               floating_versions=("latest", "current"))
    assert evaluate_promotion(rules, version="4", from_stage="dev", to_stage="prod", tags={"owner": "x"}) == []
    assert rules_of(evaluate_promotion(rules, version="current", from_stage="dev", to_stage="prod",
                                       tags={})) == ["required-tags", "explicit-version"]
