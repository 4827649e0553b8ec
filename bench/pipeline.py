"""2. Pipeline throughput and latency, 3. calls per event — through simulate's code path.

Real Azurite, the local HTTPS Azure emulator, the product's real SDK clients (``build_service``),
and every event as a real ``azure.functions`` object (``simulate.to_function_event``) handed to the
Event Grid trigger function (``resource_events``), exactly as ``run_simulation`` delivers them.

Concurrency is the Python worker's: sync functions run on a ``ThreadPoolExecutor`` whose size is
``PYTHON_THREADPOOL_THREAD_COUNT``; unset, the worker passes ``max_workers=None`` on Python >= 3.9
(``min(32, cpu_count + 4)``). Each phase submits all its events to that pool at once; per-event
latency is measured inside the worker thread (decode + function), throughput over the phase.

Per repetition, alternating the order: the Azurite ceiling (single-entity upserts/s, serial and at
the pool's concurrency; and, for information, from one asyncio client with 8 writes in flight,
which is how much more Azurite itself takes), compliant events, events needing a fix, the guardrail's own-write events
the emulator emitted for those fixes (ignored), and redeliveries of the compliant events
(duplicates). The policy cache is loaded before each phase (TTL default 30 s, so it stays warm).
Each phase also records its CPU per event in this process (the product), Azurite and the emulator.
After the repetitions, ``bench.skeleton`` times the phases' requests alone (no guardrail work) through
the product's clients and through asyncio clients, each beside its own ceiling (info rows).

The emulator runs in its own process (ARM is another machine in production, and its TLS server
must not take the GIL from the product) with TCP_NODELAY (``bench.emulator_proc.nodelay``: as
shipped it adds ~40 ms to every ARM call); ``arm_round_trip`` measures both, every run.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any, Callable

from bench import cpu, resources as R
from bench.counting import TableCalls, counting_tables, describe, totals
from bench.stats import percentile, summary

THREADPOOL_ENV = "PYTHON_THREADPOOL_THREAD_COUNT"
PHASES = ("compliant", "fix", "own_write", "duplicate", "duplicate_other", "role")
# fixes spread over this many subscriptions: the default circuit breaker allows 50 fixes per
# (policy, subscription) in 600 s, and the benchmark must measure fixes, not an open breaker
SUBSCRIPTIONS = 48
EXPECTED = {"compliant": {"compliant"}, "fix": {"remediated"}, "own_write": {"ignored"},
            "duplicate": {"duplicate"}, "duplicate_other": {"duplicate"}, "role": {"compliant"}}


def default_threads() -> int | None:
    """``PYTHON_THREADPOOL_THREAD_COUNT`` if set, else None (the worker's default on 3.9+)."""
    raw = os.environ.get(THREADPOOL_ENV, "").strip()
    return int(raw) if raw else None


class _Recorder:
    """Tee of the audit sink (as simulate's): rows still go to the real tables."""

    def __init__(self, inner) -> None:
        self.inner, self.rows = inner, []

    def write(self, row) -> None:
        self.inner.write(row)
        self.rows.append(row)

    def rows_of_delivery(self, resource_id: str, delivery_id: str):
        return self.inner.rows_of_delivery(resource_id, delivery_id)


class Stack:
    """Azurite + emulator + the product's service, wired like ``run_simulation``."""

    def __init__(self, resources: list[dict], *, connection: str | None = None,
                 emulator_in_process: bool = False, tcp_nodelay: bool = True) -> None:
        from guardrails import bootstrap
        from guardrails import settings as S
        from guardrails.adapters.policy_tables import TablePolicyRepository
        from guardrails.adapters.tables import Tables
        from guardrails.local.azurite import Azurite
        from guardrails.sync import metadata_dirs, sync_metadata
        from bench.emulator_proc import EmulatorProcess, InProcessEmulator
        from tests.builders import GUARDRAIL_OID

        self._stack = ExitStack()
        try:
            if connection is None:
                connection = self._stack.enter_context(Azurite()).connection_string
            self.connection = connection
            kind = InProcessEmulator if emulator_in_process else EmulatorProcess
            self.emu = kind(resources, tcp_nodelay=tcp_nodelay)
            self._stack.callback(self.emu.stop)
            self.env = {
                S.TABLES_CONNECTION: connection, S.TABLE_PREFIX: "B" + uuid.uuid4().hex[:12],
                S.ARM_ENDPOINT: self.emu.base_url, S.CA_BUNDLE: self.emu.ca_path, S.CREDENTIAL: "local",
                S.LOCAL_OBJECT_ID: GUARDRAIL_OID, S.OWN_PRINCIPAL_IDS: GUARDRAIL_OID,
            }
            self.settings = S.Settings.from_env(self.env)
            self.table_calls = TableCalls(self.settings.table_prefix)
            with counting_tables(self.table_calls):
                self.service = bootstrap.build_service(self.settings)      # creates the tables
            sync_metadata(TablePolicyRepository(Tables.from_settings(self.settings)), metadata_dirs())
            self.recorder = _Recorder(self.service.audit)
            self.service.audit = self.recorder
            bootstrap._service = self.service        # the trigger's get_service() returns this one
            self._stack.callback(bootstrap.reset_service)
            self.table_calls.take()
            self.emu.take_requests()
        except BaseException:
            self._stack.close()
            raise

    def deliver(self, raw: dict) -> float:
        """One delivery through the trigger function; returns its latency in seconds."""
        from guardrails.errors import GuardrailsError
        from guardrails.simulate import to_function_event
        from guardrails.triggers.resource_events import resource_events

        t0 = time.perf_counter()
        try:
            resource_events(to_function_event(raw))
        except GuardrailsError:        # DeliveryFailed / IdempotencyError: audited, counted by verdict
            pass
        return time.perf_counter() - t0

    def warm_policies(self) -> int:
        self.service.policies.invalidate()
        self.service.policies.get()
        return self.service.policies.loads

    def close(self) -> None:
        self._stack.close()


# ---------------------------------------------------------------------------------------------
CEILING_BODY = {"event_type": "Microsoft.Resources.ResourceWriteSuccess",
                "resource_id": "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg-ml-prod/"
                               "providers/Microsoft.Storage/storageAccounts/stmlprod",
                "verdict": "compliant", "reason": "", "message": "compliant with storage-private@1",
                "violations": "[]", "notify": False,
                "actor": '{"app_id": null, "object_id": "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", "upn": null}',
                "duration_ms": 12.5, "time": "2026-11-24T10:00:00.000000Z", "policies": '["storage-private@1"]'}


def _audit_sized(i: int, ids: dict) -> dict:
    return {"PartitionKey": f"20261124-{i % 16:02d}", "RowKey": f"{i:08d}-{uuid.uuid4().hex}", **ids, **CEILING_BODY}


def _ids() -> dict:
    return {"event_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4()), "delivery_id": uuid.uuid4().hex}


def azurite_upserts(connection: str, *, threads: int, count: int, cpu_out: list | None = None) -> float:
    """Single-entity upserts/s of audit-row-sized entities, through the same SDK and settings.
    Serial (``threads <= 1``): the client's CPU per write is appended to ``cpu_out`` (ms)."""
    from azure.data.tables import TableServiceClient

    from guardrails.adapters.transport import client_options

    # the product's client options exactly (no per-call environment lookup): a fair ceiling
    svc = TableServiceClient.from_connection_string(
        connection, **client_options(retry_total=2, connection_timeout=5, read_timeout=10))
    name = "BenchCeiling" + uuid.uuid4().hex[:10]
    svc.create_table(name)
    table = svc.get_table_client(name)
    ids = _ids()

    def one(i: int) -> None:
        table.upsert_entity(_audit_sized(i, ids))

    for i in range(min(20, count)):           # connections up, JIT of Azurite's handlers warm
        one(-1 - i)
    t0 = time.perf_counter()
    if threads <= 1:
        c0 = time.thread_time()
        for i in range(count):
            one(i)
        if cpu_out is not None:
            cpu_out.append((time.thread_time() - c0) * 1000 / count)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, range(count)))
    rate = count / (time.perf_counter() - t0)
    svc.delete_table(name)
    return rate


ASYNC_IN_FLIGHT = 8


def azurite_upserts_async(connection: str, *, in_flight: int = ASYNC_IN_FLIGHT, count: int) -> tuple[float, float]:
    """What Azurite itself takes: single-entity upserts/s of the same entities from one asyncio
    client (``azure.data.tables.aio``, aiohttp) keeping ``in_flight`` writes outstanding, and the
    process CPU per write (ms). No GIL hand-offs between threads, so this is the most one Python
    process gets out of Azurite; the product's synchronous worker is judged against the serial rate
    (same client, same concurrency), and this figure says how much higher Azurite's own limit is."""
    import asyncio

    from azure.data.tables.aio import TableServiceClient

    from guardrails.adapters.transport import client_options

    async def go() -> tuple[float, float]:
        svc = TableServiceClient.from_connection_string(
            connection, **client_options(retry_total=2, connection_timeout=5, read_timeout=10, asyncio=True))
        async with svc:
            name = "BenchAsync" + uuid.uuid4().hex[:10]
            await svc.create_table(name)
            table = svc.get_table_client(name)
            ids = _ids()
            for i in range(min(20, count)):
                await table.upsert_entity(_audit_sized(-1 - i, ids))
            todo = iter(range(count))

            async def writer() -> None:
                for i in todo:
                    await table.upsert_entity(_audit_sized(i, ids))

            c0 = time.process_time()
            t0 = time.perf_counter()
            await asyncio.gather(*(writer() for _ in range(in_flight)))
            wall = time.perf_counter() - t0
            used = time.process_time() - c0
            await svc.delete_table(name)
        return count / wall, used * 1000 / count

    return asyncio.run(go())


# ---------------------------------------------------------------------------------------------
def _event(resource: dict) -> dict:
    """A ResourceWriteSuccess delivery as captured (tests.builders), happening now, from the
    resource's own subscription."""
    from tests.builders import write_event

    raw = write_event(resource["id"], resource["type"])
    sub = resource["id"].split("/")[2]
    raw["topic"] = f"/subscriptions/{sub}"
    raw["data"]["subscriptionId"] = sub
    raw["eventTime"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    return raw


def _role_pool(n: int, rng: random.Random, subs: list[str]) -> list[dict]:
    from tests.builders import role_assignment

    roles = ("Reader", "Storage Blob Data Contributor", "AzureML Data Scientist")
    out = []
    for i in range(n):
        sub = subs[i % len(subs)]
        scope = f"/subscriptions/{sub}/resourceGroups/rg-ml-{i % 7}"
        a = role_assignment(roles[i % 3], str(uuid.UUID(int=rng.getrandbits(128), version=4)), scope=scope,
                            name=str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        a["properties"]["roleDefinitionId"] = a["properties"]["roleDefinitionId"].replace(
            a["properties"]["roleDefinitionId"].split("/")[2], sub)
        out.append(a)
    return out


def _events_for(resources: list[dict]) -> list[dict]:
    return [_event(r) for r in resources]


def _pool(kind: Callable, n: int, rng: random.Random, start: int, subs: list[str]) -> list[dict]:
    """``n`` resources cycling through the five types, spread over ``subs``: a fix burst across
    many subscriptions stays under each (policy, subscription) circuit breaker's limit."""
    return [kind(R.TYPES[i % len(R.TYPES)], rng, start + i, subs[(i // len(R.TYPES)) % len(subs)],
                 f"rg-bench-{i % 7}") for i in range(n)]


class Run:
    """One benchmark session: resource pools seeded into the emulator, then phases."""

    def __init__(self, *, events: int, reps: int, threads: int | None, connection: str | None = None,
                 emulator_in_process: bool = False, tcp_nodelay: bool = True, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.events, self.reps = events, reps
        self.threads = threads
        # at most ~25 fixes per (policy, subscription) over the whole run
        n_subs = max(SUBSCRIPTIONS, -(-events * reps // (len(R.TYPES) * 25)))
        subs = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n_subs + 2)]
        main, warm, calls = subs[:n_subs], subs[-2:-1], subs[-1:]
        self.warm = {"compliant": _pool(R.compliant, 25, rng, 900_000, warm),
                     "fix": _pool(R.violating, 25, rng, 910_000, warm)}
        self.calls_pool = {"compliant": _pool(R.compliant, 5, rng, 920_000, calls),
                           "fix": _pool(R.violating, 5, rng, 930_000, calls)}
        self.pools = [{"compliant": _pool(R.compliant, events, rng, 1_000_000 * (k + 1), main),
                       "fix": _pool(R.violating, events, rng, 1_000_000 * (k + 1) + 500_000, main)}
                      for k in range(reps)]
        everything = [r for p in [self.warm, self.calls_pool, *self.pools] for v in p.values() for r in v]
        # role-assignment events: least-privilege grants below subscription scope (compliant, one read;
        # built-in role definitions from the catalogue, policies from the warm cache)
        self.roles = [_role_pool(events, rng, main) for _ in range(reps)]
        self.calls_roles = _role_pool(5, rng, calls)
        world = {"resources": everything, "directory": {"groups": {}},
                 "roleAssignments": [a for pool in [*self.roles, self.calls_roles] for a in pool]}
        self.stack = Stack(world, connection=connection, emulator_in_process=emulator_in_process,
                           tcp_nodelay=tcp_nodelay)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="worker")
        self.max_workers = self.pool._max_workers

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.stack.close()

    # -- one phase at the pool's concurrency ----------------------------------------------------
    def phase(self, name: str, raws: list[dict], *, forget_completed: bool = False) -> dict:
        """``forget_completed``: redeliveries as another instance meets them (its idempotency claim
        answered by the table, not by this worker's memory of completed events)."""
        st = self.stack
        if forget_completed:
            st.service.idempotency.forget_completed()
        loads = st.warm_policies()
        st.table_calls.take()
        st.emu.take_requests()
        before = len(st.recorder.rows)
        cpu0 = cpu.snapshot()
        t0 = time.perf_counter()
        latencies = list(self.pool.map(st.deliver, raws))
        wall = time.perf_counter() - t0
        used = cpu.delta(cpu0, cpu.snapshot())
        rows = st.recorder.rows[before:]
        verdicts: dict[str, int] = {}
        for row in rows:
            verdicts[row.verdict] = verdicts.get(row.verdict, 0) + 1
        unexpected = {v: n for v, n in verdicts.items() if v not in EXPECTED[name]}
        if unexpected or len(rows) != len(raws):
            raise SystemExit(f"pipeline phase {name}: {len(raws)} events gave {len(rows)} audit rows, "
                             f"verdicts {verdicts}; first unexpected: "
                             f"{next((r.to_dict() for r in rows if r.verdict not in EXPECTED[name]), None)}")
        tc = st.table_calls.take()
        requests = st.emu.take_requests()
        arm = [q for q in requests if q["host"] == "management"]
        return {"events": len(raws), "seconds": wall, "per_s": len(raws) / wall, "other": len(requests) - len(arm),
                "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
                "max_ms": max(latencies) * 1000, "table": totals(tc), "arm": len(arm),
                "policy_reloads": st.service.policies.loads - loads, "verdicts": verdicts,
                "cpu_ms": {k: v * 1000 / len(raws) for k, v in used.items()}}

    def warm_up(self) -> None:
        st = self.stack
        ev = _events_for(self.warm["compliant"])
        for raw in ev[:5]:
            st.deliver(raw)
        list(self.pool.map(st.deliver, ev[5:]))
        fixes = _events_for(self.warm["fix"])
        list(self.pool.map(st.deliver, fixes))
        list(self.pool.map(st.deliver, st.emu.drain_events()))
        list(self.pool.map(st.deliver, ev))          # duplicates

    def ceiling(self) -> dict:
        count = max(100, self.events)
        cpu_ms: list[float] = []
        serial = azurite_upserts(self.stack.connection, threads=1, count=count, cpu_out=cpu_ms)
        concurrent = azurite_upserts(self.stack.connection, threads=self.max_workers, count=count)
        asyncio_rate, asyncio_cpu = azurite_upserts_async(self.stack.connection, count=count)
        return {"serial": serial, "concurrent": concurrent, "best": max(serial, concurrent),
                "client_cpu_ms_per_write": cpu_ms[0], "asyncio": asyncio_rate,
                "asyncio_cpu_ms_per_write": asyncio_cpu}

    # -- CPU per request of the product's own clients, one request at a time ------------------------
    def request_costs(self, count: int = 200) -> dict:
        """Thread CPU (ms) per request through the product's clients, serial, beside the ceiling
        client's per write: what a phase's CPU per event is made of."""
        from guardrails.adapters.tables import NO_CONTENT
        from guardrails.model.resource import lookup_type

        st = self.stack
        svc = st.service
        res = self.calls_pool["compliant"][0]
        api = lookup_type(res["type"]).api_version
        prop = {"publicNetworkAccess": res["properties"].get("publicNetworkAccess", "Disabled")}
        tables = svc.breakers._t                     # the service's own Table clients
        name = "BenchCost" + uuid.uuid4().hex[:10]
        tables.service.create_table(name)
        table = tables.table(name)
        n = [0]
        ids = _ids()

        def create() -> None:
            n[0] += 1
            table.create_entity({"PartitionKey": "c", "RowKey": f"{n[0]:08d}", "status": "IN_PROGRESS",
                                 "holder": uuid.uuid4().hex, "verdict": ""}, **NO_CONTENT)

        def upsert() -> None:
            n[0] += 1
            table.upsert_entity(_audit_sized(n[0], ids))

        ops = {"ARM GET (read, confirm)": lambda: svc.arm.get_resource(res["id"], api_version=api),
               "ARM PATCH": lambda: svc.arm.patch_resource(res["id"], {"properties": prop}, api_version=api,
                                                           deadline=time.monotonic() + 10),
               "table create": create, "table upsert, audit-sized": upsert}
        out: dict[str, float] = {}
        try:
            for label, op in ops.items():
                for _ in range(10):
                    op()
                c0 = time.thread_time()
                for _ in range(count):
                    op()
                out[label] = (time.thread_time() - c0) * 1000 / count
        finally:
            tables.service.delete_table(name)
            st.emu.drain_events()              # the PATCHes' write events are not the phases'
            st.emu.take_requests()
            st.table_calls.take()
        return out

    def repetition(self, k: int) -> dict:
        pool = self.pools[k]
        compliant = _events_for(pool["compliant"])
        fixes = _events_for(pool["fix"])
        out: dict[str, Any] = {}

        def own_writes() -> None:
            emitted = self.stack.emu.drain_events()
            out["own_write"] = self.phase("own_write", emitted)

        steps: list[tuple[str, Callable[[], None]]] = [
            ("ceiling", lambda: out.__setitem__("ceiling", self.ceiling())),
            ("compliant", lambda: out.__setitem__("compliant", self.phase("compliant", compliant))),
            ("duplicate", lambda: out.__setitem__("duplicate", self.phase("duplicate", compliant))),
            ("duplicate_other", lambda: out.__setitem__("duplicate_other", self.phase(
                "duplicate_other", compliant, forget_completed=True))),
            ("fix", lambda: out.__setitem__("fix", self.phase("fix", fixes))),
            ("own_write", own_writes),
            ("role", lambda: out.__setitem__("role", self.phase("role", _events_for(self.roles[k])))),
        ]
        if k % 2:
            steps = [steps[4], steps[5], steps[6], steps[1], steps[2], steps[3], steps[0]]
        for _name, step in steps:
            step()
        return out

    # -- 3. calls per event, one event at a time --------------------------------------------------
    def calls_per_event(self) -> dict:
        from tests.builders import rid, with_data, write_event

        st = self.stack
        st.warm_policies()
        compliant = _events_for(self.calls_pool["compliant"])
        fixes = _events_for(self.calls_pool["fix"])
        vnet = rid("Microsoft.Network", "virtualNetworks", "vnet-hub")
        classes: list[tuple[str, Callable[[], list[dict]], set[str]]] = [
            ("compliant", lambda: compliant, {"compliant"}),
            ("role assignment", lambda: _events_for(self.calls_roles), {"compliant"}),
            ("fix", lambda: fixes, {"remediated"}),
            ("own_write", lambda: st.emu.drain_events(), {"ignored"}),
            ("duplicate", lambda: compliant, {"duplicate"}),
            ("duplicate, another instance", lambda: (st.service.idempotency.forget_completed(), compliant)[1],
             {"duplicate"}),
            ("ignored: type not covered", lambda: [write_event(vnet, "Microsoft.Network/virtualNetworks")], {"ignored"}),
            ("ignored: delete event", lambda: [write_event(self.calls_pool["compliant"][0]["id"],
                                                           event_type="Microsoft.Resources.ResourceDeleteSuccess",
                                                           op="delete")], {"ignored"}),
            ("invalid", lambda: [with_data(write_event(self.calls_pool["compliant"][1]["id"]),
                                           resourceUri="not-an-arm-id")], {"invalid"}),
        ]
        out = {}
        for name, make, expect in classes:
            raws = make()
            arm_calls: list[int] = []
            other: list[int] = []         # Key Vault (host: the vault's name), Microsoft Graph, …
            reads: list[int] = []
            writes: list[int] = []
            verdicts: set[str] = set()
            tcalls: Counter = Counter()
            for raw in raws:
                st.table_calls.take()
                st.emu.take_requests()
                before = len(st.recorder.rows)
                st.deliver(raw)
                verdicts.update(r.verdict for r in st.recorder.rows[before:])
                requests = st.emu.take_requests()
                arm = [q for q in requests if q["host"] == "management"]
                arm_calls.append(len(arm))
                other.append(len(requests) - len(arm))
                reads.append(sum(1 for q in arm if q["method"] == "GET"))
                writes.append(sum(1 for q in arm if q["method"] in ("PUT", "PATCH", "DELETE", "POST")))
                tcalls.update(st.table_calls.take())
            if not verdicts <= expect:
                raise SystemExit(f"calls per event, {name}: verdicts {verdicts}, expected {expect}")
            n = len(raws)
            t = totals(tcalls)
            out[name] = {"events": n, "arm": summary(arm_calls), "other": summary(other), "arm_reads": summary(reads),
                         "arm_writes": summary(writes),
                         "table_writes": t["writes"] / n, "table_reads": t["reads"] / n,
                         "table_detail": describe(tcalls, n)}
        return out


def arm_round_trip(*, count: int = 40) -> dict:
    """One ARM GET through the product's ``ArmGateway``, against the emulator as shipped and
    with TCP_NODELAY, alternating (the ~40 ms difference is the emulator's, not the product's)."""
    from guardrails.adapters.arm import ArmGateway
    from guardrails.local.credential import LocalTokenCredential
    from bench.emulator_proc import EmulatorProcess

    rng = random.Random(3)
    res = R.compliant(R.STORAGE, rng, 1, "3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31", "rg-bench")
    api = "2025-06-01"
    emus = {"as_shipped": EmulatorProcess([res], tcp_nodelay=False), "nodelay": EmulatorProcess([res])}
    try:
        cred = LocalTokenCredential(object_id="6a1f5c3e-0d7b-4a8e-9c2f-51e0d1a9b7c4")
        gws = {k: ArmGateway(cred, endpoint=e.base_url, ca_bundle=e.ca_path) for k, e in emus.items()}
        times: dict[str, list[float]] = {k: [] for k in emus}
        for k, gw in gws.items():
            gw.get_resource(res["id"], api_version=api)       # connection up
        for _ in range(count):
            for k, gw in gws.items():
                t0 = time.perf_counter()
                gw.get_resource(res["id"], api_version=api)
                times[k].append((time.perf_counter() - t0) * 1000)
    finally:
        for e in emus.values():
            e.stop()
    return {k: summary(v) for k, v in times.items()}


def run(*, events: int = 400, reps: int = 5, threads: int | None = None, connection: str | None = None,
        emulator_in_process: bool = False, tcp_nodelay: bool = True, round_trip: int = 40,
        request_count: int = 200, log=print) -> dict:
    """Pipeline figures; ``round_trip`` ARM GETs against the emulator as shipped vs TCP_NODELAY."""
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    sink = _FormattingSink()
    root.setLevel(logging.WARNING)                    # the level simulate's CLI sets
    root.handlers[:] = [sink]                         # formatted (as the worker does), not printed
    try:
        return _run(events=events, reps=reps, threads=threads, connection=connection,
                    emulator_in_process=emulator_in_process, tcp_nodelay=tcp_nodelay,
                    round_trip=round_trip, request_count=request_count, log=log)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


class _FormattingSink(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def _run(*, events: int, reps: int, threads: int | None, connection: str | None, emulator_in_process: bool,
         tcp_nodelay: bool, round_trip: int, request_count: int, log) -> dict:
    round_trip = arm_round_trip(count=round_trip)
    log(f"  ARM GET through the emulator: as shipped {round_trip['as_shipped']['median']:.1f} ms, "
        f"with TCP_NODELAY {round_trip['nodelay']['median']:.1f} ms")
    r = Run(events=events, reps=reps, threads=threads, connection=connection,
            emulator_in_process=emulator_in_process, tcp_nodelay=tcp_nodelay)
    try:
        r.warm_up()
        per_rep = []
        for k in range(reps):
            rep = r.repetition(k)
            per_rep.append(rep)
            log(f"  pipeline run {k + 1}/{reps}: " + ", ".join(
                f"{p} {rep[p]['per_s']:.0f}/s p99 {rep[p]['p99_ms']:.1f} ms" for p in PHASES)
                + f"; Azurite {rep['ceiling']['best']:.0f} upserts/s")
        calls = r.calls_per_event()
        costs = [r.request_costs(request_count) for _ in range(3)]
        from bench import skeleton
        skel = [skeleton.measure(r.stack, r.calls_pool["compliant"][0], count=max(10, events // 2),
                                 threads=r.max_workers, in_flight=ASYNC_IN_FLIGHT) for _ in range(3)]
        threads_used = r.max_workers
    finally:
        r.close()

    out: dict[str, Any] = {"events_per_phase": events, "reps": reps, "threads": threads_used,
                           "threads_setting": threads, "emulator": "in-process" if emulator_in_process else "process",
                           "tcp_nodelay": tcp_nodelay, "arm_round_trip_ms": round_trip,
                           "ceiling": {k: summary(rep["ceiling"][k] for rep in per_rep)
                                       for k in ("serial", "concurrent", "best", "client_cpu_ms_per_write",
                                                 "asyncio", "asyncio_cpu_ms_per_write")},
                           "asyncio_in_flight": ASYNC_IN_FLIGHT,
                           "request_cpu_ms": {k: summary(c[k] for c in costs) for k in costs[0]},
                           "requests_alone": {k: summary(x[k] for x in skel) for k in skel[0]},
                           "phases": {}, "calls": calls}
    # the requests-alone shapes (bench.skeleton) must be the requests the phases really make
    for shape in skeleton.SHAPES:
        made_writes = summary(x[shape]["table"]["writes"] / x[shape]["events"] for x in per_rep)["median"]
        made_arm = summary(x[shape]["arm"] / x[shape]["events"] for x in per_rep)["median"]
        arm_ops = sum(1 for op in skeleton.SHAPES[shape] if op in ("get", "patch"))
        if round(made_writes) != skeleton.WRITES[shape] or round(made_arm) != arm_ops:
            raise SystemExit(f"requests alone, {shape}: the shape makes {skeleton.WRITES[shape]} table writes and "
                             f"{arm_ops} ARM calls, the phase made {made_writes:g} and {made_arm:g}: update "
                             "bench/skeleton.py")
    for p in PHASES:
        reps_p = [rep[p] for rep in per_rep]
        writes = [x["table"]["writes"] / x["events"] for x in reps_p]
        shares = [x["per_s"] / (rep["ceiling"]["best"] / (x["table"]["writes"] / x["events"]))
                  for x, rep in zip(reps_p, per_rep)]
        out["phases"][p] = {
            "per_s": summary(x["per_s"] for x in reps_p),
            "p50_ms": summary(x["p50_ms"] for x in reps_p),
            "p99_ms": summary(x["p99_ms"] for x in reps_p),
            "max_ms": summary(x["max_ms"] for x in reps_p),
            "table_writes_per_event": summary(writes),
            "table_reads_per_event": summary(x["table"]["reads"] / x["events"] for x in reps_p),
            "arm_per_event": summary(x["arm"] / x["events"] for x in reps_p),
            "other_calls_per_event": summary(x["other"] / x["events"] for x in reps_p),   # Key Vault, Graph
            "ceiling_per_s": summary(rep["ceiling"]["best"] / w for rep, w in zip(per_rep, writes)),
            "share_of_ceiling": summary(shares),
            # the same throughput against what Azurite takes from one asyncio client (info, not judged)
            "share_of_asyncio": summary(x["per_s"] * w / rep["ceiling"]["asyncio"]
                                        for x, w, rep in zip(reps_p, writes, per_rep)),
            "policy_reloads": sum(x["policy_reloads"] for x in reps_p),
            "cpu_ms_per_event": {k: summary(x["cpu_ms"].get(k, 0.0) for x in reps_p)
                                 for k in sorted({k for x in reps_p for k in x["cpu_ms"]})},
            # share of one core the product process kept busy: 1.0 = bound by its CPU (the GIL)
            "product_busy": summary(x["per_s"] * x["cpu_ms"].get("product", 0.0) / 1000 for x in reps_p),
            "events": reps_p[0]["events"],
        }
    return out
