"""What every path of the secret guardrail (``secret_guardrail``) shares, mixed into
``SecretGuardrail`` as ``SecretRails``: the row (one record per finding, ``_close`` to one verdict,
``_notify`` the owner), the outbox intent a sweep keeps before it writes (``_intend``), the vault's
circuit-breaker permit (``_permit``, handed back by ``_give_back`` when nothing was written), the
refusal to write a certificate's backing secret (``_certificate``) and the report's source as
every message names it (``_reported_by``: never one that looks like a credential).

A permit is keyed by the event (and, for an exposure report, by what makes it one report): a
redelivery reuses it, and only the call that counted it gives it back.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from .logs import emit, notify_owner
from .model.decision import ViolationRecord, combine_verdict
from .model.keyvault_events import exposure_scope
from .safety_rails import give_back_permit
from .secrets.credentials import looks_like_free_text_credential
from .secrets.values import CERTIFICATE_MANAGED, NOT_ENFORCED, SHARED_STORAGE_ACCOUNT

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


class SecretRails:
    """Mixed into ``SecretGuardrail``: uses its ``svc`` (breakers, publisher)."""

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

    def _notify(self, row, ev, owner, rec) -> None:
        row.notify = True
        notify_owner(log, owner=owner, vault=ev.vault_name,
                     object=ev.object_name, rule=rec.rule)

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

    def _certificate(self, row, policy, ev, owner, before, rule) -> None:
        """A certificate's backing secret the path would write: nothing written, the owner told."""
        row.reason = CERTIFICATE_MANAGED
        rec = self._record(policy, rule, before, None, "violation", _certificate_note(ev))
        self._notify(row, ev, owner, rec)
        self._close(row, [rec], f"{rule}: {_certificate_note(ev)}{_reported_by(ev)}")


def _reported_by(ev) -> str:
    """The report's ``source`` for the audit message; one that looks like a credential (a scanner's
    finding pasted into it, a key without a prefix included) is never written."""
    if not ev.exposure_source:
        return ""
    if looks_like_free_text_credential(ev.exposure_source):
        return " (reported by a source not shown: it looks like a credential)"
    return f" (reported by {ev.exposure_source})"
