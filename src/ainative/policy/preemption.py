"""Preemption, pure Python: victim eligibility and order, and the search the engine runs for a
blocked job (reclaim lent quota, or lower priority in its own queue). A job can be blocked by
placement (the gang does not fit on free nodes) or by its queue's quota (the queue would exceed
its nominal quota plus what it may borrow): the search frees whichever blocks, and both when both do.

Victims are preemptible running jobs only: lowest priority first, then the most recently started
(least work lost). A job inside its minimum-runtime protection window, or preempted within the
ping-pong window, or preempted ``max_preemptions`` times already, is never chosen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ainative.policy.admission import Job
from ainative.policy.knobs import Decisions

if TYPE_CHECKING:
    from ainative.policy.engine import Engine

_VICTIM_SCAN = 64          # victims considered per preemption search
_EPS = 1e-9


def eligible(job: Job, now: float, *, min_runtime_s: float, ping_pong_s: float,
             max_preemptions: int) -> bool:
    if not job.preemptible or job.start_s is None or job.metadata.get("stopping"):
        return False
    if now - job.start_s < min_runtime_s:
        return False
    if job.last_preempted_s is not None and now - job.last_preempted_s < ping_pong_s:
        return False
    return job.preemptions < max_preemptions


def order(candidates: Iterable[Job]) -> list[Job]:
    """Lowest priority first, then most recently started first."""
    return sorted(candidates, key=lambda j: (j.priority, -(j.start_s or 0.0), j.seq))


def pick_on_one_node(need: float, candidates: list[Job],
                     node_free: Callable[[Any], float]) -> list[Job] | None:
    """The cheapest set of victims whose release lets ``need`` GPUs fit on one node (a victim
    spanning several nodes counts for what it holds on that node; it is stopped as a whole)."""
    by_node: dict[Any, list[tuple[Job, float]]] = {}
    for job in candidates:
        held: dict[Any, float] = {}
        for p in job.placement:
            held[p[0]] = held.get(p[0], 0.0) + p[1]
        for node, gpus in held.items():
            by_node.setdefault(node, []).append((job, gpus))
    best: tuple[tuple[int, int], list[Job]] | None = None
    for node, jobs in by_node.items():
        free, taken = node_free(node), []
        for job, gpus in jobs:                 # already in victim order
            if free + 1e-9 >= need:
                break
            free += gpus
            taken.append(job)
        if free + 1e-9 >= need and taken:
            cost = (len(taken), max(j.priority for j in taken))
            if best is None or cost < best[0]:
                best = (cost, taken)
    return None if best is None else best[1]


def preempt_for(eng: Engine, job: Job, t: str, now: float, dec: Decisions, *,
                for_quota: bool = False) -> bool:
    """Ask victims to stop so that ``job`` can start on type ``t``. ``for_quota``: its queue's quota
    blocks it (not only placement), so the victims must free quota as well as room on the nodes."""
    if eng.cfg.policy != "ainative" or eng.cfg.max_preemptions == 0:
        return False
    key = (job.queue, t, for_quota)
    if now - eng._last_preempt_try.get(key, -math.inf) < eng.cfg.preempt_retry_s:
        return False
    if eng._stopping_for.get(job.job_id):
        return False                              # victims already asked to stop for it
    if eng._searches_left <= 0:
        return False
    eng._searches_left -= 1
    eng._last_preempt_try[key] = now
    victims = _quota_victims(eng, job, t, now) if for_quota else _victims(eng, job, t, now)
    if not victims:
        return False
    del eng._last_preempt_try[key]
    if not eng.cfg.release_on_preempt:         # live: hold what the victims will free
        eng.claim(job, t, _nodes_after(eng, job, t, victims))
    for v in victims:
        _preempt(eng, v, now, dec, job.job_id)
    if eng.cfg.release_on_preempt:
        got = eng.placer.place_job(job, t, frozenset())
        if got is not None:
            eng._start(job, t, got, now, dec)
    return True

def _nodes_after(eng: Engine, job: Job, t: str, victims: list[Job]) -> frozenset[Any]:
    """The nodes ``job`` would go to once ``victims`` have released theirs."""
    for v in victims:
        eng.placer.release(v.placement)
    try:
        got = eng.placer.place_job(job, t, frozenset())
    finally:
        for v in victims:
            eng.placer.take(v.placement)
    return frozenset(p[0] for p in got or ())


def _victims(eng: Engine, job: Job, t: str, now: float) -> list[Job] | None:
    q = eng.queues[job.queue]
    cands = _recent_eligible(eng, q.name, t, now, below=job.priority)
    if eng.usage.used(q.name, t) + job.gpus <= q.nominal(t) + _EPS:      # reclaim lent quota
        for name in eng.cohort.get(q.cohort or "", []):
            p = eng.queues[name]
            if name != q.name and eng.usage.used(name, t) > p.nominal(t) + _EPS:
                cands += _recent_eligible(eng, name, t, now)
    cands = order(cands)[:_VICTIM_SCAN]
    if not cands:
        return None
    if job.gpus <= eng.placer.per_node.get(t, 0):
        one = pick_on_one_node(job.gpus, cands, eng.placer.node_free)
        # a PACK gang of several bundles may also span nodes (as Ray places it): when no single
        # node can be freed (say, an endpoint's replicas spread by Serve), free room across nodes
        if one is not None or len(job.bundles) <= 1 or job.strategy == "STRICT_PACK":
            return one
    taken: list[Job] = []
    fits = False
    for v in cands:                      # multi-node gang: free victims until it fits
        eng.placer.release(v.placement)
        taken.append(v)
        if eng.placer.place_job(job, t, frozenset()) is not None:
            fits = True
            break
    for v in taken:
        eng.placer.take(v.placement)
    return taken if fits else None

def _quota_victims(eng: Engine, job: Job, t: str, now: float) -> list[Job] | None:
    """Victims whose release lets ``job`` pass its queue's quota *and* fit on the nodes: its own
    queue's lower-priority jobs, and borrowers elsewhere in the cohort when the queue lends part of
    its nominal quota (it wants it back). Taken greedily in victim order, then pruned of any whose
    release turned out not to be needed."""
    q = eng.queues[job.queue]
    cands = _recent_eligible(eng, q.name, t, now, below=job.priority)
    if eng.usage.used(q.name, t) < q.nominal(t) - _EPS:
        for name in eng.cohort.get(q.cohort or "", []):
            p = eng.queues[name]
            if name != q.name and eng.usage.used(name, t) > p.nominal(t) + _EPS:
                cands += _recent_eligible(eng, name, t, now)
    cands = order(cands)[:_VICTIM_SCAN]
    taken: list[Job] = []
    fits = False
    for v in cands:
        if v.queue != q.name and eng.usage.used(v.queue, t) <= eng.queues[v.queue].nominal(t) + _EPS:
            continue                         # no longer borrowing: its queue holds only its own
        _lift(eng, v, t, -1.0)
        taken.append(v)
        if _admissible(eng, job, t):
            fits = True
            break
    if fits:
        for v in reversed(taken[:-1]):       # the last one was needed; are the others?
            _lift(eng, v, t, 1.0)
            if _admissible(eng, job, t):
                taken.remove(v)
            else:
                _lift(eng, v, t, -1.0)
    for v in taken:
        _lift(eng, v, t, 1.0)
    return taken if fits else None


def _lift(eng: Engine, victim: Job, t: str, sign: float) -> None:
    """Take a running job's GPUs and quota out of the books (sign -1) or put them back (+1)."""
    if sign < 0:
        eng.placer.release(victim.placement)
    else:
        eng.placer.take(victim.placement)
    eng.usage.add(victim.queue, t, sign * victim.gpus)


def _admissible(eng: Engine, job: Job, t: str) -> bool:
    return eng.quota_block(job, t) is None and eng.placer.place_job(job, t, frozenset()) is not None


def _recent_eligible(eng: Engine, queue: str, t: str, now: float, below: int | None = None) -> list[Job]:
    """Eligible victims among the most recently started jobs of ``queue``, most recent first (the
    cheapest victims first; the walk stops early). Runs younger than ``min_runtime_s`` are never
    eligible, so the walk starts below them (``Engine.started_before``)."""
    cfg, out = eng.cfg, []
    for j in eng.started_before(queue, t, now - cfg.min_runtime_s + 1e-6, below):
        if j.placed_type != t or (below is not None and j.priority >= below):
            continue
        if eligible(j, now, min_runtime_s=cfg.min_runtime_s, ping_pong_s=cfg.ping_pong_s,
                    max_preemptions=cfg.max_preemptions):
            out.append(j)
            if len(out) >= _VICTIM_SCAN:
                break
    return out


def _preempt(eng: Engine, victim: Job, now: float, dec: Decisions, for_job: str) -> None:
    eng.preemptions += 1
    victim.preemptions += 1
    victim.last_preempted_s = now
    dec.preempted.append(victim)
    if not eng.cfg.release_on_preempt:
        victim.metadata["stopping"] = True
        victim.metadata["stopping_for"] = for_job
        eng._stopping_for[for_job] = eng._stopping_for.get(for_job, 0) + 1
        return
    ran = now - victim.start_s if victim.start_s is not None else 0.0
    eng.finish(victim.job_id, now, "preempted")
    if victim.duration_s is not None:
        victim.duration_s = max(0.0, victim.duration_s - ran) + eng.cfg.restart_overhead_s
    victim.placement, victim.placed_type = None, None
    eng.jobs[victim.job_id] = victim
    eng._enqueue(victim)
