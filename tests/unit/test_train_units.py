"""Training pieces that need no Ray: configs, policies, rank layout, checkpoint storage, events,
TrainJob validation, and the controller stepped with a fake worker group."""

from __future__ import annotations

import json
import os
import time

import pytest

import ainative as ai
from ainative import errors
from ainative.policy import failure as fp
from ainative.scheduling import protocol
from ainative.train import _checkpoint, _controller, _events, _group
from ainative.train.config import CheckpointConfig, FailureConfig


def noop(config):
    return None


@pytest.mark.parametrize("kwargs, field", [
    ({"keep": 0}, "keep"), ({"path": ""}, "path"), ({"keep": 1.5}, "keep")])
def test_checkpoint_config_rejects(kwargs, field):
    with pytest.raises(errors.ConfigError, match=field):
        CheckpointConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    ({"max_restarts": -1}, "max_restarts"), ({"progress_timeout_s": 0}, "progress_timeout_s"),
    ({"collective_timeout_s": -5}, "collective_timeout_s"),
    ({"retry_user_errors": "yes"}, "retry_user_errors"),
    ({"standby_workers": -1}, "standby_workers"), ({"standby_workers": 1.5}, "standby_workers"),
    ({"standby_workers": True}, "standby_workers"), ({"standby_workers": 65}, "standby_workers"),
    ({"liveness_timeout_s": 0.1}, "liveness_timeout_s"),
    ({"liveness_timeout_s": float("nan")}, "liveness_timeout_s"),
    ({"liveness_timeout_s": -1}, "liveness_timeout_s"),
    ({"liveness_timeout_s": "1.5"}, "liveness_timeout_s"),
    ({"liveness_timeout_s": 601}, "liveness_timeout_s"),
    ({"rendezvous_timeout_s": 0}, "rendezvous_timeout_s"),
    ({"rendezvous_timeout_s": float("inf")}, "rendezvous_timeout_s")])
def test_failure_config_rejects(kwargs, field):
    with pytest.raises(errors.ConfigError, match=field):
        FailureConfig(**kwargs)


@pytest.mark.parametrize("kwargs, words", [
    ({"workers": 0}, "workers"), ({"workers": (3, 2)}, "min must be <= max"),
    ({"workers": (0, 2)}, "min"), ({"workers": True}, "workers"),
    ({"placement": "TIGHT"}, "placement"), ({"name": "a b"}, "name"),
    ({"resources": {"cpus": 1}}, "resources"), ({"config": [1]}, "config"),
    ({"max_runtime_s": -1}, "max_runtime_s"), ({"priority": "high"}, "priority")])
def test_train_job_rejects_bad_input_at_construction(kwargs, words):
    with pytest.raises(errors.ConfigError, match=words):
        ai.TrainJob(noop, **kwargs)


def test_train_job_request_carries_scheduling_fields():
    job = ai.TrainJob(noop, workers=(2, 4), queue="q", priority=5, preemptible=False,
                      max_runtime_s=60, expected_duration_s=30, budget=ai.Budget(usd=1))
    req = job.request()
    assert (req.kind, req.queue, req.priority, req.preemptible, req.min_bundles) == \
        ("train", "q", 5, False, 2)
    assert len(req.bundles) == 4 and req.max_runtime_s == 60 and req.budget == ai.Budget(usd=1)
    assert job.name == "noop" and "workers=(2, 4)" in repr(job)


def test_failure_policy_decisions():
    policy = fp.FailurePolicy(max_restarts=2)
    system = fp.Failure(fp.FailureKind.SYSTEM, rank=1)
    assert policy.decide(system, 0).action is fp.Action.RESTART
    assert policy.decide(system, 2).action is fp.Action.FAIL
    user = fp.Failure(fp.FailureKind.USER, rank=0)
    assert policy.decide(user, 0).action is fp.Action.FAIL
    assert fp.FailurePolicy(2, retry_user_errors=True).decide(user, 0).action is fp.Action.RESTART


def test_scaling_policy():
    fixed = fp.ScalingPolicy(2, 2)
    assert fixed.initial(8).workers == 2 and fixed.on_checkpoint(2, 8).workers is None
    elastic = fp.ScalingPolicy(2, 4)
    assert elastic.initial(3).workers == 3 and elastic.initial(1).workers == 2
    assert elastic.initial(9).workers == 4
    assert elastic.on_checkpoint(2, 4).workers == 4 and elastic.on_checkpoint(4, 4).workers is None
    assert elastic.on_checkpoint(3, 2).workers is None  # never shrinks on its own
    with pytest.raises(ValueError):
        fp.ScalingPolicy(3, 2)


def test_ranks_are_grouped_by_node():
    slots = _group.assign_ranks(["b", "a", "b", "a", "c"])
    assert [(s.rank, s.bundle, s.node_id, s.node_rank, s.local_rank) for s in slots] == [
        (0, 0, "b", 0, 0), (1, 2, "b", 0, 1), (2, 1, "a", 1, 0), (3, 3, "a", 1, 1),
        (4, 4, "c", 2, 0)]
    assert [s.local_world_size for s in slots] == [2, 2, 2, 2, 1]


def test_visible_devices_cover_the_node_and_index_the_rank():
    slots = _group.assign_ranks(["n1", "n1", "n2"])
    out = _group.visible_devices(slots, [["3"], ["1"], ["0"]])
    assert out == [("1,3", 1), ("1,3", 0), ("0", 0)]
    assert _group.visible_devices(slots, [[], [], []]) == [(None, None)] * 3


def test_storage_commits_atomically_and_keeps_n(tmp_path):
    storage = _checkpoint.Storage(f"file://{tmp_path}", "job", keep=2)
    storage.probe()
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"x" * 100)
    for step in (10, 20, 30):
        uri = storage.commit(step, str(src), {"loss": 1.0 / step}, {"train": {"pos": step}})
        assert uri == f"{tmp_path}/job/checkpoint_{step}"
    assert storage.committed() == [20, 30]
    # a writer that died mid-upload leaves a directory without the commit file: never picked up
    partial = tmp_path / "job" / "checkpoint_40"
    partial.mkdir()
    (partial / "weights.bin").write_bytes(b"half")
    assert storage.latest() == 30
    assert storage.read_meta(30)["metrics"] == {"loss": 1.0 / 30}
    assert storage.data_state(30) == {"train": {"pos": 30}}
    assert (tmp_path / "job" / "checkpoint_30" / "weights.bin").read_bytes() == b"x" * 100
    assert storage.local_copy(30) == f"{tmp_path}/job/checkpoint_30"
    storage.commit(40, str(src), {}, None)  # overwrites the partial leftover
    assert storage.committed() == [30, 40] and storage.data_state(40) is None


def test_storage_errors(tmp_path):
    with pytest.raises(errors.CheckpointError, match="cannot be written"):
        _checkpoint.Storage("/proc/nope", "job", 1).probe()
    with pytest.raises(errors.CheckpointError, match="not a directory"):
        _checkpoint.Storage(str(tmp_path), "job", 1).commit(1, str(tmp_path / "missing"), {}, None)


def test_events_are_json_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path))
    _events.emit("my/job", "failure", rank=1, reason="boom")
    _events.emit("my/job", "finished", status="succeeded")
    lines = (tmp_path / "my_job.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"ts", "job", "event", "rank", "reason"} and first["job"] == "my/job"
    assert [e["event"] for e in _events.read("my/job")] == ["failure", "finished"]


class FakeGroup:
    """Scripted worker group: each attempt plays a list of poll answers."""

    scripts: list[list[list[object]]] = []
    started: list[int] = []

    def __init__(self, size, script):
        self.size, self.script = size, script
        self.slots = [_group.RankSlot(r, r, f"node{r}", r, 0, 1) for r in range(size)]
        self.stops: list[str] = []
        self.shut = False

    @classmethod
    def start(cls, *, size, **kwargs):
        cls.started.append(size)
        return cls(size, cls.scripts.pop(0))

    def __len__(self):
        return self.size

    can_reuse = False
    kept: list[set[int]] = []

    def poll(self, timeout_s):
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def reusable(self):
        return self.can_reuse

    def restart_in_place(self, keep, timeout_s, spec_for, should_stop=None):
        FakeGroup.kept.append(set(keep))
        self.script = FakeGroup.scripts.pop(0)

    def request_stop(self, mode):
        self.stops.append(mode)

    def node_of(self, rank):
        return f"node{rank}"

    def shutdown(self):
        self.shut = True


def _answer(state, reports=(), since=0.0, error=None):
    return {"state": state, "reports": list(reports), "since_progress_s": since, "error": error,
            "lines": [], "step": None}


class _Controller(_controller.Controller):
    group_class = FakeGroup
    poll_interval_s = 0.0

    def _fit(self, held=0, avoid=()):
        return self.spec.max_workers


def _spec(tmp_path, **failure):
    return _controller.JobSpec(
        name="fake", fn=noop, config={}, resources=ai.Resources(), min_workers=2, max_workers=2,
        placement="PACK", storage=_checkpoint.Storage(str(tmp_path), "fake", 2),
        failure=FailureConfig(**failure), datasets={}, shard_factory=None, max_runtime_s=None)


def test_controller_restarts_after_a_death_then_succeeds(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    FakeGroup.started = []
    FakeGroup.scripts = [
        [[_answer("running", [(1, {"loss": 2.0}, None, 0)]), RuntimeError("actor died")]],
        [[_answer("running", [(1, {"loss": 1.0}, None, 0)]), _answer("running")],
         [_answer("finished"), _answer("finished")]],
    ]
    result = _Controller(_spec(tmp_path), protocol.ImmediateAdmission().admit(None)).run()
    assert result.restarts == 1 and result.status == "succeeded" and FakeGroup.started == [2, 2]
    assert result.history == [{"loss": 2.0}, {"loss": 1.0}]
    events = [e["event"] for e in _events.read("fake")]
    assert events == ["scheduling", "running", "failure", "restarting", "scheduling", "running",
                      "finished"]


def test_controller_restarts_in_place_reusing_survivors(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    peer = {"type": "DistBackendError", "message": "Connection closed by peer", "traceback": "",
            "peer": True}
    FakeGroup.started, FakeGroup.kept = [], []
    FakeGroup.scripts = [
        [[_answer("running"), RuntimeError("actor died")],
         [_answer("error", error=peer), RuntimeError("actor died")]],
        [[_answer("finished"), _answer("finished")]],
    ]
    monkeypatch.setattr(FakeGroup, "can_reuse", True)
    result = _Controller(_spec(tmp_path), protocol.ImmediateAdmission().admit(None)).run()
    assert result.status == "succeeded" and result.restarts == 1
    assert FakeGroup.started == [2] and FakeGroup.kept == [{0}]  # one gang, rank 0 reused
    running = [e for e in _events.read("fake") if e["event"] == "running"]
    assert [e["reused_workers"] for e in running] == [0, 1]


class _NodeDiesWhileAwaited(FakeGroup):
    """Plays its script until a rank fails; then rank 1's node is partitioned: rank 0 stays stuck
    "running" in a collective (no reset reaches it), rank 1 does not answer, and Ray declares
    the node dead after the first poll of the survivors."""

    made: list[FakeGroup] = []

    def __init__(self, size, script):
        super().__init__(size, script)
        self.failed, self.survivor_polls = False, 0
        _NodeDiesWhileAwaited.made.append(self)

    def poll(self, timeout_s):
        if not self.failed:
            answers = super().poll(timeout_s)
            self.failed = any(isinstance(a, Exception) for a in answers)
            return answers
        self.survivor_polls += 1
        return [_answer("running"), None]

    def reusable(self):
        return self.survivor_polls == 0

    def restart_in_place(self, keep, timeout_s, spec_for, should_stop=None):
        super().restart_in_place(keep, timeout_s, spec_for, should_stop)   # (the old behaviour)
        self.failed = False


def test_a_node_declared_dead_while_survivors_are_awaited_reserves_a_new_gang_at_once(tmp_path, monkeypatch):
    """The old wait ran its full 2 s for a survivor stuck in a collective with a partitioned
    peer, then restarted in place on the damaged gang; now the node's death ends the wait."""
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    FakeGroup.started, FakeGroup.kept, _NodeDiesWhileAwaited.made = [], [], []
    FakeGroup.scripts = [[[_answer("running"), RuntimeError("unavailable")]],
                         [[_answer("finished"), _answer("finished")]]]
    controller = _Controller(_spec(tmp_path), protocol.ImmediateAdmission().admit(None))
    controller.group_class = _NodeDiesWhileAwaited
    started = time.monotonic()
    result = controller.run()
    assert result.status == "succeeded" and result.restarts == 1
    assert FakeGroup.started == [2, 2] and FakeGroup.kept == []     # a new gang, no in-place restart
    first = _NodeDiesWhileAwaited.made[0]
    assert first.shut and first.survivor_polls == 1
    assert time.monotonic() - started < 1.5


def test_controller_gives_up_after_max_restarts(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    FakeGroup.scripts = [[[_answer("running"), RuntimeError("gone")]]]
    with pytest.raises(errors.WorkerGroupError, match="max_restarts=0") as info:
        _Controller(_spec(tmp_path, max_restarts=0), protocol.ImmediateAdmission().admit(None)).run()
    assert info.value.rank == 1 and info.value.kind == "system"


def test_controller_detects_a_silent_rank(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    FakeGroup.scripts = [[[_answer("running"), _answer("running", since=5.0)]]]
    with pytest.raises(errors.WorkerGroupError, match="no progress") as info:
        _Controller(_spec(tmp_path, max_restarts=0, progress_timeout_s=1.0),
                    protocol.ImmediateAdmission().admit(None)).run()
    assert info.value.kind == "hang" and info.value.rank == 1


def test_controller_user_error_is_training_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    err = {"type": "KeyError", "message": "'x'", "traceback": "Traceback...KeyError", "peer": False}
    FakeGroup.scripts = [[[_answer("running"), _answer("error", error=err)]]]
    with pytest.raises(errors.TrainingFailedError, match="KeyError") as info:
        _Controller(_spec(tmp_path), protocol.ImmediateAdmission().admit(None)).run()
    assert info.value.rank == 1 and info.value.node_id == "node1"
    assert "Traceback...KeyError" in str(info.value)


def test_train_module_is_lazy():
    import subprocess
    import sys

    code = ("import sys, ainative.train as t; t.TrainJob; t.report; "
            "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ})
    assert out.stdout.strip() == "[]"


def test_cli_train_parses_and_rejects_bad_flags(capsys):
    from ainative.cli import main as cli
    from ainative.cli import train as cli_train

    assert cli_train._parse_workers("2") == 2 and cli_train._parse_workers("2:4") == (2, 4)
    assert cli.main(["train", "--entrypoint", "nocolon"]) == cli.EXIT_USAGE
    assert "module:function" in capsys.readouterr().err
    assert cli.main(["train", "--entrypoint", "json:loads", "--workers", "x"]) == cli.EXIT_USAGE
    assert cli.main(["train", "--entrypoint", "no_such_mod_xyz:f"]) == cli.EXIT_USAGE


def test_job_metrics_step_time_and_restarts():
    from ainative.train import _metrics

    recorded = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def set(self, value, tags):
            recorded.append((self.name, round(value, 6), tags["job"]))

        def inc(self, value, tags):
            recorded.append((self.name, value, tags["job"]))

    m = _metrics.JobMetrics("j")
    m._m = {k: Fake(k) for k in ("step_time", "steps_per_s", "world_size", "restarts")}
    m.world_size(2)
    m.report(10, 100.0)
    m.report(20, 101.0)
    m.restart()
    m.world_size(2)
    m.report(30, 200.0)  # first report of a new group: no step time across the restart gap
    assert recorded == [("world_size", 2.0, "j"), ("step_time", 0.1, "j"),
                        ("steps_per_s", 10.0, "j"), ("restarts", 1.0, "j"),
                        ("world_size", 2.0, "j")]


def test_gloo_interface_is_the_one_holding_the_node_ip():
    from ainative.train import _dist

    assert _dist.interface_for("127.0.0.1") == "lo"
    assert _dist.interface_for("203.0.113.254") is None  # TEST-NET-3: on no interface here


class _StopAtFirstPoll:
    """A lease that asks for a preemption stop at its first poll (by default with a grace far
    beyond any test)."""

    def __init__(self, grace_s=1e6):
        self.released: list[str] = []
        self.stops = [protocol.StopRequest("preempted", grace_s=grace_s)]

    def poll(self, usage=None):
        return self.stops.pop(0) if self.stops else None

    def release(self, outcome):
        self.released.append(outcome)


def test_controller_stopped_while_requeued_ends_instead_of_resuming(tmp_path, monkeypatch):
    """A user stop while a preempted job waits to be admitted again: admission withdraws the
    request (AdmissionError) and the job ends "stopped: <reason>", no new gang."""
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))

    FakeGroup.started = []
    FakeGroup.scripts = [[[_answer("running"), _answer("running")],
                          [_answer("stopped"), _answer("stopped")]]]
    lease = _StopAtFirstPoll(grace_s=5.0)
    controller = _Controller(_spec(tmp_path), lease)
    controller.lease_poll_s = 0.0

    def readmit():
        controller.request_stop(protocol.StopRequest("cancelled"))      # the user, meanwhile
        raise errors.AdmissionError("job 'fake' was stopped while it waited", cancelled=True)

    controller.readmit = readmit
    result = controller.run()
    assert result.status == "stopped: cancelled" and FakeGroup.started == [2]
    assert lease.released == ["stopped: preempted"]
    kinds = [e["event"] for e in _events.read("fake")]
    assert "requeued" in kinds and "resumed" not in kinds and kinds[-1] == "finished"


class _CountingGroup(FakeGroup):
    polls = 0

    def poll(self, timeout_s):
        _CountingGroup.polls += 1
        if _CountingGroup.polls > 200:      # the old behaviour waited for the grace: fail, not hang
            raise AssertionError("still waiting for a gang in set-up to reach a checkpoint")
        return super().poll(timeout_s)


def test_preempting_a_gang_still_in_set_up_stops_it_at_once(tmp_path, monkeypatch):
    """Nothing a checkpoint would save yet (every rank still starting): the stop does not wait
    for a first checkpoint or the grace period; the gang is released."""
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    _CountingGroup.polls, _CountingGroup.started = 0, []
    _CountingGroup.scripts = [[[_answer("starting"), _answer("starting")]]]
    controller = _Controller(_spec(tmp_path), _StopAtFirstPoll())
    controller.group_class, controller.lease_poll_s = _CountingGroup, 0.0
    result = controller.run()
    assert result.status == "stopped: preempted" and _CountingGroup.polls <= 3


def test_preempting_a_gang_that_began_waits_for_its_checkpoint(tmp_path, monkeypatch):
    """Once train_fn runs on a rank, a checkpoint stop waits for the ranks to stop at their next
    checkpoint (the work since the last one is saved), not cut short."""
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    _CountingGroup.polls, _CountingGroup.started = 0, []
    _CountingGroup.scripts = [[[_answer("starting"), _answer("running")]] * 5
                              + [[_answer("running", [(5, {"loss": 1.0}, "ckpt-5", 0)]),
                                  _answer("stopped")],
                                 [_answer("stopped"), _answer("stopped")]]]
    controller = _Controller(_spec(tmp_path), _StopAtFirstPoll())
    controller.group_class, controller.lease_poll_s = _CountingGroup, 0.0
    result = controller.run()
    assert result.status == "stopped: preempted" and _CountingGroup.polls == 7
    assert result.checkpoint == "ckpt-5"


class _SlowStartGroup(FakeGroup):
    """Workers that never finish starting: only ``should_stop`` can end the start."""

    asked = 0

    @classmethod
    def start(cls, *, size, should_stop=None, **kwargs):
        cls.started.append(size)
        for _ in range(1000):
            _SlowStartGroup.asked += 1
            if should_stop():
                raise _group.StartInterrupted()
        raise AssertionError("the start was never interrupted")


def test_a_stop_while_the_gang_starts_ends_the_start(tmp_path, monkeypatch):
    """A preemption that arrives while the workers are still starting (process start and imports
    take seconds on a busy node) ends the start at once; the job is stopped, nothing runs."""
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    _SlowStartGroup.started, _SlowStartGroup.asked = [], 0
    controller = _Controller(_spec(tmp_path), _StopAtFirstPoll())
    controller.group_class, controller.lease_poll_s = _SlowStartGroup, 0.0
    result = controller.run()
    assert result.status == "stopped: preempted" and _SlowStartGroup.started == [2]
    assert _SlowStartGroup.asked == 1
    kinds = [e["event"] for e in _events.read("fake")]
    assert kinds == ["scheduling", "stopping", "finished"]


@pytest.fixture
def saved_environ():
    """init_process_group sets MASTER_ADDR, RANK, WORLD_SIZE, ... in this process: put them back."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


def test_a_rendezvous_that_never_completes_fails_after_the_rendezvous_timeout(saved_environ):
    """A join that hangs (a peer never arrives) errors after rendezvous_timeout_s, not after the
    much longer collective timeout; the error reads as a peer's (a system failure: restarted)."""
    from ainative.train import _dist, _worker

    started = time.monotonic()
    with pytest.raises(Exception) as info:
        _dist.init_process_group(rank=0, world_size=2, master_addr="127.0.0.1",
                                 master_port=_dist.free_port(), timeout_s=600.0,
                                 rendezvous_timeout_s=2.0)
    assert time.monotonic() - started < 60      # sanity: ~2 s; the collective timeout is 600 s
    text = f"{type(info.value).__name__}: {info.value}".lower()
    assert any(s in text for s in _worker._PEER_ERRORS), text


def test_collectives_keep_the_collective_timeout_after_a_shorter_rendezvous(saved_environ):
    import torch
    import torch.distributed as dist
    from torch.distributed import distributed_c10d

    from ainative.train import _dist

    _dist.init_process_group(rank=0, world_size=1, master_addr="127.0.0.1",
                             master_port=_dist.free_port(), timeout_s=77.0, rendezvous_timeout_s=2.0)
    try:
        backend = distributed_c10d._get_default_group()._get_backend(torch.device("cpu"))
        assert backend.options._timeout.total_seconds() == 77.0
    finally:
        dist.destroy_process_group()
