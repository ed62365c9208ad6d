"""Endpoints and raw gangs under the live scheduler: admitted, capped, preempted, metered, held to
their budgets and reclaimed when idle. 2 nodes x 2 logical H100s; queues "a" and "b" (2 H100 each,
one cohort) and "c" (1 H100, no cohort); a price of 3.6 USD per H100-hour (0.001 USD a second).
Slow: several Serve deployments on the multi-node logical-GPU cluster."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ray import serve

import ainative as ai
from ainative import errors, events, scheduling
from ainative.cost import ledger as ledger_mod
from ainative.cost import probes
from ainative.policy.engine import PolicyConfig
from ainative.serve import _capacity, _runtime
from tests.support import clusters, waiting

pytestmark = pytest.mark.slow
ONE = ai.Resources(cpus=0.1, accelerator=ai.Accelerator("H100", 1))
HALF = ai.Resources(cpus=0.1, accelerator=ai.Accelerator("H100", 0.5))


def slow_model():
    def model(x):
        time.sleep(0.1)
        return x
    return model


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-adm")
    saved = {k: os.environ.get(k) for k in ("AINATIVE_SCHEDULER_STATE_DIR", probes.PROBE_ENV)}
    os.environ["AINATIVE_SCHEDULER_STATE_DIR"] = str(tmp)
    util = tmp / "utilization"
    util.write_text("1.0")
    os.environ[probes.PROBE_ENV] = f"file:{util}"      # replicas read it (travels to them)
    old = (_capacity.CapacityController.scale_up_wait_s, _capacity.CapacityController.lease_poll_s)
    _capacity.CapacityController.scale_up_wait_s = 2.0
    _capacity.CapacityController.lease_poll_s = 0.5
    handle = clusters.logical_gpu_cluster([clusters.NodeSpec(gpus=2, cpus=2)] * 2, head_cpus=2)
    queues = [ai.Queue("a", quota={"H100": 2}, cohort="r"), ai.Queue("b", quota={"H100": 2}, cohort="r"),
              ai.Queue("c", quota={"H100": 1})]
    prices = ai.PriceTable({"H100": 3.6}, cpu_core_hour_usd=0.0)
    ledger_path = str(tmp / "ledger.sqlite")
    try:
        scheduling.configure(queues, prices, policy=PolicyConfig(min_runtime_s=0, preempt_retry_s=0),
                             guardrails=ai.cost.scheduler_guardrails(queues, prices,
                                                                     ledger_path=ledger_path),
                             fresh=True)
        yield {"ledger": ledger_path, "util": util, "cluster": handle}
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        scheduling.shutdown()
        clusters.shutdown_current()
        _capacity.CapacityController.scale_up_wait_s, _capacity.CapacityController.lease_poll_s = old
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def used(queue: str) -> float:
    return next(q for q in scheduling.status()["queues"] if q["name"] == queue)["used"].get("H100", 0.0)


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
    return waiting.until(what, cond, timeout_s)


@contextlib.contextmanager
def load(handle: ai.EndpointHandle, threads: int) -> Iterator[None]:
    """Closed-loop requests from ``threads`` threads until the block ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                handle.predict(1, timeout_s=10)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        yield
    finally:
        stop.set()
        for w in workers:
            w.join(15)


def endpoint(name: str, queue: str, *, resources: ai.Resources = ONE, lo: int = 1, hi: int = 4,
             **kw: Any) -> ai.Endpoint:
    return ai.Endpoint(slow_model, name=name, queue=queue, resources=resources,
                       autoscaling=ai.AutoscalingConfig(min_replicas=lo, max_replicas=hi,
                                                        target_concurrency=1.0, upscale_delay_s=0.0,
                                                        downscale_delay_s=1.0), **kw)


def running(handle: ai.EndpointHandle) -> int:
    return _runtime.replica_states(handle.name).get("RUNNING", 0)


def serve_view(handle: ai.EndpointHandle) -> tuple[int, int]:
    """The model deployment's (target, live) replicas as Serve's controller has them in one
    answer: live is every replica but a stopping one (starting ones count)."""
    from ray.serve.context import _get_global_client

    apps = _get_global_client().get_serve_details().get("applications", {})
    dep = apps.get(handle.name, {}).get("deployments", {}).get(f"{handle.name}-model", {})
    live = [r for r in dep.get("replicas", []) if str(r.get("state")) != "STOPPING"]
    return int(dep.get("target_num_replicas", 0)), len(live)


def test_unknown_queue_is_a_config_error_before_anything_is_reserved(cluster):
    before = clusters.held()
    with pytest.raises(errors.ConfigError, match="names no configured queue"):
        endpoint("ep-bad", "nope").deploy(timeout_s=30)
    with pytest.raises(errors.UnknownQueueError):
        scheduling.reserve([ONE], queue="nope")
    assert not _runtime.app_exists("ep-bad")
    assert all(used(q) == 0 for q in "abc")
    assert clusters.leaks(before=before, wait_s=2)["placement_groups"] == []


def test_endpoint_not_admitted_starts_no_serve(cluster):
    from ray.serve.context import _get_global_client

    serve.shutdown()            # whatever ran before: this test needs Serve down
    _runtime.forget_other_clusters()
    with scheduling.reserve([ONE], queue="c", timeout_s=30):              # queue c is full
        with pytest.raises(errors.AdmissionError):
            endpoint("ep-wait", "c").deploy(timeout_s=2)
        assert _get_global_client(raise_if_no_controller_running=False) is None, \
            "Serve was started for an endpoint that was never admitted"
        assert used("c") == 1
    assert used("c") == 0


def test_endpoint_admitted_for_min_replicas_and_trainjob_waits(cluster, tmp_path):
    handle = endpoint("ep-min", "b", lo=2, hi=2).deploy(timeout_s=60)
    try:
        assert used("b") == 2
        assert any(j.startswith("ep-min") for j in next(
            q for q in scheduling.status()["queues"] if q["name"] == "b")["running"])
        job = ai.TrainJob(_train, workers=2, resources=ai.Resources(cpus=0.1,
                          accelerator=ai.Accelerator("H100", 2)), name="tj-over", queue="a",
                          progress=False)
        run = job.submit()
        wait_for(lambda: any(p["job_id"].startswith("tj-over") for q in scheduling.status()["queues"]
                             for p in q["pending"]), 30, "the TrainJob to wait in queue a")
        time.sleep(1.0)  # a wrong scheduler would admit it within one pass; it must still wait
        assert run.status() == "pending" and used("a") == 0
    finally:
        handle.delete()
    assert run.wait(timeout_s=120).status == "succeeded"
    assert used("b") == 0 and handle.capacity() == {}


def _train(config: dict) -> None:
    ai.train.report({"step": 1})


def test_scale_up_refused_by_quota_keeps_size_and_says_why(cluster):
    handle = endpoint("ep-quota", "c", hi=3).deploy(timeout_s=60)
    try:
        with load(handle, threads=3):
            state = wait_for(lambda: (s := handle.capacity()) and "over quota" in s["why"] and s,
                             30, "a refused scale-up")
            assert state["want"] >= 2 and state["admitted"] == 1
            why = scheduling.why("ep-quota")   # one answer: the scale-up request comes and goes
            assert "over quota" in why or "not queued" in why, why
            for _ in range(5):
                assert running(handle) <= 1 and used("c") <= 1
                time.sleep(0.3)
        assert [e for e in events.read("ep-quota") if e["event"] == "scale_up_waiting"]
    finally:
        handle.delete()


def test_preemption_scales_endpoint_to_min_never_below(cluster):
    handle = endpoint("ep-pre", "b", lo=2, hi=4).deploy(timeout_s=60)
    try:
        with load(handle, threads=6):
            wait_for(lambda: handle.capacity()["admitted"] == 4 and running(handle) == 4, 60,
                     "4 replicas (2 borrowed from queue a)")
            assert used("b") == 4
            gang = scheduling.reserve([ONE, ONE], queue="a", timeout_s=60)   # a reclaims its quota
            try:
                assert used("a") == 2
                wait_for(lambda: running(handle) == 2, 30, "the endpoint back at min_replicas")
                with pytest.raises(errors.AdmissionError):
                    scheduling.reserve([ONE], queue="a", timeout_s=2)        # base is not preemptible
                for _ in range(5):
                    assert running(handle) >= 2 and handle.capacity()["admitted"] == 2
                    time.sleep(0.3)
            finally:
                gang.release()
        assert [e for e in events.read("ep-pre") if e["event"] == "scaled_down"
                and e["reason"] == "preempted"]
    finally:
        handle.delete()
    assert used("a") == used("b") == 0


def test_reserve_with_queue_admitted_waits_and_releases(cluster):
    first = scheduling.reserve([ONE], queue="c", timeout_s=30)
    assert used("c") == 1 and first.lease is not None
    with pytest.raises(errors.AdmissionError, match="over quota"):
        scheduling.reserve([ONE], queue="c", timeout_s=2)
    first.release()
    assert used("c") == 0
    with scheduling.reserve([ONE], queue="c", timeout_s=30) as again:
        assert used("c") == 1 and again.admitted_s is not None
    assert used("c") == 0 and again.released_s is not None


def test_endpoint_and_gang_charges_match_held_time_times_price(cluster):
    from ainative.serve import endpoint as ep_mod

    handle = endpoint("ep-meter", "b", resources=HALF, lo=1, hi=3).deploy(timeout_s=60)
    controller = ep_mod._CONTROLLERS[handle.name]
    reserve_called = time.time()
    gang = scheduling.reserve([ONE], queue="a", timeout_s=30)
    try:
        with load(handle, threads=3):
            wait_for(lambda: handle.capacity()["admitted"] >= 2, 30, "a scale-up")
            time.sleep(6.0)   # hold the leases a while: the tolerance is 1% of the held time
    finally:
        release_called = time.time()
        gang.release()
        handle.delete()
    records = controller.state()["leases"]
    assert len(records) >= 2 and all(r["released_s"] is not None for r in records), records
    names = {r["name"] for r in records}
    charges = [c for c in ledger_mod.Ledger(cluster["ledger"]).charges() if c.gpu_seconds > 0]
    held = sum(sum(r["gpus"].values()) * (r["released_s"] - r["admitted_s"]) for r in records)
    mine = [c for c in charges if c.job in names]
    # The ledger charges from the scheduler's admission to its receipt of the release, and the
    # records carry those two times as the scheduler reports them (a record stamped on this side,
    # when admit() returned, was up to ~0.8 s late per lease under a CPU hog: 17.97 GPU-s charged
    # against 16.00 recorded). What is left is the ledger's float arithmetic and the last meter
    # tick; a missing or doubled charge is seconds.
    slack = 0.02 * len(records)
    assert held > 5 and sum(c.gpu_seconds for c in mine) == pytest.approx(held, rel=0.01, abs=slack)
    assert sum(c.cost_usd for c in mine) == pytest.approx(held * 0.001, rel=0.01, abs=slack * 0.001)
    assert {c.accelerator for c in mine} == {"H100"}
    # The gang's charged interval lies between what was certainly held (from reserve() returning
    # to release() being called) and what may have been (from reserve() called to release() done).
    gang_charged = sum(c.gpu_seconds for c in charges if c.job == gang.lease.job_id)
    surely, at_most = release_called - gang.admitted_s, gang.released_s - reserve_called
    assert surely > 5 and surely * 0.99 <= gang_charged <= at_most * 1.01, (surely, gang_charged, at_most)
    # ...and it is the interval the scheduler reported to the gang
    assert gang_charged == pytest.approx(gang.released_s - gang.admitted_s, abs=0.02)


def test_budget_min_replicas_scales_to_min_and_refuses_more(cluster):
    budget = ai.Budget(gpu_hours=0.003, warn_at=0.5, action="min_replicas")   # 10.8 GPU-seconds
    handle = endpoint("ep-bmin", "b", lo=1, hi=3, budget=budget).deploy(timeout_s=60)
    try:
        with load(handle, threads=3):
            wait_for(lambda: handle.capacity()["hold"] == "budget", 60, "the budget to bite")
            # The budget can bite while Serve still acts on the target it set before (CI at
            # f8b18f9: RUNNING read 1, then the two extras it was adding came up, 3, before Serve
            # learnt the cap a tick later). Wait until Serve's own target is min_replicas and
            # nothing beyond it runs or starts; from then on nothing may come back.
            wait_for(lambda: serve_view(handle) == (1, 1) and running(handle) == 1, 30,
                     "min_replicas")
            for _ in range(5):
                assert handle.capacity()["admitted"] == 1 and serve_view(handle) == (1, 1)
                time.sleep(0.3)
            assert "budget" in handle.why()
            assert handle.predict(3) == 3            # still serving at min_replicas
        kinds = [e["event"] for e in events.read("ep-bmin")]
        assert "budget_warning" in kinds and "scaled_to_min" in kinds
    finally:
        handle.delete()


def test_budget_stop_deletes_the_endpoint(cluster):
    handle = endpoint("ep-bstop", "b", lo=1, hi=1,
                      budget=ai.Budget(gpu_hours=0.001, action="stop")).deploy(timeout_s=60)
    wait_for(lambda: not _runtime.app_exists("ep-bstop"), 60, "the endpoint to be deleted")
    wait_for(lambda: used("b") == 0, 10, "its lease released")
    assert any(e["event"] == "stopped" and e["reason"] == "budget" for e in events.read("ep-bstop"))
    handle.delete()   # idempotent


def test_idle_reclaim_scales_endpoint_to_min_via_probe(cluster):
    util = cluster["util"]
    util.write_text("1.0")
    idle = ai.IdlePolicy(threshold=0.5, window_s=2.0, warn_after_s=1.0)
    handle = endpoint("ep-idle", "b", lo=1, hi=3, idle=idle).deploy(timeout_s=60)
    try:
        with load(handle, threads=3):
            wait_for(lambda: handle.capacity()["admitted"] == 3, 30, "3 replicas")
            util.write_text("0.0")                    # the replicas' probe now reads idle
            wait_for(lambda: handle.capacity()["hold"] == "idle", 30, "idle reclaim")
            wait_for(lambda: running(handle) == 1, 30, "min_replicas")
            # the stopped extras' leases go once Serve runs no more than min (the next tick)
            wait_for(lambda: used("b") == 1, 10, "the extras' leases released")
            util.write_text("1.0")                    # busy again: scale-ups allowed again
            wait_for(lambda: handle.capacity()["admitted"] >= 2, 30, "a scale-up after idle")
        assert any(e["event"] == "scaled_down" and e["reason"] == "idle"
                   for e in events.read("ep-idle"))
    finally:
        handle.delete()
