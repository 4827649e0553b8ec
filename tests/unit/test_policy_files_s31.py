"""Which files ``metadata validate``/``sync`` read: symlinked directories followed once each,
hidden ones skipped, a link to an ancestor never walked in circles."""

from __future__ import annotations

from pathlib import Path

from guardrails.policy.loader import _policy_files, load_directory

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "metadata" / "policies" / "storage-private.yaml"


def _policy(pid: str) -> str:
    return SHIPPED.read_text(encoding="utf-8").replace("id: storage-private\n", f"id: {pid}\n", 1)


def test_a_link_to_an_ancestor_is_walked_once_and_its_policies_loaded_once(tmp_path):
    site = tmp_path / "site"
    (site / "policies").mkdir(parents=True)
    (site / "policies" / "a.yaml").write_text(_policy("site-a"), encoding="utf-8")
    (site / "policies" / "loop").symlink_to(site, target_is_directory=True)     # policies/loop -> site
    files = _policy_files(site)
    assert [f.relative_to(site).as_posix() for f in files] == ["policies/a.yaml"]
    assert [p.id for p in load_directory(site)] == ["site-a"]


def test_hidden_files_and_directories_stay_unread_also_behind_a_link(tmp_path):
    shared = tmp_path / "shared"
    (shared / ".git").mkdir(parents=True)
    (shared / ".git" / "x.yaml").write_text("not: a policy", encoding="utf-8")
    (shared / ".draft.yaml").write_text("not: a policy", encoding="utf-8")
    (shared / "b.yml").write_text(_policy("site-b"), encoding="utf-8")
    site = tmp_path / "site"
    site.mkdir()
    (site / "shared").symlink_to(shared, target_is_directory=True)
    (site / "c.YAML").write_text(_policy("site-c"), encoding="utf-8")
    (site / "notes.txt").write_text("x", encoding="utf-8")
    assert [f.relative_to(site).as_posix() for f in _policy_files(site)] == ["c.YAML", "shared/b.yml"]
    assert sorted(p.id for p in load_directory(site)) == ["site-b", "site-c"]
