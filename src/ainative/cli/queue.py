"""`ainative queue ls` and `ainative queue why JOB`: the live scheduler's queues and reasons."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("queue", help="scheduler queues: usage vs quota, pending jobs and why they wait",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ainative queue ls --address auto\n"
                              "  ainative queue why train-llm-3f2a1c --address auto")
    qsub = p.add_subparsers(dest="queue_command", metavar="ACTION")
    ls = qsub.add_parser("ls", help="list queues with quota, usage, share and pending jobs")
    why = qsub.add_parser("why", help="why a job is pending (or that it runs)")
    why.add_argument("job", help="job id as shown by `ainative queue ls`")
    for parser in (ls, why):
        parser.add_argument("--address", default=None,
                            help="Ray address of the cluster running the scheduler (default RAY_ADDRESS)")
        parser.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_ls)
    why.set_defaults(func=cmd_why)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def table(status: dict[str, Any]) -> str:
    lines = [f"policy {status['policy']}; capacity {status['capacity']}; free {status['free']}; "
             f"preemptions {status['preemptions']}"]
    lines.append(f"{'QUEUE':<14} {'COHORT':<10} {'WEIGHT':>6} {'QUOTA':<22} {'USED':<22} {'SHARE':>6} "
                 f"{'RUN':>4} {'PEND':>5}")
    for q in status["queues"]:
        quota = ",".join(f"{k}:{v:g}" for k, v in q["quota"].items()) or "-"
        used = ",".join(f"{k}:{v:g}" for k, v in q["used"].items() if v) or "-"
        lines.append(f"{q['name']:<14} {q['cohort'] or '-':<10} {q['weight']:>6g} {quota:<22} {used:<22} "
                     f"{q['share']:>6.3f} {len(q['running']):>4} {len(q['pending']):>5}")
    for q in status["queues"]:
        for p in q["pending"]:
            lines.append(f"  {p['why']}")
    lines += [f"warning: {w}" for w in status.get("warnings", [])]
    return "\n".join(lines)


def _connect(args: argparse.Namespace) -> Any:
    import ainative

    return ainative.connect(args.address or "auto")


def cmd_ls(args: argparse.Namespace) -> int:
    from ainative import scheduling
    from ainative.dashboard import api

    cluster = _connect(args)
    try:
        if args.json:  # the dashboard's /api/v1/queues, so page and terminal agree
            body = api.queues()
            print(json.dumps(body, indent=2))
            return 0 if body["available"] else 1
        else:
            print(table(scheduling.status()))
    finally:
        cluster.shutdown()
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    from ainative import scheduling

    cluster = _connect(args)
    try:
        why = scheduling.why(args.job)
        print(json.dumps({"job": args.job, "why": why}) if args.json else why)
    finally:
        cluster.shutdown()
    return 0
