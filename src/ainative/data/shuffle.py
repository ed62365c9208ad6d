"""The distributed global shuffle: a pipelined map / (merge) / reduce all-to-all on Ray tasks.

::

    input blocks (object store)          budget-sized rounds of maps
    ┌───────┐ map(seed, b)   pieces b->0..P-1 ┌──────────────┐
    │block 0│───────────────┬───────────────▶│ merge r, p   │  only when the input is larger than
    │block 1│───────────────┤ one random     │ (concat one  │  the memory budget: a round's pieces
    │  ...  │               │ partition per  │ round's      │  are merged per partition while the
    │block B│───────────────┘ row, one take  │ pieces)      │  next round maps; Ray spills partials
    └───────┘   per piece                    └──────┬───────┘
                                                    ▼
                            reduce(seed, p): concat pieces/partials, one random permutation
                                                    ▼
                      output block p ──▶ Dataset (streamed: block p readable as soon as it is
                                         reduced, while later partitions are still running)

Why this shape: every row crosses memory a fixed number of times (map take, store, reduce take,
store) with no Python per-row work; ``take`` runs on single-chunk tables at memory speed.
Determinism: map b's partition assignment depends on (seed, b) and reduce p's permutation on
(seed, p), and pieces are always concatenated in map order, so the output is the same for the
same seed, input blocks and ``num_partitions`` (whatever the budget and however often a task was
re-executed). Failures: tasks are retried by Ray (``max_retries``) and lost objects rebuilt from
lineage; a re-executed task yields identical pieces, so no row is lost or duplicated.
Gather strategy (one node, input within the budget): maps emit only the row indices of each
piece and reducers take the rows straight from the zero-copy input blocks (same pieces, so the
same output), which saves a pass and keeps pieces out of the object store.
Backpressure: at most ``parallelism`` tasks in flight, and at most one round of map output
(``memory_budget_bytes / 2``) waiting to be merged; beyond that Ray spills, it does not fail.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ainative import errors
from ainative.config import require_in, require_int
from ainative.data import _blocks, _runtime
from ainative.data.dataset import Dataset, StaticBlocks

TARGET_PARTITION_BYTES = 128 * 2**20
"""Default output block size: few large blocks keep per-task and per-object overhead small; 128 MiB
beat 256 MiB here (a reducer allocates ~3x its partition, and fresh pages are slow)."""

STRATEGIES = ("auto", "map_reduce", "gather")

FAULT_ENV = "AINATIVE_DATA_FAULT_DIR"
"""Fault injection for tests: a map or reduce task exits its worker process (a real crash) once
when the file ``ainative-fault-<stage>-<seed>-<index>`` exists in this directory (default: the
temp directory); it deletes the file first, so the retry runs normally. One stat per task."""


MAX_SEED = 2**63 - 1
"""Seeds are 64-bit (numpy's generators take at most this)."""
MAX_PARTITIONS = 1_000_000
"""More output blocks than this is per-row overhead, not a shuffle."""


# Spelled out rather than config.config_dataclass so that mypy sees a dataclass.
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ShuffleConfig:
    """How ``Dataset.shuffle`` runs."""

    seed: int = 0
    """Seed of the permutation: the same seed and input give the same output order."""
    num_partitions: int | None = None
    """Output blocks; default: the data size / 128 MiB, at least the task parallelism."""
    memory_budget_bytes: int | None = None
    """Object-store bytes the shuffle may hold before merging and spilling; default half the
    cluster's object store."""
    max_concurrency: int | None = None
    """Tasks in flight; default the cluster's CPUs (capped by the cores on one node)."""
    strategy: str = "auto"
    """"map_reduce": maps write pieces to the object store, reducers merge them. "gather": maps
    emit only row indices and reducers take rows straight from the (zero-copy) input blocks; one
    pass fewer and no pieces in the store, but every reducer reads every input block, so it
    suits one node and inputs within the budget. "auto" picks gather exactly then."""

    def __post_init__(self) -> None:
        require_int("ShuffleConfig", "seed", self.seed, minimum=0, maximum=MAX_SEED)
        if self.num_partitions is not None:
            require_int("ShuffleConfig", "num_partitions", self.num_partitions, minimum=1,
                        maximum=MAX_PARTITIONS)
        if self.memory_budget_bytes is not None:
            require_int("ShuffleConfig", "memory_budget_bytes", self.memory_budget_bytes,
                        minimum=1, maximum=2**50)
        if self.max_concurrency is not None:
            require_int("ShuffleConfig", "max_concurrency", self.max_concurrency, minimum=1,
                        maximum=100_000)
        require_in("ShuffleConfig", "strategy", self.strategy, STRATEGIES)


def _maybe_crash(stage: str, seed: int, index: int) -> None:
    directory = os.environ.get(FAULT_ENV) or tempfile.gettempdir()
    marker = os.path.join(directory, f"ainative-fault-{stage}-{seed}-{index}")
    try:
        os.remove(marker)
    except FileNotFoundError:
        return
    os._exit(1)


def _map_task(table: pa.Table, seed: int, index: int, num_partitions: int) -> Any:
    _maybe_crash("map", seed, index)
    pieces = _blocks.split_by_partition(table, seed, index, num_partitions)
    return pieces[0] if num_partitions == 1 else tuple(pieces)


def _index_task(num_rows: int, seed: int, index: int, num_partitions: int) -> Any:
    _maybe_crash("map", seed, index)
    pieces = _blocks.partition_indices(num_rows, seed, index, num_partitions)
    return pieces[0] if num_partitions == 1 else tuple(pieces)


def _gather_task(seed: int, partition: int, schema: pa.Schema, num_blocks: int,
                 *args: Any) -> tuple[pa.Table, tuple[int, int]]:
    _maybe_crash("reduce", seed, partition)
    blocks, indices = args[:num_blocks], args[num_blocks:]
    pieces = [_blocks.compact(b).take(pa.array(i)) for b, i in zip(blocks, indices) if len(i)]
    out = _blocks.merge_and_permute(pieces, seed, partition, schema)
    return out, (out.num_rows, out.nbytes)


def _merge_task(schema: pa.Schema, *pieces: pa.Table) -> pa.Table:
    return _blocks.concat(pieces, schema)


def _reduce_task(seed: int, partition: int, schema: pa.Schema,
                 *pieces: pa.Table) -> tuple[pa.Table, tuple[int, int]]:
    _maybe_crash("reduce", seed, partition)
    out = _blocks.merge_and_permute(pieces, seed, partition, schema)
    return out, (out.num_rows, out.nbytes)


def plan_partitions(total_bytes: int, parallelism: int, budget_bytes: int) -> int:
    """Default number of output blocks: ~128 MiB each, small enough that a reducer's input fits
    a quarter of the budget per task in flight, and at least one per task slot."""
    target = max(1, min(TARGET_PARTITION_BYTES, budget_bytes // (4 * parallelism)))
    return max(parallelism, math.ceil(total_bytes / target))


def plan_rounds(block_bytes: Sequence[int], budget_bytes: int) -> list[list[int]]:
    """Consecutive groups of map inputs whose output fits half the budget (at least one each)."""
    rounds: list[list[int]] = [[]]
    used = 0
    for i, size in enumerate(block_bytes):
        if rounds[-1] and used + size > budget_bytes // 2:
            rounds.append([])
            used = 0
        rounds[-1].append(i)
        used += size
    return rounds if rounds[0] else []


class ShuffleRun:
    """Drives one shuffle from a background thread; readers get block refs as they are submitted."""

    def __init__(self, ds: Dataset, config: ShuffleConfig, meta: list[tuple[int, int]],
                 schema: pa.Schema) -> None:
        self.ds, self.seed, self.schema = ds, config.seed, schema
        self.limit = config.max_concurrency or _runtime.parallelism()
        budget = config.memory_budget_bytes or _runtime.object_store_bytes() // 2
        total = sum(size for _, size in meta)
        self.partitions = config.num_partitions or plan_partitions(total, self.limit, budget)
        self.rounds = plan_rounds([size for _, size in meta], budget)
        self.row_counts = [rows for rows, _ in meta]
        self.gather = config.strategy == "gather" or (
            config.strategy == "auto" and len(self.rounds) == 1 and _runtime.single_node())
        self.total_bytes = total
        self._refs: list[Any] = []
        self._meta: list[Any] = []
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="ainative-shuffle", daemon=True)
        self._thread.start()

    # -- BlockSource -------------------------------------------------------------------------
    def num_blocks(self) -> int:
        return self.partitions

    def ref(self, index: int) -> Any:
        with self._cond:
            self._cond.wait_for(lambda: len(self._refs) > index or self._error is not None)
            if len(self._refs) > index:
                return self._refs[index]
            raise errors.DataError(f"the shuffle failed before partition {index} was submitted: "
                                   f"{self._error}") from self._error

    def raw_metadata(self) -> list[Any]:
        self.ref(self.partitions - 1)  # waits until every reducer has been submitted
        return list(self._meta)

    def metadata(self) -> list[tuple[int, int]]:
        raw = self.raw_metadata()
        resolved = StaticBlocks(self._refs, raw).metadata()
        self._meta = list(resolved)  # resolve once
        return resolved

    # -- the pipeline --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            steps = len(self.ds.block_metadata()) + self.partitions * (
                len(self.rounds) if len(self.rounds) > 1 else 0) + self.partitions
            with _runtime.progress(steps, f"shuffle {self.total_bytes / 2**30:.2f} GiB") as bar:
                if self.gather:
                    self._reduce(self._index_stage(bar), bar, _gather_task, len(self.row_counts))
                else:
                    self._reduce(self._map_rounds(bar), bar, _reduce_task)
            _record_metric(self.total_bytes)
        except BaseException as exc:  # surfaced to readers through ref()
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _map_rounds(self, bar: Any) -> list[list[Any]]:
        """Per partition, the refs the reducer will read: map pieces, or per-round merges."""
        import ray

        mapper = _runtime.remote(_map_task, num_returns=self.partitions)
        merger = _runtime.remote(_merge_task)
        per_partition: list[list[Any]] = [[] for _ in range(self.partitions)]
        last_merges: list[Any] = []
        for blocks in self.rounds:
            pieces: list[Any] = [None] * len(blocks)

            def submit(j: int, blocks: list[int] = blocks, pieces: list[Any] = pieces) -> Any:
                out = mapper.remote(self.ds.block_ref(blocks[j]), self.seed, blocks[j],
                                    self.partitions)
                pieces[j] = [out] if self.partitions == 1 else list(out)
                return pieces[j][0]

            _runtime.bounded(submit, len(blocks), self.limit, bar=bar)
            if len(self.rounds) == 1:
                return [[pieces[j][p] for j in range(len(blocks))] for p in range(self.partitions)]
            if last_merges:  # backpressure: at most one round of merges outstanding
                ray.wait(last_merges, num_returns=len(last_merges), fetch_local=False)
                bar.update(len(last_merges))
            last_merges = [merger.remote(self.schema, *[pieces[j][p] for j in range(len(blocks))])
                           for p in range(self.partitions)]
            for p, ref in enumerate(last_merges):
                per_partition[p].append(ref)
        if last_merges:
            ray.wait(last_merges, num_returns=len(last_merges), fetch_local=False)
            bar.update(len(last_merges))
        return per_partition

    def _index_stage(self, bar: Any) -> list[list[Any]]:
        """Gather strategy: per partition, every input block followed by its row indices."""
        indexer = _runtime.remote(_index_task, num_returns=self.partitions)
        blocks = [self.ds.block_ref(b) for b in range(len(self.row_counts))]
        indices: list[list[Any]] = []

        def submit(b: int) -> Any:
            out = indexer.remote(self.row_counts[b], self.seed, b, self.partitions)
            indices.append([out] if self.partitions == 1 else list(out))
            return indices[-1][0]

        _runtime.bounded(submit, len(blocks), self.limit, bar=bar)
        return [blocks + [idx[p] for idx in indices] for p in range(self.partitions)]

    def _reduce(self, inputs: list[list[Any]], bar: Any, task: Any, *extra: Any) -> None:
        reducer = _runtime.remote(task, num_returns=2)

        def submit(p: int) -> Any:
            table, meta = reducer.remote(self.seed, p, self.schema, *extra, *inputs[p])
            inputs[p] = []  # the task holds its inputs now; dropping ours frees each piece early
            with self._cond:
                self._refs.append(table)
                self._meta.append(meta)
                self._cond.notify_all()
            return meta

        _runtime.bounded(submit, self.partitions, self.limit, bar=bar)


def _record_metric(nbytes: int) -> None:
    try:
        from ray.util.metrics import Counter

        Counter("ainative_data_shuffled_bytes", description="bytes through ainative shuffles"
                ).inc(float(nbytes))
    except Exception:  # metrics are best effort (e.g. no metrics agent in a client session)
        pass


def shuffle(ds: Dataset, config: ShuffleConfig) -> Dataset:
    """A Dataset whose blocks are the shuffle's output partitions, produced in the background."""
    meta = ds.block_metadata()
    schema = ds.schema()
    if schema is None or not meta or sum(rows for rows, _ in meta) == 0:
        return Dataset(StaticBlocks([], []), schema)
    return Dataset(ShuffleRun(ds, config, meta, schema), schema)
