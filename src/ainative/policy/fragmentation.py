"""Where a gang goes inside the candidate nodes: the placement scorers, pure Python.

One implementation for both placers (``policy.gpuindex.GpuIndex`` in the simulator,
``scheduling._placer.BundlePlacer`` on a live cluster). A node is seen as its GPUs' free fractions
(``[1.0, 1.0, 0.5, 0.0]``): a fractional request (``0.25`` GPU) must fit inside one GPU, a whole
request takes whole free GPUs. Scorers (``PLACEMENTS``):

- ``packed``: the historical heuristic: the node with the fewest whole free GPUs that fit, and
  fractions into the tightest split GPU.
- ``best-fit``: the node left with the least free GPU (total), ties to the tightest GPU.
- ``worst-fit``: the node left with the most free GPU (spreads load, like kube-scheduler's default
  ``LeastAllocated`` scoring).
- ``fgd``: fragmentation gradient descent (Weng et al., USENIX ATC'23): the node and GPU whose
  placement adds the least *expected fragmentation* against the workload's request mix.

FGD's measure. For a task asking ``d`` GPUs, the fragment of a node is the free GPU that task could
not use there: all of the node's free GPU when the task cannot fit on the node at all; otherwise
the free parts of partly used GPUs that are too small for it (``< min(d, 1)``). A node's
fragmentation is the mix-weighted sum over task sizes; the cluster's is the sum over nodes, and
the *fragmentation rate* is that over the free GPUs. A gang wider than a node needs whole free
nodes, so for it the node's capacity stands in for ``d``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence

PLACEMENTS = ("packed", "best-fit", "worst-fit", "fgd")
_EPS = 1e-9
_MIX_BINS = 32          # distinct request sizes kept in a mix (the rest merge into the nearest)


class RequestMix:
    """The workload's request sizes and their popularity (FGD's "target workload")."""

    def __init__(self, counts: Mapping[float, float] | None = None) -> None:
        self.counts: dict[float, float] = {}
        for d, c in (counts or {}).items():
            self.observe(d, c)

    @classmethod
    def of(cls, sizes: Iterable[float]) -> RequestMix:
        mix = cls()
        for d in sizes:
            mix.observe(d)
        return mix

    def observe(self, gpus: float, count: float = 1.0) -> None:
        if gpus <= 0:
            return
        d = round(float(gpus), 3)
        if d not in self.counts and len(self.counts) >= _MIX_BINS:
            d = min(self.counts, key=lambda k: abs(k - d))
        self.counts[d] = self.counts.get(d, 0.0) + count
        self._items: tuple[tuple[float, float], ...] | None = None

    def items(self) -> tuple[tuple[float, float], ...]:
        """(size, probability) pairs, sizes ascending."""
        cached = getattr(self, "_items", None)
        if cached is None:
            total = sum(self.counts.values()) or 1.0
            cached = tuple((d, c / total) for d, c in sorted(self.counts.items()))
            self._items = cached
        return cached

    def __bool__(self) -> bool:
        return bool(self.counts)


def fragment(gpus: Sequence[float], need: float) -> float:
    """FGD's F_n(m): the free GPU on this node that a task asking ``need`` GPUs cannot use."""
    free = whole = 0.0
    small = 0.0
    for f in gpus:
        free += f
        if f >= 1.0 - _EPS:
            whole += 1
    if need <= 1.0 + _EPS:
        fits = False
        for f in gpus:
            if f + _EPS >= need:
                fits = True
            elif f > _EPS:
                small += f
        return small if fits else free
    if whole + _EPS >= min(need, len(gpus)):
        return free - whole            # the partly used GPUs' free parts
    return free


def node_fragmentation(gpus: Sequence[float], mix: RequestMix) -> float:
    """The mix-weighted expected fragment of one node (FGD's F_n(M))."""
    return sum(p * fragment(gpus, d) for d, p in mix.items())


def options(gpus: Sequence[float], need: float) -> list[tuple[int, ...]]:
    """Distinct ways to take ``need`` GPUs on this node: for a fraction, one GPU index per distinct
    free value that fits; for whole GPUs, the first ``need`` fully free GPUs (they are alike)."""
    if need < 1.0 - _EPS:
        seen: dict[float, int] = {}
        for g, f in enumerate(gpus):
            if f + _EPS >= need and round(f, 6) not in seen:
                seen[round(f, 6)] = g
        return [(g,) for g in seen.values()]
    n = int(round(need))
    free = [g for g, f in enumerate(gpus) if f >= 1.0 - _EPS]
    return [tuple(free[:n])] if len(free) >= n else []


def after(gpus: Sequence[float], need: float, take: tuple[int, ...]) -> list[float]:
    out = list(gpus)
    per = need if need < 1.0 - _EPS else 1.0
    for g in take:
        out[g] = max(0.0, out[g] - per)
    return out


def score(placement: str, gpus: Sequence[float], need: float, take: tuple[int, ...],
          mix: RequestMix | None = None) -> tuple[float, float]:
    """Lower is better: the key by which ``placement`` ranks taking GPUs ``take`` on this node."""
    left = after(gpus, need, take)
    node_left = sum(left)
    gpu_left = min((left[g] for g in take), default=0.0)
    if placement == "worst-fit":
        return (-node_left, -gpu_left)
    if placement == "fgd":
        if mix is None or not mix:
            mix = RequestMix({need: 1.0})
        return (node_fragmentation(left, mix) - node_fragmentation(gpus, mix), node_left)
    if placement == "packed":
        whole_left = sum(1 for f in left if f >= 1.0 - _EPS)
        return (float(whole_left), gpu_left) if need >= 1.0 - _EPS else (gpu_left, float(whole_left))
    return (node_left, gpu_left)                            # best-fit


def best(placement: str, gpus: Sequence[float], need: float,
         mix: RequestMix | None = None) -> tuple[tuple[float, float], tuple[int, ...]] | None:
    """The best way (its score, the GPU indices) to take ``need`` GPUs on one node, or None."""
    out: tuple[tuple[float, float], tuple[int, ...]] | None = None
    for take in options(gpus, need):
        s = score(placement, gpus, need, take, mix)
        if out is None or s < out[0]:
            out = (s, take)
    return out


def require(placement: str) -> str:
    from ainative.config import require_in

    require_in("placement", "placement", placement, PLACEMENTS)
    return placement


def cluster_fragmentation(nodes: Iterable[Sequence[float]], mix: RequestMix) -> tuple[float, float]:
    """(fragmented GPUs, free GPUs) summed over nodes: FGD's cluster measure."""
    frag = free = 0.0
    for gpus in nodes:
        free += sum(gpus)
        frag += node_fragmentation(gpus, mix)
    return frag, free


class GpuLedger:
    """Per-GPU free fractions of named nodes, for a placer that only tracks node totals (the live
    scheduler): which GPU each fractional bundle sits on, and a node ranking by a scorer.

    Given the node's free CPU cores and the bundle's, ``best-fit`` and ``fgd`` rank as they do
    in the FGD measurement (``score_of``): best-fit on CPU and GPU left, fgd against the observed
    mix of (GPU, CPU, model) requests, so a placement that leaves a node too few CPU cores for
    the mix's tasks counts that node's free GPU as fragment. ``tasks`` carries that mix (request
    counts) across a rebuild, as ``mix`` carries the GPU-only one."""

    def __init__(self, sizes: Mapping[str, float], placement: str = "packed",
                 mix: RequestMix | None = None, *, cpus: Mapping[str, float] | None = None,
                 tasks: dict[Demand, float] | None = None) -> None:
        self.placement = require(placement)
        self.mix = mix if mix is not None else RequestMix()
        self.gpus: dict[str, list[float]] = {n: [1.0] * int(math.floor(g + _EPS))
                                             for n, g in sizes.items()}
        self.held: dict[str, list[tuple[float, tuple[int, ...]]]] = {}
        self.tasks: dict[Demand, float] = tasks if tasks is not None else {}
        self._task_mix: TaskMix | None = None
        self.scale = (max((cpus or {}).values(), default=0.0) or 1.0,
                      max(sizes.values(), default=0.0) or 1.0)

    def state(self, node: str, size: float = 0.0) -> list[float]:
        if node not in self.gpus:
            self.gpus[node] = [1.0] * int(math.floor(size + _EPS))
        return self.gpus[node]

    def rank(self, node: str, need: float, size: float = 0.0, *, free_cpus: float | None = None,
             cpus: float = 0.0, model: str = "", wants: str = "") -> tuple[float, float] | None:
        """The scorer's key for ``need`` GPUs on ``node`` (of ``size`` GPUs); None if no GPU holds
        it. With ``free_cpus`` (the node's) and ``cpus`` (the bundle's), best-fit and fgd weigh
        CPU cores too (see the class); ``model``: the node's GPU model, ``wants``: the one the
        request asks for ("": any)."""
        if need <= _EPS:
            return (0.0, 0.0)
        gpus = self.state(node, size)
        if free_cpus is None or self.placement not in ("best-fit", "fgd"):
            got = best(self.placement, gpus, need, self.mix)
        else:
            mix = self.task_mix()
            got = best_of(self.placement, (model, tuple(gpus), free_cpus),
                          Demand(need, cpus, (wants,) if wants else ()), mix if mix.classes else None,
                          self.scale)
        return None if got is None else got[0]

    def task_mix(self) -> TaskMix:
        """The observed (GPU, CPU, model) request mix, rebuilt when a request was added."""
        if self._task_mix is None:
            self._task_mix = TaskMix.of_counts(self.tasks)
        return self._task_mix

    def take(self, node: str, need: float, size: float = 0.0, *, observe: bool = True,
             cpus: float = 0.0, wants: str = "") -> None:
        """Book ``need`` GPUs on ``node``; ``observe=False`` when re-booking what is already held
        (a rebuild from the live cluster), so the request mix counts each request once."""
        if need <= _EPS:
            return
        if observe:
            task = Demand(need, cpus, (wants,) if wants else ())
            self.tasks[task] = self.tasks.get(task, 0.0) + 1.0
            self._task_mix = None
        gpus = self.state(node, size)
        got = best(self.placement, gpus, need, self.mix)
        if got is None:                     # the totals allowed it: keep the books, strand nothing
            take: tuple[int, ...] = ()
        else:
            take = got[1]
            gpus[:] = after(gpus, need, take)
        if observe:
            self.mix.observe(need)
        self.held.setdefault(node, []).append((need, take))

    def release(self, node: str, need: float) -> None:
        if need <= _EPS or node not in self.gpus:
            return
        held = self.held.get(node, [])
        for k, (d, take) in enumerate(held):
            if abs(d - need) <= 1e-6:
                del held[k]
                per = d if d < 1.0 - _EPS else 1.0
                for g in take:
                    self.gpus[node][g] = min(1.0, self.gpus[node][g] + per)
                return


# ---- GPUs and CPUs: FGD's measure over several resources ----------------------------------------
# A node here is (GPU model, its GPUs' free fractions, free CPU cores). A task that cannot run on
# the node for lack of CPU (or for the wrong GPU model) cannot use any of its free GPU: all of it
# is that task's fragment, as in the paper's simulator (its quadrants "lack CPU", "lack both",
# "no access"); a node whose CPUs are taken strands its GPUs for every task that needs CPUs.
Node = tuple[str, tuple[float, ...], float]


class Demand(tuple[float, float, frozenset[str]]):
    """One task's request: GPUs (part of one GPU below 1, whole GPUs above), CPU cores, and the
    GPU models it accepts (empty: any). A plain tuple, hashable and cheap to compare."""

    __slots__ = ()

    def __new__(cls, gpus: float, cpus: float = 0.0, models: Iterable[str] = ()) -> Demand:
        return super().__new__(cls, (float(gpus), float(cpus), frozenset(models)))

    def __getnewargs__(self) -> tuple[float, float, frozenset[str]]:   # type: ignore[override]
        return (self[0], self[1], self[2])

    @property
    def gpus(self) -> float:
        return self[0]

    @property
    def cpus(self) -> float:
        return self[1]

    @property
    def models(self) -> frozenset[str]:
        return self[2]


class TaskMix:
    """FGD's target workload over GPUs and CPUs: the popular task classes and their shares. Tasks
    asking no GPU are left out, as in the paper's simulator (for them every free GPU is fragment,
    the same share of every node's free GPU whatever the placement, so they cannot rank nodes)."""

    def __init__(self, demands: Iterable[Demand], top: int = 64) -> None:
        counts: dict[Demand, float] = {}
        for d in demands:
            counts[d] = counts.get(d, 0) + 1
        self._set(counts, top)

    @classmethod
    def of_counts(cls, counts: Mapping[Demand, float], top: int = 64) -> TaskMix:
        """The mix of requests already counted (``{demand: how many}``)."""
        mix = cls(())
        mix._set(counts, top)
        return mix

    def _set(self, counts: Mapping[Demand, float], top: int) -> None:
        kept = sorted(((d, c) for d, c in counts.items() if d.gpus > _EPS and c > 0),
                      key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))[:top]
        total = sum(c for _, c in kept) or 1
        self.classes: tuple[tuple[Demand, float], ...] = tuple((d, c / total) for d, c in kept)
        self.cpu_levels = sorted({d.cpus for d, _ in self.classes})
        self._memo: dict[tuple[str, tuple[float, ...], int], float] = {}

    def node_fragmentation(self, node: Node) -> float:
        """F_n(M): the mix-weighted free GPU of ``node`` its tasks could not use."""
        model, gpus, cpus = node
        level = bisect.bisect_right(self.cpu_levels, cpus + _EPS)   # what the CPUs decide
        key = (model, gpus, level)
        got = self._memo.get(key)
        if got is None:
            if len(self._memo) > 200_000:
                self._memo.clear()
            got = self._memo[key] = sum(p * fragment_of(node, d) for d, p in self.classes)
        return got


def fragment_of(node: Node, d: Demand) -> float:
    """The free GPU on ``node`` that task ``d`` cannot use (GPU, CPU and model constraints)."""
    model, gpus, cpus = node
    if d.gpus <= _EPS or cpus + _EPS < d.cpus or (d.models and model not in d.models):
        return sum(gpus)
    return fragment(gpus, d.gpus)


def options_of(node: Node, d: Demand) -> list[tuple[int, ...]]:
    """Ways to place ``d`` on ``node`` (GPU indices; ``()`` for a CPU-only task); [] if it does not fit."""
    model, gpus, cpus = node
    if cpus + _EPS < d.cpus or (d.models and model not in d.models):
        return []
    return [()] if d.gpus <= _EPS else options(gpus, d.gpus)


def after_of(node: Node, d: Demand, take: tuple[int, ...]) -> Node:
    """The node once ``d`` holds GPUs ``take`` (free fractions rounded to 1e-6, largest first)."""
    model, gpus, cpus = node
    left = after(gpus, d.gpus, take) if take else gpus
    return (model, tuple(sorted((round(f, 6) for f in left), reverse=True)), round(cpus - d.cpus, 6))


def score_of(placement: str, node: Node, d: Demand, take: tuple[int, ...], mix: TaskMix | None,
             scale: tuple[float, float]) -> tuple[float, float]:
    """Lower is better. ``best-fit`` is the paper's: the node left with the least resources, CPU
    and GPU weighted 0.5 each, each over ``scale`` (the largest node's CPU cores and GPUs);
    ``worst-fit`` the most; ``packed`` the GPU-only heuristic; ``fgd`` the growth of the node's
    fragmentation against ``mix`` (ties: best fit)."""
    model, gpus, cpus = node
    left = after(gpus, d.gpus, take) if take else list(gpus)
    gpu_left = min((left[g] for g in take), default=0.0)
    fit = 0.5 * (cpus - d.cpus) / scale[0] + 0.5 * sum(left) / scale[1]
    if placement == "best-fit":
        return (fit, gpu_left)
    if placement == "worst-fit":
        return (-fit, -gpu_left)
    if placement == "packed":
        return score("packed", gpus, d.gpus, take)
    mix = mix if mix is not None else TaskMix([d])
    return (mix.node_fragmentation(after_of(node, d, take)) - mix.node_fragmentation(node), fit)


def best_of(placement: str, node: Node, d: Demand, mix: TaskMix | None,
            scale: tuple[float, float]) -> tuple[tuple[float, float], tuple[int, ...]] | None:
    """The best way (its score, the GPU indices) to place ``d`` on ``node``, or None."""
    out: tuple[tuple[float, float], tuple[int, ...]] | None = None
    for take in options_of(node, d):
        s = score_of(placement, node, d, take, mix, scale)
        if out is None or s < out[0]:
            out = (s, take)
    return out
