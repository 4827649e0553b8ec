"""The compliance report: the seed's KPIs computed from audit rows. Pure: rows in, a ``Report``
out, plus renderers (terminal table, JSON, a self-contained HTML page); the CLI does the I/O.

Definitions (rows whose ``time`` is in ``[since, until)``):

- **evaluated row**: any verdict but ``ignored``, ``invalid``, ``duplicate`` and ``shadow``, about
  a resource (an ARM id or a Key Vault object URL; ``job:``/``model:`` pre-flight check rows are
  requests, not resources, and are left out).
- **covered resource**: one with at least one evaluated row. Its state is its latest evaluated
  row (by ``time``, then ``delivery_id``): ``compliant`` or ``remediated`` -> compliant;
  ``violation``, ``dry_run``, ``failed``, ``escalated`` -> open violation; ``requested`` -> fix
  in flight. Compliance = compliant / covered.
- **time to remediate**: ``time - event_time`` of every ``remediated`` row with an
  ``event_time`` (rows without one — sweeps, checks — are counted as skipped); mean, median and
  p90 (nearest rank).
- **deleted resources**: a row about a resource that is gone — a ``ResourceDeleteSuccess`` event
  (audited ``ignored``, reason ``event_type_not_evaluated``) or reason ``resource_not_found`` /
  ``secret_not_found`` — ends the resource, and everything under its id (a resource group's
  resources, a workspace's computes), as of that row: decided before it, it is no longer covered
  and no longer an open violation (deleting it is the fix when the setting is immutable, e.g. a
  compute's ``enableNodePublicIp``); decided again after it (re-created), it counts again.
  A delete event ends it as of the event's own time (a dead letter replayed days later must not end
  a resource re-created since), or of the row's when that is earlier: an event time in the future
  is not trusted over the row that recorded it.
  A Key Vault's secrets, keys and certificates (audited by data-plane URL
  ``https://<vault>.vault.azure.net/...``) end with their vault: by vault name (unique per cloud,
  case-insensitive) to the vault's ARM id as the period's rows spell it (its delete row, or any
  row about the vault), so a deleted vault, or its resource group or subscription, ends them.
  ``deleted``: the covered resources so ended.
- **remediations per policy**: fixes, by policy id (the ``@version`` dropped): one per rule per
  row with outcome ``remediated`` — a rule with several findings fixed by one action (a model
  version archived for three missing tags) is one remediation; **per day**: ``remediated`` rows
  by the day of their ``time``.
- **escalations**: ``escalated`` rows, and the resources they concern (case-insensitive, in the
  latest row's spelling).
- **re-grant escalations**: role-assignment rows ``remediated`` with reason ``flip_flop`` (a role
  granted again past its policy's budget, removed all the same), and the grants they concern
  (``rolegrant:<scope>|<principal>|<role GUID>``, from the row's recorded assignment).
- **event sources without coverage**: subscriptions, governed vaults and ML workspaces whose
  latest event-coverage row (reason ``event_coverage``, written by the sweep:
  ``guardrails.coverage``) is a ``violation``: their events do not all reach the guardrails. Coverage rows are about the wiring, not
  a resource's state, so they are kept out of every resource measure above.
- **shadow vs enforced**: per event: the event's latest ``shadow`` row (each delivery that reads
  the resource judges it again, a failed one included: a redelivered event is compared once)
  against the latest enforced row of the same ``event_id`` that can be ranked (a redelivery
  audited ``duplicate`` does not replace it); its ``reason`` is what the shadow version would
  have decided. Decisions are ranked by how far
  the policy goes: 0 nothing to do (``compliant``, or the enforced side ``ignored`` because
  only the shadow version selects the resource), 1 found and reported (``violation``,
  ``dry_run``), 2 found and fixed (``remediated``, ``requested``, ``escalated``). Same rank:
  agree; shadow higher: stricter; lower: looser. An event whose enforced rows are all
  ``failed``/``duplicate``/``invalid`` (none can be ranked), or that has none, is not comparable.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from statistics import mean, median
from typing import Any, Iterable

from .coverage import REASON as COVERAGE_REASON
from .model.decision import AuditRow

NOT_EVALUATED = frozenset({"ignored", "invalid", "duplicate", "shadow"})
COMPLIANT = frozenset({"compliant", "remediated"})
OPEN = frozenset({"violation", "dry_run", "failed", "escalated"})
# a row saying its resource is gone (module doc: deleted resources)
DELETE_EVENT_TYPES = frozenset({"microsoft.resources.resourcedeletesuccess"})
GONE_REASONS = frozenset({"resource_not_found", "secret_not_found"})
_RANK = {"compliant": 0, "violation": 1, "dry_run": 1, "remediated": 2, "requested": 2, "escalated": 2}
MAX_EXAMPLES = 5
# a Key Vault's ARM id (lower case) at the start of a resource id: (the id, the vault's name)
_VAULT_ARM = re.compile(r"^(/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.keyvault/vaults/([^/]+))(?:/|$)")


def parse_time(value: str) -> datetime | None:
    """An audit timestamp (ISO 8601, ``Z``) as an aware UTC datetime; None when empty or malformed."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _is_resource(resource_id: str) -> bool:
    return resource_id.startswith("/") or resource_id.startswith("https://")


@dataclass(frozen=True)
class Remediation:
    count: int
    skipped_without_event_time: int
    mean_seconds: float | None
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class OpenViolation:
    resource_id: str
    verdict: str
    reason: str
    time: str


@dataclass(frozen=True)
class ShadowComparison:
    compared: int
    agree: int
    stricter: int
    looser: int
    not_comparable: int
    examples: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    since: str
    until: str
    rows: int
    verdicts: dict[str, int]
    covered: int
    compliant: int
    requested: int
    compliance: float | None            # compliant / covered, None when nothing was covered
    time_to_remediate: Remediation
    open_violations: list[OpenViolation]
    remediations_per_policy: dict[str, int]
    remediations_per_day: list[tuple[str, int]]
    escalations: int
    escalated_resources: list[str]
    regrant_escalations: int
    escalated_grants: list[str]
    shadow: ShadowComparison
    uncovered_sources: list[str] = field(default_factory=list)
    deleted: int = 0                     # covered in the period, then deleted: left out of ``covered``

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["remediations_per_day"] = [{"day": day, "count": n} for day, n in self.remediations_per_day]
        return d


def build_report(rows: Iterable[AuditRow], *, since: datetime, until: datetime, in_order: bool = False) -> Report:
    """``in_order``: ``rows`` come in ``(time, delivery_id)`` order (the CLI reads the audit day by
    day, each day sorted): they are folded as they come, never held, so a year of a busy tenant's
    rows costs the memory of its resources, not of its rows. Otherwise they are sorted first."""
    def within():
        for r in rows:
            t = parse_time(r.time)
            if t is not None and since <= t < until:
                yield t, r

    inside = within() if in_order else iter(sorted(within(), key=lambda tr: (tr[0], tr[1].delivery_id)))
    counted = 0

    verdicts: dict[str, int] = {}
    latest: dict[str, AuditRow] = {}
    durations: list[float] = []
    skipped = 0
    per_policy: dict[str, int] = {}
    per_day: dict[str, int] = {}
    escalations = 0
    grants: list[str] = []
    regrants = 0
    coverage: dict[str, AuditRow] = {}
    # resource -> when its latest evaluated row read it (the row's time less its duration), and
    # when the latest row saying it is gone says it went: a delete event's own time (a dead letter
    # replayed days later must not end a resource re-created since), a 404's row time
    decided_at: dict[str, float] = {}
    gone_at: dict[str, float] = {}
    vaults: dict[str, set[str]] = {}          # vault name -> its ARM ids in the rows (lower case)
    escalated: dict[str, str] = {}            # resource (lower case) -> its latest spelling
    shadow = _ShadowFold()
    for t, r in inside:
        counted += 1
        shadow.add(r)
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
        vault = _VAULT_ARM.match(r.resource_id.lower())
        if vault:
            vaults.setdefault(vault.group(2), set()).add(vault.group(1))
        if r.reason == COVERAGE_REASON and r.verdict in ("violation", "compliant"):
            coverage[r.resource_id.lower()] = r
            continue
        if _is_resource(r.resource_id) and _says_gone(r):
            went = parse_time(r.event_time) if r.event_type.lower() in DELETE_EVENT_TYPES else None
            key = r.resource_id.lower().rstrip("/")
            # the earlier of the event's time and the row's: a deletion cannot come after the row
            # recording it, so an event time in the future (a clock, or a forged dead letter)
            # never ends a resource decided again after the row
            gone_at[key] = max(gone_at.get(key, float("-inf")), min(went or t, t).timestamp())
        elif r.verdict not in NOT_EVALUATED and _is_resource(r.resource_id):
            latest[r.resource_id.lower()] = r
            decided_at[r.resource_id.lower()] = t.timestamp() - max(0.0, float(r.duration_ms or 0.0)) / 1000.0
        if r.verdict == "remediated":
            per_day[t.date().isoformat()] = per_day.get(t.date().isoformat(), 0) + 1
            started = parse_time(r.event_time)
            if started is None:
                skipped += 1
            else:
                durations.append(max(0.0, (t - started).total_seconds()))
        if r.verdict != "shadow":          # one fix per rule per row, however many findings it closed
            for pid, _rule in {(v.policy.split("@", 1)[0], v.rule) for v in r.violations if v.outcome == "remediated"}:
                per_policy[pid] = per_policy.get(pid, 0) + 1
        if r.verdict == "escalated":
            escalations += 1
            escalated[r.resource_id.lower()] = r.resource_id
        elif r.verdict == "remediated" and r.reason == "flip_flop":
            regrants += 1
            grants.extend(_grant(v.before) for v in r.violations if v.property == "roleAssignment")

    deleted = [rid for rid in latest if _ended(rid, decided_at[rid], gone_at, vaults)] if gone_at else []
    for rid in deleted:
        del latest[rid]
    compliant = sum(1 for r in latest.values() if r.verdict in COMPLIANT)
    open_rows = sorted((r for r in latest.values() if r.verdict in OPEN), key=lambda r: (r.time, r.resource_id))
    days = _days(since, until)
    return Report(
        since=_iso(since), until=_iso(until), rows=counted, verdicts=dict(sorted(verdicts.items())),
        covered=len(latest), compliant=compliant,
        requested=sum(1 for r in latest.values() if r.verdict == "requested"),
        compliance=compliant / len(latest) if latest else None,
        time_to_remediate=_remediation(durations, skipped),
        open_violations=[OpenViolation(r.resource_id, r.verdict, r.reason, r.time) for r in open_rows],
        remediations_per_policy=dict(sorted(per_policy.items(), key=lambda kv: (-kv[1], kv[0]))),
        remediations_per_day=[(d, per_day.get(d, 0)) for d in days],
        escalations=escalations,
        escalated_resources=sorted(escalated.values()),
        regrant_escalations=regrants, escalated_grants=sorted(set(grants) - {""}),
        shadow=shadow.result(),
        uncovered_sources=sorted(r.resource_id for r in coverage.values() if r.verdict == "violation"),
        deleted=len(deleted),
    )


def _says_gone(r: AuditRow) -> bool:
    """The row tells that its resource no longer exists (module doc: deleted resources)."""
    # a 404 on something else the decision needed (a role definition, a deployment) is a failed
    # or other row with the same reason: only an ``ignored`` row says its own resource is gone
    return r.event_type.lower() in DELETE_EVENT_TYPES or (r.verdict == "ignored" and r.reason in GONE_REASONS)


def _ended(rid: str, decided: float, gone_at: dict[str, float], vaults: dict[str, set[str]]) -> bool:
    """Whether the resource, or one of the resources it lives under, went after its latest decision
    read it; a Key Vault object (data-plane URL) also when its vault's ARM id, or one above it, did."""
    if _gone_under(rid, decided, gone_at):
        return True
    name = _vault_of_url(rid)
    return name is not None and any(_gone_under(arm, decided, gone_at) for arm in vaults.get(name, ()))


def _vault_of_url(rid: str) -> str | None:
    """The vault name of a (lower-case) Key Vault data-plane URL, ``https://<vault>.vault.<cloud>/...``."""
    if not rid.startswith("https://"):
        return None
    labels = rid[len("https://"):].split("/", 1)[0].split(".")
    return labels[0] if len(labels) > 2 and labels[1] == "vault" else None


def _gone_under(rid: str, decided: float, gone_at: dict[str, float]) -> bool:
    path = rid.rstrip("/")
    while path:
        if gone_at.get(path, float("-inf")) > decided:
            return True
        cut = path.rfind("/")
        if cut <= 0 or path[:cut].endswith(("/", ":")):     # stop at "/" and at "https://host"
            break
        path = path[:cut]
    return False


def _grant(before: Any) -> str:
    """The grant key of a role-assignment violation's recorded assignment ("" if it has none)."""
    from .policy.grant_keys import grant_key

    try:
        return grant_key(before["scope"], before["principal_id"], before["role_id"])
    except (TypeError, KeyError, ValueError):
        return ""


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _days(since: datetime, until: datetime) -> list[str]:
    first: date = since.astimezone(timezone.utc).date()
    last: date = (until.astimezone(timezone.utc) - timedelta(microseconds=1)).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)] if last >= first else []


def _remediation(durations: list[float], skipped: int) -> Remediation:
    if not durations:
        return Remediation(0, skipped, None, None, None)
    ordered = sorted(durations)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return Remediation(len(ordered), skipped, round(mean(ordered), 3), round(median(ordered), 3), round(p90, 3))


class _ShadowFold:
    """Each event's latest shadow row against its enforced decision, folded row by row (time order):
    of an enforced row only its ranked decision is kept, of a shadow row what its comparison needs."""

    def __init__(self) -> None:
        self.enforced: dict[str, str] = {}        # event id -> the latest enforced decision that ranks
        # event id -> (event id, resource, would, policies) of its latest shadow row: one per event,
        # however many deliveries judged it (a redelivery after a failed one writes another)
        self.shadows: dict[str, tuple[str, str, str, str]] = {}

    def add(self, r: AuditRow) -> None:
        if r.verdict == "shadow":
            key = r.event_id or f"delivery:{r.delivery_id}"      # no event id: its delivery is the event
            self.shadows[key] = (r.event_id, r.resource_id, r.reason, ", ".join(r.policies))
            return
        have = _enforced(r)
        if have in _RANK:                # a redelivery's ``duplicate`` row keeps the decision
            self.enforced[r.event_id] = have

    def result(self) -> ShadowComparison:
        agree = stricter = looser = not_comparable = 0
        examples: list[dict[str, str]] = []
        for event_id, resource_id, would, policies in self.shadows.values():
            have = self.enforced.get(event_id, "")
            if have not in _RANK or would not in _RANK:
                not_comparable += 1
                continue
            if _RANK[would] == _RANK[have]:
                agree += 1
                continue
            kind = "stricter" if _RANK[would] > _RANK[have] else "looser"
            if kind == "stricter":
                stricter += 1
            else:
                looser += 1
            if len(examples) < MAX_EXAMPLES:
                examples.append({"kind": kind, "event_id": event_id, "resource_id": resource_id,
                                 "enforced": have, "shadow": would, "shadow_policies": policies})
        return ShadowComparison(agree + stricter + looser, agree, stricter, looser, not_comparable, examples)


def _enforced(r: AuditRow) -> str:
    """The enforced row's decision as ranked: ``ignored`` because no policy selects the resource
    (only the shadow version does) is nothing to do."""
    return "compliant" if r.verdict == "ignored" and r.reason == "no_policy" else r.verdict


# ---- rendering -----------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _secs(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1f} s" if x < 120 else f"{x / 60:.1f} min"


def _summary_lines(r: Report) -> list[tuple[str, str]]:
    ttr = r.time_to_remediate
    return [
        ("period", f"{r.since} .. {r.until}"),
        ("audit rows", str(r.rows)),
        ("covered resources", str(r.covered)),
        ("deleted since decided (not covered)", str(r.deleted)),
        ("compliant", f"{r.compliant} of {r.covered} ({_pct(r.compliance)})"),
        ("open violations", str(len(r.open_violations))),
        ("fixes in flight (requested)", str(r.requested)),
        ("time to remediate: mean", _secs(ttr.mean_seconds)),
        ("time to remediate: median", _secs(ttr.median_seconds)),
        ("time to remediate: p90", _secs(ttr.p90_seconds)),
        ("remediations timed / without event time", f"{ttr.count} / {ttr.skipped_without_event_time}"),
        ("escalations", f"{r.escalations} ({len(r.escalated_resources)} resources)"),
        ("re-grant escalations", f"{r.regrant_escalations} ({len(r.escalated_grants)} grants)"),
        ("event sources without coverage", str(len(r.uncovered_sources))),
        ("shadow vs enforced", f"{r.shadow.compared} compared: {r.shadow.agree} agree, {r.shadow.stricter} stricter, "
                               f"{r.shadow.looser} looser ({r.shadow.not_comparable} not comparable)"),
    ]


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [fmt.format(*row) for row in rows]


def render_text(r: Report) -> str:
    out = ["guardrails compliance report", ""]
    out += _table(("measure", "value"), _summary_lines(r))
    if r.remediations_per_policy:
        out += ["", "remediations per policy (one per rule fixed in a decision)"]
        out += _table(("policy", "remediations"), [(p, str(n)) for p, n in r.remediations_per_policy.items()])
    if r.open_violations:
        out += ["", "open violations (latest decision)"]
        out += _table(("resource", "verdict", "reason", "decided"),
                      [(v.resource_id, v.verdict, v.reason, v.time) for v in r.open_violations])
    if r.uncovered_sources:
        out += ["", "event sources without coverage (what happens there reaches the guardrails late or never)"]
        out += _table(("event source",), [(x,) for x in r.uncovered_sources])
    if r.shadow.examples:
        out += ["", "shadow disagreements (examples)"]
        out += _table(("kind", "resource", "enforced", "shadow", "shadow policies"),
                      [(e["kind"], e["resource_id"], e["enforced"], e["shadow"], e["shadow_policies"])
                       for e in r.shadow.examples])
    out += ["", "remediations per day"]
    out += _table(("day", "remediations"), [(d, str(n)) for d, n in r.remediations_per_day])
    return "\n".join(out) + "\n"


def _svg_chart(per_day: list[tuple[str, int]]) -> str:
    """Bars of remediations per day, inline SVG (no script, no external reference)."""
    width, height, pad = 640, 200, 30
    n = max(1, len(per_day))
    top = max([c for _d, c in per_day] + [1])
    bar = (width - 2 * pad) / n
    parts = [f'<svg role="img" aria-label="remediations per day" '
             f'width="{width}" height="{height + 40}" viewBox="0 0 {width} {height + 40}">',
             f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#888"/>']
    for i, (day, count) in enumerate(per_day):
        h = (height - pad) * count / top
        x = pad + i * bar
        parts.append(f'<rect x="{x + bar * 0.1:.1f}" y="{height - h:.1f}" width="{bar * 0.8:.1f}" height="{h:.1f}" '
                     f'fill="#2b6cb0"><title>{html.escape(day)}: {count}</title></rect>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - h - 4:.1f}" font-size="11" text-anchor="middle">'
                     f'{count}</text>')
        if n <= 14 or i % math.ceil(n / 14) == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height + 16}" font-size="10" text-anchor="middle">'
                         f'{html.escape(day[5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _html_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1a202c}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #cbd5e0;padding:.3rem .6rem;text-align:left;font-size:.9rem}th{background:#edf2f7}
.kpi{display:inline-block;margin:0 1.5rem 1rem 0}.kpi b{display:block;font-size:1.6rem}"""


def render_html(r: Report) -> str:
    """One self-contained page: inline CSS and SVG, no script, no external reference."""
    ttr = r.time_to_remediate
    kpis = [("compliant", _pct(r.compliance)), ("covered resources", str(r.covered)),
            ("open violations", str(len(r.open_violations))), ("mean time to remediate", _secs(ttr.mean_seconds)),
            ("escalations", str(r.escalations)), ("re-grant escalations", str(r.regrant_escalations)),
            ("event sources without coverage", str(len(r.uncovered_sources)))]
    sections = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>guardrails compliance report {html.escape(r.since)} .. {html.escape(r.until)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>guardrails compliance report</h1><p>{html.escape(r.since)} .. {html.escape(r.until)}</p>",
        "".join(f'<div class="kpi"><b>{html.escape(v)}</b>{html.escape(k)}</div>' for k, v in kpis),
        "<h2>Summary</h2>", _html_table(("measure", "value"), _summary_lines(r)),
        "<h2>Remediations per day</h2>", _svg_chart(r.remediations_per_day),
        "<h2>Remediations per policy</h2><p>One per rule fixed in a decision, however many findings it closed.</p>",
        _html_table(("policy", "remediations"), [(p, str(n)) for p, n in r.remediations_per_policy.items()]),
        "<h2>Open violations</h2>",
        _html_table(("resource", "verdict", "reason", "decided"),
                    [(v.resource_id, v.verdict, v.reason, v.time) for v in r.open_violations]),
        "<h2>Event sources without coverage</h2>",
        _html_table(("event source",), [(x,) for x in r.uncovered_sources]),
        "<h2>Shadow vs enforced</h2>",
        _html_table(("kind", "resource", "enforced", "shadow", "shadow policies"),
                    [(e["kind"], e["resource_id"], e["enforced"], e["shadow"], e["shadow_policies"])
                     for e in r.shadow.examples]),
        "</body></html>",
    ]
    return "\n".join(sections) + "\n"
