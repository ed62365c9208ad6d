"""The live scheduler's body without Ray: the durable state file (a corrupt one is reported, set
aside and rebuilt from re-announced leases), idempotent submission, lease expiry, the attribution
of placement groups to jobs (``external`` GPUs), errors unwrapped from Ray's RayTaskError, and the
pluggable utilisation probe."""

from __future__ import annotations

import json
import os
import pickle

import pytest

from ainative import errors
from ainative.cost import probes
from ainative.policy.engine import PolicyConfig
from ainative.policy.queues import Queue
from ainative.scheduling import _reconcile, api, service

NODES = {"n1": {"GPU": 4.0, "CPU": 4.0, "accelerator_type:H100": 1.0},
         "n2": {"GPU": 4.0, "CPU": 4.0, "accelerator_type:H100": 1.0}}
BUNDLE = {"GPU": 1.0, "CPU": 0.5, "accelerator_type:H100": 0.001}


@pytest.fixture(autouse=True)
def _events(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "events"))


def make(path, **options) -> service.SchedulerService:
    return service.SchedulerService([Queue("a", quota={"H100": 8})], PolicyConfig(), str(path),
                                    options={"nodes": NODES, **options})


def body(job_id: str, n: int = 2, **extra) -> dict:
    return {"job_id": job_id, "name": job_id, "bundles": [BUNDLE] * n, "queue": "a", **extra}


def test_state_file_is_written_whole_and_read_back(tmp_path):
    path = tmp_path / "state.json"
    svc = make(path)
    assert svc.submit(body("j1")) == "j1"
    assert svc.submit(body("j1")) == "j1"                       # a retried submit is a no-op
    ok, why, started_s = svc.admitted("j1")
    assert (ok, why) == (True, "") and started_s == svc.engine.jobs["j1"].start_s
    saved = json.loads(path.read_text())
    assert [j["job_id"] for j in saved["jobs"]] == ["j1"] and saved["jobs"][0]["placement"]
    assert not (tmp_path / "state.json.tmp").exists()
    again = make(path)
    assert again.status()["queues"][0]["used"]["H100"] == 2.0
    assert again.rebuilt["from_file"] == 1 and again.rebuilt["state_file"] == "read"


def test_corrupt_state_file_is_reported_kept_and_rebuilt_from_leases(tmp_path):
    from ainative import events

    path = tmp_path / "state.json"
    svc = make(path)
    svc.submit(body("j1", submit_s=123.0))
    svc.admitted("j1")
    path.write_text('{"queues": [], "jobs": [{"job_id": ')     # a torn write
    rebuilt = make(path)
    st = rebuilt.status()
    assert st["rebuilt"]["state_file"] == "corrupt"
    assert any("unreadable" in w and "JSONDecodeError" in w for w in st["warnings"])
    assert [e["event"] for e in events.read(service.EVENTS_NAME)] == ["state_corrupt"]
    kept = [p for p in os.listdir(tmp_path) if p.startswith("state.json.corrupt-")]
    assert len(kept) == 1 and (tmp_path / kept[0]).read_text().startswith('{"queues": [], "jobs"')
    assert not st["queues"][0]["running"]
    # the job's lease heartbeats, is not known, and re-announces the job as running
    assert rebuilt.heartbeat("j1") is False
    assert rebuilt.announce(body("j1", submit_s=123.0), True) is True
    st = rebuilt.status()
    assert st["queues"][0]["running"] == ["j1"] and st["queues"][0]["used"]["H100"] == 2.0
    assert rebuilt.engine.jobs["j1"].submit_s == 123.0
    json.loads(path.read_text())                                # rewritten whole


def test_a_released_job_is_not_adopted_again(tmp_path):
    svc = make(tmp_path / "s.json")
    svc.submit(body("j1"))
    svc.admitted("j1")
    svc.release("j1", "succeeded")
    assert svc.announce(body("j1"), True) is False
    with pytest.raises(errors.AdmissionError, match="already ended"):
        svc.submit(body("j1"))


def test_silent_lease_is_released_after_the_timeout(tmp_path):
    svc = make(tmp_path / "s.json", lease_timeout_s=5.0)
    svc.submit(body("j1"))
    svc.admitted("j1")
    svc.last_seen["j1"] -= 6.0                                  # no heartbeat for 6 s
    svc._reconcile_once()
    assert not svc.status()["queues"][0]["running"]
    assert "lost: no lease heartbeat" in svc.why("j1")


def test_placement_groups_are_matched_to_jobs_and_the_rest_is_external(tmp_path):
    svc = make(tmp_path / "s.json")
    svc.submit(body("train-x-1"))
    svc.admitted("train-x-1")
    ours = _reconcile.Group("p1", "ainative-train-train-x-1-ab12", ({"GPU": 1.0},) * 2, ("n2", "n2"))
    theirs = _reconcile.Group("p2", "someone-else", ({"GPU": 1.0},), ("n1",))
    snap = _reconcile.Snapshot(NODES, {"n1": 2.0, "n2": 2.0}, (ours, theirs), 0.001)
    svc._reconcile_once(snap)
    st = svc.status()
    assert [p[0] for p in svc.engine.jobs["train-x-1"].placement] == ["n2", "n2"]   # where it is
    # n1: 1 GPU in the outside group + 1 held by a plain actor; n2: only ours
    assert st["external"] == {"by_type": {"H100": 2.0}, "by_node": {"n1": 2.0}}
    assert st["nodes"]["n1"]["free"] == 2.0 and st["nodes"]["n2"]["free"] == 2.0
    assert st["free"]["H100"] == 4.0
    gone = _reconcile.Snapshot({"n1": NODES["n1"]}, {"n1": 0.0}, (), 0.001)   # n2 died
    svc._reconcile_once(gone)
    st = svc.status()
    assert st["capacity"] == {"H100": 4.0} and "n2" not in st["nodes"]
    assert st["queues"][0]["used"]["H100"] == 2.0     # its controller reports; the quota is held


class _FakeRayTaskError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"ray::SchedulerService.submit() (pid=1)\n  Traceback...\n{cause}")
        self.cause = cause


def test_remote_errors_reach_users_as_their_own_type():
    inner = errors.AdmissionError("job 'x' can never run: needs 9 GPUs", field="job", value="x")
    got = api.unwrap(_FakeRayTaskError(inner))
    assert type(got) is errors.AdmissionError and got.field == "job" and "Traceback" not in str(got)
    # Ray's dual-class wrapper: RayTaskError(AdmissionError), with no usable cause
    wrapped_cls = type("RayTaskError(UnknownQueueError)", (_FakeRayTaskError, errors.UnknownQueueError), {})
    wrapped = wrapped_cls.__new__(wrapped_cls)
    Exception.__init__(wrapped, "remote traceback")
    wrapped.cause = None
    wrapped.message, wrapped.details = "queue 'nope' is not configured", {"field": "queue"}
    got = api.unwrap(wrapped)
    assert type(got) is errors.UnknownQueueError and str(got) == "queue 'nope' is not configured"
    plain = ValueError("not ours")
    assert api.unwrap(plain) is plain
    back = pickle.loads(pickle.dumps(inner))                    # crosses the actor boundary intact
    assert type(back) is errors.AdmissionError and back.details == inner.details


def test_unwrap_with_a_real_ray_task_error():
    ray_exceptions = pytest.importorskip("ray.exceptions")
    inner = errors.AdmissionError("can never run", job_id="j")
    try:
        raise inner
    except errors.AdmissionError as exc:
        wrapped = ray_exceptions.RayTaskError("submit", "Traceback (most recent call last): ...", exc)
    dual = wrapped.as_instanceof_cause()
    for exc in (wrapped, dual):
        got = api.unwrap(exc)
        assert type(got) is errors.AdmissionError and got.job_id == "j"


def idle_probe() -> float:
    return 0.0


class CountingProbe:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return 0.5


def test_probe_named_by_module_and_function(monkeypatch):
    assert probes.load(f"{__name__}:idle_probe")() == 0.0
    assert probes.load(f"{__name__}:CountingProbe")() == 0.5        # a class is instantiated
    for bad in ("nocolon", "no.such.module:x", f"{__name__}:missing", f"{__name__}:BUNDLE"):
        with pytest.raises(errors.ConfigError, match=probes.PROBE_ENV):
            probes.load(bad)
    monkeypatch.setenv(probes.PROBE_ENV, f"{__name__}:nope")
    with pytest.raises(errors.ConfigError):
        probes.configured_probe_spec()
    monkeypatch.delenv(probes.PROBE_ENV)
    assert probes.configured_probe_spec() is None
    assert isinstance(probes.worker_probe(None), probes.NvmlProbe)


def test_worker_reports_its_probe_reading_only_while_running():
    from ainative.train import _worker

    w = _worker.TrainWorker("j", 0, 1.0)
    # the worker pre-imports torch in a thread; let it finish, or later tests in this process see
    # half-imported torch/numpy modules
    w._preimport.join(timeout=120)
    w._set_probe(f"{__name__}:idle_probe")
    assert w.poll()["utilization"] is None                      # idle state: not training
    w._state = "running"
    assert w.poll()["utilization"] == 0.0
