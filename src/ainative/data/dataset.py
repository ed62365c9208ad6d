"""``Dataset``: Arrow blocks in the Ray object store, and the ways to make and read one.

A Dataset is a list of block references (``ObjectRef`` of a single-chunk ``pyarrow.Table``) plus
per-block metadata (rows, bytes) and one schema. It holds references, never data, so pickling it
to a Ray actor is cheap, and readers on the same node map blocks zero-copy from shared memory.
A shuffled Dataset may still be in the making: its blocks appear one by one and readers stream
them in order as they are produced (see ``shuffle.py``).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import pyarrow as pa

from ainative import errors
from ainative.data import _batches, _blocks, _runtime

RANGE_BLOCK_BYTES = 128 * 2**20
"""Target block size for ``range``: big enough that per-task overhead is negligible, small enough
that a few blocks per core keep every core busy."""


class BlockSource(Protocol):
    """Where a Dataset's blocks come from: a fixed list, or a shuffle still running."""

    def num_blocks(self) -> int: ...
    def ref(self, index: int) -> Any: ...
    def metadata(self) -> list[tuple[int, int]]: ...
    def raw_metadata(self) -> list[Any]: ...


class StaticBlocks:
    """Blocks that exist (or are being computed by already-submitted tasks)."""

    def __init__(self, refs: Sequence[Any], meta: Sequence[Any]) -> None:
        self.refs = list(refs)
        self._meta: list[Any] = list(meta)  # (rows, bytes) or an ObjectRef of it

    def num_blocks(self) -> int:
        return len(self.refs)

    def ref(self, index: int) -> Any:
        return self.refs[index]

    def raw_metadata(self) -> list[Any]:
        """(rows, bytes) per block, or the ObjectRef that will hold it (nothing is waited on)."""
        return list(self._meta)

    def metadata(self) -> list[tuple[int, int]]:
        import ray

        pending = [i for i, m in enumerate(self._meta) if not isinstance(m, tuple)]
        if pending:
            try:
                values = ray.get([self._meta[i] for i in pending])
            except Exception as exc:
                raise _runtime.unwrap(exc) from None
            for i, value in zip(pending, values):
                self._meta[i] = tuple(value)
        return list(self._meta)


class Dataset:
    """Arrow blocks in the Ray object store. Build one with ``from_arrow``, ``read_parquet`` or
    ``range``; transform with ``map_batches`` and ``shuffle``; read with ``iter_batches``,
    ``iter_shard`` or ``to_arrow``."""

    def __init__(self, source: BlockSource, schema: pa.Schema | None) -> None:
        self._source = source
        self._schema = schema

    def __reduce__(self) -> tuple[Any, ...]:
        # Ship references only; a running shuffle is waited on until every block has been
        # submitted (not computed), so a worker can start reading the first blocks at once.
        n = self.num_blocks()
        refs = [self._source.ref(i) for i in builtins.range(n)]
        return (Dataset, (StaticBlocks(refs, self._source.raw_metadata()), self._schema))

    def __repr__(self) -> str:
        return f"Dataset(num_blocks={self.num_blocks()}, schema={self._schema})"

    def num_blocks(self) -> int:
        return self._source.num_blocks()

    def schema(self) -> pa.Schema | None:
        """The blocks' common schema (None for a dataset made from no tables at all)."""
        return self._schema

    def block_metadata(self) -> list[tuple[int, int]]:
        """(rows, bytes) per block; waits for blocks still being computed."""
        return self._source.metadata()

    def count(self) -> int:
        return sum(rows for rows, _ in self.block_metadata())

    def size_bytes(self) -> int:
        return sum(size for _, size in self.block_metadata())

    def block_ref(self, index: int) -> Any:
        """The ObjectRef of block ``index`` (waits until the task that makes it was submitted)."""
        return self._source.ref(index)

    def iter_tables(self, *, prefetch: int = 2) -> Iterator[pa.Table]:
        """Blocks in order, fetched ``prefetch`` ahead; on one node each is a zero-copy view."""
        import ray

        n = self.num_blocks()
        for i in builtins.range(n):
            for j in builtins.range(i + 1, min(n, i + 1 + prefetch)):
                ray.wait([self._source.ref(j)], timeout=0, fetch_local=True)
            try:
                table = ray.get(self._source.ref(i))
            except Exception as exc:
                raise _runtime.unwrap(exc, f"computing block {i}") from None
            yield table

    def iter_batches(self, batch_size: int = 1024, *, batch_format: str = "arrow") -> Iterator[Any]:
        """Batches of ``batch_size`` rows in dataset order (the last may be shorter)."""
        _batches.check_batch_size(batch_size)
        _batches.check_format(batch_format)
        for table in _batches.rebatch(self.iter_tables(), batch_size):
            yield _batches.to_format(table, batch_format)

    def to_arrow(self) -> pa.Table:
        """The whole dataset as one Table in the driver (for small data and tests)."""
        tables = [t for t in self.iter_tables() if t.num_rows]
        if not tables:
            return (self._schema or pa.schema([])).empty_table()
        return pa.concat_tables(tables)

    def materialize(self) -> Dataset:
        """Wait until every block is computed; returns ``self``. A failed block raises here."""
        import ray

        refs = [self.block_ref(i) for i in builtins.range(self.num_blocks())]
        if refs:
            ray.wait(refs, num_returns=len(refs), fetch_local=False)
        self.block_metadata()
        return self

    def map_batches(self, fn: Callable[[Any], Any], *, batch_size: int | None = None,
                    batch_format: str = "arrow", concurrency: int | None = None,
                    num_cpus: float = 1.0) -> Dataset:
        """Apply ``fn`` to every batch in Ray tasks, at most ``concurrency`` at a time."""
        from ainative.data import transform

        return transform.map_batches(self, fn, batch_size=batch_size, batch_format=batch_format,
                                     concurrency=concurrency, num_cpus=num_cpus)

    def shuffle(self, seed: int = 0, num_partitions: int | None = None, *,
                memory_budget_bytes: int | None = None, strategy: str = "auto") -> Dataset:
        """A global random shuffle into ``num_partitions`` blocks (see ``ainative.data.shuffle``)."""
        from ainative.data import shuffle

        config = shuffle.ShuffleConfig(seed=seed, num_partitions=num_partitions,
                                       memory_budget_bytes=memory_budget_bytes, strategy=strategy)
        return shuffle.shuffle(self, config)

    def iter_shard(self, rank: int, world_size: int, *, epoch: int = 0, batch_size: int = 1024,
                   seed: int | None = 0, start_sample: int = 0,
                   batch_format: str = "arrow") -> Iterator[Any]:
        """Rank ``rank``'s batches of the epoch's global order (see ``ainative.data.shard``)."""
        from ainative.data import shard

        return shard.iter_shard(self, rank, world_size, epoch=epoch, batch_size=batch_size,
                                seed=seed, start_sample=start_sample, batch_format=batch_format)


def from_arrow(tables: pa.Table | pa.RecordBatch | Sequence[pa.Table | pa.RecordBatch]) -> Dataset:
    """A Dataset with one block per table (each put into the object store once)."""
    import ray

    if isinstance(tables, (pa.Table, pa.RecordBatch)):
        tables = [tables]
    if not isinstance(tables, Sequence):
        raise errors.DataError(f"from_arrow() takes a list of pyarrow Tables, got {type(tables).__name__}")
    blocks = [_blocks.compact(_blocks.as_table(t, i)) for i, t in enumerate(tables)]
    schema = _blocks.check_schemas([b.schema for b in blocks], "table")
    _runtime.ensure_ray()
    refs = [ray.put(b) for b in blocks]
    return Dataset(StaticBlocks(refs, [(b.num_rows, b.nbytes) for b in blocks]), schema)


def _range_task(start: int, stop: int, payload_bytes: int) -> pa.Table:
    return _blocks.range_block(start, stop, payload_bytes)


def range(n: int, *, payload_bytes: int = 0, num_blocks: int | None = None) -> Dataset:  # noqa: A001
    """``n`` rows: an int64 ``id`` 0..n-1 and, if ``payload_bytes`` > 0, a binary ``payload``."""
    from ainative.config import require_int

    require_int("range", "n", n, minimum=0, maximum=2**40)
    require_int("range", "payload_bytes", payload_bytes, minimum=0, maximum=2**30)
    row_bytes = 8 + (payload_bytes + 8 if payload_bytes else 0)
    if num_blocks is None:
        num_blocks = max(1, math.ceil(n * row_bytes / RANGE_BLOCK_BYTES)) if n else 0
    else:
        require_int("range", "num_blocks", num_blocks, minimum=1 if n else 0)
    num_blocks = min(num_blocks, n)
    schema = _blocks.range_block(0, 0, payload_bytes).schema
    _runtime.ensure_ray()
    bounds = [n * i // num_blocks for i in builtins.range(num_blocks + 1)] if num_blocks else [0]
    task = _runtime.remote(_range_task)
    refs, meta = [], []
    for lo, hi in zip(bounds, bounds[1:]):
        refs.append(task.remote(lo, hi, payload_bytes))
        meta.append((hi - lo, (hi - lo) * row_bytes))
    return Dataset(StaticBlocks(refs, meta), schema)

