"""The secret guardrail: Key Vault events and exposure reports on the same pipeline.

    SecretNearExpiry / SecretExpired ─▶ reference in metadata? ─▶ still the current version?
        ─▶ rotate with the reference's strategy (enforce) ─▶ new version, tagged as ours
    Guardrails.SecretExposed (event or HTTP) ─▶ already rotated for it? ─▶ rotate at once (a storage
        key: every key of the account regenerated) ─▶ disable every older enabled version
    SecretNewVersionCreated ─▶ hygiene (expiry required / not too far) ─▶ breaker permit ─▶ set
        expiry; a compliant version the guardrail wrote is ``ignored`` (its tag is never trusted to
        skip the check)
    KeyNearExpiry / KeyExpired ─▶ key reference with rotate ─▶ Key Vault's own rotate_key (a disabled
        key, readable or 403 KeyDisabled: ``ignored`` / ``secret_disabled``, never rotated back to life)
    VaultAccessPolicyChanged ─▶ re-read the vault from ARM, evaluate the vault resource policies

An exposure naming a version other than the current one is checked against the secret's versions
(properties only): one it never had is ``ignored`` / ``version_not_found`` and notifies (HTTP 404
``unknown_version``), never "already answered". An exposure of a secret that does not exist (deleted
after the leak: a storage key it held may still work) is ``ignored`` / ``secret_not_found`` and
notifies too (HTTP 404 ``unknown_secret``).

Two referenced secrets whose ``storage-account-key`` rotations name one storage account (a policy
row an earlier release synced; ``metadata validate``/``sync`` refuse it now) are never rotated:
each rotation would regenerate the key the other holds. A ``violation`` (``shared_storage_account``)
that notifies (HTTP: 422).

A certificate's backing secret (``managed``: Key Vault keeps the certificate's PFX/PEM in it) is
never written, whichever path would (rotation, exposure, expiry hygiene): a ``violation`` with
reason ``certificate_managed`` tells the owner to re-issue the certificate. An exposure only an
``audit``-mode policy governs is not rotated either: a ``violation`` (``not_enforced``) that
notifies, since nothing revisits an exposure (HTTP: 422, as every report left unrotated).

Policies are considered enforcing ones first: a policy in ``audit`` mode beside an enforcing one
records what it would do and never stops the enforcing one from acting.

A rotation (of a secret or a key) is made under a lease shared by every worker and the sweep
(``secrets.lease``): acquired before the current version is read, released after; held by another,
the event is redelivered (``IdempotencyError``) and the sweep skips the secret. Each version the
guardrail writes is tagged with the delivery and event that wrote it (``ORIGIN_TAG``): a later
delivery of the same event that finds it, and no audit row of that delivery, audits the rotation
the earlier one made and could not record (``_unaudited_rotation``).

Secret values exist only inside ``Redacted`` between the SDK and the SDK.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from .errors import ArmError, ArmTransient, GuardrailsError, ResourceNotFound, StoreError
from .logs import emit, notify_owner
from .model.decision import ViolationRecord, combine_verdict
from .model.keyvault_events import exposure_scope
from .safety_rails import give_back_permit
from .secrets.credentials import looks_like_credential, looks_like_free_text_credential
from .secrets.lease import rotation_lease
from .secrets.keys import KeyDecisions
from .secrets.policy import account_sharers, shared_account_note
from .secrets.rotation import (STRATEGIES, BoundRotationIO, RotationError, account_name_of, expiry_for, finish_revoke,
                               not_yet_due, refused_outright, rotation_lead, strictest_validity)
from .secrets.values import (CERTIFICATE_MANAGED, EXPOSURE_TAG, LIVE_KEY_TAG, NOT_ENFORCED, ORIGIN_TAG, REASON_TAG,
                             REVOKE_PENDING_TAG, SECRET_DISABLED, SHARED_STORAGE_ACCOUNT)

log = logging.getLogger("guardrails")


# reasons a row keeps past ``_close``: why nothing was done, for the answer and the reader
_KEPT_REASONS = frozenset({"circuit_open", CERTIFICATE_MANAGED, NOT_ENFORCED, SHARED_STORAGE_ACCOUNT})


@dataclass
class _Permit:
    """A rotation's circuit-breaker permit: its policy, the vault's scope, the key it was taken
    with (``_permit_key``), and whether this call counted it (only such a permit is given back)."""

    policy_id: str
    scope: str
    key: str | None
    counted: bool


def _permit_key(row, ev) -> str | None:
    """What a rotation's permit is keyed by (a redelivery reuses it; only its taker gives it back):
    the event's id, and for an exposure report also what makes it one report (``exposure_scope``:
    scanners choose their own ids, and two reports with one id about two secrets are two
    rotations; one failing must not give back the permit the other rotated on)."""
    if not row.event_id:
        return None
    scope = exposure_scope(ev)
    if not scope:
        return row.event_id
    return f"{row.event_id[:200]}|{hashlib.sha256(scope.encode()).hexdigest()[:32]}"


def _vault_scope(vault: str) -> str:
    return f"keyvault:{vault.lower()}"


def _certificate_note(ev) -> str:
    return (f"{ev.vault_name}/{ev.object_name} backs the certificate {ev.object_name} (Key Vault manages its "
            f"lifetime): not written, a new version would break every consumer of the certificate; re-issue "
            f"the certificate instead")


class SecretGuardrail(KeyDecisions):
    def __init__(self, service, store, storage_keys=None) -> None:
        self.svc = service
        self.store = store              # adapters.keyvault.KeyVaultGateway
        self.storage_keys = storage_keys

    # ------------------------------------------------------------------------------------
    def decide(self, ctx, row, ev, policies) -> None:
        policies = sorted(policies, key=lambda p: p.mode != "enforce")     # stable: file order otherwise
        kind = ev.kind
        if ev.object_type == "Certificate":
            row.verdict, row.reason = "ignored", "recorded_only"
            row.message = f"certificate event recorded ({kind}); certificates are not rotated by the guardrail"
            return
        if ev.object_type == "Key":
            return self._key(ctx, row, ev, policies)
        if kind == "NewVersionCreated":
            return self._new_version(ctx, row, ev, policies)
        if kind in ("NearExpiry", "Expired", "Exposed"):
            return self._rotate(ctx, row, ev, policies, exposed=(kind == "Exposed"))
        row.verdict, row.reason, row.message = "ignored", "event_type_not_evaluated", f"{ev.event_type} not evaluated"

    def _record(self, policy, rule, before, after, outcome, message) -> ViolationRecord:
        return ViolationRecord(policy=policy.ref, rule=rule, property="secret", before=before, after=after,
                               outcome=outcome, message=message[:300])

    def _intend(self, ctx, row, ev, planned: ViolationRecord, *, before: list[ViolationRecord] = ()) -> None:
        """A sweep's act (a rotation, ``rotate_key``, an expiry set) keeps its intent in the outbox
        first (``outbox.intend_before_act``): a timer is never redelivered, so a worker dying between
        the write and its audit row would leave the write recorded nowhere (an event's redelivery
        finds it by the version's tag instead). Right before the write, after the permit, so every
        way on ends in a published row (remediated, or failed with its record) that replaces it."""
        from .outbox import intend_before_act

        intend_before_act(getattr(self.svc, "publisher", None), ctx, row, [planned], records=[*before, planned],
                          sent_message="sent; the worker stopped before auditing it",
                          line=lambda v: f"{v.rule}: {ev.vault_name}/{ev.object_name} ({v.outcome})")

    def _close(self, row, records, message) -> None:
        row.violations = records
        row.verdict = combine_verdict([r.outcome for r in records])
        if row.verdict != "failed" and row.reason not in _KEPT_REASONS:
            row.reason = ""
        row.notify = row.notify or any(r.outcome == "violation" for r in records)
        row.message = message[:2000]

    # -- rotation ------------------------------------------------------------------------
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

    def _permit(self, row, policy, ev) -> "_Permit | None":
        """A circuit-breaker permit for one rotation in this vault (None when refused: the row's
        reason is ``circuit_open`` and it is logged at ERROR; the caller records what was not
        done). It says whether this call took it, so a rotation that then changes nothing gives it
        back (``_give_back``)."""
        scope, key = _vault_scope(ev.vault_name), _permit_key(row, ev)
        ask = dict(max_actions=policy.breaker.max_actions, window_seconds=policy.breaker.window_seconds, key=key)
        acquire = getattr(self.svc.breakers, "acquire", None)
        if acquire is not None:
            allowed, counted = acquire(policy.id, scope, **ask)
        else:                                   # a store that cannot tell: nothing is given back
            allowed, counted = self.svc.breakers.try_acquire(policy.id, scope, **ask), False
        if allowed:
            return _Permit(policy.id, scope, key, counted)
        row.reason = "circuit_open"
        emit(log, logging.ERROR, "guardrail_circuit_open", policy=policy.id, vault=ev.vault_name,
             max_actions=policy.breaker.max_actions, window_seconds=policy.breaker.window_seconds)
        return None

    def _give_back(self, permit: "_Permit") -> None:
        """The rotation ``permit`` was taken for changed nothing (refused before any write): its
        permit no longer counts against the vault's window. A permit an earlier delivery of the
        event took is kept (that delivery may have rotated)."""
        if permit.counted and permit.key:
            permit.counted = False
            give_back_permit(self.svc.breakers, permit.policy_id, permit.scope, permit.key)

    @staticmethod
    def _acting(ctx, policy) -> bool:
        """Whether this decision may write (an enforcing policy, not a dry run)."""
        return policy.mode == "enforce" and not getattr(ctx, "dry_run", False)

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
                row.notify = True
                row.policies = [hit[0].ref] if hit else []
                row.message = (f"exposure report for {ev.vault_name}/{ev.object_name}, which does not exist: nothing "
                               f"rotated; whatever it held (a storage account key, a token) may still work: revoke "
                               f"it by hand{_reported_by(ev)}")[:2000]
                notify_owner(log, owner=hit[1].owner if hit else "unknown owner", vault=ev.vault_name,
                             object=ev.object_name, rule="exposed-secret")
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
                row.verdict, row.reason, row.notify = "ignored", "version_not_found", True
                row.policies = [hit[0].ref] if hit else []
                named_as = ("<not shown: it looks like a credential>" if looks_like_credential(ev.version)
                            else ev.version)
                row.message = (f"exposure report names version {named_as} of {ev.vault_name}/{ev.object_name}, "
                               f"which does not exist (current: {current.version}): nothing rotated; report the "
                               f"exposed version, or none for the current one{_reported_by(ev)}")[:2000]
                notify_owner(log, owner=hit[1].owner if hit else "unknown owner", vault=ev.vault_name,
                             object=ev.object_name, rule="exposed-secret")
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

    def _certificate(self, row, policy, ev, owner, before, rule) -> None:
        """A certificate's backing secret the path would write: nothing written, the owner told."""
        row.reason = CERTIFICATE_MANAGED
        rec = self._record(policy, rule, before, None, "violation", _certificate_note(ev))
        self._notify(row, ev, owner, rec)
        self._close(row, [rec], f"{rule}: {_certificate_note(ev)}{_reported_by(ev)}")

    def _exposure_handled(self, ctx, row, policy, ref, ev, current, before) -> None:
        """The exposure was already answered by the current version (a redelivery after a partial
        failure, a second report of the same version): no second rotation, which would also revoke
        the value just handed out; only what is left: regenerating the storage keys the answer is
        tagged as not yet revoked, and disabling the older versions."""
        recovered = self._unaudited_rotation(ctx, row, policy, ev, current)
        records = [recovered] if recovered is not None else []
        if (current.tags or {}).get(REVOKE_PENDING_TAG) and ref.rotation.strategy == "storage-account-key":
            io = BoundRotationIO(self.store, self.storage_keys, ctx.deadline)
            try:
                _, detail = finish_revoke(ref, current, io)
                records.append(self._record(policy, "exposed-secret", before, None, "remediated",
                                            f"exposure: finished revoking: {detail}"))
            except RotationError as exc:
                row.reason = "rotation_failed"
                records.append(self._record(policy, "exposed-secret", before, None, "failed", str(exc)))
        records += self._disable_older(ctx, row, policy, ev, current.version)
        head = (f"exposure already answered by version {current.version}, which the guardrail wrote for an "
                f"exposure{_reported_by(ev)}")
        if not records:
            row.verdict, row.reason = "compliant", ""
            row.message = f"{head}; no older version is enabled"[:2000]
            return
        self._close(row, records, f"{head}; {_still_enabled(records) or 'older versions disabled'}")

    def _named_version(self, ctx, ev, current):
        """The version an exposure report names, when it is one of the secret's versions older than
        the current one (listed: properties only, never a value); None otherwise."""
        for v in self.store.list_versions(ev.vault_name, ev.object_name, deadline=ctx.deadline):
            if v.version.lower() != ev.version.lower() or v.version.lower() == current.version.lower():
                continue
            if v.created_on is not None and current.created_on is not None and v.created_on > current.created_on:
                return None
            return v
        return None

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

    def _disable_older(self, ctx, row, policy, ev, new_version: str) -> list[ViolationRecord]:
        """Disable every enabled version but ``new_version``, within the delivery's budget as the
        rest of the path: a secret rotated for years has hundreds, and a loop past the deadline
        would have the host kill the worker before its audit row. The versions left enabled are one
        ``failed`` record (``before.enabled_versions``): the row is failed and Event Grid's retry
        finds the exposure answered (``_exposure_handled``) and disables the rest."""
        out = []
        try:
            versions = self.store.list_versions(ev.vault_name, ev.object_name, deadline=ctx.deadline)
        except ArmError as exc:
            row.reason = exc.reason
            return [self._record(policy, "disable-exposed-versions", None, None, "failed",
                                 f"new version set; listing old versions failed: {exc}")]
        enabled = [v for v in versions if v.version != new_version and v.enabled]
        for n, v in enumerate(enabled):
            if self.svc._clock() > ctx.deadline:
                row.reason = ArmTransient.reason
                left = [w.version for w in enabled[n:]]
                out.append(self._record(
                    policy, "disable-exposed-versions",
                    {"vault": ev.vault_name, "name": ev.object_name, "enabled_versions": left}, {"enabled": False},
                    "failed", f"{len(left)} older version(s) still enabled: the delivery's time budget ran out; "
                              f"its retry disables them"))
                break
            try:
                self.store.update_version(ev.vault_name, ev.object_name, v.version, enabled=False, deadline=ctx.deadline)
                out.append(self._record(policy, "disable-exposed-versions", v.describe(), {"enabled": False},
                                        "remediated", "older version disabled after exposure"))
            except ArmError as exc:
                row.reason = exc.reason
                out.append(self._record(policy, "disable-exposed-versions", v.describe(), {"enabled": False},
                                        "failed", f"could not disable: {exc}"))
        return out

    # -- new versions: ours, or hygiene --------------------------------------------------
    def _new_version(self, ctx, row, ev, policies) -> None:
        try:   # properties only: a version created disabled has no readable value (403 SecretDisabled)
            version = self.store.get_properties(ev.vault_name, ev.object_name, version=ev.version,
                                                deadline=ctx.deadline)
        except ResourceNotFound:
            row.verdict, row.reason, row.message = "ignored", "secret_not_found", "the version no longer exists"
            return
        except ArmError as exc:
            row.verdict, row.reason, row.message = "failed", exc.reason, f"read secret: {exc}"
            return
        # the guardrail's own versions meet the rules by construction (expiry = now + the policy's
        # validity); the tag marking them is writable by anyone who can write the secret, so it only
        # labels a compliant version, never skips the check
        row.policies = [p.ref for p in policies]
        records = []
        # one expiry write per version, inside every enforcing policy's validity, whichever flags it
        strictest = expiry_for(ctx.now, strictest_validity(policies))
        owner = next((r.owner for r in (q.secret(ev.vault_name, ev.object_name) for q in policies) if r),
                     "unknown owner")
        for p in policies:
            limit = ctx.now + timedelta(days=p.max_validity_days) if p.max_validity_days else None
            rule = None
            if version.expires_on is None and p.require_expiry:
                rule, msg = "expiry-required", "new version has no expiry date"
            elif limit is not None and version.expires_on is not None and version.expires_on > limit + timedelta(minutes=5):
                rule, msg = "expiry-too-far", f"expiry further out than {p.max_validity_days} days"
            if rule is None:
                continue
            target = strictest if p.mode == "enforce" else expiry_for(ctx.now, p.max_validity_days)
            rec = self._record(p, rule, version.describe(), {"expires_on": target.isoformat()}, "violation", msg)
            if version.managed:          # a certificate's: its validity is the certificate's to change
                rec.after, rec.message = None, f"{msg}: {_certificate_note(ev)}"[:300]
                if p.mode == "audit" or getattr(ctx, "dry_run", False):
                    rec.outcome = "dry_run"
                    records.append(rec)
                    continue
                row.reason = CERTIFICATE_MANAGED
                self._notify(row, ev, owner, rec)
                records.append(rec)
                break
            if p.mode == "audit" or getattr(ctx, "dry_run", False):
                rec.outcome, rec.message = "dry_run", f"audit mode: would set the expiry ({msg})"
                records.append(rec)
                continue            # an enforcing policy after it still acts
            # a remediation like any other: a policy mistake or a script writing versions without
            # expiry must not rewrite every secret of every governed vault past the breaker
            permit = self._permit(row, p, ev)
            if permit is None:
                rec.outcome, rec.message = "dry_run", f"{msg}: circuit open: the expiry not set until reset"
                self._notify(row, ev, owner, rec)
                records.append(rec)
                break
            self._intend(ctx, row, ev, self._record(p, rule, version.describe(), rec.after, "requested", msg),
                         before=records)
            try:
                self.store.update_version(ev.vault_name, ev.object_name, version.version, expires_on=target,
                                          deadline=ctx.deadline)
                rec.outcome, rec.message = "remediated", f"{msg}: expiry set"
            except ArmError as exc:
                row.reason = exc.reason
                if refused_outright(exc):           # nothing written: the permit goes back
                    self._give_back(permit)
                rec.outcome, rec.message = "failed", f"{msg}: could not set the expiry: {exc}"
            records.append(rec)
            break   # one expiry write per version: the strictest target satisfies every enforcing policy
        if not records:
            if version.written_by_guardrail:
                row.verdict, row.reason = "ignored", "own_write"
                row.message = "version written by the guardrail itself (meets the hygiene rules)"
                return
            row.verdict, row.reason, row.message = "compliant", "", "new version meets the hygiene rules"
            return
        self._close(row, records, f"new version {version.version} of {ev.vault_name}/{ev.object_name}: "
                                  + "; ".join(f"{r.rule} ({r.outcome})" for r in records)
                                  + (f"; {_certificate_note(ev)}" if version.managed else ""))

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

    def _notify(self, row, ev, owner, rec) -> None:
        row.notify = True
        notify_owner(log, owner=owner, vault=ev.vault_name,
                     object=ev.object_name, rule=rec.rule)


def _rotated_for_exposure(ev, current) -> bool:
    """Whether the current version is the guardrail's answer to this exposure: written by it for an
    exposure, and either it is tagged with this event's id (a redelivery), the report names an older
    version, or the version was made after the report (Event Grid keeps the event's time; Key Vault's
    ``created`` is whole seconds, so the report's time is compared truncated to the second)."""
    tags = current.tags or {}
    if not current.written_by_guardrail or tags.get(REASON_TAG) != "exposed-secret":
        return False
    if tags.get(EXPOSURE_TAG) == ev.event_id[:256]:
        return True
    if ev.version:
        return ev.version.lower() != current.version.lower()
    reported = ev.envelope.time
    return (reported is not None and current.created_on is not None
            and current.created_on >= reported.replace(microsecond=0))


def _still_enabled(records) -> str:
    """For the row's message: how many older versions a ``_disable_older`` cut short by the
    deadline left enabled ("" when none)."""
    left = sum(len(r.before.get("enabled_versions") or ()) for r in records
               if r.rule == "disable-exposed-versions" and isinstance(r.before, dict))
    return (f"{left} older version(s) still enabled (the delivery's time budget ran out): its retry "
            f"disables them") if left else ""


def _origin(delivery_id: str, event_id: str) -> str:
    """``ORIGIN_TAG``'s value: which delivery of which event wrote the version (Key Vault: 256
    characters a tag value)."""
    return f"{delivery_id} {event_id}"[:256]


def _reported_by(ev) -> str:
    """The report's ``source`` for the audit message; one that looks like a credential (a scanner's
    finding pasted into it, a key without a prefix included) is never written."""
    if not ev.exposure_source:
        return ""
    if looks_like_free_text_credential(ev.exposure_source):
        return " (reported by a source not shown: it looks like a credential)"
    return f" (reported by {ev.exposure_source})"
