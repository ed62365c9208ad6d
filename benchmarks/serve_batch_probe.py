"""Why Ray Serve's ``@serve.batch`` peer collapsed at a steady 50 req/s, and where a replica's
cold start goes: a probe run before any batching or cold-start claim (issue 15).

Steady open-loop load (50 req/s for 8 s, 127.0.0.1, 15 s client timeout) on ONE fixed replica of
a model costing 50 + 1 ms a batch on one serialised "device", in four Serve configurations:

  plain            no batching, the device awaited (asyncio lock + sleep), max_ongoing_requests 5
  batch-async-5    @serve.batch(16, 5 ms), the same awaited device, max_ongoing_requests 5
  batch-async-32   the same with max_ongoing_requests 32 (>= max_batch_size, as Serve advises)
  batch-block-32   @serve.batch(16, 5 ms) with the device called blocking (how a torch model
                   on a GPU is usually called inside the batch handler), max_ongoing_requests 32

Each answer carries the size of the batch it ran in. Then the cold starts Serve itself logged for
every replica it started in this run ("started successfully ... after X s ... constructor ...
took Y s"), for the Serve peers' replicas and for an ``ai.Endpoint``'s model replica.

``--in-process`` drives Serve's own ``@serve.batch`` queue in this process, no cluster and no
HTTP (a sleep-based device, so it needs no CPU to speak of): the same steady load through an
awaited device with a 5 ms and a 50 ms batch wait, and through a blocking device.

    flock /tmp/ainative-ray.lock .venv/bin/python benchmarks/serve_batch_probe.py
    .venv/bin/python benchmarks/serve_batch_probe.py --in-process
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import ray
from ray import serve

import ainative as ai

RATE, SECONDS, CLIENT_TIMEOUT_S = 50.0, 8.0, 15.0
A_MS, B_MS, MAX_BATCH, WAIT_S = 50.0, 1.0, 16, 0.005


class _Device:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()

    async def run_async(self, n: int) -> None:
        async with self.lock:
            await asyncio.sleep((A_MS + B_MS * n) / 1000.0)

    @staticmethod
    def run_blocking(n: int) -> None:
        time.sleep((A_MS + B_MS * n) / 1000.0)


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.5})
class Plain:
    def __init__(self) -> None:
        self.device = _Device()

    async def __call__(self, request: Any) -> Any:
        x = await request.json()
        await self.device.run_async(1)
        return {"result": x * 2, "batch": 1}


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.5})
class BatchAsync:
    def __init__(self) -> None:
        self.device = _Device()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def infer(self, xs: list[Any]) -> list[Any]:
        await self.device.run_async(len(xs))
        return [{"result": x * 2, "batch": len(xs)} for x in xs]

    async def __call__(self, request: Any) -> Any:
        return await self.infer(await request.json())


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.5})
class BatchBlocking:
    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def infer(self, xs: list[Any]) -> list[Any]:
        _Device.run_blocking(len(xs))
        return [{"result": x * 2, "batch": len(xs)} for x in xs]

    async def __call__(self, request: Any) -> Any:
        return await self.infer(await request.json())


CONFIGS = [("plain", Plain, 5), ("batch-async-5", BatchAsync, 5),
           ("batch-async-32", BatchAsync, 32), ("batch-block-32", BatchBlocking, 32)]


async def steady(url: str) -> list[tuple[int, float, int]]:
    """(status, latency ms, batch size) per request of a steady open-loop load."""
    out: list[tuple[int, float, int]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.monotonic()

        async def one(at: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            t = time.monotonic()
            try:
                async with session.post(url, json=1) as resp:
                    body = await resp.json() if resp.status == 200 else {}
                    out.append((resp.status, (time.monotonic() - t) * 1e3, body.get("batch", 0)))
            except (aiohttp.ClientError, asyncio.TimeoutError):
                out.append((-1, (time.monotonic() - t) * 1e3, 0))

        await asyncio.gather(*(one(i / RATE) for i in range(int(RATE * SECONDS))))
    return out


def probe(port: int) -> list[dict[str, Any]]:
    rows = []
    for label, cls, max_ongoing in CONFIGS:
        app = f"probe-{label}"
        serve.run(cls.options(max_ongoing_requests=max_ongoing).bind(), name=app,
                  route_prefix=f"/{app}")
        url = f"http://127.0.0.1:{port}/{app}"
        asyncio.run(steady_warm(url))
        results = asyncio.run(steady(url))
        serve.delete(app, _blocking=True)
        ok = sorted(ms for code, ms, _ in results if code == 200)
        batches = [b for code, _, b in results if code == 200]
        row = {"config": label, "max_ongoing_requests": max_ongoing, "sent": len(results),
               "answered": len(ok), "timed_out": sum(code == -1 for code, _, _ in results),
               "p50_ms": statistics.median(ok) if ok else None,
               "p99_ms": ok[int(0.99 * (len(ok) - 1))] if ok else None,
               "mean_batch": statistics.mean(batches) if batches else None}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


async def steady_warm(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(url, json=1) as resp:
                await resp.read()


def ours_once() -> float:
    """Deploy an ai.Endpoint (its model replica is a Serve replica too); seconds to deploy."""
    def factory() -> Any:
        return lambda x: x * 2

    t0 = time.monotonic()
    h = ai.Endpoint(factory, name="probe-ours", resources=ai.Resources(cpus=0.5)).deploy()
    took = time.monotonic() - t0
    assert h.predict(2) == 4
    h.delete()
    return took


_STARTED = re.compile(r"Replica\(id='(\w+)', deployment='([^']+)', app='([^']+)'\) started "
                      r"successfully .* after ([\d.]+)s .* took ([\d.]+)s")


def cold_starts() -> list[dict[str, Any]]:
    """What Serve's controller logged for each replica started in this session."""
    logs = ray._private.worker._global_node.get_logs_dir_path()  # type: ignore[attr-defined]
    out = []
    for path in glob.glob(os.path.join(logs, "serve", "controller_*.log")):
        for line in Path(path).read_text().splitlines():
            m = _STARTED.search(line)
            if m:
                out.append({"deployment": m.group(2), "app": m.group(3),
                            "start_to_ready_s": float(m.group(4)),
                            "constructor_and_health_check_s": float(m.group(5))})
    return out


def in_process() -> list[dict[str, Any]]:
    """Serve's batch queue without a cluster: is the collapse the queue's or the transport's?"""
    from ray.serve import batching

    # The only call that needs a replica context: a warning about max_ongoing_requests.
    batching._BatchQueue._warn_if_max_batch_size_exceeds_max_ongoing_requests = (  # type: ignore[method-assign]
        lambda self: None)

    def handler(blocking: bool, wait_s: float) -> Any:
        class Model:
            def __init__(self) -> None:
                self.device = _Device()

            @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=wait_s)
            async def infer(self, xs: list[Any]) -> list[int]:
                if blocking:
                    _Device.run_blocking(len(xs))
                else:
                    await self.device.run_async(len(xs))
                return [len(xs)] * len(xs)
        return Model()

    async def drive(model: Any) -> tuple[list[float], list[int], float]:
        latencies: list[float] = []
        sizes: list[int] = []
        start = time.monotonic()

        async def one(at: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            t = time.monotonic()
            sizes.append(await model.infer(1))
            latencies.append((time.monotonic() - t) * 1e3)

        await asyncio.gather(*(one(i / RATE) for i in range(int(RATE * SECONDS))))
        return latencies, sizes, time.monotonic() - start

    rows = []
    for label, blocking, wait_s in [("awaited device, wait 5 ms", False, WAIT_S),
                                    ("awaited device, wait 50 ms", False, 0.05),
                                    ("blocking device, wait 5 ms", True, WAIT_S)]:
        latencies, sizes, wall = asyncio.run(drive(handler(blocking, wait_s)))
        ordered = sorted(latencies)
        row = {"config": label, "sent": len(latencies), "p50_ms": statistics.median(ordered),
               "max_ms": ordered[-1], "mean_batch": statistics.mean(sizes),
               "drained_after_s": wall}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    if "--in-process" in sys.argv:
        load = os.getloadavg()[0]
        rows = in_process()
        out = Path(__file__).parent / "results" / "serve_batch_probe_in_process.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"benchmark": "serve_batch_probe --in-process", "rate_rps": RATE,
                                   "seconds": SECONDS, "model_ms": {"a": A_MS, "b": B_MS},
                                   "max_batch": MAX_BATCH, "runs": rows,
                                   "versions": {"ray": ray.__version__},
                                   "machine": {"cores": os.cpu_count(), "loadavg_1min": load}},
                                  indent=1))
        print(f"loadavg {load:.1f}; wrote {out}")
        return
    load_before = os.getloadavg()[0]
    ai.connect(num_cpus=4, include_dashboard=False)
    from ainative.serve import _runtime

    port = _runtime.ensure_serve()
    rows = probe(port)
    ours_deploy_s = ours_once()
    starts = cold_starts()
    for s in starts:
        print(json.dumps(s))
    serve.shutdown()
    result = {"benchmark": "serve_batch_probe", "rate_rps": RATE, "seconds": SECONDS,
              "model_ms": {"a": A_MS, "b": B_MS}, "max_batch": MAX_BATCH, "wait_s": WAIT_S,
              "client_timeout_s": CLIENT_TIMEOUT_S, "runs": rows, "replica_starts": starts,
              "ours_deploy_s": ours_deploy_s, "versions": {"ray": ray.__version__},
              "machine": {"cores": os.cpu_count(), "loadavg_1min_before": load_before,
                          "loadavg_1min_after": os.getloadavg()[0]}}
    out = Path(__file__).parent / "results" / "serve_batch_probe.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"ours deploy {ours_deploy_s:.1f}s; loadavg {load_before:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; wrote {out}")


if __name__ == "__main__":
    main()
