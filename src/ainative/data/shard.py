"""Deterministic, resumable streaming of one rank's part of an epoch (see ``order.py``).

``iter_shard`` walks the epoch's windows; per window it maps the rank's positions to (block, row),
takes those rows from each block (zero-copy views of the object store on the same node) and puts
them back in global order, ``CHUNK_ROWS`` at a time, so a rank never holds more than a chunk of
copied rows besides the window's two block views.

``DatasetShard`` is what a training worker gets from ``ai.train.get_dataset_shard(name)``: it
remembers how far this rank has read, and ``state_dict()`` returns the global ``start_sample``
(the prefix of the epoch read by all ranks together, assuming ranks step in lockstep as data
parallel training does). Give that dict back as ``state=`` after a restart, with the same or a
different world size, and reading continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from ainative import errors
from ainative.data import _batches, _runtime, order
from ainative.data.dataset import Dataset

CHUNK_ROWS = 65536
"""Rows gathered per take: bounds the copied memory of a reader independent of block size."""

STATE_VERSION = 1


def _gather(tables: list[pa.Table], window: order.Window, local: np.ndarray) -> pa.Table:
    rows = local if window.perm is None else window.perm[local]
    which = np.searchsorted(window.offsets, rows, side="right") - 1
    if len(tables) == 1:
        return tables[0].take(pa.array(rows))
    grouped = np.argsort(which, kind="stable")
    pieces = []
    for b, table in enumerate(tables):
        sel = rows[grouped][which[grouped] == b] - window.offsets[b]
        if len(sel):
            pieces.append(table.take(pa.array(sel)))
    merged = pa.concat_tables(pieces).combine_chunks()
    inverse = np.empty_like(grouped)
    inverse[grouped] = np.arange(len(grouped))
    return merged.take(pa.array(inverse))


def _stream(ds: Dataset, rank: int, world_size: int, epoch: int, seed: int | None,
            start_sample: int) -> Iterator[pa.Table]:
    import ray

    counts = [rows for rows, _ in ds.block_metadata()]
    for window in order.windows(counts, seed, epoch):
        if window.start + window.rows <= start_sample:
            continue
        local = order.rank_positions(window, rank, world_size, start_sample)
        if not len(local):
            continue
        try:
            tables = [ray.get(ds.block_ref(b)) for b in window.blocks]
        except Exception as exc:
            raise _runtime.unwrap(exc) from None
        for lo in range(0, len(local), CHUNK_ROWS):
            yield _gather(tables, window, local[lo:lo + CHUNK_ROWS])


def iter_shard(ds: Dataset, rank: int, world_size: int, *, epoch: int = 0, batch_size: int = 1024,
               seed: int | None = 0, start_sample: int = 0,
               batch_format: str = "arrow") -> Iterator[Any]:
    """Rank ``rank``'s batches of epoch ``epoch``'s global order, from ``start_sample`` on.

    Bad arguments raise ``ConfigError`` here, before anything is read.
    """
    _batches.check_batch_size(batch_size)
    _batches.check_format(batch_format)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise errors.ConfigError(f"seed must be None or an integer >= 0, got {seed!r}",
                                 field="seed", value=seed)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise errors.ConfigError(f"epoch must be an integer >= 0, got {epoch!r}", field="epoch",
                                 value=epoch)
    order.validate_shard(rank, world_size, start_sample, ds.count())
    return _formatted(_stream(ds, rank, world_size, epoch, seed, start_sample), batch_size,
                      batch_format)


def _formatted(tables: Iterator[pa.Table], batch_size: int, batch_format: str) -> Iterator[Any]:
    for table in _batches.rebatch(tables, batch_size):
        yield _batches.to_format(table, batch_format)


class DatasetShard:
    """One rank's resumable view of a Dataset inside a training worker."""

    def __init__(self, dataset: Dataset, *, rank: int, world_size: int,
                 state: dict[str, Any] | None = None) -> None:
        order.validate_shard(rank, world_size, 0, 0)
        self.dataset, self.rank, self.world_size = dataset, rank, world_size
        self._num_rows = dataset.count()
        self._epoch, self._start = 0, 0
        self._seed: int | None = 0
        if state is not None:
            self._load(state)

    def _load(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise errors.ConfigError(f"state must be a dict from state_dict(), got "
                                     f"{type(state).__name__}", field="state")
        try:
            epoch, seed, start = int(state["epoch"]), state["seed"], int(state["start_sample"])
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.ConfigError(f"state is not a DatasetShard.state_dict(): {exc!r} in "
                                     f"{state!r}", field="state") from None
        if state.get("num_rows", self._num_rows) != self._num_rows:
            raise errors.ConfigError(
                f"state was saved for a dataset of {state['num_rows']} rows but this dataset has "
                f"{self._num_rows}; resuming would skip or repeat rows", field="state")
        order.validate_shard(self.rank, self.world_size, start, self._num_rows)
        self._epoch, self._seed, self._start = epoch, seed, start

    def state_dict(self) -> dict[str, Any]:
        """JSON-able position: epoch, seed, the global ``start_sample`` and the dataset size."""
        return {"version": STATE_VERSION, "epoch": self._epoch, "seed": self._seed,
                "start_sample": self._start, "num_rows": self._num_rows,
                "world_size": self.world_size}

    def iter_batches(self, batch_size: int = 1024, epoch: int | None = None,
                     seed: int | None = None, *, shuffle: bool = True,
                     batch_format: str = "arrow") -> Iterator[Any]:
        """This rank's batches of ``epoch`` (default: the epoch the state points at, then the
        next one on each call). Resumes from the saved position when ``epoch`` is that epoch."""
        epoch = self._epoch if epoch is None else epoch
        seed = self._seed if seed is None else seed
        if not shuffle:
            seed = None
        start = self._start if (epoch == self._epoch and seed == self._seed) else 0
        batches = iter_shard(self.dataset, self.rank, self.world_size, epoch=epoch,
                             batch_size=batch_size, seed=seed, start_sample=start,
                             batch_format="arrow")
        return self._track(batches, epoch, seed, start, batch_format)

    def _track(self, batches: Iterator[pa.Table], epoch: int, seed: int | None, start: int,
               batch_format: str) -> Iterator[Any]:
        self._epoch, self._seed, self._start = epoch, seed, start
        mine = 0
        for batch in batches:
            mine += batch.num_rows
            self._start = min(self._num_rows, start + mine * self.world_size)
            yield _batches.to_format(batch, batch_format)
        self._epoch, self._start = epoch + 1, 0
