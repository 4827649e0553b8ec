"""The filter-only entry point ``CompiledPolicySet.violations`` and ``evaluate`` run the same
compiled predicates: on a generated corpus (odd spellings, nulls, absent keys, other key cases,
non-object intermediates, selectors, exemptions, mode off) both report the same rules, and the
fast reader agrees with ``get_path``."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

from guardrails.model.resource import ResourceSnapshot, get_path
from guardrails.policy.compiled import _reader
from guardrails.policy.evaluate import compile_policies
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
        ({"publicNetworkAccess": None, "allowBlobPublicAccess": None},
         {"public-network-access-disabled", "blob-public-access-off"}),
        ({"PublicNetworkAccess": "disabled", "ALLOWBLOBPUBLICACCESS": "TRUE"}, {"blob-public-access-off"}),
        ({"publicNetworkAccess": None, "PublicNetworkAccess": "Disabled", "allowBlobPublicAccess": False},
         {"public-network-access-disabled"}),
        ({"publicnetworkaccess": "Disabled", "allowblobpublicaccess": False}, set()),
        ({"publicnetworkaccess": "Disabled"}, {"blob-public-access-off"}),
        ({}, {"public-network-access-disabled", "blob-public-access-off"}),
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


def test_violation_pairs_and_violations_many_agree_with_violations_on_the_corpus():
    """The generated sweep loop (every type inlined in one function) reports exactly what
    ``violations`` reports type by type: odd spellings of the type, unknown, missing and
    non-string types, nulls, other key cases, non-object intermediates, a scoped policy."""
    compiled = _compiled()
    corpus = _corpus()
    corpus += [{"id": "no-type", "properties": {}}, {"id": "int-type", "type": 7},
               {"id": "lower", "type": R.STORAGE.lower(), "properties": {"publicNetworkAccess": "Enabled"}}]
    one = [(body, tuple(compiled.violations(body, body["type"]) if isinstance(body.get("type"), str) else ()))
           for body in corpus]
    assert [(b["id"], f) for b, f in compiled.violations_many(corpus)] == [(b["id"], f) for b, f in one if f]
    assert compiled.violation_pairs(corpus) == [(b["id"], key) for b, f in one for key in f]
    assert any(key[1] == "pna-in" for _id, key in compiled.violation_pairs(corpus))   # the scoped policy


def _many_rules_policy(n: int) -> dict:
    props = ["publicNetworkAccess", "allowBlobPublicAccess", "minimumTlsVersion", "supportsHttpsTrafficOnly",
             "isHnsEnabled", "allowSharedKeyAccess", "accessTier", "dnsEndpointType", "defaultToOAuthAuthentication",
             "allowCrossTenantReplication", "largeFileSharesState"]
    return {"id": "many", "version": 1, "description": "d", "mode": "audit",
            "selector": {"resource_types": [R.STORAGE], "tags": {"environment": "prod"}},
            "rules": [{"id": f"r{i}", "property": f"properties.{props[i % len(props)]}",
                       "expect": {"equals": ["Disabled", False, "TLS1_2", True][i % 4]},
                       "action": {"type": "notify"}} for i in range(n)]}


def test_more_rules_than_the_precomputed_tables_take_the_list_path_in_order():
    """Past ``_MASK_RULES`` rules for one type the result is a list built in policy then rule
    order; a tag selector still drops the policy's rules when the tags do not match."""
    from guardrails.policy.codegen import _MASK_RULES

    policies = list(load_directory(BASELINE)) + load_documents([("many", _many_rules_policy(_MASK_RULES + 3))])
    compiled = compile_policies(policies)
    corpus = _corpus(1500)
    for body in corpus:
        snap = ResourceSnapshot(body["id"], body["type"], body)
        full = [(r.policy.ref, r.rule.id) for r in compiled.evaluate(snap, now=NOW)]
        assert list(compiled.violations(body, body["type"])) == full, body
    one = [(b["id"], k) for b in corpus for k in compiled.violations(b, b["type"])]
    assert compiled.violation_pairs(corpus) == one
    prod = [b for b in corpus if b["type"] == R.STORAGE and isinstance(b.get("tags"), dict)
            and b["tags"].get("environment") == "prod"]
    assert prod and any(k[0] == "many@1" for b in prod for k in compiled.violations(b, b["type"]))
    other = [b for b in corpus if b["type"] == R.STORAGE and isinstance(b.get("tags"), dict)
             and b["tags"].get("environment") not in ("prod", None)]
    assert other and not any(k[0] == "many@1" for b in other for k in compiled.violations(b, b["type"]))


def test_the_length_filtered_absent_key_check_is_the_full_scan():
    """``_nocase_ascii`` skips keys of another length unlowered; it answers as ``_nocase``
    (a key in any case, the Kelvin sign lowering to ``k``, U+0130, non-string keys)."""
    from guardrails.policy.codegen import _nocase, _nocase_ascii

    keys = ["publicNetworkAccess", "PUBLICNETWORKACCESS", "publicNetworkAcce\u212a\u212a".replace("\u212a\u212a", "ss"),
            "publicnetwor\u212aaccess", "publ\u0130cnetworkaccess", "other", "", "publicNetworkAccessX"]
    for low in ("publicnetworkaccess", "k", "other", "x"):
        for picked in range(1 << len(keys)):
            obj = {k: 1 for i, k in enumerate(keys) if picked >> i & 1}
            assert _nocase_ascii(low, obj) == _nocase(low, obj), (low, obj)
    assert _nocase_ascii("k", {"\u212a": 1}) is False and _nocase("k", {"\u212a": 1}) is False
    assert _nocase_ascii("ab", {("a", "b"): 1, 3: 2}) is False        # unsure: the general path


def _reference(policies, body: dict) -> list[tuple[str, str]]:
    """The documented semantics, read the slow way: the value at the rule's path (keys in any
    case, ``get_path``), the catalogue default for an absent or null one, the operator's predicate;
    a rule on a property the catalogue says this resource does not have (``applies_when``) is skipped."""
    from guardrails.model.policy import Policy
    from guardrails.model.resource import lookup_type
    from guardrails.policy.operators import compile_expect

    out = []
    rtype = body.get("type")
    for p in policies:
        if not isinstance(p, Policy) or p.mode in ("off", "shadow") or not isinstance(rtype, str):
            continue
        if rtype.lower() not in {t.lower() for t in p.selector.resource_types}:
            continue
        rt = lookup_type(rtype)
        defaults = {k.lower(): v for k, v in (rt.defaults if rt else {}).items()}
        when = {k.lower(): v for k, v in (rt.applies_when if rt else {}).items()}
        for rule in p.rules:
            cond = when.get(rule.property.lower())
            if cond is not None and str(get_path(body, cond[0], "")).lower() not in cond[1]:
                continue
            raw = get_path(body, rule.property, None)
            value = defaults.get(rule.property.lower()) if raw is None else raw
            if not compile_expect(rule.expect)(value):
                out.append((p.ref, rule.id))
    return out


def test_the_generated_checks_are_the_documented_semantics_while_they_learn_absent_keys():
    """The baseline (no selectors) on the mutated corpus, in order: the checks remember the keys
    of objects proven not to hold a property in any case (``_learn``), and a later object with
    the property in another case among known keys is still read, not defaulted."""
    policies = list(load_directory(BASELINE))
    compiled = compile_policies(policies)
    corpus = _corpus(2000)
    for body in corpus:
        assert list(compiled.violations(body, body["type"])) == _reference(policies, body), body
    assert compiled.violation_pairs(corpus) == [(b.get("id"), k) for b in corpus for k in _reference(policies, b)]
    # the sets are full of this corpus's keys now; the same keys plus the property in another case
    st, known = R.STORAGE, {"provisioningState": "Succeeded", "minimumTlsVersion": "TLS1_2", "accessTier": "Hot"}
    for props in ({"PUBLICNETWORKACCESS": "Disabled", "AllowBlobPublicAccess": False},
                  {"publicnetworkaccess": "Enabled", "ALLOWBLOBPUBLICACCESS": "true"}):
        for _ in range(2):                      # the first pass learns `known`; the second is decided by it
            body = {"id": "/subscriptions/s/resourceGroups/g/providers/p/t/n", "type": st,
                    "properties": dict(known, **props)}
            assert list(compiled.violations(body, st)) == _reference(policies, body)
            assert compiled.violation_pairs([body]) == [(body["id"], k) for k in _reference(policies, body)]
            compiled.violations({"id": "x", "type": st, "properties": dict(known)}, st)


def test_what_the_checks_remember_is_bounded_and_only_exact_strings():
    from guardrails.policy import codegen as E

    known: set = set()
    assert E._learn(known, "publicnetworkaccess", {"a": 1, "b": 2, 3: 4}) is False and known == set()  # unsure
    assert E._learn(known, "publicnetworkaccess", {"PublicNetworkAccess": 1, "x": 2}) is False and known == set()

    class Str(str):
        pass

    assert E._learn(known, "publicnetworkaccess", {"a": 1, Str("b"): 2}) is True and known == {"a"}
    too_many = {f"k{i}": i for i in range(E._KNOWN_KEYS)}
    assert E._learn(known, "publicnetworkaccess", too_many) is True and known == {"a"}      # would not fit
    fits = {f"k{i}": i for i in range(E._KNOWN_KEYS - 1)}
    assert E._learn(known, "publicnetworkaccess", fits) is True and len(known) == E._KNOWN_KEYS   # full
    assert E._learn(known, "publicnetworkaccess", {"fresh": 1}) is True and "fresh" not in known


def test_the_sweep_loop_tests_the_most_common_type_first_and_answers_the_same():
    policies = list(load_directory(BASELINE))
    corpus = _corpus(600)
    vaults = [b for b in corpus if b.get("type") == R.VAULTS] * 3
    by_freq, by_default = compile_policies(policies), compile_policies(policies)
    first = by_freq.violations_many(vaults + corpus)          # the first call orders the chain
    assert by_freq._loop(False).source.split("\n")[7].strip() == f"if t == {R.VAULTS!r}:"
    assert first == by_default.violations_many(vaults + corpus)
    assert by_freq.violations_many(corpus) == by_default.violations_many(corpus)
