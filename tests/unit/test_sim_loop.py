"""The one discrete-event loop (``sim.loop.Replay``) both simulators run on."""

from __future__ import annotations

from ainative.sim import guardrails as cost_sim
from ainative.policy.admission import Job
from ainative.policy.engine import Engine, PolicyConfig
from ainative.policy.gpuindex import GpuIndex
from ainative.policy.queues import Queue
from ainative.sim import loop, simulator


class Log(loop.Replay):
    def __init__(self, jobs: dict[str, tuple[float, float]], wake: float | None = None) -> None:
        super().__init__(Engine([Queue("q", quota={"H100": 1})], GpuIndex([("n", "H100", 1)]),
                                PolicyConfig(min_runtime_s=0)))
        self.jobs, self.wake, self.log = jobs, wake, []
        self.submissions((t, j) for j, (t, _) in jobs.items())

    def submit(self, job_id: str, now: float) -> bool:
        self.engine.submit(Job(job_id, "q", 1, "H100", 0, True, now, self.jobs[job_id][1]), now)
        return True

    def run_time(self, job: Job) -> float:
        return self.jobs[job.job_id][1]

    def on_start(self, job: Job, now: float) -> None:
        self.log.append(("start", job.job_id, now))

    def on_end(self, job: Job, now: float) -> None:
        self.log.append(("end", job.job_id, now))

    def on_instant(self, now: float, instants: int) -> float | None:
        self.log.append(("instant", now))
        wake, self.wake = self.wake, None
        return wake


def test_events_in_time_order_one_pass_per_instant():
    r = Log({"a": (0.0, 10.0), "b": (1.0, 5.0)})
    r.run()
    assert r.log == [("start", "a", 0.0), ("instant", 0.0), ("instant", 1.0),
                     ("end", "a", 10.0), ("start", "b", 10.0), ("instant", 10.0),
                     ("end", "b", 15.0), ("instant", 15.0)]


def test_a_wake_up_is_an_instant_of_its_own():
    r = Log({"a": (0.0, 10.0)}, wake=4.0)
    r.run()
    assert ("instant", 4.0) in r.log and r.log[-1] == ("instant", 10.0)


def test_both_simulators_share_it():
    assert issubclass(simulator._TraceReplay, loop.Replay)
    assert issubclass(cost_sim._CostReplay, loop.Replay)
