"""A shuffle whose map tasks ran on a node that is then partitioned away, mid-shuffle
(worker nodes in network namespaces: ``tests/faults/netns.py``).

The head has no CPUs and the other node's CPUs are held by an actor, so every data task (the
input blocks, all the maps, the first reducers) runs on the victim node, and their outputs live
only in its object store. The victim is partitioned while the reducers are still being submitted
(one at a time); then the other node's CPUs are freed. Asserted: the shuffle completes, every row
is there exactly once, and the output is identical, row for row, to a fault-free shuffle of the
same input with the same seed (lost blocks were rebuilt from lineage, re-executed tasks gave the
same pieces)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import ainative as ai
from ainative.data import shuffle as shuffle_mod
from tests.faults import netns

pytestmark = [pytest.mark.faults, pytest.mark.slow]

ROWS, BLOCKS, PARTITIONS, PAYLOAD = 60_000, 8, 16, 256


def _shuffle() -> ai.data.Dataset:
    ds = ai.data.range(ROWS, payload_bytes=PAYLOAD, num_blocks=BLOCKS)
    return shuffle_mod.shuffle(ds, shuffle_mod.ShuffleConfig(
        seed=7, num_partitions=PARTITIONS, max_concurrency=1, strategy="map_reduce"))


@pytest.mark.parametrize("netns_cluster", [{"head_cpus": 0}], indirect=True)
@pytest.mark.timeout(160)
def test_shuffle_with_maps_on_a_partitioned_node_loses_and_duplicates_no_row(netns_cluster):
    import ray

    cluster = netns_cluster
    victim = cluster.add_node(cpus=2)
    cluster.add_node(cpus=2, resources={"survivor": 1})

    @ray.remote(num_cpus=2, resources={"survivor": 1})
    class Hold:
        def node(self) -> str:
            return str(ray.get_runtime_context().get_node_id())

    blocker = Hold.remote()   # the survivor's CPUs: until the partition, data tasks run on the victim
    try:
        ray.get(blocker.node.remote(), timeout=60)
        out = _shuffle()
        run = out._source
        netns.wait_until("a few reducers submitted", lambda: len(run._refs) >= 3, timeout_s=90,
                         interval_s=0.01)
        submitted = len(run._refs)
        t0 = time.monotonic()
        cluster.partition(victim)
        detect_s = cluster.wait_dead(victim.node_id, timeout_s=30)
        ray.kill(blocker)
        table = out.to_arrow()
        took = time.monotonic() - t0
    finally:
        ray.kill(blocker)
    print(f"\n[faults] shuffle: victim partitioned with {submitted}/{PARTITIONS} reducers "
          f"submitted; declared dead after {detect_s:.2f} s; shuffle complete {took:.2f} s after "
          f"the partition")
    ids = table.column("id").to_numpy()
    assert table.num_rows == ROWS and len(np.unique(ids)) == ROWS          # none lost, none twice
    assert np.array_equal(np.sort(ids), np.arange(ROWS))
    reference = _shuffle().to_arrow()      # fault-free, on the survivor alone
    assert reference.equals(table)         # same rows, same payloads, same order
