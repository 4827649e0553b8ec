"""Options every Azure SDK client of the product is built with.

``requests`` re-reads proxy settings (``HTTP(S)_PROXY``, ``NO_PROXY``, ``.netrc``) from the process
environment on every call when a session trusts the environment: ~0.13 ms of CPU per request,
about a tenth of a table call's client cost, paid on every ARM and Table Storage call of every
event. The product's clients do not trust the environment (``use_env_settings=False``); a site that
needs an egress proxy names it once in ``GUARDRAILS_HTTPS_PROXY`` and every client uses it.

Every client connects within ``CONNECT_TIMEOUT`` seconds. azure-core's default is 300 s, longer than
any budget the product has (a 20 s delivery, a 120 s rotation lease): an unreachable endpoint would
hold a delivery far past its deadline. Read timeouts stay per call, bounded by the caller's deadline.
"""

from __future__ import annotations

import os
from typing import Any

from ..settings import HTTPS_PROXY


CONNECT_TIMEOUT = 5.0


def client_options(ca_bundle: str | None = None, **base: Any) -> dict[str, Any]:
    """``base`` plus: no per-call environment lookup, the configured proxy, the CA bundle, a short
    connection timeout (unless ``base`` names one)."""
    opts: dict[str, Any] = {"connection_timeout": CONNECT_TIMEOUT, **base, "use_env_settings": False}
    proxy = os.environ.get(HTTPS_PROXY, "").strip()
    if proxy:
        opts["proxies"] = {"https": proxy, "http": proxy}
    if ca_bundle:
        opts["connection_verify"] = ca_bundle
    return opts


__all__ = ["CONNECT_TIMEOUT", "client_options"]
