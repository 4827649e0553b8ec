"""Fuzz the delivery path: parse_envelope / parse_resource_event and GuardrailsService.handle_event.

Properties, for every generated delivery (see ``strategies.deliveries``):

* ``handle_event`` returns an audit row with a known verdict, or raises a ``GuardrailsError``
  (``DeliveryFailed`` after a ``failed`` row); nothing else escapes;
* exactly one audit row is written per delivery, and it is JSON-serialisable;
* the fake ARM is called ONLY for a ``ResourceWriteSuccess`` whose ``data.resourceUri`` parses to
  a catalogue type and whose caller is not the guardrail, or for a Key Vault
  ``VaultAccessPolicyChanged`` whose topic/source is that vault's id; every call names that
  resource; the guardrail's own write may only read the resource back, and only while one of its
  fixes for that resource is still running (``pending``);
* a redelivery of a handled event writes nothing more;
* each delivery is handled in bounded time (a hang guard, not a benchmark).

The service runs over the functional-test fakes without the role-assignment and secret
guardrails (``roles=None``, ``secrets=None``): those deliveries end ``ignored``/``not_covered``
here, after the envelope and payload have been parsed.

The oracle below restates the documented contract from the raw delivery; it does not call the
product's parsers (only ``parse_arm_id``, which has its own tests).

Run size: ``GUARDRAILS_FUZZ_EXAMPLES`` (see ``_config``); ``make fuzz`` runs 200,000 with random seeds.
"""

from __future__ import annotations

import copy
import json
import time
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import event, given, note
from hypothesis import strategies as st

from guardrails.errors import (
    ArmError, ArmThrottled, ArmTransient, GuardrailsError, InvalidArmId, InvalidEvent, ResourceNotFound,
)
from guardrails.model.arm_id import ArmId, fold, parse_arm_id
from guardrails.model.decision import VERDICTS, AuditRow
from guardrails.model.events import parse_envelope, parse_resource_event
from guardrails.model.resource import CATALOG
from guardrails.policy.cache import PolicyCache
from guardrails.policy.loader import load_directory
from guardrails.service import DeliveryFailed, GuardrailsService
from guardrails.settings import Settings
from guardrails.sync import metadata_dirs
from tests.functional.fakes import (
    FakeArm, MemoryAudit, MemoryBreakers, MemoryIdempotency, MemoryPending, MemoryPolicyRepo,
)
from tests.fuzz import _config as cfg
from tests.fuzz import strategies as s

SERVICE_EXAMPLES = cfg.examples(0.75)   # 15,000 of the default 20,000
PARSE_EXAMPLES = cfg.examples(0.25)     # 5,000

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
OID_KEYS = (s.OID, "oid")
APP_KEYS = ("appid", "azp")
GUARDRAIL_KEY = s.GUARDRAIL.replace("-", "").lower()
REASONS = {"not_an_object", "missing_field", "wrong_type", "invalid_value", "missing_data", "oversized",
           "invalid_resource_id", "unsupported_event_type"}


# -- the oracle ------------------------------------------------------------------------------
def _usable_claim(claims: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The documented claim rule: first present claim that is a non-blank string of at most 256
    characters without control characters (else the claim counts as absent)."""
    for key in keys:
        v = claims.get(key)
        if (isinstance(v, str) and v.strip() and len(v) <= 256
                and not any(unicodedata.category(c)[0] == "C" for c in v)):
            return v.strip()
    return None


def _is_guardrail(claims: Mapping[str, Any]) -> bool:
    # the object id decides when the token has one (a user's token may carry the guardrail's app id)
    oid = _usable_claim(claims, OID_KEYS)
    i = oid if oid is not None else _usable_claim(claims, APP_KEYS)
    return i is not None and i.lower().replace("-", "") == GUARDRAIL_KEY


def _envelope_fields(raw: Mapping[str, Any]) -> tuple[Any, Any]:
    """(type, topic/source) read per schema: CloudEvents when a specversion key is present or
    ``type`` comes without ``eventType``; else Event Grid."""
    cloudevents = "specversion" in raw or "specVersion" in raw or ("type" in raw and "eventType" not in raw)
    return (raw.get("type"), raw.get("source")) if cloudevents else (raw.get("eventType"), raw.get("topic"))


def _parse(text: Any) -> ArmId | None:
    try:
        return parse_arm_id(text) if isinstance(text, str) else None
    except InvalidArmId:
        return None


def arm_target(raw: Any) -> tuple[ArmId, str] | None:
    """The one resource ARM may be called for, and why; None when no call is allowed.

    ``write``         a ``ResourceWriteSuccess`` whose ``data.resourceUri`` parses to a catalogue
                      type, by someone other than the guardrail;
    ``own_write``     the same, written by the guardrail (only a read-back, only with a fix pending);
    ``vault_policy``  a ``VaultAccessPolicyChanged`` whose topic/source parses to a Key Vault id
                      naming the vault in ``data.VaultName`` (key and value trimmed, any case).
    """
    if not isinstance(raw, Mapping) or not isinstance(raw.get("data"), Mapping):
        return None
    etype, source = _envelope_fields(raw)
    etype = etype.lower() if isinstance(etype, str) else etype      # types match in any case
    data = raw["data"]
    if etype == WRITE_SUCCESS.lower():
        rid = _parse(data.get("resourceUri"))
        if rid is None or rid.resource_type.lower() not in CATALOG:
            return None
        claims = data.get("claims")
        return rid, "own_write" if isinstance(claims, Mapping) and _is_guardrail(claims) else "write"
    if etype == s.VAULT_POLICY_CHANGED.lower():
        rid = _parse(source)
        if rid is None or rid.resource_type.lower() != "microsoft.keyvault/vaults":
            return None
        names = [v.strip().lower() for k, v in data.items()
                 if isinstance(k, str) and k.strip().lower() == "vaultname" and isinstance(v, str)]
        return (rid, "vault_policy") if (rid.name or "").lower() in names else None
    return None


def may_reach_arm(raw: Any) -> ArmId | None:
    """The resource ARM may be called for, ignoring the own-write read-back."""
    target = arm_target(raw)
    return target[0] if target is not None and target[1] != "own_write" else None


# -- the service over the fakes --------------------------------------------------------------
_POLICIES: PolicyCache | None = None


def _policies() -> PolicyCache:
    """One compiled policy set for the whole run (compiling is not what is fuzzed here)."""
    global _POLICIES
    if _POLICIES is None:
        repo = MemoryPolicyRepo([(p.source, p.to_document()) for p in load_directory(*metadata_dirs())])
        _POLICIES = PolicyCache(repo, ttl_seconds=float("inf"))
    return _POLICIES


ARM_MODES = ("ok",) * 10 + ("throttled_write", "transient_get", "missing_get", "requested", "ignore_writes",
                            "rejected_write")


def set_arm_mode(arm: FakeArm, mode: str) -> None:
    arm.errors.clear()
    arm.write_state, arm.ignore_writes = "done", False
    if mode == "throttled_write":
        arm.errors["PATCH"] = arm.errors["PUT"] = ArmThrottled("429 after the retry budget", status=429)
    elif mode == "transient_get":
        arm.errors["GET"] = ArmTransient("503 after the retry budget", status=503)
    elif mode == "missing_get":
        arm.errors["GET"] = ResourceNotFound("gone", status=404)
    elif mode == "rejected_write":
        arm.errors["PATCH"] = arm.errors["PUT"] = ArmError("400 InvalidRequestContent", status=400)
    elif mode == "requested":
        arm.write_state = "requested"
    elif mode == "ignore_writes":
        arm.ignore_writes = True


@dataclass
class World:
    svc: GuardrailsService
    arm: FakeArm
    audit: MemoryAudit
    pending: MemoryPending


_SEEDS_JSON = json.dumps({r["id"].lower(): r for r in s.SEED_RESOURCES})


def make_world() -> World:
    arm, audit, pending = FakeArm(), MemoryAudit(), MemoryPending()
    arm.resources = json.loads(_SEEDS_JSON)     # = FakeArm(s.SEED_RESOURCES), without deepcopy's cost
    svc = GuardrailsService(Settings(own_principal_ids=frozenset({GUARDRAIL_KEY})), policies=_policies(),
                            arm=arm, idempotency=MemoryIdempotency(), audit=audit, breakers=MemoryBreakers(),
                            pending=pending)
    return World(svc, arm, audit, pending)


class KnownBug(Exception):
    """An escape already pinned by a strict xfail in test_fuzz_regressions.py."""


# (exception type, product file it is raised in, the xfail pinning it). Delete an entry when its
# xfail starts passing: the fuzz then checks that path strictly again.
KNOWN_BUGS: tuple = ()


def _known_bug(exc: BaseException) -> str | None:
    tb, files = exc.__traceback__, []
    while tb is not None:
        files.append(tb.tb_frame.f_code.co_filename.replace("\\", "/"))
        tb = tb.tb_next
    for kind, where, test in KNOWN_BUGS:
        if isinstance(exc, kind) and any(f.endswith(where) for f in files):
            return test
    return None


def _retimed(raw: Any) -> float:
    started = time.perf_counter()
    try:
        make_world().svc.handle_event(raw)
    except Exception:      # the first delivery's outcome is what is checked
        pass
    return time.perf_counter() - started


def deliver(world: World, raw: Any) -> tuple[AuditRow, GuardrailsError | None]:
    """One delivery with the hang guard; only GuardrailsError may escape; one audit row."""
    rows_before = len(world.audit.rows)
    started = time.perf_counter()
    try:
        row, error = world.svc.handle_event(raw), None
    except GuardrailsError as exc:      # typed: Event Grid redelivers
        row, error = None, exc
    except Exception as exc:
        known = _known_bug(exc)
        if known is None:
            raise
        raise KnownBug(known) from None
    elapsed = time.perf_counter() - started
    if elapsed >= cfg.MAX_SECONDS:
        # a hang reproduces; a GC pause or a busy CI neighbour does not: time it once more
        elapsed = _retimed(raw)
    assert elapsed < cfg.MAX_SECONDS, f"one delivery took {elapsed:.2f} s (twice)"
    written = world.audit.rows[rows_before:]
    assert len(written) == 1, f"expected one audit row per delivery, got {len(written)} ({error!r})"
    if error is not None:       # with healthy fakes the only typed escape is DeliveryFailed
        assert isinstance(error, DeliveryFailed) and written[0].verdict == "failed", repr(error)
    else:
        assert isinstance(row, AuditRow) and row == written[0]      # the row returned is the row audited
    out = written[0]
    assert out.verdict in VERDICTS
    json.dumps(out.to_dict(), allow_nan=False)      # Table Storage gets JSON
    if out.verdict == "invalid":
        assert out.reason in REASONS, out.reason
    return out, error


def check_delivery(world: World, raw: Any, seen: Counter) -> tuple[AuditRow, GuardrailsError | None]:
    """Deliver ``raw`` and check which ARM calls it caused."""
    target = arm_target(raw)
    pending_before = world.pending.list(str(target[0])) if target is not None else []
    calls_before = len(world.arm.calls)
    row, error = deliver(world, raw)
    calls = world.arm.calls[calls_before:]
    note(f"verdict={row.verdict} reason={row.reason} calls={calls}")
    seen[row.verdict] += 1
    if not calls:
        return row, error
    seen["arm_called"] += 1
    assert target is not None, f"ARM called for a delivery that may not reach ARM: {calls}"
    rid, why = target
    for _method, called in calls:
        assert parse_arm_id(called).segments() == rid.segments(), (called, str(rid))
    assert row.resource_id == str(rid) and row.verdict != "invalid", (row.resource_id, row.verdict)
    assert row.event_type == (s.VAULT_POLICY_CHANGED if why == "vault_policy" else WRITE_SUCCESS)
    seen[f"arm_called_{why}"] += 1
    if why == "own_write":
        # the guardrail's own write: only a read-back, and only to confirm a fix still running
        assert pending_before and all(m == "GET" for m, _ in calls), (calls, pending_before)
        seen["own_write_confirmed"] += 1
    elif any(m != "GET" for m, _ in calls):
        seen["arm_write"] += 1
    return row, error


@st.composite
def scenarios(draw: st.DrawFn) -> list[tuple[s.Shown, str]]:
    """1-3 deliveries to one service, each with the fake ARM's behaviour for it: mostly one
    fuzzed delivery; sometimes a redelivery; sometimes a fix left running then the guardrail's
    own write event for that resource (the only case an own write may read ARM)."""
    kind = draw(st.sampled_from(("one",) * 6 + ("redeliver", "redeliver", "sequence", "own_write")))
    if kind == "one":
        return [(draw(s.shown_deliveries), draw(st.sampled_from(ARM_MODES)))]
    if kind == "redeliver":
        raw, mode = draw(s.shown_deliveries), draw(st.sampled_from(ARM_MODES))
        return [(raw, mode), (raw, draw(st.sampled_from((mode, "ok"))))]
    if kind == "sequence":
        return draw(st.lists(st.tuples(s.shown_deliveries, st.sampled_from(ARM_MODES)), min_size=2, max_size=3))
    first, own = draw(s.own_write_pairs())
    return [(s.Shown(first), "requested"),
            (s.Shown(own), draw(st.sampled_from(("ok", "ok", "transient_get", "missing_get"))))]


def test_fuzz_handle_event() -> None:
    seen: Counter = Counter()

    @cfg.fuzz_settings(SERVICE_EXAMPLES)
    @given(steps=scenarios())
    def run(steps: list[tuple[s.Shown, str]]) -> None:
        seen["examples"] += 1
        world = make_world()
        handled: dict[int, tuple[AuditRow, GuardrailsError | None]] = {}
        for shown, mode in steps:
            raw = shown.value
            set_arm_mode(world.arm, mode)
            seen["deliveries"] += 1
            writes_before = len(world.arm.writes())
            try:
                row, error = check_delivery(world, raw, seen)
            except KnownBug as bug:
                seen[f"known_bug:{bug}"] += 1
                event(f"known bug (xfail {bug})")
                return
            previous = handled.get(id(raw))
            if previous is not None and previous[1] is None:
                # a redelivery of a handled (not failed) event changes nothing
                assert len(world.arm.writes()) == writes_before, world.arm.calls
                assert row.verdict in (previous[0].verdict, "duplicate"), (row.verdict, previous[0].verdict)
                seen["redelivered"] += 1
            handled[id(raw)] = (row, error)

    run()
    # the mix must keep reaching every part of the pipeline, or the fuzz proves little
    n = seen["deliveries"]
    print(f"fuzz handle_event: {dict(seen)}")
    assert seen["examples"] >= SERVICE_EXAMPLES
    assert seen["arm_called"] >= 0.10 * n and seen["arm_write"] >= 0.03 * n, seen
    if seen["examples"] >= 2000:      # rarer outcomes (~0.5% of deliveries) need a real-sized run
        for key in ("invalid", "ignored", "remediated", "compliant", "violation", "failed", "requested",
                    "duplicate", "redelivered", "own_write_confirmed", "arm_called_vault_policy"):
            assert seen[key] > 0, (key, seen)
    assert seen["invalid"] >= 0.15 * n and seen["ignored"] >= 0.10 * n, seen


# -- parse level ----------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    """Structural equality where NaN equals NaN (list compare uses identity first)."""
    return [a] == [b]


def _printable(text: str) -> bool:
    return all(unicodedata.category(c)[0] not in "CZ" or c == " " for c in text)


def test_fuzz_parse() -> None:
    seen: Counter = Counter()

    @cfg.fuzz_settings(PARSE_EXAMPLES)
    @given(shown=s.shown_deliveries)
    def run(shown: s.Shown) -> None:
        raw = shown.value
        # deep values are for the parser; keep this test's own copy/compare shallow
        before = copy.deepcopy(raw) if s.depth(raw, 100) < 100 else None
        started = time.perf_counter()
        try:
            parsed = parse_resource_event(parse_envelope(raw))
        except InvalidEvent as exc:
            elapsed = time.perf_counter() - started
            seen[exc.reason] += 1
            event(exc.reason)
            assert exc.reason in REASONS, exc.reason
            message = str(exc)
            # messages go to logs and the audit row: short, one line, no raw control characters
            assert len(message) <= 400 and _printable(message), message[:500]
        else:
            elapsed = time.perf_counter() - started
            seen["parsed"] += 1
            event("parsed")
            rid = parsed.resource_id
            # the id that reaches ARM URLs: round-trips, and its URL path is plain ASCII with
            # no traversal, query, fragment or whitespace
            assert parse_arm_id(str(rid)) == rid
            path = rid.url_path()
            assert path.isascii() and path.startswith("/") and not any(c in path for c in "?# \\")
            assert "/../" not in path + "/" and "/./" not in path + "/"
            uri = parsed.envelope.data["resourceUri"]
            assert rid.segments() == tuple(fold(seg) for seg in uri[1:].split("/"))
            for value in (parsed.actor.object_id, parsed.actor.app_id, parsed.actor.upn):
                assert value is None or (isinstance(value, str) and 0 < len(value) <= 256 and _printable(value))
            assert "claims" not in repr(parsed) and "claims" not in repr(parsed.envelope)
            if parsed.envelope.time is not None:
                assert parsed.envelope.time.tzinfo is not None
        if elapsed >= cfg.MAX_SECONDS:        # re-time once: a hang reproduces, a GC pause does not
            started = time.perf_counter()
            try:
                parse_resource_event(parse_envelope(raw))
            except InvalidEvent:
                pass
            elapsed = time.perf_counter() - started
        assert elapsed < cfg.MAX_SECONDS, f"parsing took {elapsed:.2f} s (twice)"
        if before is not None:
            assert _same(raw, before), "the parser mutated its input"

    run()
    print(f"fuzz parse: {dict(seen)}")
    assert seen["parsed"] >= 0.2 * PARSE_EXAMPLES and seen["invalid_resource_id"] > 0, seen


# -- the oracle itself ---------------------------------------------------------------------
def test_oracle_allows_the_plain_covered_write_and_nothing_else() -> None:
    from tests import builders as b

    sa = b.storage()["id"]
    assert may_reach_arm(b.write_event(sa)) == parse_arm_id(sa)
    assert may_reach_arm(b.cloud_event(sa)) == parse_arm_id(sa)
    assert may_reach_arm(b.write_event(sa, actor=b.claims(s.GUARDRAIL))) is None
    assert may_reach_arm(b.write_event(sa, event_type="Microsoft.Resources.ResourceDeleteSuccess")) is None
    assert may_reach_arm(b.write_event(b.rid("Microsoft.Web", "sites", "x"))) is None
    assert may_reach_arm(b.with_data(b.write_event(sa), resourceUri=sa + "?x=1")) is None
    kv = b.key_vault()["id"]
    assert may_reach_arm(s.keyvault_event(kv, "VaultAccessPolicyChanged", "eventgrid")) == parse_arm_id(kv)
    assert may_reach_arm(s.keyvault_event(kv, "VaultAccessPolicyChanged", "cloudevents")) == parse_arm_id(kv)
    assert may_reach_arm(s.keyvault_event(kv, "SecretNewVersionCreated", "eventgrid")) is None
    other = s.keyvault_event(kv, "VaultAccessPolicyChanged", "eventgrid")
    other["data"]["VaultName"] = "kv-other"
    assert may_reach_arm(other) is None
