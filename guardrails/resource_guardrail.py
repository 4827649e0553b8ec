"""The resource guardrail: decide on a covered resource's live state and put it right.

    read live state (or reuse a snapshot) ─▶ evaluate (pure) ─▶ plan: exemptions, notify-only,
      private endpoint first, writes the platform refuses, audit mode ─▶ flip-flop budget
      ─▶ circuit breaker ─▶ one merged write (PATCH, or PUT where the type needs it) ─▶ confirm
      by read-back ─▶ the row's violations, verdict and message

``GuardrailsService`` routes a covered resource's event, on-demand check or sweep page here and
owns the idempotency claim and the audit row around it; this module fills the row in. ``shadow``
policy versions are judged on the same state in a row of their own. An ``audit``-mode policy's
findings are ``dry_run`` whatever the rule's action (a notify rule, private endpoint first, a write
the platform refuses): audit mode observes and notifies nobody; the finding stays on the row.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from dataclasses import replace
from typing import Any, Mapping

from .errors import ArmError, ResourceNotFound, StoreError, refused_outright
from .logs import emit, notify_owner
from .model.decision import AuditRow, ViolationRecord, combine_verdict, fix_line, short_repr
from .model.resource import ResourceSnapshot, ResourceType
from .pending_confirm import FixesInFlight
from .remediation.patch import patch_body, set_path, settle_targets
from .policy.evaluate import RuleResult
from .policy.operators import values_equal

log = logging.getLogger("guardrails")

# fields ARM computes; never sent back in a full PUT
READ_ONLY_TOP = ("id", "name", "type", "systemData", "etag")


class ResourceGuardrail:
    """Decides for the catalogue's resource types (``guardrails/model/resource.py``) on behalf
    of ``svc`` (its ARM gateway, snapshot cache, safety rails and pending-fix store)."""

    def __init__(self, svc) -> None:
        self.svc = svc
        self.in_flight = FixesInFlight(svc)     # its long-running fixes still running: never sent twice

    def decide(self, ctx, row: AuditRow, event, rtype: ResourceType, compiled, candidates) -> None:
        rid = event.resource_id
        # a target may carry the live state already (a sweep's list page): no second read
        known = getattr(event, "snapshot", None) or self.svc.snapshots.get(str(rid), event.envelope.time)
        snapshot = self._live(ctx, row, rid, rtype, known)
        if snapshot is None:
            return
        shadow = compiled.shadow
        if shadow is not None and not ctx.dry_run:
            self._shadow(ctx, row, snapshot, shadow, rid)
        row.policies = [p.ref for p in candidates if _tags_match(p, snapshot.tags)]
        if not candidates:
            row.verdict, row.reason = "ignored", "no_policy"
            row.message = "only shadow policy versions select this resource (see the shadow row)"
            return
        self._judge(ctx, row, rid, snapshot, rtype, compiled, candidates, read_here=known is None)

    def _judge(self, ctx, row: AuditRow, rid, snapshot: ResourceSnapshot, rtype: ResourceType, compiled, candidates,
               *, read_here: bool, again: bool = True) -> None:
        """Evaluate ``snapshot``, plan, pass the rails, write and fill the row in. ``again``: a
        conditional write ARM answers ``412`` is decided once more on a new read."""
        results = compiled.evaluate(snapshot, now=ctx.now, subscription_id=rid.subscription_id,
                                    resource_group=rid.resource_group)
        if not results:
            row.verdict, row.reason = "compliant", ""
            row.message = f"compliant with {', '.join(row.policies) or 'no policy'}"
            if ctx.takeover and self.svc.escalations is not None:
                self.recover(ctx, row, snapshot)
            return

        records: list[tuple[RuleResult, ViolationRecord]] = []
        to_apply: list[tuple[RuleResult, ViolationRecord]] = []
        approved_pe: int | None = None          # approved private endpoint connections (read once)
        pe_waived: list[ViolationRecord] = []   # enforced although no private endpoint is approved
        own = snapshot.resource_id.lower() in self.svc.settings.own_resource_ids
        rotates_here = rtype.name.lower() == KEY_VAULT_TYPE and self._rotates_in(rid)
        if rotates_here:
            approved_pe = approved_private_endpoints(snapshot)
        for r in results:
            rec = ViolationRecord(policy=r.policy.ref, rule=r.rule.id, property=r.rule.property,
                                  before=r.before, after=r.change.after if r.change else None, outcome="violation")
            pe_rule = r.rule.private_endpoint
            if pe_rule is not None and r.exemption is None and r.change is not None and approved_pe is None:
                approved_pe = approved_private_endpoints(snapshot)
            if r.exemption is not None:
                rec.outcome = "exempted"
                exp = r.exemption.expires.isoformat() if r.exemption.expires else "no expiry"
                rec.message = f"exempted by {r.exemption.owner} ({exp}): {r.exemption.reason}"[:300]
            elif r.notify or r.change is None:
                _found(row, rec, r, "notify only")
            elif own:
                _found(row, rec, r, OWN_RESOURCE_TEXT)
            elif rotates_here and r.rule.property.lower() in NETWORK_CLOSING and not approved_pe:
                _found(row, rec, r, ROTATES_HERE_TEXT)
            elif pe_rule is not None and not approved_pe and pe_rule.when_missing == "notify":
                # disabling public access now would cut off every client: no private path exists yet
                _found(row, rec, r, "not reverted: no approved private endpoint connection; public access stays "
                       "until one is approved (the policy asks for private connectivity first)")
            elif (refused := rtype.write_refused(r.change.property, snapshot.body)) is not None:
                # the platform would refuse the write (and with it every fix merged into it)
                _found(row, rec, r, f"not fixable here: {refused}")
            elif r.policy.mode == "audit" or ctx.dry_run:
                rec.outcome = "dry_run"
                rec.message = "audit mode: would set the value"
            else:
                to_apply.append((r, rec))
                if pe_rule is not None and not approved_pe:
                    pe_waived.append(rec)
            records.append((r, rec))
        to_apply = settle_targets(row, to_apply)      # before the rails: a conflict takes no permit
        if to_apply and self.in_flight.making(snapshot, [rec for _r, rec in to_apply]):
            to_apply = []          # ``requested``: the write running makes them; no revert counted, no permit
        reasons: list[str] = []
        grant = self.svc.rails.grant(row, rid, to_apply, reasons)
        to_apply = grant.kept
        if row.reason == "circuit_open":
            reasons.append("circuit_open")
        if to_apply:
            row.violations = [rec for _r, rec in records]     # what a timer's intent keeps (below)
            sent = self.svc.snapshots.now()
            try:
                correlation = self._apply(ctx, row, snapshot, rtype, to_apply, read_here=read_here, conditional=again,
                                          give_back=lambda flip_flop=False: self.svc.rails.give_back(
                                              row, rid, grant, flip_flop=flip_flop))
            except ResourceNotFound:
                # deleted while its fix was on its way: as a 404 on the read just before (nothing
                # left to fix or to tell anyone of); ``_apply`` gave back what the rails took
                row.violations, row.notify = [], False
                row.verdict, row.reason = "ignored", "resource_not_found"
                row.message = "the resource no longer exists (deleted while its fix was sent)"
                return
            except ChangedSince:
                self._decide_again(ctx, row, rid, rtype, compiled, candidates)
                return
            if any(rec.outcome == "requested" for _r, rec in to_apply):
                self.in_flight.add(snapshot.resource_id, row.event_id, {
                    "event_id": row.event_id, "api_version": rtype.api_version, "event_time": row.event_time,
                    "correlation_id": correlation or "",     # only its own failure event settles it
                    "changes": [{"policy": rec.policy, "rule": rec.rule, "property": rec.property,
                                 "before": rec.before, "after": rec.after}
                                for _r, rec in to_apply if rec.outcome == "requested"]}, sent=sent)
        for rec in pe_waived:
            rec.message = (rec.message + "; enforced without an approved private endpoint connection "
                           "(policy: when_missing enforce)")[:300]
        row.violations = [rec for _r, rec in records]
        row.verdict = combine_verdict([rec.outcome for rec in row.violations])
        if row.verdict != "failed":
            row.reason = reasons[0] if reasons else ""
        row.message = "; ".join(
            f"{v.policy}/{v.rule}: {v.property} {short_repr(v.before)}"
            + (f" -> {short_repr(v.after)}" if v.after is not None else "") + f" ({v.outcome})"
            for v in row.violations)[:2000]
        if row.notify:
            # what the owner is told of: the violations and escalations, and the fixes an open
            # breaker held back (left in place, ``dry_run`` like an audit-mode finding, which is not)
            held = {id(rec) for _r, rec in grant.held}
            told = [(r, rec) for r, rec in records if rec.outcome in ("violation", "escalated") or id(rec) in held]
            owner, via = _owner(snapshot, [r for r, _rec in told])
            notify_owner(log, owner_tag=via, owner=owner, rules=[f"{rec.policy}/{rec.rule}" for _r, rec in told])

    def _decide_again(self, ctx, row: AuditRow, rid, rtype: ResourceType, compiled, candidates) -> None:
        """ARM answered the fix's ``If-Match`` PUT ``412``: the resource changed since it was read
        (another worker's fix of the same change, most likely, which the condition kept this one
        from overwriting). Read it again and decide once more on what is there now, within the
        delivery's budget: ``compliant`` when the other write made the fix. What the first attempt
        took on the rails was given back (``_apply``); a second ``412`` is a failed fix."""
        snapshot = self._live(ctx, row, rid, rtype)
        if snapshot is None:
            return
        row.violations, row.reason, row.notify = [], "", False
        self._judge(ctx, row, rid, snapshot, rtype, compiled, candidates, read_here=True, again=False)
        note_decided_again(row)

    def _shadow(self, ctx, row: AuditRow, snapshot: ResourceSnapshot, shadow, rid) -> None:
        """Judge the same live state with the ``mode: shadow`` policy versions and record, in a
        row of its own (verdict ``shadow``), what they would have done. Nothing is changed."""
        candidates = shadow.candidates(snapshot.type, rid.subscription_id, rid.resource_group)
        policies = [p.ref for p in candidates if _tags_match(p, snapshot.tags)]
        if not policies:
            return
        results = shadow.evaluate(snapshot, now=ctx.now, subscription_id=rid.subscription_id,
                                  resource_group=rid.resource_group)
        srow = AuditRow(event_id=row.event_id, event_type=row.event_type, resource_id=row.resource_id,
                        verdict="shadow", actor=row.actor, correlation_id=row.correlation_id,
                        delivery_id=f"{ctx.delivery_id}-shadow", event_time=row.event_time, policies=policies)
        would: list[str] = []
        for r in results:
            if r.exemption is not None:
                outcome, text = "exempted", f"would leave it: exempted by {r.exemption.owner}"
            elif r.notify or r.change is None:
                outcome, text = "violation", "would notify"
            elif r.rule.private_endpoint is not None and r.rule.private_endpoint.when_missing == "notify" \
                    and not approved_private_endpoints(snapshot):
                outcome, text = "violation", "would notify: no approved private endpoint connection"
            else:
                outcome, text = "remediated", f"would set {short_repr(r.change.after)}"
            would.append(outcome)
            srow.violations.append(ViolationRecord(policy=r.policy.ref, rule=r.rule.id, property=r.rule.property,
                                                   before=r.before, after=r.change.after if r.change else None,
                                                   outcome="shadow", message=text[:300]))
        verdict = combine_verdict(would)
        message = "; ".join(f"{v.policy}/{v.rule}: {v.message}" for v in srow.violations) or \
            f"compliant with {', '.join(policies)}"
        self.svc._finish(ctx, srow, "shadow", verdict, f"shadow ({verdict}): {message}")

    def recover(self, ctx, row: AuditRow, snapshot: ResourceSnapshot) -> bool:
        """This delivery took the event over from one that died holding it, and finds the resource
        compliant. If an attempt counted a revert (its flip-flop intent, naming that attempt) and
        the values it set out to write hold now, it made the fix and died before its audit row:
        record the violation and its revert (``remediated``), not a bare ``compliant``. Nothing
        when that attempt, or the one taken over, did audit (``republish`` sends its decision).
        Two table reads or three, on takeovers only. The ML guardrail's fixes keep the same intent
        and are recovered here too. True when it recorded a recovered fix."""
        try:
            noted = json.loads(self.svc.escalations.intent(row.resource_id, row.event_id) or "[]")
            # {"by": delivery, "changes": [...]}; a bare list from before the attempt was named
            by = str(noted.get("by") or "") if isinstance(noted, dict) else ""
            changes = noted.get("changes") if isinstance(noted, dict) else noted
            if any(r.verdict != "shadow" for d in {by or ctx.takeover, ctx.takeover}
                   for r in self.svc.audit.rows_of_delivery(row.resource_id, d)):
                return False
        except (StoreError, ValueError) as exc:
            emit(log, logging.WARNING, "guardrail_takeover_intent_unread", error=type(exc).__name__)
            return False
        held = [c for c in changes if isinstance(c, dict) and {"policy", "rule", "property", "after"} <= c.keys()
                and values_equal(snapshot.value(c["property"])[0], c["after"])] if isinstance(changes, list) else []
        if not held:
            return False
        note = (f"an earlier delivery of this event ({(by or ctx.takeover)[:64]}) set out to revert this and "
                "stopped before its audit row; the value read now holds")
        row.violations = [ViolationRecord(policy=str(c["policy"]), rule=str(c["rule"]), property=str(c["property"]),
                                          before=c.get("before"), after=c["after"], outcome="remediated",
                                          message=note[:300]) for c in held]
        row.verdict, row.reason = "remediated", ""
        row.message = "; ".join(f"{v.policy}/{v.rule}: {v.property} {short_repr(v.before)} -> {short_repr(v.after)} "
                                f"(remediated)" for v in row.violations)[:2000 - len(note) - 2] + "; " + note
        return True

    def _intend_before_write(self, ctx, row: AuditRow, sending: list[ViolationRecord]) -> None:
        """A timer's fix: its intent kept before the write (``outbox.intend_before_act``)."""
        from .outbox import intend_before_act

        intend_before_act(getattr(self.svc, "publisher", None), ctx, row, sending,
                          sent_message="fix sent; the worker stopped before confirming and auditing it",
                          line=fix_line)

    def _rotates_in(self, rid) -> bool:
        """Whether a secrets policy in force governs this vault: the guardrails then read and
        write its data plane (rotations, exposures), over its public endpoint unless it has a
        private one."""
        name = rid.name or ""
        return any(p.mode != "off" and p.governs(name)
                   for p in getattr(self.svc.policies.get(), "secret_policies", ()))

    def _live(self, ctx, row: AuditRow, rid, rtype: ResourceType,
              known: ResourceSnapshot | None = None) -> ResourceSnapshot | None:
        """The resource as read now (``known``: its state already in hand, not read again), as the
        type its id names; None, the row filled in, when it is gone (``ignored``), unreadable
        (``failed``) or of another type."""
        try:
            snapshot = known or self._read_now(ctx, str(rid), rtype)
        except ResourceNotFound:
            self.svc.snapshots.forget(str(rid))
            row.violations, row.notify = [], False
            row.verdict, row.reason, row.message = "ignored", "resource_not_found", "the resource no longer exists"
            return None
        except ArmError as exc:
            row.violations, row.notify = [], False
            row.verdict, row.reason, row.message = "failed", exc.reason, str(exc)
            return None
        return _as_type(row, snapshot, rtype)

    def _read_now(self, ctx, rid: str, rtype: ResourceType) -> ResourceSnapshot:
        """A read right before a write that sends what it read back (kept for the burst)."""
        sent = self.svc.snapshots.now()
        fresh = self.svc.arm.get_resource(rid, api_version=rtype.api_version, deadline=ctx.deadline)
        self.svc.snapshots.put(fresh, requested_at=sent)
        return fresh

    def _apply(self, ctx, row: AuditRow, snapshot: ResourceSnapshot, rtype: ResourceType,
               to_apply: list[tuple[RuleResult, ViolationRecord]], *, read_here: bool = True,
               conditional: bool = False, give_back=lambda flip_flop=False: None) -> str | None:
        """Send the merged fix and confirm it; the write's correlation id (None: nothing sent).
        ``read_here``: the snapshot was read by this decision (not reused from the cache or a
        listed body), which a PATCH that sends a member whole relies on (below). ``give_back``:
        returns the breaker permits the rails took for it, called when the write was certainly not
        made: never sent (a read before it failed) or refused outright (``errors.refused_outright``,
        the rule the role and secrets paths share); a 5xx or a non-refusal 409 may have been applied
        and keeps them. The flip-flop count stays, as for every failed revert: the redelivery of the
        change is the same revert (and reuses the permit). The ML guardrail does the same. Raises ``ResourceNotFound`` when the
        resource is gone (deleted since it was read) and, with ``conditional``, ``ChangedSince``
        when ARM answers the ``If-Match`` PUT ``412``: nothing was made by this decision, and
        everything the rails took for it, the flip-flop count included, is given back first."""
        # one write per resource: each property set to the value ``_settle_targets`` put on its
        # records before the rails (the rails may have let only some of the merged policies through:
        # merging again would pick another value than the records and the intent say)
        desired: dict[str, Any] = {r.change.property: rec.after for r, rec in to_apply}
        conflicts: set[str] = set()
        ok = list(to_apply)
        if not ok:
            return None
        rid = snapshot.resource_id
        # our write's own event carries this id (data.correlationId); unless the fix is left
        # ``requested`` (a pending record), that event needs no lookup at all
        correlation = str(uuid.uuid4())
        self._intend_before_write(ctx, row, [rec for _r, rec in ok])
        # whatever the write's outcome (confirmed, still running, refused, no answer), the read
        # cached before it no longer says what the resource is: the next decision reads
        self.svc.snapshots.forget(rid)
        sent = False          # whether the write left: a read before it that fails made nothing
        try:
            if rtype.write_method == "put":
                if snapshot.etag is None and not read_here:
                    # a full PUT sends back everything as read and, with no etag to make it
                    # conditional, overwrites whatever changed since: never from a reused read
                    snapshot = self._read_now(ctx, rid, rtype)
                body = copy.deepcopy(dict(snapshot.body))
                for key in READ_ONLY_TOP:
                    body.pop(key, None)
                for path, value in desired.items():
                    if path not in conflicts:
                        set_path(body, path, value)
                sent = True
                result = self.svc.arm.put_resource(rid, body, api_version=rtype.api_version, etag=snapshot.etag,
                                               deadline=ctx.deadline, correlation_id=correlation)
            else:
                changes = [(path, value) for path, value in desired.items() if path not in conflicts]
                base = snapshot.body
                if not read_here and any(path.count(".") > 1 for path, _v in changes):
                    # the member goes whole, as read: a reused read (up to GUARDRAILS_SNAPSHOT_REUSE_SECONDS
                    # old) would drop an IP or VNet rule added since; read it now
                    base = self._read_now(ctx, rid, rtype).body
                body = patch_body(base, changes)
                sent = True
                result = self.svc.arm.patch_resource(rid, body, api_version=rtype.api_version, deadline=ctx.deadline,
                                                 correlation_id=correlation)
        except ResourceNotFound:
            give_back(flip_flop=True)
            raise
        except ArmError as exc:
            if conditional and exc.status == 412 and rtype.write_method == "put" and snapshot.etag is not None:
                # a stale read, not a refusal: another write (another worker's fix of the same
                # change, most likely) landed since, and If-Match kept this one from overwriting it
                give_back(flip_flop=True)
                raise ChangedSince from exc
            if not sent or refused_outright(exc):
                give_back()
            self.svc.settled.add(correlation)         # audited here: its failure event needs no lookup
            for _r, rec in ok:
                rec.outcome, rec.message = "failed", str(exc)[:300]
            row.reason = exc.reason
            return correlation
        if result.state == "requested":
            for _r, rec in ok:
                rec.outcome, rec.message = "requested", "long-running fix accepted, still running"
            return correlation
        self.svc.settled.add(correlation)
        # confirm: read back and check every property really holds the value we set (the read
        # the fix was decided on was forgotten before the write was sent)
        try:
            sent = self.svc.snapshots.now()
            after = self.svc.arm.get_resource(rid, api_version=rtype.api_version, deadline=ctx.deadline)
            self.svc.snapshots.put(after, requested_at=sent)
        except ArmError as exc:
            self.svc.settled.discard(correlation)     # pending: its own write event confirms it
            for _r, rec in ok:
                rec.outcome, rec.message = "requested", f"fix sent, read-back failed: {exc.reason}"
            return correlation
        for r, rec in ok:
            value, _present = after.value(r.change.property)
            if values_equal(value, desired[r.change.property]):
                rec.outcome, rec.message = "remediated", "fixed and confirmed by read-back"
            else:
                rec.outcome, rec.message = "failed", f"read-back shows {short_repr(value)}"
                row.reason = "not_confirmed"
        return correlation


class ChangedSince(Exception):
    """A conditional write ARM answered ``412``: the resource changed since the decision's read."""


def note_decided_again(row: AuditRow) -> None:
    """End the row's message with why it was decided twice (after ``ChangedSince``): the same
    words from every guardrail that decides once more (``_decide_again``, the ML guardrail's
    ``_once_more``)."""
    note = "decided on a new read: the resource changed while its fix was sent (If-Match answered 412)"
    row.message = f"{row.message[:2000 - len(note) - 2]}; {note}"


def _as_type(row: AuditRow, snapshot: ResourceSnapshot, rtype: ResourceType) -> ResourceSnapshot | None:
    """``snapshot`` as the type its id names; None (the row ``failed``) when ARM says another."""
    if not snapshot.type:
        # a body without its type: judged as the type its id names (evaluated by type, it
        # would otherwise match no program and read as compliant)
        return replace(snapshot, type=rtype.name)
    if snapshot.type.lower() != rtype.key:
        row.verdict, row.reason = "failed", "unexpected_type"
        row.message = f"ARM returned type {short_repr(snapshot.type)} for a {rtype.name} id"
        return None
    return snapshot


KEY_VAULT_TYPE = "microsoft.keyvault/vaults"
# fixes that close a resource's public network path
NETWORK_CLOSING = frozenset({"properties.publicnetworkaccess", "properties.networkacls.defaultaction"})
ROTATES_HERE_TEXT = ("not reverted: the guardrails rotate secrets in this vault (a secrets policy governs it) "
                     "and it has no approved private endpoint connection; closing its public endpoint would "
                     "lock them out of it: add a private endpoint (GUARDRAILS_PRIVATE_NETWORKING) first")
OWN_RESOURCE_TEXT = ("not reverted: one of the guardrails' own resources (GUARDRAILS_OWN_RESOURCE_IDS); "
                     "a fix could cut the guardrails off from themselves: change it in their infrastructure")


def _found(row: AuditRow, rec: ViolationRecord, r: RuleResult, what: str) -> None:
    """A finding the guardrail reports rather than fixes (a notify rule, no private endpoint yet, a
    write the platform would refuse). An enforcing policy's is a ``violation`` and the owner is
    told; an ``audit``-mode policy's is ``dry_run`` (the README: audit mode observes, "stop acting,
    keep watching"), still on the row with what it would have done, and nobody is notified, as for
    its fixes and the role guardrail's audit-mode findings."""
    if r.policy.mode == "audit":
        rec.outcome, rec.message = "dry_run", f"audit mode: would notify ({what})"[:300]
        return
    rec.outcome, rec.message = "violation", what[:300]
    row.notify = True


def _tags_match(policy, tags: Mapping[str, str]) -> bool:
    wanted = policy.selector.tags or {}
    if not wanted:
        return True
    lowered = {str(k).lower(): v for k, v in tags.items()}
    return all(lowered.get(str(k).lower()) == v for k, v in wanted.items())


# where each covered type lists its private endpoint connections, and the key of their state: ML
# registries name both after themselves (api-version 2025-09-01); every other type the usual way
_PE_CONNECTIONS = (("properties.privateEndpointConnections", "privateLinkServiceConnectionState"),
                   ("properties.registryPrivateEndpointConnections", "registryPrivateLinkServiceConnectionState"))


def approved_private_endpoints(snapshot: ResourceSnapshot) -> int:
    """Private endpoint connections in ``Approved`` state (and not failed or being deleted)."""
    count = 0
    for path, state_key in _PE_CONNECTIONS:
        conns, _present = snapshot.value(path)
        count += _approved(conns, state_key)
    return count


def _approved(conns, state_key: str) -> int:
    count = 0
    for c in conns if isinstance(conns, list) else ():
        props = c.get("properties") if isinstance(c, Mapping) else None
        if not isinstance(props, Mapping):
            continue
        state = props.get(state_key) or {}
        status = state.get("status") if isinstance(state, Mapping) else None
        prov = str(props.get("provisioningState") or "Succeeded").lower()
        if isinstance(status, str) and status.lower() == "approved" and prov not in ("failed", "deleting"):
            count += 1
    return count


def _owner(snapshot: ResourceSnapshot, results) -> tuple[str, str]:
    """Who to tell: the value of the policy's owner tag on the resource, else the policy's
    contact, else "unknown". Returns ``(owner, where it came from)``."""
    tag = next((r.policy.notify_tag for r in results), "owner")
    lowered = {str(k).lower(): v for k, v in snapshot.tags.items()}
    if lowered.get(tag.lower()):
        return str(lowered[tag.lower()]), tag
    contact = next((r.policy.contact for r in results if getattr(r.policy, "contact", "")), "")
    return (contact, "policy contact") if contact else ("unknown", tag)


__all__ = ["ChangedSince", "ResourceGuardrail", "approved_private_endpoints", "note_decided_again", "READ_ONLY_TOP"]
