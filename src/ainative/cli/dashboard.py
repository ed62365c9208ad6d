"""`ainative dashboard [--port N] [--host H] [--address A]`: the web view of the control plane."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dashboard", help="serve the web dashboard (cluster, queues, jobs, endpoints, cost) on 127.0.0.1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ainative dashboard --address auto              # http://127.0.0.1:8266\n"
               "  ainative dashboard --port 9000\n"
               "  ainative dashboard --host 0.0.0.0 --address auto   # needs the Ray cluster's token\n"
               "JSON API: /api/v1/{cluster,queues,jobs,endpoints,cost}; see docs/dashboard.md")
    p.add_argument("--address", default=None,
                   help="Ray address of the cluster to show (default RAY_ADDRESS, else 'auto')")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8266)")
    p.add_argument("--host", default=None,
                   help="interface to bind (default 127.0.0.1); any other interface requires the Ray "
                        "cluster's token ($RAY_AUTH_TOKEN or ~/.ray/auth_token) from every client")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    import os

    import ainative
    from ainative.dashboard import server

    host = args.host or server.DEFAULT_HOST
    port = server.DEFAULT_PORT if args.port is None else args.port
    token = server.check_bind(host, server.cluster_token())   # refuse before connecting to anything
    cluster = None
    try:
        cluster = ainative.connect(args.address or os.environ.get("RAY_ADDRESS") or "auto")
    except ainative.AinativeError as exc:
        print(f"ainative dashboard: not connected to Ray ({exc}); pages show what to fix")
    print(f"ainative dashboard: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve(host=host, port=port, token=token)
    finally:
        if cluster is not None:
            cluster.shutdown()
    return 0
