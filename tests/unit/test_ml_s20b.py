"""Review s20b, pure parts: the key of one run's completion (the same whichever event announces
it), which versions may no longer serve production, and the model-reference module split out of
``ml_guardrail`` (same names, same behaviour)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from guardrails import ml_guardrail, ml_refs
from guardrails.ml_signals import run_completion_key, settle_claim
from guardrails.ml_serving import unfit_policies
from guardrails.errors import StoreError
from guardrails.model.events import parse_envelope
from guardrails.model.ml_events import parse_ml_event
from guardrails.policy.model_rules import DEFAULT_RULES, RULES, RULE_SERVING_ENDPOINTS

WS = ("/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg-ml/providers/"
      "Microsoft.MachineLearningServices/workspaces/mlw")
TAGS = {"data_version": "d1", "git_sha": "abc", "metric_summary": "auc=0.9", "owner": "o@contoso.com"}


def run_event(kind: str, run_id: str = "run_1", topic: str = WS, **extra):
    raw = {"id": f"{kind}-{run_id}", "topic": topic, "subject": "x", "eventType": f"Microsoft.MachineLearningServices.{kind}",
           "eventTime": "2026-11-24T09:00:00Z", "dataVersion": "", "metadataVersion": "1",
           "data": {"runId": run_id, "runTags": {"promotion_candidate": "true"}, **extra}}
    return parse_ml_event(parse_envelope(raw))


def test_both_announcements_of_one_completion_share_one_key():
    completed = run_event("RunCompleted")
    changed = run_event("RunStatusChanged", runStatus="Completed")
    assert run_completion_key(completed) == run_completion_key(changed)
    assert run_completion_key(completed) == run_completion_key(run_event("RunCompleted", topic=WS.upper()))
    assert run_completion_key(completed) != run_completion_key(run_event("RunCompleted", run_id="run_2"))
    assert run_completion_key(completed) != run_completion_key(run_event("RunCompleted", topic=WS + "2"))


def test_settling_a_run_claim_never_raises():
    class Broken:
        def complete(self, *a, **kw):
            raise StoreError("down")

        def release(self, *a, **kw):
            raise StoreError("down")

    settle_claim(Broken(), "k", object(), "violation")
    settle_claim(Broken(), "k", object(), None)


@pytest.mark.parametrize("props, unfit", [
    ({"stage": "production", "tags": TAGS}, False),
    ({"stage": "Production", "tags": TAGS}, False),
    ({"stage": "validated", "tags": TAGS}, True),         # only when the policy allows it
    ({"stage": "candidate", "tags": TAGS}, True),
    ({"tags": TAGS}, True),
    ({"stage": "production", "tags": {**TAGS, "git_sha": ""}}, True),
    ({"stage": "production", "tags": TAGS, "isArchived": True}, True),
])
def test_a_version_unfit_to_serve_production(props, unfit):
    policy = SimpleNamespace(rules=DEFAULT_RULES, ref="model-registry@1")
    assert bool(unfit_policies([policy], "7", props)) is unfit


def test_the_serving_endpoints_rule_is_in_the_table():
    assert RULE_SERVING_ENDPOINTS == "serving-endpoints" and RULE_SERVING_ENDPOINTS in RULES


def test_model_references_moved_keep_their_names_where_they_were():
    assert ml_guardrail.parse_model_reference is ml_refs.parse_model_reference
    assert ml_guardrail.ModelReference is ml_refs.ModelReference
    assert ml_guardrail.API_VERSION == ml_refs.API_VERSION == "2025-09-01"
    assert ml_guardrail.MODEL_VERSION_TYPES <= ml_guardrail.ML_TYPES
