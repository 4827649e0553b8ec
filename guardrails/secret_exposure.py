"""What an exposure report adds to a secret's rotation (``secret_rotation``), mixed into
``SecretGuardrail`` as ``ExposureDecisions``: every older enabled version disabled once the secret
holds a new value (``_disable_older``, within the delivery's time budget, the rest left to Event
Grid's retry), an exposure the current version already answered (``_rotated_for_exposure``): no
second rotation, only what is left (``_exposure_handled``), and the version a report names looked
up among the secret's versions (``_named_version``, properties only).
"""

from __future__ import annotations

from .errors import ArmError, ArmTransient
from .model.decision import ViolationRecord
from .secret_rails import _reported_by
from .secrets.rotation import BoundRotationIO, RotationError, finish_revoke
from .secrets.values import EXPOSURE_TAG, REASON_TAG, REVOKE_PENDING_TAG


class ExposureDecisions:
    """Mixed into ``SecretGuardrail``: uses its ``store``, ``storage_keys``, ``svc`` (the clock),
    the rows of ``SecretRails`` and ``_unaudited_rotation`` (``secret_rotation``)."""

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
