"""Live checks of the queueing autoscaler and SLO load shedding on real Ray Serve (127.0.0.1).

Timing is measured in benchmarks/serve_autoscaling.py; here only what the issue states as
behaviour: a step in arrivals is acted on before a backlog forms (the backlog, not a clock, is the
measure: a clock bound fails whenever the machine is busy); nothing is shed while capacity
suffices; overload beyond the SLO is shed at once with Retry-After and counted.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import ainative as ai
from ainative.serve import _runtime
from tests.support import waiting


def serial_model(ms: float):
    """A factory for an unbatched model: one request per call, ``ms`` of device time."""
    def factory():
        def model(x):
            time.sleep(ms / 1000.0)
            return x * 2
        return model
    return factory


@pytest.fixture(scope="module")
def serve_cluster(ray_local):
    yield ray_local
    from ray import serve

    serve.shutdown()


def wait_for(predicate, timeout_s, what):
    return waiting.until(what, predicate, timeout_s)


def replicas_asked(name: str) -> int:
    """Model replicas Serve is running or starting for the endpoint (the autoscaler's target)."""
    return sum(_runtime.replica_states(name).values())


async def open_loop(url: str, schedule: list[float], stop: threading.Event,
                    counts: dict[str, int] | None = None) -> list[tuple[float, int]]:
    """Send one request at each offset of ``schedule`` (s) whatever happened to earlier ones;
    ``counts`` (if given) keeps how many were ``sent`` and ``done`` so far."""
    import aiohttp

    out: list[tuple[float, int]] = []
    tally = counts if counts is not None else {}
    tally.update(sent=0, done=0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.monotonic()
        stopped = asyncio.Event()       # ``stop`` seen on this loop: the unsent requests end at once

        async def watch_stop() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.05)
            stopped.set()

        async def one(at: float) -> None:
            try:
                await asyncio.wait_for(stopped.wait(), max(0.0, start + at - time.monotonic()))
                return                  # stopped before its time came
            except asyncio.TimeoutError:
                pass
            if stop.is_set():
                return
            tally["sent"] += 1
            try:
                async with session.post(url, json=1) as resp:
                    await resp.read()
                    out.append((at, resp.status))
            except (aiohttp.ClientError, asyncio.TimeoutError):
                out.append((at, -1))
            finally:
                tally["done"] += 1

        watcher = asyncio.ensure_future(watch_stop())
        try:
            await asyncio.gather(*(one(at) for at in schedule))
        finally:
            watcher.cancel()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True], ids=["ingress", "fast_path"])
def test_step_in_arrivals_scales_up_before_a_backlog(serve_cluster, fast):
    # 150 ms a request, 1/s -> 10/s: the queueing term asks for a second replica as soon as the
    # ingress has counted the new rate (its lower noise bound, 6.8/s, already needs 2 at 70 %).
    # A backlog grows meanwhile (10/s in, 6.7/s out), by about 3.3 requests a second; the
    # concurrency term alone would ask for a second replica only past target_concurrency (16)
    # waiting requests. The test checks the order, not a clock: the second replica is asked for
    # while fewer than target_concurrency requests are outstanding at the client (an upper bound
    # of what Serve counts). Low rates on purpose: the proxy and the ingress share two busy cores
    # with everything else, and a rate they cannot deliver would not be a step.
    target = 16
    auto = ai.AutoscalingConfig(min_replicas=1, max_replicas=3, target_concurrency=target,
                                upscale_delay_s=0.5, downscale_delay_s=30)
    h = ai.Endpoint(serial_model(150), name="stepper", resources=ai.Resources(cpus=0.5),
                    autoscaling=auto, fast_path=fast).deploy()
    try:
        quiet, step_at, burst = 1.0, 4.0, 10.0
        schedule = [i / quiet for i in range(int(step_at * quiet))]
        schedule += [step_at + i / burst for i in range(int(20 * burst))]
        stop, counts, backlog_at_scale_up = threading.Event(), {"sent": 0, "done": 0}, []

        def watch():
            while not stop.is_set():
                if replicas_asked("stepper") >= 2:
                    backlog_at_scale_up.append(counts["sent"] - counts["done"])
                    stop.set()                    # the rest of the schedule is not needed
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        results = asyncio.run(open_loop(h.url, schedule, stop, counts))
        stop.set()
        watcher.join()
        assert backlog_at_scale_up, "never asked for a second replica in 20 s of load"
        assert backlog_at_scale_up[0] < target, (
            f"asked for a second replica only with {backlog_at_scale_up[0]} requests outstanding: "
            f"the backlog, not the arrival rate, drove it")
        assert {code for _, code in results} == {200}
    finally:
        h.delete()


paths = pytest.mark.parametrize("fast", [False, True], ids=["ingress", "fast_path"])


@paths
def test_nothing_is_shed_while_capacity_suffices(serve_cluster, fast):
    auto = ai.AutoscalingConfig(min_replicas=1, max_replicas=1, latency_slo_ms=300,
                                shed_over_slo=True)
    h = ai.Endpoint(serial_model(30), name="calm", resources=ai.Resources(cpus=0.5),
                    autoscaling=auto, fast_path=fast).deploy()
    try:
        # 8/s of 30 ms each: the replica is a quarter busy; nothing waits long enough to shed.
        results = asyncio.run(open_loop(h.url, [i / 8 for i in range(40)], threading.Event()))
        assert {code for _, code in results} == {200}, sorted(code for _, code in results)
        h.predict(0)
        assert h.metrics().shed_total == 0
    finally:
        h.delete()


@paths
def test_overload_past_the_slo_is_shed_at_once_with_retry_after(serve_cluster, fast):
    auto = ai.AutoscalingConfig(min_replicas=1, max_replicas=1, latency_slo_ms=300,
                                shed_over_slo=True)
    h = ai.Endpoint(serial_model(100), name="shedder", resources=ai.Resources(cpus=0.5),
                    autoscaling=auto, fast_path=fast).deploy()
    try:
        import ray

        for i in range(3):                       # answers: the replica measures its service time
            assert h.predict(i) == 2 * i
        # The evidence to shed on is the capacity the replica reports (1000 / service ms), not
        # the completions measured, which at low load are only the demand.
        store = ray.get_actor(_runtime.store_name("shedder"), namespace=_runtime.NAMESPACE)
        wait_for(lambda: ray.get(store.capacity.remote()) > 0, 20, "the replica's capacity report")
        assert h.predict(3) == 6                 # the edge reads the capacity on a request

        def post(i):
            out = []
            for _ in range(3):                   # 20 clients, 3 requests each, back to back
                t = time.monotonic()
                resp = requests.post(h.url, json=i, timeout=30)
                out.append((resp, time.monotonic() - t))
            return out

        with ThreadPoolExecutor(20) as pool:
            answers = [a for got in pool.map(post, range(20)) for a in got]
        shed = [(r, s) for r, s in answers if r.status_code == 503]
        served = [(r, s) for r, s in answers if r.status_code == 200]
        assert len(shed) + len(served) == 60, [r.status_code for r, _ in answers]
        # 20 clients of 100 ms requests on one replica: 2 s of work queued; an SLO of 300 ms
        # admits about 3 at a time.
        assert shed and len(served) >= 1, (len(shed), len(served))
        for resp, _ in shed:
            assert resp.json()["status"] == "shed" and int(resp.headers["Retry-After"]) >= 1
        # Shed at once, not after waiting its turn: the typical shed answer is faster than the
        # typical served one (which waited up to the SLO and ran 100 ms of model). Medians, not
        # maxima: with both cores hogged one shed answer took 533 ms at the client, 2 ms more
        # than the slowest served one, while the replica logged every 503 within 68 ms (the
        # time was the proxy's, not the edge's).
        assert statistics.median(s for _, s in shed) < statistics.median(s for _, s in served), (
            sorted(round(s, 3) for _, s in shed), sorted(round(s, 3) for _, s in served))

        def counted():
            h.predict(0)                          # an answer makes the ingress push its counters
            return h.metrics().shed_total == len(shed)

        wait_for(counted, 10, "the shed requests in metrics()")
        assert h.metrics().failed_total == 0
    finally:
        h.delete()
