"""TrainJob on the embedded local Ray: DDP on gloo, checkpoints, recovery, user errors, hangs,
graceful stop through the admission lease, resume, dataset shard state, bad input."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time

import pytest
import ray

import ainative as ai
from ainative import errors, events
from ainative.scheduling import protocol
from ainative.train import _events


@pytest.fixture(autouse=True)
def _events_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "events"))


def regression_fn(config):
    """Linear regression under DDP; checkpoints every ``ckpt_every`` steps; optional faults."""
    import torch
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    ctx = ai.train.get_context()
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=config.get("lr", 0.1))
    start = 0
    ckpt = ai.train.get_checkpoint()
    if ckpt:
        state = torch.load(os.path.join(ckpt, "state.pt"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    ddp = DistributedDataParallel(model)
    gen = torch.Generator().manual_seed(1000 * ctx.rank + start)
    true_w = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    fault = config.get("fault") or {}
    shard = ai.train.get_dataset_shard("train") if config.get("use_data") else None
    for step in range(start, config["steps"]):
        if fault.get("kind") == "kill_on_file" and ctx.rank == fault["rank"] and ctx.restarts == 0 \
                and os.path.exists(fault["path"]):
            os.kill(os.getpid(), signal.SIGKILL)
        if fault.get("step") == step and ctx.rank == fault["rank"] and ctx.restarts == 0:
            if fault["kind"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault["kind"] == "raise":
                raise ValueError(f"bad batch at step {step}")
            if fault["kind"] == "freeze":
                time.sleep(3600)
        if shard is not None:
            shard.advance()
        x = torch.randn(16, 4, generator=gen)
        loss = ((ddp(x) - x @ true_w.T) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        row = {"step": step + 1, "loss": loss.item(), "world_size": ctx.world_size,
               "restarts": ctx.restarts}
        if config.get("slow_s"):
            time.sleep(config["slow_s"])
        if (step + 1) % config.get("ckpt_every", 10) == 0:
            with tempfile.TemporaryDirectory() as d:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1},
                           os.path.join(d, "state.pt"))
                ai.train.report(row, checkpoint=d)
        else:
            ai.train.report(row)
    if config.get("out_dir"):
        flat = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
        with open(os.path.join(config["out_dir"], f"rank{ctx.rank}.json"), "w") as f:
            json.dump({"params": flat, "world_size": ctx.world_size, "local_rank": ctx.local_rank,
                       "node_rank": ctx.node_rank, "device": str(ctx.device), "pid": os.getpid(),
                       "gpu_ids": list(ctx.gpu_ids),
                       "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}, f)


def _job(tmp_path, name, **overrides):
    config = {"steps": 40, "ckpt_every": 10, **overrides.pop("config", {})}
    return ai.TrainJob(regression_fn, workers=overrides.pop("workers", 2), config=config, name=name,
                       checkpoint=ai.CheckpointConfig(path=f"file://{tmp_path}/ckpt", keep=2),
                       **overrides)


def test_ddp_converges_and_ranks_agree(ray_local, tmp_path, no_leaks):
    out = tmp_path / "out"
    out.mkdir()
    result = _job(tmp_path, "converge", config={"steps": 60, "out_dir": str(out)}).run()
    assert result.status == "succeeded" and result.restarts == 0
    assert [row["step"] for row in result.history] == list(range(1, 61))
    assert result.history[0]["loss"] > 1.0 and result.metrics["loss"] < 0.01 * result.history[0]["loss"]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["params"] == ranks[1]["params"]  # DDP kept replicas bit-identical
    assert {r["world_size"] for r in ranks} == {2} and sorted(r["local_rank"] for r in ranks) == [0, 1]
    assert result.checkpoint == f"{tmp_path}/ckpt/converge/checkpoint_60"
    kept = sorted(os.listdir(tmp_path / "ckpt" / "converge"))
    assert kept == ["checkpoint_50", "checkpoint_60"]  # keep=2
    events = [e["event"] for e in _events.read("converge")]
    assert events[:4] == ["submitted", "admitted", "scheduling", "running"]
    assert events[-1] == "finished" and events.count("checkpoint") == 6


def test_killed_worker_resumes_from_latest_checkpoint(ray_local, tmp_path, no_leaks):
    fault = {"kind": "kill", "rank": 1, "step": 25}
    result = _job(tmp_path, "killed", config={"fault": fault}).run()
    assert result.status == "succeeded" and result.restarts == 1
    steps = [row["step"] for row in result.history]
    assert steps[-1] == 40 and result.metrics["restarts"] == 1
    # steps up to the step-20 checkpoint ran once; only 21..(crash) ran twice
    assert all(steps.count(s) == 1 for s in range(1, 21)), steps
    assert all(steps.count(s) == 1 for s in range(26, 41))
    failures = [e for e in _events.read("killed") if e["event"] == "failure"]
    assert len(failures) == 1 and failures[0]["kind"] == "system" and failures[0]["action"] == "restart"
    running = [e for e in _events.read("killed") if e["event"] == "running"]
    assert running[1]["reused_workers"] == 1  # rank 0's warm process restarted in place


def test_user_error_names_rank_and_is_not_retried(ray_local, tmp_path, no_leaks):
    job = _job(tmp_path, "usererr", config={"fault": {"kind": "raise", "rank": 1, "step": 3}})
    with pytest.raises(errors.TrainingFailedError) as info:
        job.run()
    err = info.value
    assert err.rank == 1 and err.exc_type == "ValueError"
    assert "bad batch at step 3" in str(err) and "rank 1" in str(err)
    assert "regression_fn" in err.traceback and err.node_id
    assert not [e for e in _events.read("usererr") if e["event"] == "restarting"]


def test_frozen_rank_is_detected_within_deadline(ray_local, tmp_path, no_leaks):
    job = _job(tmp_path, "frozen", config={"fault": {"kind": "freeze", "rank": 0, "step": 5}},
               failure=ai.FailureConfig(max_restarts=0, progress_timeout_s=3.0))
    t0 = time.monotonic()
    with pytest.raises(errors.WorkerGroupError) as info:
        job.run()
    elapsed = time.monotonic() - t0
    # rank 0 froze; rank 1 waits for it inside the next all-reduce, so from outside both are
    # silent and either may be named first
    assert info.value.kind == "hang" and info.value.rank in (0, 1)
    assert "no progress in 3 s" in str(info.value)
    # start-up (~2-4 s quiet, 20 s and more on two saturated cores) + 5 steps + the 3 s deadline
    # + one poll: it must end well before the 120 s collective timeout would have
    assert elapsed < 60, elapsed


class _PreemptOnce:
    """An admission whose lease asks the job to stop (preemption) once, at the first poll after
    the job reported step ``after_step`` or later (polls while the gang starts report no step)."""

    def __init__(self, after_step):
        self.after_step, self.fired, self.outcomes, self.requests = after_step, False, [], []

    def admit(self, request, timeout_s=None):
        self.requests.append(request)
        return self

    def poll(self, usage=None):
        if self.fired or usage is None or (usage.step or 0) < self.after_step:
            return None
        self.fired = True
        return protocol.StopRequest("preempted", grace_s=20)

    def release(self, outcome):
        self.outcomes.append(outcome)


def test_preempted_job_requeues_and_resumes_from_its_checkpoint(ray_local, tmp_path, no_leaks):
    admission = _PreemptOnce(after_step=1)
    protocol.install(protocol.Layer("scheduler", protocol.SCHEDULER_RANK, lambda inner, queue: admission))
    try:
        config = {"steps": 200, "slow_s": 0.02}
        result = _job(tmp_path, "preempt", config=config, queue="team-a", priority=3).run()
    finally:
        protocol.uninstall("scheduler")
    # run() did not return on the preemption: the job went back to admission and finished
    assert result.status == "succeeded"
    assert admission.outcomes == ["stopped: preempted", "succeeded"]
    first, again = admission.requests
    assert first.kind == "train" and first.queue == "team-a" and first.priority == 3
    assert len(first.bundles) == 2
    assert again.priority == 3 and again.metadata["submit_s"] == first.metadata["submit_s"]
    kinds = [e["event"] for e in events.read("preempt")]
    for kind in ("preempted", "requeued", "resumed"):
        assert kind in kinds, kinds
    preempted = next(e for e in events.read("preempt") if e["event"] == "preempted")
    stopped_at = preempted["step"]
    assert stopped_at % 10 == 0 and 0 < stopped_at < 200    # stopped at a committed checkpoint
    resumed = next(e for e in events.read("preempt") if e["event"] == "resumed")
    assert resumed["step"] == stopped_at
    # no committed step lost and none run twice: the history is every step once, in order
    assert [row["step"] for row in result.history] == list(range(1, 201))


def _standby_job(tmp_path, name, fault):
    out = tmp_path / "out"
    out.mkdir()
    job = _job(tmp_path, name, config={"steps": 40, "out_dir": str(out), "fault": fault},
               resources=ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100")),
               failure=ai.FailureConfig(standby_workers=1))
    return job, out


def _standbys(job_name):
    """Handles of the job's live warm spares (named ``ainative-standby-<job>-<id>``)."""
    import ray

    return [ray.get_actor(a["name"], namespace=a["namespace"])
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"ainative-standby-{job_name}-")]


def test_restart_adopts_a_warm_standby_with_its_bundles_gpu(ray_local, tmp_path, no_leaks):
    job, out = _standby_job(tmp_path, "standby", {"kind": "kill", "rank": 1, "step": 25})
    result = job.run()
    assert result.status == "succeeded" and result.restarts == 1
    steps = [row["step"] for row in result.history]
    assert all(steps.count(s) == 1 for s in list(range(1, 21)) + list(range(26, 41))), steps
    running = [e for e in _events.read("standby") if e["event"] == "running"]
    assert "standby_workers_adopted" not in running[0]
    # rank 0's process restarted in place; the killed rank 1 became the standby process
    assert running[1]["reused_workers"] == 1 and running[1]["standby_workers_adopted"] == 1
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["params"] == ranks[1]["params"]
    # the adopted process holds no GPU of its own: it was given its bundle's (one, not rank 0's)
    ids = [r["gpu_ids"] for r in ranks]
    assert [len(i) for i in ids] == [1, 1] and ids[0] != ids[1], ids
    visible = ",".join(sorted(ids[0] + ids[1], key=lambda g: (len(g), g)))
    assert [r["cuda_visible_devices"] for r in ranks] == [visible, visible]
    # no_leaks: the job's spares went with it


def test_a_dead_standby_is_replaced_by_a_new_worker(ray_local, tmp_path, no_leaks):
    trigger = tmp_path / "kill-now"
    job, out = _standby_job(tmp_path, "standby-gone",
                            {"kind": "kill_on_file", "rank": 1, "path": str(trigger)})
    job.config["steps"], job.config["slow_s"] = 100_000, 0.05
    handle = job.submit()
    try:
        deadline = time.monotonic() + 60
        spares = []
        while not spares and time.monotonic() < deadline:
            spares = _standbys("standby-gone")
            time.sleep(0.2)
        assert len(spares) == 1, "the standby never started"
        import ray

        ray.kill(spares[0], no_restart=True)
        while _standbys("standby-gone") and time.monotonic() < deadline:
            time.sleep(0.2)
        trigger.touch()
        running, resumed_at = [], None
        while time.monotonic() < deadline:
            running = [e for e in _events.read("standby-gone") if e["event"] == "running"]
            step = handle.progress()["step"]
            if len(running) == 2 and resumed_at is None:
                resumed_at = step
            if resumed_at is not None and step >= resumed_at + 3:
                break
            assert not handle.progress()["state"].startswith(("failed", "succeeded")), handle.progress()
            time.sleep(0.2)
        else:
            raise AssertionError(f"no steps after a second start: {handle.progress()}")
    finally:
        handle.stop(reason="test-done", grace_s=10)
    result = handle.wait(timeout_s=60)
    assert result.status == "stopped: test-done" and result.restarts == 1
    # the dead spare was handed out and failed its info(); a new actor took the rank instead
    assert "standby_workers_adopted" not in running[1] and running[1]["reused_workers"] == 1


def chatty_fn(config):
    print("hello from", ai.train.get_context().rank)
    regression_fn(config)


def test_submit_handle_status_logs_and_stop(ray_local, tmp_path, no_leaks):
    handle = ai.TrainJob(chatty_fn, workers=2, name="handle", config={
        "steps": 2000, "slow_s": 0.01}, checkpoint=ai.CheckpointConfig(path=str(tmp_path))).submit()
    deadline = time.monotonic() + 60
    # running and past its first step (a stop before train_fn begins ends the job at once,
    # with nothing printed yet: see test_train_units)
    while not (handle.status() == "running" and handle.progress()["step"] >= 1) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handle.status() == "running" and handle.progress()["step"] >= 1
    with pytest.raises(TimeoutError):
        handle.wait(timeout_s=0.5)
    assert not handle._controller.ray_metrics._broken  # Ray metrics record in the driver
    handle.stop(reason="cancelled", grace_s=20)
    result = handle.wait(timeout_s=60)
    assert result.status == "stopped: cancelled" and handle.status() == "stopped: cancelled"
    events = [e["event"] for e in handle.events()]
    assert "stopping" in events and events[-1] == "finished"
    assert any(line.startswith("[rank 0] ") for line in handle.logs())


def test_shutting_the_cluster_down_stops_a_submitted_job_first(ray_local, tmp_path):
    # The job's driver thread calls Ray; were it still running when Ray shuts down, Ray would end
    # this whole process ("The core worker has already been shutdown ... will exit").
    from tests.support import clusters

    handle = ai.TrainJob(chatty_fn, workers=1, name="shutdown", config={
        "steps": 100_000, "slow_s": 0.01}, checkpoint=ai.CheckpointConfig(path=str(tmp_path))).submit()
    deadline = time.monotonic() + 60
    while handle.progress()["step"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handle.status() == "running", handle.progress()
    clusters.shutdown_current()          # what Cluster.shutdown does: background.stop_all() first
    result = handle.wait(timeout_s=0)
    assert result.status == "stopped: cluster shutdown" and not handle._thread.is_alive()
    assert not ray.is_initialized()


class FakeShard:
    """Stands in for ainative.data.shard.DatasetShard: counts batches, resumes from ``state``."""

    def __init__(self, dataset, *, rank, world_size, state):
        self.dataset, self.rank, self.world_size = dataset, rank, world_size
        self.position = (state or {}).get("position", 0)
        self.resumed_from = state

    def advance(self):
        self.position += 1

    def state_dict(self):
        return {"position": self.position, "world_size": self.world_size}


class _DataJob(ai.TrainJob):
    shard_factory = FakeShard


def test_dataset_shard_state_is_checkpointed_and_restored(ray_local, tmp_path, no_leaks):
    fault = {"kind": "kill", "rank": 0, "step": 15}
    job = _DataJob(regression_fn, workers=2, name="data", datasets={"train": ["a", "b"]},
                   config={"steps": 20, "ckpt_every": 10, "use_data": True, "fault": fault},
                   checkpoint=ai.CheckpointConfig(path=str(tmp_path / "ckpt")))
    result = job.run()
    assert result.restarts == 1
    state = json.loads((tmp_path / "ckpt" / "data" / "checkpoint_20" / "_ainative_data_state.json")
                       .read_text())
    # resumed at position 10 from checkpoint_10's state, then 10 more batches
    assert state == {"train": {"position": 20, "world_size": 2}}


def _unpicklable_fn_factory():
    lock = threading.Lock()

    def fn(config):
        with lock:
            pass
    return fn


@pytest.mark.parametrize("make, exc, words", [
    (lambda p: ai.TrainJob(regression_fn, workers=0), errors.ConfigError, "workers"),
    (lambda p: ai.TrainJob(regression_fn, workers=(3, 2)), errors.ConfigError, "min must be <= max"),
    (lambda p: ai.TrainJob(regression_fn, name="bad name!"), errors.ConfigError, "name"),
    (lambda p: ai.TrainJob(regression_fn, workers=2, resources=ai.Resources(
        cpus=1, accelerator=ai.Accelerator("A100"))).run(), errors.InfeasibleError, "A100"),
    (lambda p: ai.TrainJob(regression_fn, workers=9).run(), errors.InfeasibleError, "never fit"),
    (lambda p: ai.TrainJob(_unpicklable_fn_factory(), checkpoint=ai.CheckpointConfig(
        path=str(p))).run(), errors.ConfigError, "pickled"),
    (lambda p: ai.TrainJob(regression_fn, checkpoint=ai.CheckpointConfig(
        path="/proc/no-such/ckpt")).submit(), errors.CheckpointError, "cannot be written"),
])
def test_bad_input_raises_before_any_gang(ray_local, tmp_path, no_leaks, make, exc, words):
    with pytest.raises(exc, match=words):
        make(tmp_path)
