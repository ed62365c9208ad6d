"""Elastic training on a multi-node cluster of logical H100s: a node is removed mid-run (the job
shrinks and resumes from its checkpoint), then a node is added (the job grows back at a
checkpoint boundary)."""

from __future__ import annotations

import time

import pytest

import ainative as ai
from tests.ray.test_train import regression_fn
from tests.support.clusters import NodeSpec

NODE = NodeSpec(gpus=2, accelerator_type="H100", cpus=2)


def _wait(handle, what, pred, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snap = handle.progress()
        if pred(snap):
            return snap
        assert not snap["state"].startswith(("failed", "stopped", "succeeded")), snap
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {handle.progress()}")


@pytest.mark.slow
def test_node_loss_shrinks_then_grows_back(logical_gpu_cluster, tmp_path, monkeypatch, no_leaks):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "events"))
    cluster = logical_gpu_cluster([NODE, NODE])
    job = ai.TrainJob(regression_fn, workers=(2, 4), name="elastic",
                      resources=ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100")),
                      config={"steps": 100_000, "ckpt_every": 5, "slow_s": 0.05},
                      checkpoint=ai.CheckpointConfig(path=str(tmp_path / "ckpt")))
    handle = job.submit()
    try:
        _wait(handle, "4 workers and a checkpoint",
              lambda s: s["world_size"] == 4 and s["step"] >= 10 and s["metrics"].get("world_size") == 4)
        victim = next(n for n in cluster.workers if n.node_id in handle.progress()["nodes"])
        cluster.remove_node(victim)
        _wait(handle, "shrink to 2", lambda s: s["metrics"].get("world_size") == 2, timeout_s=90)
        assert handle.progress()["restarts"] == 1
        cluster.add_node(NODE)
        _wait(handle, "grow back to 4", lambda s: s["metrics"].get("world_size") == 4, timeout_s=90)
    finally:
        handle.stop(reason="test-done", grace_s=10)
    result = handle.wait(timeout_s=60)
    assert result.status == "stopped: test-done" and result.restarts == 1
    sizes = [row["world_size"] for row in result.history]
    first_two = sizes.index(2)
    assert set(sizes[:first_two]) == {4} and 4 in sizes[first_two:]
    steps = [row["step"] for row in result.history]
    resumed_at = steps[first_two] - 1
    assert resumed_at % 5 == 0  # the shrunk group resumed right after a committed checkpoint
    events = [e["event"] for e in handle.events()]
    assert "resizing" in events and events.count("failure") == 1
