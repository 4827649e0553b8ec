"""``simulate``: run events through the function's own code path on local emulators.

    python -m guardrails simulate --world WORLD.json --events EVENTS.json [--metadata DIR] --out RESULT.json

Azurite (started unless GUARDRAILS_TABLES_CONNECTION is set) holds policies, idempotency records
and the audit; the local HTTPS Azure emulator serves the world's resources to the product's
unchanged SDK clients. Each event becomes a real ``azure.functions`` event object and is passed to
the Event Grid trigger function; afterwards the events the emulator emitted for the guardrail's
own writes are delivered too, so loop protection is exercised for real.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from . import settings as S
from .errors import GuardrailsError
from .model.decision import AuditRow

MAX_FOLLOW_UP_ROUNDS = 5


class UsageError(Exception):
    """Bad command line or input file: one line, exit code 2."""


@dataclass
class SimulationResult:
    decisions: list[dict[str, Any]]
    world: dict[str, Any]
    requests: list[dict[str, Any]]
    failed_deliveries: int = 0
    errors: list[str] = field(default_factory=list)
    stored_audit: list[dict[str, Any]] = field(default_factory=list)
    sweep: dict[str, Any] | None = None       # the reconciling sweep's summary, when one was run
    replay: dict[str, Any] | None = None      # the dead-letter replay's summary, when one was run

    def to_json(self) -> dict[str, Any]:
        return {"decisions": self.decisions, "world": self.world, "requests": self.requests}


def _read_json(path: Path, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} file {path} is not JSON: {exc}") from None


def load_inputs(world_path: Path, events_path: Path) -> tuple[dict, list]:
    world = _read_json(world_path, "world")
    if not isinstance(world, dict) or not isinstance(world.get("resources", []), list):
        raise UsageError(f"world file {world_path} must be an object with a 'resources' array")
    for i, r in enumerate(world.get("resources", [])):
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("type"), str):
            raise UsageError(f"world file {world_path}: resources[{i}] needs string 'id' and 'type'")
    events = _read_json(events_path, "events")
    if not isinstance(events, list):
        raise UsageError(f"events file {events_path} must be a JSON array of events")
    return world, events


@contextmanager
def _patched_env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _RecordingAudit:
    """Tee: rows go to the real audit table and are kept for the result file."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.rows: list[AuditRow] = []

    def write(self, row: AuditRow) -> None:
        self.inner.write(row)
        self.rows.append(row)

    def rows_of_delivery(self, resource_id: str, delivery_id: str) -> list[AuditRow]:
        return self.inner.rows_of_delivery(resource_id, delivery_id)


def to_function_event(raw: Any):
    """A real azure.functions event object, decoded exactly as the Python worker does."""
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter

    return EventGridEventInConverter.decode(meta.Datum(json.dumps(raw), "json"), trigger_metadata={})


def emulator_settings(emu, base_env: dict[str, str]) -> dict[str, str]:
    """The settings that point the product's real SDK clients at the local emulator ``emu`` (ARM,
    Graph and Key Vault through its test CA, the local credential) — for ``simulate``, the demo and
    ``python -m guardrails.local``."""
    local_id = base_env.get(S.LOCAL_OBJECT_ID) or S.DEFAULT_LOCAL_OBJECT_ID
    return {S.ARM_ENDPOINT: emu.base_url, S.GRAPH_ENDPOINT: emu.base_url, S.CA_BUNDLE: emu.ca_path,
            S.CREDENTIAL: "local", S.KEYVAULT_URL_TEMPLATE: emu.vault_url_template,
            S.KEYVAULT_VERIFY_CHALLENGE: "false", S.LOCAL_OBJECT_ID: local_id,
            S.OWN_PRINCIPAL_IDS: base_env.get(S.OWN_PRINCIPAL_IDS) or local_id}


def run_simulation(world: dict, events: list, *, extra_metadata: Sequence[Path] = (),
                   env: dict[str, str] | None = None, emulator=None, read_back_audit: bool = False,
                   include_secret_values: bool = False, sweep: bool = False,
                   dead_letters: list | None = None) -> SimulationResult:
    from .bootstrap import build_service, reset_service
    from . import bootstrap
    from .adapters.tables import Tables, TablePolicyRepository
    from .local.azurite import Azurite
    from .local.emulator import AzureEmulator
    from .service import DeliveryFailed
    from .sync import metadata_dirs, sync_metadata
    from .triggers.resource_events import resource_events

    base_env = dict(os.environ if env is None else env)
    with ExitStack() as stack:
        overrides: dict[str, str] = {}
        if not base_env.get(S.TABLES_CONNECTION):
            azurite = stack.enter_context(Azurite())
            overrides[S.TABLES_CONNECTION] = azurite.connection_string
        if dead_letters is not None:     # Event Grid gave up on these: one blob in Azurite's Blob service
            from .local.deadletters import container_client, write_dead_letters
            blob = stack.enter_context(Azurite(service="blob"))
            overrides[S.DEAD_LETTER_CONNECTION] = blob.connection_string
            write_dead_letters(container_client(blob.connection_string, S.Settings().dead_letter_container),
                               dead_letters, last_outcome="TimedOut")
        emu = emulator or stack.enter_context(AzureEmulator.from_world(world))
        overrides.update(emulator_settings(emu, base_env))
        stack.enter_context(_patched_env({**{k: v for k, v in base_env.items() if k.startswith("GUARDRAILS_")},
                                          **overrides}))
        settings = S.Settings.from_env()
        service = build_service(settings)
        tables = Tables.from_settings(settings)
        sync_metadata(TablePolicyRepository(tables), metadata_dirs(extra_metadata))
        recorder = _RecordingAudit(service.audit)
        service.audit = recorder
        bootstrap._service = service          # the trigger's get_service() returns this one
        stack.callback(reset_service)

        failed, errors = 0, []

        def deliver(raw: Any) -> None:
            nonlocal failed
            try:
                if isinstance(raw, dict):
                    resource_events(to_function_event(raw))
                else:  # the host would not even decode this; the service records it as invalid
                    service.handle_event(raw)
            except DeliveryFailed:
                failed += 1
            except GuardrailsError as exc:
                failed += 1
                errors.append(f"{type(exc).__name__}: {exc}")

        for raw in events:
            deliver(raw)
        for _round in range(MAX_FOLLOW_UP_ROUNDS):
            emitted = emu.drain_events()
            if not emitted:
                break
            for raw in emitted:
                deliver(raw)
        summary = replay = None
        sweeper = None
        if dead_letters is not None or sweep:
            from .bootstrap import build_sweeper
            sweeper = build_sweeper(settings, service=service)
        if dead_letters is not None:     # the replay timer (every 15 min) before the sweep (every 6 h)
            from .bootstrap import build_replayer
            replay = build_replayer(settings, sweeper=sweeper).run().to_dict()
            for raw in emu.drain_events():
                deliver(raw)
        if sweep:     # then the reconciling sweep, as its timer would run it (its rows join the decisions)
            summary = sweeper.run().to_dict()
            for raw in emu.drain_events():       # the sweep's own fixes come back as events too
                deliver(raw)
        result = SimulationResult(
            decisions=[r.to_dict() for r in recorder.rows], world=emu.world(include_values=include_secret_values),
            requests=emu.requests,
            failed_deliveries=failed, errors=errors, sweep=summary, replay=replay)
        if read_back_audit:
            from datetime import datetime, timezone
            from .adapters.audit_tables import TableAuditSink
            sink = TableAuditSink(tables, shards=settings.audit_shards)
            days = sorted({r.time[:10] for r in recorder.rows})
            for d in days:
                result.stored_audit.extend(
                    r.to_dict() for r in sink.read_day(datetime.strptime(d, "%Y-%m-%d").replace(tzinfo=timezone.utc).date()))
        return result


def main(args) -> int:
    world, events = load_inputs(Path(args.world), Path(args.events))
    try:
        result = run_simulation(world, events, extra_metadata=[Path(p) for p in (args.metadata or [])],
                                include_secret_values=bool(getattr(args, "include_secret_values", False)))
    except GuardrailsError as exc:
        # invalid metadata or a missing emulator: a usage/input problem, one line
        raise UsageError(str(exc).replace("\n", " | ")) from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    failed = any(d["verdict"] == "failed" for d in result.decisions) or result.failed_deliveries
    return 1 if failed else 0
