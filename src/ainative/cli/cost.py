"""`ainative cost report --by team|queue|job|accelerator --since ... [--until ...] [--csv|--json]`."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    cost = sub.add_parser("cost", help="spend from the cost ledger")
    cost_sub = cost.add_subparsers(dest="cost_command", metavar="SUBCOMMAND")
    p = cost_sub.add_parser(
        "report", help="spend grouped by team, queue, job or accelerator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ainative cost report --by team --since 2026-11-01\n"
               "  ainative cost report --by job --since 7d --csv > spend.csv\n"
               "  ainative cost report --by accelerator --ledger /data/ledger.sqlite --json")
    p.add_argument("--by", default="team", choices=("team", "queue", "job", "accelerator"),
                   help="what to group by (default: team)")
    p.add_argument("--since", default=None, help="start: ISO date/time (UTC), '7d', '12h' or epoch s")
    p.add_argument("--until", default=None, help="end, same forms as --since (default: now)")
    p.add_argument("--ledger", default=None,
                   help="ledger path (default: $AINATIVE_LEDGER or ~/.ainative/ledger.sqlite)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    fmt.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_report)
    cost.set_defaults(func=lambda args: (cost.print_help(), 2)[1])


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from ainative import cost
    from ainative.dashboard import api

    if args.json:  # the dashboard's /api/v1/cost/report, so page and terminal agree
        print(json.dumps(api.cost_report(args.by, args.since, args.until, args.ledger), indent=2))
        return 0
    result = cost.report(by=args.by, since=args.since, until=args.until, path=args.ledger)
    if args.csv:
        print(result.to_csv(), end="")
    else:
        print(result.table())
    return 0
