"""Victim selection for preemption, pure Python.

Victims are preemptible running jobs only: lowest priority first, then the most recently started
(least work lost). A job inside its minimum-runtime protection window, or preempted within the
ping-pong window, or preempted ``max_preemptions`` times already, is never chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ainative.policy.admission import Job


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
