"""The live scheduler: one named, detached Ray actor per cluster and namespace running the policy
engine on live node state. Its state (queues, running and pending jobs) is written to a JSON file
after every change and read back when it restarts; running jobs whose nodes are gone are dropped.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ainative import errors
from ainative.policy.admission import Guardrails, Job
from ainative.policy.engine import Decisions, Engine, PolicyConfig
from ainative.policy.queues import DEFAULT_QUEUE, Queue
from ainative.scheduling._placer import BundlePlacer, job_gpu_type

ACTOR_NAME = "ainative-scheduler"


def state_path(namespace: str) -> str:
    from ainative.config import home_dir

    base = os.environ.get("AINATIVE_SCHEDULER_STATE_DIR") or str(home_dir() / "scheduler")
    os.makedirs(base, exist_ok=True)
    return os.path.join(base, f"ainative-scheduler-{namespace or 'default'}.json")


class SchedulerService:
    """The actor's body (plain class: testable without Ray, wrapped with ray.remote by the API)."""

    def __init__(self, queues: list[Queue], config: PolicyConfig, path: str,
                 guardrails: Guardrails | None = None, prices: Any = None) -> None:
        self.path, self.prices, self.config, self.guardrails = path, prices, config, guardrails
        self.queues = list(queues)
        if DEFAULT_QUEUE not in {q.name for q in self.queues}:
            self.queues.append(Queue(DEFAULT_QUEUE))
        self.engine = Engine(self.queues, BundlePlacer(_live_nodes()), config, guardrails)
        self.outcomes: dict[str, str] = {}
        self._restore()

    # --- persistence ---------------------------------------------------------------------------
    def _save(self) -> None:
        jobs = [_job_record(j) for j in self.engine.jobs.values()]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"queues": [q.to_dict() for q in self.queues], "jobs": jobs}, fh)
        os.replace(tmp, self.path)

    def _restore(self) -> None:
        try:
            with open(self.path) as fh:
                saved = json.load(fh)
        except (OSError, ValueError):
            return
        alive = set(self.engine.placer.totals)
        for rec in saved.get("jobs", []):
            job = _job_from(rec)
            if job.queue not in self.engine.queues:
                continue
            try:
                self.engine.submit(job, job.submit_s)
            except errors.SchedulingError:
                continue
            placement = rec.get("placement")
            if placement and all(n in alive for n, _, _ in placement):
                self.engine._start(job, rec["placed_type"], [tuple(p) for p in placement],
                                   rec["start_s"], Decisions())

    # --- the calls job controllers make ------------------------------------------------------------
    def submit(self, request: dict[str, Any]) -> str:
        bundles = tuple(dict(b) for b in request["bundles"])
        job = Job(request["job_id"], request.get("queue") or DEFAULT_QUEUE,
                  sum(b.get("GPU", 0.0) for b in bundles), job_gpu_type(bundles),
                  int(request.get("priority", 0)), bool(request.get("preemptible", True)), time.time(),
                  request.get("expected_duration_s"), bundles, request.get("strategy", "PACK"),
                  {"name": request.get("name", ""), "kind": request.get("kind", "gang"),
                   **{k: request[k] for k in ("budget", "max_runtime_s", "expected_duration_s", "idle",
                                              "team", "cpus") if request.get(k) is not None}})
        self.engine.submit(job, time.time())
        self._pass()
        return job.job_id

    def _pass(self) -> None:
        decisions = self.engine.schedule(time.time())
        self._save()
        self._observe(decisions)

    def _observe(self, decisions: Any) -> None:
        """Decisions with their reasons into each job's event log; queue gauges as Ray metrics."""
        from ainative import events, observability as obs

        for job in decisions.started:  # the job's own controller records "admitted"
            obs.counter("sched_admitted_total", description="jobs admitted", queue=job.queue)
        for job in decisions.preempted:
            name = job.metadata.get("name") or job.job_id
            events.emit(name, "preempted", queue=job.queue, job_id=job.job_id,
                        reason=f"preempted for {job.metadata.get('stopping_for')!r}")
            obs.counter("sched_preempted_total", description="jobs preempted", queue=job.queue)
        for job, why in decisions.stopped:
            events.emit(job.metadata.get("name") or job.job_id, "stopped", queue=job.queue,
                        job_id=job.job_id, reason=str(why))
        eng = self.engine
        for q in self.queues:
            obs.gauge("sched_pending", len(eng.pending[q.name]), description="jobs waiting", queue=q.name)
            obs.gauge("sched_running", len(eng.running_q[q.name]), description="jobs running", queue=q.name)
            for gpu_type in eng.placer.gpu_types():
                obs.gauge("sched_gpus_used", eng.usage.used(q.name, gpu_type),
                          description="GPUs in use by the queue", queue=q.name, gpu_type=str(gpu_type))

    def admitted(self, job_id: str) -> tuple[bool, str]:
        """(True, "") once the job may reserve its gang; else (False, why it waits)."""
        job = self.engine.jobs.get(job_id)
        if job is None:
            raise errors.AdmissionError(f"job {job_id!r} is not known to the scheduler "
                                        f"({self.outcomes.get(job_id, 'never submitted')})", job_id=job_id)
        if not job.running:
            self._pass()
        return (True, "") if job.running else (False, self.why(job_id))

    def poll(self, job_id: str, usage: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A stop request for a running job (preempted or stopped by guardrails), else None.
        ``usage`` (restarts, accelerator utilisation) feeds the guardrails' crash-loop and idle checks."""
        job = self.engine.jobs.get(job_id)
        if job is not None and usage:
            job.metadata.update({k: v for k, v in usage.items() if v is not None})
        if job is None or not job.metadata.get("stopping"):
            self._pass()
            job = self.engine.jobs.get(job_id)
            if job is None or not job.metadata.get("stopping"):
                return None
        reason = job.metadata.get("stop_reason", "preempted")
        message = job.metadata.get("stop_message") or (
            f"preempted for {job.metadata.get('stopping_for')!r}; re-run to resume from the checkpoint")
        return {"reason": reason, "checkpoint": bool(job.metadata.get("stop_checkpoint", True)),
                "grace_s": float(job.metadata.get("grace_s", 30.0)), "message": message}

    def release(self, job_id: str, outcome: str) -> None:
        now = time.time()
        self.outcomes[job_id] = outcome
        if self.engine.finish(job_id, now, outcome) is None:
            self.engine.cancel(job_id)
        self._pass()

    def cancel(self, job_id: str) -> None:
        self.engine.cancel(job_id)
        self._save()

    # --- status ----------------------------------------------------------------------------------
    def why(self, job_id: str) -> str:
        job = self.engine.jobs.get(job_id)
        if job is None:
            return f"{job_id}: not queued ({self.outcomes.get(job_id, 'unknown job')})"
        if job.running:
            return f"{job_id}: running since {time.strftime('%H:%M:%S', time.gmtime(job.start_s))} UTC"
        ahead = [k for k in self.engine.pending[job.queue] if k[3] != job_id]
        pos = next((i for i, k in enumerate(self.engine.pending[job.queue]) if k[3] == job_id), 0)
        reason = job.reason or "not looked at yet"
        return f"{job_id}: pending in queue {job.queue!r} behind {min(pos, len(ahead))} job(s); {reason}"

    def status(self) -> dict[str, Any]:
        eng = self.engine
        queues = []
        for q in self.queues:
            used = {t: eng.usage.used(q.name, t) for t in eng.placer.gpu_types()}
            queues.append({**q.to_dict(), "used": used,
                           "share": round(eng.usage.share(q.name, q.weight), 4),
                           "running": sorted(eng.running_q[q.name]),
                           "pending": [{"job_id": k[3], "priority": -k[0], "why": self.why(k[3])}
                                       for k in eng.pending[q.name]]})
        return {"queues": queues, "capacity": dict(eng.placer.total), "free": eng.placer.free_total,
                "preemptions": eng.preemptions, "warnings": eng.warnings,
                "policy": self.config.policy}


def _live_nodes() -> dict[str, dict[str, float]]:
    from ainative.cluster import state

    return {v.node_id: dict(v.total) for v in state.nodes()}


def _job_record(j: Job) -> dict[str, Any]:
    return {"job_id": j.job_id, "queue": j.queue, "priority": j.priority, "preemptible": j.preemptible,
            "submit_s": j.submit_s, "duration_s": j.duration_s, "bundles": [dict(b) for b in j.bundles],
            "strategy": j.strategy, "start_s": j.start_s, "placed_type": j.placed_type,
            "placement": j.placement if j.running else None, "preemptions": j.preemptions,
            "metadata": {k: v for k, v in j.metadata.items() if isinstance(v, (str, int, float, bool))}}


def _job_from(rec: dict[str, Any]) -> Job:
    bundles = tuple(rec["bundles"])
    job = Job(rec["job_id"], rec["queue"], sum(b.get("GPU", 0.0) for b in bundles), job_gpu_type(bundles),
              rec["priority"], rec["preemptible"], rec["submit_s"], rec["duration_s"], bundles,
              rec["strategy"], dict(rec.get("metadata", {})))
    job.preemptions = rec.get("preemptions", 0)
    return job
