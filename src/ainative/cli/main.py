"""Entry point of the `ainative` CLI. Each command lives in its own module with a ``register``
function; importing those modules is cheap (public functions are imported inside handlers)."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

from ainative import errors

# Modules that register commands, in --help order.
COMMAND_MODULES: tuple[str, ...] = (
    "ainative.cli.core",
    "ainative.cli.queue",
    "ainative.cli.simulate",
    "ainative.cli.golden",
    "ainative.cli.cost",
    "ainative.cli.kuberay",
    "ainative.cli.train",
    "ainative.cli.serve",
    "ainative.cli.dashboard",
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ainative", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ainative: GPU-first training, data and serving on Ray, beside Kubernetes.",
        epilog="examples:\n  ainative status\n  ainative status --address 127.0.0.1:6379 --json\n"
               "  ainative demo")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Every long-running command (demo --keep, dashboard, serve) says "until Ctrl-C": make that
    # true even when the CLI was started with SIGINT ignored, as a non-interactive shell starts
    # its background jobs (`make demo ... &` in a script).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except errors.ConfigError as exc:
        print(f"ainative: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except errors.AinativeError as exc:
        print(f"ainative: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
