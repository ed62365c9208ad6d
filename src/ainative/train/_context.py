"""What ``train_fn`` sees inside a worker: the context, ``report``, checkpoints and dataset shards.

One worker process runs one rank, so the session is a module global set by the worker before it
calls ``train_fn``. ``report`` without a checkpoint only appends to an in-memory outbox that the
controller drains when it polls (no driver round trip per step); with a checkpoint, rank 0 uploads
and commits it before ``report`` returns.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ainative import errors
from ainative.train import _checkpoint


class StopTraining(BaseException):
    """Raised by ``report`` to end ``train_fn`` after a requested stop (BaseException so that a
    broad ``except Exception`` in user code does not swallow it)."""


@dataclasses.dataclass
class TrainContext:
    """Where this worker sits in the job. ``world_size`` changes when an elastic job resizes."""

    job_name: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    node_id: str
    device: Any
    """``torch.device``: ``cuda:<local index>`` when a GPU is assigned and visible, else ``cpu``."""
    gpu_ids: list[str]
    restarts: int
    step: int = 0
    """Reports made so far by this rank, counted across restarts (resumes at the checkpoint's)."""
    _stop_mode: str | None = None

    @property
    def should_stop(self) -> bool:
        """True once the job was asked to stop: report a checkpoint and the loop ends there."""
        return self._stop_mode is not None


@dataclasses.dataclass
class Session:
    """Worker-side state of one rank (not public)."""

    context: TrainContext
    storage: _checkpoint.Storage
    checkpoint_step: int | None
    datasets: Mapping[str, Any]
    data_states: Mapping[str, Any]
    shard_factory: Callable[..., Any] | None
    outbox: deque[tuple[Any, ...]] = dataclasses.field(default_factory=deque)
    last_progress: float = dataclasses.field(default_factory=time.monotonic)
    shards: dict[str, Any] = dataclasses.field(default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


_SESSION: Session | None = None


def _set_session(session: Session | None) -> None:
    global _SESSION
    _SESSION = session


def _session(what: str) -> Session:
    if _SESSION is None:
        raise errors.TrainingError(
            f"ainative.train.{what}() only works inside a train_fn run by ainative.TrainJob")
    return _SESSION


def get_context() -> TrainContext:
    """Rank, world size, local rank, node rank and device of this worker."""
    return _session("get_context").context


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # a 0-d tensor or numpy scalar -> a Python number
    return item() if callable(item) and getattr(value, "ndim", 1) == 0 else value


def report(metrics: Mapping[str, Any], checkpoint: str | None = None) -> None:
    """Record ``metrics`` for this step; with ``checkpoint`` (a local directory) rank 0 commits it.

    Non-blocking without a checkpoint. After a stop request, the first report that carries a
    checkpoint (or any report, when the stop does not ask for one) ends ``train_fn``.
    """
    s = _session("report")
    if not isinstance(metrics, Mapping):
        raise errors.ConfigError(f"report(metrics=...) must be a dict, got {type(metrics).__name__}",
                                 field="metrics")
    ctx = s.context
    ctx.step += 1
    row = {str(k): _plain(v) for k, v in metrics.items()}
    committed = None
    if checkpoint is not None and ctx.rank == 0:
        state = {name: shard.state_dict() for name, shard in s.shards.items()}
        committed = s.storage.commit(ctx.step, str(checkpoint), row, state or None)
        s.checkpoint_step = ctx.step
    s.last_progress = time.monotonic()
    if ctx.rank == 0:
        with s.lock:
            s.outbox.append((ctx.step, row, committed, time.time()))
    mode = ctx._stop_mode
    if mode == "now" or (mode == "checkpoint" and checkpoint is not None):
        raise StopTraining()


def get_checkpoint() -> str | None:
    """The latest committed checkpoint as a local directory (read it, do not modify it), or None."""
    s = _session("get_checkpoint")
    if s.checkpoint_step is None:
        return None
    return s.storage.local_copy(s.checkpoint_step)


def get_dataset_shard(name: str = "train") -> Any:
    """This rank's shard of ``TrainJob(datasets={name: ...})``, resumed from the checkpoint's
    position after a restart."""
    s = _session("get_dataset_shard")
    if name not in s.datasets:
        raise errors.ConfigError(
            f"get_dataset_shard({name!r}): no dataset of that name; TrainJob(datasets=...) has "
            f"{sorted(s.datasets) or 'none'}", field="datasets", value=name)
    if name not in s.shards:
        factory = s.shard_factory
        if factory is None:
            from ainative.data.shard import DatasetShard  # type: ignore[import-not-found]

            factory = DatasetShard
        ctx = s.context
        s.shards[name] = factory(s.datasets[name], rank=ctx.rank, world_size=ctx.world_size,
                                 state=s.data_states.get(name))
    return s.shards[name]
