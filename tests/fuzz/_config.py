"""How many examples the fuzz tests run, and whether the run is reproducible.

    GUARDRAILS_FUZZ_EXAMPLES   total generated events across the event fuzz tests (default 20000:
                               the CI run); the metadata fuzz tests scale with it
    GUARDRAILS_FUZZ_RANDOM     1 = fresh random seeds and the example database (``make fuzz``);
                               unset/0 = derandomized, so a CI run tests the same examples every time

A failure prints ``@reproduce_failure(...)`` and the falsifying example; in random mode the
example database under ``.hypothesis/`` replays it on the next run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("GUARDRAILS_FUZZ_EXAMPLES", "20000"))
RANDOM = os.environ.get("GUARDRAILS_FUZZ_RANDOM", "0").strip().lower() in ("1", "true", "yes")

# the hang guard: one delivery (or one metadata load) must finish well inside this
MAX_SECONDS = 1.0


def examples(share: float, minimum: int = 50) -> int:
    return max(minimum, round(EXAMPLES * share))


def fuzz_settings(n: int) -> settings:
    kwargs = {} if RANDOM else {"derandomize": True}     # derandomize implies database=None
    return settings(
        max_examples=n,
        deadline=None,                                   # time is asserted per call instead
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much, HealthCheck.large_base_example],
        **kwargs,
    )
