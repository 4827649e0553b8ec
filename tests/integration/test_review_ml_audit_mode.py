"""An endpoint write is made only of the findings allowed to act: an audit-mode model-registry
policy (or an enforce one the breaker turned down) never has its traffic fix written because
another policy's fix on the same endpoint was permitted. Azurite + the HTTPS emulator; the
assertions are on the endpoint the emulator holds afterwards and on the stored audit row."""

from __future__ import annotations

import json

import pytest
import yaml

from guardrails.local.ml_emulator import model_version, online_deployment, online_endpoint
from guardrails.policy.loader import load_documents
from tests import builders as b
from tests.integration.test_ml_guardrail import EP, PROD, TAGS, WS

pytestmark = pytest.mark.integration


def two_policies(tmp_path, strict: dict, lenient: dict):
    """``model-registry-strict`` (serves only stage ``production``) beside the shipped
    ``model-registry`` that also allows ``validated``, each with ``changes``."""
    shipped = yaml.safe_load(open("metadata/jobs/model-registry.yaml"))
    docs = [("strict.yaml", {**shipped, "id": "model-registry-strict", **strict}),
            ("model-registry.yaml", {**shipped, "production_stages": ["production", "validated"], **lenient})]
    d = tmp_path / "meta"
    d.mkdir(exist_ok=True)
    for name, doc in docs:
        (policy,) = load_documents([(name, doc)])
        (d / name).write_text(json.dumps(policy.to_document()))
    return d


def world(*, auth_mode: str = "Key"):
    """blue serves a production version, green (20 %) a validated one: only the strict policy
    finds green; the endpoint uses key auth, which both policies find."""
    good = model_version(WS, "fraud-clf", 7, tags=TAGS, stage="production")
    validated = model_version(WS, "fraud-clf", 8, tags=TAGS, stage="validated")
    ep = online_endpoint(WS, "fraud-scoring", traffic={"blue": 80, "green": 20}, auth_mode=auth_mode, tags=PROD)
    return [good, validated, ep, online_deployment(EP, "blue", model="azureml:fraud-clf:7"),
            online_deployment(EP, "green", model="azureml:fraud-clf:8")]


def outcomes(row) -> dict[tuple[str, str], str]:
    return {(v.policy.split("@")[0], v.rule): v.outcome for v in row.violations}


def test_an_audit_mode_policys_traffic_finding_is_not_written_with_an_enforced_auth_fix(harness, tmp_path):
    # GIVEN a stricter policy trialled in audit mode, and the enforce policy opted in to endpoint fixes
    h = harness(world(), extra_metadata=[two_policies(tmp_path, {"mode": "audit"}, {"endpoint_action": "enforce"})])
    # WHEN the endpoint is written
    row = h.deliver(b.write_event(EP))
    # THEN only the enforce policy's fix is written: authMode changes, green keeps its traffic
    props = h.resource(EP)["properties"]
    assert props["authMode"] == "AADToken"
    assert props["traffic"] == {"blue": 80, "green": 20}
    (put,) = h.writes()
    assert put["body"]["properties"]["traffic"] == {"blue": 80, "green": 20}
    # AND the audit row says what happened: the audit policy's finding was not acted on
    got = outcomes(row)
    assert got[("model-registry", "endpoint-auth-mode")] == "remediated"
    assert got[("model-registry-strict", "production-stage")] == "dry_run"
    stored = next(r for r in h.stored_rows() if r.resource_id.lower() == EP.lower())
    assert outcomes(stored) == got
    assert "traffic" not in next(v.message for v in row.violations if v.outcome == "remediated")


def test_an_enforce_policy_turned_down_by_its_breaker_has_no_traffic_fix_written(harness, tmp_path):
    # GIVEN two enforce policies; the strict one may act once per hour and spends it on a registration
    untagged = model_version(WS, "scratch", 1, tags={"owner": "ds_team@contoso.com"})
    meta = two_policies(tmp_path, {"breaker": {"max_actions": 1, "window_seconds": 3600}},
                        {"endpoint_action": "enforce"})
    h = harness([*world(), untagged], extra_metadata=[meta])
    assert h.deliver(b.write_event(untagged["id"])).verdict == "remediated"
    h.emu.clear_requests()
    # WHEN the endpoint is written
    row = h.deliver(b.write_event(EP))
    # THEN the lenient policy's auth fix is written, the strict policy's traffic fix is not
    props = h.resource(EP)["properties"]
    assert (props["authMode"], props["traffic"]) == ("AADToken", {"blue": 80, "green": 20})
    got = outcomes(row)
    assert got[("model-registry", "endpoint-auth-mode")] == "remediated"
    assert got[("model-registry-strict", "production-stage")] == "dry_run"
    assert row.reason == "circuit_open"


def test_the_permitted_policys_traffic_fix_is_still_written(harness, tmp_path):
    # GIVEN the strict policy enforcing, the lenient one in audit: green is the strict policy's to fix
    h = harness(world(auth_mode="AADToken"),
                extra_metadata=[two_policies(tmp_path, {}, {"mode": "audit", "endpoint_action": "enforce"})])
    row = h.deliver(b.write_event(EP))
    assert row.verdict == "remediated"
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 100, "green": 0}
    assert outcomes(row) == {("model-registry-strict", "production-stage"): "remediated"}


def auth_policies(tmp_path, first: list[str], second: list[str]):
    """Two enforcing policies opted in to endpoint fixes, allowing ``first`` and ``second`` modes."""
    return two_policies(tmp_path, {"endpoint_action": "enforce", "endpoint_auth_modes": first},
                        {"endpoint_action": "enforce", "endpoint_auth_modes": second})


def auth_records(row) -> dict[str, tuple[str, object]]:
    return {v.policy.split("@")[0]: (v.outcome, v.after) for v in row.violations if v.rule == "endpoint-auth-mode"}


@pytest.mark.parametrize("first, second", [(["AADToken"], ["AMLToken", "AADToken"]),
                                           (["AMLToken", "AADToken"], ["AADToken"])])
def test_two_enforcing_policies_write_an_auth_mode_both_allow_and_both_records_name_it(harness, tmp_path,
                                                                                      first, second):
    # GIVEN key auth, and two enforcing policies whose first choices differ but which share AADToken
    h = harness(world(auth_mode="Key"), extra_metadata=[auth_policies(tmp_path, first, second)])
    # WHEN the endpoint is written
    row = h.deliver(b.write_event(EP))
    # THEN the value written is one both policies allow, and each record names that value
    assert h.resource(EP)["properties"]["authMode"] == "AADToken"
    assert auth_records(row) == {"model-registry-strict": ("remediated", "AADToken"),
                                 "model-registry": ("remediated", "AADToken")}
    stored = next(r for r in h.stored_rows() if r.resource_id.lower() == EP.lower())
    assert auth_records(stored) == auth_records(row)


def test_two_enforcing_policies_with_no_common_auth_mode_write_nothing_and_say_so(harness, tmp_path):
    # GIVEN key auth, one policy allowing only AADToken and another only AMLToken
    h = harness(world(auth_mode="Key"), extra_metadata=[auth_policies(tmp_path, ["AADToken"], ["AMLToken"])])
    # WHEN the endpoint is written
    row = h.deliver(b.write_event(EP))
    # THEN no authMode is written (either value would break the other policy), and the row says why
    assert h.resource(EP)["properties"]["authMode"] == "Key"
    assert all(w["body"]["properties"]["authMode"] == "Key" for w in h.writes())
    # AND the strict policy's other finding (green serves a validated version) is still fixed
    assert h.resource(EP)["properties"]["traffic"] == {"blue": 100, "green": 0}
    assert outcomes(row)[("model-registry-strict", "production-stage")] == "remediated"
    assert {p: o for p, (o, _a) in auth_records(row).items()} == {"model-registry-strict": "failed",
                                                                  "model-registry": "failed"}
    assert row.verdict == "failed" and row.reason == "conflicting_policies"
    assert all("no common authMode" in v.message for v in row.violations if v.rule == "endpoint-auth-mode")
