"""A fast per-node, per-GPU free-capacity index for the simulator (thousands of nodes), pure Python.

Each node keeps its GPUs' free fractions (a 0.25-GPU job takes a quarter of one GPU; a whole-GPU
job takes fully free GPUs). Nodes of one accelerator type sit in buckets by their count of whole
free GPUs, so "nodes with at least n whole GPUs free" is a walk over at most ``gpus_per_node``
buckets; nodes with a split GPU are filed by their "room" (the largest free part of one split
GPU), so a fraction is offered every room that holds it. A gang that fits one node goes on one
node, chosen by the scorer (``policy.fragmentation``) among a bounded set of candidates (a few per
bucket and per room: nodes in the same state score the same, and the scorer's answers are cached
by node state). Wider gangs, or whole-GPU gangs no node holds now, take whole free nodes (the
largest first, smaller ones of the type to cover exactly) plus a scored node for the remainder.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

from ainative.policy import fragmentation as frag

_EPS = 1e-9
_FRACTION_SCAN = 64     # split nodes inspected for a fraction (at most)
_PER_ROOM = 4           # split nodes per "largest room on a split GPU" value a scorer compares
_PER_BUCKET = 4         # nodes per whole-free bucket a scorer compares (nodes alike score alike)
_CACHE_MAX = 200_000
_SHADOW_WALK = 4096     # running jobs' ends a reservation estimate walks at most (then: none)

Placement = list[tuple[int, float]]   # (node index, GPUs taken there)


class GpuIndex:
    """Free GPUs per node and per GPU, nodes bucketed by type and count of whole free GPUs.

    ``placement`` names the scorer (``policy.fragmentation.PLACEMENTS``) that picks the node and
    GPU; ``mix`` is the workload's request mix the ``fgd`` scorer measures fragmentation against.
    """

    def __init__(self, nodes: Sequence[tuple[str, str, float]], placement: str = "packed",
                 mix: frag.RequestMix | None = None) -> None:
        self.placement = frag.require(placement)
        self.mix = mix if mix is not None else frag.RequestMix()
        self.names = [n for n, _, _ in nodes]
        self.types = [t.upper() for _, t, _ in nodes]
        self.cap = [float(g) for _, _, g in nodes]
        self.free = list(self.cap)
        self.whole = [int(g + _EPS) for g in self.cap]          # fully free GPUs
        self.shared: list[dict[int, float]] = [{} for _ in self.cap]   # GPU id -> free, split GPUs
        self.holders: dict[tuple[int, float], list[int]] = {}  # (node, fraction) -> GPU ids
        self._gid = 0
        self.per_node: dict[str, int] = {}
        self.total: dict[str, float] = {}
        for t, g in zip(self.types, self.cap):
            self.per_node[t] = max(self.per_node.get(t, 0), int(g))
            self.total[t] = self.total.get(t, 0.0) + g
        self.free_total = dict(self.total)
        self.buckets: dict[str, list[set[int]]] = {t: [set() for _ in range(c + 1)]
                                                   for t, c in self.per_node.items()}
        self.bucket_free: dict[str, list[float]] = {t: [0.0] * (c + 1) for t, c in self.per_node.items()}
        # nodes with a split GPU, by the most any one of their split GPUs has free ("room"), so a
        # fraction is offered every room that holds it (a sample of all split nodes missed them)
        self.split: dict[str, dict[float, dict[int, None]]] = {t: {} for t in self.per_node}
        self.room: list[float | None] = [None] * len(self.cap)
        # fully free nodes smaller than their type's largest, by size: a gang wider than a node
        # makes up for missing largest nodes with them (T4: 4-GPU nodes, or pairs of 2-GPU ones)
        self.small_empty: dict[str, dict[int, dict[int, None]]] = {t: {} for t in self.per_node}
        self._cache: dict[tuple[int, tuple[float, ...], int, float],
                          tuple[tuple[float, float], tuple[int, ...]] | None] = {}
        for i, t in enumerate(self.types):
            self.buckets[t][self.whole[i]].add(i)
            self.bucket_free[t][self.whole[i]] += self.free[i]
            if self.whole[i] < self.per_node[t]:
                self.small_empty[t].setdefault(self.whole[i], {})[i] = None

    def gpu_types(self) -> list[str]:
        return sorted(self.total)

    def largest_gang(self, gpu_type: str | None) -> float:
        types = [gpu_type] if gpu_type else list(self.total)
        return max((self.total.get(t, 0.0) for t in types), default=0.0)

    def place(self, gpus: float, gpu_type: str | None,
              avoid: frozenset[int] = frozenset()) -> tuple[str, Placement] | None:
        types = [gpu_type] if gpu_type else sorted(self.total, key=lambda t: -self.free_total[t])
        if gpu_type is None and self.placement != "packed" and gpus <= min(self.per_node.values()):
            return self._place_any(gpus, types, avoid)
        for t in types:
            if t in self.total:
                got = self._place_type(gpus, t, avoid)
                if got is not None:
                    return t, got
        return None

    def _place_any(self, n: float, types: list[str], avoid: frozenset[int]) -> tuple[str, Placement] | None:
        """Any GPU type will do: the scorer compares the best node of every type."""
        best: tuple[tuple[float, float], int] | None = None
        for t in types:
            i = self._choose(t, n, avoid) if n <= self.free_total[t] + _EPS else None
            if i is not None:
                got = self._best(i, n)
                if got is not None and (best is None or (got[0], i) < best):
                    best = (got[0], i)
        return None if best is None else (self.types[best[1]], [(best[1], n)])

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

    def node_gpus(self, i: int) -> list[float]:
        """Free fraction of each GPU of node ``i``: whole free, then split GPUs, then full ones."""
        sh = list(self.shared[i].values())
        return [1.0] * self.whole[i] + sh + [0.0] * (int(self.cap[i] + _EPS) - self.whole[i] - len(sh))

    def _best(self, i: int, n: float) -> tuple[tuple[float, float], tuple[int, ...]] | None:
        key = (self.whole[i], tuple(self.shared[i].values()), int(self.cap[i]), n)
        if key in self._cache:
            return self._cache[key]
        if len(self._cache) > _CACHE_MAX:
            self._cache.clear()
        got = self._cache[key] = frag.best(self.placement, self.node_gpus(i), n, self.mix)
        return got

    def _candidates(self, t: str, n: float, avoid: frozenset[int], exclude: set[int] | None) -> list[int]:
        out: list[int] = []
        if n < 1.0 - _EPS:
            rooms = self.split[t]
            for room in sorted(rooms):              # tightest room first, a few nodes of each
                if room + _EPS < n:
                    continue
                taken = 0
                for i in rooms[room]:
                    if i not in avoid and (exclude is None or i not in exclude):
                        out.append(i)
                        taken += 1
                        if taken >= _PER_ROOM:
                            break
                if len(out) >= _FRACTION_SCAN:
                    break
        for k in range(max(1, math.ceil(n - _EPS)), self.per_node[t] + 1):
            taken = 0
            for i in self.buckets[t][k]:
                if i not in avoid and (exclude is None or i not in exclude):
                    out.append(i)
                    taken += 1
                    if taken >= _PER_BUCKET:
                        break
        return out

    def _choose(self, t: str, n: float, avoid: frozenset[int], exclude: set[int] | None = None) -> int | None:
        """The node the scorer prefers for ``n`` <= one node's GPUs."""
        if self.placement == "packed" and n >= 1.0 - _EPS:      # the historical fast path
            return self._pick(t, math.ceil(n - _EPS), avoid, exclude)
        best: tuple[tuple[float, float], int] | None = None
        for i in self._candidates(t, n, avoid, exclude):
            got = self._best(i, n)
            if got is not None and (best is None or (got[0], i) < best):
                best = (got[0], i)
        return None if best is None else best[1]

    def _place_type(self, n: float, t: str, avoid: frozenset[int]) -> Placement | None:
        if n > self.free_total[t] + _EPS:
            return None
        cap = self.per_node[t]
        if n <= cap:
            one = self._choose(t, n, avoid)
            if one is not None:
                return [(one, n)]
            # no node holds it now: whole GPUs may span whole free smaller nodes (T4: two 2-GPU
            # nodes for a 4-GPU gang); with nodes of one size there are none
            return self._span_small(t, n, avoid) if n >= 1.0 - _EPS and self.small_empty[t] else None
        whole, rest = int(n // cap), n - (n // cap) * cap
        chosen = [i for i in self.buckets[t][cap] if i not in avoid][:whole] \
            if avoid else _first(self.buckets[t][cap], whole)
        out: Placement = [(i, float(cap)) for i in chosen]
        if len(chosen) < whole:        # too few largest nodes free: smaller free nodes make up the gap
            more = self._span_small(t, (whole - len(chosen)) * cap, avoid)
            if more is None:
                return None
            out += more
            chosen += [i for i, _ in more]
        if rest > _EPS:
            j = self._choose(t, rest, avoid, set(chosen))
            if j is None:
                return None
            out.append((j, rest))
        return out

    def _span_small(self, t: str, gpus: float, avoid: frozenset[int]) -> Placement | None:
        """``gpus`` whole GPUs exactly covered by whole free nodes smaller than the type's largest,
        largest first; None when they do not add up."""
        out: Placement = []
        gap = gpus
        for size in sorted(self.small_empty[t], reverse=True):
            for i in self.small_empty[t][size]:
                if gap < size - _EPS:
                    break
                if i not in avoid:
                    out.append((i, float(size)))
                    gap -= size
        return out if gap <= _EPS else None

    def _apply(self, i: int, gpus: float, sign: float) -> None:
        t = self.types[i]
        old = self.whole[i]
        self.buckets[t][old].discard(i)
        self.bucket_free[t][old] -= self.free[i]
        if gpus >= 1.0 - _EPS:
            self.whole[i] += int(sign * round(gpus))
        elif sign < 0:
            self._take_fraction(i, gpus)
        else:
            self._release_fraction(i, gpus)
        new = self.whole[i]
        self.free[i] += sign * gpus
        self._file_room(t, i)
        size = int(self.cap[i] + _EPS)
        if size < self.per_node[t]:
            if new == size:
                self.small_empty[t].setdefault(size, {})[i] = None
            else:
                self.small_empty[t].get(size, {}).pop(i, None)
        self.buckets[t][new].add(i)
        self.bucket_free[t][new] += self.free[i]
        self.free_total[t] += sign * gpus

    def _file_room(self, t: str, i: int) -> None:
        """Re-file node ``i`` under the largest free part of its split GPUs (none: not split)."""
        rooms, old = self.split[t], self.room[i]
        new = round(max(self.shared[i].values()), 6) if self.shared[i] else None
        if new == old:
            return
        if old is not None:
            del rooms[old][i]
            if not rooms[old]:
                del rooms[old]
        if new is not None:
            rooms.setdefault(new, {})[i] = None
        self.room[i] = new

    def _take_fraction(self, i: int, d: float) -> None:
        got = self._best(i, d)
        n_whole = self.whole[i]
        g = got[1][0] if got is not None else 0
        sh = self.shared[i]
        if g < n_whole or not sh:          # open a whole GPU for sharing
            self.whole[i] -= 1
            self._gid += 1
            gid = self._gid
            sh[gid] = 1.0
        else:
            gid = list(sh)[min(g - n_whole, len(sh) - 1)]
        sh[gid] = max(0.0, sh[gid] - d)
        self.holders.setdefault((i, d), []).append(gid)

    def _release_fraction(self, i: int, d: float) -> None:
        # Equal fractions on one node are interchangeable: release the latest placed one's GPU.
        ids = self.holders.get((i, d))
        sh = self.shared[i]
        gid = ids.pop() if ids else next(iter(sh), None)
        if gid is None or gid not in sh:
            return
        sh[gid] += d
        if sh[gid] >= 1.0 - _EPS:
            del sh[gid]
            self.whole[i] += 1

    def take(self, placement: Placement) -> None:
        for i, g in placement:
            self._apply(i, g, -1.0)

    def release(self, placement: Placement) -> None:
        for i, g in placement:
            self._apply(i, g, 1.0)

    def fragmentation(self, mix: frag.RequestMix | None = None) -> tuple[float, float]:
        """FGD's cluster measure: (fragmented GPUs, free GPUs) against ``mix`` (default: own)."""
        return frag.cluster_fragmentation((self.node_gpus(i) for i in range(len(self.cap))),
                                          mix if mix is not None else self.mix)

    def shadow(self, gpus: float, gpu_type: str,
               releases: Iterable[tuple[float, Placement]]) -> tuple[float, frozenset[int]] | None:
        """Earliest time (and the nodes) at which ``gpus`` of ``gpu_type`` fit, releasing running
        gangs in end-time order: the reservation a blocked gang holds against backfill. Only the
        first ``_SHADOW_WALK`` ends are walked: a gang that needs more gets no reservation."""
        cap = self.per_node.get(gpu_type, 0)
        over: dict[int, float] = {}
        releases = itertools.islice(releases, _SHADOW_WALK)
        if gpus <= cap:
            need = max(gpus, _EPS)
            for end, placement in releases:
                for i, g in placement:
                    if self.types[i] != gpu_type:
                        continue
                    over[i] = over.get(i, self.free[i]) + g
                    if (over[i] if need < 1 else math.floor(over[i] + _EPS)) + _EPS >= need:
                        return end, frozenset((i,))
            return None
        # whole free nodes (any size of the type) until they hold the gang: with nodes of one
        # size, ceil(gpus / cap) of them
        full = set(self.buckets[gpu_type][cap])
        for nodes in self.small_empty[gpu_type].values():
            full.update(nodes)
        room = sum(self.cap[i] for i in full)
        for end, placement in releases:
            for i, g in placement:
                if self.types[i] != gpu_type or i in full:
                    continue
                over[i] = over.get(i, self.free[i]) + g
                if over[i] + _EPS >= self.cap[i]:
                    full.add(i)
                    room += self.cap[i]
            if room + _EPS >= gpus:
                out, held = [], 0.0
                for i in sorted(full):
                    if held + _EPS >= gpus:
                        break
                    out.append(i)
                    held += self.cap[i]
                return end, frozenset(out)
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
