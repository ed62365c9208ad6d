"""The end-to-end demo behind `make demo`, on an embedded local Ray with logical GPUs.

::

    queue team-a (quota 4 x H100, budget $50/month) ──> scheduler + cost guard (SQLite ledger)
    ai.data.range ──map_batches──> features ──shuffle(seed)──> dataset
        └──> TrainJob: 2 workers x 1 H100, gloo DDP, checkpoints ── a worker is killed ──> recovery
               └──> checkpoint ──> Endpoint (adaptive batching, autoscaling on latency SLO)
                                     └── bounded burst of HTTP requests on 127.0.0.1
    summary: recovery, latency percentiles, what autoscaling did, the cost report; all released.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ainative import events

TRUE_W = (2.0, -3.0)
TRUE_B = 0.5
JOB = "demo-train"


def add_features(table: Any) -> Any:
    """id -> (x1, x2, y) with y = 2 x1 - 3 x2 + 0.5 + noise: a problem DDP can fit in seconds."""
    import numpy as np
    import pyarrow as pa

    ids = table.column("id").to_numpy()
    rng = np.random.default_rng(ids[0] if len(ids) else 0)
    x = rng.uniform(-1, 1, size=(len(ids), 2)).astype("float32")
    y = (x @ np.array(TRUE_W, dtype="float32") + TRUE_B + rng.normal(0, 0.01, len(ids))).astype("float32")
    return pa.table({"id": ids, "x1": x[:, 0], "x2": x[:, 1], "y": y})


def train_fn(config: dict[str, Any]) -> None:
    """Linear regression with DDP over each rank's shard of the shuffled dataset."""
    import tempfile as tf

    import torch

    import ainative as ai

    ctx = ai.train.get_context()
    model = torch.nn.Linear(2, 1)
    start = 0
    ckpt = ai.train.get_checkpoint()
    if ckpt:
        state = torch.load(os.path.join(ckpt, "model.pt"))
        model.load_state_dict(state["model"])
        start = state["step"]
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.2)
    shard = ai.train.get_dataset_shard("train")
    step = start
    while step < config["steps"]:
        for batch in shard.iter_batches(batch_size=config["batch_size"]):
            x = torch.tensor(list(zip(batch.column("x1").to_pylist(), batch.column("x2").to_pylist())))
            y = torch.tensor(batch.column("y").to_pylist()).unsqueeze(1)
            loss = torch.nn.functional.mse_loss(ddp(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            time.sleep(config.get("step_sleep_s", 0.0))  # makes the run long enough to watch
            if step % config["checkpoint_every"] == 0 or step >= config["steps"]:
                with tf.TemporaryDirectory() as d:
                    if ctx.rank == 0:
                        torch.save({"model": model.state_dict(), "step": step}, os.path.join(d, "model.pt"))
                    ai.train.report({"step": step, "loss": float(loss)}, checkpoint=d if ctx.rank == 0 else None)
            else:
                ai.train.report({"step": step, "loss": float(loss)})
            if step >= config["steps"]:
                break


class LinearModel:
    """The endpoint's model: the trained weights, and an emulated accelerator cost per batch
    (`a + b * batch` ms) so that autoscaling has real work to react to on a CPU machine."""

    def __init__(self, checkpoint_dir: str, a_ms: float = 8.0, b_ms: float = 1.0) -> None:
        import torch

        state = torch.load(os.path.join(checkpoint_dir, "model.pt"))
        self.model = torch.nn.Linear(2, 1)
        self.model.load_state_dict(state["model"])
        self.a_ms, self.b_ms = a_ms, b_ms

    def __call__(self, batch: list[list[float]]) -> list[float]:
        import torch

        time.sleep((self.a_ms + self.b_ms * len(batch)) / 1000)
        with torch.no_grad():
            return self.model(torch.tensor(batch, dtype=torch.float32)).squeeze(1).tolist()


def _kill_one_worker(handle: Any, at_step: int, timeout_s: float, out: Callable[[str], Any]) -> dict[str, Any]:
    """Wait until training passes ``at_step``, then SIGKILL one worker process from outside."""
    from ray._private import state as ray_state

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and handle.progress()["step"] < at_step:
        if handle.status() in ("succeeded", "failed") or handle.status().startswith("stopped"):
            return {}
        time.sleep(0.1)
    workers = [a for a in ray_state.actors().values()
               if a.get("ActorClassName") == "TrainWorker" and a.get("State") == "ALIVE" and a.get("Pid")]
    if not workers:
        return {}
    victim = sorted(workers, key=lambda a: a["Pid"])[-1]
    step = handle.progress()["step"]
    os.kill(victim["Pid"], signal.SIGKILL)
    out(f"  killed worker process {victim['Pid']} at step {step}")
    return {"killed_pid": victim["Pid"], "killed_at_step": step, "killed_at": time.monotonic()}


def _burst(url: str, *, phases: list[tuple[float, float]], timeout_s: float = 15.0) -> dict[str, Any]:
    """Open-loop load on 127.0.0.1: (requests/s, seconds) per phase; bounded in count and time."""
    import requests

    session = requests.Session()
    results: list[tuple[float, bool]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t = time.perf_counter()
        ok = False
        try:
            r = session.post(url, json=[(i % 7) / 7.0, (i % 5) / 5.0], timeout=timeout_s)
            ok = r.status_code == 200
        except Exception:
            ok = False
        with lock:
            results.append(((time.perf_counter() - t) * 1000, ok))

    sent = 0
    with ThreadPoolExecutor(max_workers=48) as pool:
        for rate, seconds in phases:
            start = time.perf_counter()
            n = int(rate * seconds)
            for k in range(n):
                delay = start + k / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(one, sent)
                sent += 1
    lat = sorted(ms for ms, ok in results if ok)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")

    return {"sent": sent, "ok": len(lat), "failed": sent - len(lat), "p50_ms": pct(50),
            "p95_ms": pct(95), "p99_ms": pct(99)}


def run(*, rows: int = 20_000, steps: int = 60, out: Callable[[str], Any] = print,
        burst_scale: float = 1.0) -> dict[str, Any]:
    import ainative as ai

    t0 = time.monotonic()
    summary: dict[str, Any] = {}
    work = tempfile.mkdtemp(prefix="ainative-demo-")
    os.environ.setdefault("AINATIVE_HOME", os.path.join(work, "home"))
    cluster = ai.connect(num_cpus=8, num_gpus=4, accelerator_type="H100", include_dashboard=False)
    handle = None
    try:
        out("== 1. cluster ==")
        out(cluster.resources().table())

        out("\n== 2. a team queue with a budget ==")
        os.environ["AINATIVE_LEDGER"] = ledger = os.path.join(work, "ledger.sqlite")
        budget = ai.Budget(usd=50, period="month", warn_at=0.8)
        # a queue budget plus a price table: the scheduler admits, meters and stops by budget
        ai.scheduling.configure([ai.Queue("team-a", quota={"H100": 4}, cohort="demo", budget=budget)],
                                prices=ai.PriceTable({"H100": 4.00}), fresh=True)
        out("queue team-a: quota 4 x H100, budget $50/month (warn at 80%), price $4.00/GPU-hour")

        out("\n== 3. generate and shuffle a dataset ==")
        t = time.monotonic()
        ds = ai.data.range(rows, num_blocks=4).map_batches(add_features).shuffle(seed=0)
        out(f"{ds.count()} rows in {ds.num_blocks()} blocks, shuffled in {time.monotonic() - t:.1f} s")

        out("\n== 4. train on a 2-worker gang; kill a worker mid-run ==")
        job = ai.TrainJob(train_fn, workers=2, name=JOB, queue="team-a",
                          resources=ai.Resources(cpus=1, accelerator=ai.Accelerator("H100")),
                          config={"steps": steps, "batch_size": 256, "checkpoint_every": 10,
                                  "step_sleep_s": 0.05},
                          checkpoint=ai.CheckpointConfig(path=os.path.join(work, "ckpt"), keep=2),
                          failure=ai.FailureConfig(max_restarts=2), datasets={"train": ds},
                          progress=False)
        handle = job.submit()
        kill = _kill_one_worker(handle, at_step=steps // 2, timeout_s=120, out=out)
        result = handle.wait(timeout_s=180)
        recovery = [e for e in events.read(JOB) if e["event"] in ("failure", "restarting", "running")]
        out(f"  {result.status}: {len(result.history)} reports, restarts={result.restarts}, "
            f"final loss {result.metrics.get('loss', float('nan')):.4f}")
        for e in recovery:
            out("  event: " + events.format_event(e))
        summary["train"] = {"status": result.status, "restarts": result.restarts,
                            "loss": result.metrics.get("loss"), "killed_at_step": kill.get("killed_at_step"),
                            "checkpoint": result.checkpoint}
        checkpoint_dir = _local_dir(result.checkpoint)

        out("\n== 5. deploy the trained model as an autoscaled endpoint ==")
        ep = ai.Endpoint(lambda: LinearModel(checkpoint_dir), name="demo-regressor", route="/regress",
                         resources=ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100", count=0.5)),
                         batching=ai.BatchingConfig(max_batch_size=16, max_wait_ms=5),
                         autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=3,
                                                          target_concurrency=4, latency_slo_ms=150))
        h = ep.deploy()
        pred = h.predict([1.0, 1.0])
        out(f"  {h.url}  predict([1, 1]) = {pred:.3f} (true {TRUE_W[0] + TRUE_W[1] + TRUE_B:.3f})")
        summary["predict_1_1"] = pred

        out("\n== 6. a bounded burst: 10 req/s, then 120 req/s, then 10 req/s ==")
        replicas: list[tuple[float, int, int]] = []
        stop = threading.Event()

        def watch() -> None:
            start = time.monotonic()
            while not stop.is_set():
                m = h.metrics(window_s=2.0)
                replicas.append((round(time.monotonic() - start, 1), m.replicas_running, m.replicas_starting))
                stop.wait(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        load = _burst(h.url, phases=[(10, 3 * burst_scale), (120, 8 * burst_scale), (10, 4 * burst_scale)])
        stop.set()
        watcher.join()
        m = h.metrics(window_s=30.0)
        peak = max((r[1] for r in replicas), default=1)
        out(f"  {load['ok']}/{load['sent']} ok, p50 {load['p50_ms']:.0f} ms, p95 {load['p95_ms']:.0f} ms, "
            f"p99 {load['p99_ms']:.0f} ms")
        scaled = (f"replicas 1 -> {peak} during the burst" if peak > 1 else
                  "stayed at 1 replica (its p99 stayed under the 150 ms SLO, so none was needed)")
        out(f"  autoscaling: {scaled}; batch sizes {dict(sorted(m.batch_sizes.items()))}")
        out(f"  replica-seconds {m.replica_seconds:.1f}")
        summary["serve"] = {**load, "peak_replicas": peak, "replica_seconds": m.replica_seconds,
                            "batch_sizes": m.batch_sizes}
        h.delete()

        out("\n== 7. cost report ==")
        report = ai.cost.report(by="queue", path=ledger)
        out(report.table())
        summary["cost"] = {"usd": round(report.total_usd, 4), "gpu_hours": round(report.total_gpu_hours, 4)}
    finally:
        _release(ai, out)
        cluster.shutdown()
    summary["seconds"] = round(time.monotonic() - t0, 1)
    _print_summary(summary, out)
    return summary


def _local_dir(uri: str | None) -> str:
    if not uri:
        raise RuntimeError("training produced no checkpoint")
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _release(ai: Any, out: Callable[[str], Any]) -> None:
    for step in (ai.scheduling.shutdown,):
        try:
            step()
        except Exception as exc:  # keep releasing the rest
            out(f"  (release: {exc})")


def _print_summary(s: dict[str, Any], out: Callable[[str], Any]) -> None:
    out("\n== summary ==")
    tr = s.get("train", {})
    out(f"train:  {tr.get('status')} after {tr.get('restarts')} restart(s) (worker killed at step "
        f"{tr.get('killed_at_step')}), final loss {tr.get('loss')}")
    sv = s.get("serve", {})
    if sv:
        out(f"serve:  {sv['ok']}/{sv['sent']} requests ok, p50/p95/p99 = {sv['p50_ms']:.0f}/"
            f"{sv['p95_ms']:.0f}/{sv['p99_ms']:.0f} ms, peak replicas {sv['peak_replicas']}")
    cost = s.get("cost") or {}
    out(f"cost:   ${cost.get('usd', 0):.4f} for {cost.get('gpu_hours', 0):.4f} GPU-hours (team-a, from the ledger)")
    out(f"demo finished in {s['seconds']} s; everything released")
