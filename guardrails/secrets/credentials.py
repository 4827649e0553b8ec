"""Detect credentials pasted into metadata. Metadata holds Key Vault pointers, never values.

``find_credentials(doc)`` walks every string in a policy document and returns
``(json_path, label)`` for each that looks like a credential. The label names the kind
(``storage account key``, ``SAS signature`` …); the value itself is never echoed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Iterator

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("connection string with AccountKey", re.compile(r"AccountKey\s*=\s*[A-Za-z0-9+/=]{16,}", re.I)),
    ("connection string with SharedAccessKey", re.compile(r"SharedAccessKey\s*=\s*[A-Za-z0-9+/=]{16,}", re.I)),
    ("SAS signature", re.compile(r"(?:^|[?&;\s])sig=[A-Za-z0-9%+/=]{16,}", re.I)),
    ("SharedAccessSignature", re.compile(r"SharedAccessSignature\s*[=\s]\s*\S{16,}", re.I)),
    ("bearer token", re.compile(r"\bBearer\s+[A-Za-z0-9\-_=.~+/]{20,}", re.I)),
    ("JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z ]+ )?PRIVATE KEY-----")),
    ("password in a connection string", re.compile(r"(?:^|;)\s*(?:Password|Pwd)\s*=\s*[^;\s]{4,}", re.I)),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    # fine-grained: ``github_pat_`` + 22 + ``_`` + 59 (a little slack each side; a name such as
    # ``github_pat_rotation_policy`` has no 20-character run and is not one)
    ("GitHub fine-grained token", re.compile(r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9]{20,}_[A-Za-z0-9]{40,}")),
    ("Databricks token", re.compile(r"\bdapi[0-9a-f]{32}\b")),
    ("AWS access key", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    # bare, without the connection string around them
    ("storage account key", re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])")),
    ("Entra client secret", re.compile(r"(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])")),
)

_TOKEN_SPLIT = re.compile(r"[^A-Za-z0-9+=_~]+")
_HIDDEN = "<value not shown: it looks like a credential>"


def _opaque(text: str) -> bool:
    """A run of 40+ characters of mixed-case letters and digits with no separator (unlike an ARM
    id, a property path or a GUID): what a key or a token looks like without a known prefix."""
    for tok in _TOKEN_SPLIT.split(text):
        if (len(tok) >= 40 and any(c.isdigit() for c in tok) and any(c.islower() for c in tok)
                and any(c.isupper() for c in tok)):
            return True
    return False


def redact(message: str) -> str:
    """``message`` with every quoted value (``'…'``, ``"…"``; validation messages quote the value
    they refuse) that looks like a credential, or like an opaque key, replaced: a key pasted where
    a name belongs must not be printed. One pass over the message."""
    out: list[str] = []
    i = 0
    while True:
        starts = [k for k in (message.find("'", i), message.find('"', i)) if k != -1]
        if not starts:
            break
        start = min(starts)
        end = message.find(message[start], start + 1)
        if end == -1:
            break
        inner = message[start + 1:end]
        out.append(message[i:start + 1])
        out.append(_HIDDEN if len(inner) >= 12 and (_opaque(inner) or classify(inner)) else inner)
        out.append(message[end])
        i = end + 1
    out.append(message[i:])
    return "".join(out)


def classify(text: str) -> str | None:
    """The kind of credential ``text`` looks like (one of the known formats above), or None. The
    test for a value sent where a name with a grammar belongs (a job id, a zone, an ARM id, a
    Key Vault secret name): unlike ``looks_like_credential`` it never takes a long CamelCase or
    snake_case name (``StorageAccountConnectionStringForProduction2024``) for a key."""
    if len(text) < 12:
        return None
    for label, rx in _PATTERNS:
        if rx.search(text):
            return label
    return None


def looks_like_credential(text: str) -> bool:
    """``classify`` or an opaque key-like run (``redact``'s test): for free text (a tag value, a
    report's ``source``) and keys nobody declared, which must not be echoed. Too eager for a field
    with a name grammar: a long mixed-case name with a digit is an opaque run too (use ``classify``)."""
    return len(text) >= 12 and (classify(text) is not None or _opaque(text))


def find_credentials(doc: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    stack: list[tuple[Any, str]] = [(doc, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if isinstance(value, str):
            label = classify(value)
            if label:
                yield where, label
        elif isinstance(value, Mapping):
            for k, v in value.items():
                stack.append((v, f"{where}.{k if isinstance(k, str) else type(k).__name__}"))
                if isinstance(k, str) and classify(k):
                    yield f"{where}.{k[:8]}…", "credential in a key name"
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))
