"""``python -m guardrails sweep``: the reconciling sweep (``guardrails.sweep``) or, with
``--expiry``, the exemption-expiry re-enforcement (``guardrails.expiry``), run once from the
command line; the run's summary is printed as JSON (exit 0; 1 when the run had errors).

``--dry-run`` holds for both: decided and audited (``dry_run`` verdicts), nothing changed in
Azure, no timer state saved. ``--subscription`` and ``--management-group`` choose what the sweep
covers; the expiry run re-enforces every expired exemption's own scope, so with ``--expiry`` they
are a usage error (exit 2) rather than silently ignored.
"""

from __future__ import annotations

import json

from .errors import InvalidArmId
from .sweep_plan import management_group_scope, subscription_ids


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="reconciling sweep: list covered resources, fix drift, write a summary")
    p.add_argument("--subscription", action="append", default=[], metavar="ID",
                   help="subscription to sweep (repeatable; default GUARDRAILS_SWEEP_SUBSCRIPTIONS, else all visible)")
    p.add_argument("--management-group", action="append", default=None, metavar="MG",
                   help="management group whose role assignments, and those of every group below it, to check "
                        "(repeatable; default GUARDRAILS_SWEEP_MANAGEMENT_GROUPS)")
    p.add_argument("--dry-run", action="store_true", help="decide and audit, change nothing")
    p.add_argument("--expiry", action="store_true",
                   help="run the exemption-expiry re-enforcement instead (not with --subscription or "
                        "--management-group: it re-enforces each expired exemption's own scope)")


def cli_main(args) -> int:
    from .bootstrap import build_sweeper
    from .settings import Settings
    from .simulate import UsageError

    if args.expiry and (args.subscription or args.management_group):
        # an exemption's scope decides what is re-enforced: narrowing it would skip some and still
        # move the window past them, so they would never be re-enforced
        raise UsageError("--subscription and --management-group do not apply to --expiry "
                         "(it re-enforces each expired exemption's own scope)")
    try:
        sweeper = build_sweeper(Settings.from_env())
        if args.expiry:
            from .expiry import ExpiryReEnforcer
            summary = ExpiryReEnforcer(sweeper).run(dry_run=args.dry_run)
        else:
            for mg in args.management_group or ():
                management_group_scope(mg)
            summary = sweeper.run(subscriptions=subscription_ids(args.subscription),
                                  management_groups=args.management_group, dry_run=args.dry_run)
    except InvalidArmId as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(summary.to_dict()))
    return 1 if summary.failed else 0


__all__ = ["add_parser", "cli_main"]
