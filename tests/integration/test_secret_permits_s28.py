"""A rotation that changed nothing gives its circuit-breaker permit back, end to end on the
emulator's vault and storage account through the real SDK clients.

The breaker allows ``max_actions`` rotations per vault in its window. A rotation refused before it
wrote anything (no ``listKeys`` or ``rotate`` permission, a missing account) used to keep its
permit: a vault whose rotations kept failing filled its window with rotations never made, and the
next real rotation, an exposure's included, was refused as "circuit open". A write whose outcome is
unknown (sent, no answer) keeps its permit: it may stand for a rotation that was made."""

from __future__ import annotations

import logging

import pytest

from tests.integration.test_secret_exposure_and_hygiene import _edit_policy, _exposure, _keys
from tests.integration.test_secret_guardrail import VAULT, _event, _harness, _no_leak, planted  # noqa: F401

pytestmark = pytest.mark.integration

ONE_PER_WINDOW = "breaker: {max_actions: 1, window_seconds: 600}\nsecrets:\n"


def _one_rotation_per_window(h, tmp_path) -> None:
    _edit_policy(h, tmp_path, "secrets:\n", ONE_PER_WINDOW)


def _versions(h, name: str) -> int:
    return len(h.emu.secret_versions(VAULT, name))


def test_a_rotation_refused_before_any_write_gives_its_permit_back(harness, tmp_path, planted, caplog):
    caplog.set_level(logging.INFO)
    h = _harness(harness, tmp_path, planted)
    _one_rotation_per_window(h, tmp_path)
    h.emu.add_fault(method="POST", path_regex="listKeys", status=403, times=1)
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert row.verdict == "failed", (row.verdict, row.reason, row.message)
    assert "before any change" in row.violations[0].message and "403" in row.violations[0].message
    assert _keys(h) == {"key1": planted["key1"], "key2": planted["key2"]}     # nothing regenerated
    assert _versions(h, "storage-connection") == 1
    assert "guardrail_permit_given_back" in caplog.text
    # the window's one rotation is still there for a rotation that happens
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (row.verdict, row.reason) == ("remediated", ""), (row.verdict, row.reason, row.message)
    assert _versions(h, "api-token") == 2
    # and it is spent now: the window counts rotations made
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open"), (row.verdict, row.reason, row.message)
    assert _versions(h, "storage-connection") == 1
    _no_leak(h, planted, caplog)


def test_an_exposure_is_rotated_after_refused_rotations_filled_nothing(harness, tmp_path, planted):
    """The case that matters: failing routine rotations must not leave a leak unrotated."""
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "secrets:\n", "breaker: {max_actions: 2, window_seconds: 600}\nsecrets:\n")
    h.emu.add_fault(method="POST", path_regex="listKeys", status=403, times=3)
    for _ in range(3):
        row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
        assert row.verdict == "failed" and "403" in row.violations[0].message, row.message
    row = h.deliver(_exposure("api-token", "exp-after-refusals"))
    assert row.verdict == "remediated", (row.reason, row.message)
    assert _versions(h, "api-token") == 2


def test_a_write_whose_answer_is_unknown_keeps_its_permit(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    _one_rotation_per_window(h, tmp_path)
    h.emu.add_fault(method="PUT", path_regex=f"/vaults/{VAULT}/secrets/api-token$", status=503)   # every attempt
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert row.verdict == "failed" and row.reason == "transient", (row.reason, row.message)
    message = row.violations[0].message
    assert "before any change" not in message and "may have been made" in message, message
    # the permit stands for that write: the next rotation in the vault waits for the window
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open"), (row.verdict, row.reason, row.message)
    assert _keys(h) == {"key1": planted["key1"], "key2": planted["key2"]}


def test_a_storage_key_regenerated_before_the_failure_keeps_its_permit(harness, tmp_path, planted):
    h = _harness(harness, tmp_path, planted)
    _one_rotation_per_window(h, tmp_path)
    h.emu.add_fault(method="PUT", path_regex=f"/vaults/{VAULT}/secrets/storage-connection$", status=403)
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert row.verdict == "failed" and "was regenerated" in row.violations[0].message, row.message
    assert _keys(h)["key2"] != planted["key2"]           # a change was made: the permit is spent
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open"), (row.verdict, row.reason, row.message)


def test_a_redelivery_refused_keeps_the_permit_its_first_delivery_took(harness, tmp_path, planted):
    """The first delivery's write went unanswered (it may have landed); its redelivery is refused
    outright. The permit is the first delivery's: the redelivery does not give it back."""
    h = _harness(harness, tmp_path, planted)
    _one_rotation_per_window(h, tmp_path)
    event = _event(h, "SecretExpired", "api-token")
    h.emu.add_fault(method="PUT", path_regex=f"/vaults/{VAULT}/secrets/api-token$", status=503)
    assert h.deliver(event).reason == "transient"
    h.emu.clear_faults()
    h.emu.add_fault(method="PUT", path_regex=f"/vaults/{VAULT}/secrets/api-token$", status=403, times=1)
    again = h.deliver(event)
    assert (again.verdict, again.reason) == ("failed", "forbidden"), (again.reason, again.message)
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open"), (row.verdict, row.reason, row.message)


def test_a_key_rotation_refused_gives_its_permit_back_and_an_unanswered_one_keeps_it(harness, tmp_path, planted):
    from tests.integration.test_review_secrets_s20 import three_keys_one_rotation_per_window

    h = _harness(harness, tmp_path, planted)
    three_keys_one_rotation_per_window(h, tmp_path)
    h.emu.add_fault(method="POST", path_regex="/keys/cmk-storage/rotate", status=403, times=1)
    row = h.deliver(_event(h, "KeyNearExpiry", "cmk-storage"))
    assert (row.verdict, row.reason) == ("failed", "forbidden"), (row.verdict, row.reason, row.message)
    h.emu.add_fault(method="POST", path_regex="/keys/cmk-two/rotate", status=503)
    row = h.deliver(_event(h, "KeyNearExpiry", "cmk-two"))            # took the permit back, then kept it
    assert (row.verdict, row.reason) == ("failed", "transient"), (row.verdict, row.reason, row.message)
    row = h.deliver(_event(h, "KeyNearExpiry", "cmk-three"))
    assert (row.verdict, row.reason) == ("dry_run", "circuit_open"), (row.verdict, row.reason, row.message)
