"""The discrete-event simulator: the policy engine driven by simulated time.

Events are job submissions and job ends. All events at one instant are applied, then the engine
makes one pass. When nothing was freed, the pass only looks at the newly submitted jobs (every
other pending job was blocked a moment ago and still is), which keeps 10,000 jobs fast.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from ainative.policy.admission import Guardrails, Job
from ainative.policy.engine import Engine, PolicyConfig
from ainative.policy.gpuindex import GpuIndex
from ainative.policy.queues import Queue
from ainative.sim.cluster import ClusterSpec
from ainative.sim.report import Recorder, Report
from ainative.sim.trace import TraceJob

_FRAG_EVERY = 16     # sample fragmentation every this many instants (it scans the pending jobs)


def run(trace: Sequence[TraceJob], cluster: ClusterSpec, queues: Sequence[Queue],
        config: PolicyConfig, guardrails: Guardrails | None = None) -> Report:
    index = GpuIndex(cluster.nodes)
    engine = Engine(queues, index, config, guardrails)
    queue_names = {q.name for q in queues}
    rec = Recorder(engine, index, {q.name: q.weight for q in queues})
    events: list[tuple[float, int, int, str, float]] = []   # (time, kind 0=end 1=submit, seq, id, start)
    for k, tj in enumerate(trace):
        events.append((tj.submit_time_s, 1, k, tj.job_id, 0.0))
    heapq.heapify(events)
    rows = {tj.job_id: tj for tj in trace}
    seq, instants = len(trace), 0
    while events:
        now = events[0][0]
        rec.advance(now)
        new: list[str] = []
        freed = False
        while events and events[0][0] == now:
            _, kind, _, job_id, start = heapq.heappop(events)
            if kind == 1:
                if _submit(engine, rows[job_id], queue_names, now, rec):
                    new.append(job_id)
            else:
                job = engine.running.get(job_id)
                if job is not None and job.start_s == start:
                    engine.finish(job_id, now)
                    rec.finished(job, now)
                    freed = True
        dec = engine.schedule(now, None if freed or instants == 0 else new)
        for _ in range(8):              # what victims freed may start others at once
            for job in dec.started:
                seq += 1
                assert job.duration_s is not None and job.start_s is not None
                heapq.heappush(events, (now + job.duration_s, 0, seq, job.job_id, job.start_s))
                rec.started(job)
            for job in dec.preempted:
                rec.preempted(job)
            for job, _stop in dec.stopped:
                rec.stopped(job, now)
            if not (dec.preempted or dec.stopped):
                break
            dec = engine.schedule(now)
        instants += 1
        if instants % _FRAG_EVERY == 0:
            rec.sample_fragmentation()
    return rec.report(list(engine.jobs.values()))


def _submit(engine: Engine, tj: TraceJob, queue_names: set[str], now: float, rec: Recorder) -> bool:
    job = Job(tj.job_id, tj.team, tj.num_gpus, tj.gpu_type, tj.priority, tj.preemptible, now,
              tj.duration_s)
    job.metadata["duration0"] = tj.duration_s
    try:
        engine.submit(job, now)
    except Exception as exc:   # noqa: BLE001 - AdmissionError/UnknownQueueError: counted, reported
        rec.rejected(tj, str(exc))
        return False
    rec.submitted(job)
    return True
