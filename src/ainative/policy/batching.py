"""Adaptive batching arithmetic: how long a replica waits to fill a batch, and what it records.

Pure Python (no Ray): the replica's batcher in ``ainative.serve`` asks :func:`batch_wait_ms`
before each batch, and the same function is unit-tested on latency traces.

The wait is the knob that trades latency for throughput. It starts at ``max_wait_ms`` and shrinks
linearly to zero as the observed tail latency climbs from ``shrink_from`` x SLO to the SLO, so a
replica that is close to breaking its SLO stops adding queueing delay of its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

from ainative.config import require_int, require_positive, require_range


# Spelled out (not config.config_dataclass) so that mypy sees a dataclass.
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BatchingConfig:
    """How requests are grouped into model calls on one replica."""

    max_batch_size: int = 16
    """Most requests per model call; the model receives a list of at most this many."""
    max_wait_ms: float = 5.0
    """Longest a request waits for a batch to fill (ms); shrinks as latency nears the SLO."""
    shrink_from: float = 0.5
    """Fraction of the latency SLO at which the wait starts to shrink (0.5 = at half the SLO)."""

    def __post_init__(self) -> None:
        require_int("BatchingConfig", "max_batch_size", self.max_batch_size, minimum=1,
                    maximum=4096)
        # finite and bounded: asyncio.wait_for(..., nan) never fires and a batch would wait forever
        require_positive("BatchingConfig", "max_wait_ms", self.max_wait_ms, allow_zero=True,
                         maximum=10_000)
        require_range("BatchingConfig", "shrink_from", self.shrink_from, 0.0, 1.0,
                      low_open=True, high_open=True)


def batch_wait_ms(config: BatchingConfig, latency_slo_ms: float | None,
                  observed_latency_ms: float | None, mean_gap_ms: float | None = None) -> float:
    """The wait for the next batch: ``max_wait_ms`` while latency is far below the SLO, then a
    linear ramp down to 0 between ``shrink_from * SLO`` and the SLO. When requests arrive further
    apart (``mean_gap_ms``) than the wait, no other request is expected to join: do not wait."""
    if mean_gap_ms is not None and mean_gap_ms > config.max_wait_ms:
        return 0.0
    if latency_slo_ms is None or observed_latency_ms is None:
        return config.max_wait_ms
    start = config.shrink_from * latency_slo_ms
    if observed_latency_ms <= start:
        return config.max_wait_ms
    if observed_latency_ms >= latency_slo_ms:
        return 0.0
    room = (latency_slo_ms - observed_latency_ms) / (latency_slo_ms - start)
    return config.max_wait_ms * room


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty); ``pct`` in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def merge_histograms(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """Sum batch-size histograms (size -> count) from several replicas."""
    total: dict[int, int] = {}
    for hist in histograms:
        for size, count in hist.items():
            total[int(size)] = total.get(int(size), 0) + int(count)
    return dict(sorted(total.items()))
