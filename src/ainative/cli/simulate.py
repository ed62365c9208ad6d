"""`ainative simulate TRACE --cluster C --policy P [--json]` and `--generate`."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("simulate", help="replay a job trace on a cluster file under a scheduling policy",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  ainative simulate examples/sim/small_trace.csv --cluster "
                              "examples/sim/small_cluster.yaml --policy ainative\n"
                              "  ainative simulate trace.csv --cluster c.yaml --policy all --json\n"
                              "  ainative simulate trace.csv --generate 10000 --gpus 4096  # write a trace")
    p.add_argument("trace", help="trace CSV (job_id, submit_time_s, duration_s, num_gpus, gpu_type, team, "
                                 "priority, preemptible); with --generate: the file to write")
    p.add_argument("--cluster", help="cluster YAML (node_groups, optional queues)")
    p.add_argument("--policy", default="ainative", choices=("ainative", "fifo", "kueue", "all"))
    p.add_argument("--placement", choices=("packed", "best-fit", "worst-fit", "fgd"),
                   help="node/GPU scorer for every policy (default: PolicyConfig's)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--generate", type=int, metavar="N", help="write a synthetic trace of N jobs instead")
    p.add_argument("--gpus", type=float, default=4096,
                   help="with --generate: cluster GPUs the load is sized for")
    p.add_argument("--teams", type=int, default=6, help="with --generate: number of teams")
    p.add_argument("--load", type=float, default=1.0, help="with --generate: offered load (1.0 = full)")
    p.add_argument("--seed", type=int, default=0, help="with --generate: random seed")
    p.add_argument("--shape", choices=("synthetic", "production"), default="synthetic",
                   help="with --generate: the original synthetic generator, or one shaped like a "
                        "production GPU-sharing cluster (fractional GPUs, bursts, many GPU models)")
    p.add_argument("--cluster-out", metavar="YAML",
                   help="with --generate --shape production: also write a matching cluster file")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from ainative import errors
    from ainative.sim import simulate, trace

    if args.generate is not None:
        gen = trace.generate_production if args.shape == "production" else trace.generate
        rows = gen(args.generate, total_gpus=args.gpus, teams=args.teams, seed=args.seed, load=args.load)
        trace.write(rows, args.trace)
        print(f"wrote {len(rows)} jobs to {args.trace}")
        if args.cluster_out:
            import yaml

            with open(args.cluster_out, "w") as fh:
                yaml.safe_dump(trace.production_cluster(int(args.gpus)), fh, sort_keys=False)
            print(f"wrote a {args.gpus:g}-GPU cluster file to {args.cluster_out}")
        return 0
    if not args.cluster:
        raise errors.ConfigError("--cluster is required (a YAML file with node_groups)", field="cluster")
    policies = ("ainative", "fifo", "kueue") if args.policy == "all" else (args.policy,)
    from ainative.policy.engine import PolicyConfig

    cfg = PolicyConfig(placement=args.placement) if args.placement else None
    reports = [simulate(args.trace, args.cluster, p, config=cfg) for p in policies]
    if args.json:
        out = reports[0].to_dict() if len(reports) == 1 else {r.policy: r.to_dict() for r in reports}
        print(json.dumps(out, indent=2))
    else:
        print("\n\n".join(r.table() for r in reports))
    return 0
