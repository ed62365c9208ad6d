"""``ainative.simulate``'s replay: the policy engine on ``sim.loop``'s event loop, measured by
``sim.report.Recorder`` (utilisation, waits, fair share, fragmentation)."""

from __future__ import annotations

from collections.abc import Sequence

from ainative.policy.admission import Guardrails, Job
from ainative.policy.engine import Engine, PolicyConfig
from ainative.policy.fragmentation import RequestMix
from ainative.policy.gpuindex import GpuIndex
from ainative.policy.queues import Queue
from ainative.sim.cluster import ClusterSpec
from ainative.sim.loop import Replay
from ainative.sim.report import Recorder, Report
from ainative.sim.trace import TraceJob

_FRAG_EVERY = 16     # sample fragmentation every this many instants


class _TraceReplay(Replay):
    def __init__(self, engine: Engine, rows: dict[str, TraceJob], rec: Recorder) -> None:
        super().__init__(engine)
        self.rows, self.rec = rows, rec

    def submit(self, job_id: str, now: float) -> bool:
        tj = self.rows[job_id]
        job = Job(tj.job_id, tj.team, tj.num_gpus, tj.gpu_type, tj.priority, tj.preemptible, now,
                  tj.duration_s)
        job.metadata["duration0"] = tj.duration_s
        try:
            self.engine.submit(job, now)
        except Exception as exc:   # noqa: BLE001 - AdmissionError/UnknownQueueError: counted, reported
            self.rec.rejected(tj, str(exc))
            return False
        self.rec.submitted(job)
        return True

    def run_time(self, job: Job) -> float:
        assert job.duration_s is not None      # what is left of it after a preemption
        return job.duration_s

    def on_time(self, now: float) -> None:
        self.rec.advance(now)

    def on_start(self, job: Job, now: float) -> None:
        self.rec.started(job)

    def on_end(self, job: Job, now: float) -> None:
        self.rec.finished(job, now)

    def on_preempt(self, job: Job, now: float) -> None:
        self.rec.preempted(job)

    def on_stop(self, job: Job, stop: object, now: float) -> None:
        self.rec.stopped(job, now)

    def on_instant(self, now: float, instants: int) -> float | None:
        if instants % _FRAG_EVERY == 0:
            self.rec.sample_fragmentation()
        return None


def run(trace: Sequence[TraceJob], cluster: ClusterSpec, queues: Sequence[Queue],
        config: PolicyConfig, guardrails: Guardrails | None = None) -> Report:
    index = GpuIndex(cluster.nodes, config.placement, RequestMix.of(tj.num_gpus for tj in trace))
    engine = Engine(queues, index, config, guardrails)
    rec = Recorder(engine, index, {q.name: q.weight for q in queues})
    replay = _TraceReplay(engine, {tj.job_id: tj for tj in trace}, rec)
    replay.submissions((tj.submit_time_s, tj.job_id) for tj in trace)
    replay.run()
    return rec.report(list(engine.jobs.values()))
