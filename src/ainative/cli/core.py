"""`ainative version`, `ainative status`, `ainative demo`."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("version", help="print the ainative and Ray versions")
    p.set_defaults(func=cmd_version)

    p = sub.add_parser("status", help="the cluster's nodes, GPUs by type, CPUs and memory",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ainative status                 # embedded local Ray\n"
                              "  ainative status --address auto  # the running cluster\n"
                              "  ainative status --json")
    p.add_argument("--address", default=None,
                   help="Ray address ('auto', 'host:6379', 'ray://host:10001'); default RAY_ADDRESS "
                        "or an embedded local Ray")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("demo", help="run the end-to-end demo on an embedded local Ray")
    p.add_argument("--small", action="store_true",
                   help="a trimmed run (fewer rows, steps and requests), every step kept")
    p.add_argument("--verbose", action="store_true",
                   help="also print Ray's INFO lines and Ray Serve's per-request access logs")
    p.add_argument("--keep", action="store_true",
                   help="keep Ray, the scheduler and the dashboard up after the demo, until Ctrl-C")
    p.set_defaults(func=cmd_demo)


def cmd_version(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    import ainative

    try:
        ray_version = md.version("ray")
    except md.PackageNotFoundError:
        ray_version = "not installed"
    print(f"ainative {ainative.__version__} (ray {ray_version})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import ainative

    cluster = ainative.connect(args.address, include_dashboard=False) if args.address is None \
        else ainative.connect(args.address)
    try:
        if args.json:  # the dashboard's /api/v1/cluster, so page and terminal agree
            from ainative.dashboard import api

            print(json.dumps(api.cluster(), indent=2))
        else:
            print(cluster.resources().table())
    finally:
        cluster.shutdown()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import os

    from ainative import demo

    small = args.small or os.environ.get("AINATIVE_DEMO_SCALE") == "small"
    keep = bool(getattr(args, "keep", False))
    summary = demo.run(rows=8_000, steps=40, burst_scale=0.75, verbose=args.verbose, keep=keep) if small \
        else demo.run(verbose=args.verbose, keep=keep)
    return 0 if summary.get("ok") else 1
