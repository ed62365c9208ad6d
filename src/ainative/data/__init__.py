"""The data plane: Arrow datasets in the Ray object store, a pipelined global shuffle, and
deterministic, resumable streaming of each rank's part of an epoch into training.

::

    ds = ai.data.range(1_000_000, payload_bytes=1024)       # or from_arrow / read_parquet
    out = ds.shuffle(seed=0)                                # Dataset, streamed as it is reduced
    for batch in out.iter_shard(rank, world_size, epoch=0, batch_size=1024):
        ...
"""

from __future__ import annotations

from ainative.data.dataset import Dataset, from_arrow, range
from ainative.data.read import read_parquet
from ainative.data.shard import DatasetShard
from ainative.data.shuffle import ShuffleConfig

__all__ = ["Dataset", "DatasetShard", "ShuffleConfig", "from_arrow", "range", "read_parquet"]
