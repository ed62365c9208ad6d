"""Pure parts of the data plane: block helpers, re-batching, the epoch order, configs. No Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ainative import errors
from ainative.data import _batches, _blocks, order
from ainative.data.shuffle import ShuffleConfig, plan_partitions, plan_rounds


def test_schema_mismatch_names_first_differing_column():
    a = pa.schema([("id", pa.int64()), ("x", pa.float32()), ("y", pa.string())])
    b = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("y", pa.string())])
    with pytest.raises(errors.SchemaMismatchError) as info:
        _blocks.check_schemas([a, a, b])
    assert info.value.column == "x" and info.value.index == 2
    assert "float" in str(info.value) and "cast" in str(info.value)
    missing = pa.schema([("id", pa.int64()), ("x", pa.float32())])
    with pytest.raises(errors.SchemaMismatchError) as info:
        _blocks.check_schemas([a, missing])
    assert info.value.column == "y" and "missing" in str(info.value)
    assert _blocks.check_schemas([]) is None


def test_range_block_has_ids_and_payload():
    t = _blocks.range_block(10, 20, 32)
    assert t.column("id").to_pylist() == list(range(10, 20))
    assert all(len(v) == 32 for v in t.column("payload").to_pylist())
    assert _blocks.range_block(0, 5, 0).column_names == ["id"]


def test_split_by_partition_is_a_deterministic_partition_of_rows():
    t = _blocks.range_block(0, 5000, 8)
    pieces = _blocks.split_by_partition(t, 7, 3, 5)
    again = _blocks.split_by_partition(t, 7, 3, 5)
    assert [p.column("id").to_pylist() for p in pieces] == [p.column("id").to_pylist() for p in again]
    ids = np.concatenate([p.column("id").to_numpy() for p in pieces])
    assert sorted(ids.tolist()) == list(range(5000))
    sizes = [p.num_rows for p in pieces]
    assert min(sizes) > 800 and max(sizes) < 1200  # uniform assignment: 1000 +- 6 sigma
    other = _blocks.split_by_partition(t, 8, 3, 5)
    assert [p.num_rows for p in other] != sizes
    # pieces are real copies, not slices that would pickle their whole parent buffer
    assert all(p.column("payload").chunks[0].offset == 0 for p in pieces if p.num_rows)


def test_merge_and_permute_is_a_permutation():
    pieces = [_blocks.range_block(0, 100, 0), _blocks.range_block(100, 150, 0)]
    out = _blocks.merge_and_permute(pieces, 1, 0, pieces[0].schema)
    assert sorted(out.column("id").to_pylist()) == list(range(150))
    assert out.column("id").to_pylist() != list(range(150))
    empty = _blocks.merge_and_permute([], 1, 0, pieces[0].schema)
    assert empty.num_rows == 0 and empty.schema == pieces[0].schema


def test_rebatch_exact_sizes_across_tables():
    tables = [_blocks.range_block(0, 7, 0), _blocks.range_block(7, 8, 0), _blocks.range_block(8, 20, 0)]
    batches = list(_batches.rebatch(tables, 5))
    assert [b.num_rows for b in batches] == [5, 5, 5, 5]
    assert np.concatenate([b.column("id").to_numpy() for b in batches]).tolist() == list(range(20))
    assert [b.num_rows for b in _batches.rebatch(tables, 6)] == [6, 6, 6, 2]


def test_batch_format_and_bad_values():
    t = _blocks.range_block(0, 3, 2)
    as_np = _batches.to_format(t, "numpy")
    assert as_np["id"].tolist() == [0, 1, 2] and len(as_np["payload"]) == 3
    with pytest.raises(errors.ConfigError, match="batch_format"):
        _batches.check_format("pandas2")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(errors.ConfigError, match="batch_size"):
            _batches.check_batch_size(bad)
    with pytest.raises(errors.DataError, match="returned int"):
        _batches.from_user(3, "block 0")


def _epoch(counts, seed, epoch, world, start=0):
    """Global order as read by ranks 0..world-1, re-interleaved by position."""
    n = sum(counts)
    ids = np.concatenate([[0], np.cumsum(counts)])
    out = np.full(n - start, -1)
    for rank in range(world):
        rows = []
        for w in order.windows(counts, seed, epoch):
            local = order.rank_positions(w, rank, world, start)
            r = local if w.perm is None else w.perm[local]
            blk = np.searchsorted(w.offsets, r, side="right") - 1
            rows.append(np.array([ids[w.blocks[b]] + r[i] - w.offsets[b] for i, b in enumerate(blk)],
                                 dtype=np.int64))
        mine = np.concatenate(rows) if rows else np.array([], dtype=np.int64)
        assert len(mine) == order.rows_for_rank(n, rank, world, start)
        out[rank::world] = mine
    return out


@pytest.mark.parametrize("seed", [None, 0, 5])
def test_global_order_is_world_size_independent_and_an_exact_epoch(seed):
    counts = [7, 0, 13, 5, 11, 1]
    one = _epoch(counts, seed, 2, 1)
    assert sorted(one.tolist()) == list(range(sum(counts)))
    for world in (2, 3, 4):
        assert _epoch(counts, seed, 2, world).tolist() == one.tolist()
    if seed is not None:
        assert _epoch(counts, seed, 3, 1).tolist() != one.tolist()
    else:
        assert one.tolist() == list(range(sum(counts)))


def test_resume_from_start_sample_with_another_world_size():
    counts = [10, 20, 30]
    full = _epoch(counts, 4, 0, 1)
    for start in (0, 1, 17, 30, 59, 60):
        for world in (1, 2, 4):
            assert _epoch(counts, 4, 0, world, start).tolist() == full[start:].tolist()


def test_validate_shard_errors():
    with pytest.raises(errors.ConfigError, match="rank must be in"):
        order.validate_shard(2, 2, 0, 10)
    with pytest.raises(errors.ConfigError, match="world_size"):
        order.validate_shard(0, 0, 0, 10)
    with pytest.raises(errors.ConfigError, match="start_sample"):
        order.validate_shard(0, 1, 11, 10)


def test_shuffle_config_and_plans():
    with pytest.raises(errors.ConfigError, match="num_partitions"):
        ShuffleConfig(num_partitions=0)
    with pytest.raises(errors.ConfigError, match="seed"):
        ShuffleConfig(seed=-1)
    with pytest.raises(errors.ConfigError, match="memory_budget_bytes"):
        ShuffleConfig(memory_budget_bytes=0)
    assert plan_partitions(2**30, 2, 2**32) == 8
    assert plan_partitions(10, 2, 2**32) == 2
    assert plan_partitions(2**30, 2, 2**28) == 32  # small budget: 32 MiB partitions
    assert plan_rounds([10, 10, 10, 10], 40) == [[0, 1], [2, 3]]
    assert plan_rounds([100, 1], 40) == [[0], [1]]
    assert plan_rounds([], 40) == []
