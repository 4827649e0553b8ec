"""The app's functions as the Functions host indexes them."""

import json

import azure.functions as func


def _functions():
    import function_app
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


# name -> (trigger, route, methods, auth level); Event Grid triggers have no route/methods/auth level
EXPECTED = {
    "resource_events": ("eventGridTrigger", None, None, None),
    "keyvault_events": ("eventGridTrigger", None, None, None),
    "secrets_exposed": ("httpTrigger", "secrets/exposed", ["POST"], "FUNCTION"),
    "check_job": ("httpTrigger", "checks/job", ["POST"], "FUNCTION"),
    "check_resource": ("httpTrigger", "checks/resource", ["POST"], "FUNCTION"),
    "check_model_promotion": ("httpTrigger", "checks/model-promotion", ["POST"], "FUNCTION"),
    "openapi": ("httpTrigger", "openapi.json", ["GET"], "FUNCTION"),
    "health": ("httpTrigger", "health", ["GET"], "ANONYMOUS"),     # liveness only: no secrets
    "reconciling_sweep": ("timerTrigger", None, None, None),
    "exemption_expiry": ("timerTrigger", None, None, None),
    "decision_outbox": ("timerTrigger", None, None, None),
    "deadletter_replay": ("timerTrigger", None, None, None),
}


def test_app_lists_its_functions_with_triggers_and_auth_levels():
    fns = _functions()
    assert set(fns) == set(EXPECTED)
    for name, (trigger, route, methods, auth) in EXPECTED.items():
        bindings = json.loads(fns[name].get_function_json())["bindings"]
        t = bindings[0]
        assert (t["type"], t.get("route"), t.get("methods"), t.get("authLevel")) == (trigger, route, methods, auth), name
        if trigger == "eventGridTrigger":
            assert len(bindings) == 1 and t["name"] == "event"
        elif trigger == "timerTrigger":     # schedule from an app setting, resolved by the host
            assert len(bindings) == 1 and t["schedule"].startswith("%GUARDRAILS_") and t["runOnStartup"] is False
        else:
            assert bindings[1] == {"direction": "OUT", "type": "http", "name": "$return"}
    # nothing anonymous but liveness
    assert [n for n, e in EXPECTED.items() if e[3] == "ANONYMOUS"] == ["health"]


def test_event_objects_become_the_envelope_the_service_parses():
    from guardrails.simulate import to_function_event
    from guardrails.triggers.resource_events import event_to_envelope
    from tests.builders import cloud_event, storage, write_event

    eg = write_event(storage()["id"])
    env = event_to_envelope(to_function_event(eg))
    assert isinstance(to_function_event(eg), func.EventGridEvent)
    assert env["eventType"] == eg["eventType"] and env["data"] == eg["data"] and env["id"] == eg["id"]
    ce = cloud_event(storage()["id"])
    obj = to_function_event(ce)
    assert isinstance(obj, func.CloudEvent)
    env = event_to_envelope(obj)
    assert env["type"] == ce["type"] and env["specversion"] == "1.0" and env["data"] == ce["data"]
