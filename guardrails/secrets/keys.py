"""The secret guardrail's keys: ``KeyNearExpiry`` / ``KeyExpired`` ─▶ a key reference with
``rotate: true`` ─▶ Key Vault's own ``rotate_key`` (a breaker permit each, under the rotation lease
of the key, as a secret's rotation).

A warning for a key no longer due (its expiry moved out past its lead since Key Vault sent it: a
secret's ``rotation_lead``, 30 days or half the strictest validity) is ``compliant``, as a secret's
is: ``rotate_key`` on a stale warning would rotate a customer-managed key against its owner's
decision. The rotated version expires as a rotated secret does (``expiry_for`` the strictest
``max_validity_days``), unless the key's rotation policy gave it an earlier expiry.

A disabled key is ``ignored`` (``secret_disabled``), whether Key Vault answers its read with 403
``KeyDisabled`` or with the key's properties: it was taken out of service (a customer-managed key
disabled to cut access to what it encrypts), and ``rotate_key`` would make a new, enabled version
and undo that; nor is it a failure Event Grid would redeliver for 24 h.

A rotation whose worker dies before its audit row is recovered as a secret's is, but not by a tag:
``rotate_key`` takes none, and a tag written after it is lost with the worker that dies in between.
Before ``rotate_key`` the delivery notes with the event's claim which version it sets out to rotate
(``note_intent``: one table write, none outside a claim); the delivery that takes the event over
finds that version no longer current and, when neither it nor the one it took over wrote a row,
records the rotation (``remediated``) instead of "already rotated" (``compliant``), and never
rotates again (an event naming no version included).

Mixed into ``SecretGuardrail`` (its ``store``, ``svc``, ``_record``, ``_notify``, ``_close``,
``_permit``, ``_give_back``, ``_acting``, ``_intend``).
"""

from __future__ import annotations

import json
import logging

from ..errors import ArmError, ResourceNotFound, StoreError
from ..decision_context import note_intent_or_warn
from ..logs import emit
from .lease import rotation_lease
from .rotation import expiry_for, not_yet_due, refused_outright, rotation_lead, strictest_validity
from .values import SECRET_DISABLED

log = logging.getLogger("guardrails")


class KeyDecisions:
    def _key(self, ctx, row, ev, policies) -> None:
        if ev.kind == "NewVersionCreated":
            row.verdict, row.reason, row.message = "ignored", "event_type_not_evaluated", "new key versions are not checked"
            return
        hit = next(((p, p.key(ev.vault_name, ev.object_name)) for p in policies if p.key(ev.vault_name, ev.object_name)), None)
        if hit is not None and hit[1].rotate and self._acting(ctx, hit[0]):
            # as a secret's rotation: one rotate_key for one version, whoever (event, sweep) comes first
            with rotation_lease(self.svc.idempotency, ev.vault_name, ev.object_name, holder=ctx.delivery_id,
                                kind="rotate-key"):
                return self._key_leased(ctx, row, ev, policies, hit)
        return self._key_leased(ctx, row, ev, policies, hit)

    def _key_leased(self, ctx, row, ev, policies, hit) -> None:
        try:
            current = self.store.get_key(ev.vault_name, ev.object_name, deadline=ctx.deadline)
        except ResourceNotFound:
            row.verdict, row.reason, row.message = "ignored", "secret_not_found", "the key does not exist"
            return
        except ArmError as exc:
            if exc.reason == SECRET_DISABLED:           # Key Vault's 403 KeyDisabled on the read
                row.policies = [hit[0].ref] if hit else []
                return _key_disabled(row, ev, None)
            row.verdict, row.reason, row.message = "failed", exc.reason, f"read key: {exc}"
            return
        if not current.enabled:
            row.policies = [hit[0].ref] if hit else []
            return _key_disabled(row, ev, current.version)
        before = {"vault": ev.vault_name, "name": ev.object_name, "version": current.version}
        if hit is None or not hit[1].rotate:
            policy = hit[0] if hit else policies[0]
            rec = self._record(policy, "expiring-key", before, None, "violation",
                               "no key reference with rotate: true; owner must rotate")
            self._notify(row, ev, hit[1].owner if hit else "unknown owner", rec)
            return self._close(row, [rec], f"{ev.event_type}: key {ev.vault_name}/{ev.object_name} not rotated")
        policy, ref = hit
        row.policies = [policy.ref]
        recovered = self._unaudited_key_rotation(ctx, row, policy, ev, current)
        if recovered is not None:
            return self._close(row, [recovered], f"key {ev.vault_name}/{ev.object_name} rotated to "
                                                 f"{current.version} by an earlier delivery of this event, "
                                                 f"audited late")
        if ev.version and ev.version != current.version:
            row.verdict, row.reason, row.message = "compliant", "", f"key version {ev.version} already rotated"
            return
        # as a secret's warning, on a secret's lead: the rotated version lives the strictest validity
        # (below), and with 30 days or less Key Vault's warning for it would come at once
        validity = strictest_validity(policies, policy)
        waiting = not_yet_due(ev.kind, current.expires_on, ctx.now, rotation_lead(validity))
        if waiting:
            row.verdict, row.reason, row.message = "compliant", "", f"key version {current.version} {waiting}"
            return
        if policy.mode == "audit" or getattr(ctx, "dry_run", False):
            rec = self._record(policy, "expiring-key", before, None, "dry_run", "audit mode: would rotate the key")
            return self._close(row, [rec], "would rotate the key")
        self._note_key_rotation(ctx, ev, current.version)
        permit = self._permit(row, policy, ev)
        if permit is None:
            rec = self._record(policy, "expiring-key", before, None, "dry_run",
                               "circuit open: key rotation not taken until reset")
            self._notify(row, ev, ref.owner, rec)        # held until a reset: as a secret's, the owner is told
            return self._close(row, [rec], "expiring-key: circuit open")
        self._intend(ctx, row, ev, self._record(policy, "expiring-key", before, None, "requested", "rotate_key sent"))
        try:
            new = self.store.rotate_key(ev.vault_name, ev.object_name, deadline=ctx.deadline)
        except ArmError as exc:
            row.reason = exc.reason
            if refused_outright(exc):              # Key Vault made no version: the permit goes back
                self._give_back(permit)
            rec = self._record(policy, "expiring-key", before, None, "failed", f"rotate_key failed: {exc}")
            return self._close(row, [rec], "key rotation failed")
        rec = self._record(policy, "expiring-key", before, {"version": new.version}, "remediated",
                           "rotated with Key Vault's rotate_key")
        records = [rec, *self._key_expiry(ctx, row, policy, ref, ev, new, rec, expiry_for(ctx.now, validity))]
        self._close(row, records, f"key {ev.vault_name}/{ev.object_name} rotated to {new.version}"
                                  + (f"; {records[-1].message}" if len(records) > 1 else ""))

    def _key_expiry(self, ctx, row, policy, ref, ev, new, rec, expires) -> list:
        """The rotated version's expiry, as a rotated secret's (``expiry_for`` the strictest
        validity), noted on the rotation's record ``rec``: ``rotate_key`` sets one only when the
        key's rotation policy does (a shorter one it set is kept). A write that fails leaves a
        working key without it: a ``failed`` record, and the owner told (the retry finds the key
        rotated and does not come back to it)."""
        if new.expires_on is not None and new.expires_on <= expires:
            return []
        try:
            self.store.update_key(ev.vault_name, ev.object_name, new.version, expires_on=expires,
                                  deadline=ctx.deadline)
        except ArmError as exc:
            row.reason = exc.reason
            after = {"version": new.version, "expires_on": expires.isoformat()}
            failed = self._record(policy, "expiring-key", None, after, "failed",
                                  f"rotated, but the expiry of version {new.version} could not be set: {exc}; "
                                  f"set it by hand")
            self._notify(row, ev, ref.owner, failed)
            return [failed]
        rec.after = {**rec.after, "expires_on": expires.isoformat()}
        rec.message = f"{rec.message}; it expires {expires.date().isoformat()} (the policy's validity)"[:300]
        return []

    def _note_key_rotation(self, ctx, ev, version: str) -> None:
        """Keep, with the event's claim, that this delivery sets out to rotate ``version`` (see the
        module doc). A recovery aid only: a note the store refuses is logged and the rotation goes
        ahead; a claim another delivery took over stops it (that one decides)."""
        intent = {"by": getattr(ctx, "delivery_id", ""),
                  "rotate_key": {"vault": ev.vault_name.lower(), "name": ev.object_name.lower(), "version": version}}
        note_intent_or_warn(self.svc, ctx, intent, vault=ev.vault_name, object=ev.object_name)

    def _unaudited_key_rotation(self, ctx, row, policy, ev, current):
        """This delivery took the event over from one that noted it set out to rotate a version of
        this key that is no longer current, and neither that one nor the one taken over wrote a row:
        it rotated and stopped before its audit row. The rotation, for this delivery's row; None
        otherwise. One table read or two, on such takeovers only."""
        taken = getattr(ctx, "taken_intent", "")
        if not taken:
            return None
        try:
            noted = json.loads(taken)
        except ValueError:
            return None
        meant = noted.get("rotate_key") if isinstance(noted, dict) else None
        if (not isinstance(meant, dict) or str(meant.get("vault", "")).lower() != ev.vault_name.lower()
                or str(meant.get("name", "")).lower() != ev.object_name.lower()):
            return None
        rotated = str(meant.get("version") or "")
        if not rotated or rotated == current.version:
            return None                         # it died before its rotate_key took effect: decide anew
        takeover = getattr(ctx, "takeover", "")
        by = str(noted.get("by") or "") or takeover
        try:
            # the attempt that noted it, not only the one taken over: it may have audited and died
            # after, and the one after it died again before writing anything
            if any(r.verdict != "shadow" for d in {by, takeover} if d
                   for r in self.svc.audit.rows_of_delivery(row.resource_id, d)):
                return None
        except StoreError as exc:
            emit(log, logging.WARNING, "guardrail_takeover_rows_unread", error=type(exc).__name__)
            return None
        emit(log, logging.WARNING, "guardrail_unaudited_rotation_recorded", vault=ev.vault_name,
             object=ev.object_name, version=current.version, by=by[:64])
        before = {"vault": ev.vault_name, "name": ev.object_name, "version": rotated}
        return self._record(policy, "expiring-key", before, {"version": current.version}, "remediated",
                            f"an earlier delivery of this event ({by[:64]}) set out to rotate version {rotated} "
                            f"with Key Vault's rotate_key and stopped before its audit row; version "
                            f"{current.version} was current when retried")


def _key_disabled(row, ev, version: str | None) -> None:
    """As a disabled secret: a disabled key was taken out of service (a customer-managed key disabled
    to cut access); ``rotate_key`` would make an enabled version and undo that. Permanent, so not a
    failure retried for 24 h."""
    row.verdict, row.reason = "ignored", SECRET_DISABLED
    which = f"version {version} of key" if version else "key"
    row.message = (f"{which} {ev.vault_name}/{ev.object_name} is disabled: not rotated (enable it, or rotate it "
                   f"by hand, to bring it back under rotation)")
