"""A TrainJob borrowing another team's GPUs is preempted when that team reclaims its quota: it
checkpoints, releases its gang, ends "stopped: preempted", and resumes from its checkpoint when
re-run. Slow: two TrainJob starts on the multi-node logical-GPU cluster."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import ainative
from ainative import scheduling
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


def test_trainjob_preempted_by_reclaim_resumes_from_checkpoint(cluster, tmp_path):
    handle = make_job(tmp_path, workers=2, steps=100_000).submit()    # 4 GPUs: borrows 2 of a's
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        used = {q["name"]: q["used"]["H100"] for q in scheduling.status()["queues"]}
        if used["b"] == 4 and handle.progress().get("step", 0) >= 10:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"TrainJob did not get going: {handle.status()} {handle.progress()}")
    got: dict = {}
    waiter = threading.Thread(target=lambda: got.update(lease=protocol.admission_for("a").admit(
        protocol.JobRequest(name="a-gang", kind="gang", bundles=(TWO_GPUS,), queue="a"), timeout_s=90)))
    waiter.start()
    result = handle.wait(timeout_s=90)
    assert result.status == "stopped: preempted", result.status
    stopped_at = result.checkpoint and json.load(open(os.path.join(result.checkpoint, "s.json")))["step"]
    waiter.join(60)
    assert "lease" in got, "team a was not admitted after the reclaim"
    gang = scheduling.reserve([TWO_GPUS], timeout_s=30)         # a's placement really exists

    again = make_job(tmp_path, workers=1, steps=0).run()        # b's own 2 GPUs: admitted at once
    assert again.metrics["resumed_from"] >= 5 and again.metrics["resumed_from"] == (stopped_at or 0)
    gang.release()
    got["lease"].release("succeeded")
