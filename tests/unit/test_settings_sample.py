"""Every GUARDRAILS_* setting the code reads is in local.settings.sample.json, and the sample
names nothing the code does not read (the sample is how a newcomer learns the settings)."""

from __future__ import annotations

import json
from pathlib import Path

from guardrails import settings as S

ROOT = Path(__file__).resolve().parents[2]


def test_sample_lists_exactly_the_settings_the_code_reads():
    names = {v for v in vars(S).values() if isinstance(v, str) and v.startswith("GUARDRAILS_")}
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert names - set(sample) == set(), "add these to local.settings.sample.json"
    assert {n for n in sample if n.startswith("GUARDRAILS_")} - names == set(), "the code reads none of these"
    # the Functions host's own settings the sample must carry for `func start`
    assert sample["FUNCTIONS_WORKER_RUNTIME"] == "python" and "AzureWebJobsStorage" in sample
