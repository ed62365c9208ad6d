"""Bursty inference load: Ray Serve as its docs advise (default, tuned, + @serve.batch) vs
``ainative.Endpoint``, in one run (issue 15).

Scenarios (open-loop load from one client on 127.0.0.1, the same send times for every system):

  unbatchable  20 ms of serialised "device" time a request, batch size 1 for everyone: only the
               autoscaler decides. 5 -> 50 -> 5 req/s (a 10x burst).
  batchable    a batch of n costs 50 + 1*n ms on one device. 10 -> 100 -> 10 req/s.
  torch        a real sub-millisecond torch MLP on CPU, steady 50 req/s (no scaling needed).

Phases: idle / burst / idle = 20 / 60 / 30 s in the full run (a burst of 60 s, twice Serve's
default 30 s upscale delay, so that Serve's own autoscaler acts), 5 / 15 / 8 s with --quick.
Every replica asks for 0.5 CPU, min 1 / max 4 replicas. Systems (every setting stated):

  serve-default   autoscaling_config {min 1, max 4}, everything else Serve's default
                  (target_ongoing_requests 2, max_ongoing_requests 5, upscale_delay_s 30, ...)
  serve-tuned     as Serve's autoscaling guide advises for bursty traffic: upscale_delay_s 0.5,
                  downscale_delay_s 10, metrics_interval_s 0.5, look_back_period_s 2,
                  target_ongoing_requests 1, max_ongoing_requests 4 (unbatchable); with
                  @serve.batch(16, 5 ms), max_ongoing_requests 32 and target_ongoing_requests 16
                  (batchable)
  serve-batch     @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005) with
                  max_ongoing_requests 32 (>= max_batch_size, as Serve warns), default autoscaling
  ainative        Endpoint(resources 0.5 CPU, AutoscalingConfig(1, 4) defaults; batchable:
                  BatchingConfig(16, 5 ms), target_concurrency 16)
  ainative-slo    the same with latency_slo_ms 500 and shed_over_slo=True (503 + Retry-After)
  ainative-fast   the same as ainative with fast_path=True: Serve's proxy calls the model
                  replica directly, no ingress hop (by default in the torch scenario only;
                  ``--system ainative-fast`` in any)
  ainative-fast-min2  ainative-fast with min_replicas 2: not a configuration the scenario
                  allows (1 to 4 replicas), only asked for by name with ``--system``; it bounds
                  what capacity held before the burst (a warm replica) could give, at its cost

The Serve peers' batch handler calls the device *blocking* (time.sleep in the handler, as a torch
model on a GPU is called): with an awaited device Serve forms each next batch while the previous
one runs, so batches stay at what arrives within batch_wait_timeout_s and throughput collapses
(benchmarks/serve_batch_probe.py measures that). Reported per system: failed requests (not 200,
shed excluded), shed (503 "shed"), p50/p99 over requests sent during the burst (and the p99
over its settled part, sent SETTLE_S or more after its start, and when the slowest 1 % of the
burst's requests were sent: the first seconds' queue or the steady state), time from the
burst's start to the first replica added (Serve's controller starts it: the scale-up request),
the cold start of that replica (until Serve reports it RUNNING, i.e. its constructor and the
model's load done and the router may send it requests; polled every 0.2 s), replica-seconds of
the model deployment over the schedule, peak replicas. Systems alternate in order per
repetition; medians over repetitions.

    flock /tmp/ainative-ray.lock flock /tmp/ainative-bench.lock \\
        .venv/bin/python benchmarks/serve_autoscaling.py [--quick] [--scenario unbatchable] \\
        [--serve-mode throughput] [--system ainative --system serve-tuned@default] [--out NAME.json]

``--serve-mode throughput`` runs the whole cluster, so every system alike, in the mode Ray's docs
give for high-throughput, low-latency Serve ("Enable High Throughput on Ray Serve with KubeRay",
Ray 2.55+): ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (user code and the router on the replica's own
event loop, gRPC between deployments, direct ingress: each ingress replica also listens on an
HTTP port of its own, and GC frozen after start-up). The same page's ``RAY_SERVE_ENABLE_HA_PROXY=1``
(HAProxy in front of those ports) is not used: it needs an HAProxy binary and binds replicas to
every interface, and this project serves on 127.0.0.1 only; the load goes to Serve's HTTP port,
for every system alike. The JSON records the Serve flags each run had.

``--system LABEL@MODE`` (e.g. ``--system serve-batch@default --system ainative-fast@throughput``)
runs each system in the Serve mode where it does best, still in one run: since the mode is
cluster-wide, each repetition of each system then runs in a child process with a Ray cluster of
its own started in that mode (systems still alternate); each row records its mode and flags.
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
SETTLE_S = 10.0     # the burst's "settled" part starts this long after its start
SLO_MS = 500.0
# scenario -> (a_ms, b_ms, batchable, idle_rps, burst_rps)
SCENARIOS: dict[str, tuple[float, float, bool, float, float]] = {
    "unbatchable": (20.0, 0.0, False, 5.0, 50.0),
    "batchable": (50.0, 1.0, True, 10.0, 100.0),
    "torch": (0.0, 0.0, False, 50.0, 50.0),
}
TUNED = {"upscale_delay_s": 0.5, "downscale_delay_s": 10.0, "metrics_interval_s": 0.5,
         "look_back_period_s": 2.0}


# ---- models ---------------------------------------------------------------------------------
def emulated(a_ms: float, b_ms: float, batchable: bool) -> Any:
    """Our factory: a sync model; our replica runs it on one 'device' thread."""
    def factory() -> Any:
        if batchable:
            def batched(batch: list[Any]) -> list[Any]:
                time.sleep((a_ms + b_ms * len(batch)) / 1000.0)
                return [x * 2 for x in batch]
            return batched

        def one(x: Any) -> Any:
            time.sleep((a_ms + b_ms) / 1000.0)
            return x * 2
        return one
    return factory


def torch_mlp() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, 8))


class _PeerModel:
    """The same work for the Serve peers: the emulated device or the torch MLP."""

    def __init__(self, kind: str, a_ms: float, b_ms: float) -> None:
        self.a_ms, self.b_ms = a_ms, b_ms
        self.lock = asyncio.Lock()
        self.net = torch_mlp() if kind == "torch" else None

    async def one(self, x: Any) -> Any:
        """Unbatched: one request at a time on the device (an awaited lock, like a stream)."""
        async with self.lock:
            if self.net is None:
                await asyncio.sleep((self.a_ms + self.b_ms) / 1000.0)
                return x * 2
            return self.forward([x])[0]

    def batch(self, xs: list[Any]) -> list[Any]:
        """Batched: called blocking from the batch handler (see the module docstring)."""
        if self.net is None:
            time.sleep((self.a_ms + self.b_ms * len(xs)) / 1000.0)
            return [x * 2 for x in xs]
        return self.forward(xs)

    def forward(self, xs: list[Any]) -> list[Any]:
        import torch

        with torch.inference_mode():
            return self.net(torch.as_tensor(xs, dtype=torch.float32)).tolist()  # type: ignore[misc,no-any-return]


@serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS})
class PeerPlain:
    def __init__(self, kind: str, a_ms: float, b_ms: float) -> None:
        self.model = _PeerModel(kind, a_ms, b_ms)

    async def __call__(self, request: Any) -> Any:
        return {"result": await self.model.one(await request.json())}


@serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS})
class PeerBatched:
    def __init__(self, kind: str, a_ms: float, b_ms: float) -> None:
        self.model = _PeerModel(kind, a_ms, b_ms)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=MAX_WAIT_MS / 1000.0)
    async def infer(self, xs: list[Any]) -> list[Any]:
        return self.model.batch(xs)

    async def __call__(self, request: Any) -> Any:
        return {"result": await self.infer(await request.json())}


# ---- systems --------------------------------------------------------------------------------
class System(abc.ABC):
    label = ""

    def __init__(self, app: str) -> None:
        self.app = app

    @abc.abstractmethod
    def deploy(self, kind: str, port: int) -> str:
        """Deploy this system's app for scenario ``kind``; return its URL on 127.0.0.1."""

    def delete(self) -> None:
        serve.delete(self.app, _blocking=True)

    def settings(self, kind: str) -> dict[str, Any]:
        return {}


class Peer(System):
    def __init__(self, label: str, app: str, batched: bool, tuned: bool) -> None:
        super().__init__(app)
        self.label, self.batched, self.tuned = label, batched, tuned

    def settings(self, kind: str) -> dict[str, Any]:
        batch = self.batched and SCENARIOS[kind][2]
        auto: dict[str, Any] = {"min_replicas": MIN_REPLICAS, "max_replicas": MAX_REPLICAS}
        options: dict[str, Any] = {}
        if batch:
            options["max_ongoing_requests"] = 2 * MAX_BATCH
        if self.tuned:
            auto.update(TUNED, target_ongoing_requests=MAX_BATCH if batch else 1)
            options.setdefault("max_ongoing_requests", 4)
        return {"batch": batch, "autoscaling_config": auto, **options}

    def deploy(self, kind: str, port: int) -> str:
        a_ms, b_ms = SCENARIOS[kind][:2]
        s = dict(self.settings(kind))
        cls = PeerBatched if s.pop("batch") else PeerPlain
        serve.run(cls.options(**s).bind(kind, a_ms, b_ms), name=self.app,
                  route_prefix=f"/{self.app}")
        return f"http://127.0.0.1:{port}/{self.app}"


class Ours(System):
    handle: Any = None

    def __init__(self, label: str, app: str, slo: bool, fast_path: bool = False,
                 min_replicas: int = MIN_REPLICAS) -> None:
        super().__init__(app)
        self.label, self.slo, self.fast_path = label, slo, fast_path
        self.min_replicas = min_replicas

    def endpoint(self, kind: str) -> Any:
        a_ms, b_ms, batchable = SCENARIOS[kind][:3]
        auto = {"min_replicas": self.min_replicas, "max_replicas": MAX_REPLICAS}
        if batchable:
            auto["target_concurrency"] = MAX_BATCH
        if self.slo:
            auto.update(latency_slo_ms=SLO_MS, shed_over_slo=True)
        return ai.Endpoint(
            torch_mlp if kind == "torch" else emulated(a_ms, b_ms, batchable), name=self.app,
            route=f"/{self.app}", resources=ai.Resources(cpus=REPLICA_CPUS),
            batching=ai.BatchingConfig(max_batch_size=MAX_BATCH, max_wait_ms=MAX_WAIT_MS)
            if batchable else None,
            autoscaling=ai.AutoscalingConfig(**auto), fast_path=self.fast_path)

    def settings(self, kind: str) -> dict[str, Any]:
        ep = self.endpoint(kind)
        return {"batching": str(ep.batching), "autoscaling": ep.autoscaling.to_dict(),
                "fast_path": ep.fast_path}

    def deploy(self, kind: str, port: int) -> str:
        self.handle = self.endpoint(kind).deploy()
        return str(self.handle.url)

    def delete(self) -> None:
        self.handle.delete()


def systems_for(kind: str, wanted: list[str] | None = None) -> list[System]:
    """The scenario's systems, or those of ``wanted`` (labels; ``ainative-fast`` may be asked
    for in every scenario, by default it runs in the torch one only)."""
    out: list[System] = [Peer("serve-default", "peer-default", batched=False, tuned=False),
                         Peer("serve-tuned", "peer-tuned", batched=True, tuned=True)]
    if SCENARIOS[kind][2]:
        out.append(Peer("serve-batch", "peer-batch", batched=True, tuned=False))
    out += [Ours("ainative", "ainative-ep", slo=False)]
    fast = Ours("ainative-fast", "ainative-fast", slo=False, fast_path=True)
    if kind == "torch":
        out.append(fast)
    else:
        out.append(Ours("ainative-slo", "ainative-slo", slo=True))
        if wanted and "ainative-fast" in wanted:
            out.append(fast)
        if wanted and "ainative-fast-min2" in wanted:
            # a bound, not a configuration the scenario allows (it says 1 to 4 replicas): what
            # capacity held from the start, e.g. a warm replica, could give at most
            out.append(Ours("ainative-fast-min2", "ainative-fast-min2", slo=False,
                            fast_path=True, min_replicas=2))
    return [s for s in out if not wanted or s.label in wanted]


# ---- load -----------------------------------------------------------------------------------
def schedule(rates: tuple[float, float, float], phases_s: tuple[float, float, float]) -> list[float]:
    """Send times (s): idle rate, burst rate, idle rate; evenly spaced."""
    times, t0 = [], 0.0
    for rate, length in zip(rates, phases_s):
        times += [t0 + i / rate for i in range(int(rate * length))]
        t0 += length
    return times


async def _replay(url: str, times: list[float], payload: Any) -> list[tuple[float, int, float, str]]:
    """Open loop: each request leaves at its time whatever happened to earlier ones.
    -> (send offset, status, latency ms, status word of a 503 body)"""
    out: list[tuple[float, int, float, str]] = []
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.monotonic()

        async def one(at: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            t, word = time.monotonic(), ""
            try:
                async with session.post(url, json=payload) as resp:
                    body = await resp.read()
                    code = resp.status
                    if code == 503:
                        word = str(json.loads(body).get("status", ""))
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                code = -1
            out.append((at, code, (time.monotonic() - t) * 1000.0, word))

        await asyncio.gather(*(one(at) for at in times))
    return out


class ReplicaMeter:
    """Integrates the model deployment's replica count (running + starting) over the schedule,
    notes when the first replica beyond the initial count appeared (Serve's controller began
    starting it: the scale-up request) and when the running count first rose (that replica
    ready to take requests: its cold start ends). Polls ``serve.status()`` every 0.2 s."""

    def __init__(self, app: str, window_s: float) -> None:
        self.app, self.seconds, self.peak, self.window_s = app, 0.0, 0, window_s
        self.first_up_s: float | None = None
        self.first_ready_s: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> tuple[int, int]:
        """(running + starting, running) replicas of the model deployment."""
        status = serve.status().applications.get(self.app)
        if status is None:
            return 0, 0
        states = [(str(getattr(state, "value", state)), n)
                  for name, dep in status.deployments.items() if not name.endswith("-ingress")
                  for state, n in dep.replica_states.items()]
        return (sum(n for state, n in states if state in ("RUNNING", "STARTING")),
                sum(n for state, n in states if state == "RUNNING"))

    def _run(self) -> None:
        last = start = time.monotonic()
        initial: tuple[int, int] | None = None
        while not self._stop.is_set():
            n, running = self._count()
            now = min(time.monotonic(), start + self.window_s)
            initial = (n, running) if initial is None else initial
            if self.first_up_s is None and n > initial[0]:
                self.first_up_s = now - start
            if self.first_up_s is not None and self.first_ready_s is None and running > initial[1]:
                self.first_ready_s = now - start
            self.seconds += n * (now - last)
            self.peak = max(self.peak, n)
            last = now
            if now >= start + self.window_s:
                return
            self._stop.wait(0.2)

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


def run_one(system: System, kind: str, port: int, phases: tuple[float, float, float]
            ) -> dict[str, Any]:
    idle, burst = SCENARIOS[kind][3:]
    times = schedule((idle, burst, idle), phases)
    payload: Any = [0.1] * 32 if kind == "torch" else 1
    url = system.deploy(kind, port)
    try:
        asyncio.run(_replay(url, [i * 0.1 for i in range(10)], payload))  # warm the path
        with ReplicaMeter(system.app, sum(phases)) as meter:
            t0 = time.monotonic()
            results = asyncio.run(_replay(url, times, payload))
            wall = time.monotonic() - t0
    finally:
        system.delete()
    lo, hi = phases[0], phases[0] + phases[1]
    shed = [r for r in results if r[1] == 503 and r[3] == "shed"]
    ok = [ms for _, code, ms, _ in results if code == 200]
    in_burst = [ms for at, code, ms, _ in results if code == 200 and lo <= at < hi]
    # where the burst's tail comes from: its first seconds (the queue before replicas are added)
    # or its steady part (routing, per-request overhead)
    settled = [ms for at, code, ms, _ in results if code == 200 and lo + SETTLE_S <= at < hi]
    slowest = sorted(((ms, at - lo) for at, code, ms, _ in results
                      if code == 200 and lo <= at < hi), reverse=True)[:max(1, len(in_burst) // 100)]
    first_up, first_ready = meter.first_up_s, meter.first_ready_s
    return {"system": system.label, "kind": kind, "requests": len(results), "ok": len(ok),
            "shed": len(shed), "failed": len(results) - len(ok) - len(shed),
            "p50_ms": pct(ok, 50), "p99_ms": pct(ok, 99), "burst_p50_ms": pct(in_burst, 50),
            "burst_p99_ms": pct(in_burst, 99), "settled_burst_p99_ms": pct(settled, 99),
            "slowest_1pct_sent_after_burst_start_s": [pct([at for _, at in slowest], p)
                                                      for p in (10, 50, 90)],
            "throughput_rps": len(ok) / wall, "wall_s": wall,
            "first_scale_up_after_burst_s": None if first_up is None else first_up - lo,
            "cold_start_s": None if first_up is None or first_ready is None
            else first_ready - first_up,
            "replica_seconds": meter.seconds, "peak_replicas": meter.peak}


KEYS = ("burst_p50_ms", "burst_p99_ms", "settled_burst_p99_ms", "p99_ms", "failed", "shed",
        "first_scale_up_after_burst_s", "cold_start_s", "replica_seconds", "peak_replicas",
        "throughput_rps")


def summarize(rows: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(r["system"] for r in rows if r["kind"] == kind):
        mine = [r for r in rows if r["system"] == label and r["kind"] == kind]
        out[label] = {k: _median([r[k] for r in mine]) for k in KEYS}
        out[label]["reps"] = len(mine)
    return out


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for label, prefix in (("ainative", ""), ("ainative-fast", "fast_")):
        ours = summary.get(label)
        if not ours:
            continue
        for peer in ("serve-default", "serve-tuned", "serve-batch", "ainative"):
            theirs = summary.get(peer)
            if theirs and peer != label:
                for key in ("burst_p99_ms", "p99_ms", "replica_seconds", "cold_start_s"):
                    a, b = ours[key], theirs[key]
                    out[f"{prefix}{key}_vs_{peer}"] = None if a is None or not b else a / b
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 / 15 / 8 s phases")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="run only these scenarios (repeatable); default all")
    parser.add_argument("--out", help="results file name under benchmarks/results/, or an "
                                      "absolute path (default "
                                      "serve_autoscaling[_quick].json)")
    parser.add_argument("--serve-mode", choices=("default", "throughput"), default="default",
                        help="throughput: the cluster in Serve's throughput-optimized mode "
                             "(RAY_SERVE_THROUGHPUT_OPTIMIZED=1), every system alike")
    parser.add_argument("--system", action="append", dest="systems",
                        help="run only these systems (repeatable, by label); LABEL@MODE runs "
                             "that system in Serve mode MODE (default or throughput), each "
                             "system and repetition then in a Ray cluster of its own")
    args = parser.parse_args()
    modes = system_modes(args)
    if modes:
        orchestrate(args, modes)
        return
    if args.serve_mode == "throughput" and os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") != "1":
        # Serve reads its flags at import, in this driver too: start again with the mode set.
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"})
    phases, kinds = plan(args)
    load_before = os.getloadavg()[0]
    ai.connect(num_cpus=4, include_dashboard=False)
    from ainative.serve import _runtime

    port = _runtime.ensure_serve()
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        systems = systems_for(kind, args.systems)
        for rep in range(args.reps):
            for system in alternated(systems, rep):
                row = run_one(system, kind, port, phases)
                row["rep"] = rep
                rows.append(row)
                print(json.dumps(row), flush=True)
    load_after = os.getloadavg()[0]
    serve.shutdown()
    report(args, kinds, phases, rows, load_before, load_after)


def plan(args: argparse.Namespace) -> tuple[tuple[float, float, float], list[str]]:
    """The phases (idle, burst, idle seconds) and the scenarios this run covers."""
    phases = (5.0, 15.0, 8.0) if args.quick else (20.0, 60.0, 30.0)
    return phases, args.scenario or list(SCENARIOS)


def alternated(items: list[Any], rep: int) -> list[Any]:
    """``items`` rotated by ``rep``: who goes first alternates from repetition to repetition."""
    shift = rep % len(items)
    return items[shift:] + items[:shift]


def system_modes(args: argparse.Namespace) -> dict[str, str]:
    """``{label: mode}`` when some ``--system`` names its Serve mode (``LABEL@MODE``), else {}.
    Strips the modes from ``args.systems``; a system without one runs in ``--serve-mode``."""
    if not args.systems or not any("@" in s for s in args.systems):
        return {}
    modes: dict[str, str] = {}
    for spec in args.systems:
        label, _, mode = spec.partition("@")
        mode = mode or args.serve_mode
        if mode not in ("default", "throughput"):
            raise SystemExit(f"--system {spec}: the mode after @ is 'default' or 'throughput'")
        modes[label] = mode
    args.systems = list(modes)
    return modes


def orchestrate(args: argparse.Namespace, modes: dict[str, str]) -> None:
    """Each system in the Serve mode it was given: Serve's throughput-optimized mode is
    cluster-wide and read at import, so every (repetition, system) runs in a child process with
    a Ray cluster of its own, started in that mode; systems alternate as in one cluster."""
    import subprocess
    import tempfile

    phases, kinds = plan(args)
    load_before = os.getloadavg()[0]
    env = {k: v for k, v in os.environ.items() if k != "RAY_SERVE_THROUGHPUT_OPTIMIZED"}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            labels = [s.label for s in systems_for(kind, args.systems)]
            for rep in range(args.reps):
                for label in alternated(labels, rep):
                    out = Path(tmp) / f"{kind}-{label}-{rep}.json"
                    cmd = [sys.executable, __file__, "--scenario", kind, "--system", label,
                           "--reps", "1", "--serve-mode", modes[label], "--out", str(out)]
                    subprocess.run(cmd + (["--quick"] if args.quick else []), env=env,
                                   check=True, stdout=subprocess.DEVNULL)
                    child = json.loads(out.read_text())
                    row = {**child["runs"][0], "rep": rep, "serve_mode": modes[label],
                           "serve_flags": child["serve_flags"]}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    report(args, kinds, phases, rows, load_before, os.getloadavg()[0], modes)


def report(args: argparse.Namespace, kinds: list[str], phases: tuple[float, float, float],
           rows: list[dict[str, Any]], load_before: float, load_after: float,
           modes: dict[str, str] | None = None) -> None:
    import torch

    result: dict[str, Any] = {
        "benchmark": "serve_autoscaling", "quick": args.quick, "reps": args.reps,
        "systems_run": args.systems or "all",
        "phases_s": phases, "client_timeout_s": CLIENT_TIMEOUT_S, "slo_ms": SLO_MS,
        "scenarios": {k: dict(zip(("a_ms", "b_ms", "batchable", "idle_rps", "burst_rps"),
                                  SCENARIOS[k])) for k in kinds},
        "settings": {k: {s.label: s.settings(k) for s in systems_for(k, args.systems)}
                     for k in kinds},
        "machine": {"cores": os.cpu_count(), "memory_bytes": os.sysconf("SC_PAGE_SIZE")
                    * os.sysconf("SC_PHYS_PAGES"), "gpu": "none", "platform": platform.platform(),
                    "loadavg_1min_before": load_before, "loadavg_1min_after": load_after},
        "versions": {"python": sys.version.split()[0], "ray": ray.__version__,
                     "torch": torch.__version__, "ainative": ai.__version__},
        # one cluster for all, or (modes) each system's run in its own cluster: see the rows
        "serve_flags": serve_flags() if modes is None else "per run, in each row",
        "serve_mode": args.serve_mode if modes is None else modes,
        "runs": rows, "summary": {}, "ratios": {}}
    for kind in kinds:
        summary = summarize(rows, kind)
        result["summary"][kind], result["ratios"][kind] = summary, ratios(summary)
        print(f"\n== {kind}: medians over reps ==")
        print(f"{'system':15} {'b-p50':>8} {'b-p99':>8} {'failed':>7} {'shed':>6} {'1st-up':>7} "
              f"{'cold':>7} {'rep-s':>7} {'peak':>5}")
        for label, s in summary.items():
            print(f"{label:15} {_f(s['burst_p50_ms'])} {_f(s['burst_p99_ms'])} {s['failed']:7.0f} "
                  f"{s['shed']:6.0f} {_f(s['first_scale_up_after_burst_s'], 7)} "
                  f"{_f(s['cold_start_s'], 7)} "
                  f"{s['replica_seconds']:7.1f} {s['peak_replicas']:5.0f}")
        print("ratios:", json.dumps(result["ratios"][kind]))
    print(f"loadavg 1-min before {load_before:.1f}, after {load_after:.1f}")
    out = Path(__file__).parent / "results" / (args.out or (
        "serve_autoscaling_quick.json" if args.quick else "serve_autoscaling.json"))
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print("wrote", out)


def serve_flags() -> dict[str, Any]:
    """The Serve flags this run had (read where Serve reads them; the cluster was started from
    this process, so its controller and replicas had the same environment)."""
    from ray.serve._private import constants

    names = ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD",
             "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "RAY_SERVE_USE_GRPC_BY_DEFAULT",
             "RAY_SERVE_ENABLE_DIRECT_INGRESS", "RAY_SERVE_FREEZE_GC_ON_STARTUP",
             "RAY_SERVE_ENABLE_HA_PROXY")
    return {name: getattr(constants, name, None) for name in names}


def _f(x: float | None, width: int = 8) -> str:
    return f"{x:{width}.1f}" if x is not None else " " * (width - 1) + "-"


if __name__ == "__main__":
    main()
