"""Command line: ``python -m guardrails <command>``.

    metadata validate [--metadata DIR ...]     three-pass validation of policy files
    metadata sync [--metadata DIR ...]         validate, then make the policy table hold exactly them
    simulate --world W --events E [--metadata DIR] --out R
    breaker reset|status POLICY SCOPE          close (or show) a policy's circuit breaker (subscription, keyvault:<vault>, tenant)
    escalation reset|status RESOURCE_ID        end (or show) a resource's flip-flop escalation
                                               (or a re-granted role's: 'rolegrant:<scope>|<principal>|<role>')
    sweep [--subscription ID] [--management-group MG] [--dry-run] [--expiry]   reconciling sweep (or expiry run)
    coverage [--subscription ID] [--json]      does each subscription's topic deliver every covered write here?
                                               (exit 0 all covered, 1 a gap or an unreadable list)
    deadletter list|replay [--limit N] [--dry-run] [--json]   events Event Grid gave up on: their state,
                                               or replayed through the guardrails (exit 1 one failed / waits)
    check job|resource|model-promotion ...     pre-flight checks (exit 0 allowed, 1 denied, 2 error)
    report [--days N | --since D] [--until D] [--json] [--html FILE]   compliance KPIs from the audit table
    permissions [--json | --bicep]             Azure permissions the code declares (least-privilege role)
    demo                                       the main job on an embedded default, printed

Exit codes: 0 ok, 1 a delivery failed (simulate) / invalid metadata, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .errors import GuardrailsError, MetadataValidationError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m guardrails", description="Security guardrails for ML platforms on Azure")
    sub = p.add_subparsers(dest="command", required=True)
    md = sub.add_parser("metadata", help="validate or sync policy metadata")
    mdsub = md.add_subparsers(dest="action", required=True)
    for name in ("validate", "sync"):
        a = mdsub.add_parser(name)
        a.add_argument("--metadata", action="append", default=[], metavar="DIR",
                       help="extra policy directory after the shipped metadata/ (same id replaces)")
        if name == "sync":
            a.add_argument("--wait-for-access", type=float, default=0.0, metavar="SECONDS",
                           help="retry a 403 from Table Storage this long (a role assigned moments ago, "
                                "as azd's postprovision hook meets it, takes minutes to apply); default 0")
            a.add_argument("--allow-downgrade", action="store_true",
                           help="write a policy at a lower version than the table holds, or changed at the same "
                                "version (refused by default)")
    sim = sub.add_parser("simulate", help="run events through the function on local emulators")
    sim.add_argument("--world", required=True)
    sim.add_argument("--events", required=True)
    sim.add_argument("--metadata", action="append", default=[], metavar="DIR")
    sim.add_argument("--out", required=True)
    sim.add_argument("--include-secret-values", action="store_true",
                     help="dump secret and storage-key values in the result's world (redacted by default)")
    br = sub.add_parser("breaker", help="circuit breaker of a policy in a subscription (or a vault)")
    brsub = br.add_subparsers(dest="action", required=True)
    for name in ("reset", "status"):
        a = brsub.add_parser(name)
        a.add_argument("policy")
        a.add_argument("subscription", metavar="SCOPE",
                       help="a subscription id; keyvault:<vault> for a secrets policy's rotations in one vault; "
                            "tenant for role removals above any subscription (management groups, the root)")
    esc = sub.add_parser("escalation", help="flip-flop escalation of one resource (or role grant key)")
    escsub = esc.add_subparsers(dest="action", required=True)
    for name in ("reset", "status"):
        escsub.add_parser(name).add_argument("resource_id")
    from .coverage_check import add_parser as add_coverage_parser
    from .sweep import add_parser as add_sweep_parser
    add_sweep_parser(sub)
    add_coverage_parser(sub)
    from .replay import add_parser as add_replay_parser
    add_replay_parser(sub)
    from .checks.cli import add_parser as add_check_parser
    add_check_parser(sub)
    perms = sub.add_parser("permissions", help="the Azure permissions the code declares (infra/ grants exactly these)")
    perms.add_argument("--format", dest="format", choices=("text", "json", "bicep"), default="text")
    perms.add_argument("--json", dest="format", action="store_const", const="json")
    perms.add_argument("--bicep", dest="format", action="store_const", const="bicep")
    rep = sub.add_parser("report", help="compliance KPIs from the audit table (terminal, --json, --html)")
    rep.add_argument("--days", type=int, help="the last N days up to --until or now (default 7; not with --since)")
    rep.add_argument("--since", help="start, YYYY-MM-DD or ISO 8601 UTC (instead of --days)")
    rep.add_argument("--until", help="end, exclusive; a date means the end of that day (default now)")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    demo = sub.add_parser("demo", help="the product's main job on the embedded sample world")
    demo.add_argument("--out", default="out/demo-result.json")
    return p



def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # argparse already printed a one-line usage error
        return 2 if exc.code else 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    from .simulate import UsageError
    try:
        if args.command == "metadata":
            return _metadata(args)
        if args.command == "simulate":
            from .simulate import main as simulate_main
            return simulate_main(args)
        if args.command == "breaker":
            return _breaker(args)
        if args.command == "escalation":
            return _escalation(args)
        if args.command == "check":
            from .checks.cli import main as check_main
            return check_main(args)
        if args.command == "sweep":
            from .sweep import cli_main as sweep_main
            return sweep_main(args)
        if args.command == "coverage":
            from .coverage_check import cli_main as coverage_main
            return coverage_main(args)
        if args.command == "deadletter":
            from .replay import cli_main as replay_main
            return replay_main(args)
        if args.command == "permissions":
            from .permissions import render, required
            print(render(required(), args.format))
            return 0
        if args.command == "demo":
            from .demo import main as demo_main
            return demo_main(args)
        if args.command == "report":
            return _report(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MetadataValidationError as exc:
        print("error: invalid metadata, nothing changed:", file=sys.stderr)
        for f in exc.findings:
            print(f"  {f}", file=sys.stderr)
        return 1
    except GuardrailsError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    return 2


def _tables(settings):
    """The table store as the settings configure it: a connection string (Azurite, a key), or
    the endpoint with this process's identity (a deployment: ``GUARDRAILS_TABLES_ENDPOINT``,
    where an operator resets a breaker or reads the report)."""
    from .adapters.tables import Tables
    credential = None
    if not settings.tables_connection:
        from .adapters.arm import build_credential
        credential = build_credential(settings)
    return Tables.from_settings(settings, credential=credential)


def _existing(tables, attr: str, what: str):
    """``tables`` once its table ``attr`` is known to exist. The operator's status and reset create
    nothing: a table that is not there (a mistyped GUARDRAILS_TABLE_PREFIX, another account) is an
    error, exit 2, never a quiet "closed" / "no state" about a deployment it never looked at."""
    from .simulate import UsageError
    name = getattr(tables, attr)
    if not tables.exists(name):
        raise UsageError(f"table {name} does not exist: no {what} state here, nothing read or reset "
                         "(check GUARDRAILS_TABLE_PREFIX and the storage account)")
    return tables


def _metadata(args) -> int:
    from .sync import metadata_dirs, sync_metadata
    dirs = metadata_dirs([Path(d) for d in args.metadata])
    for d in dirs:
        if not d.is_dir():
            from .simulate import UsageError
            raise UsageError(f"metadata directory {d} does not exist")
    if args.action == "validate":
        from .policy.loader import load_directory
        policies = load_directory(*dirs)
        print(json.dumps({"valid": True, "policies": [p.ref for p in policies]}))
        return 0
    from .adapters.policy_tables import TablePolicyRepository
    from .errors import StoreError
    from .settings import Settings
    settings = Settings.from_env()
    tables = _tables(settings)
    wait = max(0.0, float(getattr(args, "wait_for_access", 0.0) or 0.0))
    end = time.monotonic() + wait
    while True:
        try:
            try:            # only the policy table: a deployer's role covers that one table
                tables.ensure([tables.policies_name])
            except StoreError as exc:
                if exc.status != 403:
                    raise   # 403: may not create tables (a role on the one table infra/ made); the sync says
            counts = sync_metadata(TablePolicyRepository(tables), dirs,
                                   allow_downgrade=bool(getattr(args, "allow_downgrade", False)))
            break
        except StoreError as exc:
            if exc.status != 403 or time.monotonic() + 15 > end:
                raise
            print(f"table storage refused access (403), retrying for {end - time.monotonic():.0f} s more: "
                  "a role assignment takes minutes to apply", file=sys.stderr)
            time.sleep(15)
    print(json.dumps({"synced": True, "table": tables.policies_name, **counts}))
    return 0


# the report reads whole UTC days around its period: keep a day of room at the calendar's ends
_REPORT_RANGE = "the report's dates must be between 0001-01-02 and 9999-12-30 (UTC)"


def _report_bound(value: str, *, end: bool):
    from datetime import date, datetime, timedelta, timezone

    from .simulate import UsageError
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{value[:40]!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    try:
        date.fromisoformat(value)                # a date without a time part, in any ISO spelling
        bare = True                              # (2026-11-03, 20261103, 2026-W44-2)
    except ValueError:
        bare = False
    try:
        if end and bare:                         # a bare date: through the end of that day
            t += timedelta(days=1)
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except OverflowError:
        raise UsageError(f"{value[:40]!r} is out of range: {_REPORT_RANGE}") from None


def _report_period(args):
    """``(since, until)`` as aware UTC datetimes; UsageError for an empty, too long or out-of-range period."""
    from datetime import datetime, timedelta, timezone

    from .simulate import UsageError
    until = _report_bound(args.until, end=True) if args.until else datetime.now(timezone.utc)
    if args.since:
        since = _report_bound(args.since, end=False)
    else:
        days = 7 if getattr(args, "days", None) is None else args.days     # --days' default
        if days < 1 or days > 366:
            raise UsageError("--days must be between 1 and 366")
        try:
            since = until - timedelta(days=days)
        except OverflowError:
            raise UsageError(f"--until {args.until[:40]!r} minus {days} days is out of range: "
                             f"{_REPORT_RANGE}") from None
    low, high = datetime(1, 1, 2, tzinfo=timezone.utc), datetime(9999, 12, 31, tzinfo=timezone.utc)
    if since < low or until > high:       # ``until`` is exclusive: through 9999-12-30
        raise UsageError(f"the period {since.date()} .. {until.date()} is out of range: {_REPORT_RANGE}")
    if since >= until or (until - since).days > 366:
        raise UsageError("the period must be non-empty and at most 366 days")
    return since, until


def _report(args) -> int:
    from datetime import timedelta

    from .adapters.audit_tables import TableAuditSink
    from .report import build_report, render_html, render_text
    from .settings import Settings
    from .simulate import UsageError, writable, write_result
    if args.since and args.days is not None:      # two starts: neither may silently win
        raise UsageError("give --days or --since, not both")
    since, until = _report_period(args)
    page = writable(Path(args.html), "--html") if args.html else None     # before reading a year of audit
    settings = Settings.from_env()
    sink = TableAuditSink(_tables(settings), shards=settings.audit_shards)
    # the UTC days the period touches (``until`` is exclusive: a period ending at midnight stops the day before)
    first, last = since.date(), (until - timedelta(microseconds=1)).date()

    def rows():                 # one day held at a time, in order: the report folds them as they come
        day = first
        while day <= last:
            yield from sink.read_day(day)
            day += timedelta(days=1)

    report = build_report(rows(), since=since, until=until, in_order=True)
    if page is not None:
        write_result(page, render_html(report), "--html")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_text(report), end="")
    return 0


def _escalation(args) -> int:
    from .adapters.escalations import TableEscalationStore
    from .errors import InvalidArmId
    from .model.arm_id import parse_arm_id
    from .settings import Settings
    from .simulate import UsageError
    from .policy.grant_keys import GRANT_KEY_PREFIX, parse_grant_key
    if args.resource_id.strip().lower().startswith(GRANT_KEY_PREFIX):      # a re-granted role (role guardrail)
        try:
            rid, field = parse_grant_key(args.resource_id), "grant"
        except ValueError as exc:
            raise UsageError(f"not a grant key: {exc}") from None
    else:
        try:
            rid, field = str(parse_arm_id(args.resource_id)), "resource_id"
        except InvalidArmId as exc:
            raise UsageError(f"not a resource id: {exc}") from None
    tables = _existing(_tables(Settings.from_env()), "escalations_name", "escalation")
    store = TableEscalationStore(tables)
    if args.action == "status":
        state = store.status(rid)
        print(json.dumps({field: rid, "escalated": bool(state and state["escalated"]), "state": state}))
        return 0
    print(json.dumps({field: rid, "reset": True, "had_state": store.reset(rid)}))
    return 0


def _breaker_scope(text: str) -> str:
    """The breaker's scope as the guardrails key it: a subscription id; ``keyvault:<vault>`` (a
    secrets policy's rotations, per vault); ``tenant`` -> "" (role removals above a subscription)."""
    from .errors import InvalidArmId
    from .model.arm_id import parse_scope
    from .model.keyvault_events import _VAULT as VAULT_NAME
    from .simulate import UsageError
    value = text.strip()
    if value.lower() == "tenant":
        return ""
    if value.lower().startswith("keyvault:"):
        vault = value.split(":", 1)[1]
        if not VAULT_NAME.fullmatch(vault):
            raise UsageError(f"{vault[:60]!r} is not a vault name")
        return f"keyvault:{vault.lower()}"
    try:
        return parse_scope(f"/subscriptions/{value}").subscription_id
    except InvalidArmId:
        raise UsageError(f"{value[:60]!r} is not a subscription id, keyvault:<vault> or tenant") from None


def _breaker(args) -> int:
    from .adapters.remediation_tables import TableBreakerStore
    from .settings import Settings
    sub = _breaker_scope(args.subscription)
    tables = _existing(_tables(Settings.from_env()), "breakers_name", "breaker")
    store = TableBreakerStore(tables)
    if args.action == "status":
        print(json.dumps({"policy": args.policy, "subscription": sub, "open": store.is_open(args.policy, sub)}))
        return 0
    had = store.reset(args.policy, sub)
    print(json.dumps({"policy": args.policy, "subscription": sub, "reset": True, "had_state": had}))
    return 0
