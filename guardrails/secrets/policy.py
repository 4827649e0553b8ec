"""``kind: secrets`` — secret references (the seed's Secret_References) and hygiene rules.

```yaml
id: ml-secrets
version: 1
kind: secrets
description: Secrets of the ML platform and how each is rotated.
mode: enforce                      # enforce | audit | off
selector: {vaults: [kv-ml-prod]}   # optional: vaults this policy governs (empty: every vault)
hygiene:                           # checked on SecretNewVersionCreated
  require_expiry: true
  max_validity_days: 90
secrets:                           # pointers into Key Vault, never values
  - vault: kv-ml-prod
    name: storage-connection
    owner: ml-platform@contoso.com
    rotation: {strategy: storage-account-key, account: /subscriptions/…/storageAccounts/stmlprod, format: connection-string}
  - vault: kv-ml-prod
    name: feature-api-token
    owner: ml-platform@contoso.com
    rotation: {strategy: random, length: 48, alphabet: urlsafe}
  - vault: ml-vault
    name: databricks-token
    owner: data-eng@contoso.com
    rotation: {strategy: notify-only}
keys:
  - {vault: kv-ml-prod, name: cmk-storage, owner: secops@contoso.com, rotate: true}
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from guardrails.policy.fragments import document

SECRETS_KIND = "secrets"
STRATEGIES = ("storage-account-key", "random", "notify-only")
ALPHABETS = {
    "alphanumeric": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "urlsafe": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    "hex": "0123456789abcdef",
    "printable": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~",
}
# ``\Z``, not ``$``: jsonschema tests a pattern with ``re.search``, where ``$`` also matches before a
# final line break, so a YAML block scalar (``name: |``) ``"storage-connection\n"`` would pass and
# then never match the name Key Vault reports (``guardrails.policy.fragments``)
_VAULT = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]\Z")
_OBJECT = re.compile(r"^[A-Za-z0-9-]{1,127}\Z")

_TEXT = {"type": "string", "minLength": 1, "maxLength": 500}
_VAULT_S = {"type": "string", "pattern": _VAULT.pattern}
_OBJECT_S = {"type": "string", "pattern": _OBJECT.pattern}

SCHEMA: dict[str, Any] = document(
    SECRETS_KIND, "guardrails secrets policy", ("id", "version", "kind", "description", "mode"),
    ("enforce", "audit", "off"), _TEXT,
    **{
        "selector": {"type": "object", "additionalProperties": False,
                     "properties": {"vaults": {"type": "array", "items": _VAULT_S, "uniqueItems": True}}},
        "hygiene": {"type": "object", "additionalProperties": False, "properties": {
            "require_expiry": {"type": "boolean"},
            "max_validity_days": {"type": "integer", "minimum": 1, "maximum": 3650}}},
        "secrets": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["vault", "name", "owner", "rotation"],
            "properties": {
                "vault": _VAULT_S, "name": _OBJECT_S, "owner": _TEXT, "description": _TEXT,
                "rotation": {"type": "object", "additionalProperties": False, "required": ["strategy"], "properties": {
                    "strategy": {"enum": list(STRATEGIES)},
                    "account": _TEXT,
                    "format": {"enum": ["key", "connection-string"]},
                    "length": {"type": "integer", "minimum": 16, "maximum": 1024},
                    "alphabet": {"enum": list(ALPHABETS)},
                }},
            }}},
        "keys": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["vault", "name", "owner"],
            "properties": {"vault": _VAULT_S, "name": _OBJECT_S, "owner": _TEXT, "rotate": {"type": "boolean"}}}},
        "breaker": {"type": "object", "additionalProperties": False, "required": ["max_actions", "window_seconds"],
                    "properties": {"max_actions": {"type": "integer", "minimum": 1, "maximum": 100000},
                                   "window_seconds": {"type": "integer", "minimum": 1, "maximum": 86400}}},
    },
)
TOP_LEVEL_KEYS = tuple(SCHEMA["properties"])
REQUIRED_KEYS = tuple(SCHEMA["required"])


@dataclass(frozen=True)
class Rotation:
    strategy: str
    account: str | None = None
    format: str = "key"
    length: int = 48
    alphabet: str = "urlsafe"


@dataclass(frozen=True)
class SecretReference:
    vault: str
    name: str
    owner: str
    rotation: Rotation
    description: str = ""

    def matches(self, vault: str, name: str) -> bool:
        return self.vault.lower() == vault.lower() and self.name.lower() == name.lower()


@dataclass(frozen=True)
class KeyReference:
    vault: str
    name: str
    owner: str
    rotate: bool = True

    def matches(self, vault: str, name: str) -> bool:
        return self.vault.lower() == vault.lower() and self.name.lower() == name.lower()


@dataclass(frozen=True)
class Breaker:
    max_actions: int = 50
    window_seconds: int = 600


@dataclass(frozen=True)
class SecretPolicy:
    id: str
    version: int
    description: str
    mode: str
    vaults: tuple[str, ...] = ()
    require_expiry: bool = True
    max_validity_days: int | None = None
    secrets: tuple[SecretReference, ...] = ()
    keys: tuple[KeyReference, ...] = ()
    breaker: Breaker = Breaker()
    source: str = field(default="", compare=False)
    kind: ClassVar[str] = SECRETS_KIND

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def governs(self, vault: str) -> bool:
        return not self.vaults or vault.lower() in {v.lower() for v in self.vaults}

    def secret(self, vault: str, name: str) -> SecretReference | None:
        return next((s for s in self.secrets if s.matches(vault, name)), None)

    def key(self, vault: str, name: str) -> KeyReference | None:
        return next((k for k in self.keys if k.matches(vault, name)), None)

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "version": self.version, "kind": SECRETS_KIND,
                               "description": self.description, "mode": self.mode}
        if self.vaults:
            doc["selector"] = {"vaults": list(self.vaults)}
        hyg: dict[str, Any] = {"require_expiry": self.require_expiry}
        if self.max_validity_days is not None:
            hyg["max_validity_days"] = self.max_validity_days
        doc["hygiene"] = hyg
        doc["secrets"] = [{"vault": s.vault, "name": s.name, "owner": s.owner,
                           **({"description": s.description} if s.description else {}),
                           "rotation": _rotation_doc(s.rotation)} for s in self.secrets]
        doc["keys"] = [{"vault": k.vault, "name": k.name, "owner": k.owner, "rotate": k.rotate} for k in self.keys]
        doc["breaker"] = {"max_actions": self.breaker.max_actions, "window_seconds": self.breaker.window_seconds}
        return doc


def _rotation_doc(r: Rotation) -> dict[str, Any]:
    if r.strategy == "storage-account-key":
        return {"strategy": r.strategy, "account": r.account, "format": r.format}
    if r.strategy == "random":
        return {"strategy": r.strategy, "length": r.length, "alphabet": r.alphabet}
    return {"strategy": r.strategy}


def account_identity(account: str | None) -> tuple[str, ...] | None:
    """A ``rotation.account`` as ARM tells storage accounts apart (its id's segments, folded as ARM
    compares names: ``ArmId.segments``); None when it is no ARM id."""
    from guardrails.errors import InvalidArmId
    from guardrails.model.arm_id import parse_arm_id

    if not account:
        return None
    try:
        return parse_arm_id(account).segments()
    except InvalidArmId:
        return None


def _shares_account(a: SecretReference, b: SecretReference) -> bool:
    """Two references to two secrets whose rotations regenerate the keys of one storage account."""
    if a.rotation.strategy != "storage-account-key" or b.rotation.strategy != "storage-account-key":
        return False
    if a.matches(b.vault, b.name):
        return False                  # one secret (named by two policies): it holds one key
    mine = account_identity(a.rotation.account)
    return mine is not None and mine == account_identity(b.rotation.account)


def shared_account_note(account: str | None, other: str) -> str:
    """Why two secrets must not rotate one storage account's keys (a finding, an audit row)."""
    return (f"storage account {account} is also rotated by {other}: each secret's rotation regenerates the "
            f"account key it does not hold, which is the key the other secret holds, so every rotation would "
            f"lock the other secret's consumers out; keep one secret per storage account (let every consumer "
            f"read that one secret)")


def account_sharers(policies, ref: SecretReference) -> list[tuple[Any, SecretReference]]:
    """``(policy, reference)`` of every other secret, in ``policies`` (any mode: a secret an ``off``
    or ``audit`` policy names still holds a key), whose ``storage-account-key`` rotation names the
    storage account ``ref`` rotates."""
    return [(p, s) for p in policies if getattr(p, "kind", "") == SECRETS_KIND
            for s in p.secrets if _shares_account(ref, s)]


def shared_account_findings(policies) -> list[tuple[str, str, str, str]]:
    """``(source, policy id, json path, message)`` for each reference whose storage account a
    reference in an EARLIER policy of ``policies`` (a validated set) also rotates; two in one policy
    are ``semantics``' finding."""
    out: list[tuple[str, str, str, str]] = []
    seen: list[SecretPolicy] = []
    for p in policies:
        if getattr(p, "kind", "") != SECRETS_KIND:
            continue
        for i, s in enumerate(p.secrets):
            first = next(((q, r) for q in seen for r in q.secrets if _shares_account(s, r)), None)
            if first is not None:
                q, r = first
                out.append((p.source, p.id, f"$.secrets[{i}].rotation.account", shared_account_note(
                    s.rotation.account, f"{r.vault}/{r.name} in policy '{q.id}' ({q.source})")))
        seen.append(p)
    return out


def semantics(doc: Mapping[str, Any], *, strict: bool = True) -> tuple[SecretPolicy | None, list[tuple[str, str]]]:
    """Pass 3 for ``kind: secrets`` (the document already passed the schema). ``strict`` False (a
    worker reading rows ``metadata sync`` wrote): what an earlier release accepted is not held
    against a row again (two secrets rotating one storage account's keys: refused at decision time
    instead, ``SecretGuardrail``)."""
    from guardrails.model.arm_id import parse_arm_id
    from guardrails.errors import InvalidArmId

    found: list[tuple[str, str]] = []
    refs: list[SecretReference] = []
    seen: dict[tuple[str, str], int] = {}
    for i, s in enumerate(doc.get("secrets", ())):
        path = f"$.secrets[{i}]"
        key = (s["vault"].lower(), s["name"].lower())
        if key in seen:
            found.append((path, f"secret {s['vault']}/{s['name']} is referenced twice (also $.secrets[{seen[key]}])"))
        seen.setdefault(key, i)
        r = s["rotation"]
        strategy = r["strategy"]
        if strategy == "storage-account-key":
            if "account" not in r:
                found.append((f"{path}.rotation", "storage-account-key rotation needs 'account' (the storage account id)"))
            else:
                try:
                    acct = parse_arm_id(r["account"])
                    if acct.resource_type.lower() != "microsoft.storage/storageaccounts":
                        found.append((f"{path}.rotation.account", "must be a Microsoft.Storage/storageAccounts id"))
                except InvalidArmId as exc:
                    found.append((f"{path}.rotation.account", f"not an ARM id: {exc}"))
            for k in ("length", "alphabet"):
                if k in r:
                    found.append((f"{path}.rotation.{k}", f"'{k}' applies to the random strategy only"))
        elif strategy == "random":
            for k in ("account", "format"):
                if k in r:
                    found.append((f"{path}.rotation.{k}", f"'{k}' applies to storage-account-key only"))
        elif len(r) > 1:
            found.append((f"{path}.rotation", "notify-only takes no options"))
        refs.append(SecretReference(s["vault"], s["name"], s["owner"], Rotation(
            strategy=strategy, account=r.get("account"), format=r.get("format", "key"),
            length=r.get("length", 48), alphabet=r.get("alphabet", "urlsafe")), s.get("description", "")))
    keys: list[KeyReference] = []
    kseen: set[tuple[str, str]] = set()
    for i, k in enumerate(doc.get("keys", ())):
        kk = (k["vault"].lower(), k["name"].lower())
        if kk in kseen:
            found.append((f"$.keys[{i}]", f"key {k['vault']}/{k['name']} is referenced twice"))
        kseen.add(kk)
        keys.append(KeyReference(k["vault"], k["name"], k["owner"], k.get("rotate", True)))
    vaults = tuple((doc.get("selector") or {}).get("vaults", ()))
    if vaults:
        for i, s in enumerate(refs):
            if s.vault.lower() not in {v.lower() for v in vaults}:
                found.append((f"$.secrets[{i}].vault", f"vault {s.vault} is outside this policy's selector"))
    if strict:
        for i, ref in enumerate(refs):
            j = next((j for j, r in enumerate(refs[:i]) if _shares_account(ref, r)), None)
            if j is not None:
                found.append((f"$.secrets[{i}].rotation.account", shared_account_note(
                    ref.rotation.account, f"$.secrets[{j}] ({refs[j].vault}/{refs[j].name})")))
    hyg = doc.get("hygiene") or {}
    if found:
        return None, found
    b = doc.get("breaker")
    return SecretPolicy(
        id=doc["id"], version=int(doc["version"]), description=doc["description"], mode=doc["mode"],
        vaults=vaults, require_expiry=hyg.get("require_expiry", True), max_validity_days=hyg.get("max_validity_days"),
        secrets=tuple(refs), keys=tuple(keys),
        breaker=Breaker(**b) if b else Breaker(),
    ), []
