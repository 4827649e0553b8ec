"""The secret guardrail's keys: ``KeyNearExpiry`` / ``KeyExpired`` ─▶ a key reference with
``rotate: true`` ─▶ Key Vault's own ``rotate_key`` (a breaker permit each, under the rotation lease
of the key, as a secret's rotation).

A disabled key is ``ignored`` (``secret_disabled``), whether Key Vault answers its read with 403
``KeyDisabled`` or with the key's properties: it was taken out of service (a customer-managed key
disabled to cut access to what it encrypts), and ``rotate_key`` would make a new, enabled version
and undo that; nor is it a failure Event Grid would redeliver for 24 h.

Mixed into ``SecretGuardrail`` (its ``store``, ``svc``, ``_record``, ``_notify``, ``_close``,
``_permit``, ``_give_back``, ``_acting``).
"""

from __future__ import annotations

from ..errors import ArmError, ResourceNotFound
from .lease import rotation_lease
from .rotation import refused_outright
from .values import SECRET_DISABLED


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
        if ev.version and ev.version != current.version:
            row.verdict, row.reason, row.message = "compliant", "", f"key version {ev.version} already rotated"
            return
        if policy.mode == "audit" or getattr(ctx, "dry_run", False):
            rec = self._record(policy, "expiring-key", before, None, "dry_run", "audit mode: would rotate the key")
            return self._close(row, [rec], "would rotate the key")
        permit = self._permit(row, policy, ev)
        if permit is None:
            rec = self._record(policy, "expiring-key", before, None, "dry_run",
                               "circuit open: key rotation not taken until reset")
            return self._close(row, [rec], "expiring-key: circuit open")
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
        self._close(row, [rec], f"key {ev.vault_name}/{ev.object_name} rotated to {new.version}")


def _key_disabled(row, ev, version: str | None) -> None:
    """As a disabled secret: a disabled key was taken out of service (a customer-managed key disabled
    to cut access); ``rotate_key`` would make an enabled version and undo that. Permanent, so not a
    failure retried for 24 h."""
    row.verdict, row.reason = "ignored", SECRET_DISABLED
    which = f"version {version} of key" if version else "key"
    row.message = (f"{which} {ev.vault_name}/{ev.object_name} is disabled: not rotated (enable it, or rotate it "
                   f"by hand, to bring it back under rotation)")
