"""Bursty inference load: Ray Serve defaults vs Serve + @serve.batch vs an ainative Endpoint.

The model emulates an accelerator: a batch of n requests costs ``a + b * n`` ms of device time,
one batch at a time per replica (a sleep, so replicas really scale on this 2-core machine); one
more run uses a real small torch MLP on CPU. The same open-loop load (idle -> 10x burst -> idle,
bounded, 127.0.0.1) is replayed against

  (a) Ray Serve, ``autoscaling_config`` with the same min/max and every other field default, no
      batching;
  (b) the same with ``@serve.batch`` (same max batch size and wait as ours);
  (c) ``ainative.Endpoint`` with BatchingConfig and AutoscalingConfig (latency SLO).

All three replicas ask for 0.5 CPU (so 4 fit, as in PEER-BASELINES.md). Systems alternate within
each repetition; medians over repetitions. Targets: p99 <= 0.5x (a) and <= 0.8x (b) at <= 1.0x
(a)'s replica-seconds, zero failed requests.

    flock /tmp/ainative-bench.lock .venv/bin/python benchmarks/serve_autoscaling.py [--quick]
"""

from __future__ import annotations

import abc

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import ray
from ray import serve

import ainative as ai

MIN_REPLICAS, MAX_REPLICAS, REPLICA_CPUS = 1, 4, 0.5
MAX_BATCH, MAX_WAIT_MS = 16, 5.0
CLIENT_TIMEOUT_S = 15.0


# ---- models ---------------------------------------------------------------------------------
def emulated(a_ms: float, b_ms: float) -> Any:
    """Our factory: a sync batched model; our replica runs it on one 'device' thread."""
    def factory() -> Any:
        def model(batch: list[Any]) -> list[Any]:
            time.sleep((a_ms + b_ms * len(batch)) / 1000.0)
            return [x * 2 for x in batch]
        return model
    return factory


def torch_mlp() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, 8))


class _PeerModel:
    """The same work for the Serve peers: emulated device (serialised by a lock) or torch MLP."""

    def __init__(self, kind: str, a_ms: float, b_ms: float) -> None:
        self.kind, self.a_ms, self.b_ms = kind, a_ms, b_ms
        self.lock = asyncio.Lock()
        self.net = torch_mlp() if kind == "torch" else None

    async def run(self, xs: list[Any]) -> list[Any]:
        async with self.lock:  # one batch at a time, like one device
            if self.net is None:
                await asyncio.sleep((self.a_ms + self.b_ms * len(xs)) / 1000.0)
                return [x * 2 for x in xs]
            import torch

            with torch.inference_mode():
                return self.net(torch.as_tensor(xs, dtype=torch.float32)).tolist()  # type: ignore[no-any-return]


@serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS},
                  autoscaling_config={"min_replicas": MIN_REPLICAS, "max_replicas": MAX_REPLICAS})
class PeerPlain:
    def __init__(self, kind: str, a_ms: float, b_ms: float) -> None:
        self.model = _PeerModel(kind, a_ms, b_ms)

    async def __call__(self, request: Any) -> Any:
        return {"result": (await self.model.run([await request.json()]))[0]}


@serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS},
                  autoscaling_config={"min_replicas": MIN_REPLICAS, "max_replicas": MAX_REPLICAS})
class PeerBatched:
    def __init__(self, kind: str, a_ms: float, b_ms: float) -> None:
        self.model = _PeerModel(kind, a_ms, b_ms)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=MAX_WAIT_MS / 1000.0)
    async def infer(self, xs: list[Any]) -> list[Any]:
        return await self.model.run(xs)

    async def __call__(self, request: Any) -> Any:
        return {"result": await self.infer(await request.json())}


# ---- systems --------------------------------------------------------------------------------
class System(abc.ABC):
    def __init__(self, label: str, app: str) -> None:
        self.label, self.app = label, app

    @abc.abstractmethod
    def deploy(self, kind: str, a_ms: float, b_ms: float, port: int) -> str:
        """Deploy this system's app for model ``kind``; return its URL on 127.0.0.1."""

    def delete(self) -> None:
        serve.delete(self.app, _blocking=True)


class Peer(System):
    def __init__(self, label: str, app: str, cls: Any) -> None:
        super().__init__(label, app)
        self.cls = cls

    def deploy(self, kind: str, a_ms: float, b_ms: float, port: int) -> str:
        serve.run(self.cls.bind(kind, a_ms, b_ms), name=self.app, route_prefix=f"/{self.app}")
        return f"http://127.0.0.1:{port}/{self.app}"


class Ours(System):
    handle: Any = None

    def deploy(self, kind: str, a_ms: float, b_ms: float, port: int) -> str:
        model = torch_mlp if kind == "torch" else emulated(a_ms, b_ms)
        self.handle = ai.Endpoint(
            model, name=self.app, route=f"/{self.app}",
            resources=ai.Resources(cpus=REPLICA_CPUS),
            batching=ai.BatchingConfig(max_batch_size=MAX_BATCH, max_wait_ms=MAX_WAIT_MS),
            autoscaling=ai.AutoscalingConfig(min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS,
                                             target_concurrency=16, latency_slo_ms=200,
                                             upscale_delay_s=0.5, downscale_delay_s=5),
        ).deploy()
        return str(self.handle.url)

    def delete(self) -> None:
        self.handle.delete()


SYSTEMS = [Peer("(a) serve default", "peer-plain", PeerPlain),
           Peer("(b) serve + @serve.batch", "peer-batch", PeerBatched),
           Ours("(c) ainative", "ainative-ep")]


# ---- load -----------------------------------------------------------------------------------
def schedule(idle_rps: float, phases_s: tuple[float, float, float]) -> list[float]:
    """Send times (s): idle rate, 10x burst, idle rate; evenly spaced, identical for every system."""
    times, t0 = [], 0.0
    for rate, length in zip((idle_rps, 10 * idle_rps, idle_rps), phases_s):
        n = int(rate * length)
        times += [t0 + i / rate for i in range(n)]
        t0 += length
    return times


async def _replay(url: str, times: list[float], payload: Any) -> list[tuple[float, int, float]]:
    """Open loop: each request leaves at its time whatever happened to earlier ones."""
    out: list[tuple[float, int, float]] = []
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
        start = time.monotonic()

        async def one(at: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            t = time.monotonic()
            try:
                async with session.post(url, json=payload) as resp:
                    await resp.read()
                    code = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                code = -1
            out.append((at, code, (time.monotonic() - t) * 1000.0))

        await asyncio.gather(*(one(at) for at in times))
    return out


class ReplicaMeter:
    """Integrates the replica count (running + starting) of the model deployment over time."""

    def __init__(self, app: str, window_s: float) -> None:
        self.app, self.seconds, self.peak = app, 0.0, 0
        self.window_s = window_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        status = serve.status().applications.get(self.app)
        if status is None:
            return 0
        total = 0
        for name, dep in status.deployments.items():
            if name.endswith("-ingress"):
                continue  # ours: the 0-CPU ingress reserves nothing (reported separately)
            total += sum(n for state, n in dep.replica_states.items()
                         if str(getattr(state, "value", state)) in ("RUNNING", "STARTING"))
        return total

    def _run(self) -> None:
        # Only the schedule's window counts, so a system whose requests hang until the client
        # times out is not charged (or credited) for the drain.
        last = start = time.monotonic()
        while not self._stop.is_set():
            n = self._count()
            now = min(time.monotonic(), start + self.window_s)
            self.seconds += n * (now - last)
            self.peak = max(self.peak, n)
            last = now
            if now >= start + self.window_s:
                return
            self._stop.wait(0.25)

    def __enter__(self) -> ReplicaMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


def run_one(system: System, kind: str, a_ms: float, b_ms: float, port: int, times: list[float],
            payload: Any) -> dict[str, Any]:
    url = system.deploy(kind, a_ms, b_ms, port)
    try:
        asyncio.run(_replay(url, [i * 0.05 for i in range(10)], payload))  # warm the path
        with ReplicaMeter(system.app, sum(PHASES)) as meter:
            t0 = time.monotonic()
            results = asyncio.run(_replay(url, times, payload))
            wall = time.monotonic() - t0
    finally:
        system.delete()
    ok = [ms for _, code, ms in results if code == 200]
    burst = [ms for at, code, ms in results if code == 200 and times_in_burst(at)]
    return {"system": system.label, "kind": kind, "requests": len(results), "ok": len(ok),
            "failed": len(results) - len(ok), "p50_ms": pct(ok, 50), "p95_ms": pct(ok, 95),
            "p99_ms": pct(ok, 99), "burst_p99_ms": pct(burst, 99),
            "throughput_rps": len(ok) / wall, "wall_s": wall,
            "replica_seconds": meter.seconds, "peak_replicas": meter.peak}


BURST: tuple[float, float] = (0.0, 0.0)
PHASES: tuple[float, float, float] = (0.0, 0.0, 0.0)


def times_in_burst(at: float) -> bool:
    return BURST[0] <= at < BURST[1]


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.median(values) if values else None


def summarize(rows: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        mine = [r for r in rows if r["system"] == system.label and r["kind"] == kind]
        if mine:
            out[system.label] = {k: median_of(mine, k) for k in (
                "p50_ms", "p95_ms", "p99_ms", "burst_p99_ms", "throughput_rps", "failed",
                "replica_seconds", "peak_replicas")}
            out[system.label]["reps"] = len(mine)
    return out


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    a, b, c = (summary.get(s.label) for s in SYSTEMS)
    if not (a and b and c):
        return {}

    def div(x: float | None, y: float | None) -> float | None:
        return None if x is None or not y else x / y

    return {"p99_vs_a": div(c["p99_ms"], a["p99_ms"]), "p99_vs_b": div(c["p99_ms"], b["p99_ms"]),
            "replica_seconds_vs_a": div(c["replica_seconds"], a["replica_seconds"])}


def main() -> None:
    global BURST, PHASES
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases (a 3-minute run)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--a-ms", type=float, default=50.0, help="fixed device ms per batch")
    parser.add_argument("--b-ms", type=float, default=1.0, help="device ms per request in a batch")
    parser.add_argument("--idle-rps", type=float, default=10.0, help="idle rate; the burst is 10x")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch CPU model run")
    args = parser.parse_args()
    phases = (4.0, 8.0, 4.0) if args.quick else (10.0, 20.0, 10.0)
    BURST = (phases[0], phases[0] + phases[1])
    PHASES = phases
    times = schedule(args.idle_rps, phases)
    load_before = os.getloadavg()[0]
    ai.connect(num_cpus=4, include_dashboard=False)
    port = ai_serve_port()
    rows: list[dict[str, Any]] = []
    plan = [("emulated", r) for r in range(args.reps)]
    if not args.no_torch:
        plan += [("torch", r) for r in range(1 if args.quick else 2)]
    for kind, rep in plan:
        order = SYSTEMS[rep % 3:] + SYSTEMS[: rep % 3]  # alternate who goes first
        payload: Any = [0.1] * 32 if kind == "torch" else 1
        for system in order:
            row = run_one(system, kind, args.a_ms, args.b_ms, port, times, payload)
            row["rep"] = rep
            rows.append(row)
            print(json.dumps(row), flush=True)
    load_after = os.getloadavg()[0]
    serve.shutdown()
    report(args, rows, times, phases, load_before, load_after)


def ai_serve_port() -> int:
    from ainative.serve import _runtime

    return _runtime.ensure_serve()


def report(args: argparse.Namespace, rows: list[dict[str, Any]], times: list[float],
           phases: tuple[float, float, float], load_before: float, load_after: float) -> None:
    import torch

    result: dict[str, Any] = {
        "benchmark": "serve_autoscaling", "quick": args.quick, "reps": args.reps,
        "model": {"a_ms": args.a_ms, "b_ms": args.b_ms, "max_batch": MAX_BATCH,
                  "max_wait_ms": MAX_WAIT_MS, "torch": "MLP 32-256-256-8"},
        "load": {"idle_rps": args.idle_rps, "burst_rps": 10 * args.idle_rps, "phases_s": phases,
                 "requests": len(times), "client_timeout_s": CLIENT_TIMEOUT_S},
        "machine": {"cores": os.cpu_count(), "memory_bytes": os.sysconf("SC_PAGE_SIZE")
                    * os.sysconf("SC_PHYS_PAGES"), "gpu": "none", "platform": platform.platform(),
                    "loadavg_1min_before": load_before, "loadavg_1min_after": load_after},
        "versions": {"python": sys.version.split()[0], "ray": ray.__version__,
                     "torch": torch.__version__, "ainative": ai.__version__},
        "runs": rows, "summary": {}, "ratios": {}}
    for kind in ("emulated", "torch"):
        summary = summarize(rows, kind)
        if summary:
            result["summary"][kind] = summary
            result["ratios"][kind] = ratios(summary)
            print(f"\n== {kind} model: medians over reps ==")
            print(f"{'system':28} {'p50':>8} {'p95':>8} {'p99':>8} {'rps':>7} {'failed':>7} "
                  f"{'rep-s':>7} {'peak':>5}")
            for label, s in summary.items():
                print(f"{label:28} {_f(s['p50_ms'])} {_f(s['p95_ms'])} {_f(s['p99_ms'])} "
                      f"{s['throughput_rps']:7.1f} {s['failed']:7.0f} {s['replica_seconds']:7.1f} "
                      f"{s['peak_replicas']:5.0f}")
            print("ratios (c vs a/b):", json.dumps(result["ratios"][kind]))
    print(f"loadavg 1-min before {load_before:.1f}, after {load_after:.1f}")
    out = Path(__file__).parent / "results" / (
        "serve_autoscaling_quick.json" if args.quick else "serve_autoscaling.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print("wrote", out)


def _f(x: float | None) -> str:
    return f"{x:8.1f}" if x is not None else "       -"


if __name__ == "__main__":
    main()
