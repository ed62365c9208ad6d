"""Weighted dominant-resource fair share with decayed usage, and Jain's fairness index, pure Python.

A queue's share is its dominant share of what it holds now (the largest fraction of any GPU type)
plus its decayed past usage (GPU-seconds with a half-life, normalised the same way), divided by its
weight. The queue with the lowest share is served first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


class UsageTracker:
    """Per-queue GPU usage: held now per type, and decayed past usage (exact between events)."""

    def __init__(self, capacity: Mapping[str, float], half_life_s: float) -> None:
        self.capacity = {t: c for t, c in capacity.items() if c > 0}
        self.half_life_s = half_life_s
        self._lambda = math.log(2) / half_life_s
        self.held: dict[str, dict[str, float]] = {}
        self.decayed: dict[str, float] = {}      # normalised: 1.0 == the whole cluster for ever
        self._dom: dict[str, float] = {}          # dominant share of what each queue holds now
        self.version = 0                          # bumped on every change of what is held
        self._at = 0.0

    def advance(self, now: float) -> None:
        dt = now - self._at
        if dt <= 0:
            return
        keep = math.exp(-self._lambda * dt)
        dom = self._dom
        for q in self.held:
            self.decayed[q] = self.decayed.get(q, 0.0) * keep + dom[q] * (1 - keep)
        for q in self.decayed.keys() - self.held.keys():
            self.decayed[q] *= keep
        self._at = now

    def _dominant(self, held: Mapping[str, float]) -> float:
        return max((g / self.capacity[t] for t, g in held.items() if t in self.capacity), default=0.0)

    def add(self, queue: str, gpu_type: str, gpus: float) -> None:
        self.version += 1
        held = self.held.setdefault(queue, {})
        held[gpu_type] = held.get(gpu_type, 0.0) + gpus
        if held[gpu_type] <= 1e-9:
            del held[gpu_type]
            if not held:
                del self.held[queue]
        self._dom[queue] = self._dominant(held)

    def used(self, queue: str, gpu_type: str) -> float:
        return self.held.get(queue, {}).get(gpu_type, 0.0)

    def share(self, queue: str, weight: float) -> float:
        return (self._dom.get(queue, 0.0) + self.decayed.get(queue, 0.0)) / weight


def jain(values: Sequence[float]) -> float:
    """Jain's index: 1.0 when all equal, 1/n when one takes everything."""
    vals = [v for v in values if v >= 0]
    if not vals:
        return 1.0
    total, squares = sum(vals), sum(v * v for v in vals)
    return 1.0 if squares == 0 else total * total / (len(vals) * squares)
