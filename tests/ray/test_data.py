"""The data plane on a real local Ray: datasets, map_batches, shuffle, streaming shards, faults."""

from __future__ import annotations

import os
import pickle
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ainative as ai
from ainative import errors
from ainative.data import shard as shard_mod
from ainative.data import shuffle as shuffle_mod


def _ids(ds_or_table) -> np.ndarray:
    table = ds_or_table if isinstance(ds_or_table, pa.Table) else ds_or_table.to_arrow()
    return table.column("id").to_numpy()


def test_from_arrow_counts_schema_and_roundtrip(ray_local):
    tables = [pa.table({"id": np.arange(i * 10, i * 10 + 10), "x": np.ones(10)}) for i in range(3)]
    batch = pa.RecordBatch.from_pydict({"id": np.arange(30, 35), "x": np.zeros(5)})
    ds = ai.data.from_arrow([*tables, batch])
    assert ds.num_blocks() == 4 and ds.count() == 35
    assert ds.schema().names == ["id", "x"]
    assert _ids(ds).tolist() == list(range(35))
    assert [b.num_rows for b in ds.iter_batches(batch_size=8)] == [8, 8, 8, 8, 3]
    numpy_batch = next(ds.iter_batches(batch_size=4, batch_format="numpy"))
    assert numpy_batch["id"].tolist() == [0, 1, 2, 3]


def test_from_arrow_schema_mismatch_is_typed(ray_local):
    a = pa.table({"id": [1, 2], "label": ["a", "b"]})
    b = pa.table({"id": [3], "label": [1]})
    with pytest.raises(errors.SchemaMismatchError, match="'label'") as info:
        ai.data.from_arrow([a, b])
    assert info.value.column == "label"
    with pytest.raises(errors.DataError, match="item 1"):
        ai.data.from_arrow([a, {"id": [1]}])


def test_read_parquet_local_file_uri_and_bad_paths(ray_local, tmp_path):
    for i in range(3):
        pq.write_table(pa.table({"id": np.arange(i * 100, i * 100 + 100)}), tmp_path / f"part-{i}.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    ds = ai.data.read_parquet(str(tmp_path))
    assert ds.num_blocks() == 3 and ds.count() == 300
    assert sorted(_ids(ds).tolist()) == list(range(300))
    one = ai.data.read_parquet(f"file://{tmp_path}/part-1.parquet")
    assert _ids(one).tolist() == list(range(100, 200))
    with pytest.raises(errors.DataError, match="does not exist"):
        ai.data.read_parquet(str(tmp_path / "nope"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.parquet").write_text("not parquet")
    with pytest.raises(errors.DataError, match="not a readable Parquet"):
        ai.data.read_parquet(str(tmp_path / "bad"))


def test_range_and_map_batches(ray_local):
    ds = ai.data.range(1000, payload_bytes=16, num_blocks=4)
    assert ds.num_blocks() == 4 and ds.count() == 1000
    assert ds.schema().names == ["id", "payload"]
    doubled = ds.map_batches(lambda t: pa.table({"id": t.column("id"),
                                                 "twice": pa.compute.multiply(t.column("id"), 2)}),
                             batch_size=100, concurrency=2)
    out = doubled.to_arrow()
    assert out.column("twice").to_pylist() == [2 * i for i in range(1000)]
    as_numpy = ds.map_batches(lambda b: {"id": b["id"] + 1}, batch_format="numpy")
    assert _ids(as_numpy).tolist() == list(range(1, 1001))


def _explode_on_block_2(table: pa.Table) -> pa.Table:
    if table.column("id")[0].as_py() >= 500:
        raise ValueError("bad row in this block")
    return table


def test_map_batches_error_carries_block_index_and_traceback(ray_local):
    ds = ai.data.range(1000, num_blocks=4)
    with pytest.raises(errors.MapBatchesError) as info:
        ds.map_batches(_explode_on_block_2)
    assert info.value.block_index == 2
    assert "bad row in this block" in str(info.value)
    assert "_explode_on_block_2" in info.value.remote_traceback
    with pytest.raises(errors.ConfigError, match="concurrency"):
        ds.map_batches(_explode_on_block_2, concurrency=0)


def test_shuffle_is_a_random_permutation(ray_local):
    n = 20_000
    ds = ai.data.range(n, payload_bytes=8, num_blocks=5)
    out = ds.shuffle(seed=3, num_partitions=4)
    ids = _ids(out)
    assert out.num_blocks() == 4 and out.count() == n
    assert np.array_equal(np.sort(ids), np.arange(n))  # no lost or duplicated row
    # rank correlation with the input order ~ 0 (sd 1/sqrt(n) = 0.007)
    assert abs(np.corrcoef(ids, np.arange(n))[0, 1]) < 0.05
    # mean |displacement| of a uniform permutation is n/3
    assert abs(np.abs(ids - np.arange(n)).mean() / n - 1 / 3) < 0.02
    # no long runs of consecutive input rows survive
    assert np.mean(np.diff(ids) == 1) < 0.01
    # payload travelled with its id
    table = out.to_arrow()
    ref = ds.to_arrow()
    some = np.random.default_rng(0).integers(0, n, 50)
    for i in some:
        assert table.column("payload")[int(i)] == ref.column("payload")[int(ids[i])]


def test_shuffle_same_seed_same_order_and_budget_independent(ray_local):
    ds = ai.data.range(6000, payload_bytes=64, num_blocks=6)
    a = _ids(ds.shuffle(seed=11, num_partitions=3))
    b = _ids(ds.shuffle(seed=11, num_partitions=3))
    c = _ids(ds.shuffle(seed=12, num_partitions=3))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    # a budget of ~1.5 blocks forces several merge rounds, and the strategies build identical
    # pieces: same output every way
    block_bytes = ds.block_metadata()[0][1]
    rounds = ds.shuffle(seed=11, num_partitions=3, memory_budget_bytes=3 * block_bytes)
    assert _ids(rounds).tolist() == a.tolist()
    for strategy in ("map_reduce", "gather"):
        assert _ids(ds.shuffle(seed=11, num_partitions=3, strategy=strategy)).tolist() == a.tolist()
    with pytest.raises(errors.ConfigError, match="strategy"):
        ds.shuffle(strategy="sort")


def test_empty_and_bad_shuffle(ray_local):
    empty = ai.data.range(0, payload_bytes=8)
    assert empty.count() == 0 and empty.num_blocks() == 0
    out = empty.shuffle(seed=1)
    assert out.count() == 0 and out.to_arrow().num_rows == 0
    assert out.schema().names == ["id", "payload"]
    assert ai.data.from_arrow([]).shuffle().count() == 0
    with pytest.raises(errors.ConfigError, match="num_partitions"):
        ai.data.range(10).shuffle(num_partitions=0)


@pytest.mark.parametrize("strategy", ["map_reduce", "gather"])
@pytest.mark.parametrize("stage,index", [("map", 1), ("reduce", 2)])
def test_killed_task_loses_no_row(ray_local, stage, index, strategy):
    seed = 987_000 + index + (10 if strategy == "gather" else 0)
    marker = os.path.join(tempfile.gettempdir(), f"ainative-fault-{stage}-{seed}-{index}")
    ds = ai.data.range(8000, payload_bytes=32, num_blocks=4)
    expected = _ids(ds.shuffle(seed=seed, num_partitions=4, strategy=strategy))
    with open(marker, "w"):
        pass
    try:
        got = _ids(ds.shuffle(seed=seed, num_partitions=4, strategy=strategy))
        assert not os.path.exists(marker), "the fault was not injected"
    finally:
        if os.path.exists(marker):
            os.remove(marker)
    assert got.tolist() == expected.tolist()


def test_iter_shard_world_sizes_share_one_global_order(ray_local):
    ds = ai.data.range(5003, num_blocks=5).shuffle(seed=1, num_partitions=3)

    def global_order(world: int, epoch: int, start: int = 0) -> list[int]:
        per_rank = [np.concatenate([_ids(b) for b in ds.iter_shard(
            r, world, epoch=epoch, batch_size=256, seed=9, start_sample=start)]) for r in range(world)]
        out = np.empty(sum(len(p) for p in per_rank), dtype=np.int64)
        for r, part in enumerate(per_rank):
            out[r::world] = part
        return out.tolist()

    one = global_order(1, 0)
    assert sorted(one) == sorted(_ids(ds).tolist())
    assert global_order(2, 0) == one and global_order(4, 0) == one
    assert global_order(1, 1) != one
    assert global_order(4, 0, start=1001) == one[1001:]
    with pytest.raises(errors.ConfigError, match="rank must be in"):
        ds.iter_shard(2, 2)
    with pytest.raises(errors.ConfigError, match="start_sample"):
        ds.iter_shard(0, 2, start_sample=10_000)


def test_dataset_shard_resumes_after_world_size_change(ray_local):
    ds = ai.data.range(3000, num_blocks=3)
    full = []
    for b in shard_mod.DatasetShard(ds, rank=0, world_size=1).iter_batches(batch_size=100, epoch=2):
        full.extend(_ids(b).tolist())
    # 2 ranks read 4 batches of 100 in lockstep, then "crash"; rank 0's state is saved
    shards = [shard_mod.DatasetShard(ds, rank=r, world_size=2) for r in range(2)]
    iters = [s.iter_batches(batch_size=100, epoch=2) for s in shards]
    seen = {r: [] for r in range(2)}
    for _ in range(4):
        for r in range(2):
            seen[r].extend(_ids(next(iters[r])).tolist())
    state = shards[0].state_dict()
    assert state["start_sample"] == 800 and state["epoch"] == 2 and state == shards[1].state_dict()
    state = pickle.loads(pickle.dumps(state))  # JSON-able small dict
    # resume with 3 ranks: together they read exactly the rest of the epoch, in order
    resumed = [shard_mod.DatasetShard(ds, rank=r, world_size=3, state=state) for r in range(3)]
    rest = [np.concatenate([_ids(b) for b in s.iter_batches(batch_size=64)]) for s in resumed]
    merged = np.empty(sum(len(p) for p in rest), dtype=np.int64)
    for r, part in enumerate(rest):
        merged[r::3] = part
    before = np.empty(800, dtype=np.int64)
    before[0::2], before[1::2] = seen[0], seen[1]
    assert before.tolist() + merged.tolist() == full
    assert resumed[0].state_dict()["epoch"] == 3 and resumed[0].state_dict()["start_sample"] == 0
    with pytest.raises(errors.ConfigError, match="3000"):
        shard_mod.DatasetShard(ai.data.range(10), rank=0, world_size=1, state=state)


def _read_shard(ds, rank: int, world: int) -> list[int]:
    return [int(i) for b in ds.iter_shard(rank, world, batch_size=500, seed=0)
            for i in b.column("id").to_numpy()]


def test_dataset_pickles_cheaply_and_reads_in_tasks(ray_local):
    import ray

    ds = ai.data.range(20_000, payload_bytes=256, num_blocks=4).shuffle(seed=5)
    assert len(pickle.dumps(ds)) < 20_000  # references, not the ~5 MB of rows
    remote = ray.remote(_read_shard)
    parts = ray.get([remote.remote(ds, r, 2) for r in range(2)])
    assert sorted(parts[0] + parts[1]) == list(range(20_000))


def test_shuffle_output_streams_before_the_shuffle_finishes(ray_local):
    import ray

    ds = ai.data.range(40_000, payload_bytes=64, num_blocks=8)
    ds.materialize()
    config = shuffle_mod.ShuffleConfig(seed=2, num_partitions=32, max_concurrency=1)
    out = shuffle_mod.shuffle(ds, config)
    ray.get(out.block_ref(0))
    # one task in flight: partition 0 is readable while later reducers are not even submitted
    assert len(out._source._refs) < 32
    assert out.count() == 40_000
