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

Live, a victim frees its GPUs only when its lease is released (after its checkpoint), so the job it
was preempted for holds a *claim* meanwhile: its quota is charged to its queue and the nodes it will
go to are kept from jobs of no higher priority. Without it, what the first victim frees goes to the
next job in line (often the requeued victim itself, or a borrower asking again) and the preemptor
never starts. The claim ends when the job starts, is cancelled, or its victims have all been gone
for ``_CLAIM_SETTLE_S`` (what they held is freed a little after their leases) and it still does not
fit (it may search again).
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
_SHADOW_REUSE_S = 300.0    # a backfill reservation's estimate is reused for this long
_MORE_RESERVATIONS = 3     # blocked gangs per GPU type that hold a reservation beside the first
_CLAIM_SETTLE_S = 30.0     # a claim outlives its victims' leases this long: what they held is freed
                           # a little later (placement group removal, a Serve replica draining)

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
        # per queue, runs in start order (start time, start number, job id), for the victim search
        # to skip the runs still inside their protection window; stale entries dropped lazily
        self._starts: dict[tuple[str, str], list[tuple[float, int, str]]] = {}   # (queue, type)
        self._prios: dict[str, dict[int, int]] = {q: {} for q in self.queues}   # running per priority
        self._start_no: dict[str, int] = {}
        self._qver: dict[str, int] = dict.fromkeys(self.queues, 0)     # bumped when pending changes
        self._cand_cache: dict[str, tuple[int, float, list[Job]]] = {}
        self._start_count = 0
        self.reservations: dict[str, tuple[float, frozenset[Any], str]] = {}
        self.more_reservations: dict[str, list[tuple[float, frozenset[Any], str]]] = {}
        """Reservations of the next blocked gangs of a type, on nodes the first one does not hold:
        with one, a burst's second gang began to drain its nodes only once the first had started."""
        self.typed_waiting: dict[str, float] = {}
        """GPUs asked by pending jobs bound to one type, by type."""
        self.claims: dict[str, tuple[str, frozenset[Any]]] = {}   # job -> (type, nodes) while victims stop
        self._claim_freed: dict[str, float] = {}                  # job -> when its last victim ended
        self.latencies_s: list[float] = []
        self.cpu_s: list[float] = []
        self.preemptions = 0
        self._ends: dict[str, list[tuple[float, int, str, float]]] = {}
        self._last_preempt_try: dict[tuple[str, str, bool], float] = {}
        self._seq = 0
        self._stopping_for: dict[str, int] = {}
        self._searches_left = 0
        self._quota_cap: dict[tuple[str, ...], float] = {}
        self._shadow_memo: dict[tuple[str, float], tuple[float | None, Any, float]] = {}
        self._shadow_more: dict[tuple[str, float, frozenset[Any]], tuple[float | None, Any, float]] = {}
        self._lend_cache: dict[tuple[str, str], float] = {}
        self._lend_at = -1

    # ---- submit / finish -------------------------------------------------------------------
    def submit(self, job: Job, now: float) -> None:
        """Queue a job; raise UnknownQueueError / AdmissionError when it can never run, and
        BudgetExceededError when its reservation exceeds a whole budget (guardrails'
        optional ``check_submit``)."""
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
        check_submit = getattr(self.guard, "check_submit", None) if self._guarded else None
        refusal = check_submit(job, now) if check_submit is not None else None
        if refusal is not None:
            raise errors.BudgetExceededError(refusal.message, job=job.job_id, **dict(refusal.details))
        self._seq += 1
        job.seq, job.submit_s = self._seq, job.submit_s if job.submit_s else now
        self.jobs[job.job_id] = job
        self._enqueue(job)

    def _never_in_quota(self, job: Job) -> str | None:
        if self.cfg.policy == "fifo":
            return None
        q = self.queues[job.queue]
        types = [job.gpu_type] if job.gpu_type else self.placer.gpu_types()
        key = (q.name, *types)
        best = self._quota_cap.get(key)
        if best is None:               # depends on the queues' config only: once per queue and types
            best = 0.0
            for t in types:
                lend = sum(self.queues[p].lendable(t) for p in self.cohort.get(q.cohort or "", [])
                           if p != q.name)
                best = max(best, q.nominal(t) + min(q.can_borrow(t), lend))
            self._quota_cap[key] = best
        if job.gpus > best + _EPS:
            return (f"it asks {job.gpus:g} GPUs but queue {q.name!r} can hold at most {best:g} "
                    "(quota plus what its cohort can lend); raise the quota or shrink the job")
        return None

    def _enqueue(self, job: Job) -> None:
        job.start_s = None
        if job.gpu_type:
            self.typed_waiting[job.gpu_type] = self.typed_waiting.get(job.gpu_type, 0.0) + job.gpus
        self._qver[job.queue] += 1
        bisect.insort(self.pending[job.queue], (-job.priority, job.submit_s, job.seq, job.job_id))
        bisect.insort(self.by_age[job.queue], (job.submit_s, job.seq, job.job_id))
        bisect.insort(self.fifo, (job.submit_s, job.seq, job.job_id))

    def _dequeue(self, job: Job) -> None:
        self._qver[job.queue] += 1
        if job.gpu_type:
            self.typed_waiting[job.gpu_type] = self.typed_waiting.get(job.gpu_type, 0.0) - job.gpus
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
            self.drop_claim(job)
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
        self._start_no.pop(job_id, None)
        prios = self._prios[job.queue]
        left = prios.pop(job.priority, 0) - 1
        if left > 0:
            prios[job.priority] = left
        self.jobs.pop(job_id, None)
        waiting_for = job.metadata.pop("stopping_for", None)
        job.metadata.pop("stopping", None)
        if waiting_for is not None and self._stopping_for.get(waiting_for, 0) > 0:
            self._stopping_for[waiting_for] -= 1
            if not self._stopping_for[waiting_for] and waiting_for in self.claims:
                self._claim_freed[waiting_for] = now
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

    def _candidates(self, q: str, now: float, only: Sequence[Job] | None) -> list[Job]:
        """Up to ``scan_per_queue`` of queue ``q``'s pending jobs in pass order: priority raised
        one level per ``aging_s`` waited, then age. ``only``: the queue's newly submitted jobs."""
        k = self.cfg.scan_per_queue
        aging = self.cfg.aging_s
        if only is not None:
            jobs = list(only)
        else:
            # the same answer until the queue's pending jobs change or one of them ages a level
            hit = self._cand_cache.get(q)
            if hit is not None and hit[0] == self._qver[q] and now < hit[1]:
                return hit[2]
            ids = {key[3] for key in self.pending[q][:k]}
            ids.update(key[2] for key in self.by_age[q][:k])
            by_id = self.jobs
            jobs = [by_id[j] for j in ids]
        keyed = sorted([(-(j.priority + int((now - j.submit_s) / aging)), j.submit_s, j.seq, j) for j in jobs])
        out = [e[3] for e in keyed[:k]]
        if only is None:
            until = min((j.submit_s + aging * (int((now - j.submit_s) / aging) + 1) for j in jobs),
                        default=math.inf)
            self._cand_cache[q] = (self._qver[q], until - 1e-6, out)
        return out

    def _pass_fair(self, now: float, dec: Decisions, only: Sequence[str] | None) -> None:
        ctx = _Pass()
        self._searches_left = _SEARCHES_PER_PASS
        scan_total = self.cfg.scan_total
        tried: set[str] = set()
        if only is None:
            # Re-decided each full pass (the first blocked gang in pass order holds it), except that
            # a multi-GPU gang that has waited gang_hold_s, and any job that has waited starve_s,
            # keeps its reservation until it starts: jobs of lighter queues, tried before it in
            # the next pass, no longer take the nodes it drains.
            self.reservations = {t: r for t, r in self.reservations.items() if self._holds(r[2], now)}
            self.more_reservations = {}
            for job in self._starving(now):   # starving jobs first, oldest first, whatever the share
                if ctx.attempts >= scan_total:
                    return
                ctx.attempts += 1
                tried.add(job.job_id)
                self._try(job, now, dec, ctx)
            cands = {q: self._candidates(q, now, None) for q in self.queues if self.pending[q]}
        else:
            new: dict[str, list[Job]] = {}
            for job_id in only:               # grouped once, not scanned once per queue
                got = self.jobs.get(job_id)
                if got is not None and not got.running:
                    new.setdefault(got.queue, []).append(got)
            cands = {q: self._candidates(q, now, new[q]) for q in self.queues if q in new}
        # Queues served lowest share first: a heap of (share, name, next position), re-keyed when
        # a start changes a share (victims' queues change too: then all are re-keyed).
        usage, queues = self.usage, self.queues
        heap = [(usage.share(q, queues[q].weight), q, 0) for q in cands]
        heapq.heapify(heap)
        while heap and ctx.attempts < scan_total:
            share, q, at = heap[0]
            lst = cands[q]
            job = lst[at]
            if at + 1 < len(lst):
                heapq.heapreplace(heap, (share, q, at + 1))
            else:
                heapq.heappop(heap)
            if job.job_id in tried or job.running or job.job_id not in self.jobs:
                continue
            ctx.attempts += 1
            victims = len(dec.preempted)
            self._try(job, now, dec, ctx)
            if len(dec.preempted) != victims:      # victims' queues changed share too
                heap = [(usage.share(n, queues[n].weight), n, a) for _, n, a in heap]
                heapq.heapify(heap)
            elif job.running:
                for k, (_, n, a) in enumerate(heap):
                    if n == q:
                        heap[k] = (usage.share(q, queues[q].weight), q, a)
                        heapq.heapify(heap)
                        break

    def _holds(self, job_id: str, now: float) -> bool:
        """Whether the reservation ``job_id`` holds outlives the pass that made it."""
        job = self.jobs.get(job_id)
        if job is None or job.running:
            return False
        waited = now - job.submit_s
        return waited >= self.cfg.starve_s or (job.gpus > 1.0 + _EPS and waited >= self.cfg.gang_hold_s)

    def _outranks(self, job: Job, holder_id: str, now: float) -> bool:
        """A job of the holder's queue with a higher priority is not bound by its reservation (a
        reservation kept from an earlier pass is no licence for priority inversion); a starving
        holder is outranked by nobody. Aging is not counted: it orders the pass, and the holder
        was first in line when it reserved."""
        holder = self.jobs.get(holder_id)
        return (holder is not None and holder.queue == job.queue and job.priority > holder.priority
                and now - holder.submit_s < self.cfg.starve_s)

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

    def _types(self, job: Job, ctx: _Pass | None = None) -> list[str]:
        if job.gpus <= 0:
            return [""]              # CPU-only gang: no GPU quota applies, any node may hold it
        if job.gpu_type:
            return [job.gpu_type]
        if ctx is not None and ctx.any_types is not None:
            return ctx.any_types     # free GPUs per type have not changed since it was sorted
        free = self.placer.free_total
        if self.cfg.policy == "ainative":
            # what jobs bound to a type wait for is not free for a job that takes any type: it
            # goes where most is free beyond that, and leaves scarce types to the jobs that need them
            typed = self.typed_waiting
            order = sorted(self.placer.gpu_types(), key=lambda t: -(free[t] - max(0.0, typed.get(t, 0.0))))
        else:
            order = sorted(self.placer.gpu_types(), key=lambda t: -free[t])
        if ctx is not None:
            ctx.any_types = order
        return order

    def _try(self, job: Job, now: float, dec: Decisions, ctx: _Pass) -> None:
        if self._guarded:
            why = self.guard.check_admit(job, now)
            if why:
                job.reason = f"held by guardrails: {why}"
                return
        reasons, blocked, over_quota = [], [], []
        gpus = job.gpus
        fail_quota, fail_place = ctx.fail_quota, ctx.fail_place
        for t in self._types(job, ctx):
            cached = fail_quota.get((job.queue, t))         # a smaller gang of the queue was refused
            why = cached[1] if cached and cached[0] <= gpus + _EPS else self._quota(job, t, ctx)
            if why:
                reasons.append(why)
                over_quota.append(t)
                continue
            if fail_place.get(t, math.inf) <= gpus + _EPS:   # a smaller gang found no nodes
                reasons.append(_no_placement(gpus, t, ctx.place_histogram[t]))
                blocked.append(t)
                continue
            avoid, res_why, outranked = self._backfill_avoid(job, t, now)
            held: frozenset[Any] = frozenset()
            if self.claims:
                held, held_why = self._claimed(job, t)
                if held:
                    avoid, res_why = avoid | held, "; ".join(w for w in (res_why, held_why) if w)
            got = self.placer.place_job(job, t, avoid)
            if got is None and outranked is not None:
                # it outranks a holder: around the reserved nodes when it can (above), on them
                # only when nothing else fits
                got = self.placer.place_job(job, t, outranked | held)
            if got is not None:
                self._start(job, t, got, now, dec)
                ctx.any_types = None
                return
            if avoid:
                reasons.append(res_why)
                continue
            fail_place[t] = min(fail_place.get(t, math.inf), gpus)
            ctx.place_histogram[t] = self.placer.free_histogram(t)
            reasons.append(_no_placement(gpus, t, ctx.place_histogram[t]))
            blocked.append(t)
        job.reason = reasons[0] if len(reasons) == 1 else "; ".join(reasons)
        if job.job_id in self.claims and not self._stopping_for.get(job.job_id) \
                and now - self._claim_freed.get(job.job_id, now) >= _CLAIM_SETTLE_S:
            self.drop_claim(job)       # its victims are long gone and it still does not fit: search again
        for t in blocked:
            if t not in self.reservations:
                self._reserve(job, t, now)
            elif gpus > 1.0 + _EPS and self.reservations[t][2] != job.job_id:
                self._reserve_more(job, t, now)
            if self._may_search(job.queue, t, False, now) and preemption.preempt_for(self, job, t, now, dec):
                ctx.fail_place.pop(t, None)
                ctx.any_types = None
                return
        for t in over_quota:           # the queue's quota blocks: free quota (and placement) too
            if self._may_search(job.queue, t, True, now) and \
                    preemption.preempt_for(self, job, t, now, dec, for_quota=True):
                ctx.fail_quota.clear()
                ctx.fail_place.pop(t, None)
                ctx.any_types = None
                return

    def _may_search(self, queue: str, t: str, for_quota: bool, now: float) -> bool:
        """False when ``preemption.preempt_for`` would refuse at once whoever asks (no searches
        left in this pass, or this queue and type searched within ``preempt_retry_s``): the
        refusal without the call, which most blocked candidates of a busy pass get."""
        if self._searches_left <= 0:
            return False
        last = self._last_preempt_try.get((queue, t, for_quota))
        return last is None or now - last >= self.cfg.preempt_retry_s

    def _quota(self, job: Job, t: str, ctx: _Pass) -> str | None:
        """``quota_block`` with the pass's memory: quota is monotone in the gang's size, so a
        queue that was refused ``g`` GPUs of ``t`` refuses more, and one that was allowed ``g``
        allows less while what is held has not changed (``usage.version``)."""
        if not t:
            return None
        claim = self.claims.get(job.job_id)
        if claim is not None and claim[0] == t:     # the quota it holds itself is not in its way
            self.usage.add(job.queue, t, -job.gpus)
            try:
                return self.quota_block(job, t)
            finally:
                self.usage.add(job.queue, t, job.gpus)
        key = (job.queue, t)
        cached = ctx.fail_quota.get(key)
        if cached and cached[0] <= job.gpus + _EPS:
            return cached[1]
        ok = ctx.pass_quota.get(key)
        if ok is not None and ok[1] == self.usage.version and job.gpus <= ok[0] + _EPS:
            return None
        why = self.quota_block(job, t)
        if why:
            ctx.fail_quota[key] = (job.gpus, why)
        elif ok is None or ok[1] != self.usage.version or job.gpus > ok[0]:
            ctx.pass_quota[key] = (job.gpus, self.usage.version)
        return why

    def quota_block(self, job: Job, t: str) -> str | None:
        """Why ``job``'s queue cannot hold it on type ``t`` now (nominal quota, borrowing limit,
        what the cohort can lend), or None when the quota allows it."""
        q = self.queues[job.queue]
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
        return why

    def lendable(self, q: Queue, t: str) -> float:
        """GPUs of type ``t`` the cohort can still lend ``q`` beyond what it holds: others' unused
        lendable quota, less what everyone in the cohort already borrows, plus ``q``'s own unused
        quota."""
        if self._lend_at != self.usage.version:       # held GPUs changed: cached answers are stale
            self._lend_at, self._lend_cache = self.usage.version, {}
        key = (q.name, t)
        got = self._lend_cache.get(key)
        if got is None:
            got = self._lend_cache[key] = self._lendable(q, t)
        return got

    def _lendable(self, q: Queue, t: str) -> float:
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
        if self._shadow_memo:
            # a remembered reservation estimate on nodes this job now holds is void: reused, it
            # sent the next gang of the burst to wait for the nodes its predecessor had just taken
            taken = {p[0] for p in placement}
            for key in [k for k, m in self._shadow_memo.items() if k[0] == t and m[1] and not taken.isdisjoint(m[1])]:
                del self._shadow_memo[key]
        self._dequeue(job)
        self.drop_claim(job)
        job.start_s, job.placed_type, job.placement, job.reason = now, t, placement, ""
        if job.first_start_s is None:
            job.first_start_s = now
        if not job.metadata.pop("charged", None):
            self.usage.add(job.queue, t, job.gpus)
        self.running[job.job_id] = job
        self.running_q[job.queue][job.job_id] = job
        self._start_count += 1
        self._start_no[job.job_id] = self._start_count
        bisect.insort(self._starts.setdefault((job.queue, t), []), (now, self._start_count, job.job_id))
        self._prios[job.queue][job.priority] = self._prios[job.queue].get(job.priority, 0) + 1
        end = job.expected_end()
        if end is not None:
            bisect.insort(self._ends.setdefault(t, []), (end, job.seq, job.job_id, now))
        if t in self.reservations and self.reservations[t][2] == job.job_id:
            del self.reservations[t]
        more = self.more_reservations.get(t)
        if more:
            more[:] = [r for r in more if r[2] != job.job_id]
        dec.started.append(job)

    def started_before(self, queue: str, t: str, limit: float, below: int | None = None) -> Iterator[Job]:
        """Running jobs of ``queue`` on type ``t`` that started at or before ``limit`` (and, with
        ``below``, have a lower priority), most recent start first: per queue and type a
        start-ordered index is bisected, so later starts and other types are never walked."""
        if below is not None and not any(p < below for p in self._prios[queue]):
            return
        starts = self._starts.get((queue, t), [])
        running, marks = self.running_q[queue], self._start_no
        if len(starts) > 64 and len(starts) > 2 * len(running):
            starts[:] = [e for e in starts if marks.get(e[2]) == e[1]]
        for k in range(bisect.bisect_right(starts, (limit, math.inf)) - 1, -1, -1):
            _, no, job_id = starts[k]
            if marks.get(job_id) == no:
                yield running[job_id]

    # ---- claims: what a preemptor holds while its victims stop -----------------------------
    def claim(self, job: Job, t: str, nodes: frozenset[Any]) -> None:
        """``job`` preempted victims that free ``nodes`` (type ``t``) for it: charge its quota and
        keep those nodes from jobs of no higher priority until it starts."""
        self.drop_claim(job)
        self.claims[job.job_id] = (t, nodes)
        self.usage.add(job.queue, t, job.gpus)

    def drop_claim(self, job: Job) -> None:
        self._claim_freed.pop(job.job_id, None)
        claim = self.claims.pop(job.job_id, None)
        if claim is not None:
            self.usage.add(job.queue, claim[0], -job.gpus)

    def _claimed(self, job: Job, t: str) -> tuple[frozenset[Any], str]:
        """Nodes claimed by pending preemptors of at least ``job``'s priority, and who holds them."""
        nodes: frozenset[Any] = frozenset()
        holders = []
        for job_id, (ct, cn) in self.claims.items():
            other = self.jobs.get(job_id)
            if job_id != job.job_id and ct == t and other is not None and other.priority >= job.priority:
                nodes |= cn
                holders.append(job_id)
        why = (f"held for {', '.join(map(repr, holders))}, which preempted jobs to start there and "
               "waits for them to stop") if holders else ""
        return nodes, why

    # ---- backfill reservations ---------------------------------------------------------------
    def _releases(self, t: str) -> Iterator[tuple[float, Any]]:
        """Running gangs of type ``t`` in expected-end order. ``_ends[t]`` is kept sorted (insort
        at start), so a walk reads it in order instead of copying and popping a heap; entries of
        runs that ended or were preempted are dropped lazily: the stale prefix (most of them:
        the earliest ends are the ones that happened) on every walk, the rest when they are half."""
        ends = self._ends.get(t, [])
        k = 0
        while k < len(ends) and not self._live_end(ends[k]):
            k += 1
        if k:
            del ends[:k]
        if len(ends) > 64 and len(ends) > 2 * len(self.running):
            ends[:] = [e for e in ends if self._live_end(e)]
        for e in ends:
            if self._live_end(e):
                yield e[0], self.running[e[2]].placement

    def _live_end(self, e: tuple[float, int, str, float]) -> bool:
        j = self.running.get(e[2])
        return j is not None and j.start_s == e[3] and not j.metadata.get("stopping")

    def _reserve(self, job: Job, t: str, now: float) -> None:
        # The shadow walks running jobs in end order (O(running) for a multi-node gang) and full
        # passes clear reservations, so the same answer was recomputed on every job end: reuse it
        # for a gang of the same type and size while its time is ahead and it is young.
        # "No estimate" (the gang needs more ends than the placer walks) is reused the same way.
        memo = self._shadow_memo.get((t, job.gpus))
        got: tuple[float, Any] | None
        if memo is not None and (memo[0] is None or memo[0] > now) and now - memo[2] <= _SHADOW_REUSE_S:
            got = None if memo[0] is None else (memo[0], memo[1])
        else:
            got = self.placer.shadow_job(job, t, self._releases(t))
            self._shadow_memo[(t, job.gpus)] = (got[0], got[1], now) if got is not None else (None, None, now)
        if got is not None:
            self.reservations[t] = (got[0], got[1], job.job_id)

    def _reserve_more(self, job: Job, t: str, now: float) -> None:
        """A reservation for a further blocked gang of type ``t``, on nodes no reservation of the
        type holds: the shadow walks only the ends of jobs off those nodes, and an answer that
        still names one of them (nodes free now, for a gang wider than a node) is dropped."""
        more = self.more_reservations.setdefault(t, [])
        if len(more) >= _MORE_RESERVATIONS or any(r[2] == job.job_id for r in more):
            return
        held = self.reservations[t][1].union(*(r[1] for r in more))
        key = (t, job.gpus, held)
        memo = self._shadow_more.get(key)
        got: tuple[float, Any] | None
        if memo is not None and (memo[0] is None or memo[0] > now) and now - memo[2] <= _SHADOW_REUSE_S:
            got = None if memo[0] is None else (memo[0], memo[1])
        else:
            if len(self._shadow_more) > 4096:
                self._shadow_more.clear()
            off = ((end, p) for end, p in self._releases(t) if held.isdisjoint(x[0] for x in p))
            got = self.placer.shadow_job(job, t, off)
            self._shadow_more[key] = (got[0], got[1], now) if got is not None else (None, None, now)
        if got is not None and held.isdisjoint(got[1]):
            more.append((got[0], got[1], job.job_id))

    def _backfill_avoid(self, job: Job, t: str, now: float
                        ) -> tuple[frozenset[Any], str, frozenset[Any] | None]:
        """Nodes ``job`` must keep off on type ``t`` so as not to delay a reservation (those of
        jobs it would end after), why, and, when it outranks one of the holders, the smaller set
        that binds it once it has tried to go around them (None: it outranks nobody)."""
        first = self.reservations.get(t)
        if first is None:
            return frozenset(), "", None
        avoid: frozenset[Any] = frozenset()
        binding: frozenset[Any] = frozenset()
        outranks = False
        why = ""
        for res in (first, *self.more_reservations.get(t, ())):
            if res[2] == job.job_id:
                continue
            if job.duration_s is not None and now + job.duration_s <= res[0] + _EPS:
                continue
            avoid = avoid | res[1]
            if self._outranks(job, res[2], now):
                outranks = True
            else:
                binding = binding | res[1]
            why = why or (f"would delay reserved job {res[2]!r} (expected to start at t={res[0]:.0f}s); "
                          "only jobs that end before it or avoid its nodes may backfill")
        return avoid, why, (binding if outranks else None)

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


def _no_placement(gpus: float, t: str, histogram: str) -> str:
    """The pending reason of a job that fits its quota but no node: its own need (not that of a
    smaller gang whose failed search this pass reuses) and the nodes by free GPUs."""
    return f"quota allows it but no placement now: needs {gpus:g} x {t}; nodes by free {t}: {histogram}"
