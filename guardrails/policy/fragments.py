"""The JSON Schema frame every policy kind shares: a closed object whose header is ``id``,
``version``, ``kind``, ``description`` and ``mode``, then the kind's own properties. A leaf module
(no imports from the rest of the package) so every kind's schema builder can use it."""

from __future__ import annotations

from typing import Any, Iterable

# ``\Z``, not ``$``: jsonschema tests a pattern with ``re.search``, where ``$`` also matches before a
# trailing line break, so ``"storage-private\n"`` (a YAML block scalar) would pass as an id
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}\Z"
# a version is written to the policy table's ``version`` column, an Edm.Int32
MAX_VERSION = 2**31 - 1
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def document(kind: str, title: str, required: Iterable[str], modes: Iterable[str], text: dict[str, Any],
             **props: Any) -> dict[str, Any]:
    """The schema of one kind's documents: ``required`` keys, the shared header (``text`` is the
    kind's schema for free text, used for ``description``) and ``props``."""
    return {
        "$schema": SCHEMA_DIALECT,
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN},
            "version": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
            "kind": {"const": kind},
            "description": text,
            "mode": {"enum": list(modes)},
            **props,
        },
    }


__all__ = ["ID_PATTERN", "MAX_VERSION", "SCHEMA_DIALECT", "document"]
