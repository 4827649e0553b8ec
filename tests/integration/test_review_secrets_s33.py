"""Review of session 33: secret exposure reports, Key Vault events and rotation, end to end on the
emulator's vault and storage account through the real SDK clients (Azurite for the tables).

Each test that is not labelled a control fails on the code as reviewed and states what is wrong
and what is expected."""

from __future__ import annotations

import json
import logging
import secrets as rng

import pytest

from tests.integration.test_secret_exposure_and_hygiene import _edit_policy, _post
from tests.integration.test_secret_guardrail import VAULT, _event, _harness, planted  # noqa: F401

pytestmark = pytest.mark.integration


# -- 1. a report that ends ``failed`` answers a correlation id no audit row carries ---------------
@pytest.mark.parametrize("status, reason", [(403, "forbidden"), (500, "transient")])
def test_a_failed_exposure_report_answers_the_id_and_reason_of_its_audit_row(harness, tmp_path, planted,
                                                                            status, reason):
    """Key Vault refuses (403) or fails (500) the read of the reported secret. The service audits a
    ``failed`` row (reason ``forbidden`` / ``transient``) and the endpoint answers 503, but with a
    ``correlation_id`` it made up itself (``secrets_exposed``: ``uuid4`` before the call), which no
    audit row and no service log line carries, no ``decision_id``, and ``reason: "failed"`` (the
    class default of ``DeliveryFailed``) instead of the row's reason. The responder cannot find the
    decision, nor learn that the guardrails' identity lacks a role. Expected: the answer names the
    failed row (``decision_id`` / ``error.correlation_id`` = its ``delivery_id``) and its reason."""
    h = _harness(harness, tmp_path, planted)
    h.emu.add_fault(method="GET", path_regex=f"/vaults/{VAULT}/secrets/api-token", status=status)
    code, body = _post({"vault": VAULT, "name": "api-token", "source": "gitleaks"})
    assert code == 503, body
    failed = [r for r in h.recorder.rows if r.verdict == "failed"]
    assert len(failed) == 1 and failed[0].reason == reason, [(r.verdict, r.reason) for r in h.recorder.rows]
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1          # nothing rotated
    assert body["error"].get("reason") == reason, body
    assert body["error"].get("correlation_id") == failed[0].delivery_id, (body, failed[0].delivery_id)
    assert body.get("decision_id") == failed[0].delivery_id, body


# -- 2. ``source`` keeps keys that have no known prefix ---------------------------------------------
def _openai_key() -> str:
    """An Azure OpenAI / Cognitive Services key: 32 hexadecimal digits (generated at run time)."""
    return rng.token_hex(16)


def _sas_key() -> str:
    """An Event Grid / Service Bus / Event Hubs key: 44 characters of base64, one ``/`` in it."""
    import base64
    while True:
        key = base64.b64encode(rng.token_bytes(32)).decode()
        if "/" in key[8:36]:
            return key


@pytest.mark.parametrize("make", [_openai_key, _sas_key], ids=["azure-openai-32-hex", "base64-sas-key"])
def test_a_key_pasted_into_source_is_never_recorded_nor_echoed(harness, tmp_path, planted, caplog, make):
    """README (Secrets): the row "carries the report's ``source`` (masked when it looks like a
    credential: a scanner may paste its match there)". ``_parse`` and ``_reported_by`` mask only
    what ``looks_like_credential`` finds (known prefixes, or a 40+ run without ``/``): an Azure
    OpenAI key (32 hex digits, the ML platform's most common credential) or a 44-character base64
    Service Bus / Event Grid key with a ``/`` in it goes into the audit row's message, the decision
    log line and the 200 answer as it was sent. The product has the detector for exactly these in
    free text (``credentials._FREE_TEXT_PATTERNS``), used for metadata, not here. Expected: the
    report is acted on (rotated) and the key appears in no row, log line or answer."""
    caplog.set_level(logging.DEBUG)
    h = _harness(harness, tmp_path, planted)
    leaked = make()
    code, body = _post({"vault": VAULT, "name": "api-token", "source": f"gitleaks match {leaked}"})
    assert code == 200 and body["verdict"] == "remediated", body
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 2
    texts = {"answer": json.dumps(body),
             "rows": json.dumps([r.to_dict() for r in h.stored_rows()], default=str),
             "logs": "\n".join(r.getMessage() for r in caplog.records)}
    assert [where for where, text in texts.items() if leaked in text] == []


# -- 3. a write Key Vault throttled (429, its one attempt) is taken for one that may have landed ---
def test_a_rotation_whose_only_write_was_throttled_gives_its_permit_back(harness, tmp_path, planted):
    """Key Vault answers the new version's PUT 429 with a ``Retry-After`` beyond the delivery's
    budget: one attempt, refused, nothing written (a throttled request is rejected before it is
    processed). ``refused_outright`` treats every ``ArmThrottled`` as "outcome unknown", so the row
    says the write "may have been made" (false: an answer says otherwise) and the permit is kept;
    a throttling episode over a vault's secrets fills its breaker window with rotations never made
    and holds back the next rotation (an exposure's included), which README's circuit-breaker rule
    ("a permit whose fix is then not made (... throttled ...) is given back, so a throttling
    episode ... cannot open the breaker") says must not happen. Expected: the permit is given back
    and the row says the rotation failed before any change."""
    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "secrets:\n", "breaker: {max_actions: 1, window_seconds: 600}\nsecrets:\n")
    h.emu.add_fault(method="PUT", path_regex=f"/vaults/{VAULT}/secrets/api-token$", status=429, retry_after=60,
                    times=1)
    row = h.deliver(_event(h, "SecretExpired", "api-token"))
    assert (row.verdict, row.reason) == ("failed", "throttled"), (row.verdict, row.reason, row.message)
    assert len(h.emu.secret_versions(VAULT, "api-token")) == 1            # nothing was written
    puts = [q for q in h.emu.requests if q["method"] == "PUT" and q["path"].endswith("/secrets/api-token")
            and q["status"] == 429]
    assert len(puts) == 1
    assert "may have been made" not in row.violations[0].message, row.violations[0].message
    row = h.deliver(_event(h, "SecretNearExpiry", "storage-connection"))
    assert (row.verdict, row.reason) == ("remediated", ""), (row.verdict, row.reason, row.message)


# -- 4. the expiry hygiene's writes take no circuit-breaker permit ----------------------------------
def test_the_expiry_hygiene_is_held_back_by_the_circuit_breaker(harness, tmp_path, planted):
    """README: "Every remediation of every guardrail takes a permit" (Circuit breaker) and, for the
    Key Vault writes, "a secret's rotation, a key's ``rotate_key``, a new version's expiry (the
    intent kept after the breaker's permit, right before the write)". ``SecretGuardrail._new_version``
    writes the expiry without asking the breaker: a policy mistake (``max_validity_days: 1`` for
    365) or a script writing versions without expiry rewrites the expiry of every secret of every
    governed vault, the breaker never stopping it (it is the rail for exactly such a burst). Here
    the breaker allows one action in the window; two new versions without expiry both get one.
    Expected: the second is not written (``dry_run`` / ``circuit_open``, owner told)."""
    from tests.integration.test_secret_guardrail import _bundle, _val

    h = _harness(harness, tmp_path, planted)
    _edit_policy(h, tmp_path, "secrets:\n", "breaker: {max_actions: 1, window_seconds: 600}\nsecrets:\n")
    rows = []
    for name in ("api-token", "databricks-token"):
        bundle = _bundle(name, _val(), exp_days=None)
        h.emu.put_secret(bundle)
        rows.append(h.deliver(_event(h, "SecretNewVersionCreated", name, bundle["id"].rsplit("/", 1)[-1])))
    assert [(r.verdict, r.violations[0].rule) for r in rows][0] == ("remediated", "expiry-required")
    fixed = [n for n in ("api-token", "databricks-token")
             if h.emu.secret_versions(VAULT, n)[-1]["attributes"].get("exp")]
    assert (rows[1].verdict, rows[1].reason) == ("dry_run", "circuit_open"), (rows[1].verdict, rows[1].reason)
    assert fixed == ["api-token"], fixed


# -- 5. a key warning for a key whose expiry was moved out is still rotated ------------------------
def test_a_key_warning_for_a_key_no_longer_due_is_not_rotated(harness, tmp_path, planted):
    """Key Vault warned (``KeyNearExpiry``, 10 days left); before the delivery is decided (Event
    Grid retries for 24 h) the key's owner moves its expiry out by a year. A secret in that state is
    ``compliant`` ("not yet due": ``_rotate_leased`` compares the live expiry with the rotation
    lead), and the sweep does not rotate such a key either (``sweep_secrets._near``), but
    ``KeyDecisions._key_leased`` never looks at the live expiry and calls ``rotate_key`` on the
    stale warning: a customer-managed key rotated against its owner's decision, by the event path
    only. Expected: ``compliant``, no new key version."""
    from datetime import datetime, timedelta, timezone

    h = _harness(harness, tmp_path, planted)
    event = _event(h, "KeyNearExpiry", "cmk-storage")                   # 10 days left when it was sent
    client = h.service.secrets.store._key_client(VAULT)
    client.update_key_properties("cmk-storage", expires_on=datetime.now(timezone.utc) + timedelta(days=365))
    row = h.deliver(event)
    assert len(h.emu.key_versions(VAULT, "cmk-storage")) == 1, (row.verdict, row.message)
    assert row.verdict == "compliant", (row.verdict, row.message)


# -- control for 3 (fixer): a 429 after a retry may follow an attempt that landed -----------------
def test_a_write_throttled_after_a_retry_keeps_its_permit():
    """Only a write whose one request was answered 429 is refused outright; a 429 ending a retried
    write (the attempt before it lost its answer, or got a 5xx) leaves the outcome unknown: the
    permit is kept and the row says the write may have been made."""
    from guardrails.errors import ArmThrottled
    from guardrails.secrets.rotation import refused_outright

    once, again = ArmThrottled("429", status=429), ArmThrottled("429", status=429)
    again.attempts = 2
    assert refused_outright(once) is True and refused_outright(again) is False
