"""Detect credentials pasted into metadata. Metadata holds Key Vault pointers, never values.

``find_credentials(doc)`` walks every string in a policy document and returns
``(json_path, label)`` for each that looks like a credential. The label names the kind
(``storage account key``, ``SAS signature`` …); the value itself is never echoed, nor a key that
looks like a credential: it is described (``shown_key``) in its own path and in every path beneath it.

What may be printed of a text that can hold one: ``redact`` hides each quoted credential-looking
value (a quote is an opening one unless it is an apostrophe inside a word; an unterminated quote,
as in a ``repr`` cut short, runs to the end); ``safe_text`` then describes each remaining word
that looks like one, and answers ``fallback`` when the text as a whole still does (a format that
spans words); ``safe_path`` is a JSON path with credential-looking keys described.
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
    # OpenAI: sk-proj-… / sk-svcacct-… / sk-admin-…, and the older sk-<48> (T3BlbkFJ: "OpenAI" in base64)
    ("OpenAI API key", re.compile(r"(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}"
                                  r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})")),
    ("Slack token", re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[0-9]{6,}-[0-9A-Za-z-]{10,}")),
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


# a quote that opens a value: not an apostrophe inside a word ("policy's"); b'…' / u'…' as repr writes them
_OPENING = re.compile(r"""(?<![A-Za-z0-9])[bBuU]?(['"])""")
_WORD = re.compile(r"(\s+)")
_PATH_PARTS = re.compile(r"""([.\[\]'"])""")
HIDDEN_TEXT = "<text not shown: it holds a value that looks like a credential>"


def _closing(message: str, quote: str, start: int) -> int:
    """The quote closing a value opened before ``start``: the next one that no letter or digit
    follows (an apostrophe inside the value, ``'it's'``, does not end it); -1 when there is none."""
    end = message.find(quote, start)
    while end != -1 and end + 1 < len(message) and message[end + 1].isalnum():
        end = message.find(quote, end + 1)
    return end


def redact(message: str) -> str:
    """``message`` with every quoted value (``'…'``, ``"…"``; validation messages quote the value
    they refuse) that looks like a credential, or like an opaque key, replaced: a key pasted where
    a name belongs must not be printed. One pass over the message; a quote left open (a ``repr``
    cut short) quotes the rest of the message. Unquoted text is left as it is: ``safe_text``."""
    out: list[str] = []
    i = 0
    while True:
        m = _OPENING.search(message, i)
        if m is None:
            break
        start = m.start(1)
        end = _closing(message, message[start], start + 1)
        inner = message[start + 1:] if end == -1 else message[start + 1:end]
        out.append(message[i:start + 1])
        out.append(_HIDDEN if looks_like_credential(inner) else inner)
        if end == -1:
            return "".join(out)
        out.append(message[end])
        i = end + 1
    out.append(message[i:])
    return "".join(out)


def safe_text(text: str, fallback: str = HIDDEN_TEXT) -> str:
    """``text`` as it may be answered, written to an audit row or logged: ``redact``, then every
    remaining word that looks like a credential (``looks_like_credential``) described, never
    quoted; ``fallback`` when the text still looks like one as a whole (``Bearer <token>``)."""
    words = _WORD.split(redact(text))
    shown = "".join(_HIDDEN if w.strip() and looks_like_credential(w) else w for w in words)
    return fallback if looks_like_credential(shown) else shown


def shown_key(key: Any) -> str:
    """A mapping key as a path or a message may name it: described when it looks like a
    credential (no prefix of it either: 8 characters of a key are 8 characters of the secret)."""
    if not isinstance(key, str):
        return type(key).__name__
    return f"<credential-shaped key, {len(key)} chars>" if looks_like_credential(key) else key


def safe_path(path: str) -> str:
    """A JSON path (``$.a.b[0]``, ``$['a b']``) with every credential-looking key described
    (``shown_key``); when a credential spans keys (a JWT's dots), the path is described whole."""
    parts = _PATH_PARTS.split(path)
    shown = "".join(p if _PATH_PARTS.fullmatch(p) else shown_key(p) for p in parts)
    return "<a path naming a credential-shaped key, not shown>" if looks_like_credential(shown) else shown


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


# Keys without a prefix, looked for only in the metadata's free-text fields (``FREE_TEXT_FIELDS``),
# where a pasted key is plausible and no name grammar applies: elsewhere a 32-hex run is a GUID
# without dashes or a hash, and ``classify`` must not take it for a key.
FREE_TEXT_FIELDS = frozenset({"description", "reason", "contact", "owner"})
_B64 = r"[A-Za-z0-9+/]"
_FREE_TEXT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Event Grid topic/domain keys, Service Bus / Event Hubs SAS keys, Cognitive Services (newer)
    # keys, function keys: 40+ characters of base64 (standard or URL-safe) ending in its padding
    ("base64 access key (Event Grid, Service Bus, Event Hubs, function key …)",
     re.compile(r"(?<![A-Za-z0-9+/_-])(?=[A-Za-z0-9+/_-]*[0-9])(?=[A-Za-z0-9+/_-]*[a-z])(?=[A-Za-z0-9+/_-]*[A-Z])"
                r"[A-Za-z0-9+/_-]{38,}={1,2}(?![A-Za-z0-9+/=_-])")),
    # the current function-key format: URL-safe base64 with "AzFu" inside, no padding
    ("function key", re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{20,}AzFu[A-Za-z0-9_-]{4,}(?![A-Za-z0-9_-])")),
    # Cognitive Services / Azure OpenAI / Maps keys: 32 hexadecimal digits (a GUID is dashed)
    ("32-hex access key (Cognitive Services, Azure OpenAI …)",
     re.compile(r"(?<![0-9A-Za-z-])(?=[0-9A-Fa-f]*[A-Fa-f])(?=[0-9A-Fa-f]*[0-9])(?:[0-9a-f]{32}|[0-9A-F]{32})"
                r"(?![0-9A-Za-z-])")),
)


def _free_text_label(text: str) -> str | None:
    for label, rx in _FREE_TEXT_PATTERNS:
        if rx.search(text):
            return label
    return None


def looks_like_free_text_credential(text: str) -> bool:
    """``looks_like_credential``, or a key without a prefix (``_FREE_TEXT_PATTERNS``: 32 hexadecimal
    digits, 40+ characters of base64 with its padding …): for free text where a key may be pasted
    and no name grammar applies (a report's ``source``), never for an id (a Key Vault version is 32
    hexadecimal digits)."""
    return looks_like_credential(text) or (len(text) >= 32 and _free_text_label(text) is not None)


def find_credentials(doc: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    """``(json path, label)`` of every string of ``doc`` that looks like a credential: the known
    formats (``classify``) anywhere, and in a free-text field (``FREE_TEXT_FIELDS``: a
    description, an exemption's reason or owner, a contact; in a list under one too) also the
    bare keys without a prefix (``_FREE_TEXT_PATTERNS``)."""
    stack: list[tuple[Any, str, bool]] = [(doc, path, False)]
    while stack:
        value, where, free = stack.pop()
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if isinstance(value, str):
            label = classify(value) or (_free_text_label(value) if free and len(value) >= 32 else None)
            if label:
                yield where, label
        elif isinstance(value, Mapping):
            for k, v in value.items():
                here = f"{where}.{shown_key(k)}"       # the same for the key's finding and beneath it
                stack.append((v, here, isinstance(k, str) and k.lower() in FREE_TEXT_FIELDS))
                if isinstance(k, str) and classify(k):
                    yield here, "credential in a key name"
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{where}[{i}]", free) for i, v in enumerate(value))
