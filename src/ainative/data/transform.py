"""``map_batches``: a user function over every batch, in Ray tasks with bounded concurrency.

Each task reads one block (zero-copy), calls the function per batch, and returns one block plus
its (rows, bytes). A function that raises becomes a ``MapBatchesError`` carrying the block index
and the remote traceback; tasks still running are cancelled before the error is raised.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from ainative import errors
from ainative.data import _batches, _blocks, _runtime
from ainative.data.dataset import Dataset, StaticBlocks


def _map_task(table: pa.Table, fn: Callable[[Any], Any], batch_size: int | None,
              batch_format: str, index: int) -> tuple[pa.Table, tuple[int, int], pa.Schema]:
    size = batch_size or max(1, table.num_rows)
    outputs: list[pa.Table] = []
    for b, batch in enumerate(_batches.rebatch([table], size) if table.num_rows else []):
        try:
            result = fn(_batches.to_format(batch, batch_format))
        except Exception as exc:
            raise errors.MapBatchesError(
                f"map_batches function raised on block {index} (batch {b}): "
                f"{type(exc).__name__}: {exc}\n--- remote traceback ---\n{traceback.format_exc()}",
                block_index=index, batch_index=b, remote_traceback=traceback.format_exc()) from None
        outputs.append(_batches.from_user(result, f"block {index}"))
    if not outputs:
        out = table
    else:
        _blocks.check_schemas([o.schema for o in outputs], "output batch")
        out = _blocks.compact(pa.concat_tables(outputs))
    return out, (out.num_rows, out.nbytes), out.schema


def map_batches(ds: Dataset, fn: Callable[[Any], Any], *, batch_size: int | None,
                batch_format: str, concurrency: int | None, num_cpus: float) -> Dataset:
    import ray

    if not callable(fn):
        raise errors.ConfigError(f"map_batches(fn) needs a callable, got {type(fn).__name__}",
                                 field="fn", value=repr(fn))
    _batches.check_batch_size(batch_size, allow_none=True)
    _batches.check_format(batch_format)
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                    or concurrency <= 0):
        raise errors.ConfigError(f"map_batches(concurrency=...) must be an integer > 0, got "
                                 f"{concurrency!r}", field="concurrency", value=concurrency)
    limit = concurrency or _runtime.parallelism()
    task = _runtime.remote(_map_task, num_returns=3, num_cpus=num_cpus, max_retries=0)
    fn_ref = ray.put(fn)
    n = ds.num_blocks()
    outs: list[tuple[Any, Any, Any]] = [(None, None, None)] * n

    def submit(i: int) -> Any:
        outs[i] = task.remote(ds.block_ref(i), fn_ref, batch_size, batch_format, i)
        return outs[i][1]

    with _runtime.progress(n, "map_batches") as bar:
        _runtime.bounded(submit, n, limit, bar=bar)
    try:
        meta = ray.get([m for _, m, _ in outs])
        schemas = ray.get([s for _, _, s in outs])
    except Exception as exc:
        # No ray.cancel of the other tasks: cancelling multi-return tasks that are completing
        # trips a RAY_CHECK in Ray 2.60's task manager ("Tried to complete task that was not
        # pending") and kills the driver. They are bounded and their outputs are dropped here.
        raise _runtime.unwrap(exc) from None
    schema = _blocks.check_schemas(schemas, "output block") if schemas else ds.schema()
    return Dataset(StaticBlocks([out for out, _, _ in outs], [tuple(m) for m in meta]), schema)
