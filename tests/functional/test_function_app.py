"""The app's functions as the Functions host indexes them."""

import json

import azure.functions as func


def _functions():
    import function_app
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def test_app_lists_its_functions_with_triggers_and_auth_levels():
    fns = _functions()
    assert set(fns) == {"resource_events"}
    bindings = json.loads(fns["resource_events"].get_function_json())["bindings"]
    assert bindings == [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}] or (
        len(bindings) == 1 and bindings[0]["type"] == "eventGridTrigger" and bindings[0]["name"] == "event")


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
