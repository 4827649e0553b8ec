"""Text that fits one Table Storage property or transaction: the limits, a JSON list cut so it
still parses, replay progress cut at a comma."""

from __future__ import annotations

import json
from typing import Any

MAX_PROPERTY_CHARS = 30000      # a Table Storage string property holds 32K UTF-16 characters
TRANSACTION_ROWS = 100          # an entity-group transaction: at most 100 entities, one partition

def bounded_json(value: Any, limit: int = MAX_PROPERTY_CHARS) -> str:
    """``value`` as JSON of at most ``limit`` characters that still parses: a long list keeps
    its first items and ends with ``"… N more"`` (a sweep over 1,000 subscriptions lists more
    than a property holds); anything else too long becomes a JSON string saying so."""
    text = json.dumps(value, sort_keys=True)
    if len(text) <= limit:
        return text
    if isinstance(value, list):
        lo, hi = 0, len(value)               # the longest prefix that fits with its marker
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(json.dumps([*value[:mid], f"… {len(value) - mid} more"], sort_keys=True)) <= limit:
                lo = mid
            else:
                hi = mid - 1
        return json.dumps([*value[:lo], f"… {len(value) - lo} more"], sort_keys=True)
    return json.dumps(f"… {len(text)} characters, too long to keep")


def _cut_ranges(text: str, limit: int = MAX_PROPERTY_CHARS) -> str:
    """Replay progress (``deadletter.to_ranges``) cut to ``limit`` characters at a comma: a cut inside
    a number would leave another number (``123457`` -> ``1234``), naming an index never handled as
    done. What is dropped is only handled again (``duplicate`` while its dedup record lasts)."""
    return text if len(text) <= limit else text[:limit + 1].rsplit(",", 1)[0][:limit]
