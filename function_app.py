"""Azure Functions entry point (Python v2 programming model). Wiring only: every function
lives in a blueprint under guardrails/triggers, every rule in guardrails/."""

import os

import azure.functions as func

if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):   # in Azure only: nothing imported locally
    from guardrails.telemetry import configure as configure_telemetry
    configure_telemetry()

from guardrails.triggers.decision_events import bp as decision_events
from guardrails.triggers.http_checks import bp as http_checks
from guardrails.triggers.keyvault_events import bp as keyvault_events
from guardrails.triggers.resource_events import bp as resource_events
from guardrails.triggers.secrets_http import bp as secrets_http
from guardrails.triggers.timers import bp as timers

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(resource_events)
app.register_functions(http_checks)
app.register_functions(keyvault_events)
app.register_functions(secrets_http)
app.register_functions(decision_events)
app.register_functions(timers)
