"""The secret guardrail's rotations (``secret_guardrail``): ``SecretNearExpiry`` /
``SecretExpired`` and ``Guardrails.SecretExposed``, mixed into ``SecretGuardrail`` as
``RotationDecisions``.

    lease ─▶ current version (none: ``secret_not_found``) ─▶ an exposure's named version known?
        ─▶ reference in metadata? ─▶ a rotation an earlier delivery made and did not audit?
        ─▶ still current, enabled, due? ─▶ certificate / exposure already answered / notify-only /
           audit / storage account shared ─▶ breaker permit ─▶ outbox intent (a sweep's)
        ─▶ the reference's strategy rotates ─▶ (exposure) every older version disabled

The rotation lease, and the ``ORIGIN_TAG`` by which a later delivery audits a rotation an earlier
one made and could not record (``_unaudited_rotation``), are described in ``secret_guardrail``.
What an exposure adds (older versions disabled, an exposure already answered, the version a report
names) is ``secret_exposure``.
"""

from __future__ import annotations

import logging

from .errors import ArmError, GuardrailsError, ResourceNotFound, StoreError
from .logs import emit, notify_owner
from .model.decision import ViolationRecord
from .secret_exposure import _rotated_for_exposure, _still_enabled
from .secret_rails import _reported_by
from .secrets.credentials import looks_like_credential
from .secrets.lease import rotation_lease
from .secrets.policy import account_sharers, shared_account_note
from .secrets.rotation import (STRATEGIES, BoundRotationIO, RotationError, account_name_of, expiry_for, not_yet_due,
                               rotation_lead, strictest_validity)
from .secrets.values import (EXPOSURE_TAG, LIVE_KEY_TAG, NOT_ENFORCED, ORIGIN_TAG, REASON_TAG, SECRET_DISABLED,
                             SHARED_STORAGE_ACCOUNT)

log = logging.getLogger("guardrails")


class RotationDecisions:
    """Mixed into ``SecretGuardrail``: uses its ``store``, ``storage_keys``, ``svc`` (idempotency,
    settings, policies, audit), the rows and permits of ``SecretRails`` and what ``ExposureDecisions``
    adds for an exposure."""

    def _rotate(self, ctx, row, ev, policies, *, exposed: bool) -> None:
        hit = next(((p, p.secret(ev.vault_name, ev.object_name)) for p in policies
                    if p.secret(ev.vault_name, ev.object_name)), None)
        if hit is not None and hit[1].rotation.strategy != "notify-only" and self._acting(ctx, hit[0]):
            # read-then-rotate under the lease every worker and the sweep share: the one that comes
            # second reads the version the first wrote ("already rotated"), or is retried later
            with rotation_lease(self.svc.idempotency, ev.vault_name, ev.object_name, holder=ctx.delivery_id,
                                wait_until=self._lease_wait(ctx)):
                return self._rotate_leased(ctx, row, ev, policies, hit, exposed=exposed)
        return self._rotate_leased(ctx, row, ev, policies, hit, exposed=exposed)

    def _lease_wait(self, ctx) -> float | None:
        """How long a delivery waits for a rotation lease another holds: until half its time
        budget is left (then it is redelivered); a timer's decision does not wait (the sweep
        skips the secret this run)."""
        if getattr(ctx, "claim", None) is None:           # the sweep, a check: no redelivery to wait for
            return None
        return ctx.deadline - self.svc.settings.time_budget_seconds / 2

    def _rotate_leased(self, ctx, row, ev, policies, hit, *, exposed: bool) -> None:
        try:
            current = self._current(ctx, ev)
        except ResourceNotFound:
            row.verdict, row.reason = "ignored", "secret_not_found"
            row.message = f"secret {ev.vault_name}/{ev.object_name} does not exist"
            if exposed:
                # deleted after the leak (what it held, a storage key, may still work), or a name
                # mistyped: nothing rotated and nothing revisits an exposure, so the owner is told
                # (an Event Grid report has no caller a 404 would reach)
                _exposure_unanswered(row, ev, hit, f"exposure report for {ev.vault_name}/{ev.object_name}, which "
                                     "does not exist: nothing rotated; whatever it held (a storage account key, a "
                                     "token) may still work: revoke it by hand")
            return
        except ArmError as exc:
            row.verdict, row.reason, row.message = "failed", exc.reason, f"read secret: {exc}"
            return
        before = current.describe()
        if exposed and ev.version and ev.version.lower() != current.version.lower():
            try:
                named = self._named_version(ctx, ev, current)
            except ArmError as exc:
                row.verdict, row.reason, row.message = "failed", exc.reason, f"list secret versions: {exc}"
                return
            if named is None:
                # a report naming a version the secret never had (a typo, another secret's version, a
                # forged report) is neither proof the exposure was answered nor a leak to act on:
                # refused, and the owner told (HTTP: 404 ``unknown_version``)
                row.verdict, row.reason = "ignored", "version_not_found"
                named_as = ("<not shown: it looks like a credential>" if looks_like_credential(ev.version)
                            else ev.version)
                _exposure_unanswered(row, ev, hit, f"exposure report names version {named_as} of {ev.vault_name}/"
                                     f"{ev.object_name}, which does not exist (current: {current.version}): nothing "
                                     "rotated; report the exposed version, or none for the current one")
                return
        if hit is None:
            policy = policies[0]
            if current.managed:
                return self._certificate(row, policy, ev, "unknown owner", before,
                                         "exposed-secret" if exposed else "unreferenced-secret")
            rec = self._record(policy, "unreferenced-secret", before, None, "violation",
                               "no secret reference in metadata: cannot rotate; owner must rotate by hand")
            self._notify(row, ev, "unknown owner", rec)
            return self._close(row, [rec], f"{ev.event_type}: {ev.vault_name}/{ev.object_name} has no secret reference")
        policy, ref = hit
        if not exposed:
            recovered = self._unaudited_rotation(ctx, row, policy, ev, current)
            if recovered is not None:
                row.policies = [policy.ref]
                return self._close(row, [recovered], f"{recovered.rule}: {ev.vault_name}/{ev.object_name} rotated "
                                                     f"to version {current.version} by an earlier delivery of this "
                                                     f"event, audited late")
        if not exposed and ev.version and ev.version != current.version:
            row.verdict, row.reason = "compliant", ""
            row.message = (f"version {ev.version} is no longer current ({current.version}): already rotated")
            row.policies = [policy.ref]
            return
        row.policies = [policy.ref]
        if not exposed and not current.enabled:
            # as the sweep: a disabled secret serves no consumer, and rotating it would bring back
            # a value someone took out of service; permanent, so not a failure retried forever
            row.verdict, row.reason = "ignored", SECRET_DISABLED
            row.message = (f"version {current.version} of {ev.vault_name}/{ev.object_name} is disabled: not "
                           f"rotated (enable it, or write a new version, to bring it back under rotation)")
            return
        # the strictest validity of every enforcing policy on the vault: a longer one would be cut
        # by that policy's hygiene to inside the rotation lead, and rotated again on every sweep
        validity = strictest_validity(policies, policy)
        waiting = not_yet_due(ev.kind, current.expires_on, ctx.now, rotation_lead(validity))
        if waiting:
            row.verdict, row.reason, row.message = "compliant", "", f"version {current.version} {waiting}"
            return
        rule = "exposed-secret" if exposed else ("expired-secret" if ev.kind == "Expired" else "expiring-secret")
        if current.managed:
            return self._certificate(row, policy, ev, ref.owner, before, rule)
        if exposed and _rotated_for_exposure(ev, current):
            return self._exposure_handled(ctx, row, policy, ref, ev, current, before)
        if ref.rotation.strategy == "notify-only":
            rec = self._record(policy, rule, before, None, "violation", "notify-only: no rotation possible")
            self._notify(row, ev, ref.owner, rec)
            return self._close(row, [rec], f"{rule}: {ev.vault_name}/{ev.object_name} needs manual rotation")
        if exposed and policy.mode == "audit" and not getattr(ctx, "dry_run", False):
            # observe-only, but nothing revisits an exposure: the owner is told it was NOT rotated
            row.reason = NOT_ENFORCED
            rec = self._record(policy, rule, before, None, "violation",
                               f"audit mode: the exposed secret was NOT rotated (policy {policy.id} only observes); "
                               f"rotate it by hand, or set the policy to enforce and report it again")
            self._notify(row, ev, ref.owner, rec)
            return self._close(row, [rec], f"{rule}: {ev.vault_name}/{ev.object_name} was NOT rotated: policy "
                                           f"{policy.id} is in audit mode; rotate it by hand{_reported_by(ev)}")
        if policy.mode == "audit" or getattr(ctx, "dry_run", False):
            rec = self._record(policy, rule, before, {"strategy": ref.rotation.strategy}, "dry_run",
                               f"audit mode: would rotate with {ref.rotation.strategy}")
            return self._close(row, [rec], f"{rule}: would rotate")
        if ref.rotation.strategy == "storage-account-key":
            sharers = account_sharers(self._all_secret_policies(), ref)
            if sharers:
                return self._shared_account(row, policy, ref, ev, before, rule, sharers, exposed=exposed)
        permit = self._permit(row, policy, ev)
        if permit is None:
            if exposed:
                # nothing revisits an exposure (the sweep looks at expiry dates): the owner must act
                rec = self._record(policy, rule, before, None, "violation",
                                   "circuit open: the exposed secret was NOT rotated; rotate it by hand, or reset "
                                   f"the breaker (`guardrails breaker reset {policy.id} keyvault:{ev.vault_name.lower()}`)"
                                   " and report it again")
                self._notify(row, ev, ref.owner, rec)
            else:
                # held until someone resets the breaker: every later due rotation in the vault is
                # held too, so the owner hears of it (README: held back, the owner is told)
                rec = self._record(policy, rule, before, None, "dry_run", "circuit open: rotation not taken until reset")
                self._notify(row, ev, ref.owner, rec)
            return self._close(row, [rec], f"{rule}: circuit open")
        strategy = STRATEGIES[ref.rotation.strategy]
        expires = expiry_for(ctx.now, validity)
        self._intend(ctx, row, ev, self._record(policy, rule, before, None, "requested", "rotation sent"))
        try:
            io = BoundRotationIO(self.store, self.storage_keys, ctx.deadline)
            tags = {ORIGIN_TAG: _origin(ctx.delivery_id, ev.event_id)}
            if exposed:
                tags[EXPOSURE_TAG] = ev.event_id[:256]
            rotated = strategy.rotate(ref, current, io, reason=rule, expires_on=expires, revoke=exposed, tags=tags)
        except RotationError as exc:
            row.reason = "rotation_failed"
            refused = exc.new is None and not io.wrote
            if refused:
                self._give_back(permit)
            rec = self._record(policy, rule, before, exc.new.describe() if exc.new else None, "failed", str(exc))
            if refused:                 # the strategy refused (a retry refuses again): the owner acts
                self._notify(row, ev, ref.owner, rec)
            records = [rec]
            if exposed and exc.new is not None:      # the secret holds a working new value: contain the rest
                records.extend(self._disable_older(ctx, row, policy, ev, exc.new.version))
                row.reason = "rotation_failed"
            left = _still_enabled(records)
            return self._close(row, records, f"{rule}: rotation {'partly done' if exc.new else 'failed'}: {exc}"
                                             + (f"; {left}" if left else ""))
        except GuardrailsError as exc:
            row.reason = exc.reason
            if io.wrote:
                # sent and not refused outright (a lost answer, a 5xx): the new version may be there;
                # the redelivery reads what the vault holds (``_unaudited_rotation``, "already rotated")
                what = f"rotation failed; its write may have been made (no answer says otherwise): {exc}"
            else:
                self._give_back(permit)
                what = f"rotation failed before any change: {exc}"
            rec = self._record(policy, rule, before, None, "failed", what)
            return self._close(row, [rec], f"{rule}: rotation failed")
        records = [self._record(policy, rule, before, rotated.new.describe(), "remediated", rotated.detail)]
        if exposed:
            records.extend(self._disable_older(ctx, row, policy, ev, rotated.new.version))
        left = _still_enabled(records)
        self._close(row, records, f"{rule}: {ev.vault_name}/{ev.object_name} rotated to version "
                                  f"{rotated.new.version} ({ref.rotation.strategy}){_reported_by(ev)}"
                                  + (f"; {left}" if left else ""))

    def _current(self, ctx, ev):
        """The current version, with its value where it can be read; a disabled one (403
        SecretDisabled on the value) by its properties, without a value."""
        try:
            return self.store.get_secret(ev.vault_name, ev.object_name, with_value=True, deadline=ctx.deadline)
        except ArmError as exc:
            if exc.reason != SECRET_DISABLED:
                raise
        return self.store.get_properties(ev.vault_name, ev.object_name, current_disabled=True, prefer=ev.version,
                                         deadline=ctx.deadline)

    def _all_secret_policies(self) -> tuple:
        """Every ``kind: secrets`` policy of the set in force, ``off`` ones too (the secrets they
        name still hold what they hold)."""
        compiled = self.svc.policies.get()
        return tuple(p for p in getattr(compiled, "all_policies", ()) if getattr(p, "kind", "") == "secrets")

    def _shared_account(self, row, policy, ref, ev, before, rule, sharers, *, exposed: bool) -> None:
        """Another referenced secret rotates the keys of the storage account ``ref`` rotates (a policy
        row an earlier release synced; ``metadata validate``/``sync`` refuse it now): the rotation
        would regenerate the key that secret holds and lock its consumers out. Nothing regenerated,
        the owner told."""
        row.reason = SHARED_STORAGE_ACCOUNT
        others = ", ".join(f"{s.vault}/{s.name} (policy {p.id})" for p, s in sharers[:5])
        done = ("NOT rotated: the exposed value still works; rotate it by hand (regenerate the account's keys and "
                "update every secret holding one)" if exposed else "NOT rotated")
        # the record's message is short (300 characters): the account by name, the row's says it all
        rec = self._record(policy, rule, before, None, "violation",
                           f"{done}: {others} also rotate the keys of storage account "
                           f"{account_name_of(ref.rotation.account or '')}; keep one secret per storage account")
        self._notify(row, ev, ref.owner, rec)
        self._close(row, [rec], f"{rule}: {ev.vault_name}/{ev.object_name} {done}: "
                                f"{shared_account_note(ref.rotation.account, others)}; `metadata sync` refuses "
                                f"this policy set now: change it and sync again{_reported_by(ev)}")

    def _unaudited_rotation(self, ctx, row, policy, ev, current) -> ViolationRecord | None:
        """The current version is the guardrail's rotation for THIS event (``ORIGIN_TAG``) made by
        another delivery of it, and that delivery wrote no audit row: it rotated and stopped before
        its row (killed, or an error escaped after Key Vault stored the version; its event claim was
        released or taken over). The rotation, as the version shows it, for this delivery's row;
        None otherwise. One table read, only when the tag names another delivery of this event."""
        tags = current.tags or {}
        by, _, _ = str(tags.get(ORIGIN_TAG) or "").partition(" ")
        if (not current.written_by_guardrail or not by or by == ctx.delivery_id
                or tags.get(ORIGIN_TAG) != _origin(by, ev.event_id)):
            return None
        try:
            if any(r.verdict != "shadow" for r in self.svc.audit.rows_of_delivery(row.resource_id, by)):
                return None                 # it audited (and died before completing the event): done
        except StoreError as exc:
            emit(log, logging.WARNING, "guardrail_takeover_rows_unread", error=type(exc).__name__)
            return None
        rule = str(tags.get(REASON_TAG) or "") or ("expired-secret" if ev.kind == "Expired" else "expiring-secret")
        live = tags.get(LIVE_KEY_TAG)
        what = f"; {live} of the storage account was regenerated and is live in it" if live else ""
        before = {"vault": ev.vault_name, "name": ev.object_name, "version": ev.version} if ev.version else None
        emit(log, logging.WARNING, "guardrail_unaudited_rotation_recorded", vault=ev.vault_name,
             object=ev.object_name, version=current.version, by=by[:64])
        return self._record(policy, rule, before, current.describe(), "remediated",
                            f"rotated to version {current.version} by an earlier delivery of this event "
                            f"({by[:64]}), which stopped before its audit row{what}")


def _origin(delivery_id: str, event_id: str) -> str:
    """``ORIGIN_TAG``'s value: which delivery of which event wrote the version (Key Vault: 256
    characters a tag value)."""
    return f"{delivery_id} {event_id}"[:256]


def _exposure_unanswered(row, ev, hit, message: str) -> None:
    """An exposure report nothing was rotated for (the secret, or the version it names, does not
    exist): nothing revisits an exposure, so the row notifies and the owner (the referencing
    policy's, if any) is told."""
    row.notify = True
    row.policies = [hit[0].ref] if hit else []
    row.message = f"{message}{_reported_by(ev)}"[:2000]
    notify_owner(log, owner=hit[1].owner if hit else "unknown owner", vault=ev.vault_name,
                 object=ev.object_name, rule="exposed-secret")
