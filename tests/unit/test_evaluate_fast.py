"""The filter-only entry point ``CompiledPolicySet.violations`` and ``evaluate`` run the same
compiled predicates: on a generated corpus (odd spellings, nulls, absent keys, other key cases,
non-object intermediates, selectors, exemptions, mode off) both report the same rules, and the
fast reader agrees with ``get_path``."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

from guardrails.model.resource import ResourceSnapshot, get_path
from guardrails.policy.evaluate import _reader, compile_policies
from guardrails.policy.loader import load_directory, load_documents

from bench import resources as R

BASELINE = Path(__file__).resolve().parents[2] / "metadata"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"

EXTRA = [
    {"id": "scoped-storage", "version": 2, "description": "d", "mode": "audit",
     "selector": {"resource_types": ["microsoft.storage/STORAGEACCOUNTS"], "subscriptions": [SUB.upper()],
                  "resource_groups": ["RG-1"], "tags": {"Environment": "prod"}},
     "rules": [{"id": "pna-in", "property": "properties.publicNetworkAccess",
                "expect": {"in": ["Disabled", "SecuredByPerimeter"]}, "action": {"type": "notify"}},
               {"id": "blob-ne", "property": "Properties.AllowBlobPublicAccess",
                "expect": {"not_equals": True}, "action": {"type": "notify"}},
               {"id": "tls", "property": "properties.minimumTlsVersion",
                "expect": {"not_in": ["TLS1_0", "TLS1_1"]}, "action": {"type": "notify"}},
               {"id": "top", "property": "location", "expect": {"equals": "westeurope"},
                "action": {"type": "notify"}}],
     "exemptions": [{"scope": f"/subscriptions/{SUB}/resourceGroups/rg-1", "reason": "r",
                     "expires": "2027-01-01T00:00:00Z", "owner": "a@b.c"}]},
    {"id": "off-storage", "version": 1, "description": "d", "mode": "off",
     "selector": {"resource_types": ["Microsoft.Storage/storageAccounts"]},
     "rules": [{"id": "x", "property": "properties.publicNetworkAccess", "expect": {"equals": "Disabled"},
                "action": {"type": "notify"}}]},
]

ODD = ["Disabled", "disabled", "DISABLED", "Enabled", "SecuredByPerimeter", None, True, False, "true",
       "False", "TRUE", 0, 1, 1.0, [], {}, ["Disabled"], {"a": 1}, "TLS1_0", "tls1_2", "westeurope"]


def _mutate(rng: random.Random, body: dict) -> dict:
    props = body.get("properties")
    if isinstance(props, dict) and props:
        for _ in range(rng.randint(0, 3)):
            key = rng.choice(sorted(props))
            choice = rng.random()
            if choice < 0.3:
                props[key] = rng.choice(ODD)
            elif choice < 0.5:
                props[key.upper() if rng.random() < 0.5 else key.lower()] = props.pop(key)
            elif choice < 0.6:
                del props[key]
        if rng.random() < 0.1:
            props[rng.choice(["publicNetworkAccess", "minimumTlsVersion", "allowBlobPublicAccess"])] = rng.choice(ODD)
        if rng.random() < 0.05:
            props["properties"] = rng.choice([None, "x", {"enableNodePublicIp": rng.choice(ODD)}])
    r = rng.random()
    if r < 0.05:
        body["properties"] = rng.choice([None, "text", [1], {}])
    elif r < 0.1:
        body["Properties"] = body.pop("properties", {})
    if rng.random() < 0.2:
        body["tags"] = rng.choice([None, "x", {"ENVIRONMENT": "prod"}, {"environment": "Prod"}, {"environment": "prod"}])
    if rng.random() < 0.3:
        body["id"] = body["id"].replace(body["id"].split("/")[2], SUB).replace(
            body["id"].split("/")[4], rng.choice(["rg-1", "RG-1", "rg-2"]))
    if rng.random() < 0.05:
        body["type"] = body["type"].upper()
    return body


def _corpus(n: int = 3000) -> list[dict]:
    rng = random.Random(7)
    out = [_mutate(rng, b) for b in R.generate(n, seed=11)]
    out.append({"id": "/subscriptions/x", "type": R.STORAGE})
    out.append({"type": "Microsoft.MachineLearningServices/workspaces/computes",
                "id": f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/x/y/z",
                "properties": {"properties": {"EnableNodePublicIP": "false"}}})
    out.append({"type": "Microsoft.MachineLearningServices/workspaces/computes", "id": "c",
                "properties": {"properties": None}})
    out.append({"type": "Unknown/type", "id": "u"})
    return out


def _compiled():
    policies = list(load_directory(BASELINE)) + load_documents([(d["id"], d) for d in EXTRA])
    return compile_policies(policies)


def test_violations_and_evaluate_agree_on_generated_corpus():
    compiled = _compiled()
    seen = 0
    for body in _corpus():
        snap = ResourceSnapshot(body["id"], body["type"], body)
        full = [(r.policy.ref, r.rule.id) for r in compiled.evaluate(snap, now=NOW)]
        fast = list(compiled.violations(body, body["type"]))
        assert fast == full, body
        seen += len(full)
        for sub, rg in ((SUB, "rg-1"), ("other", "rg-1"), (None, "RG-1")):
            full = [(r.policy.ref, r.rule.id) for r in compiled.evaluate(snap, now=NOW, subscription_id=sub,
                                                                       resource_group=rg)]
            assert list(compiled.violations(body, body["type"], sub, rg, body["id"])) == full
    assert seen > 1000


def test_evaluate_results_match_the_reader_and_the_defaults():
    compiled = _compiled()
    for body in _corpus(800):
        snap = ResourceSnapshot(body["id"], body["type"], body)
        for res in compiled.evaluate(snap, now=NOW):
            raw = get_path(body, res.rule.property, None)
            assert res.present is (raw is not None)
            if raw is not None:
                assert res.before == raw


def test_reader_is_get_path():
    paths = ["properties.publicNetworkAccess", "properties.properties.enableNodePublicIp", "location",
             "Properties.AllowBlobPublicAccess", "properties.minimumTlsVersion"]
    readers = {p: _reader(p) for p in paths}
    for body in _corpus(800):
        for p, read in readers.items():
            assert read(body) == get_path(body, p, None) or read(body) is get_path(body, p, None)


def test_explicit_null_and_other_case_keys():
    compiled = _compiled()
    st = "Microsoft.Storage/storageAccounts"
    base = {"id": "/subscriptions/s/resourceGroups/g/providers/p/t/n", "type": st}
    cases = [
        ({"publicNetworkAccess": None, "allowBlobPublicAccess": None}, {"public-network-access-disabled"}),
        ({"PublicNetworkAccess": "disabled", "ALLOWBLOBPUBLICACCESS": "TRUE"}, {"blob-public-access-off"}),
        ({"publicNetworkAccess": None, "PublicNetworkAccess": "Disabled"}, {"public-network-access-disabled"}),
        ({"publicnetworkaccess": "Disabled"}, set()),
        ({}, {"public-network-access-disabled"}),
    ]
    for props, want in cases:
        body = dict(base, properties=props)
        got = {rule for _, rule in compiled.violations(body, st)}
        assert got == want, props
        snap = ResourceSnapshot(body["id"], st, body)
        assert {r.rule.id for r in compiled.evaluate(snap, now=NOW)} == want


def test_violations_many_agrees_with_violations_one_by_one():
    from guardrails.policy.evaluate import compile_policies
    from guardrails.policy.loader import load_directory
    from guardrails.sync import metadata_dirs
    from bench.resources import generate

    compiled = compile_policies(load_directory(*metadata_dirs()))
    resources = generate(2000, seed=11)
    one = [(r["id"], tuple(compiled.violations(r, r["type"]))) for r in resources]
    many = {r["id"]: tuple(found) for r, found in compiled.violations_many(resources)}
    assert many == {rid: found for rid, found in one if found}
