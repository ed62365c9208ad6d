"""``TrainJob``: run ``train_fn`` on a gang of workers with torch.distributed, checkpoints,
failure recovery and elastic resizing; ``run()`` blocks, ``submit()`` returns a handle.

Bad input raises before any Ray resource is taken: ConfigError at construction (workers, names,
types), and at run/submit ConfigError for a train_fn that cannot be pickled, CheckpointError for
a checkpoint path that cannot be written, InfeasibleError for workers the cluster can never hold.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ainative import config as cfg
from ainative import errors
from ainative import resources as res
from ainative.cluster import background
from ainative.policy import packing
from ainative.scheduling import protocol
from ainative.train import _checkpoint, _controller, _events, _progress
from ainative.train.config import CheckpointConfig, FailureConfig
from ainative.train.result import TrainResult

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _workers_range(workers: Any) -> tuple[int, int]:
    if isinstance(workers, (tuple, list)) and len(workers) == 2:
        low, high = workers
        cfg.require_int("TrainJob", "workers[0] (min)", low, minimum=1, maximum=cfg.MAX_WORKERS)
        cfg.require_int("TrainJob", "workers[1] (max)", high, minimum=1, maximum=cfg.MAX_WORKERS)
        if low > high:
            raise errors.ConfigError(
                f"TrainJob.workers=({low}, {high}): min must be <= max; write (min, max) such as "
                f"({high}, {low})", field="workers", value=workers)
        return int(low), int(high)
    if isinstance(workers, bool) or not isinstance(workers, int) or not \
            1 <= workers <= cfg.MAX_WORKERS:
        raise errors.ConfigError(
            f"TrainJob.workers must be an integer in [1, {cfg.MAX_WORKERS:,}] or a (min, max) pair "
            f"for an elastic job, got {workers!r}", field="workers", value=workers)
    return workers, workers


def _default_name(fn: Any) -> str:
    raw = re.sub(r"[^A-Za-z0-9._-]+", "-", getattr(fn, "__name__", "train")).strip("-._")
    return raw or "train"


class TrainJob:
    """A distributed training job. See ``docs/training.md``."""

    shard_factory: Callable[..., Any] | None = None
    """Builds each rank's dataset shard; None uses ``ainative.data.shard.DatasetShard``."""
    controller_class: Any = _controller.Controller

    def __init__(self, train_fn: Callable[..., Any], *, workers: int | tuple[int, int] = 1,
                 resources: res.Resources | None = None, placement: str = "PACK",
                 config: Mapping[str, Any] | None = None,
                 checkpoint: CheckpointConfig | None = None, failure: FailureConfig | None = None,
                 name: str | None = None, queue: str | None = None, priority: int = 0,
                 preemptible: bool = True, max_runtime_s: float | None = None, budget: Any = None,
                 expected_duration_s: float | None = None,
                 datasets: Mapping[str, Any] | None = None, progress: bool | None = None) -> None:
        if not callable(train_fn):
            raise errors.ConfigError(f"TrainJob(train_fn=...) must be callable, got {train_fn!r}",
                                     field="train_fn", value=train_fn)
        self.min_workers, self.max_workers = _workers_range(workers)
        self.resources = res.Resources() if resources is None else resources
        if not isinstance(self.resources, res.Resources):
            raise errors.ConfigError(
                f"TrainJob.resources must be ainative.Resources(...), got {resources!r}",
                field="resources", value=resources)
        cfg.require_in("TrainJob", "placement", placement, packing.STRATEGIES)
        for field, value, kind in (("config", config, Mapping), ("datasets", datasets, Mapping),
                                   ("checkpoint", checkpoint, CheckpointConfig),
                                   ("failure", failure, FailureConfig)):
            if value is not None and not isinstance(value, kind):
                raise errors.ConfigError(
                    f"TrainJob.{field} must be a {kind.__name__} or None, got {type(value).__name__}",
                    field=field, value=value)
        self.name = _default_name(train_fn) if name is None else name
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise errors.ConfigError(
                f"TrainJob.name={name!r} must be 1-128 letters, digits, '.', '_' or '-' (it names "
                "the checkpoint directory)", field="name", value=name)
        if queue is not None and not isinstance(queue, str):
            raise errors.ConfigError(f"TrainJob.queue must be a string or None, got {queue!r}",
                                     field="queue", value=queue)
        cfg.require_int("TrainJob", "priority", priority, minimum=-1_000_000, maximum=1_000_000)
        if not isinstance(preemptible, bool):
            raise errors.ConfigError(f"TrainJob.preemptible must be True or False, got {preemptible!r}",
                                     field="preemptible", value=preemptible)
        cfg.require_seconds("TrainJob", "max_runtime_s", max_runtime_s, allow_none=True)
        cfg.require_seconds("TrainJob", "expected_duration_s", expected_duration_s, allow_none=True)
        cfg.require_type("TrainJob", "progress", progress, bool, allow_none=True)
        if budget is not None:
            from ainative.policy import pricing

            cfg.require_type("TrainJob", "budget", budget, pricing.Budget,
                             example="ainative.Budget(usd=100)")
        self.train_fn, self.placement = train_fn, placement
        self.config = dict(config or {})
        self.checkpoint = checkpoint or CheckpointConfig()
        self.failure = failure or FailureConfig()
        self.queue, self.priority, self.preemptible = queue, priority, preemptible
        self.max_runtime_s, self.budget = max_runtime_s, budget
        self.expected_duration_s = expected_duration_s
        self.datasets = dict(datasets or {})
        self.progress = progress

    def __repr__(self) -> str:
        workers = (self.min_workers if self.min_workers == self.max_workers
                   else (self.min_workers, self.max_workers))
        return f"TrainJob({self.name!r}, workers={workers}, {self.resources.describe()})"

    @property
    def storage(self) -> _checkpoint.Storage:
        return _checkpoint.Storage(self.checkpoint.path, self.name, self.checkpoint.keep)

    def run(self, *, admission_timeout_s: float | None = None) -> TrainResult:
        """Run to the end; return the result or raise TrainingFailedError / WorkerGroupError.
        While the job waits for admission, why is shown at once and on every change
        (``pending: <why>``); ``admission_timeout_s``: raise AdmissionTimeoutError when not admitted
        within it (None: wait). BudgetExceededError at once when it can never fit its budget."""
        timeout_s = protocol.check_admission_timeout(admission_timeout_s)
        spec = self._prepare()
        progress = _progress.Progress(self.name, self.progress)
        try:
            return _drive(self, spec, progress.update, None, admission_timeout_s=timeout_s,
                          on_pending=progress.pending)
        finally:
            progress.close()

    def submit(self, *, admission_timeout_s: float | None = None) -> TrainHandle:
        """Start in the background; bad input still raises here, before anything is reserved."""
        timeout_s = protocol.check_admission_timeout(admission_timeout_s)
        spec = self._prepare()
        return TrainHandle(self, spec, admission_timeout_s=timeout_s)

    def request(self) -> protocol.JobRequest:
        """What this job asks admission for."""
        return protocol.JobRequest(
            name=self.name, kind="train", bundles=(self.resources,) * self.max_workers,
            strategy=self.placement, queue=self.queue, priority=self.priority,
            preemptible=self.preemptible, max_runtime_s=self.max_runtime_s,
            expected_duration_s=self.expected_duration_s, budget=self.budget,
            min_bundles=self.min_workers if self.min_workers < self.max_workers else None,
            metadata={"checkpoint_path": self.checkpoint.path})

    def _prepare(self) -> _controller.JobSpec:
        """Checks that need the cluster, before admission and before any gang."""
        import ray

        from ainative.cluster import local as cluster_local
        from ainative.scheduling import placement

        cluster_local.connect()
        for field, value in (("train_fn", self.train_fn), ("config", self.config),
                             ("datasets", self.datasets)):
            try:
                ray.cloudpickle.dumps(value)
            except Exception as exc:
                raise errors.ConfigError(
                    f"TrainJob.{field} cannot be pickled to send to workers ({type(exc).__name__}: "
                    f"{exc}); define it at module level and keep locks, sockets and open files out "
                    "of it (create them inside train_fn)", field=field) from None
        from ainative.cost import probes

        probe = probes.configured_probe_spec()     # ConfigError for a bad name, before admission
        storage = self.storage
        storage.probe()
        placement.check_feasible([self.resources] * self.min_workers, self.placement)
        return _controller.JobSpec(
            name=self.name, fn=self.train_fn, config=self.config, resources=self.resources,
            min_workers=self.min_workers, max_workers=self.max_workers, placement=self.placement,
            storage=storage, failure=self.failure, datasets=self.datasets,
            shard_factory=self.shard_factory, max_runtime_s=self.max_runtime_s, probe=probe)


def _drive(job: TrainJob, spec: _controller.JobSpec,
           on_update: Callable[[Any], None] | None, handle: TrainHandle | None, *,
           admission_timeout_s: float | None = None,
           on_pending: Callable[[str], None] | None = None) -> TrainResult:
    """Admission, then the controller; the lease is always released with the outcome. After a
    preemption the controller asks admission again (same queue, priority and first submit time,
    so the job keeps its age) and resumes from its checkpoint."""
    _events.emit(job.name, "submitted", workers=[job.min_workers, job.max_workers],
                 queue=job.queue)

    def pending(why: str) -> None:
        _events.emit(job.name, "pending", queue=job.queue, reason=why)
        if on_pending is not None:
            on_pending(why)

    first = job.request()
    stopped = (lambda: handle.stop_requested() is not None) if handle is not None else None
    request = dataclasses.replace(first, metadata={**first.metadata, "submit_s": time.time()},
                                  on_pending=pending, cancelled=stopped)
    try:
        lease = protocol.admission_for(job.queue).admit(request, admission_timeout_s)
    except errors.AdmissionError:
        if handle is None or handle.stop_requested() is None:
            raise
        return _stopped_pending(job, handle.stop_requested(), None)
    if handle is not None and handle.stop_requested() is not None:   # stopped as it was admitted
        return _stopped_pending(job, handle.stop_requested(), lease)
    _events.emit(job.name, "admitted", queue=job.queue)

    def readmit() -> protocol.Lease:
        got = protocol.admission_for(job.queue).admit(request)
        _events.emit(job.name, "admitted", queue=job.queue, requeued=True)
        return got

    status, controller = "failed", None
    try:
        controller = job.controller_class(spec, lease, on_update=on_update)
        controller.readmit = readmit
        if handle is not None:
            handle._attach(controller)
        result: TrainResult = controller.run()
        status = result.status
        return result
    finally:
        (controller.lease if controller is not None else lease).release(status)


def _stopped_pending(job: TrainJob, stop: protocol.StopRequest | None,
                     lease: protocol.Lease | None) -> TrainResult:
    """The job was stopped before it started: nothing was reserved; release what was admitted."""
    status = f"stopped: {stop.reason if stop is not None else 'cancelled'}"
    if lease is not None:
        lease.release(status)
    _events.emit(job.name, "stopped", reason=status, before_start=True)
    return TrainResult(metrics={}, checkpoint=None, restarts=0, history=[], status=status,
                       name=job.name)


SHUTDOWN_GRACE_S = 5.0


class _StopOnShutdown:
    """``background.stop_all()`` calls ``set()``: the job checkpoints and stops (its workers are
    killed after SHUTDOWN_GRACE_S) with reason "cluster shutdown"."""

    def __init__(self, handle: TrainHandle) -> None:
        self._handle = handle

    def set(self) -> None:
        if not self._handle._done.is_set():
            self._handle.stop("cluster shutdown", checkpoint=True, grace_s=SHUTDOWN_GRACE_S)


class TrainHandle:
    """A submitted job running in a background thread of this driver."""

    def __init__(self, job: TrainJob, spec: _controller.JobSpec, *,
                 admission_timeout_s: float | None = None) -> None:
        self.job = job
        self._admission_timeout_s = admission_timeout_s
        self._controller: Any = None
        self._pending_stop: protocol.StopRequest | None = None
        self._result: TrainResult | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(spec,), daemon=True,
                                        name=f"ainative-train-{job.name}")
        self._thread.start()
        # Shutting the cluster down (Cluster.shutdown) stops the job first: its thread calls Ray,
        # and Ray ends the whole process when a thread uses it after ray.shutdown().
        background.register(_StopOnShutdown(self), self._thread)

    def _main(self, spec: _controller.JobSpec) -> None:
        try:
            self._result = _drive(self.job, spec, None, self,
                                  admission_timeout_s=self._admission_timeout_s)
        except BaseException as exc:
            self._error = exc
        finally:
            self._done.set()

    def _attach(self, controller: Any) -> None:
        with self._lock:
            self._controller = controller
            if self._pending_stop is not None:
                controller.request_stop(self._pending_stop)

    def stop_requested(self) -> protocol.StopRequest | None:
        """The stop asked with ``stop()``, if any (admission checks it while the job waits)."""
        with self._lock:
            return self._pending_stop

    def status(self) -> str:
        """"pending" (waiting for admission), a controller state ("scheduling", "running",
        "restarting", "stopping", "preempted", "requeued"), then "succeeded", "failed" or
        "stopped: <reason>"."""
        if self._done.is_set():
            return self._result.status if self._result is not None else "failed"
        return "pending" if self._controller is None else str(self._controller.state.value)

    def wait(self, timeout_s: float | None = None) -> TrainResult:
        """The result; raises the job's error, or TimeoutError if it is still running."""
        if not self._done.wait(timeout_s):
            raise TimeoutError(f"train job {self.job.name!r} still {self.status()} after "
                               f"{timeout_s:g} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def stop(self, reason: str = "cancelled", checkpoint: bool = True, grace_s: float = 30.0) -> None:
        """Ask the workers to checkpoint and stop (killed after ``grace_s``); returns at once."""
        cfg.require_positive("stop", "grace_s", grace_s)
        request = protocol.StopRequest(reason, checkpoint=checkpoint, grace_s=grace_s)
        with self._lock:
            self._pending_stop = request
            if self._controller is not None:
                self._controller.request_stop(request)

    def progress(self) -> dict[str, Any]:
        """A snapshot: state, step, world size, restarts, rank 0's latest metrics and the node id of
        each rank."""
        c = self._controller
        if c is None:
            return {"state": self.status(), "step": 0, "world_size": 0, "restarts": 0,
                    "metrics": {}, "nodes": []}
        return {"state": self.status(), "step": c.step, "world_size": c.world_size,
                "restarts": c.restarts, "metrics": dict(c.metrics), "nodes": list(c.nodes)}

    def logs(self) -> list[str]:
        """Recent rank-prefixed output lines of the workers ("[rank N] ...")."""
        return list(self._controller.lines) if self._controller is not None else []

    def events(self) -> list[dict[str, Any]]:
        """The job's structured events (see ``ainative.train._events``)."""
        return _events.read(self.job.name)
