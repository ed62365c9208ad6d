"""Re-batching a stream of Arrow tables into fixed-size batches, and batch formats. No Ray."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from ainative import errors

BATCH_FORMATS = ("arrow", "numpy")


def check_format(batch_format: str) -> None:
    if batch_format not in BATCH_FORMATS:
        raise errors.ConfigError(
            f"batch_format must be one of {', '.join(map(repr, BATCH_FORMATS))}; got {batch_format!r}",
            field="batch_format", value=batch_format)


def check_batch_size(batch_size: Any, *, allow_none: bool = False) -> None:
    if batch_size is None and allow_none:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise errors.ConfigError(f"batch_size must be an integer > 0, got {batch_size!r}",
                                 field="batch_size", value=batch_size)


def rebatch(tables: Iterable[pa.Table], batch_size: int) -> Iterator[pa.Table]:
    """Tables of exactly ``batch_size`` rows (the last one may be shorter), zero-copy where a
    batch lies inside one input table; a batch spanning inputs is combined into one chunk."""
    held: list[pa.Table] = []
    held_rows = 0
    for table in tables:
        offset = 0
        while offset < table.num_rows:
            take = min(batch_size - held_rows, table.num_rows - offset)
            piece = table.slice(offset, take)
            offset += take
            if not held and take == batch_size:
                yield piece
                continue
            held.append(piece)
            held_rows += take
            if held_rows == batch_size:
                yield pa.concat_tables(held).combine_chunks()
                held, held_rows = [], 0
    if held:
        yield pa.concat_tables(held).combine_chunks()


def to_format(table: pa.Table, batch_format: str) -> Any:
    if batch_format == "arrow":
        return table
    return {name: _column_numpy(table.column(name)) for name in table.column_names}


def _column_numpy(column: pa.ChunkedArray) -> np.ndarray:
    try:
        return column.to_numpy()
    except (pa.ArrowInvalid, NotImplementedError):  # e.g. binary columns: object arrays
        return np.asarray(column.to_pylist(), dtype=object)


def from_user(value: Any, where: str) -> pa.Table:
    """A Table from what a map_batches function returned (Table, RecordBatch, dict, DataFrame)."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if isinstance(value, dict):
        return pa.table({k: np.asarray(v) if not isinstance(v, (pa.Array, pa.ChunkedArray)) else v
                         for k, v in value.items()})
    if type(value).__name__ == "DataFrame" and hasattr(value, "to_dict"):
        return pa.Table.from_pandas(value, preserve_index=False)
    raise errors.DataError(
        f"{where}: a map_batches function must return a pyarrow.Table, RecordBatch, dict of "
        f"arrays or pandas.DataFrame; it returned {type(value).__name__}")
