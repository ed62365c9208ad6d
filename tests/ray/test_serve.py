"""Endpoints on real Ray Serve over HTTP on 127.0.0.1: one Serve instance for the module."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import ray
import requests

import ainative as ai
from ainative.serve import _runtime
from tests.support import waiting


def sleepy(a_ms: float = 5.0, b_ms: float = 1.0):
    """A factory: the model costs a + b * batch ms of emulated device time."""
    def factory():
        def model(batch):
            if any(x == "reject" for x in batch):
                raise ValueError("input 'reject' is not a number")
            time.sleep((a_ms + b_ms * len(batch)) / 1000.0)
            return [x * 2 for x in batch]
        return model
    return factory


def sleepy_one(ms: float = 20.0):
    """A factory for an unbatched model: one request per call, ``ms`` of device time."""
    def factory():
        def model(x):
            time.sleep(ms / 1000.0)
            return x * 2
        return model
    return factory


def unbatched():
    return lambda x: {"double": x * 2, "pid": os.getpid(),
                      "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}


def broken():
    raise RuntimeError("weights file missing: /models/none.pt")


@pytest.fixture(scope="module")
def serve_cluster(ray_local):
    yield ray_local
    from ray import serve

    serve.shutdown()


def load(url, *, threads, count, seconds, payload=1, until=None, record=None):
    """Closed-loop load on 127.0.0.1, bounded by request count and time, ended early once the
    ``until`` event is set. -> status codes (also appended to ``record`` as they come)"""
    codes: list[int] = [] if record is None else record
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    per = count // threads

    def worker(_):
        with requests.Session() as s:
            for _ in range(per):
                if time.monotonic() > deadline or (until is not None and until.is_set()):
                    return
                try:
                    code = s.post(url, json=payload, timeout=30).status_code
                except requests.RequestException:
                    code = -1
                with lock:
                    codes.append(code)

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(worker, range(threads)))
    return codes


def wait_for(predicate, timeout_s, what):
    return waiting.until(what, predicate, timeout_s)


@pytest.mark.parametrize("fast", [False, True], ids=["ingress", "fast_path"])
def test_deploy_predict_http_and_bad_input(serve_cluster, fast):
    name = "basic-fast" if fast else "basic"
    ep = ai.Endpoint(sleepy(), name=name, route=f"/{name}", resources=ai.Resources(cpus=0.5),
                     batching=ai.BatchingConfig(max_batch_size=8, max_wait_ms=2),
                     max_request_bytes=1024, fast_path=fast)
    h = ep.deploy()
    try:
        assert h.url.startswith("http://127.0.0.1:") and h.url.endswith(f"/{name}")
        deployments = set(_serve_apps()[name].deployments)
        assert deployments == ({f"{name}-model"} if fast else {f"{name}-model", f"{name}-ingress"})
        assert h.predict(21) == 42
        assert requests.post(h.url, json=5, timeout=10).json() == {"result": 10}
        base = h.url.rsplit("/", 1)[0]
        assert requests.post(base + "/nothing-here", json=1, timeout=10).status_code == 404
        bad = requests.post(h.url, data=b"{not json", timeout=10)
        assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
        rejected = requests.post(h.url, json="reject", timeout=10)
        assert rejected.status_code == 400 and "not a number" in rejected.json()["error"]
        big = requests.post(h.url, data=b"1" * 2048, timeout=10)
        assert big.status_code == 413 and "max_request_bytes" in big.json()["error"]
        with pytest.raises(ai.errors.EndpointError) as info:
            h.predict("reject")
        assert info.value.status_code == 400
        with pytest.raises(ai.errors.ServeError, match="already deployed"):
            ai.Endpoint(sleepy(), name=name).deploy()
    finally:
        h.delete()
    assert _runtime.replica_actor_names(name) == []
    wait_for(lambda: not _store_alive(name), 10, "the metrics store to go")


def _store_alive(name):
    try:
        ray.get_actor(_runtime.store_name(name), namespace=_runtime.NAMESPACE)
        return True
    except ValueError:
        return False


def test_batching_forms_batches_under_concurrent_load(serve_cluster):
    # 200 ms a batch: while one runs, the 12 clients' next requests queue at the replica however
    # slowly a loaded machine delivers them (at 10 ms, a busy machine's proxy delivered them one by
    # one, and singletons are then right: sparse arrivals skip the batch wait)
    ep = ai.Endpoint(sleepy(a_ms=200, b_ms=1), name="batchy", resources=ai.Resources(cpus=0.5),
                     batching=ai.BatchingConfig(max_batch_size=16, max_wait_ms=10),
                     autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=1))
    h = ep.deploy()
    try:
        codes = load(h.url, threads=12, count=240, seconds=20)
        assert codes and set(codes) == {200}
        wait_for(lambda: h.metrics().requests_total >= len(codes), 5, "metrics to arrive")
        m = h.metrics()
        sizes = m.batch_sizes
        assert max(sizes) > 1 and sum(n * c for n, c in sizes.items()) >= len(codes)
        rows = sum(n * c for n, c in sizes.items())
        assert sum(n * c for n, c in sizes.items() if n > 1) > rows / 2, sizes   # most requests batched
        assert m.p50_ms is not None and m.p99_ms >= m.p50_ms > 0 and m.qps > 0
        assert m.replicas_running == 1 and m.replica_seconds > 0
    finally:
        h.delete()


def test_fractional_gpus_pack_and_infeasible_is_refused(serve_cluster):
    before = ray.available_resources().get("GPU", 0)
    res = ai.Resources(cpus=0.25, accelerator=ai.Accelerator("H100", count=0.5))
    ep = ai.Endpoint(unbatched, name="frac", resources=res,
                     autoscaling=ai.AutoscalingConfig(min_replicas=2, max_replicas=2))
    h = ep.deploy()
    try:
        wait_for(lambda: before - ray.available_resources().get("GPU", 0) >= 1.0 - 1e-6, 10,
                 "two half-GPU replicas to hold one GPU in all")
        assert before - ray.available_resources().get("GPU", 0) == pytest.approx(1.0)
        out = h.predict(3)
        assert out["double"] == 6 and out["gpus"] not in (None, "")
    finally:
        h.delete()
    with pytest.raises(ai.InfeasibleError, match="no node"):
        ai.Endpoint(unbatched, name="nol4", resources=ai.Resources(
            cpus=0.25, accelerator=ai.Accelerator("L4", count=0.5))).deploy()
    assert "nol4" not in _serve_apps()


def _serve_apps():
    from ray import serve

    return serve.status().applications


@pytest.mark.parametrize("fast", [False, True], ids=["ingress", "fast_path"])
def test_bad_model_raises_model_load_error_and_leaves_nothing(serve_cluster, fast):
    t0 = time.monotonic()
    with pytest.raises(ai.errors.ModelLoadError) as info:
        ai.Endpoint(broken, name="broken", resources=ai.Resources(cpus=0.25),
                    fast_path=fast).deploy()
    assert "weights file missing" in info.value.traceback
    assert "RuntimeError" in str(info.value)
    assert time.monotonic() - t0 < 30
    assert "broken" not in _serve_apps()
    assert _runtime.replica_actor_names("broken") == []


@pytest.mark.parametrize("fast", [False, True], ids=["ingress", "fast_path"])
def test_replica_killed_under_load_is_replaced(serve_cluster, fast):
    """Behind the ingress the requests in flight on the dead replica are retried once
    (idempotent): at most 2 may fail. On the one-hop path nothing retries them: at most the six
    clients' requests then running fail (each client sends one at a time; Serve re-routes what it
    was still routing), with no answer of ours among them (no 503 "unavailable")."""
    name = "crashy-fast" if fast else "crashy"
    ep = ai.Endpoint(sleepy(a_ms=5), name=name, resources=ai.Resources(cpus=0.5),
                     batching=ai.BatchingConfig(max_batch_size=8, max_wait_ms=2),
                     autoscaling=ai.AutoscalingConfig(min_replicas=2, max_replicas=2),
                     fast_path=fast)
    h = ep.deploy()
    try:
        result: list[int] = []
        loader = threading.Thread(target=lambda: load(h.url, threads=6, count=600, seconds=6,
                                                      record=result))
        loader.start()
        wait_for(lambda: len(result) >= 20, 30, "the load to be under way")
        victims = [n for n in _runtime.replica_actor_names(name) if f"{name}-model" in n]
        assert len(victims) == 2
        ray.kill(ray.get_actor(victims[0], namespace="serve"), no_restart=True)
        loader.join(30)
        failed = [c for c in result if c != 200]
        assert len(result) > 100 and len(failed) <= (6 if fast else 2), (len(result), failed)
        assert not fast or set(failed) <= {500, 502, -1}, failed
        wait_for(lambda: h.metrics().replicas_running == 2
                 and victims[0] not in _runtime.replica_actor_names(name), 30,
                 "the dead replica to be replaced")
        assert h.predict(1) == 2
    finally:
        h.delete()
    assert _runtime.replica_actor_names(name) == []


def slow_on_request():
    """A factory: ``{"sleep": s}`` sleeps s seconds, anything else is doubled."""
    def model(x):
        if isinstance(x, dict):
            time.sleep(float(x["sleep"]))
            return "slept"
        return x * 2
    return model


@pytest.mark.parametrize("fast", [False, True], ids=["ingress", "fast_path"])
def test_a_request_in_flight_on_a_killed_replica(serve_cluster, fast):
    """The one difference in failure behaviour between the paths (docs/serving.md): the ingress
    retries a request whose replica died on the replacement (200); on the one-hop path nothing
    retries it, and the client gets an error."""
    name = "inflight-fast" if fast else "inflight"
    h = ai.Endpoint(slow_on_request, name=name, resources=ai.Resources(cpus=0.5),
                    autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=1),
                    request_timeout_s=90, fast_path=fast).deploy()
    store = ray.get_actor(_runtime.store_name(name), namespace=_runtime.NAMESPACE)
    try:
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(requests.post, h.url, json={"sleep": 3}, timeout=120)
            wait_for(lambda: ray.get(store.summary.remote())["ongoing"] >= 1, 30,
                     "the slow request to be on the replica")
            (victim,) = [n for n in _runtime.replica_actor_names(name) if f"{name}-model" in n]
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
            code = _code(answer)
        # ingress: retried once (idempotent) and answered by the replacement; one hop: Serve's
        # proxy answers with its own 500 (or the connection drops: -1)
        assert code == 200 if not fast else code in (500, -1), code
        wait_for(lambda: _answers(h), 60, "the replacement replica to serve")
    finally:
        h.delete()


def _code(future):
    try:
        return future.result().status_code
    except requests.RequestException:
        return -1


def _answers(h):
    try:
        return h.predict(1, timeout_s=5) == 2
    except Exception:
        return False


def test_update_rolls_without_dropping_requests(serve_cluster):
    ep = ai.Endpoint(sleepy(a_ms=2), name="rolling", resources=ai.Resources(cpus=0.5),
                     batching=ai.BatchingConfig(max_batch_size=8, max_wait_ms=2))
    h = ep.deploy()
    try:
        result: list[int] = []
        loader = threading.Thread(target=lambda: result.extend(
            load(h.url, threads=4, count=4000, seconds=5)))
        loader.start()
        time.sleep(1.0)

        def triple():
            return lambda batch: [x * 3 for x in batch]

        h.update(triple)
        loader.join(30)
        assert result and set(result) == {200}, sorted(set(result))
        assert h.predict(2) == 6
    finally:
        h.delete()


@pytest.mark.slow
def test_scales_up_under_load_then_down(serve_cluster):
    auto = ai.AutoscalingConfig(min_replicas=1, max_replicas=3, target_concurrency=2,
                                upscale_delay_s=0.3, downscale_delay_s=2.0)
    ep = ai.Endpoint(sleepy_one(20), name="scaly", resources=ai.Resources(cpus=0.5),
                     autoscaling=auto)
    h = ep.deploy()
    try:
        peak = [0]
        done, scaled = threading.Event(), threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], h.metrics().replicas_running)
                if peak[0] >= 2:
                    scaled.set()
                time.sleep(0.3)

        watcher = threading.Thread(target=watch)
        watcher.start()
        # Load until a second replica serves, within a deadline: the autoscaler decides in about a
        # second, but a new replica's process start takes 5 s or more on two busy cores (time to
        # scale is measured in benchmarks/serve_autoscaling.py, not here).
        codes = load(h.url, threads=10, count=100_000, seconds=40, until=scaled)
        done.set()
        watcher.join()
        assert set(codes) == {200}
        assert peak[0] >= 2, f"never scaled up (peak {peak[0]})"
        wait_for(lambda: h.metrics().replicas_running == 1, 30, "scale back down to 1")
    finally:
        h.delete()


@pytest.mark.slow
def test_scale_to_zero_and_cold_start_is_measured(serve_cluster):
    auto = ai.AutoscalingConfig(min_replicas=1, max_replicas=1, scale_to_zero_after_s=1.0)
    h = ai.Endpoint(sleepy(), name="napper", resources=ai.Resources(cpus=0.5),
                    batching=ai.BatchingConfig(), autoscaling=auto).deploy()
    try:
        assert h.predict(1) == 2
        wait_for(lambda: h.metrics().replicas_running == 0
                 and not [n for n in _runtime.replica_actor_names("napper") if "model" in n],
                 30, "scale to zero")
        # The first request may itself have been a cold start (on a busy machine the replica can
        # reach scale_to_zero_after_s=1 before it arrives): only a cold start reported after the
        # one timed here is its own (a busy fresh-clone run read the earlier one, 4.77 s against
        # the 3.75 s timed, off a wait that any reported cold start satisfied).
        before = len(h.metrics().cold_starts_s)
        t0, w0 = time.monotonic(), time.time()
        assert requests.post(h.url, json=4, timeout=30).json() == {"result": 8}
        cold, cold_wall = time.monotonic() - t0, time.time() - w0
        wait_for(lambda: len(h.metrics().cold_starts_s) > before, 15, "the cold start to be reported")
        new = h.metrics().cold_starts_s[before:]
        assert len(new) == 1, new
        reported = new[0]
        # The product times it across processes with the wall clock (ingress arrival to the
        # replica's answer). Under a CPU hog it once reported 7.18 s against 6.76 s on the
        # client's monotonic clock, which only a wall-clock adjustment during the request can
        # explain (the request started after t0 and ended before the client's read); so the
        # bound also takes the client's wall-clock time.
        assert 0 < reported <= max(cold, cold_wall) + 0.1, (reported, cold, cold_wall)
    finally:
        h.delete()
