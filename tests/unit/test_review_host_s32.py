"""Review s32, what the Functions host and its plan would load: infra/'s function app on Flex
Consumption, and the README's "Running under the Functions host" steps.

1. ``siteConfig.ftpsState`` on the Flex Consumption site. ARM refuses it for Flex Consumption sites
   (BadRequest, ExtendedCode 51021: "The following site configuration property
   (Site.SiteConfig.FtpsState) for Flex Consumption sites is invalid. Please remove or rename it before
   retrying." — quoted in Azure/terraform-azurerm-avm-res-web-site#360 and #345, and
   microsoft/azure-pipelines-tasks#21032; older regional stamps ignore it, newer ones refuse it, and
   refusing is intended everywhere). FTP is already off through ``basicPublishingCredentialsPolicies``.
2. The README's Azurite command for ``func start`` passes ``--location`` with ``--inMemoryPersistence``,
   which Azurite refuses at start ("The --inMemoryPersistence option is not supported when the --location
   option is set", azurite/dist/src/common/Environment.js): the ``metadata sync`` and ``func start``
   that follow have no storage.
3. ``.funcignore`` does not exclude ``.local/``, where that README step keeps Azurite's data: azd and
   Core Tools package everything ``.funcignore`` does not exclude (learn.microsoft.com, "Configure
   service packaging file exclusions").
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.unit.test_infra import doc, one

ROOT = Path(__file__).resolve().parents[2]

# siteConfig properties ARM names in its 51021 refusals for Flex Consumption sites (the runtime is
# functionAppConfig.runtime, scale is functionAppConfig.scaleAndConcurrency)
FLEX_REFUSED_SITE_CONFIG = {
    "ftpsState", "linuxFxVersion", "windowsFxVersion", "netFrameworkVersion", "use32BitWorkerProcess",
    "preWarmedInstanceCount", "functionsRuntimeScaleMonitoringEnabled", "alwaysOn", "functionAppScaleLimit",
}


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.index("\n## ", start + 3)
    return text[start:end]


# ---- 1. the Flex Consumption site ------------------------------------------------------------------
def test_flex_consumption_site_config_sets_no_property_arm_refuses_for_flex_sites():
    app = doc("modules/app.bicep")
    plan = one(app, "Microsoft.Web/serverfarms")
    assert plan["sku"]["tier"] == "FlexConsumption"
    site_config = one(app, "Microsoft.Web/sites")["properties"]["siteConfig"]
    refused = sorted(FLEX_REFUSED_SITE_CONFIG & set(site_config))
    assert not refused, (f"infra/modules/app.bicep siteConfig sets {refused}: ARM answers 400 (51021) "
                         "'... for Flex Consumption sites is invalid' and the provision fails")


# ---- 2. the README's local run ---------------------------------------------------------------------
def test_readme_azurite_command_for_func_start_is_one_azurite_accepts(tmp_path):
    section = _readme_section("Running under the Functions host")
    match = re.search(r"^npx azurite (.+?)\s*&", section, re.M)
    assert match, "no `npx azurite ... &` line in the section"
    args = shlex.split(match.group(1))
    binary = ROOT / "node_modules" / ".bin" / "azurite"
    if not binary.exists() or shutil.which("node") is None:
        pytest.skip("Azurite (package.json) not installed: make setup")
    # the README's flags as written; its location moved under tmp_path, its ports made free ones
    args = [str(tmp_path / "azurite") if i > 0 and args[i - 1] == "--location" else a for i, a in enumerate(args)]
    args += ["--blobPort", "0", "--queuePort", "0", "--tablePort", "0", "--blobHost", "127.0.0.1",
             "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1"]
    proc = subprocess.Popen([str(binary), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        exited = proc.poll() is not None
        output = proc.stdout.read() if exited else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert not exited, f"`npx azurite {match.group(1)}` exits at once: {output.strip()[:300]}"


def test_funcignore_keeps_the_readme_local_azurite_data_out_of_the_deployment_package():
    section = _readme_section("Running under the Functions host")
    match = re.search(r"--location\s+(\S+)", section)
    assert match, "the section no longer keeps Azurite data in a folder"
    data_dir = match.group(1).rstrip("/")
    patterns = [p.strip() for p in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
                if p.strip() and not p.startswith("#")]
    sample = f"{data_dir}/__azurite_db_table__.json"
    parts = Path(sample).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]

    def ignored(pattern: str) -> bool:
        pat = pattern.lstrip("/").rstrip("/")
        return any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(Path(p).name, pat) for p in prefixes)

    assert any(ignored(p) for p in patterns), \
        f".funcignore does not exclude {data_dir}/: `azd deploy` / `func azure functionapp publish` ship it"
