"""Pure Arrow helpers for blocks: schema checks, synthetic blocks, partition splits, permutations.

No Ray here, so these are unit-tested directly. A *block* is one ``pyarrow.Table`` with a single
chunk per column: ``take`` on a single chunk runs at memory speed (~10 GB/s here) while ``take``
on a many-chunk table is ~20x slower, so every producer combines chunks before it permutes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ainative import errors

# Separate seed streams for the two stages, so map and reduce randomness never coincide.
MAP_STREAM, REDUCE_STREAM, ORDER_STREAM = 0x6D6170, 0x726564, 0x6F7264


def as_table(obj: pa.Table | pa.RecordBatch, index: int) -> pa.Table:
    """A Table from a Table or RecordBatch; anything else is a DataError naming the index."""
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if isinstance(obj, pa.Table):
        return obj
    raise errors.DataError(
        f"from_arrow() takes pyarrow.Table or pyarrow.RecordBatch items; item {index} is "
        f"{type(obj).__name__}", index=index)


def check_schemas(schemas: Sequence[pa.Schema], what: str = "block") -> pa.Schema | None:
    """The common schema, or SchemaMismatchError naming the first block and column that differ."""
    if not schemas:
        return None
    first = schemas[0]
    for i, schema in enumerate(schemas[1:], start=1):
        if schema.equals(first):
            continue
        column = first_mismatch(first, schema)
        raise errors.SchemaMismatchError(
            f"{what} {i} has a different schema from {what} 0: column {column!r} is "
            f"{_describe(schema, column)} in {what} {i} but {_describe(first, column)} in {what} 0; "
            "cast the blocks to one schema (pyarrow.Table.cast) before building the dataset",
            index=i, column=column)
    return first


def first_mismatch(a: pa.Schema, b: pa.Schema) -> str:
    """Name of the first column (in ``a``'s order, then ``b``'s) whose presence or type differs."""
    for name in list(a.names) + [n for n in b.names if n not in a.names]:
        fa = a.field(name) if name in a.names else None
        fb = b.field(name) if name in b.names else None
        if fa is None or fb is None or not fa.type.equals(fb.type):
            return name
    for fa, fb in zip(a, b):  # same names and types, different order
        if fa.name != fb.name:
            return fa.name
    return a.names[0] if a.names else ""


def _describe(schema: pa.Schema, column: str) -> str:
    return str(schema.field(column).type) if column in schema.names else "missing"


def compact(table: pa.Table) -> pa.Table:
    """One chunk per column (a copy only when there is more than one chunk)."""
    if all(col.num_chunks <= 1 for col in table.columns):
        return table
    return table.combine_chunks()


def range_block(start: int, stop: int, payload_bytes: int) -> pa.Table:
    """Rows ``id`` in [start, stop) plus, when ``payload_bytes`` > 0, a binary payload per row.

    The payload is pseudo-random bytes seeded by ``start`` (incompressible, reproducible); it is a
    variable-length ``binary`` column, the common case for real data (images, token blobs).
    """
    n = stop - start
    columns: dict[str, pa.Array] = {"id": pa.array(np.arange(start, stop, dtype=np.int64))}
    if payload_bytes > 0:
        rng = np.random.default_rng(start)
        raw = rng.integers(0, 256, size=n * payload_bytes, dtype=np.uint8)
        offsets = np.arange(0, (n + 1) * payload_bytes, payload_bytes, dtype=np.int64)
        columns["payload"] = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw)])
    return pa.table(columns)


def split_by_partition(table: pa.Table, seed: int, block_index: int,
                       num_partitions: int) -> list[pa.Table]:
    """Assign every row to a partition uniformly at random and gather one table per partition.

    Within each piece the rows are in random order too. The assignment depends only on
    (seed, block_index), so a re-executed map task produces exactly the same pieces.
    """
    table = compact(table)
    # One take per piece (not one take then slices): a pickled slice carries its whole parent buffer.
    return [table.take(pa.array(idx))
            for idx in partition_indices(table.num_rows, seed, block_index, num_partitions)]


def partition_indices(num_rows: int, seed: int, block_index: int,
                      num_partitions: int) -> list[np.ndarray]:
    """Row indices of block ``block_index`` per partition, each list in random order.

    Depends only on (seed, block_index, num_rows, num_partitions): the map/reduce and the gather
    strategies of the shuffle build identical pieces from it.
    """
    rng = np.random.default_rng([seed, MAP_STREAM, block_index])
    parts = rng.integers(0, num_partitions, size=num_rows)
    order = rng.permutation(num_rows)
    # A stable sort of the permuted partition ids keeps the random order inside each partition.
    order = order[np.argsort(parts[order], kind="stable")]
    bounds = np.searchsorted(parts[order], np.arange(num_partitions + 1))
    return [order[bounds[p]:bounds[p + 1]] for p in range(num_partitions)]


def merge_and_permute(pieces: Sequence[pa.Table], seed: int, partition: int,
                      schema: pa.Schema) -> pa.Table:
    """Concatenate one partition's pieces and permute its rows (the reduce step)."""
    nonempty = [p for p in pieces if p.num_rows]
    if not nonempty:
        return schema.empty_table()
    merged = compact(pa.concat_tables(nonempty))
    rng = np.random.default_rng([seed, REDUCE_STREAM, partition])
    return merged.take(pa.array(rng.permutation(merged.num_rows)))


def concat(pieces: Sequence[pa.Table], schema: pa.Schema) -> pa.Table:
    """Concatenate pieces into one single-chunk table (a merge round of the shuffle)."""
    nonempty = [p for p in pieces if p.num_rows]
    if not nonempty:
        return schema.empty_table()
    return compact(pa.concat_tables(nonempty))
