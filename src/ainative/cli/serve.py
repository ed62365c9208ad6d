"""`ainative serve --model module:factory --route /path`: deploy an endpoint and print its URL."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ainative import errors


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="deploy a model factory as an HTTP JSON endpoint and print its URL",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ainative serve --model examples.serve_classifier:classifier --route /iris\n"
               "  ainative serve --model mypkg.models:load --name clf --batch 32 --wait-ms 5 \\\n"
               "      --min-replicas 1 --max-replicas 4 --slo-ms 100 --hold 3600\n"
               "  ainative serve --model mypkg.models:small --fast-path --slo-ms 50 --shed-over-slo")
    p.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                   help="import path of the model factory (called once per replica)")
    p.add_argument("--name", default=None, help="endpoint name (default: the factory's name)")
    p.add_argument("--route", default=None, help="URL path (default: /NAME)")
    p.add_argument("--address", default=None, help="Ray address; default RAY_ADDRESS or local")
    p.add_argument("--cpus", type=float, default=None, help="CPUs per replica (default: Resources')")
    p.add_argument("--gpu", default=None, metavar="TYPE[:COUNT]",
                   help="accelerator per replica, e.g. L4:0.5")
    p.add_argument("--batch", type=int, default=None, help="max batch size (enables batching)")
    p.add_argument("--wait-ms", type=float, default=None,
                   help="max batch wait in ms (default: BatchingConfig's)")
    # Unset flags are not passed on: the defaults live in AutoscalingConfig, Resources and
    # BatchingConfig only.
    p.add_argument("--min-replicas", type=int, default=None)
    p.add_argument("--max-replicas", type=int, default=None)
    p.add_argument("--target-concurrency", type=float, default=None)
    p.add_argument("--slo-ms", type=float, default=None, help="latency SLO in ms (p99)")
    p.add_argument("--shed-over-slo", action="store_true", default=None,
                   help="answer 503 + Retry-After at once when a request cannot meet --slo-ms")
    p.add_argument("--fast-path", action="store_true", default=None,
                   help="one hop: Serve's proxy calls the model replica, which runs the checks "
                        "(no ingress deployment; see docs/serving.md for what only the ingress gives)")
    p.add_argument("--hold", type=float, default=None, metavar="SECONDS",
                   help="keep serving this long, then delete the endpoint; default: return at "
                        "once on a joined cluster, serve until Ctrl-C on an embedded local Ray "
                        "(which ends with this process)")
    p.set_defaults(func=cmd_serve)


def load_factory(path: str) -> Any:
    from ainative import spec

    return spec.import_callable(path, field="model")


def build_endpoint(args: argparse.Namespace) -> Any:
    import ainative as ai

    factory = load_factory(args.model)
    accelerator = None
    if args.gpu:
        kind, _, count = args.gpu.partition(":")
        try:
            amount = float(count) if count else 1.0
        except ValueError as err:
            raise errors.ConfigError(f"--gpu count must be a number, got {count!r}",
                                     field="gpu", value=args.gpu) from err
        accelerator = ai.Accelerator(kind, count=amount)
    return ai.Endpoint(
        factory, name=args.name or getattr(factory, "__name__", "model").replace("_", "-"),
        route=args.route, resources=ai.Resources(**_given(cpus=args.cpus, accelerator=accelerator)),
        batching=ai.BatchingConfig(**_given(max_batch_size=args.batch, max_wait_ms=args.wait_ms))
        if args.batch is not None else None,
        autoscaling=ai.AutoscalingConfig(**_given(
            min_replicas=args.min_replicas, max_replicas=args.max_replicas,
            target_concurrency=args.target_concurrency, latency_slo_ms=args.slo_ms,
            shed_over_slo=args.shed_over_slo)),
        **_given(fast_path=args.fast_path))


def _given(**kwargs: Any) -> dict[str, Any]:
    """The flags the user set (None: not given; the constructor's default applies)."""
    return {key: value for key, value in kwargs.items() if value is not None}


def cmd_serve(args: argparse.Namespace) -> int:
    import ainative as ai

    endpoint = build_endpoint(args)  # all validation before connecting
    cluster = ai.connect() if args.address is None else ai.connect(args.address)
    handle = endpoint.deploy()
    print(handle.url, flush=True)
    hold = args.hold if args.hold is not None else (float("inf") if cluster.owned else 0.0)
    if hold > 0:
        deadline = time.monotonic() + hold
        try:
            while time.monotonic() < deadline:
                time.sleep(min(1.0, deadline - time.monotonic()))
        finally:
            handle.delete()
    return 0
