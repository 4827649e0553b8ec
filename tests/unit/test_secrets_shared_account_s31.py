"""Two secret references rotating the keys of ONE storage account (review s31): each rotation
regenerates the key the other secret holds. ``metadata validate``/``sync`` refuse such a set (one
policy: its own validation; two policies: ``load_directory``); a worker still loads an earlier
release's row of this shape (and refuses the rotation at decision time, integration tests)."""

from __future__ import annotations

import pytest

from guardrails.cli import main as cli_main
from guardrails.errors import MetadataValidationError
from guardrails.policy.loader import load_documents
from guardrails.secrets.policy import account_sharers, semantics, shared_account_findings
from guardrails.policy.loader import load_directory

SUB = "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/rg-ml-prod/providers/Microsoft.Storage/storageAccounts/stmlprod"
OTHER = f"/subscriptions/{SUB}/resourceGroups/rg-ml-prod/providers/Microsoft.Storage/storageAccounts/stmlother"


def _ref(name, account=ACCOUNT, fmt="key", vault="kv-ml-prod", strategy="storage-account-key"):
    rotation = {"strategy": strategy}
    if strategy == "storage-account-key":
        rotation.update(account=account, format=fmt)
    return {"vault": vault, "name": name, "owner": "ml-platform@contoso.com", "rotation": rotation}


def _doc(*refs, pid="shared-account", mode="enforce"):
    return {"id": pid, "version": 1, "kind": "secrets", "description": "d", "mode": mode,
            "hygiene": {"require_expiry": True, "max_validity_days": 90}, "secrets": list(refs)}


# -- one policy -----------------------------------------------------------------------------------
def test_two_references_rotating_one_accounts_keys_are_refused_naming_the_account():
    # GIVEN the account's connection string in one secret and its key in another
    doc = _doc(_ref("storage-connection", fmt="connection-string"), _ref("storage-key"))
    # WHEN validated
    policy, found = semantics(doc)
    # THEN refused, at the second reference, naming the account and why
    assert policy is None
    ((path, message),) = found
    assert path == "$.secrets[1].rotation.account"
    assert ACCOUNT in message and "$.secrets[0]" in message and "kv-ml-prod/storage-connection" in message
    assert "regenerates" in message and "one secret per storage account" in message


def test_the_account_is_compared_as_arm_compares_ids():
    # another spelling of the same id (ARM ids are case-insensitive)
    doc = _doc(_ref("storage-connection", fmt="connection-string"),
               _ref("storage-key", account=ACCOUNT.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")))
    _policy, found = semantics(doc)
    assert [p for p, _m in found] == ["$.secrets[1].rotation.account"]
    assert "is also rotated by $.secrets[0]" in found[0][1]


def test_references_to_different_accounts_or_other_strategies_are_accepted():
    policy, found = semantics(_doc(_ref("storage-connection", fmt="connection-string"),
                                   _ref("other-key", account=OTHER), _ref("api-token", strategy="random"),
                                   _ref("dbx", strategy="notify-only")))
    assert found == [] and policy is not None


def test_a_worker_still_loads_an_earlier_releases_row_of_this_shape():
    """Refusing the row at load would keep every decision from a worker that restarts after the
    upgrade (``PolicyUnreadable``); the rotation is refused at decision time instead."""
    doc = _doc(_ref("storage-connection", fmt="connection-string"), _ref("storage-key"))
    (policy,) = load_documents([("table:policies/shared-account", doc)], check_paths=False)
    assert [s.name for s in policy.secrets] == ["storage-connection", "storage-key"]
    with pytest.raises(MetadataValidationError, match="storage account"):
        load_documents([("shared.yaml", doc)])
    # and the decision sees the other secret
    (ref, other) = policy.secrets
    assert [(p.id, s.name) for p, s in account_sharers([policy], ref)] == [("shared-account", "storage-key")]
    assert [s.name for _p, s in account_sharers([policy], other)] == ["storage-connection"]


# -- two policies ---------------------------------------------------------------------------------
def _write(tmp_path, name, doc) -> None:
    import yaml

    (tmp_path / name).write_text(yaml.safe_dump(doc))


def test_two_policies_rotating_one_accounts_keys_are_refused_by_validate_and_sync(tmp_path, capsys):
    d = tmp_path / "m"
    d.mkdir()
    _write(d, "a.yaml", _doc(_ref("storage-connection", fmt="connection-string"), pid="app-a"))
    _write(d, "b.yaml", _doc(_ref("storage-key", vault="kv-ml-other"), pid="app-b", mode="off"))
    with pytest.raises(MetadataValidationError) as exc:
        load_directory(d)
    (finding,) = exc.value.findings
    assert finding.startswith(f"{d / 'b.yaml'}: policy 'app-b': $.secrets[0].rotation.account: storage account")
    assert ACCOUNT in finding and "kv-ml-prod/storage-connection in policy 'app-a'" in finding
    assert cli_main(["metadata", "validate", "--metadata", str(d)]) == 1
    assert "one secret per storage account" in capsys.readouterr().err


def test_one_secret_named_by_two_policies_is_one_secret(tmp_path):
    """The same secret in two policies holds one key: nothing to refuse."""
    d = tmp_path / "m"
    d.mkdir()
    _write(d, "a.yaml", _doc(_ref("storage-connection", fmt="connection-string"), pid="app-a"))
    _write(d, "b.yaml", _doc(_ref("Storage-Connection", fmt="connection-string", vault="KV-ML-PROD"), pid="app-b"))
    policies = load_directory(d)
    assert shared_account_findings(policies) == []
    assert cli_main(["metadata", "validate", "--metadata", str(d)]) == 0


def test_the_finding_is_written_through_the_finding_format():
    from guardrails.policy.semantics import _semantics

    policy, found = _semantics("shared.yaml", _doc(_ref("a", fmt="connection-string"), _ref("b")))
    assert policy is None
    (f,) = found
    assert f.startswith("shared.yaml: policy 'shared-account': $.secrets[1].rotation.account: storage account")
