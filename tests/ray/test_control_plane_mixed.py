"""One control plane, a mixed workload: serving and training share 3 nodes x 4 logical H100s under
one live scheduler, queues "serving" (4 H100) and "research" (8 H100) in one cohort.

Every unit is 2 GPUs (a replica, a worker), so each node holds exactly two and placement never
fragments; the transitions are then decided by quota alone:

1. the endpoint (min 1, max 3 replicas) and a low-priority checkpointing TrainJob of research
   (1 x 2 GPUs) run;
2. a bounded burst scales the endpoint to 3 replicas (6 GPUs): 2 borrowed from research's idle quota;
3. a priority-10 TrainJob of research (4 x 2 GPUs, its whole quota) arrives: the low-priority job is
   preempted (research's quota is short) and requeued, the borrowed replica is reclaimed (the
   cluster is short), the endpoint keeps at least min_replicas and the new job runs;
4. the burst ends: the endpoint scales back to min, its queue's quota goes idle, and the preempted
   job resumes by itself from its checkpoint (borrowing it) while the priority-10 job still runs,
   losing no committed step.

The running replica count is sampled the whole time and never drops below min_replicas.
Slow: Serve and two TrainJobs on the multi-node logical-GPU cluster."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ray import serve

import ainative as ai
from ainative import events, scheduling
from ainative.serve import _capacity, _runtime
from tests.support import clusters

pytestmark = pytest.mark.slow
SLOT = 2                                        # GPUs per replica and per worker
REPLICA = ai.Resources(cpus=0.1, accelerator=ai.Accelerator("H100", SLOT))
WORKER = ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100", SLOT))
MIN_REPLICAS, MAX_REPLICAS = 1, 3
BURST_MAX_REQUESTS, BURST_MAX_S = 20_000, 150.0   # the burst's bounds, whatever happens


def slow_model():
    def model(x):
        time.sleep(0.1)
        return x
    return model


def gated_train(config: dict) -> None:
    """Steps of 0.1 s from the last checkpoint; a checkpoint every 5 steps; ends at a checkpoint
    once ``config["gate"]`` exists (or at ``max_steps``, a bound the test never reaches)."""
    ckpt = ai.train.get_checkpoint()
    start = json.load(open(os.path.join(ckpt, "s.json")))["step"] if ckpt else 0
    step = start
    while step < config["max_steps"]:
        step += 1
        time.sleep(0.1)
        if step % 5 == 0:
            d = os.path.join(config["scratch"], f"c{ai.train.get_context().rank}-{step}")
            os.makedirs(d, exist_ok=True)
            json.dump({"step": step}, open(os.path.join(d, "s.json"), "w"))
            ai.train.report({"step": step, "resumed_from": start}, checkpoint=d)
            if os.path.exists(config["gate"]):
                return
        else:
            ai.train.report({"step": step, "resumed_from": start})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cp-mixed")
    saved = os.environ.get("AINATIVE_SCHEDULER_STATE_DIR")
    os.environ["AINATIVE_SCHEDULER_STATE_DIR"] = str(tmp)
    old = (_capacity.CapacityController.scale_up_wait_s, _capacity.CapacityController.lease_poll_s)
    _capacity.CapacityController.scale_up_wait_s = 2.0
    _capacity.CapacityController.lease_poll_s = 0.5
    try:
        handle = clusters.logical_gpu_cluster([clusters.NodeSpec(gpus=4, cpus=4)] * 3, head_cpus=2)
        scheduling.configure(
            [ai.Queue("serving", quota={"H100": 4}, cohort="shared"),
             ai.Queue("research", quota={"H100": 8}, cohort="shared")],
            policy=ai.PolicyConfig(min_runtime_s=0, ping_pong_s=1, preempt_retry_s=0), fresh=True)
        yield handle
    finally:
        scheduling.shutdown()
        clusters.shutdown_current()
        _capacity.CapacityController.scale_up_wait_s, _capacity.CapacityController.lease_poll_s = old
        if saved is None:
            os.environ.pop("AINATIVE_SCHEDULER_STATE_DIR", None)
        else:
            os.environ["AINATIVE_SCHEDULER_STATE_DIR"] = saved


def used(queue: str) -> float:
    return next(q for q in scheduling.status()["queues"] if q["name"] == queue)["used"].get("H100", 0.0)


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    logs = {n: [(e["event"], e.get("reason")) for e in events.read(n) if e["event"] != "checkpoint"]
            for n in ("ep-mixed", "tj-low", "tj-high")}
    st = scheduling.status()
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}: {st['queues']}; events: {logs}; "
                f"external: {st.get('external')}; nodes: {st.get('nodes')}")


def running(name: str) -> int:
    return _runtime.replica_states(name).get("RUNNING", 0)


class Sampler:
    """Samples the endpoint's running replicas every 0.2 s on its own thread."""

    def __init__(self, name: str) -> None:
        self.name, self.samples = name, []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append((time.monotonic(), running(self.name)))
            except Exception as exc:     # noqa: BLE001 - a failed sample is reported, not fatal
                self.errors.append(repr(exc))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def burst(handle: ai.EndpointHandle, threads: int) -> Iterator[dict[str, int]]:
    """Closed-loop handle calls from ``threads`` threads until the block ends, at most
    BURST_MAX_REQUESTS calls and BURST_MAX_S seconds in all."""
    stop, lock, count = threading.Event(), threading.Lock(), {"sent": 0, "ok": 0}
    ends = time.monotonic() + BURST_MAX_S

    def loop() -> None:
        while not stop.is_set() and time.monotonic() < ends:
            with lock:
                if count["sent"] >= BURST_MAX_REQUESTS:
                    return
                count["sent"] += 1
            with contextlib.suppress(Exception):
                if handle.predict(1, timeout_s=10) == 1:
                    with lock:
                        count["ok"] += 1

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        yield count
    finally:
        stop.set()
        for w in workers:
            w.join(15)


def trainjob(tmp_path, name: str, *, workers: int, priority: int) -> ai.TrainJob:
    return ai.TrainJob(gated_train, workers=workers, resources=WORKER, name=name, queue="research",
                       priority=priority, preemptible=True, progress=False,
                       config={"max_steps": 3000, "gate": str(tmp_path / f"{name}.done"),
                               "scratch": str(tmp_path / f"{name}-scratch")},
                       checkpoint=ai.CheckpointConfig(path=str(tmp_path / f"{name}-ckpt")))


def kinds(name: str) -> list[str]:
    return [e["event"] for e in events.read(name)]


def assert_every_step_once(result: Any) -> None:
    steps = [r["step"] for r in result.history]
    assert steps == list(range(1, steps[-1] + 1)), steps


def test_mixed_serving_and_training_borrow_reclaim_preempt_resume(cluster, tmp_path, no_leaks):
    endpoint = ai.Endpoint(slow_model, name="ep-mixed", queue="serving", resources=REPLICA,
                           autoscaling=ai.AutoscalingConfig(
                               min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS,
                               target_concurrency=1.0, upscale_delay_s=0.0, downscale_delay_s=1.0))
    low = trainjob(tmp_path, "tj-low", workers=1, priority=0)
    high = trainjob(tmp_path, "tj-high", workers=4, priority=10)
    handle = endpoint.deploy(timeout_s=90)
    jobs: list[Any] = []
    try:
        with Sampler(handle.name) as sampler:
            _scenario(handle, low, high, jobs, tmp_path)
        assert not sampler.errors, sampler.errors
        assert len(sampler.samples) > 100
        low_point = min(sampler.samples, key=lambda s: s[1])
        assert low_point[1] >= MIN_REPLICAS, f"running replicas fell to {low_point[1]}"
    finally:
        for job in jobs:
            if job.status() not in ("succeeded", "failed") and not job.status().startswith("stopped"):
                with contextlib.suppress(Exception):
                    job.stop(checkpoint=False, grace_s=5)
                    job.wait(timeout_s=30)
        handle.delete()
        with contextlib.suppress(Exception):
            serve.shutdown()
    assert used("serving") == used("research") == 0
    assert all(q["running"] == [] and q["pending"] == [] for q in scheduling.status()["queues"])


def _scenario(handle: ai.EndpointHandle, low: ai.TrainJob, high: ai.TrainJob, jobs: list[Any],
              tmp_path) -> None:
    # 1. the endpoint at min_replicas and the low-priority job, each in its own quota
    assert used("serving") == MIN_REPLICAS * SLOT
    low_run = low.submit()
    jobs.append(low_run)
    wait_for(lambda: low_run.progress().get("step", 0) >= 10, 90, "the low-priority job to commit")
    assert used("research") == SLOT
    with burst(handle, threads=4) as sent:
        # 2. the burst: 3 replicas, 6 GPUs on a 4-GPU quota: 2 borrowed from research
        wait_for(lambda: handle.capacity()["admitted"] == MAX_REPLICAS
                 and running(handle.name) == MAX_REPLICAS, 90, "3 replicas under the burst")
        assert used("serving") == MAX_REPLICAS * SLOT > 4
        # 3. the priority-10 job takes research's whole quota: preempts, reclaims, runs
        high_run = high.submit()
        jobs.append(high_run)
        wait_for(lambda: high_run.progress().get("step", 0) >= 1, 120, "the priority-10 job to run")
        wait_for(lambda: low_run.status() == "requeued", 30, "the low-priority job requeued")
        assert used("research") == 8 and used("serving") <= 4
        assert handle.capacity()["admitted"] <= 2 and running(handle.name) >= MIN_REPLICAS
        ep_log = events.read(handle.name)
        assert any(e["event"] == "scaled_down" and e["reason"] == "preempted" for e in ep_log), ep_log
        assert "preempted" in kinds("tj-low") and "requeued" in kinds("tj-low")
        pending = {q["name"]: [p["job_id"] for p in q["pending"]] for q in scheduling.status()["queues"]}
        assert [p.startswith("tj-low") for p in pending["research"]] == [True], pending
        # the burst goes on: the endpoint's scale-up requests wait their turn, nothing else does
        assert all(p.startswith("ep-mixed+") for p in pending["serving"]), pending
        assert not pending["default"], pending
        assert "resumed" not in kinds("tj-low")
    assert sent["ok"] > 0 and sent["sent"] <= BURST_MAX_REQUESTS
    # 4. the burst is over: back to min, and the preempted job resumes by itself (borrowing
    #    serving's idle quota) while the priority-10 job still holds research's
    wait_for(lambda: running(handle.name) == MIN_REPLICAS and handle.capacity()["admitted"]
             == MIN_REPLICAS, 60, "the endpoint back at min_replicas")
    wait_for(lambda: "resumed" in kinds("tj-low") and low_run.status() == "running", 90,
             "the preempted job to resume")
    assert high_run.status() == "running" and used("research") == 8 + SLOT
    (tmp_path / "tj-high.done").write_text("")
    (tmp_path / "tj-low.done").write_text("")
    high_result, low_result = high_run.wait(timeout_s=90), low_run.wait(timeout_s=90)
    assert high_result.status == "succeeded" and low_result.status == "succeeded"
    log = events.read("tj-low")
    preempted = next(e for e in log if e["event"] == "preempted")
    resumed = next(e for e in log if e["event"] == "resumed")
    committed = preempted["step"]
    assert committed >= 10 and committed % 5 == 0 and resumed["step"] == committed
    assert low_result.metrics["resumed_from"] == committed          # no committed step lost
    assert_every_step_once(low_result)
    assert_every_step_once(high_result)
    assert "preempted" not in kinds("tj-high")
