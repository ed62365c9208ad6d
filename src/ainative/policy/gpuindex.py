"""A fast per-node GPU free-capacity index for the simulator (thousands of nodes), pure Python.

Nodes of one accelerator type sit in buckets by whole free GPUs, so "the tightest node with at
least n free" is a walk over at most ``gpus_per_node`` buckets, not over every node. Placement is
topology-aware: a gang that fits one node goes on one node (best fit), larger gangs take whole
nodes plus a best-fit node for the remainder; fractions go first onto nodes already split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

_EPS = 1e-9
_FRACTION_SCAN = 64     # nodes inspected for a best fit among already-split nodes

Placement = list[tuple[int, float]]   # (node index, GPUs taken)


class GpuIndex:
    """Free GPUs per node, bucketed by type and floor(free)."""

    def __init__(self, nodes: Sequence[tuple[str, str, float]]) -> None:
        self.names = [n for n, _, _ in nodes]
        self.types = [t.upper() for _, t, _ in nodes]
        self.cap = [float(g) for _, _, g in nodes]
        self.free = list(self.cap)
        self.per_node: dict[str, int] = {}
        self.total: dict[str, float] = {}
        for t, g in zip(self.types, self.cap):
            self.per_node[t] = max(self.per_node.get(t, 0), int(g))
            self.total[t] = self.total.get(t, 0.0) + g
        self.free_total = dict(self.total)
        self.buckets: dict[str, list[set[int]]] = {t: [set() for _ in range(c + 1)]
                                                   for t, c in self.per_node.items()}
        self.bucket_free: dict[str, list[float]] = {t: [0.0] * (c + 1) for t, c in self.per_node.items()}
        for i, t in enumerate(self.types):
            k = self._k(self.free[i])
            self.buckets[t][k].add(i)
            self.bucket_free[t][k] += self.free[i]

    @staticmethod
    def _k(free: float) -> int:
        return int(free + _EPS)

    def gpu_types(self) -> list[str]:
        return sorted(self.total)

    def largest_gang(self, gpu_type: str | None) -> float:
        types = [gpu_type] if gpu_type else list(self.total)
        return max((self.total.get(t, 0.0) for t in types), default=0.0)

    def place(self, gpus: float, gpu_type: str | None,
              avoid: frozenset[int] = frozenset()) -> tuple[str, Placement] | None:
        types = [gpu_type] if gpu_type else sorted(self.total, key=lambda t: -self.free_total[t])
        for t in types:
            if t in self.total:
                got = self._place_type(gpus, t, avoid)
                if got is not None:
                    return t, got
        return None

    def place_job(self, job: Any, gpu_type: str, avoid: frozenset[int] = frozenset()) -> Placement | None:
        return self._place_type(job.gpus, gpu_type, avoid) if gpu_type in self.total else None

    def node_free(self, i: int) -> float:
        return self.free[i]

    def never_fits(self, job: Any) -> str | None:
        """Why the gang could never be placed on this cluster, even empty; None if it could."""
        if job.gpu_type and job.gpu_type not in self.total:
            return (f"the cluster has no {job.gpu_type} GPUs (it has: "
                    f"{', '.join(self.gpu_types()) or 'none'})")
        if job.gpus <= 0:
            return f"it asks for {job.gpus:g} GPUs; ask for more than 0"
        if job.gpus > 1 and abs(job.gpus - round(job.gpus)) > _EPS:
            return f"it asks for {job.gpus:g} GPUs; above 1 GPU the count must be whole"
        best = self.largest_gang(job.gpu_type)
        if job.gpus > best + _EPS:
            return f"it asks for {job.gpus:g} GPUs, the most the cluster can ever offer is {best:g}"
        return None

    def shadow_job(self, job: Any, gpu_type: str,
                   releases: Iterable[tuple[float, Placement]]) -> tuple[float, frozenset[int]] | None:
        return self.shadow(job.gpus, gpu_type, releases)

    def _pick(self, t: str, lo: int, avoid: frozenset[int], exclude: set[int] | None = None) -> int | None:
        for k in range(lo, self.per_node[t] + 1):
            for i in self.buckets[t][k]:
                if i not in avoid and (exclude is None or i not in exclude):
                    return i
        return None

    def _place_type(self, n: float, t: str, avoid: frozenset[int]) -> Placement | None:
        if n > self.free_total[t] + _EPS:
            return None
        cap = self.per_node[t]
        if n < 1.0:
            best: int | None = None
            scanned = 0
            for i in self.buckets[t][0]:
                fits = i not in avoid and self.free[i] + _EPS >= n
                if fits and (best is None or self.free[i] < self.free[best]):
                    best = i
                scanned += 1
                if scanned >= _FRACTION_SCAN:
                    break
            if best is None:
                best = self._pick(t, 1, avoid)
            return None if best is None else [(best, n)]
        if n <= cap:
            one = self._pick(t, math.ceil(n - _EPS), avoid)
            return None if one is None else [(one, n)]
        whole, rest = int(n // cap), n - (n // cap) * cap
        chosen = [i for i in self.buckets[t][cap] if i not in avoid][:whole] \
            if avoid else _first(self.buckets[t][cap], whole)
        if len(chosen) < whole:
            return None
        out: Placement = [(i, float(cap)) for i in chosen]
        if rest > _EPS:
            j = self._pick(t, math.ceil(rest - _EPS), avoid, set(chosen))
            if j is None:
                return None
            out.append((j, rest))
        return out

    def _move(self, i: int, delta: float) -> None:
        t = self.types[i]
        old = self._k(self.free[i])
        self.buckets[t][old].discard(i)
        self.bucket_free[t][old] -= self.free[i]
        self.free[i] += delta
        new = self._k(self.free[i])
        self.buckets[t][new].add(i)
        self.bucket_free[t][new] += self.free[i]
        self.free_total[t] += delta

    def take(self, placement: Placement) -> None:
        for i, g in placement:
            self._move(i, -g)

    def release(self, placement: Placement) -> None:
        for i, g in placement:
            self._move(i, g)

    def shadow(self, gpus: float, gpu_type: str,
               releases: Iterable[tuple[float, Placement]]) -> tuple[float, frozenset[int]] | None:
        """Earliest time (and the nodes) at which ``gpus`` of ``gpu_type`` fit, releasing running
        gangs in end-time order: the reservation a blocked gang holds against backfill."""
        cap = self.per_node.get(gpu_type, 0)
        over: dict[int, float] = {}
        if gpus <= cap:
            need = max(gpus, _EPS)
            for end, placement in releases:
                for i, g in placement:
                    if self.types[i] != gpu_type:
                        continue
                    over[i] = over.get(i, self.free[i]) + g
                    if over[i] + _EPS >= need:
                        return end, frozenset((i,))
            return None
        want = math.ceil(gpus / cap - _EPS)
        full = set(self.buckets[gpu_type][cap])
        for end, placement in releases:
            for i, g in placement:
                if self.types[i] != gpu_type:
                    continue
                over[i] = over.get(i, self.free[i]) + g
                if over[i] + _EPS >= self.cap[i]:
                    full.add(i)
            if len(full) >= want:
                return end, frozenset(sorted(full)[:want])
        return None

    def free_histogram(self, gpu_type: str) -> str:
        parts = [f"{k} free: {len(s)}" for k, s in enumerate(self.buckets[gpu_type]) if s and k > 0]
        return ", ".join(reversed(parts)) or "no node has a whole GPU free"

    def unusable_free(self, min_need: dict[str, float]) -> float:
        """Free GPUs on nodes with less free than the smallest waiting request of their type."""
        lost = 0.0
        for t, need in min_need.items():
            if t not in self.bucket_free or need <= 1.0 or need > self.per_node[t]:
                continue
            lost += sum(self.bucket_free[t][:math.ceil(need - _EPS)])
        return lost

    def free_gpus(self) -> float:
        return sum(self.free_total.values())


def _first(items: set[int], n: int) -> list[int]:
    out: list[int] = []
    for i in items:
        if len(out) >= n:
            break
        out.append(i)
    return out
