"""TrainJob with a dataset: every rank streams its shard and the ranks together read one epoch."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ainative as ai


def read_epochs_fn(config):
    shard = ai.train.get_dataset_shard("train")
    ctx = ai.train.get_context()
    for epoch in range(config["epochs"]):
        ids = [b.column("id").to_numpy() for b in shard.iter_batches(batch_size=128)]
        np.save(os.path.join(config["out"], f"epoch{epoch}-rank{ctx.rank}.npy"), np.concatenate(ids))


@pytest.fixture(autouse=True)
def _events_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "events"))


def test_trainjob_ranks_read_exactly_one_epoch_each_epoch(ray_local, tmp_path):
    rows = 5_000
    ds = ai.data.range(rows, payload_bytes=16, num_blocks=4).shuffle(seed=1)
    out = tmp_path / "ids"
    out.mkdir()
    job = ai.train.TrainJob(read_epochs_fn, workers=2, name="data-epochs",
                            config={"epochs": 2, "out": str(out)}, datasets={"train": ds},
                            checkpoint=ai.train.CheckpointConfig(path=str(tmp_path / "ckpt")))
    job.run()
    orders = []
    for epoch in range(2):
        parts = [np.load(out / f"epoch{epoch}-rank{r}.npy") for r in range(2)]
        assert abs(len(parts[0]) - len(parts[1])) <= 1
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(rows))
        merged = np.empty(rows, dtype=np.int64)
        merged[0::2], merged[1::2] = parts
        # the same order a single reader sees for that epoch (world-size independent)
        single = np.concatenate([b.column("id").to_numpy()
                                 for b in ds.iter_shard(0, 1, epoch=epoch, batch_size=1000)])
        assert merged.tolist() == single.tolist()
        orders.append(merged)
    assert orders[0].tolist() != orders[1].tolist()  # a new order per epoch
