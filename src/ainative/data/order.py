"""The epoch's global order and each rank's part of it (pure; no Ray, no data).

Semantics (the contract with training):

* The **global order** of epoch ``e`` with seed ``s`` is a permutation of the dataset's rows that
  depends only on (s, e) and the block layout, never on the world size. With ``seed=None`` it is
  the dataset's own order. With a seed: the blocks are permuted, consecutive permuted blocks are
  grouped into windows of ``window_blocks``, and the rows of each window are permuted. (For a
  fully uniform order, ``shuffle()`` the dataset first; the window shuffle re-mixes it per epoch
  without moving data.)
* Rank ``r`` of ``w`` reads global positions ``start_sample + r + k*w`` (k = 0, 1, ...): strided,
  so after every rank has read ``k`` rows the ranks together have read exactly the prefix
  ``[start_sample, start_sample + k*w)`` of the global order. That prefix length is what a
  checkpoint stores (``start_sample``), so a restart with any other world size continues exactly
  where the old one stopped, and the union over ranks of one epoch is exactly the epoch.
* When ``N - start_sample`` is not a multiple of ``w`` the first ranks get one row more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from ainative import errors
from ainative.data._blocks import ORDER_STREAM

DEFAULT_WINDOW_BLOCKS = 2
"""Blocks whose rows are permuted together: 2 breaks block boundaries at the cost of holding two
blocks (zero-copy views) per reader."""


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """A run of the global order: ``blocks`` (dataset indices) with ``offsets`` into their
    concatenation, starting at global position ``start``; ``perm`` maps window positions to rows
    of the concatenation (None: identity)."""

    start: int
    blocks: tuple[int, ...]
    offsets: np.ndarray
    perm: np.ndarray | None

    @property
    def rows(self) -> int:
        return int(self.offsets[-1])


def validate_shard(rank: int, world_size: int, start_sample: int, num_rows: int) -> None:
    for name, value in (("rank", rank), ("world_size", world_size), ("start_sample", start_sample)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise errors.ConfigError(f"{name} must be an integer, got {value!r}", field=name,
                                     value=value)
    if world_size < 1:
        raise errors.ConfigError(f"world_size must be >= 1, got {world_size}", field="world_size",
                                 value=world_size)
    if not 0 <= rank < world_size:
        raise errors.ConfigError(f"rank must be in [0, world_size) = [0, {world_size}), got {rank}",
                                 field="rank", value=rank)
    if not 0 <= start_sample <= num_rows:
        raise errors.ConfigError(
            f"start_sample must be in [0, {num_rows}] (the dataset has {num_rows} rows), got "
            f"{start_sample}", field="start_sample", value=start_sample)


def windows(counts: Sequence[int], seed: int | None, epoch: int,
            window_blocks: int = DEFAULT_WINDOW_BLOCKS) -> Iterator[Window]:
    """The epoch's windows in global order (computed lazily, one permutation at a time)."""
    nonempty = [i for i, c in enumerate(counts) if c]
    if seed is None:
        groups = [[i] for i in nonempty]
    else:
        rng = np.random.default_rng([seed, ORDER_STREAM, epoch])
        shuffled = [nonempty[i] for i in rng.permutation(len(nonempty))]
        groups = [shuffled[i:i + window_blocks] for i in range(0, len(shuffled), window_blocks)]
    start = 0
    for w, group in enumerate(groups):
        offsets = np.concatenate([[0], np.cumsum([counts[b] for b in group])]).astype(np.int64)
        perm = None
        if seed is not None:
            perm = np.random.default_rng([seed, ORDER_STREAM, epoch, w]).permutation(int(offsets[-1]))
        window = Window(start, tuple(group), offsets, perm)
        yield window
        start += window.rows


def rank_positions(window: Window, rank: int, world_size: int, start_sample: int) -> np.ndarray:
    """Window-local positions that rank ``rank`` reads, in order."""
    lo = max(window.start, start_sample)
    first = lo + (start_sample + rank - lo) % world_size
    return np.arange(first, window.start + window.rows, world_size, dtype=np.int64) - window.start


def rows_for_rank(num_rows: int, rank: int, world_size: int, start_sample: int) -> int:
    """How many rows rank ``rank`` reads from ``start_sample`` to the end of the epoch."""
    remaining = num_rows - start_sample
    return max(0, (remaining - rank + world_size - 1) // world_size)
