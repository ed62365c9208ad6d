"""UDP liveness probes (cluster/liveness.py) and the training controller acting on them.

Real sockets on 127.0.0.1; every wait is a condition with a deadline."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time

import pytest

import ainative as ai
from ainative.cluster import liveness, state
from ainative.scheduling import protocol
from ainative.train import _checkpoint, _controller, _dist, _events, _group
from ainative.train.config import FailureConfig
from tests.support import waiting


def _until(pred, timeout_s, what):
    """``waiting.until``, returning when the condition held (monotonic seconds)."""
    waiting.until(what, pred, timeout_s, 0.01)
    return time.monotonic()


@pytest.fixture
def prober():
    made = []

    def make(timeout_s, **kw):
        made.append(liveness.Prober(timeout_s, **kw))
        return made[-1]
    yield make
    for p in made:
        p.close()


def test_a_responder_that_stops_answering_is_lost_after_the_timeout(prober):
    resp = liveness.Responder("127.0.0.1")
    p = prober(0.5)
    p.watch("r1", "127.0.0.1", resp.port, resp.key)
    _until(lambda: p.answering("r1"), 5, "first answer")
    assert p.lost() == []
    resp.close()
    closed = time.monotonic()
    found = _until(lambda: p.lost() == ["r1"], 5, "r1 lost")
    assert found - closed >= 0.5 - 0.05, "declared lost before its timeout"
    assert not p.answering("r1")


class _LossyEcho:
    """Echoes keyed probes like a Responder but drops a share of them, both ways."""

    def __init__(self, key: bytes, loss: float, seed: int = 7) -> None:
        self.key, self.loss, self.rng = key, loss, random.Random(seed)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop, self.seen = threading.Event(), 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(64)
            except OSError:
                continue
            self.seen += 1
            if self.rng.random() >= self.loss and self.rng.random() >= self.loss:
                self.sock.sendto(data, addr)


def test_a_lossy_link_is_not_declared_lost(prober):
    """40% of probes lost each way (far worse than the fault suite's 5%): no false loss."""
    echo = _LossyEcho(b"k" * 8, loss=0.4)
    try:
        p = prober(0.6)
        p.watch("r1", "127.0.0.1", echo.port, echo.key)
        _until(lambda: p.answering("r1"), 5, "first answer")
        _until(lambda: echo.seen >= 150, 30, "150 probes")
        assert p.lost() == []
    finally:
        echo.stop.set()


def test_a_target_that_never_answered_is_not_lost_and_is_warned_about(prober, caplog):
    """UDP filtered, or nothing there: never lost (Ray's health check stays in charge), a warning."""
    resp = liveness.Responder("127.0.0.1")
    try:
        p = prober(0.3, warn_silent_s=0.5)
        with caplog.at_level(logging.WARNING, logger="ainative.cluster.liveness"):
            p.watch("wrong-key", "127.0.0.1", resp.port, b"x" * 8)   # the responder ignores it
            _until(lambda: "get no answer" in caplog.text, 5, "the warning")
        assert p.lost() == [] and not p.answering("wrong-key")
    finally:
        resp.close()


def test_a_prober_that_sent_too_few_probes_does_not_call_silence_a_loss(prober):
    """Silence counts only once min_unanswered probes went out (a starved prober sends fewer)."""
    resp = liveness.Responder("127.0.0.1")
    p = prober(0.2, interval_s=0.5, min_unanswered=4)
    p.watch("r1", "127.0.0.1", resp.port, resp.key)
    _until(lambda: p.answering("r1"), 5, "first answer")
    resp.close()
    closed = time.monotonic()
    found = _until(lambda: p.lost() == ["r1"], 10, "r1 lost")
    assert found - closed >= 1.4, "lost before 4 probes went unanswered (4 x 0.5 s)"


# -- the controller ----------------------------------------------------------------------------
def _answer(state_, since=0.0):
    return {"state": state_, "reports": [], "since_progress_s": since, "error": None,
            "lines": [], "step": None}


class _ProbedGroup:
    """A fake worker group whose ranks answer liveness probes through real Responders."""

    starts: list[dict] = []
    responders: list[liveness.Responder] = []
    finish = threading.Event()

    def __init__(self, size, avoid):
        self.size, self.avoid = size, avoid
        nodes = [n for n in ("node0", "node1", "node2") if n not in avoid][:size]
        self.slots = [_group.RankSlot(r, r, nodes[r], r, 0, 1) for r in range(size)]
        self.responders = [liveness.Responder("127.0.0.1") for _ in range(size)]
        _ProbedGroup.responders = self.responders
        self.infos = [{"ip": "127.0.0.1", "liveness": [r.port, r.key.hex()]}
                      for r in self.responders]
        self.unreachable: set[str] = set()
        self.give_up = None
        self.shut = False

    @classmethod
    def start(cls, *, size, **kwargs):
        cls.starts.append(kwargs)
        return cls(size, kwargs.get("avoid_nodes", ()))

    def __len__(self):
        return self.size

    def poll(self, timeout_s):
        if len(_ProbedGroup.starts) > 1 and _ProbedGroup.finish.is_set():
            return [_answer("finished")] * self.size
        return [_answer("running")] * self.size

    def reusable(self):
        return not self.unreachable

    def request_stop(self, mode):
        pass

    def node_of(self, rank):
        return self.slots[rank].node_id

    def shutdown(self):
        self.shut = True
        for r in self.responders:
            r.close()


class _LivenessController(_controller.Controller):
    group_class = _ProbedGroup
    poll_interval_s = 0.02

    def _fit(self, held=0, avoid=()):
        return self.spec.max_workers


def test_the_controller_restarts_without_a_node_its_probes_lost(tmp_path, monkeypatch):
    """Rank 1 stops answering: the job fails over at ~liveness_timeout_s (not Ray's health
    check), with a failure event naming the probes, and the new gang avoids rank 1's node."""
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    monkeypatch.setattr(_dist, "node_ip", lambda: "10.255.0.1")   # the ranks are "remote"
    monkeypatch.setattr(state, "alive_node_ids", lambda: {"node0", "node1", "node2"})
    _ProbedGroup.starts, _ProbedGroup.finish = [], threading.Event()
    spec = _controller.JobSpec(
        name="probed", fn=lambda: None, config={}, resources=ai.Resources(), min_workers=2,
        max_workers=2, placement="PACK", storage=_checkpoint.Storage(str(tmp_path), "probed", 2),
        failure=FailureConfig(liveness_timeout_s=0.5), datasets={}, shard_factory=None,
        max_runtime_s=None)
    controller = _LivenessController(spec, protocol.ImmediateAdmission().admit(None))
    box = {}
    runner = threading.Thread(target=lambda: box.update(result=controller.run()), daemon=True)
    runner.start()
    _until(lambda: controller.prober is not None and all(
        controller.prober.answering(n) for n in controller._watched.values()), 10, "probes answered")
    first = _ProbedGroup.responders
    first[1].close()                     # rank 1's node goes silent
    cut = time.monotonic()
    _until(lambda: len(_ProbedGroup.starts) == 2, 10, "the restart")
    _ProbedGroup.finish.set()
    runner.join(10)
    assert box["result"].status == "succeeded" and box["result"].restarts == 1
    failure = next(e for e in _events.read("probed") if e["event"] == "failure")
    assert failure["rank"] == 1 and failure["node"] == "node1"
    assert "no answer to liveness probes for 0.5 s" in failure["reason"]
    assert _ProbedGroup.starts[0]["avoid_nodes"] == ()
    assert _ProbedGroup.starts[1]["avoid_nodes"] == ("node1",)
    assert time.monotonic() - cut < 10
    assert controller.prober is None or not controller.prober._thread.is_alive()


def test_no_probes_for_ranks_on_the_controllers_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    monkeypatch.setattr(_dist, "node_ip", lambda: "127.0.0.1")
    group = _ProbedGroup(2, ())
    try:
        spec = _controller.JobSpec(
            name="local", fn=lambda: None, config={}, resources=ai.Resources(), min_workers=2,
            max_workers=2, placement="PACK", storage=_checkpoint.Storage(str(tmp_path), "local", 2),
            failure=FailureConfig(), datasets={}, shard_factory=None, max_runtime_s=None)
        controller = _LivenessController(spec, protocol.ImmediateAdmission().admit(None))
        controller._watch(group)
        assert controller.prober is None and group.give_up is None
    finally:
        group.shutdown()
