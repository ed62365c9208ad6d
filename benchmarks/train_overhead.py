"""Training overhead: ainative TrainJob vs Ray Train TorchTrainer vs plain torchrun.

Same tiny DDP model (MLP 32-128-32, ~8.4k parameters), same synthetic data, batch 16, 2 workers x
1 CPU, gloo on this machine; a report every 10 steps and a checkpoint every ``ckpt_every`` steps.
Alternated in every repetition: ours, Ray Train, torchrun (plain runs), then ours and Ray Train
with rank 1 SIGKILLing itself at ``kill_step`` (recovery runs).

Reported (medians over repetitions):
  first_step_s     call (TrainJob.run / TorchTrainer.fit / torchrun launch) -> first step done;
                   Ray is already initialised for ours and Ray Train, as a user's session would be
  step_ms          steady-state median wall time per step on rank 0 (steps after 10, any report
                   call included); step_ms_mean is the mean over the same steps
  recovery_s       the killed rank's last timestamp -> the first step completed after the restart
  total_s          the whole call
plus the 1-minute load average before and after (other work on the machine skews numbers).

    flock /tmp/ainative-bench.lock .venv/bin/python benchmarks/train_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# -- the shared training loop ---------------------------------------------------------------------
def train_loop(cfg: dict[str, Any], rank: int, report: Callable[[dict, str | None], None],
               checkpoint_dir: str | None) -> None:
    """Runs on every rank of every system; rank 0 writes its timings to ``cfg['out']``."""
    import torch
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 32))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    start = 0
    if checkpoint_dir:
        state = torch.load(os.path.join(checkpoint_dir, "state.pt"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    ddp = DistributedDataParallel(model)
    gen = torch.Generator().manual_seed(rank * 7919 + start)
    marker = Path(cfg["out"]) / "killed.json"
    attempt = 1 if marker.exists() else 0
    times: list[float] = []
    for step in range(start, cfg["steps"]):
        x = torch.randn(16, 32, generator=gen)
        loss = ((ddp(x) - x.flip(1)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        n = step + 1
        if n % 10 == 0:
            ckpt = None
            if n % cfg["ckpt_every"] == 0 and rank == 0:
                ckpt = tempfile.mkdtemp(prefix="bench-ckpt-")
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": n},
                           os.path.join(ckpt, "state.pt"))
            report({"step": n, "loss": loss.item()}, ckpt)
        now = time.time()
        times.append(now)
        if rank == 0 and len(times) == 1:
            (Path(cfg["out"]) / f"first_step_{attempt}.json").write_text(json.dumps({"ts": now}))
        if cfg.get("kill_step") == n and rank == 1 and attempt == 0:
            marker.write_text(json.dumps({"ts": now}))
            os.kill(os.getpid(), signal.SIGKILL)
    if rank == 0:
        (Path(cfg["out"]) / f"times_{attempt}.json").write_text(json.dumps(times))


# -- ours ----------------------------------------------------------------------------------------
def ours_fn(cfg: dict[str, Any]) -> None:
    import ainative as ai

    ctx = ai.train.get_context()
    train_loop(cfg, ctx.rank, lambda m, c: ai.train.report(m, checkpoint=c), ai.train.get_checkpoint())


def run_ours(cfg: dict[str, Any], name: str) -> float:
    import ainative as ai

    t0 = time.time()
    ai.TrainJob(ours_fn, workers=2, resources=ai.Resources(cpus=1), config=cfg, name=name,
                checkpoint=ai.CheckpointConfig(path=cfg["storage"], keep=1),
                failure=ai.FailureConfig(max_restarts=1), progress=False).run()
    return t0


# -- Ray Train -------------------------------------------------------------------------------------
def ray_train_fn(cfg: dict[str, Any]) -> None:
    import ray.train

    ckpt = ray.train.get_checkpoint()

    def report(metrics: dict, ckpt_dir: str | None) -> None:
        c = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=c)

    rank = ray.train.get_context().get_world_rank()
    if ckpt is None:
        train_loop(cfg, rank, report, None)
    else:
        with ckpt.as_directory() as d:
            train_loop(cfg, rank, report, d)


def run_ray_train(cfg: dict[str, Any], name: str) -> float:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(ray_train_fn, train_loop_config=cfg,
                           scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
                           run_config=RunConfig(name=name, storage_path=cfg["storage"],
                                                failure_config=FailureConfig(max_failures=1)))
    t0 = time.time()
    trainer.fit()
    return t0


# -- torchrun --------------------------------------------------------------------------------------
def torchrun_worker(cfg_path: str) -> None:
    import torch.distributed as dist

    cfg = json.loads(Path(cfg_path).read_text())
    dist.init_process_group("gloo")
    train_loop(cfg, dist.get_rank(), lambda m, c: None, None)
    dist.destroy_process_group()


def run_torchrun(cfg: dict[str, Any], name: str) -> float:
    cfg_path = Path(cfg["out"]) / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    t0 = time.time()
    subprocess.run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                    "--master_port", str(_free_port()), str(Path(__file__).resolve()),
                    "--torchrun-worker", str(cfg_path)], check=True, env=env, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return t0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- measuring -------------------------------------------------------------------------------------
def measure(system: str, runner: Callable[[dict[str, Any], str], float], args: argparse.Namespace,
            rep: int, kill: bool, workdir: Path) -> dict[str, Any]:
    name = f"{system}-{'kill' if kill else 'plain'}-{rep}-{os.getpid()}"
    out = workdir / name
    out.mkdir(parents=True)
    cfg = {"steps": args.steps, "ckpt_every": args.ckpt_every, "out": str(out),
           "storage": str(workdir / "storage"), "kill_step": args.kill_step if kill else None}
    t0 = runner(cfg, name)
    total = time.time() - t0
    first = json.loads((out / "first_step_0.json").read_text())["ts"]
    row: dict[str, Any] = {"first_step_s": first - t0, "total_s": total}
    times = json.loads((out / ("times_1.json" if kill else "times_0.json")).read_text())
    if kill:
        killed = json.loads((out / "killed.json").read_text())["ts"]
        resumed = json.loads((out / "first_step_1.json").read_text())["ts"]
        row["recovery_s"] = resumed - killed
    else:
        deltas = [(b - a) * 1000 for a, b in zip(times[10:], times[11:])]
        row["step_ms"] = statistics.median(deltas)
        row["step_ms_mean"] = statistics.mean(deltas)
    print(f"  {system:9s} {'kill ' if kill else 'plain'} rep {rep}: "
          + ", ".join(f"{k}={v:.3f}" for k, v in row.items()), flush=True)
    return row


def machine() -> dict[str, Any]:
    import ray
    import torch

    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {"cores": os.cpu_count(), "memory_bytes": mem, "gpu": "none",
            "platform": platform.platform(), "python": platform.python_version(),
            "ray": ray.__version__, "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (short run)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--torchrun-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torchrun_worker:
        torchrun_worker(args.torchrun_worker)
        return
    args.steps, args.ckpt_every, args.kill_step = (100, 30, 50) if args.quick else (200, 50, 120)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["AINATIVE_EVENTS_DIR"] = tempfile.mkdtemp(prefix="ainative-bench-events-")
    load_before = os.getloadavg()[0]
    import ainative as ai

    ai.connect(num_cpus=2, include_dashboard=False, log_to_driver=False)
    systems = {"ours": run_ours, "ray_train": run_ray_train, "torchrun": run_torchrun}
    rows: dict[str, list[dict[str, Any]]] = {f"{s}_{k}": [] for s in systems for k in ("plain", "kill")}
    workdir = Path(tempfile.mkdtemp(prefix="ainative-bench-train-"))
    try:
        for rep in range(args.reps):
            for system, runner in systems.items():
                rows[f"{system}_plain"].append(measure(system, runner, args, rep, False, workdir))
            for system in ("ours", "ray_train"):
                rows[f"{system}_kill"].append(measure(system, systems[system], args, rep, True, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(rows)
    result = {"benchmark": "train_overhead", "quick": args.quick, "reps": args.reps,
              "steps": args.steps, "ckpt_every": args.ckpt_every, "kill_step": args.kill_step,
              "machine": machine(), "load_avg_1m_before": load_before,
              "load_avg_1m_after": os.getloadavg()[0], "summary": summary, "runs": rows,
              "command": "flock /tmp/ainative-bench.lock .venv/bin/python benchmarks/train_overhead.py"
                         + (" --quick" if args.quick else "")}
    out = HERE / "results" / ("train_overhead_quick.json" if args.quick else "train_overhead.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"load average (1 min) before {load_before:.2f}, after {result['load_avg_1m_after']:.2f}; "
          f"written to {out}")


def summarize(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def med(key: str, field: str) -> float | None:
        values = [r[field] for r in rows.get(key, []) if field in r]
        return statistics.median(values) if values else None

    s: dict[str, Any] = {}
    for key in rows:
        for field in ("first_step_s", "step_ms", "step_ms_mean", "recovery_s", "total_s"):
            value = med(key, field)
            if value is not None:
                s[f"{key}.{field}"] = round(value, 4)

    def ratio(a: str, b: str) -> float | None:
        x, y = s.get(a), s.get(b)
        return round(x / y, 3) if x is not None and y else None

    s["ratio.first_step.ours/ray_train"] = ratio("ours_plain.first_step_s", "ray_train_plain.first_step_s")
    s["ratio.step_ms.ours/torchrun"] = ratio("ours_plain.step_ms", "torchrun_plain.step_ms")
    s["ratio.step_ms.ray_train/torchrun"] = ratio("ray_train_plain.step_ms", "torchrun_plain.step_ms")
    s["ratio.recovery.ours/ray_train"] = ratio("ours_kill.recovery_s", "ray_train_kill.recovery_s")
    s["targets"] = {"first_step<=0.5x": _le(s["ratio.first_step.ours/ray_train"], 0.5),
                    "step<=1.05x_torchrun": _le(s["ratio.step_ms.ours/torchrun"], 1.05),
                    "recovery<=0.5x": _le(s["ratio.recovery.ours/ray_train"], 0.5)}
    return s


def _le(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


if __name__ == "__main__":
    main()
