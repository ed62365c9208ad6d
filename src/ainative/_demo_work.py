"""What the demo runs (`ainative.demo`): the features, the training function, the served model and
the bounded open-loop load. Kept apart from the demo's flow so each file stays readable."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TRUE_W = (2.0, -3.0)
TRUE_B = 0.5


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
    """Linear regression with DDP over each rank's shard of the shuffled dataset; resumes from the
    latest checkpoint (its step and weights) when there is one."""
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
            row = {"step": step, "loss": loss.item(), "resumed_from": start}
            if step % config["checkpoint_every"] == 0 or step >= config["steps"]:
                with tf.TemporaryDirectory() as d:
                    if ctx.rank == 0:
                        torch.save({"model": model.state_dict(), "step": step}, os.path.join(d, "model.pt"))
                    ai.train.report(row, checkpoint=d if ctx.rank == 0 else None)
            else:
                ai.train.report(row)
            if step >= config["steps"]:
                break


def fit_least_squares(rows: int = 4_000) -> tuple[float, float, float]:
    """(w1, w2, b) fit by least squares to ``rows`` rows of the demo's features, in the driver
    (milliseconds, no Ray): the model team-a already serves while the training jobs run."""
    import numpy as np
    import pyarrow as pa

    table = add_features(pa.table({"id": np.arange(rows, dtype="int64")}))
    x = np.column_stack([table.column("x1").to_numpy(), table.column("x2").to_numpy(), np.ones(rows)])
    coef, *_ = np.linalg.lstsq(x.astype("float64"), table.column("y").to_numpy().astype("float64"), rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


class LinearModel:
    """The endpoint's model: weights from a training checkpoint (``checkpoint_dir``) or given
    directly (``weights=(w1, w2, b)``), and an emulated accelerator cost per batch (`a + b * batch`
    ms of sleep standing for device time; a replica runs one batch at a time), so that a burst
    really needs more replicas on a CPU machine."""

    def __init__(self, checkpoint_dir: str | None = None, a_ms: float = 8.0, b_ms: float = 1.0,
                 weights: tuple[float, float, float] | None = None) -> None:
        import numpy as np

        if weights is None:
            if checkpoint_dir is None:
                raise ValueError("LinearModel needs checkpoint_dir or weights")
            import torch  # only to read the training checkpoint; serving is numpy

            state = torch.load(os.path.join(checkpoint_dir, "model.pt"))["model"]
            w = state["weight"].reshape(-1).tolist()
            weights = (float(w[0]), float(w[1]), float(state["bias"].reshape(-1)[0]))
        self.w = np.array(weights[:2], dtype="float32")
        self.b = np.float32(weights[2])
        self.a_ms, self.b_ms = a_ms, b_ms

    def __call__(self, batch: list[list[float]]) -> list[float]:
        import numpy as np

        time.sleep((self.a_ms + self.b_ms * len(batch)) / 1000)
        out: list[float] = (np.asarray(batch, dtype="float32") @ self.w + self.b).tolist()
        return out


def burst(url: str, *, phases: list[tuple[float, float]], timeout_s: float = 30.0,
          max_in_flight: int = 256) -> dict[str, Any]:
    """Open-loop load on 127.0.0.1: (requests/s, seconds) per phase, bounded in count and time.
    ``shed`` counts answers 429/503 (refused for load), ``failed`` any other error or timeout."""
    import requests

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max_in_flight)
    session.mount("http://", adapter)
    results: list[tuple[float, str]] = []
    lock = threading.Lock()

    def one(i: int, sent_at: float) -> None:
        outcome = "failed"
        try:
            r = session.post(url, json=[(i % 7) / 7.0, (i % 5) / 5.0], timeout=timeout_s)
            outcome = "ok" if r.status_code == 200 else "shed" if r.status_code in (429, 503) else "failed"
        except Exception:
            outcome = "failed"
        with lock:   # latency from the moment the request was due: queueing in the client counts
            results.append(((time.perf_counter() - sent_at) * 1000, outcome))

    sent = 0
    with ThreadPoolExecutor(max_workers=max_in_flight) as pool:
        for rate, seconds in phases:
            start = time.perf_counter()
            for k in range(int(rate * seconds)):
                due = start + k / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(one, sent, due)
                sent += 1
    lat = sorted(ms for ms, outcome in results if outcome == "ok")

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")

    return {"sent": sent, "ok": len(lat), "shed": sum(1 for _, o in results if o == "shed"),
            "failed": sum(1 for _, o in results if o == "failed"),
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99)}
