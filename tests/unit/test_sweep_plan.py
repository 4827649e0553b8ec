"""Pure parts of the timers: which types a sweep lists (children under parents), management
group scopes, and which exemptions expired in a window."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from guardrails.errors import InvalidArmId
from guardrails.expiry import expired_between
from guardrails.policy.evaluate import compile_policies
from guardrails.policy.loader import load_directory
from guardrails.sweep import covered_types, list_plan, management_group_scope

BASELINE = Path(__file__).resolve().parents[2] / "metadata"
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def _compiled(tmp_path=None, extra: str | None = None):
    dirs = [BASELINE]
    if extra:
        d = tmp_path / "extra"
        d.mkdir()
        (d / "p.yaml").write_text(textwrap.dedent(extra))
        dirs.append(d)
    return compile_policies(load_directory(*dirs))


def test_baseline_sweep_lists_the_five_top_level_types_and_computes_under_workspaces():
    plan = {top.name: (decide, [c.name for c in children]) for top, decide, children in list_plan(
        covered_types(_compiled()))}
    assert plan == {
        "Microsoft.ContainerRegistry/registries": (True, []),
        "Microsoft.KeyVault/vaults": (True, []),
        "Microsoft.MachineLearningServices/registries": (True, []),
        "Microsoft.MachineLearningServices/workspaces": (True, ["Microsoft.MachineLearningServices/workspaces/computes"]),
        "Microsoft.Storage/storageAccounts": (True, []),
    }


def test_a_parent_no_policy_covers_is_listed_but_not_decided(tmp_path):
    from guardrails.model.resource import lookup_type
    compute = lookup_type("Microsoft.MachineLearningServices/workspaces/computes")
    [(top, decide, children)] = list_plan([compute])
    assert top.name == "Microsoft.MachineLearningServices/workspaces" and decide is False
    assert children == (compute,)


@pytest.mark.parametrize("text,expected", [
    ("mg-corp", "/providers/Microsoft.Management/managementGroups/mg-corp"),
    ("/providers/microsoft.management/managementGroups/Corp", "/providers/Microsoft.Management/managementGroups/Corp"),
])
def test_management_group_scope(text, expected):
    assert management_group_scope(text).lower() == expected.lower()


@pytest.mark.parametrize("bad", ["/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31", "a/b", "mg?x"])
def test_management_group_scope_refuses_other_scopes(bad):
    with pytest.raises(InvalidArmId):
        management_group_scope(bad)


def test_expired_between_takes_expiries_in_the_half_open_window(tmp_path):
    compiled = _compiled(tmp_path, """
        id: storage-private
        version: 9
        description: with exemptions
        mode: enforce
        selector: {resource_types: [Microsoft.Storage/storageAccounts]}
        rules:
          - id: pna
            property: properties.publicNetworkAccess
            expect: {equals: Disabled}
            action: {type: set-property, value: Disabled}
        exemptions:
          - {scope: /subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/a, reason: r, owner: o, expires: "2026-11-24T11:55:00Z"}
          - {scope: /subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/f, reason: r, owner: o, expires: "2026-11-24T11:50:00Z"}
          - {scope: /subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/b, reason: r, owner: o, expires: "2026-11-24T11:40:00Z"}
          - {scope: /subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/c, reason: r, owner: o, expires: "2026-11-24T12:00:00Z"}
          - {scope: /subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/d, reason: r, owner: o, expires: "2026-11-24T12:00:01Z"}
          - {scope: /subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/e, reason: r, owner: o}
        """)
    got = expired_between(compiled, T0 - timedelta(minutes=10), T0)
    assert [(e.kind, e.policy, e.exemption.scope.rsplit("/", 1)[-1]) for e in got] == [
        ("resource", "storage-private@9", "a"), ("resource", "storage-private@9", "c")]
    assert got[0].resource_types == ("Microsoft.Storage/storageAccounts",)
