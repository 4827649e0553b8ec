"""Azure Functions entry point (Python v2 programming model). Wiring only: every function
lives in a blueprint under guardrails/triggers, every rule in guardrails/."""

import azure.functions as func

from guardrails.triggers.resource_events import bp as resource_events

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(resource_events)
