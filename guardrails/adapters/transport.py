"""Options every Azure SDK client of the product is built with.

Every client sends through its own ``http_transport.Urllib3Transport`` (azure-core's transport
interface on urllib3, without ``requests``' per-call session machinery: ~25% less CPU per event).
It never reads proxy settings from the process environment (``requests`` re-read ``HTTP(S)_PROXY``,
``NO_PROXY`` and ``.netrc`` on every call, ~0.13 ms of CPU each); a site that needs an egress proxy
names it once in ``GUARDRAILS_HTTPS_PROXY`` and every client uses it.

Every client connects within ``CONNECT_TIMEOUT`` seconds. azure-core's default is 300 s, longer than
any budget the product has (a 20 s delivery, a 120 s rotation lease): an unreachable endpoint would
hold a delivery far past its deadline. Read timeouts stay per call, bounded by the caller's deadline.
"""

from __future__ import annotations

import os
from typing import Any

from ..settings import HTTPS_PROXY


CONNECT_TIMEOUT = 5.0


def client_options(ca_bundle: str | None = None, *, asyncio: bool = False, **base: Any) -> dict[str, Any]:
    """``base`` plus a transport of the client's own (``http_transport.Urllib3Transport``) with: no
    environment lookup, the configured proxy, the CA bundle, a short connection timeout (unless
    ``base`` names one), ``base``'s read timeout. Call it once per client: closing a client closes
    its transport. ``asyncio``: the same settings for an ``aio`` client, on azure-core's own async
    transport (the benchmark's comparison clients)."""
    from .http_transport import Urllib3Transport

    opts: dict[str, Any] = {"connection_timeout": CONNECT_TIMEOUT, **base}
    if asyncio:
        opts["use_env_settings"] = False
        proxy = os.environ.get(HTTPS_PROXY, "").strip()
        if proxy:
            opts["proxies"] = {"https": proxy, "http": proxy}
        if ca_bundle:
            opts["connection_verify"] = ca_bundle
        return opts
    connection: dict[str, Any] = {"connection_timeout": opts.pop("connection_timeout")}
    if "read_timeout" in opts:
        connection["read_timeout"] = opts.pop("read_timeout")
    proxy = os.environ.get(HTTPS_PROXY, "").strip()
    if proxy:
        connection["proxies"] = {"https": proxy, "http": proxy}
    if ca_bundle:
        connection["connection_verify"] = ca_bundle
    opts.pop("use_env_settings", None)
    opts["transport"] = Urllib3Transport(**connection)
    return opts


__all__ = ["CONNECT_TIMEOUT", "client_options"]
