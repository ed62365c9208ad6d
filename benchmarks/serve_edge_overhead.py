"""What the endpoint's own code costs a request, in one process: our edge and device thread vs a
Serve-style handler, no Ray and no network (issue 15, the sub-millisecond torch model).

Both answer the same Starlette request (a 32-float JSON body) with the same trivial model:

  handler  what the Serve peer in serve_autoscaling.py runs: ``await request.json()``, the model
           called on the event loop, a JSON ``Response``
  ainative ``serve._edge.Edge.http`` (method, token, body streamed under the request deadline,
           JSON parse, arrival count, 504 deadline, JSON answer) in front of the replica's
           ``_Batcher`` (batching off: the model runs on the replica's one device thread)

Reported: the median wall time per request (sequential requests, so this is latency added per
request, not throughput) and the event-loop iterations per request, alternated, ``--reps`` times.

    .venv/bin/python benchmarks/serve_edge_overhead.py [--requests 5000 | --quick] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ainative.policy import batching as batch_policy
from ainative.serve import _edge, _replica

BODY = json.dumps([0.1] * 32).encode()
SPEC = {"name": "bench", "idempotent": True, "max_request_bytes": 65536, "request_timeout_s": 5.0,
        "auth_digest": None, "latency_slo_ms": None, "shed_over_slo": False}


def request() -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/bench", "query_string": b"",
             "headers": [(b"content-length", str(len(BODY)).encode())]}
    return Request(scope, receive)


def model(x: list[float]) -> list[float]:
    return [v * 2 for v in x]


async def handler(req: Request) -> Response:
    x = await req.json()
    return Response(json.dumps({"result": model(x)}).encode(), media_type="application/json")


def ours() -> Any:
    batcher = _replica._Batcher(lambda items: [("ok", model(items[0]))],
                                batch_policy.BatchingConfig(max_batch_size=1, max_wait_ms=0),
                                None, lambda: None)

    async def call(payload: Any, t_arrival: float, demand: float) -> Any:
        return await batcher.submit(payload)

    store = types.SimpleNamespace(report_edge=types.SimpleNamespace(remote=lambda *a: None))
    return _edge.Edge(SPEC, store, call, source="bench").http


async def measure(fn: Any, n: int) -> tuple[float, float]:
    """(median microseconds per request, event-loop iterations per request)."""
    loop = asyncio.get_running_loop()
    turns = 0
    run_once = loop._run_once  # type: ignore[attr-defined]

    def counted() -> None:
        nonlocal turns
        turns += 1
        run_once()
    loop._run_once = counted  # type: ignore[attr-defined]
    times = []
    try:
        for _ in range(n):
            req = request()
            t0 = time.perf_counter()
            answer = await fn(req)
            times.append((time.perf_counter() - t0) * 1e6)
            assert answer.status_code == 200, answer.body
    finally:
        loop._run_once = run_once  # type: ignore[attr-defined]
    return statistics.median(times), turns / n


async def main_async(n: int, reps: int) -> dict[str, Any]:
    edge = ours()
    rows = []
    for rep in range(reps):
        for label, fn in (("handler", handler), ("ainative", edge))[:: 1 if rep % 2 == 0 else -1]:
            us, turns = await measure(fn, n)
            rows.append({"rep": rep, "system": label, "median_us": us, "loop_turns": turns})
            print(json.dumps(rows[-1]), flush=True)
    return {label: {"median_us": statistics.median(r["median_us"] for r in rows
                                                   if r["system"] == label),
                    "loop_turns": statistics.median(r["loop_turns"] for r in rows
                                                    if r["system"] == label)}
            for label in ("handler", "ainative")} | {"runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="1,000 requests a rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="serve_edge_overhead.json")
    args = parser.parse_args()
    if args.quick:
        args.requests = min(args.requests, 1000)
    load_before = os.getloadavg()[0]
    result = asyncio.run(main_async(args.requests, args.reps))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True,
                      cwd=Path(__file__).parent).stdout.strip():
        commit += "+changes"
    result.update(requests=args.requests, reps=args.reps, commit=commit,
                  machine={"cores": os.cpu_count(), "platform": platform.platform(),
                           "loadavg_1min_before": load_before,
                           "loadavg_1min_after": os.getloadavg()[0]},
                  python=sys.version.split()[0])
    out = Path(__file__).parent / "results" / args.out
    out.write_text(json.dumps(result, indent=1))
    print(f"handler {result['handler']['median_us']:.1f} us, {result['handler']['loop_turns']:.1f}"
          f" loop turns; ainative {result['ainative']['median_us']:.1f} us, "
          f"{result['ainative']['loop_turns']:.1f} loop turns a request -> {out}")


if __name__ == "__main__":
    main()
