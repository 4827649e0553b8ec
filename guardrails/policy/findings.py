"""How a finding of metadata validation reads, whichever pass of ``guardrails.policy.loader``
found it: ``<source>: policy '<id>' (or ?): <json path>: <message>`` (``_finding``).

A finding never echoes a secret pasted into a policy: the policy id is shown only when it is
well-formed and does not look like a key or a token (``_pid``), the path names a key that looks
like one by its length only (``safe_path``: a validator's path spells the keys it walked), the
message is redacted, and a validator's message drops a long refused value (``_unquoted``).
``_hint`` is the "did you mean" suggestion of a finding about an unknown word.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Iterable


_SHOWN_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")            # the schema's id pattern (fullmatch)
_KEYLIKE_RUN = re.compile(r"(?=[a-z0-9]*[0-9])[a-z0-9]{24,}")   # a policy id is words, not a token
_SHOWN_VALUE = 32        # a refused string longer than this is described, not quoted


def _pid(doc: Any) -> str:
    """The policy id for a finding: only a well-formed id that does not look like a key or a
    token (a pasted secret in ``id`` would otherwise be printed with every finding)."""
    pid = doc.get("id") if isinstance(doc, dict) else None
    if not isinstance(pid, str) or not pid:
        return "?"
    if _SHOWN_ID.fullmatch(pid) and not _KEYLIKE_RUN.search(pid):
        return f"'{pid}'"
    return f"<an id of {len(pid)} characters, not shown>"


def _finding(source: str, doc: Any, path: str, message: str) -> str:
    from guardrails.secrets.credentials import redact, safe_path   # a refused value or a key may be pasted
    return f"{source}: policy {_pid(doc)}: {safe_path(path)}: {redact(message)}"


def _unquoted(message: str, instance: Any) -> str:
    """A validator's message without the refused value itself when that is a long string (a key
    pasted where a name belongs would otherwise be printed, logged and kept in CI output)."""
    if isinstance(instance, str) and len(instance) > _SHOWN_VALUE:
        return message.replace(repr(instance), f"<a value of {len(instance)} characters>")
    return message


def _hint(word: Any, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
