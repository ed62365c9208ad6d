"""Live scheduler on a multi-node logical-GPU cluster: borrowing, reclaim by preemption of a
checkpointing job that resumes from its checkpoint, why-pending, a gang never partly placed, and
the scheduler's state surviving its own restart."""

from __future__ import annotations

import json
import threading
import time

import pytest
import ray

import ainative
from ainative import errors, scheduling
from ainative.scheduling import protocol
from tests.support import clusters

GPU = ainative.Resources(cpus=0.5, accelerator=ainative.Accelerator("H100"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from clusters.two_team_scheduler(str(tmp_path_factory.mktemp("sched")))


@ray.remote(num_cpus=0)
class Trainer:
    """A job that counts steps and checkpoints its step to a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.step = json.load(open(path))["step"]
        except OSError:
            self.step = 0

    def train(self, n: int) -> int:
        self.step += n
        return self.step

    def checkpoint(self) -> int:
        json.dump({"step": self.step}, open(self.path, "w"))
        return self.step


def request(name: str, queue: str, n: int = 2, strategy: str = "PACK") -> protocol.JobRequest:
    return protocol.JobRequest(name=name, kind="gang", bundles=(GPU,) * n, queue=queue, strategy=strategy)


def run_until_stopped(lease, trainer, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ray.get(trainer.train.remote(1))
        stop = lease.poll(protocol.Usage(bundles_in_use=2))
        if stop is not None:
            return stop
        time.sleep(0.1)
    raise AssertionError("no stop request arrived")


def test_borrow_reclaim_preempt_resume(cluster, tmp_path):
    a1 = protocol.admission_for("a").admit(request("a1", "a"), timeout_s=30)
    g1 = scheduling.reserve([GPU, GPU])
    a2 = protocol.admission_for("a").admit(request("a2", "a"), timeout_s=30)     # borrows b's quota
    g2 = scheduling.reserve([GPU, GPU])
    ckpt = str(tmp_path / "a2.json")
    trainer = Trainer.options(**g2.actor_options(0)).remote(ckpt)
    used = {q["name"]: q["used"]["H100"] for q in scheduling.status()["queues"]}
    assert used["a"] == 4 and used["b"] == 0

    got: dict = {}
    t = threading.Thread(target=lambda: got.update(lease=protocol.admission_for("b").admit(
        request("b1", "b"), timeout_s=60)))
    t.start()
    stop = run_until_stopped(a2, trainer)                     # the newest borrower is the victim
    assert stop.reason == "preempted" and stop.checkpoint
    step = ray.get(trainer.checkpoint.remote())
    ray.kill(trainer)
    g2.release()
    a2.release("stopped: preempted")
    t.join(60)
    assert "lease" in got, "b was not admitted after the reclaim"
    gb = scheduling.reserve([GPU, GPU], timeout_s=20)        # the placement really exists now

    # Re-running a2 waits: a is at its quota and b uses its own; the reason says so.
    resumed: dict = {}
    t2 = threading.Thread(target=lambda: resumed.update(lease=protocol.admission_for("a").admit(
        request("a2", "a"), timeout_s=60)))
    t2.start()
    deadline = time.monotonic() + 20
    why = ""
    while time.monotonic() < deadline and "over quota" not in why:
        pend = [p for q in scheduling.status()["queues"] for p in q["pending"]]
        why = pend[0]["why"] if pend else ""
        time.sleep(0.2)
    assert "over quota" in why and "'a'" in why
    gb.release()
    got["lease"].release("succeeded")
    t2.join(60)
    assert "lease" in resumed
    g3 = scheduling.reserve([GPU, GPU], timeout_s=20)
    again = Trainer.options(**g3.actor_options(0)).remote(ckpt)
    assert ray.get(again.train.remote(1)) == step + 1         # resumed from its checkpoint
    ray.kill(again)
    g3.release()
    resumed["lease"].release("succeeded")
    g1.release()
    a1.release("succeeded")


def test_gang_never_partly_placed_is_rejected_at_submit(cluster):
    with pytest.raises(errors.AdmissionError, match="STRICT_PACK"):
        protocol.admission_for("a").admit(request("big", "a", 3, "STRICT_PACK"), timeout_s=5)
    with pytest.raises(errors.UnknownQueueError):
        protocol.admission_for("nope").admit(request("x", "nope"), timeout_s=5)
    assert all(not q["pending"] and not q["running"] for q in scheduling.status()["queues"])


def test_queue_table_shows_usage_and_why(cluster):
    from ainative.cli.queue import table

    lease = protocol.admission_for("a").admit(request("a-t", "a"), timeout_s=30)
    text = table(scheduling.status())
    assert "H100:2" in text and "a " in text and "policy ainative" in text
    assert "running since" in scheduling.why(lease.job_id)
    lease.release("succeeded")
    assert "not queued (succeeded)" in scheduling.why(lease.job_id)


def test_cpu_only_gang_needs_no_gpu_quota(cluster):
    cpu = ainative.Resources(cpus=0.5)
    lease = protocol.admission_for("a").admit(
        protocol.JobRequest(name="etl", kind="gang", bundles=(cpu, cpu), queue="a"), timeout_s=10)
    assert lease.poll() is None
    lease.release("succeeded")


def test_state_survives_scheduler_restart(cluster):
    lease = protocol.admission_for("b").admit(request("b2", "b"), timeout_s=30)
    actor = ray.get_actor("ainative-scheduler")
    ray.kill(actor, no_restart=False)                           # it restarts and reloads its state
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        try:
            status = scheduling.status()
            break
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            time.sleep(0.2)
    assert status is not None
    used = {q["name"]: q["used"]["H100"] for q in status["queues"]}
    assert used["b"] == 2
    lease.release("succeeded")
    used = {q["name"]: q["used"]["H100"] for q in scheduling.status()["queues"]}
    assert used["b"] == 0
