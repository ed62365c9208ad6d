"""A TrainJob borrowing another team's GPUs is preempted when a higher-priority gang of that team
reclaims its quota: it checkpoints, releases its gang, goes back to its queue with its priority and
age, and resumes by itself from its checkpoint when the GPUs come back, losing no committed step.
Idle reclaim under ``scheduling.configure(idle=...)``: the utilisation probe runs in the workers
(named by $AINATIVE_UTILIZATION_PROBE) and reaches the scheduler through the lease.
Slow: TrainJob starts on the multi-node logical-GPU cluster."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import ainative
from ainative import scheduling
from ainative.policy.engine import PolicyConfig
from ainative.scheduling import protocol
from tests.support import clusters

pytestmark = pytest.mark.slow
TWO_GPUS = ainative.Resources(cpus=0.5, accelerator=ainative.Accelerator("H100", 2))


def train_fn(config: dict) -> None:
    ckpt = ainative.train.get_checkpoint()
    start = json.load(open(os.path.join(ckpt, "s.json")))["step"] if ckpt else 0
    end = config["steps"] or start + 3
    for step in range(start + 1, end + 1):
        time.sleep(0.05)
        if step % 5 == 0 or step == end:
            d = os.path.join(config["scratch"], f"c{ainative.train.get_context().rank}-{step}")
            os.makedirs(d, exist_ok=True)
            json.dump({"step": step}, open(os.path.join(d, "s.json"), "w"))
            ainative.train.report({"step": step, "resumed_from": start}, checkpoint=d)
        else:
            ainative.train.report({"step": step, "resumed_from": start})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from clusters.two_team_scheduler(str(tmp_path_factory.mktemp("sched-tj")))


def make_job(tmp_path, workers: int, steps: int) -> ainative.TrainJob:
    return ainative.TrainJob(train_fn, workers=workers, resources=TWO_GPUS, name="tj-b", queue="b",
                             config={"steps": steps, "scratch": str(tmp_path / "scratch")},
                             checkpoint=ainative.CheckpointConfig(path=str(tmp_path / "ckpt")),
                             progress=False)


def test_trainjob_preempted_by_reclaim_requeues_and_resumes_by_itself(cluster, tmp_path):
    from ainative import events

    handle = make_job(tmp_path, workers=2, steps=60).submit()    # 4 GPUs: borrows 2 of a's
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        used = {q["name"]: q["used"]["H100"] for q in scheduling.status()["queues"]}
        if used["b"] == 4 and handle.progress().get("step", 0) >= 10:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"TrainJob did not get going: {handle.status()} {handle.progress()}")
    submitted = min(e["ts"] for e in events.read("tj-b") if e["event"] == "submitted")
    got: dict = {}
    waiter = threading.Thread(target=lambda: got.update(lease=protocol.admission_for("a").admit(
        protocol.JobRequest(name="a-gang", kind="gang", bundles=(TWO_GPUS,), queue="a", priority=10),
        timeout_s=90)))
    waiter.start()
    waiter.join(90)
    assert "lease" in got, "team a was not admitted after the reclaim"
    deadline = time.monotonic() + 30
    while handle.status() != "requeued" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert handle.status() == "requeued"          # waiting in its queue, not ended
    pending = [p for q in scheduling.status()["queues"] for p in q["pending"]]
    assert [p["job_id"].startswith("tj-b-") for p in pending] == [True]
    assert abs(pending[0]["submit_s"] - submitted) < 1.0        # it kept its age (first submit)
    gang = scheduling.reserve([TWO_GPUS], timeout_s=30)         # a's placement really exists
    gang.release()
    got["lease"].release("succeeded")                           # the GPUs come back: it resumes
    result = handle.wait(timeout_s=120)
    assert result.status == "succeeded"
    log = events.read("tj-b")
    kinds = [e["event"] for e in log]
    for kind in ("preempted", "requeued", "resumed"):
        assert kind in kinds, kinds
    preempted = next(e for e in log if e["event"] == "preempted")
    resumed = next(e for e in log if e["event"] == "resumed")
    committed = preempted["step"]
    assert committed >= 5 and committed % 5 == 0 and resumed["step"] == committed
    assert result.metrics["resumed_from"] == committed            # no committed step lost
    assert [r["step"] for r in result.history] == list(range(1, 61))
    assert all(q["running"] == [] for q in scheduling.status()["queues"])


def test_idle_trainjob_is_reclaimed_from_the_workers_probe(cluster, tmp_path, monkeypatch):
    from tests.support import probes

    monkeypatch.setenv("AINATIVE_UTILIZATION_PROBE", "tests.support.probes:idle")
    queues = [ainative.Queue("a", quota={"H100": 2}, cohort="r"),
              ainative.Queue("b", quota={"H100": 2}, cohort="r")]
    scheduling.configure(queues, idle=ainative.IdlePolicy(window_s=3, warn_after_s=1), fresh=True)
    try:
        job = make_job(tmp_path, workers=1, steps=100_000)
        result = job.run()
    finally:
        scheduling.configure(queues, policy=PolicyConfig(min_runtime_s=0, preempt_retry_s=0), fresh=True)
    assert result.status == "stopped: idle"
    assert probes.CALLS == 0              # read in the workers, never in this driver
    from ainative import events

    stopped = [e for e in events.read("tj-b") if e["event"] == "stopping"]
    assert stopped and stopped[-1]["reason"] == "idle"


def test_stop_while_pending_takes_the_job_out_of_its_queue_for_good(cluster, tmp_path):
    """``stop()`` on a TrainJob still waiting for admission ends it at once, "stopped: cancelled",
    and it never starts later when the GPUs come free."""
    from ainative import events

    hold = protocol.admission_for("a").admit(     # the whole cluster, not preemptible
        protocol.JobRequest(name="a-hold", kind="gang", bundles=(TWO_GPUS, TWO_GPUS), queue="a",
                            preemptible=False), timeout_s=30)
    try:
        handle = make_job(tmp_path, workers=1, steps=10).submit()
        deadline = time.monotonic() + 30
        while not any(p["job_id"].startswith("tj-b-") for q in scheduling.status()["queues"]
                      for p in q["pending"]):
            assert time.monotonic() < deadline, "the TrainJob never queued"
            time.sleep(0.2)
        assert handle.status() == "pending"
        handle.stop()
        result = handle.wait(timeout_s=15)
        assert result.status == "stopped: cancelled" and result.history == []
        assert all(q["pending"] == [] for q in scheduling.status()["queues"])
    finally:
        hold.release("succeeded")
    # the GPUs are free again: the stopped job does not take them, b's next gang gets all 4
    gang = scheduling.reserve([TWO_GPUS, TWO_GPUS], queue="b", timeout_s=30)
    gang.release()
    kinds = [e["event"] for e in events.read("tj-b")]
    since = kinds[len(kinds) - 1 - kinds[::-1].index("submitted"):]     # this test's run
    assert "admitted" not in since and since[-1] == "stopped", since
    assert all(q["running"] == [] and q["pending"] == [] for q in scheduling.status()["queues"])
