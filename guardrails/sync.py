"""``metadata sync``: validate every policy file, then make the policy table hold exactly
that set. Invalid input is refused before anything is written, so the table is unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .policy.loader import load_directory
from .ports import PolicyRepository

SHIPPED_METADATA = Path(__file__).resolve().parents[1] / "metadata"


def metadata_dirs(extra: Sequence[Path] = ()) -> list[Path]:
    """The shipped baseline first, then extra directories (same policy id replaces)."""
    return [SHIPPED_METADATA, *[Path(p) for p in extra]]


def sync_metadata(repo: PolicyRepository, dirs: Sequence[Path]) -> dict[str, int]:
    policies = load_directory(*dirs)          # raises MetadataValidationError: nothing written
    return repo.replace_all([(p.source, p.to_document()) for p in policies])
