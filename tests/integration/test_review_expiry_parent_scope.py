"""An expired exemption scoped to a parent resource (a workspace) covered the policy's child type
below it (``workspaces/computes``): the expiry timer lists that parent's children and re-decides
them. Azurite (audit rows) + the HTTPS emulator (the workspace and its computes)."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from tests import builders as b
from tests.integration.test_expiry import _enforcer

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _exempt_workspace(tmp_path, scope: str, expires: datetime):
    """The shipped compute policy (notify: node public IPs cannot be changed) with a
    workspace-wide exemption."""
    d = tmp_path / "extra"
    d.mkdir(exist_ok=True)
    (d / "aml-compute-no-public-ip.yaml").write_text(textwrap.dedent(f"""
        id: aml-compute-no-public-ip
        version: 2
        description: computes get no node public IP
        mode: enforce
        selector:
          resource_types: [Microsoft.MachineLearningServices/workspaces/computes]
        rules:
          - id: node-public-ip-disabled
            property: properties.properties.enableNodePublicIp
            expect: {{equals: false}}
            action: {{type: notify}}
        exemptions:
          - scope: {scope}
            reason: lab workspace until the VNet lands
            owner: alice@contoso.com
            expires: {expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        """))
    return d


def test_an_expired_workspace_exemption_re_decides_the_computes_below_it(harness, tmp_path):
    # GIVEN a workspace-wide exemption that ran out, over two computes with node public IPs
    ws = b.workspace("mlw-lab", pna="Disabled")
    inside = [b.compute(n, workspace_name="mlw-lab") for n in ("cpu", "gpu")]
    fine = b.compute("private", workspace_name="mlw-lab", node_public_ip=False)
    other = b.compute("cpu", workspace_name="mlw-prod")                 # another workspace: not covered
    h = harness([ws, *inside, fine, b.workspace("mlw-prod", pna="Disabled"), other],
                extra_metadata=[_exempt_workspace(tmp_path, ws["id"], NOW - timedelta(minutes=2))])
    # WHEN the expiry timer runs
    summary = _enforcer(h).run(NOW)
    # THEN the computes of that workspace are decided (notify: reported, nothing written)
    rows = [r for r in h.stored_rows() if r.event_type == "Guardrails.ExemptionExpired"]
    assert sorted((r.resource_id, r.verdict) for r in rows) == sorted((c["id"], "violation") for c in inside)
    assert all(r.notify and [v.rule for v in r.violations] == ["node-public-ip-disabled"] for r in rows)
    assert (summary.seen, summary.compliant, summary.open, summary.failed) == (3, 1, 2, 0)
    assert h.writes() == []
    # AND only that workspace's computes were listed
    lists = [q["path"] for q in h.arm_requests("GET") if q["path"].lower().endswith("/computes")]
    assert [p.lower() for p in lists] == [f"{ws['id']}/computes".lower()]
