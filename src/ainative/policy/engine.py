"""The scheduling engine: queues, quota with borrowing, fair share, backfill, preemption, aging.

Pure Python, driven by time passed in by the caller, so the live scheduler actor and the simulator
run the same code. A *placer* answers "where would this gang go now?" (``gpuindex.GpuIndex`` in
the simulator, ``ainative.scheduling.live_placer.BundlePlacer`` on a live cluster).

One ``schedule(now)`` pass: queues are served lowest weighted dominant share first; within a queue
by priority (plus one level per ``aging_s`` waited) then age. A job starts when (a) its queue's
quota allows it (nominal, or borrowed from the cohort) and (b) the gang fits on free per-node
capacity now. The first gang of each GPU type that fits its quota but not the nodes gets a
reservation (EASY backfill): later jobs may start only if they end before it or avoid its nodes.
It may also reclaim lent quota, or preempt lower-priority jobs of its own queue.
"""

from __future__ import annotations

import bisect
import heapq
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ainative import errors
from ainative.policy import preemption
from ainative.policy.admission import Guardrails, Job, NoGuardrails
from ainative.policy.fairshare import UsageTracker
from ainative.policy.knobs import POLICIES, Decisions, PolicyConfig, _Pass
from ainative.policy.queues import Queue, validate_queues

_EPS = 1e-9
_SEARCHES_PER_PASS = 2     # preemption searches per pass (each walks running jobs)

__all__ = ["POLICIES", "Decisions", "Engine", "PolicyConfig", "_Pass"]


class Engine:
    """Queues of pending jobs, running jobs and their usage, and the pass that admits them."""

    def __init__(self, queues: Sequence[Queue], placer: Any, config: PolicyConfig | None = None,
                 guardrails: Guardrails | None = None) -> None:
        self.cfg = config or PolicyConfig()
        self.warnings = validate_queues(queues, placer.gpu_types())
        self.queues = {q.name: q for q in queues}
        self.placer = placer
        self.guard: Guardrails = guardrails or NoGuardrails()
        self._guarded = not isinstance(self.guard, NoGuardrails)
        self.usage = UsageTracker(placer.total, self.cfg.half_life_s)
        self.cohort: dict[str, list[str]] = {}
        for q in queues:
            if q.cohort:
                self.cohort.setdefault(q.cohort, []).append(q.name)
        self.pending: dict[str, list[tuple[int, float, int, str]]] = {q: [] for q in self.queues}
        self.by_age: dict[str, list[tuple[float, int, str]]] = {q: [] for q in self.queues}
        self.fifo: list[tuple[float, int, str]] = []
        self.admitted: list[str] = []                      # kueue: quota charged, not yet placed
        self.jobs: dict[str, Job] = {}
        self.running: dict[str, Job] = {}
        self.running_q: dict[str, dict[str, Job]] = {q: {} for q in self.queues}
        self.reservations: dict[str, tuple[float, frozenset[Any], str]] = {}
        self.latencies_s: list[float] = []
        self.cpu_s: list[float] = []
        self.preemptions = 0
        self._ends: dict[str, list[tuple[float, int, str, float]]] = {}
        self._last_preempt_try: dict[tuple[str, str], float] = {}
        self._seq = 0
        self._stopping_for: dict[str, int] = {}
        self._searches_left = 0

    # ---- submit / finish -------------------------------------------------------------------
    def submit(self, job: Job, now: float) -> None:
        """Queue a job; raise UnknownQueueError / AdmissionError when it can never run."""
        if job.queue not in self.queues:
            raise errors.UnknownQueueError(
                f"job {job.job_id!r} names queue {job.queue!r}, which is not configured; queues: "
                f"{', '.join(sorted(self.queues))}", field="queue", value=job.queue)
        if job.job_id in self.jobs:
            raise errors.AdmissionError(f"job id {job.job_id!r} is already queued or running",
                                        field="job_id", value=job.job_id)
        why = self.placer.never_fits(job) or self._never_in_quota(job)
        if why:
            raise errors.AdmissionError(f"job {job.job_id!r} can never run: {why}", field="job",
                                        value=job.job_id)
        self._seq += 1
        job.seq, job.submit_s = self._seq, job.submit_s if job.submit_s else now
        self.jobs[job.job_id] = job
        self._enqueue(job)

    def _never_in_quota(self, job: Job) -> str | None:
        if self.cfg.policy == "fifo":
            return None
        q = self.queues[job.queue]
        types = [job.gpu_type] if job.gpu_type else self.placer.gpu_types()
        best = 0.0
        for t in types:
            lend = sum(self.queues[p].lendable(t) for p in self.cohort.get(q.cohort or "", []) if p != q.name)
            best = max(best, q.nominal(t) + min(q.can_borrow(t), lend))
        if job.gpus > best + _EPS:
            return (f"it asks {job.gpus:g} GPUs but queue {q.name!r} can hold at most {best:g} "
                    "(quota plus what its cohort can lend); raise the quota or shrink the job")
        return None

    def _enqueue(self, job: Job) -> None:
        job.start_s = None
        bisect.insort(self.pending[job.queue], (-job.priority, job.submit_s, job.seq, job.job_id))
        bisect.insort(self.by_age[job.queue], (job.submit_s, job.seq, job.job_id))
        bisect.insort(self.fifo, (job.submit_s, job.seq, job.job_id))

    def _dequeue(self, job: Job) -> None:
        for lst, key in ((self.pending[job.queue], (-job.priority, job.submit_s, job.seq, job.job_id)),
                         (self.by_age[job.queue], (job.submit_s, job.seq, job.job_id)),
                         (self.fifo, (job.submit_s, job.seq, job.job_id))):
            i = bisect.bisect_left(lst, key)   # type: ignore[arg-type]
            if i < len(lst) and lst[i] == key:
                del lst[i]

    def cancel(self, job_id: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is not None and not job.running:
            self._dequeue(job)
            if job_id in self.admitted:
                self.admitted.remove(job_id)
                self.usage.add(job.queue, job.metadata.pop("charged"), -job.gpus)

    def finish(self, job_id: str, now: float, outcome: str = "succeeded") -> Job | None:
        """A running job ended (or its lease was released): free its GPUs and quota."""
        job = self.running.pop(job_id, None)
        if job is None:
            return None
        self.usage.advance(now)
        self.placer.release(job.placement)
        assert job.placed_type is not None
        self.usage.add(job.queue, job.placed_type, -job.gpus)
        self.running_q[job.queue].pop(job_id, None)
        self.jobs.pop(job_id, None)
        waiting_for = job.metadata.pop("stopping_for", None)
        job.metadata.pop("stopping", None)
        if waiting_for is not None and self._stopping_for.get(waiting_for, 0) > 0:
            self._stopping_for[waiting_for] -= 1
        if self._guarded:
            self.guard.on_finish(job, now, outcome)
        return job

    # ---- the pass ----------------------------------------------------------------------------
    def schedule(self, now: float, only: Sequence[str] | None = None) -> Decisions:
        """One decision pass at time ``now``. ``only``: just these newly submitted jobs (nothing
        was freed since the last pass, so no other pending job can have become startable)."""
        t0, c0 = time.perf_counter(), time.process_time()
        self.usage.advance(now)
        dec = Decisions()
        if self._guarded:
            for job_id, stop in self.guard.on_tick(list(self.running.values()), now):
                self._stop(job_id, stop, now, dec)
        if self.cfg.policy == "ainative":
            self._pass_fair(now, dec, only)
        else:
            from ainative.policy import baselines

            (baselines.pass_fifo if self.cfg.policy == "fifo" else baselines.pass_kueue)(self, now, dec)
        self.latencies_s.append(time.perf_counter() - t0)
        self.cpu_s.append(time.process_time() - c0)   # CPU time: what contention does not inflate
        return dec

    def _candidates(self, q: str, now: float, only: set[str] | None) -> list[Job]:
        k = self.cfg.scan_per_queue
        if only is not None:
            jobs = [self.jobs[j] for j in only if self.jobs[j].queue == q and not self.jobs[j].running]
        else:
            ids = {key[3] for key in self.pending[q][:k]} | {key[2] for key in self.by_age[q][:k]}
            jobs = [self.jobs[j] for j in ids]
        aging = self.cfg.aging_s
        jobs.sort(key=lambda j: (-(j.priority + int((now - j.submit_s) / aging)), j.submit_s, j.seq))
        return jobs[:k]

    def _pass_fair(self, now: float, dec: Decisions, only: Sequence[str] | None) -> None:
        ctx = _Pass()
        self._searches_left = _SEARCHES_PER_PASS
        if only is None:
            # Re-decided each full pass (the first blocked gang in pass order holds it), except that
            # a gang that has waited starve_s keeps its reservation until it starts: no starvation.
            self.reservations = {t: r for t, r in self.reservations.items()
                                 if r[2] in self.jobs and not self.jobs[r[2]].running
                                 and now - self.jobs[r[2]].submit_s >= self.cfg.starve_s}
        sel = set(only) if only is not None else None
        tried: set[str] = set()
        if only is None:              # starving jobs first, oldest first, whatever their queue's share
            for job in self._starving(now):
                if ctx.attempts >= self.cfg.scan_total:
                    return
                ctx.attempts += 1
                tried.add(job.job_id)
                self._try(job, now, dec, ctx)
        cands = {q: [j for j in self._candidates(q, now, sel) if j.job_id not in tried]
                 for q in self.queues if self.pending[q]}
        pos = dict.fromkeys(cands, 0)
        shares = {q: self.usage.share(q, self.queues[q].weight) for q in cands}
        while ctx.attempts < self.cfg.scan_total:
            live = [q for q in cands if pos[q] < len(cands[q])]
            if not live:
                break
            q = min(live, key=lambda n: (shares[n], n))
            job = cands[q][pos[q]]
            pos[q] += 1
            if job.job_id in self.jobs and not job.running:
                ctx.attempts += 1
                victims = len(dec.preempted)
                self._try(job, now, dec, ctx)
                if len(dec.preempted) != victims:      # victims' queues changed share too
                    shares = {n: self.usage.share(n, self.queues[n].weight) for n in cands}
                elif job.running:
                    shares[q] = self.usage.share(q, self.queues[q].weight)

    def _starving(self, now: float) -> list[Job]:
        limit = now - self.cfg.starve_s
        out = []
        for lst in self.by_age.values():
            for submit_s, _, job_id in lst[:self.cfg.scan_per_queue]:
                if submit_s > limit:
                    break
                out.append(self.jobs[job_id])
        out.sort(key=lambda j: (j.submit_s, j.seq))
        return out[:self.cfg.scan_per_queue]

    def _types(self, job: Job) -> list[str]:
        if job.gpus <= 0:
            return [""]              # CPU-only gang: no GPU quota applies, any node may hold it
        if job.gpu_type:
            return [job.gpu_type]
        return sorted(self.placer.gpu_types(), key=lambda t: -self.placer.free_total[t])

    def _try(self, job: Job, now: float, dec: Decisions, ctx: _Pass) -> None:
        if self._guarded:
            why = self.guard.check_admit(job, now)
            if why:
                job.reason = f"held by guardrails: {why}"
                return
        reasons, blocked = [], []
        for t in self._types(job):
            why = self._quota(job, t, ctx)
            if why:
                reasons.append(why)
                continue
            if ctx.fail_place.get(t, math.inf) <= job.gpus + _EPS:
                reasons.append(ctx.place_reason[t])
                blocked.append(t)
                continue
            avoid, res_why = self._backfill_avoid(job, t, now)
            got = self.placer.place_job(job, t, avoid)
            if got is not None:
                self._start(job, t, got, now, dec)
                return
            if avoid:
                reasons.append(res_why)
                continue
            ctx.fail_place[t] = min(ctx.fail_place.get(t, math.inf), job.gpus)
            ctx.place_reason[t] = (f"quota allows it but no placement now: needs {job.gpus:g} x {t}; "
                                   f"nodes by free {t}: {self.placer.free_histogram(t)}")
            reasons.append(ctx.place_reason[t])
            blocked.append(t)
        job.reason = "; ".join(reasons)
        for t in blocked:
            if t not in self.reservations:
                self._reserve(job, t)
            if preemption.preempt_for(self, job, t, now, dec):
                ctx.fail_place.pop(t, None)
                return

    def _quota(self, job: Job, t: str, ctx: _Pass) -> str | None:
        if not t:
            return None
        q = self.queues[job.queue]
        cached = ctx.fail_quota.get((q.name, t))
        if cached and cached[0] <= job.gpus + _EPS:
            return cached[1]
        new, nom = self.usage.used(q.name, t) + job.gpus, q.nominal(t)
        if new <= nom + _EPS:
            return None
        over, limit = new - nom, q.can_borrow(t)
        if over > limit + _EPS:
            why = (f"over quota: queue {q.name!r} would hold {new:g} {t} GPUs; quota {nom:g}, "
                   f"borrowing limit {limit:g} (short by {over - limit:g})")
        else:
            avail = self.lendable(q, t)
            if job.gpus <= avail + _EPS:
                return None
            why = (f"over quota: queue {q.name!r} would borrow {over:g} {t} GPUs in all; cohort "
                   f"{q.cohort!r} has {max(avail, 0.0):g} more to lend (short by "
                   f"{job.gpus - max(avail, 0.0):g})")
        ctx.fail_quota[(q.name, t)] = (job.gpus, why)
        return why

    def lendable(self, q: Queue, t: str) -> float:
        """GPUs of type ``t`` the cohort can still lend ``q`` beyond what it holds: others' unused
        lendable quota, less what everyone in the cohort already borrows, plus ``q``'s own unused
        quota."""
        used_q = self.usage.used(q.name, t)
        avail = max(0.0, q.nominal(t) - used_q) - max(0.0, used_q - q.nominal(t))
        for name in self.cohort.get(q.cohort or "", []):
            if name == q.name:
                continue
            p, used = self.queues[name], self.usage.used(name, t)
            avail += min(p.lendable(t), max(0.0, p.nominal(t) - used)) - max(0.0, used - p.nominal(t))
        return avail

    def _start(self, job: Job, t: str, placement: Any, now: float, dec: Decisions) -> None:
        self.placer.take(placement)
        self._dequeue(job)
        job.start_s, job.placed_type, job.placement, job.reason = now, t, placement, ""
        if job.first_start_s is None:
            job.first_start_s = now
        if not job.metadata.pop("charged", None):
            self.usage.add(job.queue, t, job.gpus)
        self.running[job.job_id] = job
        self.running_q[job.queue][job.job_id] = job
        end = job.expected_end()
        if end is not None:
            heapq.heappush(self._ends.setdefault(t, []), (end, job.seq, job.job_id, now))
        if t in self.reservations and self.reservations[t][2] == job.job_id:
            del self.reservations[t]
        dec.started.append(job)

    # ---- backfill reservations ---------------------------------------------------------------
    def _releases(self, t: str) -> Iterator[tuple[float, Any]]:
        heap = self._ends.get(t, [])
        if len(heap) > 64 and len(heap) > 2 * len(self.running):
            heap[:] = [e for e in heap if self._live_end(e)]
            heapq.heapify(heap)
        h = list(heap)
        while h:
            e = heapq.heappop(h)
            if self._live_end(e):
                yield e[0], self.running[e[2]].placement

    def _live_end(self, e: tuple[float, int, str, float]) -> bool:
        j = self.running.get(e[2])
        return j is not None and j.start_s == e[3] and not j.metadata.get("stopping")

    def _reserve(self, job: Job, t: str) -> None:
        got = self.placer.shadow_job(job, t, self._releases(t))
        if got is not None:
            self.reservations[t] = (got[0], got[1], job.job_id)

    def _backfill_avoid(self, job: Job, t: str, now: float) -> tuple[frozenset[Any], str]:
        res = self.reservations.get(t)
        if res is None or res[2] == job.job_id:
            return frozenset(), ""
        if job.duration_s is not None and now + job.duration_s <= res[0] + _EPS:
            return frozenset(), ""
        return res[1], (f"would delay reserved job {res[2]!r} (expected to start at "
                        f"t={res[0]:.0f}s); only jobs that end before it or avoid its nodes may backfill")

    def _stop(self, job_id: str, stop: Any, now: float, dec: Decisions) -> None:
        job = self.running.get(job_id)
        if job is None or job.metadata.get("stopping"):
            return
        dec.stopped.append((job, stop))
        if self.cfg.release_on_preempt:
            self.finish(job_id, now, f"stopped: {getattr(stop, 'reason', stop)}")
        else:                          # live: the lease's next poll() delivers it
            job.metadata["stopping"] = True
            job.metadata["stop_reason"] = str(getattr(stop, "reason", stop))
            job.metadata["grace_s"] = float(getattr(stop, "grace_s", 30.0))
            job.metadata["stop_checkpoint"] = bool(getattr(stop, "checkpoint", True))
            job.metadata["stop_message"] = str(getattr(stop, "message", ""))
