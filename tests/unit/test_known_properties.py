"""The known REST property paths of the covered resource types (guardrails/model/known_properties):
every path the shipped policies and the catalogue use is known, a misspelling is refused with a
suggestion, maps are open, and every property of the sample ARM bodies we hold (Microsoft's
published examples, the demo world the local emulator is seeded with) is on the list."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest
import yaml

from guardrails.model.known_properties import KNOWN, MAX_DEPTH, known_paths, unknown_path
from guardrails.model.resource import CATALOG

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "azure-samples"
STORAGE = "Microsoft.Storage/storageAccounts"


def test_every_catalogue_type_has_a_list():
    assert set(KNOWN) == set(CATALOG)
    for key, props in KNOWN.items():
        assert props.paths, key
        # every intermediate path is listed, and open prefixes are paths themselves
        for p in props.paths:
            parts = p.split(".")
            assert len(parts) <= MAX_DEPTH, p
            for i in range(1, len(parts)):
                assert ".".join(parts[:i]) in props.paths, (key, p)
        assert props.open_prefixes <= props.paths, key
        assert props.depth_limited <= props.paths, key


def _policy_paths() -> Iterator[tuple[str, str, str]]:
    for f in sorted((ROOT / "metadata" / "policies").glob("*.yaml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        types = (doc.get("selector") or {}).get("resource_types") or []
        for rule in doc.get("rules") or []:
            for t in types:
                yield f.name, t, rule["property"]


POLICY_PATHS = list(_policy_paths())


def test_the_shipped_policies_name_paths():
    assert len(POLICY_PATHS) >= 8  # the scan found the rules


@pytest.mark.parametrize("source,type_name,path", POLICY_PATHS)
def test_shipped_policy_paths_are_known(source, type_name, path):
    assert unknown_path(type_name, path) is None, source


def _catalogue_paths() -> Iterator[tuple[str, str]]:
    for t in CATALOG.values():
        for p in t.defaults:
            yield t.name, p
        for p in t.immutable:
            yield t.name, p
        for p, (other, _values, _why) in t.write_requires.items():
            yield t.name, p
            yield t.name, other
        for p, (other, _values) in t.applies_when.items():
            yield t.name, p
            yield t.name, other


@pytest.mark.parametrize("type_name,path", list(_catalogue_paths()))
def test_catalogue_paths_are_known(type_name, path):
    assert unknown_path(type_name, path) is None


def test_misspelt_path_is_refused_with_a_suggestion():
    reason = unknown_path(STORAGE, "properties.publicNetworkAcess")
    assert reason is not None
    assert "properties.publicNetworkAcess" in reason and STORAGE in reason
    assert "did you mean 'properties.publicNetworkAccess'?" in reason


def test_unrelated_path_is_refused_without_a_suggestion():
    reason = unknown_path(STORAGE, "properties.zzzNothingLikeIt")
    assert reason is not None and "did you mean" not in reason


def test_compute_nested_properties_are_known():
    computes = "Microsoft.MachineLearningServices/workspaces/computes"
    assert unknown_path(computes, "properties.properties.enableNodePublicIp") is None
    assert unknown_path(computes, "properties.computeType") is None
    assert "did you mean 'properties.properties.enableNodePublicIp'" in (
        unknown_path(computes, "properties.properties.enableNodePublicIP1") or "")


def test_maps_are_open():
    for type_name in (STORAGE, "Microsoft.KeyVault/vaults", "Microsoft.MachineLearningServices/workspaces"):
        assert unknown_path(type_name, "tags.anything") is None
        assert unknown_path(type_name, "tags.cost-center") is None
    assert unknown_path(STORAGE, "identity.userAssignedIdentities./subscriptions/x/y.principalId") is None
    assert unknown_path(STORAGE, "tagsx.anything") is not None


def test_comparison_is_case_insensitive():
    assert unknown_path(STORAGE.upper(), "PROPERTIES.PUBLICNETWORKACCESS") is None
    assert unknown_path(STORAGE.lower(), "properties.networkacls.defaultaction") is None
    assert unknown_path(STORAGE, "Tags.Owner") is None


def test_unknown_type_has_no_list():
    assert unknown_path("Microsoft.Web/sites", "properties.whatever") is None
    assert known_paths("Microsoft.Web/sites") is None
    assert "properties.publicNetworkAccess" in (known_paths(STORAGE) or ())


def test_depth_limited_objects_accept_deeper_paths():
    # properties.encryption.services.blob is an object at the depth limit: below it is not judged
    assert unknown_path(STORAGE, "properties.encryption.services.blob.enabled") is None
    assert unknown_path(STORAGE, "properties.encryption.services.blobx") is not None


# ----- sample bodies: every property they carry must be on the list -------------------------

COVERED = {t.key: t.name for t in CATALOG.values()}
_FILE_TYPE = re.compile(r"^(Microsoft\.[A-Za-z]+)_([A-Za-z_]+)\.")


def body_paths(body: Mapping[str, Any], prefix: str = "", depth: int = 1) -> Iterator[str]:
    """Dotted paths of a REST body to MAX_DEPTH segments, not into arrays."""
    for k, v in body.items():
        path = f"{prefix}{k}"
        yield path
        if isinstance(v, Mapping) and depth < MAX_DEPTH:
            yield from body_paths(v, path + ".", depth + 1)


def _resources_in(value: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Dicts anywhere in a JSON document that are bodies of a covered type (their ``type``)."""
    if isinstance(value, Mapping):
        t = value.get("type")
        if (isinstance(t, str) and t.lower() in COVERED
                and any(k in value for k in ("properties", "sku", "location", "tags", "identity"))):
            yield COVERED[t.lower()], value
            return
        for v in value.values():
            yield from _resources_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _resources_in(v)


def _sample_bodies() -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    files = sorted([*SAMPLES.rglob("*.json"), *(ROOT / "tests" / "events").rglob("*.json"),
                    ROOT / "demo" / "world.json"])
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        label = str(f.relative_to(ROOT.parent))
        found = list(_resources_in(doc))
        for t, body in found:
            yield label, t, body
        # request bodies carry no "type": the file name says which (Microsoft.X_a_b.VERB...)
        m = _FILE_TYPE.match(f.name)
        if not m or not isinstance(doc, Mapping):
            continue
        t = f"{m.group(1)}/{m.group(2).replace('_', '/')}"
        if t.lower() not in COVERED:
            continue
        if "parameters" in doc or "responses" in doc:  # an x-ms-examples file: its request bodies
            bodies = [v for v in (doc.get("parameters") or {}).values() if isinstance(v, Mapping)]
        elif not found:
            bodies = [doc]
        else:
            bodies = []
        for b in bodies:
            if not any(b is body for _, body in found):
                yield label, COVERED[t.lower()], b


SAMPLE_BODIES = list(_sample_bodies())


def test_sample_bodies_found_for_every_type():
    assert {t.lower() for _, t, _ in SAMPLE_BODIES} == set(COVERED)


def test_a_misspelt_sample_key_would_be_caught():
    body = {"properties": {"networkAcls": {"defaultAction": "Deny", "defualtAction": "Allow"}}, "tags": {"x": "y"}}
    unknown = [r for p in body_paths(body) if (r := unknown_path(STORAGE, p))]
    assert len(unknown) == 1 and "properties.networkAcls.defualtAction" in unknown[0]


@pytest.mark.parametrize("source,type_name,body", SAMPLE_BODIES,
                         ids=[f"{s}:{b.get('name', i)}" for i, (s, _, b) in enumerate(SAMPLE_BODIES)])
def test_sample_body_paths_are_known(source, type_name, body):
    unknown = [r for p in body_paths(body) if (r := unknown_path(type_name, p))]
    assert not unknown, "\n".join(unknown)
