"""Strategies for fuzzing deliveries: mostly near-valid events, some arbitrary JSON.

Every near-valid event starts from a real-shaped delivery (the shared fixtures in
``tests/events/``, the ``tests/builders`` events for the resources seeded in the fake ARM, and
Key Vault system-topic events for a seeded vault) and gets zero or more mutations: fields
dropped, replaced or retyped (numbers, NaN/inf, huge ints, lists, objects where strings go), keys
re-cased (PascalCase/camelCase/snake_case), the schema mixed (Event Grid <-> CloudEvents, both
type keys, odd ``specversion``), resource ids swapped, re-cased or injected (traversal, query,
fragment, percent-encoding, confusable slashes, controls, bidi overrides), topic/source and
``VaultName`` swapped, claims naming the guardrail in every spelling, huge strings, deep
nesting, and whole-delivery wrapping (a batch list, a JSON string).

Everything here is deterministic given Hypothesis' choices (no uuid4, no clock), so a
derandomized CI run always tests the same events.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from guardrails.model.events import RESOURCE_EVENT_TYPES
from guardrails.model.resource import CATALOG
from tests import builders as b
from tests import events as fx

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
GUARDRAIL = b.GUARDRAIL_OID
OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
NAME = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
CORRELATION = "0f0e0d0c-0b0a-4908-8706-050403020100"


# -- the fake ARM's resources ----------------------------------------------------------------
def _fixture_storage() -> dict:
    res = b.storage(fx.STORAGE_ACCOUNT, rg=fx.RESOURCE_GROUP)
    res["id"] = fx.STORAGE_ACCOUNT_ID
    return res


def _wrong_type() -> dict:
    # ARM answering with another type than the id says (the service must fail, not write)
    res = b.key_vault("kv-wrong-type")
    res["type"] = "Microsoft.Storage/storageAccounts"
    return res


def _put_with_etag() -> dict:
    res = b.ml_registry("mlreg-etag")
    res["etag"] = '"0x8D0"'
    return res


SEED_RESOURCES: tuple[dict, ...] = (
    b.storage(),                                        # violates both storage rules (PATCH)
    b.storage("stcompliant", pna="Disabled", blob=False),
    b.storage("stnoprops", pna=None, blob=None),        # absent values: catalogue defaults
    b.workspace(),                                      # PATCH
    b.workspace("mlw-private", pna="Disabled"),
    b.ml_registry(),                                    # full PUT
    _put_with_etag(),
    b.key_vault(),                                      # set + notify-only rule
    b.container_registry(),
    b.compute(),                                        # immutable property: notify only
    _fixture_storage(),                                 # the id used by the shared fixtures
    _wrong_type(),
)

COVERED_TYPES = tuple(sorted(t.name for t in CATALOG.values()))


# -- ids -------------------------------------------------------------------------------------
def _ids() -> tuple[str, ...]:
    sa = b.storage()["id"]
    base = [r["id"] for r in SEED_RESOURCES]
    rg, sub = b.rg_id(), f"/subscriptions/{b.SUB}"
    ra = "0a9b8c7d-6e5f-4a3b-8c1d-0e9f8a7b6c5d"
    more = [
        sa + "/blobServices/default/containers/models",          # child of a covered type
        sa + f"/providers/Microsoft.Authorization/roleAssignments/{ra}",
        sa + "/providers/Microsoft.Storage/storageAccounts/ext",  # extension of a covered type
        rg + f"/providers/Microsoft.Authorization/roleAssignments/{ra}",
        rg + "/providers/Microsoft.Authorization/locks/no-delete",
        sub + f"/providers/Microsoft.Authorization/roleAssignments/{ra}",
        rg, sub, "/providers/Microsoft.Management/managementGroups/mg-root",
        "/providers/Microsoft.Storage/storageAccounts/tenantlevel",   # tenant-level, covered type
        b.rid("Microsoft.Storage", "storageAccounts", "stnotseeded"),  # covered, ARM says 404
        b.rid("Microsoft.Web", "sites", "app-not-covered"),
        b.rid("Microsoft.MachineLearningServices", "workspaces", "mlw-prod", rg="other-rg"),
        b.rid("microsoft.storage", "STORAGEACCOUNTS", "stmlprod"),    # re-cased covered type
        b.rid("Microsoft.KeyVault", "vaults", "kv-ml-prod").replace("resourceGroups", "resourcegroups"),
        b.rid("Microsoft.Storage", "storageAccounts", "stmlprod", sub="00000000-0000-0000-0000-000000000000"),
        fx.STORAGE_ACCOUNT_ID,
    ]
    return tuple(dict.fromkeys(base + more))


IDS = _ids()

INJECTIONS = (
    "?api-version=2099-01-01", "#frag", "/../../providers/Microsoft.Storage/storageAccounts/other",
    "/..", "/.", "//", "/", "%2e%2e", "%2F", "%00", "\\..\\x", " ", "\t", "\n", "\r\n", "\x00",
    "\x7f", "\u0085", "\u2028", "\u202e", "\u200b", "\u200d", "\ufeff", "\uff0f", "\u2215",
    "\u2044", "&x=1", ";x", "'", '"', "<script>alert(1)</script>", "{{7*7}}", "${jndi:ldap://x/a}",
    "' OR '1'='1", "|id", "`id`", "$(id)", "\u00e9", "\U0001F600", "\u0130", "\u00df", "\ufb01",
    "\u212a", "e\u0301", "\ud800", "\udfff", "@", ":", "*", "+", "~", "(", ")", "!", "$", ",",
    "=", "A" * 300, "n" * 2100,
)

WEIRD_STRINGS = (
    "", " ", "\x00", "\n", "null", "None", "true", "1.0", "NaN", "-0", "[]", "{}", "\u202e",
    "\ud83d", "\U0010FFFF", "\u0000\u0001\u001f", "é" * 10, "𝕬" * 5, "\u0130stanbul", "ǅ",
    "Microsoft.Resources.ResourceWriteSuccess", "microsoft.resources.resourcewritesuccess",
    "MICROSOFT.RESOURCES.RESOURCEWRITESUCCESS", " Microsoft.Resources.ResourceWriteSuccess",
    "Microsoft.Resources.ResourceWriteSuccess\n", "Microsoft.Resources.ResourceWriteSuccess\u200b",
    "Microsoft.Resources.ResourceWriteSuccess.", "Microsoft.Storage.BlobCreated",
    "Microsoft.EventGrid.SubscriptionValidationEvent", "1.0", "0.3", "1.0 ", "1.00",
)

TIMES = (
    "2018-07-19T18:38:04.6117357Z", "2018-07-19T18:38:04Z", "2018-07-19T18:38:04", "2018-07-19",
    "2018-07-19T18:38:04+14:00", "2018-07-19T18:38:04-23:59", "9999-12-31T23:59:59.999999+14:00",
    "0001-01-01T00:00:00-05:00", "2018-13-40T25:61:61Z", "20180719T183804Z", "2018-W29-4",
    "yesterday", "", "1" * 64, "1" * 65, "2018-07-19T18:38:04Z\x00", "2018-07-19T18:38:04.Z",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",       # out of range once made UTC
    "2099-01-01T00:00:00Z", "2026-11-24T10:00:00.1234567Z",          # future; near the seeds' times
)

GUARDRAIL_SPELLINGS = (
    GUARDRAIL, GUARDRAIL.upper(), GUARDRAIL.replace("-", ""), GUARDRAIL.replace("-", "").upper(),
    f" {GUARDRAIL} ", f"\u00a0{GUARDRAIL}", "{" + GUARDRAIL + "}", GUARDRAIL + "\n",
    GUARDRAIL + "\u200b", GUARDRAIL[:-1], GUARDRAIL + "0", GUARDRAIL.replace("-", "--"),
)

EVENT_TYPES = tuple(sorted(RESOURCE_EVENT_TYPES)) + (
    "Microsoft.Storage.BlobCreated", "Microsoft.EventGrid.SubscriptionValidationEvent",
    "Microsoft.KeyVault.SecretNewVersionCreated", "Microsoft.KeyVault.VaultAccessPolicyChanged",
    "Microsoft.KeyVault.KeyNearExpiry", "Guardrails.SecretExposed", "Microsoft.MachineLearningServices.RunCompleted",
)


# -- base deliveries -------------------------------------------------------------------------
def _deterministic(event: dict, n: int) -> dict:
    event["id"] = f"fuzz-{n:04d}-0000-4000-8000-000000000000"
    event["eventTime" if "eventTime" in event else "time"] = f"2026-11-24T10:00:{n % 60:02d}.1234567Z"
    if isinstance(event.get("data"), dict) and "correlationId" in event["data"]:
        event["data"]["correlationId"] = CORRELATION
    return event


def _base_events() -> tuple[dict, ...]:
    out: list[dict] = [fx.load_event(n) for n in fx.names() if not n.endswith("expected-response")]
    n = 0
    for res in SEED_RESOURCES:
        for make in (b.write_event, b.cloud_event):
            n += 1
            out.append(_deterministic(make(res["id"]), n))
        n += 1
        out.append(_deterministic(b.write_event(res["id"], actor=b.claims(GUARDRAIL, upn=None)), n))
        n += 1
        out.append(_deterministic(b.write_event(res["id"], actor=b.claims(app_id=GUARDRAIL)), n))
    for etype in ("Microsoft.Resources.ResourceDeleteSuccess", "Microsoft.Resources.ResourceActionSuccess",
                  "Microsoft.Resources.ResourceWriteFailure"):
        n += 1
        out.append(_deterministic(b.write_event(b.storage()["id"], event_type=etype), n))
    for vault in (b.key_vault(), _wrong_type()):
        for kind in ("VaultAccessPolicyChanged", "SecretNewVersionCreated", "SecretNearExpiry", "KeyExpired"):
            for schema in ("eventgrid", "cloudevents"):
                n += 1
                out.append(_deterministic(keyvault_event(vault["id"], kind, schema), n))
    n += 1
    out.append(_deterministic(keyvault_event(b.key_vault()["id"], "Exposed", "cloudevents"), n))
    return tuple(out)


def keyvault_event(vault_id: str, kind: str, schema: str) -> dict:
    """A Key Vault system-topic delivery (or the product's own ``Guardrails.SecretExposed``)."""
    vault = vault_id.rsplit("/", 1)[-1]
    if kind == "VaultAccessPolicyChanged":
        data = {"Id": f"https://{vault}.vault.azure.net/", "VaultName": vault, "ObjectType": "Vault",
                "ObjectName": vault, "Version": None, "NBF": None, "EXP": None}
        subject = vault
    else:
        obj = "Key" if kind.startswith("Key") else "Secret"
        data = {"Id": f"https://{vault}.vault.azure.net/{obj.lower()}s/db-password/0123456789abcdef0123456789abcdef",
                "VaultName": vault, "ObjectType": obj, "ObjectName": "db-password",
                "Version": "0123456789abcdef0123456789abcdef", "NBF": 1559081980, "EXP": "1559082102"}
        subject = "db-password"
    etype = "Guardrails.SecretExposed" if kind == "Exposed" else f"Microsoft.KeyVault.{kind}"
    if kind == "Exposed":
        data = {"VaultName": vault, "ObjectName": "db-password", "ObjectType": "Secret", "Version": None,
                "Source": "scanner/github"}
    if schema == "cloudevents":
        return {"specversion": "1.0", "id": "x", "source": vault_id, "subject": subject, "type": etype,
                "time": "2026-11-24T10:00:00Z", "data": data}
    return {"id": "x", "topic": vault_id, "subject": subject, "eventType": etype, "eventTime": "2026-11-24T10:00:00Z",
            "data": data, "dataVersion": "1", "metadataVersion": "1"}


BASE_EVENTS = _base_events()
# deliveries that may reach ARM are most of the pool (that path is where the damage would be)
VAULT_POLICY_CHANGED = "Microsoft.KeyVault.VaultAccessPolicyChanged"
_WRITE_BASES = tuple(e for e in BASE_EVENTS
                     if e.get("eventType", e.get("type")) in (WRITE_SUCCESS, VAULT_POLICY_CHANGED))


# -- values ----------------------------------------------------------------------------------
_SPECIAL_SCALARS = (None, True, False, 0, -1, 2**63, -(2**70), 10**4000, -(10**300), 1e308, -0.0, 0.1,
                    float("nan"), float("inf"), float("-inf"))
_KEYS = ("", "a", "id", "type", "data", "resourceUri", "claims", "A", "\u00e9", "__proto__", "constructor")


def _text_pool(size: int = 400) -> tuple[str, ...]:
    """Fixed pool of nasty short strings (controls, surrogates, bidi, combining, astral, ...):
    one Hypothesis choice per string instead of two per character keeps 20k events in budget;
    real ``st.text`` still supplies a share of the strings."""
    import random

    rnd = random.Random(20261124)
    ranges = ((0x20, 0x7E), (0x00, 0x1F), (0x7F, 0x9F), (0xA0, 0x24F), (0x300, 0x36F), (0x2000, 0x206F),
              (0xD800, 0xDFFF), (0xE000, 0xE0FF), (0xFE00, 0xFF5E), (0x1F300, 0x1F64F), (0x10FFF0, 0x10FFFF))
    out = []
    for _ in range(size):
        n = rnd.choice((0, 1, 2, 3, 5, 8, 13))
        out.append("".join(chr(rnd.randint(*rnd.choice(ranges))) for _ in range(n)))
    return tuple(out)


TEXT_POOL = _text_pool()
_hyp_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)


def _text(draw: st.DrawFn) -> str:
    return draw(_hyp_text) if draw(st.integers(0, 7)) == 0 else _pick(draw, TEXT_POOL)


@st.composite
def _json_values(draw: st.DrawFn, leaves: int = 5) -> Any:
    """Arbitrary JSON-like values (with NaN/inf and huge ints, as Python's json accepts),
    hand-rolled: ``st.recursive`` costs ~20x more per draw and the budget is 20k events."""
    budget = [leaves]

    def value(depth: int) -> Any:
        shape = draw(st.integers(0, 19)) if depth < 4 and budget[0] > 1 else 0
        if shape <= 13:
            budget[0] -= 1
            if shape <= 3:
                return _pick(draw, _SPECIAL_SCALARS)
            if shape <= 4:
                return draw(st.integers())
            if shape <= 5:
                return draw(st.floats())
            if shape <= 10:
                return _text(draw)
            return _pick(draw, WEIRD_STRINGS)
        n = draw(st.integers(0, 3))
        if shape <= 16:
            return [value(depth + 1) for _ in range(n)]
        return {_pick(draw, _KEYS) if draw(st.booleans()) else _text(draw): value(depth + 1) for _ in range(n)}

    return value(0)


json_values = _json_values()


def _nest(depth: int, kind: str, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if kind == "list" or (kind == "mixed" and i % 2) else {"a": value}
    return value


deep_values = st.builds(_nest, st.sampled_from([50, 400, 990, 1100, 3000]),
                        st.sampled_from(["list", "dict", "mixed"]), st.sampled_from([None, "x", 1]))
huge_strings = st.builds(lambda ch, n: ch * n, st.sampled_from(["A", "é", "\U0001F600", "/", "\x00"]),
                         st.sampled_from([257, 2049, 40_000, 70_000, 300_000]))
replacement_values = st.one_of(
    json_values, json_values, st.sampled_from(WEIRD_STRINGS), st.sampled_from(TIMES),
    st.sampled_from(IDS), huge_strings, deep_values,
)


# -- mutations -------------------------------------------------------------------------------
# (container path, key) — the places a mutation can hit
_CONTAINERS: tuple[tuple[str, ...], ...] = (
    (), (), ("data",), ("data",), ("data",), ("data", "claims"), ("data", "authorization"),
    ("data", "authorization", "evidence"), ("data", "httpRequest"),
)


def _container(event: Any, path: tuple[str, ...]) -> dict | None:
    cur = event
    for seg in path:
        if not isinstance(cur, dict):
            return None
        nxt = cur.get(seg)
        if nxt is None and seg == "evidence":
            nxt = cur.get("Evidence")
        cur = nxt
    return cur if isinstance(cur, dict) else None


def _recase(key: str, how: str) -> str:
    if not key:
        return key
    return {
        "pascal": key[0].upper() + key[1:],
        "camel": key[0].lower() + key[1:],
        "lower": key.lower(),
        "upper": key.upper(),
        "snake": "".join("_" + c.lower() if c.isupper() else c for c in key).lstrip("_"),
        "space": key + " ",
        "zwsp": key + "\u200b",
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in key),
    }[how]


def _to_cloudevents(ev: dict) -> dict:
    out = {"specversion": "1.0", "source": ev.get("topic"), "type": ev.get("eventType"),
           "time": ev.get("eventTime")}
    out.update({k: v for k, v in ev.items() if k not in ("topic", "eventType", "eventTime", "dataVersion",
                                                         "metadataVersion")})
    return out


def _to_eventgrid(ev: dict) -> dict:
    out = {"topic": ev.get("source"), "eventType": ev.get("type"), "eventTime": ev.get("time"),
           "dataVersion": "2", "metadataVersion": "1"}
    out.update({k: v for k, v in ev.items() if k not in ("specversion", "specVersion", "source", "type", "time")})
    return out


def _pick(draw: st.DrawFn, options: tuple | list) -> Any:
    return options[draw(st.integers(0, len(options) - 1))]


_OPS = ("drop", "replace", "replace", "retype", "recase", "resource_uri", "resource_uri", "resource_uri",
        "event_type", "schema", "claims", "claims", "time", "add", "huge", "deep", "source", "vault_name")
_URI_HOW = ("swap", "swap", "inject", "inject", "recase", "segment", "grammar")
_GRAMMAR_TYPES = COVERED_TYPES + ("Microsoft.Storage/storageAccounts/blobServices", "Microsoft.Storage/storageaccount")
_GRAMMAR_NAMES = ("x", "stmlprod", "mlw-prod", "a.b", "\u00fc", "kv-ml-prod")
_GRAMMAR_RGS = (b.RG, "RG-ML-PROD", "rg.(x)", "r" * 91, "rg-\u00fc", fx.RESOURCE_GROUP)
_GRAMMAR_SUBS = (b.SUB, b.SUB.upper(), fx.SUBSCRIPTION_ID, "not-a-guid")
_SEGMENTS = st.one_of(st.sampled_from(INJECTIONS), st.sampled_from(TEXT_POOL), _hyp_text, st.just(""))
_EVENT_TYPE_VALUES = st.one_of(st.sampled_from(EVENT_TYPES), st.sampled_from(WEIRD_STRINGS), json_values)
_VAULT_NAMES = ("kv-ml-prod", "KV-ML-PROD", " kv-ml-prod ", "kv-wrong-type", "stmlprod", "kv--x", "k", "kv-ml-prod\n",
                "kv-ml-prod\u200b", "a" * 25, "", None, 7, ["kv-ml-prod"])
_VAULT_NAME_KEYS = ("VaultName", "vaultname", "VaultName ", "VAULTNAME", "Vault_Name")
_SPEC_VALUES = st.one_of(st.sampled_from(("1.0", "1", "1.0 ", "0.3", "", "2.0")), st.just(1.0), json_values)
_TIME_VALUES = st.one_of(st.sampled_from(TIMES), st.datetimes().map(lambda d: d.isoformat()), json_values)
_CLAIM_KEYS = (OID, "oid", "appid", "azp", UPN, "upn", NAME, "OID", "AppId")
_NEW_KEYS = st.one_of(st.sampled_from(("resourceUri", "ResourceUri", "claims", "data", "id", "eventType", "type",
                                       "specversion", "Action", "action", "__proto__")), st.sampled_from(TEXT_POOL))
_NUMBERS = (0, 1, -1, 1.5, float("nan"), float("inf"), 10**30)
_RECASINGS = ("pascal", "camel", "lower", "upper", "snake", "space", "zwsp", "fullwidth")


def mutate(draw: st.DrawFn, event: Any) -> Any:
    """Apply one mutation (in place where possible); returns the (possibly new) delivery."""
    if not isinstance(event, dict):
        return event
    op = _pick(draw, _OPS)
    data = event.get("data") if isinstance(event.get("data"), dict) else None

    if op == "resource_uri" and data is not None:
        uri = data.get("resourceUri")
        how = _pick(draw, _URI_HOW)
        if how == "swap" or not isinstance(uri, str):
            data["resourceUri"] = _pick(draw, IDS)
        elif how == "inject":
            bad = _pick(draw, INJECTIONS)
            if draw(st.booleans()):
                pos = draw(st.integers(0, len(uri)))
                data["resourceUri"] = uri[:pos] + bad + uri[pos:]
            else:
                data["resourceUri"] = uri + bad
        elif how == "recase":
            data["resourceUri"] = _pick(draw, (uri.upper(), uri.lower(), uri.swapcase()))
        elif how == "segment":
            segs = uri.split("/")
            segs[draw(st.integers(0, len(segs) - 1))] = draw(_SEGMENTS)
            data["resourceUri"] = "/".join(segs)
        else:  # a grammatical id of a covered (or near-covered) type, mostly not seeded
            ns, *types = _pick(draw, _GRAMMAR_TYPES).split("/")
            tail = "".join(f"/{t}/{_pick(draw, _GRAMMAR_NAMES)}" for t in types)
            data["resourceUri"] = (f"/subscriptions/{_pick(draw, _GRAMMAR_SUBS)}/resourceGroups/"
                                   f"{_pick(draw, _GRAMMAR_RGS)}/providers/{ns}{tail}")
        return event

    if op == "event_type":
        key = "type" if ("specversion" in event or "specVersion" in event) else "eventType"
        event[key] = draw(_EVENT_TYPE_VALUES)
        return event

    if op == "source":     # the topic (Event Grid) / source (CloudEvents): the vault's ARM id for Key Vault
        key = "source" if ("specversion" in event or "specVersion" in event) else "topic"
        cur = event.get(key)
        how = _pick(draw, ("swap", "swap", "inject", "recase", "drop", "replace"))
        if how == "swap" or not isinstance(cur, str):
            event[key] = _pick(draw, IDS)
        elif how == "inject":
            event[key] = cur + _pick(draw, INJECTIONS)
        elif how == "recase":
            event[key] = _pick(draw, (cur.upper(), cur.lower()))
        elif how == "drop":
            event.pop(key, None)
        else:
            event[key] = draw(replacement_values)
        return event

    if op == "vault_name" and data is not None:
        for k in [k for k in data if isinstance(k, str) and k.strip().lower() == "vaultname"]:
            del data[k]
        data[_pick(draw, _VAULT_NAME_KEYS)] = _pick(draw, _VAULT_NAMES)
        return event

    if op == "schema":
        how = _pick(draw, ("to_ce", "to_eg", "spec_key", "spec_value", "both_types", "drop_spec"))
        is_ce = "specversion" in event or "specVersion" in event
        if how == "to_ce" and not is_ce:
            return _to_cloudevents(event)
        if how == "to_eg" and is_ce:
            return _to_eventgrid(event)
        if how == "spec_key":
            event[_pick(draw, ("specversion", "specVersion", "SpecVersion", "spec_version"))] = "1.0"
        elif how == "spec_value":
            event["specversion" if "specversion" in event or not is_ce else "specVersion"] = draw(_SPEC_VALUES)
        elif how == "both_types":
            event["type"] = _pick(draw, EVENT_TYPES)
            event["eventType"] = _pick(draw, EVENT_TYPES)
        else:
            event.pop("specversion", None)
            event.pop("specVersion", None)
        return event

    if op == "claims" and data is not None:
        claims = data.get("claims")
        if not isinstance(claims, dict):
            claims = data["claims"] = {}
        key = _pick(draw, _CLAIM_KEYS)
        how = _pick(draw, ("guardrail", "guardrail", "weird", "drop", "unusable_first"))
        if how == "guardrail":
            claims[key] = _pick(draw, GUARDRAIL_SPELLINGS)
        elif how == "weird":
            claims[key] = draw(replacement_values)
        elif how == "drop":
            claims.pop(key, None)
        else:   # the preferred claim unusable, a fallback naming the guardrail
            claims[OID] = _pick(draw, ("", " ", "x" * 300, "a\nb", 7, None))
            claims["oid"] = _pick(draw, GUARDRAIL_SPELLINGS)
        return event

    if op == "time":
        event[_pick(draw, ("eventTime", "time", "EventTime"))] = draw(_TIME_VALUES)
        return event

    if op == "huge":
        target = _pick(draw, ("id", "subject", "topic", "data.blob", "data.correlationId", "data.operationName",
                              "data.claims.name"))
        value = draw(huge_strings)
        if target.startswith("data.") and data is not None:
            parts = target.split(".")[1:]
            cur = data
            if len(parts) == 2:
                cur = data.get(parts[0]) if isinstance(data.get(parts[0]), dict) else data
            cur[parts[-1]] = value
        else:
            event[target.split(".")[0]] = value
        return event

    if op == "deep":
        target = _pick(draw, ("data", "data.extra", "data.claims", "data.authorization", "subject", "extra"))
        value = draw(deep_values)
        if target.startswith("data.") and data is not None:
            data[target[5:]] = value
        else:
            event[target] = value
        return event

    container = _container(event, _pick(draw, _CONTAINERS))
    if container is None:
        container = event
    keys = sorted(container, key=str)
    if op == "add" or not keys:
        container[draw(_NEW_KEYS)] = draw(replacement_values)
        return event
    key = _pick(draw, keys)
    if op == "drop":
        del container[key]
    elif op == "replace":
        container[key] = draw(replacement_values)
    elif op == "retype":
        value = container[key]
        how = _pick(draw, ("list", "object", "number", "string", "bool", "null"))
        if how == "list":
            container[key] = [value]
        elif how == "object":
            container[key] = {"value": value}
        elif how == "number":
            container[key] = _pick(draw, _NUMBERS)
        elif how == "string":
            try:
                container[key] = value if isinstance(value, str) else json.dumps(value)
            except (ValueError, RecursionError):
                container[key] = str(type(value))
        elif how == "bool":
            container[key] = draw(st.booleans())
        else:
            container[key] = None
    else:  # recase
        container[_recase(key, _pick(draw, _RECASINGS))] = container.pop(key)
    return event


_BASE_TEXTS = tuple(json.dumps(e) for e in BASE_EVENTS)
_WRITE_TEXTS = tuple(json.dumps(e) for e in _WRITE_BASES)
_POOLS = (_WRITE_TEXTS, _WRITE_TEXTS, _BASE_TEXTS)
_MUTATION_COUNTS = (0, 0, 1, 1, 1, 2, 2, 3, 5)
_WRAPS = ("none",) * 12 + ("batch", "json_text", "nested", "batch_of_two")


@st.composite
def near_valid_events(draw: st.DrawFn) -> Any:
    event: Any = json.loads(_pick(draw, _pick(draw, _POOLS)))     # a fresh copy of a real delivery
    for _ in range(_pick(draw, _MUTATION_COUNTS)):
        event = mutate(draw, event)
    wrap = _pick(draw, _WRAPS)
    if wrap == "batch":
        return [event]
    if wrap == "json_text":
        try:
            return json.dumps(event)
        except (ValueError, RecursionError):
            return event
    if wrap == "nested":
        return {"data": event, "eventType": "Microsoft.Resources.ResourceWriteSuccess"}
    if wrap == "batch_of_two":
        return [event, event]
    return event


deliveries: st.SearchStrategy[Any] = st.one_of(
    near_valid_events(), near_valid_events(), near_valid_events(), near_valid_events(),
    near_valid_events(), near_valid_events(), near_valid_events(), near_valid_events(), json_values,
    st.dictionaries(st.sampled_from(("id", "eventType", "type", "specversion", "data", "subject", "topic",
                                     "eventTime", "time", "source")), json_values, max_size=8),
)
"""~80% mutated real-shaped events, ~20% arbitrary JSON (bare, or keyed like an envelope)."""


def depth(value: Any, limit: int = 60) -> int:
    """Nesting depth of a JSON-like value, capped at ``limit`` (iterative: no recursion)."""
    best, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        best = max(best, d)
        if best >= limit:
            return limit
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return best


_FIXABLE = tuple(r for r in SEED_RESOURCES if r["name"] in ("stmlprod", "mlw-prod", "mlreg-shared", "mlreg-etag",
                                                             "kv-ml-prod", "acrmlprod"))


@st.composite
def own_write_pairs(draw: st.DrawFn) -> tuple[Any, Any]:
    """A user's write of a fixable resource, then the guardrail's own write event for it
    (possibly mutated): the own write may confirm a fix that was still running."""
    res = draw(st.sampled_from(_FIXABLE))
    first = _deterministic(b.write_event(res["id"]), 901)
    make = draw(st.sampled_from((b.write_event, b.cloud_event)))
    who = draw(st.sampled_from((b.claims(GUARDRAIL, upn=None), b.claims(app_id=GUARDRAIL))))
    own: Any = _deterministic(make(draw(st.sampled_from((res["id"], res["id"].upper(), res["id"].lower()))),
                                   actor=who), 902)
    for _ in range(_pick(draw, (0, 0, 1, 2))):
        own = mutate(draw, own)
    return first, own


class Shown:
    """A generated value with a bounded ``repr``: Hypothesis prints the falsifying example, and a
    3,000-level or 300 KB delivery would not print (RecursionError) or would flood the log."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        import reprlib

        r = reprlib.Repr()
        r.maxlevel, r.maxdict, r.maxlist, r.maxstring, r.maxother, r.maxlong = 12, 30, 12, 300, 300, 60
        return f"Shown({r.repr(self.value)}, depth={depth(self.value, 10_000)})"


shown_deliveries: st.SearchStrategy[Shown] = deliveries.map(Shown)
