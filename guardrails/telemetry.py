"""Application Insights through OpenTelemetry (``azure-monitor-opentelemetry``), configured once per
worker process by ``function_app.py`` and only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set
(in Azure): locally, in tests and in the cold-start benchmark nothing of it is imported.

Ingestion authenticates with the function's user-assigned identity when
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` is ``Authorization=AAD;ClientId=<client id>`` (the
Application Insights resource has local auth disabled, see ``infra/``).
"""

from __future__ import annotations

import os
from typing import Mapping

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"

_configured = False


def aad_client_id(authentication: str | None) -> tuple[bool, str | None]:
    """``(use Entra ID, client id or None)`` from an ``Authorization=AAD;ClientId=...`` string."""
    fields = {}
    for part in (authentication or "").split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            fields[key.strip().lower()] = value.strip()
    if fields.get("authorization", "").upper() != "AAD":
        return False, None
    return True, fields.get("clientid") or None


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Send the ``guardrails`` logs, requests and dependencies to Application Insights. True when
    configured (now or before); False when no connection string is set."""
    global _configured
    env = os.environ if env is None else env
    connection = env.get(CONNECTION_STRING)
    if not connection:
        return False
    if _configured:
        return True
    from azure.monitor.opentelemetry import configure_azure_monitor

    kwargs = {"connection_string": connection, "logger_name": "guardrails"}
    use_aad, client_id = aad_client_id(env.get(AUTHENTICATION_STRING))
    if use_aad:
        from azure.identity import ManagedIdentityCredential
        kwargs["credential"] = ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    configure_azure_monitor(**kwargs)
    _configured = True
    return True
