"""Azure Resource Manager resource ids: a strict parser and a value type.

Ids reach us from internet-facing events and end up in request URLs, so the grammar is
deliberately narrow (see ``parse_arm_id``). Matching is segment-wise and case-insensitive,
never by string prefix: ``…/storageAccounts/sa/blobServices/default/containers/c`` is a
``Microsoft.Storage/storageAccounts/blobServices/containers``, not a storage account.

    /subscriptions/{guid}                                         subscription
    /subscriptions/{guid}/resourceGroups/{rg}                     resource group
    [{sub}[/resourceGroups/{rg}]]/providers/{ns}/{type}/{name}[/{type}/{name}…]   resource
    {resource}/providers/{ns}/{type}/{name}[…]                    extension resource (one level)
    /providers/Microsoft.Management/managementGroups/{id}         management group (tenant level)

``Microsoft.Authorization`` resources directly under a subscription or resource group (role
assignments, locks, policy assignments) are extension resources too: their ``scope`` is set.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from guardrails.errors import InvalidArmId

MAX_ID_LENGTH = 2048
MAX_RG_LENGTH = 90
MAX_NAME_LENGTH = 260

_FORBIDDEN = frozenset('?#%\\<>*&:+"\';|{}`')
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NAMESPACE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)+")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_RG_EXTRA = frozenset("_-.()")
_RG_WORD_EXTRA = frozenset({"Mn", "Pc"})   # in .NET's \w beyond what str.isalnum takes
# unreserved + the sub-delims/pchar that can occur in a legal id; everything else is %-encoded
_URL_SAFE = "-._~()!$,=@"
_EXTENSION_NAMESPACES = frozenset({"microsoft.authorization"})


def _show(value: str, limit: int = 80) -> str:
    """A short, quoted rendering of an untrusted value for an error message (an audit row, an
    HTTP 400, a log line): cut, and never when it is shaped like a credential (a token pasted
    where an id belongs)."""
    from guardrails.secrets.credentials import looks_like_credential

    if looks_like_credential(value):
        return f"<{len(value)} characters not shown: they look like a credential>"
    return repr(value[:limit] + "…") if len(value) > limit else repr(value)


def fold(text: str) -> str:
    """``text`` as ARM's case-insensitive comparison sees it (.NET ``OrdinalIgnoreCase``: each
    character's simple upper-case mapping). Not ``str.casefold``/``lower``: those make "straße" equal
    to "strasse" and the Kelvin sign equal to "k", names ARM keeps apart, so a scope would reach
    a look-alike resource group."""
    if text.isascii():
        return text.upper()
    return "".join(u if len(u := c.upper()) == 1 else c for c in text)


@dataclass(frozen=True, repr=False)
class ArmId:
    """A parsed ARM id. Equality is exact (input spelling); use ``segments()`` or ``contains``
    for ARM's case-insensitive identity."""

    subscription_id: str | None
    resource_group: str | None
    provider: str | None
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    scope: ArmId | None = None

    def __post_init__(self) -> None:
        if len(self.types) != len(self.names):
            raise InvalidArmId("ArmId needs one name per type")

    # -- views -----------------------------------------------------------------------------
    @property
    def resource_type(self) -> str:
        if self.provider is not None:
            return "/".join((self.provider, *self.types))
        if self.resource_group is not None:
            return "Microsoft.Resources/resourceGroups"
        return "Microsoft.Resources/subscriptions"

    @property
    def name(self) -> str | None:
        if self.names:
            return self.names[-1]
        return self.resource_group if self.resource_group is not None else self.subscription_id

    @property
    def parent(self) -> ArmId | None:
        """Child → parent resource; top-level/extension resource → its rg, subscription or
        scope; rg → subscription; subscription and tenant-level resources → None."""
        if len(self.types) > 1:
            return ArmId(self.subscription_id, self.resource_group, self.provider,
                         self.types[:-1], self.names[:-1], self.scope)
        if self.provider is not None:
            if self.scope is not None:
                return self.scope
            if self.resource_group is not None:
                return ArmId(self.subscription_id, self.resource_group, None)
            if self.subscription_id is not None:
                return ArmId(self.subscription_id, None, None)
            return None
        if self.resource_group is not None:
            return ArmId(self.subscription_id, None, None)
        return None

    def __str__(self) -> str:
        if self.scope is not None:
            out = str(self.scope)
        else:
            out = ""
            if self.subscription_id is not None:
                out += f"/subscriptions/{self.subscription_id}"
            if self.resource_group is not None:
                out += f"/resourceGroups/{self.resource_group}"
        if self.provider is not None:
            out += f"/providers/{self.provider}"
            out += "".join(f"/{t}/{n}" for t, n in zip(self.types, self.names))
        return out

    def __repr__(self) -> str:
        return f"ArmId({str(self)!r})"

    def segments(self) -> tuple[str, ...]:
        """Path segments folded as ARM compares names (keywords included): see ``fold``."""
        return tuple(fold(s) for s in str(self).split("/")[1:])

    def contains(self, other: ArmId) -> bool:
        """True when ``other`` is this id or lies below it (segment-wise, case-insensitive)."""
        mine, theirs = self.segments(), other.segments()
        return len(theirs) >= len(mine) and theirs[: len(mine)] == mine

    def url_path(self) -> str:
        """The id as a URL path: each segment percent-encoded as UTF-8."""
        return "".join("/" + quote(s, safe=_URL_SAFE) for s in str(self).split("/")[1:])


# -- parsing ----------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: object, what: str) -> None:
        self.what = what
        if not isinstance(text, str):
            raise InvalidArmId(f"{what} must be a string, got {type(text).__name__}")
        self.text = text

    def fail(self, detail: str) -> InvalidArmId:
        return InvalidArmId(f"invalid {self.what} {_show(self.text)}: {detail}")

    def check_characters(self) -> None:
        text = self.text
        if not text:
            raise self.fail("empty")
        if len(text) > MAX_ID_LENGTH:
            raise InvalidArmId(f"invalid {self.what}: {len(text)} characters, more than {MAX_ID_LENGTH}")
        if not text.startswith("/"):
            raise self.fail("must start with '/'")
        if text.isprintable() and " " not in text and _FORBIDDEN.isdisjoint(text):
            return           # no C/Z character but the space (``isprintable``), none forbidden: all is well
        for pos, ch in enumerate(text):
            if ch in _FORBIDDEN:
                if ch == "%":
                    raise self.fail(f"percent-encoded ids are not accepted (position {pos})")
                raise self.fail(f"forbidden character {ch!r} at position {pos}")
            if ch.isspace() or unicodedata.category(ch)[0] in "CZ":
                raise self.fail(f"whitespace or control character U+{ord(ch):04X} at position {pos}")

    def parse(self) -> ArmId:
        self.check_characters()
        segs = self.text[1:].split("/")
        for i, s in enumerate(segs):
            if s == "":
                raise self.fail(f"empty segment at position {i + 1}")
            if s in (".", ".."):
                raise self.fail(f"{s!r} segment at position {i + 1}")
        n = len(segs)
        i = 0
        sub = rg = None
        head = segs[0].lower()
        if head == "subscriptions":
            if n < 2:
                raise self.fail("'subscriptions' has no subscription id")
            sub = segs[1]
            if not _GUID.fullmatch(sub):
                raise self.fail(f"subscription id {_show(sub)} is not a GUID")
            i = 2
            if i < n and segs[i].lower() == "resourcegroups":
                if i + 1 >= n:
                    raise self.fail("'resourceGroups' has no name")
                rg = segs[i + 1]
                self.check_rg(rg)
                i += 2
            base: ArmId | None = ArmId(sub, rg, None)
            if i == n:
                return base
        elif head == "providers":
            base = None
        else:
            raise self.fail(f"must start with /subscriptions/{{guid}} or /providers/, not {_show(segs[0])}")

        result: ArmId | None = None
        while i < n:
            if segs[i].lower() != "providers":
                raise self.fail(f"expected 'providers' at segment {i + 1}, got {_show(segs[i])}")
            if result is not None and result.scope is not None:
                raise self.fail("only one level of extension resource is supported")
            i, provider, types, names = self.provider_block(segs, i)
            if result is not None:
                # …/{resource}/providers/… : an extension resource attached to ``result``
                result = ArmId(sub, rg, provider, types, names, result)
            elif base is not None and provider.lower() in _EXTENSION_NAMESPACES:
                result = ArmId(sub, rg, provider, types, names, base)
            else:
                result = ArmId(sub, rg, provider, types, names)
        assert result is not None
        return result

    def provider_block(self, segs: list[str], i: int) -> tuple[int, str, tuple[str, ...], tuple[str, ...]]:
        n = len(segs)
        if i + 1 >= n:
            raise self.fail("'providers' has no namespace")
        provider = segs[i + 1]
        if not _NAMESPACE.fullmatch(provider):
            raise self.fail(f"provider namespace {_show(provider)} is not like 'Microsoft.Storage'")
        i += 2
        types: list[str] = []
        names: list[str] = []
        while i < n and not (types and segs[i].lower() == "providers"):
            t = segs[i]
            if not _TYPE.fullmatch(t):
                raise self.fail(f"resource type {_show(t)} is not alphanumeric")
            if i + 1 >= n:
                raise self.fail(f"resource type {_show(t)} has no name")
            self.check_name(segs[i + 1])
            types.append(t)
            names.append(segs[i + 1])
            i += 2
        if not types:
            raise self.fail(f"provider {_show(provider)} has no resource type")
        return i, provider, tuple(types), tuple(names)

    def check_rg(self, rg: str) -> None:
        if len(rg) > MAX_RG_LENGTH:
            raise self.fail(f"resource group name longer than {MAX_RG_LENGTH} characters")
        # ARM's pattern ^[-\w\._\(\)]+$ with .NET's \w: letters, decimal digits, non-spacing marks
        # (Thai vowels, a decomposed accent) and connector punctuation (U+203F) all pass
        bad = next((c for c in rg if not (c.isalnum() or c in _RG_EXTRA
                                          or unicodedata.category(c) in _RG_WORD_EXTRA)), None)
        if bad is not None:
            raise self.fail(f"resource group {_show(rg)} contains {bad!r}")
        if rg.endswith("."):
            raise self.fail(f"resource group {_show(rg)} ends with '.'")

    def check_name(self, name: str) -> None:
        if len(name) > MAX_NAME_LENGTH:
            raise self.fail(f"resource name longer than {MAX_NAME_LENGTH} characters")
        if name.endswith("."):
            raise self.fail(f"resource name {_show(name)} ends with '.'")


def parse_arm_id(text: str) -> ArmId:
    """Parse a subscription, resource-group, resource or extension-resource id.

    Raises ``InvalidArmId`` (reason ``invalid_resource_id``) naming what is wrong.
    """
    return _Parser(text, "resource id").parse()


def parse_scope(text: str) -> ArmId:
    """Parse a scope: subscription, resource group, resource, or management group (or
    anything under a management group). Other tenant-level ids are not scopes."""
    parsed = _Parser(text, "scope").parse()
    root = parsed
    while root.scope is not None:
        root = root.scope
    if root.subscription_id is None and (
        (root.provider or "").lower() != "microsoft.management"
        or root.types[0].lower() != "managementgroups"
    ):
        raise InvalidArmId(
            f"invalid scope {_show(text)}: tenant-level ids other than management groups are not scopes"
        )
    return parsed


def scope_contains(scope: str, resource_id: str) -> bool:
    """True when ``resource_id`` is ``scope`` or lies below it; False if either is not legal."""
    try:
        return parse_scope(scope).contains(parse_arm_id(resource_id))
    except InvalidArmId:
        return False
