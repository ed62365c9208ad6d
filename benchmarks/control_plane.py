"""A compressed "mixed day" on a 3-node logical-GPU cluster: ainative's control plane vs plain Ray.

Cluster (ray.cluster_utils.Cluster, fresh for each system): a head with 4 logical CPUs and no GPU,
3 nodes x 2 logical H100s x 2 logical CPUs (6 GPUs). Three teams, one schedule, replayed against

  (1) ainative: ``scheduling.configure`` with queues team-a (quota 2 H100), team-b (3) and
      team-c (1) in one cohort, per-queue budgets with a PriceTable, an IdlePolicy; TrainJobs with
      checkpoints (preemptible, requeued and resumed), an Endpoint with a latency SLO, ai.data
      shuffle;
  (2) plain Ray doing the same work, each piece just asking Ray for resources: Ray Train
      TorchTrainer (1 worker, ``use_gpu=True``, gloo), Ray Serve with its default autoscaling
      (min 1, max 3, every other field default), Ray Data ``random_shuffle``.

Team A submits a stream of checkpointing TrainJobs (1 GPU each; a step is a little CPU work and a
sleep that emulates GPU time; a checkpoint every ``CKPT_EVERY`` steps, and one at once when
ainative asks the job to stop: ``ctx.should_stop``). Team B serves an endpoint
(1 GPU per replica, one request at a time costing ``REQUEST_MS`` of emulated device time, no
batching in either system) under a diurnal open-loop load (127.0.0.1, bounded in count and time)
with two 10x bursts. Team C runs shuffle-then-train pipelines. Offered demand is about 1.5x the
6 GPUs over the day (the JSON states the computed ratio).

Reported per system: endpoint requests within the SLO (%), training goodput (committed steps per
allocated training GPU-second), average JCT per team, allocated-but-idle GPU-hours (allocated GPU
time sampled from Ray every 0.25 s minus the emulated device time workers and replicas report),
spend per team against its budget (ainative: its ledger; plain Ray: held GPU time per team, sampled
through a tiny per-team marker resource, x the same prices) and Jain's fairness over the teams'
allocated GPU time divided by their quota.

    flock /tmp/ainative-ray.lock .venv/bin/python benchmarks/control_plane.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import aiohttp  # noqa: E402
import ray  # noqa: E402
from ray import serve  # noqa: E402

import ainative as ai  # noqa: E402

NODES, GPUS_PER_NODE, CPUS_PER_NODE = 3, 2, 2
QUOTA = {"team-a": 2, "team-b": 3, "team-c": 1}
MARKER = {"team-a": "team_a", "team-b": "team_b", "team-c": "team_c"}  # plain Ray attribution only
MARK = 0.001
PRICE_GPU_HOUR = 3.6
STEP_S, CKPT_EVERY = 1.0, 5
REQUEST_MS, SLO_MS, CLIENT_TIMEOUT_S = 80.0, 500.0, 10.0
MIN_REPLICAS, MAX_REPLICAS = 1, 3
BASE_RPS = 2.0


# ---- the shared work ----------------------------------------------------------------------------
def _write(path: str, obj: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def work_loop(cfg: dict[str, Any], ckpt: str | None, report: Any,
              should_stop: Callable[[], bool] = lambda: False) -> None:
    """Steps of emulated GPU time; a checkpoint every CKPT_EVERY steps, and at once after a step
    when ``should_stop()`` (ainative's ``ctx.should_stop``, as docs/training.md advises: a
    preempted job then gives its GPUs back after one step, not at its next periodic checkpoint;
    Ray Train has no such signal); busy time and the committed step written to files the driver
    reads (one busy file per attempt)."""
    start = json.load(open(os.path.join(ckpt, "s.json")))["step"] if ckpt else 0
    busy_path = os.path.join(cfg["busy_dir"], f"{cfg['job']}-{uuid.uuid4().hex[:8]}.json")
    busy = 0.0
    for step in range(start + 1, cfg["steps"] + 1):
        t = time.monotonic()
        sum(i * i for i in range(2000))          # tiny CPU work
        time.sleep(STEP_S)                       # the emulated GPU
        busy += time.monotonic() - t
        _write(busy_path, {"busy_s": busy})
        if step % CKPT_EVERY == 0 or step == cfg["steps"] or should_stop():
            d = os.path.join(cfg["scratch"], f"{cfg['job']}-{step}")
            os.makedirs(d, exist_ok=True)
            _write(os.path.join(d, "s.json"), {"step": step})
            report({"step": step}, d)
            _write(os.path.join(cfg["commit_dir"], f"{cfg['job']}.json"), {"step": step})


def ours_train(cfg: dict[str, Any]) -> None:
    import ainative

    ctx = ainative.train.get_context()
    work_loop(cfg, ainative.train.get_checkpoint(),
              lambda m, d: ainative.train.report(m, checkpoint=d), lambda: ctx.should_stop)


def ray_train_fn(cfg: dict[str, Any]) -> None:
    import ray.train

    def report(m: dict[str, Any], d: str) -> None:
        ray.train.report(m, checkpoint=ray.train.Checkpoint.from_directory(d))

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        work_loop(cfg, None, report)
    else:
        with ckpt.as_directory() as d:
            work_loop(cfg, d, report)


class _Device:
    """One emulated device per replica: a request costs REQUEST_MS, one at a time; busy time to a file."""

    def __init__(self, busy_dir: str) -> None:
        self.path = os.path.join(busy_dir, f"replica-{uuid.uuid4().hex[:8]}.json")
        self.busy, self.last_write = 0.0, 0.0
        self.first: float | None = None     # wall time of this replica's first answer
        self.lock = threading.Lock()

    def run(self, n: int) -> None:
        with self.lock:
            t = time.monotonic()
            time.sleep(REQUEST_MS * n / 1000.0)
            self.busy += time.monotonic() - t
            if self.first is None:
                self.first = time.time()
            if t - self.last_write > 0.5:
                self.flush()
                self.last_write = t

    def flush(self) -> None:
        _write(self.path, {"busy_s": self.busy, "first_answer_wall": self.first})


def ours_model(busy_dir: str) -> Any:
    def factory() -> Any:
        device = _Device(busy_dir)

        def model(batch: list[Any]) -> list[Any]:
            device.run(len(batch))
            if time.monotonic() - device.last_write > 0.5:
                device.flush()
            return [x * 2 for x in batch]
        return model
    return factory


@serve.deployment(ray_actor_options={"num_cpus": 0.1, "num_gpus": 1, "resources": {"team_b": MARK}},
                  autoscaling_config={"min_replicas": MIN_REPLICAS, "max_replicas": MAX_REPLICAS})
class PeerModel:
    def __init__(self, busy_dir: str) -> None:
        self.device = _Device(busy_dir)
        self.alock = asyncio.Lock()

    async def __call__(self, request: Any) -> Any:
        x = await request.json()
        async with self.alock:   # one request at a time, like one device
            await asyncio.to_thread(self.device.run, 1)
        return {"result": x * 2}


# ---- the day's schedule ---------------------------------------------------------------------------
def plan(day_s: float) -> dict[str, Any]:
    n_a, n_c = 6, 3
    steps = max(CKPT_EVERY, int(round(0.8 * day_s / STEP_S / CKPT_EVERY)) * CKPT_EVERY)
    a = [{"team": "team-a", "at": round(i * 0.75 * day_s / n_a, 2), "steps": steps, "job": f"a{i}"}
         for i in range(n_a)]
    c = [{"team": "team-c", "at": round((0.05 + i * 0.25) * day_s, 2), "steps": steps, "job": f"c{i}"}
         for i in range(n_c)]
    bursts = [(0.3 * day_s, 0.38 * day_s), (0.7 * day_s, 0.78 * day_s)]
    times, t = [], 0.0
    while t < day_s:
        rate = BASE_RPS * (1.0 + 0.5 * math.sin(2 * math.pi * t / day_s - math.pi / 2))
        if any(lo <= t < hi for lo, hi in bursts):
            rate = 10 * BASE_RPS
        times.append(round(t, 4))
        t += 1.0 / rate
    serve_gpu_s = sum(max(1.0, min(MAX_REPLICAS, (10 * BASE_RPS if any(lo <= x < hi for lo, hi in bursts)
                                                  else BASE_RPS * 1.5) * REQUEST_MS / 1000 / 0.7))
                      for x in range(int(day_s)))
    train_gpu_s = (n_a + n_c) * steps * STEP_S
    capacity = NODES * GPUS_PER_NODE * day_s
    return {"day_s": day_s, "jobs": a + c, "requests": times, "bursts": bursts, "steps": steps,
            "offered_gpu_s": {"train": train_gpu_s, "serve_estimate": serve_gpu_s},
            "offered_vs_capacity": (train_gpu_s + serve_gpu_s) / capacity}


def budgets(p: dict[str, Any]) -> dict[str, float]:
    """USD per team: 1.3x its offered GPU time at the price (the endpoint: its estimate, at least
    1.5 replicas over the day)."""
    per_s = PRICE_GPU_HOUR / 3600.0
    train = {t: sum(j["steps"] * STEP_S for j in p["jobs"] if j["team"] == t) for t in ("team-a", "team-c")}
    return {"team-a": round(1.3 * train["team-a"] * per_s, 4),
            "team-b": round(1.3 * max(p["offered_gpu_s"]["serve_estimate"], 1.5 * p["day_s"]) * per_s, 4),
            "team-c": round(1.3 * train["team-c"] * per_s, 4)}


# ---- measuring ------------------------------------------------------------------------------------
class Sampler:
    """Integrates GPUs held (total and per marker resource) from ray.available_resources()."""

    def __init__(self, totals: dict[str, float]) -> None:
        self.totals = totals
        self.gpu_s = 0.0
        self.team_gpu_s = {t: 0.0 for t in MARKER}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.25):
            with contextlib.suppress(Exception):
                avail = ray.available_resources()
                now = time.monotonic()
                dt, last = now - last, now
                self.gpu_s += (self.totals["GPU"] - avail.get("GPU", 0.0)) * dt
                for team, res in MARKER.items():
                    held = (self.totals[res] - avail.get(res, 0.0)) / MARK
                    self.team_gpu_s[team] += round(held) * dt

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


async def _replay(url: str, times: list[float]) -> list[tuple[float, int, float]]:
    out: list[tuple[float, int, float]] = []
    conn = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
                                     connector=conn) as session:
        start = time.monotonic()

        async def one(at: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            t = time.monotonic()
            try:
                async with session.post(url, json=1) as resp:
                    await resp.read()
                    code = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                code = -1
            out.append((at, code, (time.monotonic() - t) * 1000.0))

        await asyncio.gather(*(one(at) for at in times))
    return out


def _sum_busy(d: Path) -> float:
    total = 0.0
    for f in d.glob("*.json"):
        with contextlib.suppress(Exception):
            total += json.loads(f.read_text())["busy_s"]
    return total


def _committed(d: Path, job: str) -> int:
    with contextlib.suppress(Exception):
        return int(json.loads((d / f"{job}.json").read_text())["step"])
    return 0


def by_phase(results: list[tuple[float, int, float]], bursts: list[tuple[float, float]]
             ) -> dict[str, dict[str, Any]]:
    """Requests sent in a burst (or the 10 s after one) against the rest: count, share within the
    SLO, p50 and p99 of the answered ones; so a miss says whether the base load or the bursts made it."""
    def phase(at: float) -> str:
        if any(lo <= at < hi for lo, hi in bursts):
            return "burst"
        return "after_burst" if any(hi <= at < hi + 10.0 for _, hi in bursts) else "base"
    out: dict[str, dict[str, Any]] = {}
    for name in ("base", "burst", "after_burst"):
        rows = [(code, ms) for at, code, ms in results if phase(at) == name]
        ok = sorted(ms for code, ms in rows if code == 200)
        out[name] = {"requests": len(rows),
                     "within_slo_pct": (100.0 * sum(1 for c, ms in rows if c == 200 and ms <= SLO_MS)
                                        / len(rows)) if rows else None,
                     "p50_ms": ok[len(ok) // 2] if ok else None,
                     "p99_ms": ok[int(0.99 * (len(ok) - 1))] if ok else None}
    return out


def replica_firsts(busy: Path, wall0: float) -> list[float]:
    """Each replica's first answer, seconds after the day's first request."""
    firsts = []
    for f in busy.glob("replica-*.json"):
        with contextlib.suppress(Exception):
            first = json.loads(f.read_text()).get("first_answer_wall")
            if first is not None:
                firsts.append(round(first - wall0, 2))
    return sorted(firsts)


def replica_leads(firsts: list[float], bursts: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Per burst: seconds from the burst's first request to the first answer of each replica that
    began answering during it (or in the 10 s after), from ``replica_firsts``; the first is the
    scale-up's whole delay (decision, admission, preemption, cold start), which a 10x step must
    beat to meet the SLO."""
    return [{"burst_s": [lo, hi],
             "new_replica_first_answer_s": sorted(round(x - lo, 2) for x in firsts
                                                  if lo <= x < hi + 10.0)} for lo, hi in bursts]


def slo_bound(p: dict[str, Any], lead_s: float | list[float], min_replicas: int = MIN_REPLICAS,
              overhead_ms: float = 30.0) -> float:
    """The share of the day's requests within the SLO for an ideal endpoint: ``min_replicas``
    replicas, all MAX_REPLICAS serving ``lead_s`` after each burst's first request and until 10 s
    after it, first-come first-served over replicas, exactly REQUEST_MS a request plus
    ``overhead_ms`` (HTTP and routing; the base-load p50 on a quiet machine is ~100 ms). Only
    arithmetic over the day's schedule: what a given scale-up delay (one for all bursts, or one
    per burst) allows at best."""
    leads = lead_s if isinstance(lead_s, list) else [lead_s] * len(p["bursts"])

    def serving(t: float) -> int:
        return MAX_REPLICAS if any(lo + lead <= t < hi + 10.0
                                   for (lo, hi), lead in zip(p["bursts"], leads)) else min_replicas
    free = [0.0] * MAX_REPLICAS
    ok = 0
    for at in p["requests"]:
        i = min(range(serving(at)), key=free.__getitem__)
        free[i] = max(at, free[i]) + REQUEST_MS / 1000.0
        ok += (free[i] - at) * 1000.0 + overhead_ms <= SLO_MS
    return 100.0 * ok / len(p["requests"])


def jain(xs: list[float]) -> float | None:
    return (sum(xs) ** 2) / (len(xs) * sum(x * x for x in xs)) if xs and any(xs) else None


# ---- one system's day ----------------------------------------------------------------------------
class Day:
    """Shared driver of one day: the cluster, the schedule, the threads, the measurements."""

    label = ""

    def __init__(self, p: dict[str, Any], budget: dict[str, float], root: Path) -> None:
        self.p, self.budget, self.root = p, budget, root
        for sub in ("busy", "commit", "scratch", "ckpt", "state"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.cluster: Any = None
        self.wall0 = time.time()

    def start_cluster(self) -> None:
        from ray.cluster_utils import Cluster

        marks = {res: 1000.0 for res in MARKER.values()}
        self.cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=4, num_gpus=0, resources=dict(marks), object_store_memory=200 * 2**20,
            include_dashboard=False))
        for _ in range(NODES):
            self.cluster.add_node(num_cpus=CPUS_PER_NODE, num_gpus=GPUS_PER_NODE,
                                  resources={"accelerator_type:H100": 1.0, **marks},
                                  object_store_memory=150 * 2**20)
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, log_to_driver=False)

    def cfg(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"job": job["job"], "steps": job["steps"], "busy_dir": str(self.root / "busy"),
                "commit_dir": str(self.root / "commit"), "scratch": str(self.root / "scratch")}

    def _job_thread(self, job: dict[str, Any], t0: float, deadline: float) -> None:
        time.sleep(max(0.0, t0 + job["at"] - time.monotonic()))
        rec = {"team": job["team"], "submit": time.monotonic() - t0, "end": None, "status": "?"}
        with self.lock:
            self.jobs[job["job"]] = rec
        try:
            if job["team"] == "team-c":
                self.shuffle(int(job["job"][1:]))
            rec["status"] = self.train(job, deadline)
        except Exception as exc:  # recorded, reported; the day goes on
            rec["status"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
        rec["end"] = time.monotonic() - t0

    def run_day(self) -> dict[str, Any]:
        p = self.p
        url = self.deploy_endpoint()
        asyncio.run(_replay(url, [i * 0.2 for i in range(10)]))   # warm the path
        totals = ray.cluster_resources()
        load_before = os.getloadavg()[0]
        t0 = time.monotonic()
        deadline = t0 + 2.5 * p["day_s"] + 60.0
        threads = [threading.Thread(target=self._job_thread, args=(j, t0, deadline), daemon=True)
                   for j in p["jobs"]]
        results: list[tuple[float, int, float]] = []
        with Sampler(totals) as sampler:
            for t in threads:
                t.start()
            try:
                self.wall0 = time.time()
                results = asyncio.run(_replay(url, p["requests"]))
            finally:
                self.delete_endpoint()          # team B's day is over
            serve_done = time.monotonic() - t0
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            wall = time.monotonic() - t0
            time.sleep(1.0)
        return self.summarize(results, sampler, wall, serve_done, load_before)

    def summarize(self, results: list[tuple[float, int, float]], sampler: Sampler, wall: float,
                  serve_done: float, load_before: float) -> dict[str, Any]:
        within = sum(1 for _, code, ms in results if code == 200 and ms <= SLO_MS)
        firsts = replica_firsts(self.root / "busy", self.wall0)
        leads = replica_leads(firsts, self.p["bursts"])
        ok = [ms for _, code, ms in results if code == 200]
        committed = {j["job"]: _committed(self.root / "commit", j["job"]) for j in self.p["jobs"]}
        team_gpu_s = self.team_gpu_seconds(sampler)
        train_gpu_s = team_gpu_s["team-a"] + team_gpu_s["team-c"]
        busy = _sum_busy(self.root / "busy")
        jct: dict[str, float | None] = {}
        for team in ("team-a", "team-c"):
            done = [r["end"] - r["submit"] for r in self.jobs.values()
                    if r["team"] == team and r["status"] == "succeeded"]
            jct[team] = sum(done) / len(done) if done else None
        spend = {t: s * PRICE_GPU_HOUR / 3600.0 for t, s in team_gpu_s.items()}
        fair = jain([team_gpu_s[t] / QUOTA[t] for t in QUOTA])
        return {
            "system": self.label, "wall_s": wall, "serve_window_s": serve_done,
            "day_start_unix_s": self.wall0,   # t = 0 of the schedule (aligns the event logs)
            "by_phase": by_phase(results, self.p["bursts"]),
            "replicas_after_bursts": leads,
            # every request outside the SLO: (sent at, s into the day; HTTP status or -1; ms)
            "outside_slo": [(round(at, 2), code, round(ms)) for at, code, ms in sorted(results)
                            if code != 200 or ms > SLO_MS],
            # every replica's first answer, s into the day (negative: before it; the replica
            # that answered the warm-up requests)
            "replica_first_answers_s": firsts,
            # the same day's SLO for an ideal endpoint with MIN_REPLICAS replicas before each
            # burst whose extra replicas answer after the delays measured here (a burst without
            # a new replica: as if none came); an estimate, not a bound: a replica started
            # before a burst (rising diurnal load) is not in it
            "slo_estimate_at_measured_delays_pct": slo_bound(self.p, [
                b["new_replica_first_answer_s"][0] if b["new_replica_first_answer_s"] else math.inf
                for b in leads]),
            "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0],
            "requests": len(results), "ok": len(ok), "failed": len(results) - len(ok),
            "slo_attainment_pct": 100.0 * within / len(results) if results else None,
            "p99_ms": sorted(ok)[int(0.99 * (len(ok) - 1))] if ok else None,
            "committed_steps": sum(committed.values()),
            "offered_steps": sum(j["steps"] for j in self.p["jobs"]),
            "train_gpu_s": train_gpu_s,
            "goodput_steps_per_gpu_s": sum(committed.values()) / train_gpu_s if train_gpu_s else None,
            "jct_s": {**jct, "team-b": None},
            "jobs": self.jobs,
            "allocated_gpu_s_sampled": sampler.gpu_s, "team_gpu_s": team_gpu_s,
            "busy_gpu_s": busy,
            "idle_gpu_hours": max(0.0, sampler.gpu_s - busy) / 3600.0,
            "spend_usd": spend, "budget_usd": self.budget,
            "over_budget": {t: spend[t] > self.budget[t] for t in spend},
            "jain_fairness": fair, **self.extra()}

    def team_gpu_seconds(self, sampler: Sampler) -> dict[str, float]:
        return dict(sampler.team_gpu_s)

    def extra(self) -> dict[str, Any]:
        return {}

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            serve.shutdown()
        # The cluster first: a peer thread still inside Ray when the driver disconnects makes
        # Ray's core worker end this process at once, and a cluster stopped after that point was
        # never stopped (its raylets and agents ran on, loading the next runs: load 15 measured).
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        with contextlib.suppress(Exception):
            from ainative.cluster import local

            local._CURRENT = None

    # subclasses
    def deploy_endpoint(self) -> str: raise NotImplementedError
    def delete_endpoint(self) -> None: raise NotImplementedError
    def shuffle(self, seed: int) -> None: raise NotImplementedError
    def train(self, job: dict[str, Any], deadline: float) -> str: raise NotImplementedError


SHUFFLE_ROWS = 20_000


class Ours(Day):
    label = "ainative"
    handle: Any = None

    def start_cluster(self) -> None:
        os.environ["AINATIVE_SCHEDULER_STATE_DIR"] = str(self.root / "state")
        super().start_cluster()
        from ainative import scheduling

        prices = ai.PriceTable({"H100": PRICE_GPU_HOUR}, cpu_core_hour_usd=0.0)
        self.queues = [ai.Queue(t, quota={"H100": q}, cohort="day",
                                budget=ai.Budget(usd=self.budget[t], action="stop" if t != "team-b"
                                                 else "min_replicas"))
                       for t, q in QUOTA.items()]
        self.ledger = str(self.root / "ledger.sqlite")
        day = self.p["day_s"]
        policy = ai.PolicyConfig(min_runtime_s=5.0, ping_pong_s=10.0, preempt_retry_s=2.0,
                                 restart_overhead_s=2.0, half_life_s=day, aging_s=day / 2)
        scheduling.configure(self.queues, prices, policy=policy, fresh=True,
                             idle=ai.IdlePolicy(threshold=0.05, window_s=30.0),
                             guardrails=ai.cost.scheduler_guardrails(self.queues, prices,
                                                                     ledger_path=self.ledger))

    def deploy_endpoint(self) -> str:
        self.handle = ai.Endpoint(
            ours_model(str(self.root / "busy")), name="team-b-ep", route="/team-b-ep", queue="team-b",
            resources=ai.Resources(cpus=0.1, accelerator=ai.Accelerator("H100", 1)),
            batching=ai.BatchingConfig(max_batch_size=1, max_wait_ms=0),
            autoscaling=ai.AutoscalingConfig(min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS,
                                             target_concurrency=1.0, latency_slo_ms=SLO_MS,
                                             upscale_delay_s=0.5, downscale_delay_s=10.0),
            # serves the day from its deploy: the warm-up, the day, the last requests' client
            # timeout; the min_replicas budget keeps back its min_replicas' spend to then
            expected_duration_s=self.p["day_s"] + 15.0,
        ).deploy(timeout_s=120)
        return str(self.handle.url)

    def delete_endpoint(self) -> None:
        if self.handle is not None:
            self.handle.delete()

    def shuffle(self, seed: int) -> None:
        out = ai.data.range(SHUFFLE_ROWS, payload_bytes=64).shuffle(seed=seed)
        rows = sum(b.num_rows for b in out.iter_shard(0, 1, batch_size=4096))
        assert rows == SHUFFLE_ROWS, rows

    def train(self, job: dict[str, Any], deadline: float) -> str:
        run = ai.TrainJob(ours_train, workers=1, name=job["job"], queue=job["team"],
                          resources=ai.Resources(cpus=0.1, accelerator=ai.Accelerator("H100", 1)),
                          config=self.cfg(job), progress=False,
                          checkpoint=ai.CheckpointConfig(path=str(self.root / "ckpt"), keep=1)).submit()
        try:
            return str(run.wait(timeout_s=max(1.0, deadline - time.monotonic())).status)
        except Exception:
            with contextlib.suppress(Exception):
                run.stop("day over", checkpoint=False, grace_s=5)
            raise

    def team_gpu_seconds(self, sampler: Sampler) -> dict[str, float]:
        from ainative.cost import ledger as ledger_mod

        out = {t: 0.0 for t in QUOTA}
        for c in ledger_mod.Ledger(self.ledger).charges():
            if c.queue in out:
                out[c.queue] += c.gpu_seconds
        return out

    def extra(self) -> dict[str, Any]:
        from ainative import events, scheduling

        kinds: dict[str, int] = {}
        for j in self.p["jobs"]:
            for e in events.read(j["job"]):
                kinds[e["event"]] = kinds.get(e["event"], 0) + 1
        ledger_spend = {t: s * PRICE_GPU_HOUR / 3600.0 for t, s in self.team_gpu_seconds(None).items()}  # type: ignore[arg-type]
        status = scheduling.status()
        held = {q["name"]: q["used"] for q in status["queues"]}
        return {"train_events": kinds, "ledger_spend_usd": ledger_spend, "held_after_day": held}

    def shutdown(self) -> None:
        from ainative import scheduling

        with contextlib.suppress(Exception):
            scheduling.shutdown()
        super().shutdown()


class PlainRay(Day):
    label = "plain Ray"
    port = 0

    def deploy_endpoint(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        serve.run(PeerModel.bind(str(self.root / "busy")), name="team-b-ep", route_prefix="/team-b-ep")  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{self.port}/team-b-ep"

    def delete_endpoint(self) -> None:
        serve.delete("team-b-ep", _blocking=True)

    def shuffle(self, seed: int) -> None:
        import ray.data

        ds = ray.data.range(SHUFFLE_ROWS).random_shuffle(seed=seed).materialize()
        assert ds.count() == SHUFFLE_ROWS

    def train(self, job: dict[str, Any], deadline: float) -> str:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        trainer = TorchTrainer(
            ray_train_fn, train_loop_config=self.cfg(job), torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=1, use_gpu=True, resources_per_worker={
                "GPU": 1, "CPU": 0.1, MARKER[job["team"]]: MARK}),
            run_config=RunConfig(name=job["job"], storage_path=str(self.root / "ckpt")))
        trainer.fit()
        return "succeeded"

    def team_gpu_seconds(self, sampler: Sampler) -> dict[str, float]:
        return dict(sampler.team_gpu_s)


# ---- main ----------------------------------------------------------------------------------------
def run_system(cls: type[Day], p: dict[str, Any], budget: dict[str, float], out: Path) -> dict[str, Any]:
    """One system's day; the row is written to ``out`` before Ray shuts down (a peer thread still
    inside Ray at shutdown, e.g. a TorchTrainer.fit past the day's deadline, makes Ray's core
    worker end the process: "The core worker has already been shutdown ... will exit")."""
    root = Path(tempfile.mkdtemp(prefix=f"cp-bench-{cls.__name__.lower()}-"))
    day = cls(p, budget, root)
    # Each run's own event logs: job names (a0, c1, ...) repeat from run to run, and the shared
    # default directory once counted 18 "submitted" for 9 jobs (two runs' logs appended). Set
    # before the cluster starts, so the scheduler actor writes there too.
    saved_events = os.environ.get("AINATIVE_EVENTS_DIR")
    os.environ["AINATIVE_EVENTS_DIR"] = str(root / "events")
    try:
        try:
            day.start_cluster()
            row = day.run_day()
        except Exception as exc:
            row = {"system": cls.label, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        out.write_text(json.dumps(row, default=str))
    finally:
        day.shutdown()
        keep = os.environ.get("CP_BENCH_KEEP_EVENTS")   # for a post-mortem of one run's timeline
        if keep and (root / "events").exists():     # plain Ray writes no ainative events
            shutil.copytree(root / "events", Path(keep) / cls.__name__.lower(), dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
        if saved_events is None:
            os.environ.pop("AINATIVE_EVENTS_DIR", None)
        else:
            os.environ["AINATIVE_EVENTS_DIR"] = saved_events
    print(json.dumps({k: v for k, v in row.items() if k != "jobs"}, default=str), flush=True)
    return row


def targets(ours: list[dict[str, Any]], plain: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets on the medians over the repetitions (a figure missing from a run that
    failed is left out of its median); "never above a budget" holds only if no run went above."""
    def get(rows: list[dict[str, Any]], key: str) -> Any:
        xs = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(xs) if xs else None

    slo_o, slo_p = get(ours, "slo_attainment_pct"), get(plain, "slo_attainment_pct")
    gp_o, gp_p = get(ours, "goodput_steps_per_gpu_s"), get(plain, "goodput_steps_per_gpu_s")
    idle_o, idle_p = get(ours, "idle_gpu_hours"), get(plain, "idle_gpu_hours")
    both = slo_o is not None and slo_p is not None
    budgeted = [r["over_budget"] for r in ours if "over_budget" in r]
    return {
        "medians_of_runs": {"ainative": sum("error" not in r for r in ours),
                            "plain_ray": sum("error" not in r for r in plain)},
        "slo_attainment_pct": {"ainative": slo_o, "plain_ray": slo_p},
        "slo_ge_99_pct": None if slo_o is None else slo_o >= 99.0,
        "slo_ge_plain_plus_20_points": None if not both else slo_o >= slo_p + 20.0,
        "goodput_vs_plain": gp_o / gp_p if gp_o and gp_p else None,
        "goodput_ge_1_2x": gp_o / gp_p >= 1.2 if gp_o and gp_p else None,
        "idle_vs_plain": idle_o / idle_p if idle_o is not None and idle_p else None,
        "idle_le_0_5x": idle_o / idle_p <= 0.5 if idle_o is not None and idle_p else None,
        "ainative_never_over_budget": (not any(any(o.values()) for o in budgeted)
                                       if budgeted else None),
        "plain_over_budget": [r.get("over_budget") for r in plain]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1-minute day per system")
    parser.add_argument("--day-s", type=float, default=None, help="length of the day (seconds)")
    parser.add_argument("--reps", type=int, default=1, help="pairs of runs, alternating who goes first")
    parser.add_argument("--system", choices=("ours", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:    # the peer's parts: a missing one would record every peer job as an error, not a run
        import pandas  # noqa: F401
        import ray.train.torch  # noqa: F401
    except ImportError as exc:
        sys.exit(f"the plain-Ray peer needs Ray Train and Ray Data ({exc}); run "
                 "`make .venv/.installed-bench` (pip install -e '.[bench]') first")
    day_s = args.day_s or (60.0 if args.quick else 150.0)
    p = plan(day_s)
    budget = budgets(p)
    if args.system:      # one system's day, in its own process (no stale threads or Ray state)
        run_system(Ours if args.system == "ours" else PlainRay, p, budget, Path(args.out))
        return
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for system in (("ours", "plain") if rep % 2 == 0 else ("plain", "ours")):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "row.json"
                cmd = [sys.executable, __file__, "--system", system, "--out", str(out),
                       "--day-s", str(day_s)]
                try:
                    rc = subprocess.call(cmd, timeout=4.0 * day_s + 240.0)
                except subprocess.TimeoutExpired:
                    rc = -9
                row = (json.loads(out.read_text()) if out.exists()
                       else {"system": Ours.label if system == "ours" else PlainRay.label,
                             "error": f"exit {rc}, no result"})
            row["rep"] = rep
            rows.append(row)
    report(args, p, budget, rows, load_before)


def report(args: argparse.Namespace, p: dict[str, Any], budget: dict[str, float],
           rows: list[dict[str, Any]], load_before: tuple[float, float, float]) -> None:
    import torch

    ours = [r for r in rows if r["system"] == Ours.label]
    plain = [r for r in rows if r["system"] == PlainRay.label]
    result: dict[str, Any] = {
        "benchmark": "control_plane", "quick": args.quick, "reps": args.reps,
        "cluster": {"nodes": NODES, "gpus_per_node": GPUS_PER_NODE, "accelerator": "H100 (logical)",
                    "cpus_per_node": CPUS_PER_NODE, "head_cpus": 4},
        "day": {"day_s": p["day_s"], "bursts_s": p["bursts"], "requests": len(p["requests"]),
                "base_rps": BASE_RPS, "burst_rps": 10 * BASE_RPS, "request_ms": REQUEST_MS,
                "slo_ms": SLO_MS, "client_timeout_s": CLIENT_TIMEOUT_S,
                "jobs": [{k: j[k] for k in ("job", "team", "at", "steps")} for j in p["jobs"]],
                "step_s": STEP_S, "ckpt_every": CKPT_EVERY, "shuffle_rows": SHUFFLE_ROWS,
                "offered_gpu_s": p["offered_gpu_s"], "offered_vs_capacity": p["offered_vs_capacity"]},
        "settings": {
            "ainative": {"queues": {t: {"quota_h100": q, "cohort": "day", "budget_usd": budget[t]}
                                    for t, q in QUOTA.items()},
                         "price_h100_hour_usd": PRICE_GPU_HOUR,
                         "policy": "PolicyConfig(min_runtime_s=5, ping_pong_s=10, preempt_retry_s=2, "
                                   "restart_overhead_s=2, half_life_s=day, aging_s=day/2)",
                         "idle": "IdlePolicy(threshold=0.05, window_s=30)",
                         "endpoint": f"min {MIN_REPLICAS} max {MAX_REPLICAS}, target_concurrency 1, "
                                     f"latency_slo_ms {SLO_MS:.0f}, upscale 0.5 s, downscale 10 s, "
                                     "no batching",
                         "trainjob": "1 worker, 1 H100, CheckpointConfig(keep=1), preemptible, priority 0"},
            "plain_ray": {"train": "TorchTrainer, ScalingConfig(num_workers=1, use_gpu=True, "
                                   "resources_per_worker={GPU: 1, CPU: 0.1, <team marker>: 0.001}), "
                                   "TorchConfig(backend='gloo'), RunConfig defaults (no failure retries)",
                          "serve": f"autoscaling_config={{min_replicas: {MIN_REPLICAS}, max_replicas: "
                                   f"{MAX_REPLICAS}}} (every other field default), num_gpus 1, "
                                   "num_cpus 0.1, no batching",
                          "data": f"ray.data.range({SHUFFLE_ROWS}).random_shuffle().materialize()"}},
        "machine": {"cores": os.cpu_count(), "memory_bytes": os.sysconf("SC_PAGE_SIZE")
                    * os.sysconf("SC_PHYS_PAGES"), "gpu": "none (logical GPUs)",
                    "platform": platform.platform(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "versions": {"python": sys.version.split()[0], "ray": ray.__version__,
                     "torch": torch.__version__, "ainative": ai.__version__},
        # what the day's schedule allows an ideal endpoint (slo_bound) when its extra replicas
        # answer this long after each burst begins, with min_replicas 1 and 2
        "slo_bound_pct_by_scale_up_delay_s": {
            str(lead): {"min_replicas_1": slo_bound(p, lead), "min_replicas_2": slo_bound(p, lead, 2)}
            for lead in (0.0, 0.5, 1.0, 2.0, 3.0, 6.0)},
        "runs": rows,
        "targets": targets(ours, plain) if ours and plain else {}}
    print("targets:", json.dumps(result["targets"], default=str))
    print(f"loadavg before {load_before}, after {os.getloadavg()}")
    out = Path(__file__).parent / "results" / ("control_plane_quick.json" if args.quick
                                               else "control_plane.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print("wrote", out)


if __name__ == "__main__":
    main()
