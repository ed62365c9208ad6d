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
