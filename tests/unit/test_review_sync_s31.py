"""Review s31 of the metadata loader as ``metadata validate``/``sync`` walk a directory.

A policy file that cannot be read is a finding (``cannot read``), so ``sync`` refuses and writes
nothing. But two kinds of file in the tree are skipped without a word, and ``validate`` answers
``valid``: a ``*.yaml`` symlink whose target is missing (a shared policy not checked out), and
every file under a symlinked subdirectory (``policies/shared -> ../shared-policies``:
``Path.rglob`` does not descend into it). ``sync`` then makes the table hold the set WITHOUT those
policies: a site policy already in the table is removed (only a WARNING says so), and a policy
never synced is never enforced, while the operator was told the metadata is valid.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrails.errors import MetadataValidationError
from guardrails.policy.loader import load_directory

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "metadata" / "policies" / "storage-private.yaml"


def _site_policy(pid: str) -> str:
    """The shipped storage policy as a site's own policy (an id the baseline does not have)."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert text.startswith("id: storage-private\n")
    return text.replace("id: storage-private\n", f"id: {pid}\n", 1)


def _loaded_or_named(directory: Path, pid: str, name: str) -> None:
    """Either the policy is loaded, or the load is refused naming the file it could not read."""
    try:
        policies = load_directory(directory)
    except MetadataValidationError as exc:
        assert any(name in f for f in exc.findings), exc.findings
        return
    assert pid in {p.id for p in policies}, (
        f"{name} is in the metadata tree, yet the load neither holds policy '{pid}' nor names the file: "
        f"loaded {[p.ref for p in policies]}")


def test_a_policy_under_a_symlinked_subdirectory_is_loaded_or_refused_never_skipped(tmp_path):
    # GIVEN a site directory whose policies live in a shared directory, linked in
    shared = tmp_path / "shared-policies"
    shared.mkdir()
    (shared / "site-storage.yaml").write_text(_site_policy("site-storage"), encoding="utf-8")
    site = tmp_path / "site" / "policies"
    site.mkdir(parents=True)
    (site / "shared").symlink_to(shared, target_is_directory=True)
    assert (site / "shared" / "site-storage.yaml").is_file()
    # WHEN the site directory is loaded THEN its policy is there, or the load says why not
    _loaded_or_named(tmp_path / "site", "site-storage", "shared")


def test_a_dangling_policy_symlink_is_a_finding_not_a_missing_policy(tmp_path):
    # GIVEN a site directory with one readable policy and one linked to a file not checked out
    site = tmp_path / "site" / "policies"
    site.mkdir(parents=True)
    (site / "site-keep.yaml").write_text(_site_policy("site-keep"), encoding="utf-8")
    (site / "site-storage.yaml").symlink_to(tmp_path / "not-checked-out" / "site-storage.yaml")
    # WHEN the directory is loaded THEN the unreadable file is a finding (nothing synced), as an
    # unreadable regular file is: never a valid set that silently lacks the policy
    with pytest.raises(MetadataValidationError) as info:
        load_directory(tmp_path / "site")
    assert any("site-storage.yaml" in f for f in info.value.findings), info.value.findings
