"""A separate worker process: delivers one event through the trigger function, configured only
by GUARDRAILS_* environment variables (as the Functions host would), prints the outcome."""

import json
import sys

from guardrails.errors import IdempotencyError
from guardrails.service import DeliveryFailed
from guardrails.simulate import to_function_event
from guardrails.triggers.resource_events import resource_events


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        raw = json.load(f)
    print("ready", flush=True)
    try:
        resource_events(to_function_event(raw))
    except IdempotencyError:
        print("retry-later", flush=True)
        return 3
    except DeliveryFailed:
        print("failed", flush=True)
        return 1
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
