"""Application Insights configuration: Entra ID ingestion from the app setting infra/ writes, and
nothing of OpenTelemetry imported when no connection string is set (cold start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from guardrails.telemetry import aad_client_id, configure

ROOT = Path(__file__).resolve().parents[2]


def test_entra_id_ingestion_with_the_user_assigned_client_id():
    assert aad_client_id("Authorization=AAD;ClientId=1b2c3d4e-0000-4000-8000-000000000001") == \
        (True, "1b2c3d4e-0000-4000-8000-000000000001")
    assert aad_client_id("Authorization=AAD") == (True, None)          # system-assigned identity
    assert aad_client_id(" authorization = aad ; clientid = abc ") == (True, "abc")
    assert aad_client_id("") == (False, None)
    assert aad_client_id(None) == (False, None)
    assert aad_client_id("Authorization=Key") == (False, None)


def test_without_a_connection_string_nothing_is_configured():
    assert configure({}) is False


def test_function_app_imports_no_opentelemetry_without_a_connection_string():
    env = {k: v for k, v in os.environ.items() if k != "APPLICATIONINSIGHTS_CONNECTION_STRING"}
    code = ("import sys, function_app; bad = [m for m in sys.modules if m.startswith(('azure.monitor', 'opentelemetry'))];"
            " print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
