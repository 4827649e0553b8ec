"""What the ML lifecycle guardrail writes on an online endpoint, decided from the findings
allowed to act (``ml_guardrail``): the write plan, the ``authMode`` every policy allows, and the
owner to tell. Pure: no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from .model.decision import ViolationRecord
from .policy import model_rules as mr


def traffic_of(endpoint: Mapping[str, Any], key: str = "traffic") -> dict[str, int]:
    """An endpoint's live ``traffic`` shares (or, with ``key="mirrorTraffic"``, the shares of live
    requests copied to a deployment as shadow traffic), by deployment name."""
    raw = (endpoint.get("properties") or {}).get(key) or {}
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): int(v) for k, v in raw.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def mirror_of(endpoint: Mapping[str, Any]) -> dict[str, int]:
    """``properties.mirrorTraffic``: production requests copied to a deployment (its answers are
    dropped, but it receives them: it serves production data and is judged like live traffic)."""
    return traffic_of(endpoint, "mirrorTraffic")


def share_of(traffic: Mapping[str, int], name: str) -> int:
    return next((v for k, v in traffic.items() if k.lower() == name.lower()), 0)


def serving(traffic: Mapping[str, int], mirror: Mapping[str, int]) -> list[str]:
    """The deployments receiving production requests, live or mirrored, sorted; each name once
    (the spelling of ``traffic`` first)."""
    names: dict[str, str] = {}
    for shares in (traffic, mirror):
        for k, v in shares.items():
            if v > 0:
                names.setdefault(k.lower(), k)
    return sorted(names.values())


@dataclass
class Found:
    """One broken rule of one policy, the record the audit row keeps of it, and what fixing it
    writes on an endpoint: ``setting`` (``(property, value)``) or ``deployment`` (its traffic to 0)."""

    policy: Any
    rec: ViolationRecord
    setting: tuple[str, Any] | None = None
    deployment: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a permitted fix writes: ``apply`` edits the body to PUT, ``holds`` checks the
    read-back, ``done`` is the message of a confirmed fix. ``unfixed``: the deployments (lower
    case) a permitted finding faults whose traffic is not written, and ``why``; ``moves``: each
    share the write changes, ``(property, deployment) -> (before, after)``; ``writes``: whether
    there is anything to write at all."""

    apply: Callable[[dict], None]
    holds: Callable[[Mapping[str, Any]], bool]
    done: str
    unfixed: frozenset[str] = frozenset()
    why: str = ""
    moves: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    writes: bool = True


def always(apply: Callable[[dict], None], holds: Callable[[Mapping[str, Any]], bool], done: str):
    """A plan that is the same whichever policy's finding was permitted (one property)."""
    plan = Plan(apply, holds, done)
    return lambda _permitted, _refused=(): plan


def auth_mode_choice(policies) -> str | None:
    """The ``authMode`` an endpoint fix writes: the first of a policy's allowed modes (in policy
    order) that every policy selecting the endpoint allows, so a fix for one never breaks another
    and every record names the value really written; None when they share none. Pure."""
    allowed = [{m.lower() for m in p.rules.endpoint_auth_modes} for p in policies]
    return next((m for p in policies for m in p.rules.endpoint_auth_modes
                 if all(m.lower() in a for a in allowed)), None)


def conflict(ctx, row, policy, rec: ViolationRecord, policies) -> None:
    """An enforced authMode finding no value fixes for every policy: nothing is written for it;
    ``failed`` (``conflicting_policies``, as on a resource) when enforcing, else ``dry_run``."""
    modes = "; ".join(f"{p.ref}: {'/'.join(p.rules.endpoint_auth_modes)}" for p in policies)
    if policy.mode == "enforce" and not getattr(ctx, "dry_run", False):
        rec.outcome = "failed"
        row.reason = "conflicting_policies"
        rec.message = f"{rec.message}; not fixed: the policies allow no common authMode ({modes})"[:300]
    else:
        rec.outcome = "dry_run"
        rec.message = f"{rec.message}; audit mode: no authMode every policy allows ({modes})"[:300]


def endpoint_plan(traffic: Mapping[str, int], permitted: list[Found], mirror: Mapping[str, int] | None = None,
                  unfit: Iterable[str] = ()) -> Plan | None:
    """The endpoint write made of the permitted findings only: their settings (one value per
    property: ``authMode`` is ``auth_mode_choice``'s, allowed by every policy) and traffic 0 —
    live and mirrored — for the deployments they found serving badly. ``unfit``: deployments an
    enforcing finding faults whose fix was not permitted (its breaker open); they keep their
    share and take none of what moves (``rebalance_traffic``). A deployment only an audit-mode
    finding faults is not in ``unfit``: audit mode changes nothing the fix writes. When the
    moved share could then go nowhere but onto a held deployment (the only valid traffic would
    take it out of traffic too, which no permitted fix asks), no traffic is written: the
    permitted findings' deployments receiving live traffic are ``unfixed``, ``why`` says why. Pure."""
    settings: dict[str, Any] = {}
    for f in permitted:
        if f.setting is not None:
            settings.setdefault(*f.setting)
    bad = sorted({f.deployment for f in permitted if f.deployment is not None})
    if not settings and not bad:
        return None
    changes: dict[str, Any] = dict(settings)
    mirror = dict(mirror or {})
    unfixed: frozenset[str] = frozenset()
    why = ""
    if bad:
        moved = mr.rebalance_traffic(traffic, bad, unfit)
        if moved is None:
            unfixed = frozenset(d.lower() for d in bad if share_of(traffic, d) > 0)
            held = {u.lower() for u in unfit} - {d.lower() for d in bad}
            names = ", ".join(sorted(k for k, v in traffic.items() if v > 0 and k.lower() in held))[:120]
            why = (f"not taken out of traffic: its share could go only to {names}, which an enforcing policy "
                   "faults but may not fix now (its permit was refused), and the only other valid traffic (all 0) "
                   "would stop that one too; the endpoint's traffic is left as it is")
        else:
            changes["traffic"] = moved
        fixed = [d for d in bad if d.lower() not in unfixed]
        if any(share_of(mirror, d) > 0 for d in fixed):      # the shadow copies stop too (not moved)
            drop = {d.lower() for d in fixed}
            changes["mirrorTraffic"] = {k: (0 if k.lower() in drop else v) for k, v in mirror.items()}
    else:
        fixed = []
    moves = {(key, k): (before, changes[key][k]) for key, shares in (("traffic", traffic), ("mirrorTraffic", mirror))
             if key in changes for k, before in shares.items() if changes[key].get(k, before) != before}

    def apply(body: dict) -> None:
        for path, value in changes.items():
            set_property(body, path, value)

    def holds(after: Mapping[str, Any]) -> bool:
        p = after.get("properties") or {}
        return all(share_of(traffic_of(after), d) == 0 and share_of(mirror_of(after), d) == 0 for d in fixed) and all(
            str(p.get(k)).lower() == str(v).lower() for k, v in settings.items())

    return Plan(apply, holds, "; ".join(f"{k} -> {v}" for k, v in changes.items()) + ", confirmed by read-back",
                unfixed=unfixed, why=why, moves=moves, writes=bool(changes))


def held(refused: Iterable[Found]) -> set[str]:
    """The deployments enforcing findings fault whose fix was refused a permit: they keep their
    share and take none (``endpoint_plan``'s ``unfit``). Audit-mode findings are never passed."""
    return {f.deployment for f in refused if f.deployment is not None}


def traffic_notes(found: Iterable[Found], plan: Plan, written: str | None) -> None:
    """Tell each deployment record the write did not carry what happened to its deployment's
    traffic (an audit-mode or permit-refused finding stays ``dry_run``, but its deployment may
    take a share another policy's fix moved, or lose it to that fix): ``written`` is the outcome
    of the write (``remediated``, ``requested``; None: nothing was written; ``failed``: no note,
    the write's own records say it failed)."""
    if written not in (None, "remediated", "requested"):
        return
    for f in found:
        if f.deployment is None:
            continue
        changed = [(key, b, a) for (key, d), (b, a) in plan.moves.items() if d.lower() == f.deployment.lower()]
        if written in ("remediated", "requested") and changed:
            how = ", ".join(f"{key} {b} -> {a}" for key, b, a in changed)
            verb = "confirmed" if written == "remediated" else "requested, not yet confirmed"
            note = f"its deployment's {how} by the fix of another finding ({verb})"
        else:
            note = "its deployment's traffic is left as it is"
        f.rec.message = f"{f.rec.message}; {note}"[:300]


@dataclass(frozen=True)
class Permit:
    """What ``SafetyRails.breaker_permits`` reads of a rule result: its policy."""

    policy: Any


def set_outcome(recs, outcome: str, message: str) -> None:
    for rec in recs:
        rec.outcome, rec.message = outcome, f"{rec.message}; {message}"[:300]


def as_decided(body: Mapping[str, Any]) -> dict:
    """What of a body a decision rests on: all but what ARM keeps itself (``etag``, ``systemData``,
    ``provisioningState``, which moves as an operation ends). Two reads equal in it may be written
    back from either (an etag-less resource read again before its PUT)."""
    out = {k: v for k, v in body.items() if k not in ("etag", "systemData")}
    if isinstance(out.get("properties"), Mapping):
        out["properties"] = {k: v for k, v in out["properties"].items() if k != "provisioningState"}
    return out


def set_property(body: dict, key: str, value: Any) -> None:
    props = body.get("properties")
    if not isinstance(props, dict):
        props = body["properties"] = {}
    props[key] = value


def owner_of(tags: Any, policies) -> tuple[str, str]:
    """(owner, where from): the policy's notify tag on the object, else the policy contact."""
    name = next((p.rules.notify_tag for p in policies), "owner")
    lowered = {str(k).lower(): v for k, v in (tags or {}).items()} if isinstance(tags, Mapping) else {}
    value = lowered.get(name.lower())
    if isinstance(value, str) and value.strip():
        return value.strip(), name
    return policy_contact(policies, name)


def policy_contact(policies, via: str = "owner") -> tuple[str, str]:
    contact = next((getattr(p, "contact", "") for p in policies if getattr(p, "contact", "")), "")
    return (contact, "policy contact") if contact else ("unknown", via)
