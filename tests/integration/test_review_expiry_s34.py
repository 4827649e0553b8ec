"""Review of session 34: secret and key expiry over time (the reconciling sweep's secrets and keys,
``guardrails/sweep_secrets.py``), end to end on Azurite (tables) and the HTTPS emulator's vault
through the real azure-keyvault-secrets/-keys clients.

Each test not labelled a control fails on the code as reviewed; its docstring says what is wrong
and what is expected."""

from __future__ import annotations

import textwrap

import pytest

from tests import builders as b
from tests.integration.test_secret_exposure_and_hygiene import _sweep
from tests.integration.test_secret_guardrail import POLICY, VAULT, _bundle, _val, planted  # noqa: F401

pytestmark = pytest.mark.integration


def _same_second(harness, tmp_path, name: str, *, current_exp: float | None, older_exp: float | None,
                 value: str, gap: int = 0):
    """``name`` with two enabled versions created in the same second (a deployment script that
    writes a secret twice, Terraform re-creating it …): the older one ``f…f``, the current one
    (written last) ``0…0``, so Key Vault's list of versions, sorted by version id, lists the current
    one first. Real Key Vault keeps ``created`` in whole seconds, as the emulator does."""
    d = tmp_path / "secrets"
    d.mkdir(exist_ok=True)
    (d / "ml-secrets.yaml").write_text(textwrap.dedent(POLICY.format(mode="enforce")))
    older = _bundle(name, value, version="f" * 32, exp_days=older_exp)
    current = _bundle(name, _val(), version="0" * 32, exp_days=current_exp)
    current["attributes"]["created"] = older["attributes"]["created"] + gap
    h = harness([b.key_vault(VAULT, pna="Disabled", rbac=True)],
                world={"secrets": [older, current], "keyvault_private_access": True}, extra_metadata=[d])
    assert [v["id"][-32:] for v in h.emu.secret_versions(VAULT, name)] == ["f" * 32, "0" * 32]
    return h


def _rows_of(h, name: str):
    return [r for r in h.stored_rows() if r.resource_id.rsplit("/", 1)[-1] == name]


# -- 1. the sweep takes the older of two same-second versions for the current one ------------------
def test_the_sweep_rotates_a_near_expiry_secret_whose_current_version_shares_its_second(harness, tmp_path,
                                                                                        planted):  # noqa: F811
    """``api-token`` (referenced, ``random``) expires in 20 days: inside the 30-day lead, so the
    sweep must rotate it. ``sweep_secrets._decide`` learns "the current version" from
    ``get_properties`` (newest ``created``, ties broken by the list's order, i.e. by version id)
    and hands it to ``reconcile_secret`` as the event's version; with two versions of one second it
    names the older one, and the rotation path, reading the real current version under the lease,
    answers "version f…f is no longer current: already rotated" (``compliant``). Every later sweep
    does the same: the secret runs out unrotated while the audit says compliant. Expected: the
    current version is rotated (a third version written, the row ``remediated``), e.g. by sending
    the rotation kinds without a version (the guardrail reads the current one under its lease)."""
    h = _same_second(harness, tmp_path, "api-token", current_exp=20, older_exp=20, value=planted["api"])
    for _ in range(2):
        _sweep(h)
    rows = _rows_of(h, "api-token")
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 3, [(r.verdict, r.message) for r in rows]
    assert "remediated" in [r.verdict for r in rows], [(r.verdict, r.message) for r in rows]


def test_the_sweep_sets_the_expiry_of_a_current_version_that_shares_its_second(harness, tmp_path,
                                                                               planted):  # noqa: F811
    """The hygiene flavour of the same mistake: ``svc-password``'s current version has no expiry
    (the list shows it: ``_breaks_hygiene``), the older one of the same second has one. The sweep
    hands the older version to the ``SecretNewVersionCreated`` path, which finds it compliant, and
    the current version, a credential that never expires, is never fixed (every sweep, the same).
    Expected: the current version ``0…0`` gets an expiry within ``max_validity_days``."""
    h = _same_second(harness, tmp_path, "svc-password", current_exp=None, older_exp=20, value=_val())
    _sweep(h)
    current = h.emu.get_secret(VAULT, "svc-password", "0" * 32)
    rows = _rows_of(h, "svc-password")
    assert current["attributes"].get("exp"), [(r.verdict, r.reason, r.message) for r in rows]


def test_control_a_near_expiry_secret_with_one_version_per_second_is_rotated_by_the_sweep(harness, tmp_path,
                                                                                          planted):  # noqa: F811
    """Control (passes): the same secret whose two versions are a second apart is rotated."""
    h = _same_second(harness, tmp_path, "api-token", current_exp=20, older_exp=20, value=planted["api"], gap=1)
    _sweep(h)
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 3


# -- 2. a rotation the circuit breaker holds back tells no owner -----------------------------------
def test_a_near_expiry_rotation_the_breaker_holds_back_tells_its_owner(harness, tmp_path, planted,  # noqa: F811
                                                                     caplog):
    """README (Circuit breaker): "The action that would exceed it is not taken: the row is
    ``dry_run`` with reason ``circuit_open``, it notifies the owner … naming the rules held back
    (``guardrail_violation_notify``)", and for secrets "with a circuit-breaker permit, as a
    rotation: held back, the row is ``dry_run`` / ``circuit_open`` and the owner is told". The
    sweep finds ``storage-connection`` and ``api-token`` 20 days from expiry and the key
    ``cmk-storage`` 10 days from it, with a breaker of one rotation per window: one is rotated, two
    are held back, but ``SecretGuardrail._rotate_leased`` (and ``KeyDecisions._key_leased`` for a
    key) records them ``dry_run`` without ``_notify`` (only an exposure held back notifies):
    ``notify`` false, no ``guardrail_violation_notify`` line. The
    breaker stays open until reset, so every later rotation in the vault is held back the same
    way and the secrets run out with no owner ever told. Expected: the held-back row notifies
    (``notify`` true and one notice for the object, rule ``expiring-secret`` / ``expiring-key``)."""
    import json
    import logging

    from tests.integration.test_secret_exposure_and_hygiene import _edit_policy
    from tests.integration.test_secret_guardrail import _harness

    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "secrets:\n", "breaker: {max_actions: 1, window_seconds: 600}\nsecrets:\n")
    with caplog.at_level(logging.WARNING, logger="guardrails"):
        _sweep(h)
    rows = [r for r in h.stored_rows() if "/secrets/" in r.resource_id or "/keys/" in r.resource_id]
    held = [r for r in rows if r.reason == "circuit_open"]
    # three rotations are due (two secrets, the key cmk-storage, 10 days left): one permit, two held back
    assert len(held) == 2 and sum(r.verdict == "remediated" for r in rows) == 1, [
        (r.resource_id.rsplit("/", 1)[-1], r.verdict, r.reason) for r in rows]
    told = [json.loads(r.getMessage()) for r in caplog.records if "guardrail_violation_notify" in r.getMessage()]
    for row in held:
        name = row.resource_id.rsplit("/", 1)[-1]
        assert row.notify, (name, row.verdict, row.reason, row.message)
        assert [t.get("rule") for t in told if t.get("object") == name] in (["expiring-secret"], ["expiring-key"]), told


# -- 3. a near-expiry secret the sweep cannot read leaves no audit row -----------------------------
def test_a_near_expiry_secret_whose_versions_cannot_be_read_is_audited_failed(harness, tmp_path, planted,  # noqa: F811
                                                                              caplog):
    """``api-token`` is 20 days from expiry (due), but Key Vault answers the list of its versions
    503 (``sweep_secrets._decide`` lists them to learn the current version's id before handing the
    secret to the rotation path). ``_decide`` catches the ``ArmError`` into the summary's
    ``errors`` only: no audit row for the secret (the event path writes a ``failed`` row,
    "read secret: …", for the same failed read; the sweep's resource path does too, through
    ``reconcile``), and no log line names it (``guardrail_sweep_finished`` leaves ``errors``
    out). The compliance report and App Insights show nothing about a secret left to run out.
    Expected: a ``Guardrails.Sweep`` row for ``api-token``, verdict ``failed``, with the reason."""
    import logging

    from tests.integration.test_secret_guardrail import _harness

    h = _harness(harness, tmp_path, planted)
    h.emu.add_fault(method="GET", path_regex=f"/vaults/{VAULT}/secrets/api-token/versions", status=503)
    with caplog.at_level(logging.INFO, logger="guardrails"):
        summary = _sweep(h)
    assert summary.failed and any("api-token" in e for e in summary.errors), summary.errors   # the run says so
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1                                  # not rotated
    rows = _rows_of(h, "api-token")
    logged = [r.getMessage() for r in caplog.records if "api-token" in r.getMessage()]
    assert [(r.verdict, r.event_type) for r in rows] == [("failed", "Guardrails.Sweep")], (rows, logged)


# -- 4. a referenced key that does not exist is skipped without a word ------------------------------
def test_a_key_reference_naming_no_key_is_reported_by_the_sweep(harness, tmp_path, planted):  # noqa: F811
    """The policy says ``cmk-storage`` (a customer-managed key, ``rotate: true``) is under
    rotation, but the vault has no such key (a typo in the policy, or the key was deleted and
    re-created under another name). ``sweep_secrets._sweep_key`` returns on ``ResourceNotFound``
    without an error, a row or a log line: the summary is clean and the owner believes the key is
    rotated before it expires, while nothing ever looks at the key actually in use. (An event for
    a key that does not exist is at least audited, ``ignored`` / ``secret_not_found``.) Expected:
    the run says so: a summary error naming the reference (or an audit row for it)."""
    from tests.integration.test_secret_exposure_and_hygiene import _edit_policy
    from tests.integration.test_secret_guardrail import _harness

    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "name: cmk-storage,", "name: cmk-storge,")
    summary = _sweep(h)
    rows = [r for r in h.stored_rows() if "/keys/" in r.resource_id]
    assert rows or any("cmk-storge" in e for e in summary.errors), (summary.errors, summary.verdicts)


def test_control_a_referenced_key_near_expiry_is_rotated_by_the_sweep(harness, tmp_path, planted):  # noqa: F811
    """Control (passes): the key the policy names, 10 days from expiry, is rotated by the sweep."""
    from tests.integration.test_secret_guardrail import _harness

    h = _harness(harness, tmp_path, planted)
    _sweep(h)
    assert len(h.emu.key_versions(VAULT, "cmk-storage")) == 2
    assert [r.verdict for r in h.stored_rows() if r.resource_id.endswith("/keys/cmk-storage")] == ["remediated"]
