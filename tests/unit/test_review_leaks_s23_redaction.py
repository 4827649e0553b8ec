"""Review s23 (secret leaks), the pure redaction helpers: a metadata finding's path never spells a
credential-shaped key (not even its first characters), in the key's own finding, beneath it, or in
a validator's path; ``redact`` survives an unterminated quote (a ``repr`` cut short) and an
apostrophe before the quoted value; ``safe_text`` also describes what is left unquoted.
"""

from __future__ import annotations

import pytest

from guardrails.errors import MetadataValidationError
from guardrails.model.decision import short_repr
from guardrails.policy.findings import _finding
from guardrails.policy.loader import load_documents
from guardrails.secrets import credentials as C
from guardrails.secrets.credentials import classify, find_credentials, looks_like_credential, redact
from tests.unit.test_policy_loader import storage_doc

STORAGE_KEY = ("Zk9" + "Qx7Zk2Pm9Lw4Rt6Yv8").ljust(86, "a") + "=="     # a storage account key's shape
TOKEN = "Qx7Zk2Pm9Lw4Rt6Yv8aB3cD5eF7gH9jK1mN3pQ5rS7tU9"                 # opaque: no known format
K = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEf"


# ---------------------------------------------------------------- 5. keys in finding paths
def test_a_credential_key_and_the_paths_beneath_it_are_described_not_cut():
    # GIVEN a document whose key is a bare storage key, holding a connection string
    assert classify(STORAGE_KEY) == "storage account key"
    doc = {"notes": {STORAGE_KEY: f"AccountKey={STORAGE_KEY}"}}
    # WHEN its credentials are found
    found = sorted(find_credentials(doc))
    # THEN both findings name the key by its length only: no prefix of it, in neither path
    shown = "$.notes.<credential-shaped key, 88 chars>"
    assert found == [(shown, "connection string with AccountKey"), (shown, "credential in a key name")]
    assert all(STORAGE_KEY[:8] not in path for path, _ in found)


def test_a_metadata_finding_never_spells_a_credential_key():
    # GIVEN a policy with a connection string under a key that is one (the review's reproduction)
    doc = storage_doc(notes={f"AccountKey={STORAGE_KEY}": f"AccountKey={STORAGE_KEY}"})
    # WHEN it is loaded THEN it is refused, and no finding holds any of the key
    with pytest.raises(MetadataValidationError) as ei:
        load_documents([("test.yaml", doc)])
    text = str(ei.value)
    assert "<credential-shaped key, 99 chars>" in text and "looks like a credential" in text
    assert STORAGE_KEY[:12] not in text and STORAGE_KEY[3:21] not in text


@pytest.mark.parametrize("tags", [{TOKEN: 5}, {"a b" + TOKEN: 5}], ids=["dotted-path", "bracketed-path"])
def test_a_validators_path_through_an_opaque_key_is_described(tags):
    # GIVEN an opaque key (no known format: the credential pass lets it by) under selector.tags,
    # with a value of the wrong type: the schema pass names it by its JSON path
    doc = storage_doc(selector={"resource_types": ["Microsoft.Storage/storageAccounts"], "tags": tags})
    with pytest.raises(MetadataValidationError) as ei:
        load_documents([("test.yaml", doc)])
    text = str(ei.value)
    assert "$.selector.tags" in text and "<credential-shaped key, " in text and TOKEN[:12] not in text


def test_finding_describes_a_credential_key_in_any_path_form():
    jwt = "eyJhbGciOiJIUzI1NiJ9" + "." + "eyJzdWIiOiJhbGljZSJ9" + "." + "c2lnbmF0dXJlX2hlcmU"
    for path in (f"$.tags.{TOKEN}", f"$['AccountKey={STORAGE_KEY}']", f"$.x[3].{jwt}.y"):
        line = _finding("t.yaml", {"id": "storage-private"}, path, "bad")
        assert line.startswith("t.yaml: policy 'storage-private': ") and line.endswith(": bad")
        assert TOKEN[:12] not in line and STORAGE_KEY[:12] not in line and "eyJhbGciOiJIUzI1NiJ9" not in line
    # names are names: an ordinary path is unchanged
    assert C.safe_path("$.rules[0].expect.equals") == "$.rules[0].expect.equals"
    assert C.safe_path("$['a b'].c") == "$['a b'].c"
    assert C.shown_key(7) == "int" and C.shown_key("owner") == "owner"


# ---------------------------------------------------------------- 6. redact's quote pairing
def test_redact_hides_a_value_whose_repr_was_cut_before_its_closing_quote():
    msg = f"tags.conn is {repr('x' * 40 + K)[:77]}..."       # a repr cut as short_repr cuts it
    assert short_repr('x' * 40 + K).startswith("'<")         # (short_repr itself no longer shows one)
    assert msg.endswith("...") and not msg.endswith("'...")          # the closing quote is gone
    assert K[:20] not in redact(msg) and redact(msg).startswith("tags.conn is '<value not shown")


def test_redact_is_not_thrown_off_by_an_apostrophe_before_the_quoted_value():
    out = redact(f"policy's value '{K}' is refused; the owner's 'ds_team' is fine")
    assert K not in out and "policy's value '<value not shown" in out and "'ds_team'" in out


def test_redact_keeps_what_it_kept_before():
    assert redact("unknown key 'notes' at 'selector'") == "unknown key 'notes' at 'selector'"
    assert redact(f'a "{K}" and b\'{K}\'') == 'a "<value not shown: it looks like a credential>" and ' \
                                              "b'<value not shown: it looks like a credential>'"
    assert redact("it's 'value with it's apostrophe' ok") == "it's 'value with it's apostrophe' ok"


def test_safe_text_describes_what_redact_leaves_unquoted():
    assert C.safe_text(f"refused: {K} (unquoted)") == \
        "refused: <value not shown: it looks like a credential> (unquoted)"
    # a credential format spanning words: the text as a whole is not shown
    bearer = "Authorization: Bearer " + "abcdefghij0123456789abcd"
    assert looks_like_credential(bearer) and C.safe_text(bearer) == C.HIDDEN_TEXT
    assert C.safe_text(bearer, "fallback") == "fallback"
    assert C.safe_text("job 201 may run as alice from pe-databricks-eastus") == \
        "job 201 may run as alice from pe-databricks-eastus"
