"""``simulate``: run events through the function's own code path on local emulators.

    python -m guardrails simulate --world WORLD.json --events EVENTS.json [--metadata DIR] --out RESULT.json

Azurite (started unless GUARDRAILS_TABLES_CONNECTION is set) holds policies, idempotency records
and the audit; the local HTTPS Azure emulator serves the world's resources to the product's
unchanged SDK clients. Each event becomes a real ``azure.functions`` event object and is passed to
the Event Grid trigger function; afterwards the events the emulator emitted for the guardrail's
own writes are delivered too, so loop protection is exercised for real. An event the worker
cannot decode (not an object, a time that does not parse) goes to the service as the dead-letter
replay hands it: audited ``invalid``. The result's request log carries no value written to Key
Vault unless ``--include-secret-values`` (``redact_requests``), as its world carries none.
"""

from __future__ import annotations

import json
import os
import re
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
    except UnicodeDecodeError as exc:     # UTF-16 (PowerShell's ``>``), Latin-1 …: an input error, not a crash
        raise UsageError(f"{what} file {path} is not UTF-8 JSON: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} file {path} is not JSON: {exc}") from None


def load_inputs(world_path: Path, events_path: Path) -> tuple[dict, list]:
    world = _read_json(world_path, "world")
    if not isinstance(world, dict) or not isinstance(world.get("resources", []), list):
        raise UsageError(f"world file {world_path} must be an object with a 'resources' array")
    check_world(world, f"world file {world_path}")
    events = _read_json(events_path, "events")
    if not isinstance(events, list):
        raise UsageError(f"events file {events_path} must be a JSON array of events")
    return world, events


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_world(world: dict, where: str) -> None:
    """The shapes ``AzureEmulator.from_world`` relies on, checked before anything starts: a bad entry
    is one UsageError naming its key and index (``where``: the file). It names, never echoes: a
    secret's or a storage key's value is one. What only the emulator can judge (a role definition's
    semantics, an id's form) it still refuses, also as a UsageError (``run_simulation``)."""
    def need(ok: bool, at: str, what: str) -> None:
        if not ok:
            raise UsageError(f"{where}: {at} {what}")

    def items(key: str):
        value = world.get(key)
        need(value is None or isinstance(value, list), f"'{key}'", "must be an array")
        return enumerate(value or ())

    for i, r in items("resources"):
        need(isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("type"), str),
             f"resources[{i}]", "needs string 'id' and 'type'")
    for i, a in items("roleAssignments"):
        props = a.get("properties") if isinstance(a, dict) else None
        need(isinstance(a, dict) and isinstance(a.get("id"), str) and isinstance(props, dict)
             and isinstance(props.get("principalId"), str) and isinstance(props.get("roleDefinitionId"), str),
             f"roleAssignments[{i}]", "needs a string 'id', properties.principalId and properties.roleDefinitionId")
    for i, d in items("roleDefinitions"):
        need(isinstance(d, dict), f"roleDefinitions[{i}]", "must be an object")
    for i, b in items("secrets"):
        need(isinstance(b, dict) and isinstance(b.get("id"), str), f"secrets[{i}]",
             "needs a string 'id' (https://<vault>.vault.azure.net/secrets/<name>/<version>)")
    for i, b in items("keys"):
        need(isinstance(b, dict) and isinstance(b.get("key"), dict) and isinstance(b["key"].get("kid"), str),
             f"keys[{i}]", "needs a string 'key.kid'")
    for i, f in items("faults"):
        need(isinstance(f, dict), f"faults[{i}]", "must be an object")
        for k in ("method", "path_regex", "code", "message"):
            need(f.get(k) is None or isinstance(f[k], str), f"faults[{i}].{k}", "must be a string")
        for k in ("status", "retry_after", "times", "delay_ms"):
            need(f.get(k) is None or _is_int(f[k]), f"faults[{i}].{k}", "must be an integer")
        try:
            re.compile(f.get("path_regex") or "")
        except re.error as exc:
            need(False, f"faults[{i}].path_regex", f"is not a regular expression ({exc})")
    for i, t in items("etaglessTypes"):
        need(isinstance(t, str), f"etaglessTypes[{i}]", "must be a string")
    storage = world.get("storageKeys")
    need(storage is None or isinstance(storage, dict), "'storageKeys'",
         "must be an object mapping a storage account id to its keys")
    for account, keys in (storage or {}).items():
        need(isinstance(keys, list), f"storageKeys[{account[:200]!r}]", "must be an array of keys")
        for j, key in enumerate(keys):
            need(isinstance(key, dict) and isinstance(key.get("keyName"), str),
                 f"storageKeys[{account[:200]!r}][{j}]", "needs a string 'keyName'")
    directory = world.get("directory")
    need(directory is None or isinstance(directory, dict), "'directory'", 'must be an object ({"groups": {...}})')
    groups = (directory or {}).get("groups")
    need(groups is None or (isinstance(groups, dict) and all(isinstance(m, list) for m in groups.values())),
         "'directory.groups'", "must map a group id to an array of member ids")
    objects = (directory or {}).get("objects")
    need(objects is None or isinstance(objects, (dict, list)), "'directory.objects'", "must be an object or an array")
    lro = world.get("lro_seconds")
    need(lro is None or (isinstance(lro, (int, float)) and not isinstance(lro, bool) and 0 <= lro < float("inf")),
         "'lro_seconds'", "must be a number of seconds (0 or more)")
    need(world.get("keyVaultScope") is None or isinstance(world["keyVaultScope"], str), "'keyVaultScope'",
         "must be a string (/subscriptions/<s>/resourceGroups/<rg>)")
    need(world.get("keyvault_private_access") is None or isinstance(world["keyvault_private_access"], bool),
         "'keyvault_private_access'", "must be true or false")


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
    """Tee: rows go to the real audit table and are kept for the result file; every read of the
    audit sink (``TableAuditSink``) goes to the table, so what runs here (the sweep's repeat-notice
    check ``settled_since``) behaves as deployed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.rows: list[AuditRow] = []

    def write(self, row: AuditRow) -> None:
        self.inner.write(row)
        self.rows.append(row)

    def rows_of_delivery(self, resource_id: str, delivery_id: str) -> list[AuditRow]:
        return self.inner.rows_of_delivery(resource_id, delivery_id)

    def rows_of_event(self, resource_id: str, event_id: str) -> list[AuditRow]:
        return self.inner.rows_of_event(resource_id, event_id)

    def settled_since(self, resource_id: str, since) -> bool:
        """The sweep's repeat-notice check (``sweep_notices``) asks the real table, as deployed."""
        return self.inner.settled_since(resource_id, since)

    def read_day(self, day) -> list[AuditRow]:
        return self.inner.read_day(day)

    def read_resource(self, resource_id: str) -> list[AuditRow]:
        return self.inner.read_resource(resource_id)


def redact_requests(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request log (``emu.requests``, copies) without the values written to Key Vault, as the
    result's world leaves them out: a secret's ``value`` (set secret, on the data plane or as an ARM
    ``vaults/secrets`` write) becomes ``"<redacted>"``, a key's private material is dropped. Storage
    keys never appear: ``listKeys``/``regenerateKey`` answers are not logged, their requests hold none."""
    from .local.keyvault_emulator import KEY_MATERIAL, REDACTED

    for q in requests:
        body, path = q.get("body"), str(q.get("path") or "").lower()
        if not isinstance(body, dict):
            continue
        if path.startswith("/vaults/"):                   # the data plane: /vaults/<vault>/secrets|keys/...
            if "value" in body:
                body["value"] = REDACTED
            if isinstance(body.get("key"), dict):
                body["key"] = {k: v for k, v in body["key"].items() if k not in KEY_MATERIAL}
        elif "/providers/microsoft.keyvault/vaults/" in path and "/secrets/" in path:
            props = body.get("properties")
            if isinstance(props, dict) and "value" in props:
                props["value"] = REDACTED
    return requests


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
    from .adapters.policy_tables import TablePolicyRepository
    from .adapters.tables import Tables
    from .local.azurite import Azurite
    from .local.emulator import AzureEmulator
    from .service import DeliveryFailed
    from .sync import metadata_dirs, sync_metadata
    from .triggers.resource_events import resource_events

    base_env = dict(os.environ if env is None else env)
    built = emulator is None
    if built:                   # before anything starts: a world the emulator refuses is an input error
        try:
            emulator = AzureEmulator.from_world(world)
        except (ValueError, TypeError, AttributeError, KeyError, re.error) as exc:
            # what ``check_world`` cannot judge (an id's form, a role definition's rules); never a value
            raise UsageError(f"world file: {type(exc).__name__}: {str(exc)[:300]}") from None
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
        emu = stack.enter_context(emulator) if built else emulator
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
                event = None
                if isinstance(raw, dict):
                    try:
                        event = to_function_event(raw)
                    except (ValueError, TypeError, OverflowError):
                        pass            # a time that does not parse: the worker could not decode it either
                if event is not None:
                    resource_events(event)
                else:  # the host would not deliver this; handed on as the dead-letter replay does: invalid
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
            requests=emu.requests if include_secret_values else redact_requests(emu.requests),
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


def writable(path: Path, what: str) -> Path:
    """``path`` after checking it can be written (its directory made, the file opened for append and,
    if new, removed again): a run is not lost at its end to a path that cannot take the result."""
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    return path


def write_result(path: Path, text: str, what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}") from None


def main(args) -> int:
    world, events = load_inputs(Path(args.world), Path(args.events))
    out = writable(Path(args.out), "--out")
    try:
        result = run_simulation(world, events, extra_metadata=[Path(p) for p in (args.metadata or [])],
                                include_secret_values=bool(getattr(args, "include_secret_values", False)))
    except GuardrailsError as exc:
        # invalid metadata or a missing emulator: a usage/input problem, one line
        raise UsageError(str(exc).replace("\n", " | ")) from None
    write_result(out, json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str) + "\n", "--out")
    failed = any(d["verdict"] == "failed" for d in result.decisions) or result.failed_deliveries
    return 1 if failed else 0
