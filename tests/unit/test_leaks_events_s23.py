"""A refused event field is described, never echoed, when it may be a secret: a scanner
misconfigured to send the leaked value in an exposure report's ``ObjectName`` or ``VaultName`` had
its first 40 characters (a whole classic GitHub token) written into the audited ``invalid`` row;
an ARM id or an event field shaped like a credential is not shown either (security review,
2026-11-25)."""

from __future__ import annotations

import json
import logging

import pytest

from guardrails.errors import InvalidArmId, InvalidEvent
from guardrails.model.arm_id import parse_arm_id
from guardrails.model.events import parse_envelope
from guardrails.model.keyvault_events import parse_keyvault_event
from tests.functional.test_http_checks import make_world

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"      # a classic GitHub token's shape
KEY = "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA" * 2 + "AbCdEfGhIjKlMnOpQ=="   # an opaque key


def _exposure(data: dict) -> dict:
    return {"specversion": "1.0", "id": "exp-1", "type": "Guardrails.SecretExposed",
            "source": "scanner/gitleaks", "subject": "x", "time": "2026-01-01T00:00:00Z", "data": data}


@pytest.mark.parametrize("data", [
    {"VaultName": "kv-ml-prod", "ObjectName": TOKEN, "Source": "gitleaks"},
    {"VaultName": TOKEN, "ObjectName": "db-password"},
    {"VaultName": "sv=2022-11-02&sig=Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA%3D", "ObjectName": "db-password"},
    {"VaultName": "kv-ml-prod", "ObjectName": "db-password", "ObjectType": "hunter2!pass"},
])
def test_a_refused_exposure_field_is_described_in_the_audited_row_never_shown(data, caplog):
    w = make_world()
    caplog.set_level(logging.DEBUG)
    row = w.service.handle_event(_exposure(data))
    assert (row.verdict, row.reason) == ("invalid", "invalid_value")
    secret = next(v for k, v in data.items() if v not in ("kv-ml-prod", "db-password", "gitleaks"))
    texts = [row.message, json.dumps([r.to_dict() for r in w.audit.rows], default=str)]
    texts += [r.getMessage() for r in caplog.records]
    for t in texts:
        assert secret[:8] not in t and secret[-8:] not in t
    assert "characters, not shown" in row.message       # what was wrong is still said


def test_a_vault_name_typo_is_still_explained():
    env = parse_envelope(_exposure({"VaultName": "kv_ml", "ObjectName": "db-password"}))
    with pytest.raises(InvalidEvent, match=r"data.VaultName \(5 characters, not shown\) is not a vault name: 3-24"):
        parse_keyvault_event(env)


@pytest.mark.parametrize("text", [f"/subscriptions/{TOKEN}/resourceGroups/rg",
                                  f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{KEY}!x"])
def test_an_invalid_arm_id_shaped_like_a_credential_is_not_shown(text):
    with pytest.raises(InvalidArmId) as err:
        parse_arm_id(text)
    assert TOKEN[4:20] not in str(err.value) and KEY[:20] not in str(err.value)
    assert "look like a credential" in str(err.value)


def test_an_invalid_arm_id_is_still_shown_when_it_is_not_a_credential():
    with pytest.raises(InvalidArmId, match="'/subscription/abc'"):
        parse_arm_id("/subscription/abc")


def test_an_event_time_shaped_like_a_credential_is_not_shown():
    raw = {**_exposure({"VaultName": "kv-ml-prod", "ObjectName": "x"}), "time": TOKEN}
    with pytest.raises(InvalidEvent) as err:
        parse_envelope(raw)
    assert TOKEN[4:20] not in str(err.value)
