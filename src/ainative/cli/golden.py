"""`ainative apply SPEC`, `ainative logs JOB`, `ainative schema`: the golden path over specs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXAMPLES_APPLY = """examples:
  ainative apply examples/specs/train.yaml                 # embedded local Ray
  ainative apply job.yaml --address 127.0.0.1:6379         # an existing cluster
  ainative apply job.yaml --kuberay cluster.yaml           # as a RayJob on KubeRay
  ainative apply job.yaml --dry-run                        # validate only"""


def register(sub: Any) -> None:
    p = sub.add_parser("apply", help="validate and run a multi-document YAML spec, in order",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES_APPLY)
    p.add_argument("spec", help="YAML file with one or more documents (kind: TrainJob, Endpoint, "
                                "Dataset, Queue, Budget, KubeRayCluster)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--address", default=None, help="Ray address to run on")
    target.add_argument("--kuberay", default=None, metavar="CLUSTER_YAML",
                        help="submit TrainJobs as RayJobs to the KubeRay cluster in this file")
    p.add_argument("--dry-run", action="store_true", help="validate the spec, run nothing")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("logs", help="print (and follow) a job's structured event log",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ainative logs my-run\n  ainative logs my-run --follow "
                              "--timeout 60\n  ainative logs my-run --json")
    p.add_argument("job", help="job name")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--timeout", type=float, default=None, help="stop following after this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("schema", help="print the JSON Schema of spec documents")
    p.set_defaults(func=cmd_schema)


def cmd_apply(args: argparse.Namespace) -> int:
    from ainative import apply as apply_mod

    results = apply_mod.apply_file(args.spec, address=args.address, kuberay=args.kuberay,
                                   dry_run=args.dry_run, out=print)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0 if all(r.get("ok", True) for r in results) else 1


def cmd_logs(args: argparse.Namespace) -> int:
    from ainative import events

    skipped = 0
    if args.follow:
        records = events.follow(args.job, stop_after_s=args.timeout)
    else:
        found, skipped = events.read_counted(args.job)
        records = iter(found)
    seen = False
    for record in records:
        seen = True
        print(json.dumps(record) if args.json else events.format_event(record), flush=True)
    if skipped:
        print(f"ainative: skipped {skipped} unparsable line(s) in {events.log_path(args.job)}",
              file=sys.stderr)
    if not seen and not args.follow:
        print(f"ainative: no events for job {args.job!r} in {events.events_dir()}", file=sys.stderr)
        return 1
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from ainative import spec

    print(json.dumps(spec.json_schema(), indent=2, sort_keys=True))
    return 0
