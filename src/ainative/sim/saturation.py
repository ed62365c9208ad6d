"""The FGD paper's fragmentation measurement: fill an empty cluster until a request does not fit.

Weng et al. (USENIX ATC'23) compare placements by submitting tasks drawn from the workload's
request mix to an empty cluster, none ever ending, and reading how many GPUs are still unallocated
when the cluster can take no more (and how much of the free GPU is fragmented by FGD's measure).
A placement that strands fractions stops earlier, with more GPUs left unallocated.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

from ainative import errors
from ainative.policy import fragmentation as frag
from ainative.policy.gpuindex import GpuIndex


@dataclasses.dataclass(frozen=True, slots=True)
class Saturation:
    """Where filling stopped: the first request that did not fit, and the state then."""

    placement: str
    placed: int
    """Requests placed before the first that did not fit."""
    unallocated_gpus: float
    """Free GPUs left when a request no longer fit."""
    fragmented_gpus: float
    """FGD's cluster fragmentation then (expected free GPU the mix cannot use)."""
    total_gpus: float

    @property
    def fragmentation_rate(self) -> float:
        return self.fragmented_gpus / self.unallocated_gpus if self.unallocated_gpus > 0 else 0.0

    def to_dict(self) -> dict[str, float | str | int]:
        return {**dataclasses.asdict(self), "fragmentation_rate": self.fragmentation_rate}


def fill(nodes: Sequence[tuple[str, str, float]], requests: Iterable[tuple[float, str | None]],
         placement: str, mix: frag.RequestMix, *, until: str = "first-failure") -> Saturation:
    """Place ``requests`` ((GPUs, type or None) in order) with ``placement``.

    ``until="first-failure"``: stop at the first request that does not fit. ``until="capacity"``
    (the paper's replay): requests that do not fit are skipped, and filling stops once the
    requests that arrived add up to the cluster's capacity."""
    if until not in ("first-failure", "capacity"):
        raise errors.ConfigError(f"until must be 'first-failure' or 'capacity', got {until!r}",
                                 field="until", value=until)
    index = GpuIndex(nodes, placement, mix)
    capacity = sum(index.total.values())
    placed, arrived = 0, 0.0
    for gpus, gpu_type in requests:
        if until == "capacity" and arrived >= capacity:
            break
        arrived += gpus
        got = index.place(gpus, gpu_type)
        if got is None:
            if until == "first-failure":
                break
            continue
        index.take(got[1])
        placed += 1
    fragmented, free = index.fragmentation(mix)
    return Saturation(placement, placed, free, fragmented, capacity)


def sample(rows: Sequence[tuple[float, str | None]], seed: int) -> Iterable[tuple[float, str | None]]:
    """Requests drawn with replacement from ``rows`` (the trace's request mix), for ever."""
    rnd = random.Random(seed)
    while True:
        yield rows[rnd.randrange(len(rows))]


@dataclasses.dataclass(frozen=True, slots=True)
class Curve:
    """The paper's Fig. 9(a) replay: unallocated GPUs as arrived requests reach each ``levels``
    share of capacity (requests that do not fit are skipped), and the free GPU left at the end by
    size of the free part of each GPU."""

    placement: str
    levels: tuple[float, ...]
    unallocated: tuple[float, ...]
    placed: dict[float, int]
    """Requests placed, by size."""
    free_parts: dict[str, float]
    """Free GPU at the end in GPUs whose free part is below ``0.1``, ``0.1-0.25``, ``0.25-1`` or
    whole (``1``)."""


def curve(nodes: Sequence[tuple[str, str, float]], requests: Iterable[tuple[float, str | None]],
          placement: str, mix: frag.RequestMix,
          levels: Sequence[float] = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)) -> Curve:
    """Place ``requests`` with ``placement`` until they add up to ``max(levels)`` x capacity."""
    index = GpuIndex(nodes, placement, mix)
    capacity = sum(index.total.values())
    marks: list[float] = sorted(levels)
    out: list[float] = []
    placed: dict[float, int] = {}
    arrived = 0.0
    for gpus, gpu_type in requests:
        if len(out) == len(marks):
            break
        arrived += gpus
        got = index.place(gpus, gpu_type)
        if got is not None:
            index.take(got[1])
            placed[gpus] = placed.get(gpus, 0) + 1
        while len(out) < len(marks) and arrived + 1e-9 >= marks[len(out)] * capacity:
            out.append(index.free_gpus())
    parts = {"<0.1": 0.0, "0.1-0.25": 0.0, "0.25-1": 0.0, "1": 0.0}
    for i in range(len(index.cap)):
        for f in index.node_gpus(i):
            key = "1" if f >= 1 - 1e-9 else "0.25-1" if f >= 0.25 - 1e-9 else \
                "0.1-0.25" if f >= 0.1 - 1e-9 else "<0.1"
            parts[key] += f
    return Curve(placement, tuple(marks), tuple(out), placed, parts)


# ---- GPUs and CPUs ------------------------------------------------------------------------------
class NodeBook:
    """Nodes with GPUs and CPU cores for the FGD measurement. Every node is a candidate, as in the
    paper's simulator; nodes in the same state (model, free GPU parts, free CPU) are scored once,
    and a score is remembered for the state and task."""

    def __init__(self, nodes: Sequence[tuple[str, str, float]], cpus: Sequence[float], placement: str,
                 mix: frag.TaskMix) -> None:
        if len(cpus) != len(nodes):
            raise errors.ConfigError(f"NodeBook needs the CPU cores of every node: {len(nodes)} nodes, "
                                     f"{len(cpus)} CPU figures", field="cpus", value=len(cpus))
        self.placement, self.mix = frag.require(placement), mix
        self.state: list[frag.Node] = [(t.upper(), (1.0,) * int(g + 1e-9), float(c))
                                       for (_, t, g), c in zip(nodes, cpus)]
        self.groups: dict[frag.Node, dict[int, None]] = {}
        for i, node in enumerate(self.state):
            self.groups.setdefault(node, {})[i] = None
        self.scale = (max(cpus, default=1.0) or 1.0, max((g for _, _, g in nodes), default=1.0) or 1.0)
        self.capacity = sum(g for _, _, g in nodes)
        self._memo: dict[tuple[frag.Node, frag.Demand],
                         tuple[tuple[float, float], tuple[int, ...]] | None] = {}

    def place(self, d: frag.Demand) -> bool:
        """Place ``d`` where the scorer prefers; False when no node holds it."""
        best: tuple[tuple[tuple[float, float], int], tuple[int, ...]] | None = None
        need = min(d.gpus, 1.0)
        for node, members in self.groups.items():
            gpus = node[1]
            if node[2] + 1e-9 < d.cpus or (need > 0 and (not gpus or gpus[0] + 1e-9 < need)):
                continue
            key = (node, d)
            if key in self._memo:
                got = self._memo[key]
            else:
                if len(self._memo) > 500_000:
                    self._memo.clear()
                got = self._memo[key] = frag.best_of(self.placement, node, d, self.mix, self.scale)
            if got is not None:
                rank = (got[0], next(iter(members)))
                if best is None or rank < best[0]:
                    best = (rank, got[1])
        if best is None:
            return False
        i = best[0][1]
        old = self.state[i]
        new = frag.after_of(old, d, best[1])
        del self.groups[old][i]
        if not self.groups[old]:
            del self.groups[old]
        self.groups.setdefault(new, {})[i] = None
        self.state[i] = new
        return True

    def free_gpus(self) -> float:
        return sum(sum(gpus) for _, gpus, _ in self.state)

    def fragmentation(self) -> float:
        return sum(self.mix.node_fragmentation(node) for node in self.state)

    def cpu_stranded_gpus(self) -> float:
        """Free GPU on nodes whose free CPU is below what the least CPU-hungry GPU task asks."""
        least = min((d.cpus for d, _ in self.mix.classes), default=0.0)
        return sum(sum(gpus) for _, gpus, cpus in self.state if cpus + 1e-9 < least)


@dataclasses.dataclass(frozen=True, slots=True)
class CpuCurve:
    """The paper's Fig. 9(a) replay with CPUs: unallocated GPUs as arrived GPU requests reach each
    ``levels`` share of GPU capacity (CPU-only tasks arrive too, counting 0 GPUs; tasks that do
    not fit are skipped), and the state at the end."""

    placement: str
    levels: tuple[float, ...]
    unallocated: tuple[float, ...]
    placed: int
    skipped: int
    fragmented_gpus: float
    """FGD's cluster fragmentation at the end (against the mix)."""
    cpu_stranded_gpus: float
    """Free GPU at the end on nodes with too little free CPU for any GPU task of the mix."""
    free_cpus: float
    first_failure_unallocated: float | None
    """Free GPUs when the first GPU task did not fit (None: every task fitted)."""


def cpu_curve(nodes: Sequence[tuple[str, str, float]], cpus: Sequence[float],
              requests: Iterable[frag.Demand], placement: str, mix: frag.TaskMix,
              levels: Sequence[float] = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)) -> CpuCurve:
    """Place ``requests`` with ``placement`` until their GPUs add up to ``max(levels)`` x capacity."""
    book = NodeBook(nodes, cpus, placement, mix)
    marks = sorted(levels)
    out: list[float] = []
    arrived, placed, skipped = 0.0, 0, 0
    first: float | None = None
    for d in requests:
        if len(out) == len(marks):
            break
        arrived += d.gpus
        if book.place(d):
            placed += 1
        else:
            skipped += 1
            if first is None and d.gpus > 0:
                first = book.free_gpus()
        while len(out) < len(marks) and arrived + 1e-9 >= marks[len(out)] * book.capacity:
            out.append(book.free_gpus())
    return CpuCurve(placement, tuple(marks), tuple(out), placed, skipped, book.fragmentation(),
                    book.cpu_stranded_gpus(), sum(c for _, _, c in book.state), first)
