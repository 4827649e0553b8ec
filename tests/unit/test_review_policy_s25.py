"""Review s25 of the policy-as-metadata path (pure tier: loader, cache, sync's version check over an
in-memory repository, settings, the metadata credential check).

1. a property path too deep to compile is refused by validate/sync; the loader compiles the merged
   set; a worker whose set does not compile decides nothing (PolicyUnreadable) or keeps its last set
3. a rejected row keeps the WHOLE previous set: never a mix of rows from different loads
4. sync refuses a lower version or other content at the same version unless allow_downgrade; an
   override older than the baseline it replaces is refused
6. the policy TTL is capped; 7. bare keys in free-text metadata fields are refused
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import secrets
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from guardrails.errors import ConfigError, MetadataValidationError, PolicyError, PolicyUnreadable
from guardrails.model.policy import Policy
from guardrails.model.resource import ResourceSnapshot
from guardrails.policy import semantics
from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory, load_documents
from guardrails.secrets.credentials import classify, find_credentials
from guardrails.sync import SHIPPED_METADATA, metadata_dirs, sync_metadata
from tests import builders as b

STORAGE = "Microsoft.Storage/storageAccounts"


def _doc(pid: str = "site-storage", version: int = 1, mode: str = "enforce", rules=None, **extra) -> dict:
    return {"id": pid, "version": version, "description": f"storage accounts stay private ({pid})", "mode": mode,
            "selector": {"resource_types": [STORAGE]}, "rules": rules if rules is not None else [PNA], **extra}


PNA = {"id": "pna", "property": "properties.publicNetworkAccess", "expect": {"equals": "Disabled"},
       "action": {"type": "set-property", "value": "Disabled"}}
BLOB = {"id": "blob", "property": "properties.allowBlobPublicAccess", "expect": {"equals": False},
        "action": {"type": "set-property", "value": False}}


def _deep_rule(segments: int) -> dict:
    return {"id": "deep", "property": ".".join(["properties"] + ["a"] * (segments - 1)), "expect": {"equals": "x"},
            "action": {"type": "notify"}, "allow_unlisted_property": True}


def _site(tmp_path: Path, name: str, *docs: dict) -> Path:
    d = tmp_path / name / "policies"
    d.mkdir(parents=True, exist_ok=True)
    import yaml
    for doc in docs:
        (d / f"{doc['id']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return tmp_path / name


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Repo:
    """The policy table as the cache reads it: ``(table:<name>/<row key>, document)``."""

    def __init__(self, docs) -> None:
        self.docs = docs

    def list_documents(self):
        return [(f"table:GuardrailsPolicies/{d['id']}", copy.deepcopy(d)) for d in self.docs]


def _violated(compiled) -> list[tuple[str, str]]:
    res = b.storage(pna="Enabled", blob=True)
    snap = ResourceSnapshot(res["id"], res["type"], res)
    return sorted((r.policy.ref, r.rule.id) for r in compiled.evaluate(snap, now=datetime.now(timezone.utc)))


# ---------------------------------------------------------------- 1. a path too deep to compile

def test_validate_refuses_a_property_path_deeper_than_the_cap_naming_the_rule(tmp_path):
    # GIVEN a site policy whose rule reads a 120-segment path (allow_unlisted_property: the list lacks it)
    site = _site(tmp_path, "site", _doc(rules=[_deep_rule(120)]))
    # WHEN validate/sync loads it THEN it is refused, naming the rule's property and the cap
    with pytest.raises(MetadataValidationError) as err:
        load_directory(*metadata_dirs([site]))
    assert "policy 'site-storage': $.rules[0].property: a property path of 120 segments" in str(err.value)
    assert f"at most {semantics.MAX_PATH_SEGMENTS}" in str(err.value)


def test_a_path_at_the_cap_is_accepted_and_compiles_and_every_shipped_path_is_far_below_it(tmp_path):
    site = _site(tmp_path, "site", _doc(rules=[_deep_rule(semantics.MAX_PATH_SEGMENTS)]))
    policies = load_directory(*metadata_dirs([site]))          # compiled by the loader, sweep loops included
    assert "site-storage@1" in [p.ref for p in policies]
    from guardrails.model.known_properties import KNOWN
    deepest = max(len(p.split(".")) for v in KNOWN.values() for p in (*v.paths, *v.objects, *v.arrays))
    shipped = max(len(r.property.split(".")) for p in load_directory(*metadata_dirs())
                  if isinstance(p, Policy) for r in p.rules)
    assert max(deepest, shipped) * 4 <= semantics.MAX_PATH_SEGMENTS


def test_the_loader_compiles_the_merged_set_and_refuses_one_that_does_not_compile(tmp_path, monkeypatch):
    # GIVEN the per-path cap lifted, so only the compile step stands between the set and the workers
    monkeypatch.setattr(semantics, "MAX_PATH_SEGMENTS", 10_000)
    site = _site(tmp_path, "site", _doc(rules=[_deep_rule(120)]))
    # WHEN validate/sync loads it THEN the set is refused, naming the policy that does not compile
    with pytest.raises(MetadataValidationError) as err:
        load_directory(*metadata_dirs([site]))
    assert "policy 'site-storage': $: this policy does not compile into the evaluator" in str(err.value)


def test_a_cold_worker_whose_set_does_not_compile_decides_nothing_instead_of_crashing(caplog):
    # GIVEN the table holds a row that validates row by row but whose set does not compile
    repo = Repo([_doc(), _doc("deep-site", rules=[_deep_rule(120)])])
    cache = PolicyCache(repo, ttl_seconds=30, clock=Clock())
    # WHEN a cold worker loads it THEN PolicyUnreadable (audited failed, redelivered), not SyntaxError
    with pytest.raises(PolicyUnreadable, match="does not compile"):
        cache.get()
    assert "policy_set_uncompilable" in caplog.text


def test_a_warm_worker_whose_new_set_does_not_compile_keeps_its_whole_last_set():
    clock = Clock()
    repo = Repo([_doc()])
    cache = PolicyCache(repo, ttl_seconds=30, clock=clock)
    first = cache.get()
    repo.docs = [_doc(version=2, mode="audit"), _doc("deep-site", rules=[_deep_rule(120)])]
    clock.t = 31.0
    kept = cache.get()
    assert kept is first and [p.ref for p in kept.all_policies] == ["site-storage@1"]


# ---------------------------------------------------------------- 3. never a mix of loads

def test_a_rejected_row_keeps_the_whole_previous_set_so_a_moved_rule_is_still_enforced(caplog):
    # GIVEN a worker that loaded A (pna) and B (blob)
    clock = Clock()
    repo = Repo([_doc("site-a", rules=[PNA]), _doc("site-b", rules=[BLOB])])
    cache = PolicyCache(repo, ttl_seconds=30, clock=clock)
    assert _violated(cache.get()) == [("site-a@1", "pna"), ("site-b@1", "blob")]
    # WHEN one sync retires A and moves its rule into B v2, which this worker's release rejects
    repo.docs = [_doc("site-a", 2, "off", rules=[PNA]), _doc("site-b", 2, rules=[BLOB, {**PNA, "severity": "high"}])]
    clock.t = 31.0
    caplog.set_level(logging.ERROR, logger="guardrails.policy")
    compiled = cache.get()
    # THEN it decides on the set it loaded last, whole: A@1 + B@1, never A@2 + B@1
    assert sorted(p.ref for p in compiled.all_policies) == ["site-a@1", "site-b@1"]
    assert _violated(compiled) == [("site-a@1", "pna"), ("site-b@1", "blob")]
    assert "policy_row_rejected" in caplog.text and "site-b@1" in caplog.text and "policy_set_kept" in caplog.text
    # AND once the rows validate again, the new set takes over
    repo.docs = [_doc("site-a", 2, "off", rules=[PNA]), _doc("site-b", 2, rules=[BLOB, PNA])]
    clock.t = 62.0
    assert _violated(cache.get()) == [("site-b@2", "blob"), ("site-b@2", "pna")]


def test_a_case_variant_row_never_duplicates_a_policy():
    clock = Clock()
    good = _doc("site-a")
    cache = PolicyCache(Repo([good]), ttl_seconds=30, clock=clock)
    cache.get()

    class WithVariant(Repo):
        def list_documents(self):
            return [("table:GuardrailsPolicies/Site-A", {**good, "id": "Site-A"})] + super().list_documents()

    cache._repo = WithVariant([good])
    clock.t = 31.0
    compiled = cache.get()
    assert [p.ref for p in compiled.all_policies] == ["site-a@1"]
    assert _violated(compiled) == [("site-a@1", "pna")]


def test_a_cold_worker_with_a_rejected_row_decides_nothing():
    repo = Repo([_doc("site-a"), {**_doc("site-b"), "mode": 7}])
    with pytest.raises(PolicyUnreadable, match="site-b"):
        PolicyCache(repo, ttl_seconds=30, clock=Clock()).get()


# ---------------------------------------------------------------- 4. versions

def test_an_override_older_than_the_baseline_it_replaces_is_refused(tmp_path):
    base = _site(tmp_path, "baseline", _doc(version=3, rules=[PNA, BLOB]))
    site = _site(tmp_path, "site", _doc(version=1, rules=[PNA]))
    with pytest.raises(MetadataValidationError) as err:
        load_directory(base, site)
    assert "policy 'site-storage': $.version: version 1 is lower than version 3" in str(err.value)
    # the same version, or a later one, replaces it as before
    assert [p.version for p in load_directory(base, _site(tmp_path, "later", _doc(version=4)))
            if p.id == "site-storage"] == [4]


class GuardedRepo:
    """``replace_all`` as the table's adapter runs it: the guard sees the rows as read, then the set is written."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def list_documents(self):
        return [(f"table:T/{k}", copy.deepcopy(v)) for k, v in sorted(self.rows.items())]

    def replace_all(self, documents, *, guard=None):
        if guard is not None:
            guard(copy.deepcopy(self.rows))
        self.rows = {d["id"] + ("@shadow" if d.get("mode") == "shadow" else ""): copy.deepcopy(d)
                     for _, d in documents}
        return {"added": 0, "updated": 0, "unchanged": 0, "removed": 0}


def test_sync_refuses_a_lower_version_naming_it_and_writes_nothing(tmp_path):
    repo = GuardedRepo()
    sync_metadata(repo, metadata_dirs([_site(tmp_path, "v3", _doc(version=3))]))
    before = copy.deepcopy(repo.rows)
    with pytest.raises(MetadataValidationError) as err:
        sync_metadata(repo, metadata_dirs([_site(tmp_path, "v2", _doc(version=2, mode="audit"))]))
    assert "policy 'site-storage': $.version: version 2 would replace version 3" in str(err.value)
    assert "--allow-downgrade" in str(err.value)
    assert repo.rows == before


def test_sync_refuses_other_content_at_the_same_version_and_names_what_it_would_remove(tmp_path):
    repo = GuardedRepo()
    sync_metadata(repo, metadata_dirs([_site(tmp_path, "a", _doc(version=2), _doc("site-old"))]))
    before = copy.deepcopy(repo.rows)
    with pytest.raises(MetadataValidationError) as err:
        sync_metadata(repo, metadata_dirs([_site(tmp_path, "b", _doc(version=2, mode="off"))]))
    assert "policy 'site-storage': $.version: the content differs from version 2" in str(err.value)
    assert "would also remove: site-old" in str(err.value)
    assert repo.rows == before


def test_allow_downgrade_writes_and_says_what_was_taken_back(tmp_path, caplog):
    repo = GuardedRepo()
    sync_metadata(repo, metadata_dirs([_site(tmp_path, "v3", _doc(version=3), _doc("site-old"))]))
    caplog.set_level(logging.WARNING, logger="guardrails")
    sync_metadata(repo, metadata_dirs([_site(tmp_path, "v2", _doc(version=2, mode="audit"))]), allow_downgrade=True)
    assert (repo.rows["site-storage"]["version"], repo.rows["site-storage"]["mode"]) == (2, "audit")
    assert "site-old" not in repo.rows
    assert "policy_sync_downgraded" in caplog.text and "policy_sync_removes" in caplog.text and "site-old" in caplog.text


def test_a_row_serialised_by_an_earlier_release_is_the_same_policy(tmp_path):
    # an earlier release wrote the row without the defaults this one adds (notify_tag, breaker)
    repo = GuardedRepo()
    sync_metadata(repo, metadata_dirs([_site(tmp_path, "a", _doc(version=2))]))
    for key in ("notify_tag", "breaker"):
        repo.rows["site-storage"].pop(key, None)
    sync_metadata(repo, metadata_dirs([_site(tmp_path, "a", _doc(version=2))]))     # no refusal
    assert "breaker" in repo.rows["site-storage"]


def test_sync_never_writes_an_empty_set(monkeypatch, tmp_path):
    import guardrails.sync as sync_mod
    monkeypatch.setattr(sync_mod, "load_directory", lambda *dirs: [])
    repo = GuardedRepo()
    with pytest.raises(PolicyError, match="mode: off"):
        sync_mod.sync_metadata(repo, [tmp_path])
    assert repo.rows == {}


def test_the_cli_takes_allow_downgrade():
    from guardrails.cli import _parser
    assert _parser().parse_args(["metadata", "sync", "--allow-downgrade"]).allow_downgrade is True
    assert _parser().parse_args(["metadata", "sync"]).allow_downgrade is False


# ---------------------------------------------------------------- 6. settings

def test_the_policy_ttl_is_capped_at_five_minutes():
    from guardrails import settings as S
    env = {S.TABLES_CONNECTION: "UseDevelopmentStorage=true"}
    assert S.Settings.from_env({**env, S.POLICY_TTL_SECONDS: "300"}).policy_ttl_seconds == 300
    with pytest.raises(ConfigError, match="GUARDRAILS_POLICY_TTL_SECONDS must be <= 300"):
        S.Settings.from_env({**env, S.POLICY_TTL_SECONDS: "31536000"})


# ---------------------------------------------------------------- 7. keys in free text

_KEYS = {
    "Event Grid / Service Bus key": lambda: base64.b64encode(os.urandom(32)).decode(),
    "function key": lambda: base64.urlsafe_b64encode(os.urandom(40)).decode(),
    "function key (AzFu)": lambda: "aBcD" + secrets.token_urlsafe(30).replace("-", "x").replace("_", "y")[:30]
                                   + "AzFu" + "Qx9kZw",
    "Cognitive Services key": lambda: secrets.token_hex(16),
    "OpenAI key": lambda: "sk-proj-" + secrets.token_urlsafe(40),
    "Slack bot token": lambda: "xoxb-123456789012-1234567890123-" + secrets.token_hex(12),
}


@pytest.mark.parametrize("field", ["description", "reason", "owner", "contact"])
@pytest.mark.parametrize("kind", sorted(_KEYS))
def test_a_key_pasted_into_a_free_text_field_is_refused_without_echoing_it(kind, field):
    value = _KEYS[kind]()
    doc = _doc(exemptions=[{"scope": f"/subscriptions/{b.SUB}", "reason": "r", "owner": "team@example.com"}])
    text = f"ask the platform team; key {value} (rotated monthly)"
    if field in ("reason", "owner"):
        doc["exemptions"][0][field] = text
    else:
        doc[field] = text
    with pytest.raises(MetadataValidationError) as err:
        load_documents([("site.yaml", doc)])
    assert "looks like a credential" in str(err.value) and value not in str(err.value)
    assert f".{field}" in str(err.value)


def test_the_free_text_formats_stay_out_of_fields_with_a_grammar_and_off_the_shipped_metadata():
    # a dashed GUID, a 32-hex hash and a long base64-looking name in a non-free-text field are no finding
    doc = _doc(selector={"resource_types": [STORAGE], "tags": {"build": secrets.token_hex(16),
                                                               "image": base64.b64encode(os.urandom(32)).decode()}})
    assert list(find_credentials(doc)) == []
    assert classify(secrets.token_hex(16)) is None                           # classify: prefixed formats only
    assert classify("sk-proj-" + secrets.token_urlsafe(40)) == "OpenAI API key"
    import yaml
    for path in sorted(SHIPPED_METADATA.rglob("*.yaml")):
        assert list(find_credentials(yaml.safe_load(path.read_text(encoding="utf-8")))) == [], path
    assert load_directory(*metadata_dirs())             # the shipped set still validates


def test_descriptions_with_ordinary_text_are_not_keys():
    for text in ("Storage accounts stay private: publicNetworkAccess=Disabled (CIS 3.7, MCSB NS-2).",
                 "role 8e3af657-a8ff-443c-a75c-2fe8c4bcb635 at /subscriptions/" + b.SUB,
                 "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
                 "contact: ml-platform-oncall@contoso.com, runbook https://contoso.sharepoint.com/sites/ml/runbook"):
        assert list(find_credentials({"description": text})) == [], text
