"""A shuffle larger than a deliberately small object store completes by spilling (slow tier).

Its own module because it restarts the shared local Ray with a 300 MB object store; the data is
~1 GB (1,000,000 rows with a 1 KiB payload), so it cannot fit in memory at any point.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import ainative as ai

STORE_BYTES = 300 * 10**6
ROWS = 1_000_000  # ~1.04 GB with the id and offsets


def _spilled_bytes() -> int:
    import ray
    from ray._private.internal_api import memory_summary

    text = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    match = re.search(r"Spilled (\d+) MiB", text)
    return int(match.group(1)) * 2**20 if match else 0


@pytest.fixture(scope="module")
def small_store_ray():
    from tests.support import clusters

    cluster = clusters.local_ray(object_store_memory_bytes=STORE_BYTES)
    yield cluster
    clusters.shutdown_current()  # the next module gets the default local Ray back


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_shuffle_larger_than_object_store_spills_and_completes(small_store_ray):
    ds = ai.data.range(ROWS, payload_bytes=1024, num_blocks=32)
    assert ds.size_bytes() > 3 * STORE_BYTES
    before = _spilled_bytes()
    out = ds.shuffle(seed=1)
    seen = np.zeros(ROWS, dtype=np.int64)
    rows = 0
    for table in out.iter_tables():  # streamed block by block: never all in memory
        ids = table.column("id").to_numpy()
        np.add.at(seen, ids, 1)
        rows += len(ids)
        del table
    assert rows == ROWS and int(seen.min()) == 1 and int(seen.max()) == 1
    assert out.num_blocks() > 1
    assert _spilled_bytes() - before > STORE_BYTES  # it really went through disk
