"""(info) An event's requests alone: the headroom any worker design has against the ceiling.

The share-of-ceiling target compares an event's throughput with Azurite's single-write rate divided
by the event's table writes. Both sides are paid in the same currency on this machine: the client's
CPU per request (Azurite and the emulator sit on the other core). So the best a design can reach is
what the event's *requests alone* reach, with none of the guardrail's own work (decoding, policy,
audit rows, idempotency logic): a fix is 6 table writes and 3 ARM calls, a compliant event 4 writes
and 1 ARM read (the request classes and order ``calls per event`` counts, bench/pipeline.py).

Two clients, each against its own ceiling measured next to it in the same call:

- **synchronous**, the product's own clients (``ArmGateway`` and the service's Table clients),
  one event at a time: against the serial ceiling the targets are judged by;
- **asyncio** (``azure.data.tables.aio`` and ``azure.mgmt.resource.aio`` over aiohttp, the same
  client options), 8 events in flight: against what Azurite takes from one asyncio client.

Nothing here is judged: it says how much of the ceiling is left for the event's own work.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

# the request classes of an event, in the order the service makes them (bench/pipeline.calls_per_event)
FIX = ("create", "get", "update", "create", "patch", "get", "update", "upsert", "upsert")
COMPLIANT = ("create", "get", "update", "upsert", "upsert")
SHAPES = {"fix": FIX, "compliant": COMPLIANT}
WRITES = {k: sum(1 for op in v if op in ("create", "update", "upsert")) for k, v in SHAPES.items()}


def _entities(n: int) -> Callable[[str], dict[str, Any]]:
    from bench.pipeline import _audit_sized, _ids

    ids = _ids()
    counter = iter(range(10**9))

    def make(op: str) -> dict[str, Any]:
        i = next(counter)
        if op == "upsert":
            return _audit_sized(i, ids)
        # an idempotency / escalation-sized record (the product's create + unconditional replace)
        return {"PartitionKey": f"s{i % 16:02d}", "RowKey": f"{n:04d}-{i:09d}", "status": "IN_PROGRESS",
                "holder": ids["delivery_id"], "verdict": ""}
    return make


def sync_rate(stack, resource: dict, api: str, shape: str, count: int, threads: int = 1) -> tuple[float, float]:
    """Events/s of ``shape``'s requests alone through the product's clients, ``threads`` events at
    a time (1: one after another), and the process's CPU per event (ms)."""
    from azure.data.tables import UpdateMode

    from guardrails.adapters.tables import NO_CONTENT

    svc = stack.service
    tables = svc.breakers._t
    name = "BenchSkel" + uuid.uuid4().hex[:10]
    tables.service.create_table(name)
    table = tables.table(name)
    make = _entities(0)
    body = {"properties": {"publicNetworkAccess": resource["properties"].get("publicNetworkAccess", "Disabled")}}
    ops = SHAPES[shape]

    def event() -> None:
        last: dict[str, Any] | None = None
        for op in ops:
            if op == "get":
                svc.arm.get_resource(resource["id"], api_version=api)
            elif op == "patch":
                svc.arm.patch_resource(resource["id"], body, api_version=api, deadline=time.monotonic() + 10)
            elif op == "create":
                last = make(op)
                table.create_entity(last, **NO_CONTENT)
            elif op == "update":
                table.update_entity({**(last or make("create")), "status": "DONE"}, mode=UpdateMode.REPLACE)
            else:
                table.upsert_entity(make(op))

    try:
        for _ in range(10):
            event()
        c0, t0 = time.process_time(), time.perf_counter()
        if threads <= 1:
            for _ in range(count):
                event()
        else:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(lambda _i: event(), range(count)))
        return count / (time.perf_counter() - t0), (time.process_time() - c0) * 1000 / count
    finally:
        tables.service.delete_table(name)


class _AsyncCredential:
    """The local credential behind the async token protocol (it only builds a string)."""

    def __init__(self, inner) -> None:
        self._inner = inner

    async def get_token(self, *scopes, **kwargs):
        return self._inner.get_token(*scopes, **kwargs)

    async def get_token_info(self, *scopes, options=None):
        return self._inner.get_token_info(*scopes, options=options)

    async def close(self) -> None:
        return None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        return None


def async_rate(connection: str, emu, credential, resource: dict, api: str, shape: str, count: int,
               in_flight: int) -> tuple[float, float]:
    """Events/s of ``shape``'s requests alone through asyncio clients, ``in_flight`` events at once
    (each event's requests in order, as the service makes them), and the process CPU per event (ms)."""
    import asyncio
    import json
    import ssl

    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.data.tables import UpdateMode
    from azure.data.tables.aio import TableServiceClient
    from azure.mgmt.core.polling.async_arm_polling import AsyncARMPolling
    from azure.mgmt.resource.resources.aio import ResourceManagementClient

    from guardrails.adapters.arm import encode_id
    from guardrails.adapters.transport import client_options

    class StatusOnly(AsyncARMPolling):
        def resource(self):
            return None

    body = {"properties": {"publicNetworkAccess": resource["properties"].get("publicNetworkAccess", "Disabled")}}
    rid = encode_id(resource["id"])
    ops = SHAPES[shape]

    async def go() -> tuple[float, float]:
        tsvc = TableServiceClient.from_connection_string(
            connection, **client_options(retry_total=2, connection_timeout=5, read_timeout=10, asyncio=True))
        # the test CA on the connector, once: given as ``connection_verify`` (a path), azure-core's
        # aiohttp transport builds a new SSLContext per request, and aiohttp then opens a new TLS
        # connection for each (~1 ms of CPU per ARM call; real ARM needs no private CA)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=emu.ca_path)))
        arm = ResourceManagementClient(_AsyncCredential(credential), "00000000-0000-0000-0000-000000000000",
                                       base_url=emu.base_url,
                                       transport=AioHttpTransport(session=session, session_owner=False),
                                       **client_options(retry_total=0, asyncio=True))
        async with session, tsvc, arm:
            name = "BenchSkelA" + uuid.uuid4().hex[:10]
            await tsvc.create_table(name)
            table = tsvc.get_table_client(name)
            make = _entities(1)

            async def event() -> None:
                last: dict[str, Any] | None = None
                for op in ops:
                    if op == "get":
                        resp = await arm.resources.get_by_id(
                            rid, api_version=api, stream=True, cls=lambda pr, _s, _h: pr.http_response)
                        await resp.read()
                        json.loads(resp.content)
                    elif op == "patch":
                        poller = await arm.resources.begin_update_by_id(rid, body, api_version=api,
                                                                        polling=StatusOnly(0.2))
                        await poller.result()
                    elif op == "create":
                        last = make(op)
                        await table.create_entity(last, headers={"Prefer": "return-no-content"})
                    elif op == "update":
                        await table.update_entity({**(last or make("create")), "status": "DONE"},
                                                  mode=UpdateMode.REPLACE)
                    else:
                        await table.upsert_entity(make(op))

            for _ in range(10):
                await event()
            todo = iter(range(count))

            async def worker() -> None:
                for _ in todo:
                    await event()

            c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            rate = count / (time.perf_counter() - t0)
            used = (time.process_time() - c0) * 1000 / count
            await tsvc.delete_table(name)
        return rate, used

    return asyncio.run(go())


def measure(stack, resource: dict, *, count: int, threads: int, in_flight: int) -> dict[str, float]:
    """One round: both shapes, both clients, beside the ceilings measured in the same round.

    ``<shape>_sync_share``: the requests alone at the worker's concurrency (``threads``), as a share
    of the serial ceiling measured beside them (a phase's share uses the better of the serial and
    the pool's rate, which has been the serial one in every recorded run; ``bench.pipeline`` checks
    that these shapes make the writes and ARM calls the phases measured). ``<shape>_asyncio_bound``: the
    asyncio client's CPU per write times the event's writes over its CPU per event: the share of the
    asyncio ceiling (itself bound by that client's CPU) a worker doing only these requests would
    reach. Its rate is not used: 8 ARM calls at once queue in the emulator's one-process threaded
    server, which real ARM would not. ``<shape>_asyncio_vs_serial``: the same CPU-bound asyncio
    worker against the serial synchronous ceiling."""
    from bench.pipeline import azurite_upserts, azurite_upserts_async
    from guardrails.local.credential import LocalTokenCredential
    from guardrails.model.resource import lookup_type
    from tests.builders import GUARDRAIL_OID

    api = lookup_type(resource["type"]).api_version
    cred = LocalTokenCredential(object_id=GUARDRAIL_OID)
    n = max(100, count)
    serial = azurite_upserts(stack.connection, threads=1, count=n)
    aio_ceiling, aio_cpu_write = azurite_upserts_async(stack.connection, in_flight=in_flight, count=n)
    out: dict[str, float] = {"serial_ceiling": serial, "asyncio_ceiling": aio_ceiling,
                             "asyncio_cpu_ms_per_write": aio_cpu_write}
    try:
        for shape in SHAPES:
            w = WRITES[shape]
            stack.emu.take_requests()
            rate, cpu_ms = sync_rate(stack, resource, api, shape, count, threads)
            _rate, aio_ms = async_rate(stack.connection, stack.emu, cred, resource, api, shape, count, in_flight)
            # both clients really made every ARM call of every event (10 warm-up events each)
            made = sum(1 for q in stack.emu.take_requests() if q["host"] == "management")
            expected = 2 * (count + 10) * sum(1 for op in SHAPES[shape] if op in ("get", "patch"))
            if made != expected:
                raise SystemExit(f"requests alone, {shape}: the emulator saw {made} ARM calls, expected {expected}")
            out[f"{shape}_sync_per_s"] = rate
            out[f"{shape}_sync_cpu_ms"] = cpu_ms
            out[f"{shape}_sync_share"] = rate * w / serial
            out[f"{shape}_asyncio_cpu_ms"] = aio_ms
            out[f"{shape}_asyncio_bound"] = w * aio_cpu_write / aio_ms
            out[f"{shape}_asyncio_vs_serial"] = (1000 / aio_ms) * w / serial
    finally:
        stack.emu.drain_events()          # the PATCHes' write events belong to no phase
        stack.emu.take_requests()
        stack.table_calls.take()
    return out
