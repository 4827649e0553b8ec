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

Here: the entry point (``decide``, by object type and event kind) and the new-version hygiene.
Rotations of secrets (expiry and exposure, under the rotation lease) are ``secret_rotation``; what
an exposure adds (older versions disabled, an exposure already answered, the version a report
names) ``secret_exposure``; what every path shares (the row, the outbox intent, the breaker permit,
the certificate refusal) ``secret_rails``; keys ``secrets.keys``. All are mixed into
``SecretGuardrail``.

Secret values exist only inside ``Redacted`` between the SDK and the SDK.
"""

from __future__ import annotations

from datetime import timedelta

from .errors import ArmError, ResourceNotFound
from .secret_exposure import ExposureDecisions
from .secret_rails import SecretRails, _certificate_note
from .secret_rotation import RotationDecisions
from .secrets.keys import KeyDecisions
from .secrets.rotation import expiry_for, refused_outright, strictest_validity
from .secrets.values import CERTIFICATE_MANAGED


class SecretGuardrail(RotationDecisions, ExposureDecisions, KeyDecisions, SecretRails):
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
