"""``python -m guardrails.local [--world demo/world.json] [--metadata DIR]``: the local stand-in for
Azure, kept running for the CLI. Starts Azurite (Table and Blob: the policy and audit tables, the
dead-letter container) and the HTTPS emulator on the world's estate, syncs the policy metadata,
wires Event Grid to the estate as ``infra/`` deploys it (each subscription's, vault's and ML
workspace's topic; ``GUARDRAILS_FUNCTION_APP_ID`` names the app they deliver to, unless already set),
and writes the settings that point the product's real SDK clients at them to ``--env-file``
(``.local/guardrails.env``, shell ``export`` lines) until interrupted. In another shell:

    . .local/guardrails.env
    .venv/bin/python -m guardrails sweep --dry-run
    .venv/bin/python -m guardrails coverage
    .venv/bin/python -m guardrails check resource <id from the world>
    .venv/bin/python -m guardrails deadletter list

Every value is local (the Azurite development account's documented key, the emulator's test CA made
at start): nothing here reaches Azure."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

from .. import settings as S
from ..errors import GuardrailsError

DEFAULT_WORLD = Path(__file__).resolve().parents[2] / "demo" / "world.json"
DEFAULT_ENV_FILE = Path(".local") / "guardrails.env"


def environment(world: dict, base_env: dict[str, str], stack: ExitStack,
                extra_metadata: list[Path]) -> dict[str, str]:
    """Start everything on ``stack`` and return the settings (policy synced)."""
    from ..adapters.policy_tables import TablePolicyRepository
    from ..adapters.tables import Tables
    from ..simulate import _patched_env, emulator_settings
    from ..sync import metadata_dirs, sync_metadata
    from .azurite import Azurite
    from .deadletters import container_client
    from .emulator import AzureEmulator
    from .eventgrid_world import wire_estate

    listed = world.get("resources")
    resources = [r for r in listed if isinstance(r, dict)] if isinstance(listed, list) else []
    # as infra/ deploys it: `coverage` has topics to check
    wired, wiring = wire_estate(resources, base_env.get(S.FUNCTION_APP_ID, "").strip() or None)
    if wired:                          # (a world file of another shape: the emulator names what is wrong)
        world = {**world, "resources": [*resources, *wired]}
    table_service = stack.enter_context(Azurite())
    blobs = stack.enter_context(Azurite(service="blob"))
    emu = stack.enter_context(AzureEmulator.from_world(world))
    env = {S.TABLES_CONNECTION: table_service.connection_string, S.DEAD_LETTER_CONNECTION: blobs.connection_string,
           **wiring, **emulator_settings(emu, base_env)}
    with _patched_env(env):
        settings = S.Settings.from_env({**base_env, **env})
        container_client(blobs.connection_string, settings.dead_letter_container)      # created if missing
        tables = Tables.from_settings(settings)
        tables.ensure()        # every table, as the deployed app has them: `report`, `breaker` read at once
        sync_metadata(TablePolicyRepository(tables), metadata_dirs(extra_metadata))
    return env


def env_lines(env: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))


def main(argv: list[str] | None = None, *, ready=None, stop: threading.Event | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m guardrails.local", description=__doc__.split("\n\n")[0])
    p.add_argument("--world", type=Path, default=DEFAULT_WORLD, help="the estate (simulate's WORLD format)")
    p.add_argument("--metadata", type=Path, action="append", default=[], help="extra policy directory (repeatable)")
    p.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE, help="where the settings are written")
    args = p.parse_args(argv)
    try:
        world = json.loads(args.world.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the world file {args.world}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(world, dict):
        print(f"error: the world file {args.world} must be a JSON object", file=sys.stderr)
        return 2
    stop = stop or threading.Event()
    with ExitStack() as stack:
        try:
            env = environment(world, dict(os.environ), stack, args.metadata)
        except (GuardrailsError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        args.env_file.parent.mkdir(parents=True, exist_ok=True)
        args.env_file.write_text(env_lines(env), encoding="utf-8")
        stack.callback(lambda: args.env_file.unlink(missing_ok=True))    # stale settings point nowhere
        print(f"Azurite and the Azure emulator are running on {args.world}; the policy is synced.\n"
              f"In another shell:  . {args.env_file}   then any `python -m guardrails` command.\n"
              "Ctrl-C stops them.", flush=True)
        if ready is not None:
            ready(env)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
