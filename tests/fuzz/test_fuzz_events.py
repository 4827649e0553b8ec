"""Fuzz the delivery path: parse_envelope / parse_resource_event and GuardrailsService.handle_event.

Properties, for every generated delivery (see ``strategies.deliveries``):

* ``handle_event`` returns an audit row with a known verdict, or raises a ``GuardrailsError``
  (``DeliveryFailed`` after a ``failed`` row); nothing else escapes;
* exactly one audit row is written per delivery, and it is JSON-serialisable;
* the fake ARM is called ONLY for a ``ResourceWriteSuccess`` whose ``data.resourceUri`` parses to
  a catalogue type and whose caller is not the guardrail, and every call names that resource;
* a redelivery of a handled event writes nothing more;
* each delivery is handled in bounded time (a hang guard, not a benchmark).

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
from guardrails.model.arm_id import ArmId, parse_arm_id
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
    ids = (_usable_claim(claims, OID_KEYS), _usable_claim(claims, APP_KEYS))
    return any(i is not None and i.lower().replace("-", "") == GUARDRAIL_KEY for i in ids)


def covered_write(raw: Any) -> tuple[ArmId, bool] | None:
    """``(resource, written by the guardrail)`` for a ``ResourceWriteSuccess`` (type read per
    schema: CloudEvents when a specversion key is present or ``type`` comes without
    ``eventType``) whose ``data.resourceUri`` parses to a catalogue type; else None."""
    if not isinstance(raw, Mapping):
        return None
    cloudevents = "specversion" in raw or "specVersion" in raw or ("type" in raw and "eventType" not in raw)
    if raw.get("type" if cloudevents else "eventType") != WRITE_SUCCESS:
        return None
    data = raw.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("resourceUri"), str):
        return None
    try:
        rid = parse_arm_id(data["resourceUri"])
    except InvalidArmId:
        return None
    if rid.resource_type.lower() not in CATALOG:
        return None
    claims = data.get("claims")
    return rid, isinstance(claims, Mapping) and _is_guardrail(claims)


def may_reach_arm(raw: Any) -> ArmId | None:
    """The resource ARM may be called for: a covered write by someone other than the guardrail."""
    target = covered_write(raw)
    return target[0] if target is not None and not target[1] else None


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


def deliver(world: World, raw: Any) -> tuple[AuditRow, GuardrailsError | None]:
    """One delivery with the hang guard; only GuardrailsError may escape; one audit row."""
    rows_before = len(world.audit.rows)
    started = time.perf_counter()
    try:
        row, error = world.svc.handle_event(raw), None
    except GuardrailsError as exc:      # typed: Event Grid redelivers
        row, error = None, exc
    elapsed = time.perf_counter() - started
    assert elapsed < cfg.MAX_SECONDS, f"one delivery took {elapsed:.2f} s"
    written = world.audit.rows[rows_before:]
    assert len(written) == 1, f"expected one audit row per delivery, got {len(written)} ({error!r})"
    if error is not None:
        assert isinstance(error, DeliveryFailed) and written[0].verdict == "failed", repr(error)
    else:
        assert isinstance(row, AuditRow) and row.to_dict() == written[0].to_dict()
    out = written[0]
    assert out.verdict in VERDICTS
    json.dumps(out.to_dict(), allow_nan=False)      # Table Storage gets JSON
    if out.verdict == "invalid":
        assert out.reason in REASONS, out.reason
    return out, error


def check_delivery(world: World, raw: Any, seen: Counter) -> tuple[AuditRow, GuardrailsError | None]:
    """Deliver ``raw`` and check which ARM calls it caused."""
    target = covered_write(raw)
    pending_before = world.pending.list(str(target[0])) if target is not None else []
    calls_before = len(world.arm.calls)
    row, error = deliver(world, raw)
    calls = world.arm.calls[calls_before:]
    note(f"verdict={row.verdict} reason={row.reason} calls={calls}")
    seen[row.verdict] += 1
    if not calls:
        return row, error
    seen["arm_called"] += 1
    assert target is not None, f"ARM called for a delivery that is not a covered write: {calls}"
    rid, own = target
    for _method, called in calls:
        assert parse_arm_id(called).segments() == rid.segments(), (called, str(rid))
    assert row.event_type == WRITE_SUCCESS and row.resource_id == str(rid) and row.verdict != "invalid"
    if own:
        # the guardrail's own write: only a read-back, and only to confirm a fix still running
        assert pending_before and all(m == "GET" for m, _ in calls), (calls, pending_before)
        seen["own_write_confirmed"] += 1
    elif any(m != "GET" for m, _ in calls):
        seen["arm_write"] += 1
    return row, error


@st.composite
def scenarios(draw: st.DrawFn) -> list[tuple[Any, str]]:
    """1-3 deliveries to one service, each with the fake ARM's behaviour for it: mostly one
    fuzzed delivery; sometimes a redelivery; sometimes a fix left running then the guardrail's
    own write event for that resource (the only case an own write may read ARM)."""
    kind = draw(st.sampled_from(("one",) * 6 + ("redeliver", "redeliver", "sequence", "own_write")))
    if kind == "one":
        return [(draw(s.deliveries), draw(st.sampled_from(ARM_MODES)))]
    if kind == "redeliver":
        raw, mode = draw(s.deliveries), draw(st.sampled_from(ARM_MODES))
        return [(raw, mode), (raw, draw(st.sampled_from((mode, "ok"))))]
    if kind == "sequence":
        return draw(st.lists(st.tuples(s.deliveries, st.sampled_from(ARM_MODES)), min_size=2, max_size=3))
    first, own = draw(s.own_write_pairs())
    return [(first, "requested"), (own, draw(st.sampled_from(("ok", "ok", "transient_get", "missing_get"))))]


def test_fuzz_handle_event() -> None:
    seen: Counter = Counter()

    @cfg.fuzz_settings(SERVICE_EXAMPLES)
    @given(steps=scenarios())
    def run(steps: list[tuple[Any, str]]) -> None:
        seen["examples"] += 1
        world = make_world()
        handled: dict[int, tuple[AuditRow, GuardrailsError | None]] = {}
        for raw, mode in steps:
            set_arm_mode(world.arm, mode)
            seen["deliveries"] += 1
            writes_before = len(world.arm.writes())
            row, error = check_delivery(world, raw, seen)
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
    for key in ("invalid", "ignored", "remediated", "compliant", "violation", "failed", "requested",
                "duplicate", "redelivered", "own_write_confirmed"):
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
    @given(raw=s.deliveries)
    def run(raw: Any) -> None:
        try:
            before = copy.deepcopy(raw)
        except RecursionError:
            before = None
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
            assert rid.segments() == tuple(seg.casefold() for seg in uri[1:].split("/"))
            for value in (parsed.actor.object_id, parsed.actor.app_id, parsed.actor.upn):
                assert value is None or (isinstance(value, str) and 0 < len(value) <= 256 and _printable(value))
            assert "claims" not in repr(parsed) and "claims" not in repr(parsed.envelope)
            if parsed.envelope.time is not None:
                assert parsed.envelope.time.tzinfo is not None
        assert elapsed < cfg.MAX_SECONDS, f"parsing took {elapsed:.2f} s"
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
