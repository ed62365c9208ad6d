"""The live scheduler: one named, detached Ray actor per cluster and namespace running the policy
engine on live node state.

* Live view: a background thread reconciles with Ray every ``reconcile_s`` (``_reconcile``): nodes
  that joined or died and their totals, the real nodes of admitted gangs, and GPUs held by
  placement groups or actors it did not admit (``external``, counted as used, never double-booked).
* Leases: every admitted or waiting job is kept alive by its controller's lease (a heartbeat about
  once a second); one not heard from for ``lease_timeout_s`` (its driver died) is released.
* Durability: its state (queues, running and pending jobs) is written to a JSON file (fsync of file
  and directory before the rename) after every change and read back when it restarts; a corrupt
  file is set aside with a warning and an event, and the scheduler rebuilds from what is running:
  leases re-announce their jobs and live placement groups are matched to them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ainative import errors
from ainative.policy.admission import Guardrails, Job
from ainative.policy.engine import Decisions, Engine, PolicyConfig
from ainative.policy.queues import DEFAULT_QUEUE, Queue
from ainative.scheduling import _reconcile
from ainative.scheduling._placer import BundlePlacer, job_gpu_type

ACTOR_NAME = "ainative-scheduler"
EVENTS_NAME = "ainative-scheduler"        # the scheduler's own event log (nodes, leases, state file)
DEFAULT_RECONCILE_S = 1.0
DEFAULT_LEASE_TIMEOUT_S = 30.0
logger = logging.getLogger(__name__)
_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    """Actor calls and the reconcile thread take turns on the engine."""
    @functools.wraps(method)
    def wrapper(self: SchedulerService, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


def state_path(namespace: str) -> str:
    from ainative.config import home_dir

    base = os.environ.get("AINATIVE_SCHEDULER_STATE_DIR") or str(home_dir() / "scheduler")
    os.makedirs(base, exist_ok=True)
    return os.path.join(base, f"ainative-scheduler-{namespace or 'default'}.json")


class SchedulerService:
    """The actor's body (plain class: testable without Ray, wrapped with ray.remote by the API).

    ``options``: ``reconcile_s`` (seconds between reconciles with Ray; None: no thread),
    ``lease_timeout_s`` (release a job whose lease went silent this long), ``idle`` (the
    IdlePolicy for jobs that bring none)."""

    def __init__(self, queues: list[Queue], config: PolicyConfig, path: str,
                 guardrails: Guardrails | None = None, prices: Any = None,
                 options: dict[str, Any] | None = None) -> None:
        self.path, self.prices, self.config, self.guardrails = path, prices, config, guardrails
        opts = dict(options or {})
        self.reconcile_s: float | None = opts.get("reconcile_s", DEFAULT_RECONCILE_S)
        self.lease_timeout_s = float(opts.get("lease_timeout_s") or DEFAULT_LEASE_TIMEOUT_S)
        self.default_idle = opts.get("idle")
        self.queues = list(queues)
        if DEFAULT_QUEUE not in {q.name for q in self.queues}:
            self.queues.append(Queue(DEFAULT_QUEUE))
        self._lock = threading.RLock()
        self._endpoints = False       # an endpoint is admitted: the reconcile reads Serve replicas
        self.reconciles: dict[str, Any] = {"count": 0, "last_ms": 0.0, "max_ms": 0.0,
                                           "total_ms": 0.0, "errors": 0, "last_error": ""}
        self._snap: _reconcile.Snapshot | None
        if opts.get("nodes") is not None:     # a fixed node table (unit tests): no Ray, no thread
            self._snap = _reconcile.Snapshot(opts["nodes"], {}, (), 0.0)
            self.reconcile_s = None
        else:
            self._snap = self._snapshot()
        totals = self._snap.totals if self._snap is not None else _live_nodes()
        self.engine = Engine(self.queues, BundlePlacer(totals, config.placement), config, guardrails)
        self.outcomes: dict[str, str] = {}
        self.last_seen: dict[str, float] = {}
        self.rebuilt: dict[str, Any] = {"from_file": 0, "announced": 0, "groups_matched": 0,
                                        "state_file": "none"}
        self._saved = ""
        self._dirty, self._last_pass = True, 0.0
        self._restore()
        self._reconcile_once()
        self._pass()          # guardrails meter restored jobs from their last charge, now
        self._stop = threading.Event()
        if self.reconcile_s:
            threading.Thread(target=self._loop, name="ainative-scheduler-reconcile",
                             daemon=True).start()

    # --- persistence ---------------------------------------------------------------------------
    def _save(self) -> None:
        jobs = [_job_record(j) for j in self.engine.jobs.values()]
        text = json.dumps({"queues": [q.to_dict() for q in self.queues], "jobs": jobs})
        if text == self._saved:
            return
        _write_durably(self.path, text)
        self._saved = text

    def _restore(self) -> None:
        try:
            with open(self.path) as fh:
                saved = json.load(fh)
            if not isinstance(saved, dict) or not isinstance(saved.get("jobs", []), list):
                raise ValueError(f"expected an object with a 'jobs' list, got {type(saved).__name__}")
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self._corrupt(exc)
            return
        self.rebuilt["state_file"] = "read"
        alive = set(self.engine.placer.totals)
        now = time.time()
        for rec in saved.get("jobs", []):
            try:
                job = _job_from(rec)
            except (KeyError, TypeError, ValueError) as exc:
                self._corrupt(exc, partial=True)
                continue
            if job.queue not in self.engine.queues:
                continue
            try:
                self.engine.submit(job, job.submit_s)
            except errors.SchedulingError:
                continue
            self.last_seen[job.job_id] = now        # a grace period for its lease to come back
            self.rebuilt["from_file"] += 1
            placement = rec.get("placement")
            if placement is not None:    # running: keep it running, even on nodes now gone
                placement = [tuple(p) for p in placement if p[0] in alive]
                self.engine._start(job, rec["placed_type"], placement, rec["start_s"], Decisions())

    def _corrupt(self, exc: BaseException, *, partial: bool = False) -> None:
        """A state file that cannot be read is reported, set aside, and rebuilt from what runs."""
        from ainative import events

        aside = f"{self.path}.corrupt-{int(time.time())}"
        if not partial:
            try:
                os.replace(self.path, aside)
            except OSError:
                aside = self.path
        msg = (f"scheduler state file {self.path} is {'partly ' if partial else ''}unreadable "
               f"({type(exc).__name__}: {str(exc)[:200]}); "
               + ("skipped the bad record" if partial else f"kept it as {aside} and rebuilding from "
                  "the live placement groups and the leases their controllers re-announce"))
        logger.warning(msg)
        self.engine.warnings.append(msg)
        self.rebuilt["state_file"] = "corrupt"
        events.emit(EVENTS_NAME, "state_corrupt", path=self.path, kept_as=aside,
                    error=f"{type(exc).__name__}: {exc}"[:500])

    # --- the live view -------------------------------------------------------------------------
    def _snapshot(self) -> _reconcile.Snapshot | None:
        try:
            return _reconcile.snapshot(replicas=self._endpoints)
        except Exception as exc:    # a GCS hiccup must not kill the scheduler; the next try counts
            self.reconciles["errors"] += 1
            self.reconciles["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("scheduler could not read the cluster state: %s", exc)
            return None

    def _loop(self) -> None:
        assert self.reconcile_s is not None
        while not self._stop.wait(self.reconcile_s):
            try:
                snap = self._snapshot()           # outside the lock: the GCS round trips
                with self._lock:
                    self._reconcile_once(snap)
            except Exception as exc:  # keep reconciling whatever one pass hit
                self.reconciles["errors"] += 1
                self.reconciles["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
                logger.exception("scheduler reconcile failed")

    @_locked
    def reconcile(self) -> dict[str, Any]:
        """One reconcile now (the thread does this every ``reconcile_s``); returns its cost."""
        self._reconcile_once(self._snapshot())
        return dict(self.reconciles)

    def _reconcile_once(self, snap: _reconcile.Snapshot | None = None) -> None:
        from ainative import events

        snap = snap or self._snap
        if snap is None:
            return
        self._snap = snap
        eng, placer = self.engine, self.engine.placer
        before, ext_before = set(placer.totals), dict(placer.external)
        running = list(eng.running.values())
        self._endpoints = any(j.metadata.get("endpoint") for j in running)
        got = _reconcile.attribute(snap, running)
        for job in running:
            if job.job_id in got.placements:
                job.placement = got.placements[job.job_id]
        self.rebuilt["groups_matched"] = len(got.matched)
        placer.reset(snap.totals, got.external, [j.placement or [] for j in running])
        eng.usage.capacity = {t: c for t, c in placer.total.items() if c > 0}
        now = time.time()
        changed = set(snap.totals) != before or got.external != ext_before
        for node in sorted(set(snap.totals) - before):
            events.emit(EVENTS_NAME, "node_added", node=node, resources=snap.totals[node])
        for node in sorted(before - set(snap.totals)):
            hit = [j for j in running if any(p[0] == node for p in (j.placement or ()))]
            events.emit(EVENTS_NAME, "node_lost", node=node, jobs=[j.job_id for j in hit])
            for job in hit:    # its controller restarts or fails the gang; the lease says which
                events.emit(job.metadata.get("name") or job.job_id, "node_lost", node=node,
                            job_id=job.job_id)
        changed |= self._expire_leases(now)
        took = snap.took_s * 1000
        r = self.reconciles
        r["count"] += 1
        r["last_ms"], r["max_ms"], r["total_ms"] = took, max(r["max_ms"], took), r["total_ms"] + took
        self._dirty |= changed
        if self._dirty or time.time() - self._last_pass >= (self.reconcile_s or 1.0):
            self._pass()          # also the time-driven decisions: aging, guardrails metering

    def _expire_leases(self, now: float) -> bool:
        from ainative import events

        expired = []
        for job_id in list(self.engine.jobs):
            seen = self.last_seen.setdefault(job_id, now)
            if now - seen > self.lease_timeout_s:
                expired.append(job_id)
        for job_id in expired:
            job = self.engine.jobs[job_id]
            outcome = f"lost: no lease heartbeat for {now - self.last_seen[job_id]:.0f} s"
            self.outcomes[job_id] = outcome
            self.last_seen.pop(job_id, None)
            if self.engine.finish(job_id, now, outcome) is None:
                self.engine.cancel(job_id)
            events.emit(job.metadata.get("name") or job_id, "lease_expired", job_id=job_id,
                        queue=job.queue, reason=outcome, lease_timeout_s=self.lease_timeout_s)
        return bool(expired)

    # --- the calls job controllers make ------------------------------------------------------------
    @_locked
    def submit(self, request: dict[str, Any]) -> str:
        """Queue a job; idempotent (a retried call after a restart finds the job already there)."""
        job_id = request["job_id"]
        self.last_seen[job_id] = time.time()
        if job_id in self.engine.jobs:
            return str(job_id)
        if job_id in self.outcomes:
            raise errors.AdmissionError(f"job {job_id!r} already ended ({self.outcomes[job_id]})",
                                        job_id=job_id)
        job = self._job(request)
        self.engine.submit(job, time.time())
        self._pass()
        return job.job_id

    def _job(self, request: dict[str, Any]) -> Job:
        bundles = tuple(dict(b) for b in request["bundles"])
        meta = {"name": request.get("name", ""), "kind": request.get("kind", "gang"),
                **{k: request[k] for k in ("budget", "max_runtime_s", "expected_duration_s", "idle",
                                           "team", "cpus", "endpoint") if request.get(k) is not None}}
        if meta.get("idle") is None and self.default_idle is not None:
            meta["idle"] = self.default_idle
        return Job(request["job_id"], request.get("queue") or DEFAULT_QUEUE,
                   sum(b.get("GPU", 0.0) for b in bundles), job_gpu_type(bundles),
                   int(request.get("priority", 0)), bool(request.get("preemptible", True)),
                   float(request.get("submit_s") or time.time()), request.get("expected_duration_s"),
                   bundles, request.get("strategy", "PACK"), meta)

    @_locked
    def heartbeat(self, job_id: str) -> bool:
        """A lease is alive; False when the scheduler does not know the job (announce it)."""
        if job_id in self.engine.jobs:
            self.last_seen[job_id] = time.time()
            return True
        return False

    @_locked
    def announce(self, request: dict[str, Any], running: bool) -> bool:
        """A lease re-announces its job after the scheduler lost it (restart with a corrupt or
        stale state file): a running job is adopted as running where its gang really is, a waiting
        one is queued again with its submit time. False when the job already ended."""
        job_id = request["job_id"]
        now = time.time()
        if job_id in self.engine.jobs:
            self.last_seen[job_id] = now
            return True
        if job_id in self.outcomes and not self.outcomes[job_id].startswith("lost"):
            return False
        was_lost = job_id in self.outcomes       # expired here: charged up to its expiry already
        job = self._job(request)
        try:
            self.engine.submit(job, job.submit_s)
        except errors.SchedulingError as exc:
            logger.warning("cannot adopt job %s: %s", job_id, exc)
            return False
        self.outcomes.pop(job_id, None)
        self.last_seen[job_id] = now
        self.rebuilt["announced"] += 1
        if running:
            kind = job.gpu_type or next(iter(self.engine._types(job)), "")
            place = self.engine.placer.place_job(job, kind) or []
            start = now if was_lost else float(request.get("start_s") or now)
            self.engine._start(job, kind, place, start, Decisions())
            self._reconcile_once()        # its real nodes, from its placement group
        self._pass()
        return True

    def _pass(self) -> None:
        self._dirty, self._last_pass = False, time.time()
        decisions = self.engine.schedule(self._last_pass)
        self._save()
        self._observe(decisions)

    def _pass_if_due(self) -> None:
        """A decision pass when something changed since the last one (or it is a second old):
        many waiting jobs polling ``admitted`` do not each cost a full pass."""
        if self._dirty or time.time() - self._last_pass >= 1.0:
            self._pass()

    def _observe(self, decisions: Any) -> None:
        """Decisions with their reasons into each job's event log; queue gauges as Ray metrics."""
        from ainative import events, observability as obs

        for job in decisions.started:  # the job's own controller records "admitted"
            obs.counter("sched_admitted_total", description="jobs admitted", queue=job.queue)
        for job in decisions.preempted:
            name = job.metadata.get("name") or job.job_id
            events.emit(name, "preempting", queue=job.queue, job_id=job.job_id,
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
        for gpu_type, gpus in eng.placer.external_by_type().items():
            obs.gauge("sched_gpus_external", gpus, description="GPUs held outside the scheduler",
                      gpu_type=str(gpu_type))

    @_locked
    def admitted(self, job_id: str) -> tuple[bool, str, float | None]:
        """(True, "", its start time) once the job may reserve its gang; else (False, why it
        waits, None). The start time is where the job's charges begin."""
        job = self.engine.jobs.get(job_id)
        if job is None:
            raise errors.AdmissionError(f"job {job_id!r} is not known to the scheduler "
                                        f"({self.outcomes.get(job_id, 'never submitted')})", job_id=job_id)
        self.last_seen[job_id] = time.time()
        if not job.running:
            self._pass_if_due()
        return (True, "", job.start_s) if job.running else (False, self.why(job_id), None)

    @_locked
    def known(self, job_id: str) -> bool:
        return job_id in self.engine.jobs

    @_locked
    def poll(self, job_id: str, usage: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A stop request for a running job (preempted or stopped by guardrails), else None.
        ``usage`` (restarts, accelerator utilisation) feeds the guardrails' crash-loop and idle checks."""
        job = self.engine.jobs.get(job_id)
        if job is not None:
            self.last_seen[job_id] = time.time()
        if job is not None and usage:
            job.metadata.update({k: v for k, v in usage.items() if v is not None})
        if job is None or not job.metadata.get("stopping"):
            self._pass_if_due()
            job = self.engine.jobs.get(job_id)
            if job is None or not job.metadata.get("stopping"):
                return None
        reason = job.metadata.get("stop_reason", "preempted")
        message = job.metadata.get("stop_message") or (
            f"preempted for {job.metadata.get('stopping_for')!r}; requeued with its priority and "
            "submit time, it resumes from its last committed checkpoint")
        return {"reason": reason, "checkpoint": bool(job.metadata.get("stop_checkpoint", True)),
                "grace_s": float(job.metadata.get("grace_s", 30.0)), "message": message}

    @_locked
    def release(self, job_id: str, outcome: str) -> float:
        """End the job; returns when (where its charges end)."""
        now = time.time()
        self.outcomes[job_id] = outcome
        self.last_seen.pop(job_id, None)
        if self.engine.finish(job_id, now, outcome) is None:
            self.engine.cancel(job_id)
        self._pass()
        return now

    @_locked
    def cancel(self, job_id: str) -> None:
        """Take a waiting job out of its queue (admission timed out, or stopped while it waited);
        one admitted meanwhile is released instead, so nothing holds its GPUs."""
        job = self.engine.jobs.get(job_id)
        if job is not None and job.running:
            self.outcomes[job_id] = "stopped: cancelled"
            self.last_seen.pop(job_id, None)
            self.engine.finish(job_id, time.time(), "stopped: cancelled")
            self._pass()
            return
        self.engine.cancel(job_id)
        self.last_seen.pop(job_id, None)
        self._dirty = True
        self._save()

    # --- status ----------------------------------------------------------------------------------
    @_locked
    def why(self, job_id: str) -> str:
        job = self.engine.jobs.get(job_id)
        if job is None and job_id not in self.outcomes:
            # A name (say an endpoint's) rather than an id: answer for its pending requests.
            named = [j for j in self.engine.jobs.values() if not j.running
                     and job_id in (j.metadata.get("name"), j.metadata.get("endpoint"))]
            if named:
                return "\n".join(self.why(j.job_id) for j in named)
        if job is None:
            return f"{job_id}: not queued ({self.outcomes.get(job_id, 'unknown job')})"
        if job.running:
            return f"{job_id}: running since {time.strftime('%H:%M:%S', time.gmtime(job.start_s))} UTC"
        ahead = [k for k in self.engine.pending[job.queue] if k[3] != job_id]
        pos = next((i for i, k in enumerate(self.engine.pending[job.queue]) if k[3] == job_id), 0)
        reason = job.reason or "not looked at yet"
        return f"{job_id}: pending in queue {job.queue!r} behind {min(pos, len(ahead))} job(s); {reason}"

    @_locked
    def status(self) -> dict[str, Any]:
        eng = self.engine
        queues = []
        for q in self.queues:
            used = {t: eng.usage.used(q.name, t) for t in eng.placer.gpu_types()}
            queues.append({**q.to_dict(), "used": used,
                           "share": round(eng.usage.share(q.name, q.weight), 4),
                           "running": sorted(eng.running_q[q.name]),
                           "pending": [{"job_id": k[3], "priority": -k[0], "submit_s": k[1],
                                        "why": self.why(k[3])}
                                       for k in eng.pending[q.name]]})
        placer = eng.placer
        nodes = {n: {"type": placer.node_type.get(n) or None, "gpus": t.get("GPU", 0.0),
                     "free": round(placer.free[n].get("GPU", 0.0), 6),
                     "external": placer.external.get(n, 0.0)} for n, t in placer.totals.items()}
        r = self.reconciles
        return {"queues": queues, "capacity": dict(placer.total), "free": placer.free_total,
                "external": {"by_type": placer.external_by_type(), "by_node": dict(placer.external)},
                "nodes": nodes, "preemptions": eng.preemptions, "warnings": eng.warnings,
                "policy": self.config.policy, "placement": self.config.placement,
                "placements": {j.job_id: [[n, g] for n, g, _ in j.placement] for j in eng.running.values()},
                "gpus_free": {n: list(g) for n, g in placer.gpus.gpus.items() if g},
                "reconcile": {"interval_s": self.reconcile_s, "count": r["count"],
                              "last_ms": round(r["last_ms"], 3), "max_ms": round(r["max_ms"], 3),
                              "mean_ms": round(r["total_ms"] / r["count"], 3) if r["count"] else 0.0,
                              "errors": r["errors"], "last_error": r["last_error"]},
                "leases": {"timeout_s": self.lease_timeout_s}, "rebuilt": dict(self.rebuilt)}


def _live_nodes() -> dict[str, dict[str, float]]:
    from ainative.cluster import state

    return {v.node_id: dict(v.total) for v in state.nodes()}


def _write_durably(path: str, text: str) -> None:
    """Write, fsync the file, rename over ``path``, fsync the directory: after a crash the state
    file is the old one or the new one, whole."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:        # a platform without directory fds: the rename is all we have
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
