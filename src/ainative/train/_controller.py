"""The driver-side controller of a training job: an explicit state machine over worker groups.

::

    SCHEDULING ──gang reserved, workers started──> RUNNING ──all ranks returned──> FINISHED
        ^                                            │ ├─stop request / resize at checkpoint─> STOPPING
        │                                            │ └─failure: FailurePolicy says retry──> RESTARTING
        └────────────── new gang, from the latest committed checkpoint ─────────────────────┘
                                          FailurePolicy says fail ──> ERRORED (error raised)
        ^
        └── REQUEUED <── lease released <── PREEMPTED <── stopped by the scheduler's preemption
            (re-admitted with its priority and first submit time; event "resumed")

A preempted job (the lease's StopRequest("preempted")) does not end: with ``readmit`` set (the
TrainJob sets it) the controller releases its lease, waits for a new one and resumes from the
latest committed checkpoint. Only success, failure, a user stop or a guardrail stop (budget,
max runtime, idle) end ``run()``.

It decides nothing inline: ``policy.failure.FailurePolicy`` says restart or fail, and
``ScalingPolicy`` says which world size to run at. The worker group is injected (``group_class``)
so tests can step the controller with a fake one.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ainative import errors
from ainative import resources as res
from ainative.cluster import liveness, state
from ainative.policy import failure as fp
from ainative.policy import packing
from ainative.scheduling import protocol
from ainative.train import _checkpoint, _events, _group, _metrics
from ainative.train.config import FailureConfig
from ainative.train.result import TrainResult

logger = logging.getLogger(__name__)


class State(enum.Enum):
    SCHEDULING = "scheduling"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    PREEMPTED = "preempted"
    REQUEUED = "requeued"
    FINISHED = "finished"
    ERRORED = "errored"


@dataclasses.dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything the controller needs from a TrainJob (already validated)."""

    name: str
    fn: Callable[..., Any]
    config: dict[str, Any]
    resources: res.Resources
    min_workers: int
    max_workers: int
    placement: str
    storage: _checkpoint.Storage
    failure: FailureConfig
    datasets: dict[str, Any]
    shard_factory: Callable[..., Any] | None
    max_runtime_s: float | None
    probe: str | None = None            # "module:function" utilisation probe run in the workers


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt (one worker group) ended."""

    kind: str                                 # "succeeded" | "stopped" | "resize" | "failure"
    failure: fp.Failure | None = None
    error: dict[str, Any] | None = None       # the remote error of a user failure
    stop: protocol.StopRequest | None = None
    resize_to: int | None = None


class _Released:
    """The lease slot while a preempted job waits to be admitted again."""

    def poll(self, usage: protocol.Usage | None = None) -> protocol.StopRequest | None:
        return None

    def release(self, outcome: str) -> None:
        return None


class Controller:
    group_class: Any = _group.WorkerGroup
    poll_interval_s = 0.1
    lease_poll_s = 1.0
    readmit: Callable[[], protocol.Lease] | None = None
    """Set by the TrainJob: blocks until the job is admitted again after a preemption."""

    def __init__(self, spec: JobSpec, lease: protocol.Lease,
                 on_update: Callable[[Controller], None] | None = None) -> None:
        self.spec, self.lease, self.on_update = spec, lease, on_update
        self.state = State.SCHEDULING
        self.restarts, self.step, self.world_size = 0, 0, 0
        self.nodes: list[str] = []
        self.metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.lines: deque[str] = deque(maxlen=20_000)
        self.failure_policy = fp.FailurePolicy(spec.failure.max_restarts,
                                               spec.failure.retry_user_errors)
        self.scaling = fp.ScalingPolicy(spec.min_workers, spec.max_workers)
        self.started = time.monotonic()
        self._external_stop: protocol.StopRequest | None = None
        self._keep: set[int] = set()
        self._start_stop: protocol.StopRequest | None = None   # a stop seen while a gang started
        self._start_polled = 0.0
        self.utilization: float | None = None     # mean over ranks of the workers' probe
        self.preemptions = 0
        self.ray_metrics = _metrics.JobMetrics(spec.name)
        self._lock = threading.Lock()
        self.standby: _group.Standbys | None = None      # warm spares (FailureConfig.standby_workers)
        if spec.failure.standby_workers and self.group_class is _group.WorkerGroup:
            self.standby = _group.Standbys(spec.name, float(spec.resources.cpus),
                                           spec.failure.standby_workers)
        latest = spec.storage.latest()
        self.checkpoint: str | None = spec.storage.uri_of(latest) if latest is not None else None
        self.prober: liveness.Prober | None = None     # FailureConfig.liveness_timeout_s
        self._watched: dict[int, str] = {}             # rank -> prober target of this attempt
        self._suspects: dict[str, tuple[float, str]] = {}  # node -> (avoid until, target)
        self._attempts = 0

    # -- public to the job/handle --------------------------------------------------------------
    def request_stop(self, stop: protocol.StopRequest) -> None:
        with self._lock:
            self._external_stop = stop

    def result(self, status: str) -> TrainResult:
        return TrainResult(metrics=dict(self.metrics), checkpoint=self.checkpoint,
                           restarts=self.restarts, history=list(self.history), status=status,
                           world_size=self.world_size, name=self.spec.name)

    def run(self) -> TrainResult:
        """Run attempts until the job succeeds, is stopped, or the policy gives up (raises)."""
        try:
            return self._run()
        finally:
            if self.standby is not None:
                self.standby.shutdown()
            if self.prober is not None:
                self.prober.close()

    def _run(self) -> TrainResult:
        resize_to: int | None = None
        kept: Any = None  # a group whose warm processes the next attempt reuses
        while True:
            self._transition(State.SCHEDULING, restarts=self.restarts)
            outcome, kept = self._attempt(resize_to, kept)
            resize_to = None
            if outcome.kind == "succeeded":
                self._transition(State.FINISHED, status="succeeded")
                return self.result("succeeded")
            if outcome.kind == "stopped" and self._requeue(outcome):
                continue
            if outcome.kind == "stopped":
                assert outcome.stop is not None
                with self._lock:    # a user stop while it waited to be re-admitted wins
                    stop = self._external_stop if self.state is State.REQUEUED else None
                status = f"stopped: {(stop or outcome.stop).reason}"
                self._transition(State.FINISHED, status=status)
                return self.result(status)
            if outcome.kind == "resize":
                _events.emit(self.spec.name, "resizing", from_workers=self.world_size,
                             to_workers=outcome.resize_to, step=self.step)
                resize_to = outcome.resize_to
                continue
            try:
                self._on_failure(outcome)
            except BaseException:
                if kept is not None:
                    kept.shutdown()
                raise

    def _requeue(self, outcome: Outcome) -> bool:
        """Preempted by the scheduler: release, wait for admission again, resume. False when the
        job should end instead (a user or guardrail stop, or no ``readmit``)."""
        stop = outcome.stop
        with self._lock:
            external = self._external_stop
        if stop is None or stop.reason != "preempted" or self.readmit is None or external is not None:
            return False
        self.preemptions += 1
        self._transition(State.PREEMPTED, step=self.step, checkpoint=self.checkpoint,
                         reason=stop.message or "preempted", preemptions=self.preemptions)
        held, self.lease = self.lease, _Released()   # if readmit raises, nothing is released twice
        held.release("stopped: preempted")
        self._transition(State.REQUEUED, step=self.step, checkpoint=self.checkpoint)
        try:
            self.lease = self.readmit()
        except errors.AdmissionError:
            with self._lock:
                if self._external_stop is None:
                    raise
            return False             # stopped while it waited: out of the queue, never resumed
        latest = self.spec.storage.latest()
        _events.emit(self.spec.name, "resumed", step=latest or 0, checkpoint=self.checkpoint,
                     preemptions=self.preemptions)
        return True

    def _on_failure(self, outcome: Outcome) -> None:
        failure = outcome.failure
        assert failure is not None
        decision = self.failure_policy.decide(failure, self.restarts)
        _events.emit(self.spec.name, "failure", kind=failure.kind.value, rank=failure.rank,
                     node=failure.node_id, reason=failure.reason, action=decision.action.value,
                     restarts=self.restarts)
        if decision.action is fp.Action.FAIL:
            self._transition(State.ERRORED, reason=decision.reason)
            raise self._error_for(outcome, decision.reason)
        self.restarts += 1
        self.ray_metrics.restart()
        self._transition(State.RESTARTING, restarts=self.restarts, reason=decision.reason)

    def _transition(self, new: State, **fields: Any) -> None:
        self.state = new
        _events.emit(self.spec.name, new.value, **fields)
        if self.on_update is not None:
            self.on_update(self)

    # -- one attempt -----------------------------------------------------------------------------
    def _attempt(self, resize_to: int | None, kept: Any) -> tuple[Outcome, Any]:
        """Run one worker group; returns how it ended and the group when it may be reused."""
        self._start_stop, self._start_polled = None, time.monotonic()
        try:
            reused = len(self._keep) if kept is not None else 0
            group = self._restart_in_place(kept) if kept is not None else None
            if group is None:
                reused, group = 0, self._start_group(resize_to)
        except _group.StartInterrupted:   # stopped while its workers started: nothing to save
            assert self._start_stop is not None
            self._transition(State.STOPPING, reason=self._start_stop.reason, step=self.step)
            return Outcome("stopped", stop=self._start_stop), None
        except errors.AinativeError:
            raise
        except Exception as exc:  # a worker died while starting: a system failure like any other
            return Outcome("failure", fp.Failure(fp.FailureKind.SYSTEM, reason=f"start: {exc}")), None
        reuse = None
        try:
            self.world_size = len(group)
            self.nodes = [slot.node_id for slot in group.slots]
            self.ray_metrics.world_size(len(group))
            adopted = len(getattr(group, "taken_now", ()))
            self._transition(State.RUNNING, world_size=len(group), restarts=self.restarts,
                             checkpoint=self.checkpoint, reused_workers=reused,
                             **({"standby_workers_adopted": adopted} if adopted else {}))
            if self.standby is not None:
                self.standby.replenish(self.nodes)
            self._watch(group)
            outcome = self._supervise(group)
            if outcome.failure is not None and outcome.failure.kind is fp.FailureKind.SYSTEM:
                reuse = self._survivors(group)
            return outcome, (group if reuse is not None else None)
        finally:
            if reuse is None:
                group.shutdown()
            else:
                self._keep = reuse

    # -- liveness probes (FailureConfig.liveness_timeout_s) ------------------------------------
    AVOID_S = 60.0
    """A node lost by the probes is kept out of new gangs until Ray declares it dead, it answers
    again, or this long has passed."""

    def _watch(self, group: Any) -> None:
        """Probe the ranks of ``group`` that run on another machine than this controller."""
        timeout = self.spec.failure.liveness_timeout_s
        infos = getattr(group, "infos", None)
        if timeout is None or not infos:
            return
        from ainative.train import _dist

        here = _dist.node_ip()
        remote = {r: i for r, i in enumerate(infos) if i.get("liveness") and i.get("ip") != here}
        if self.prober is None:
            if not remote:
                return
            self.prober = liveness.Prober(timeout)
        prober = self.prober
        keep = {target for _until, target in self._suspects.values()}
        for name in prober.names():
            if name not in keep:
                prober.drop(name)
        self._attempts += 1
        self._watched = {}
        for rank, info in remote.items():
            port, key = info["liveness"]
            name = f"{self._attempts}:{rank}"
            prober.watch(name, info["ip"], int(port), bytes.fromhex(key))
            self._watched[rank] = name
        group.give_up = (lambda: bool(self._lost_ranks())) if remote else None

    def _lost_ranks(self) -> list[int]:
        if self.prober is None or not self._watched:
            return []
        lost = set(self.prober.lost())
        return sorted(r for r, name in self._watched.items() if name in lost)

    def _unreachable(self, group: Any, ranks: list[int]) -> Outcome:
        """Ranks lost by the probes: their nodes are left out until Ray or the probes say more."""
        timeout = self.spec.failure.liveness_timeout_s
        until = time.monotonic() + self.AVOID_S
        for rank in ranks:
            node = group.node_of(rank)
            if node:
                group.unreachable.add(node)
                self._suspects[node] = (until, self._watched[rank])
        rank = ranks[0]
        return self._system(group, rank, f"rank {rank} unreachable: no answer to liveness probes "
                                         f"for {timeout:g} s (node {group.node_of(rank)[:12]} "
                                         "partitioned or down)")

    def _avoid_nodes(self) -> tuple[str, ...]:
        """Nodes lost by the probes that Ray still lists alive and that do not answer again."""
        if not self._suspects:
            return ()
        alive, now = state.alive_node_ids(), time.monotonic()
        for node, (until, target) in list(self._suspects.items()):
            back = self.prober is not None and self.prober.answering(target)
            if node not in alive or now > until or back:
                del self._suspects[node]
                if self.prober is not None and target not in self._watched.values():
                    self.prober.drop(target)
        return tuple(self._suspects)

    def _stop_while_starting(self) -> bool:
        """Asked by the starting gang: a stop (preemption, budget, the user) arrived meanwhile."""
        now = time.monotonic()
        if self._start_stop is None and now - self._start_polled >= self.lease_poll_s:
            self._start_polled = now
            self._start_stop = self._stop_due(max(1, self.world_size))
        return self._start_stop is not None

    def _survivors(self, group: Any) -> set[int] | None:
        """Ranks whose process is alive with its train thread ended (after a peer died), or None
        when the gang itself is damaged (a node died) and must be reserved again."""
        deadline = time.monotonic() + 2.0
        while True:  # give survivors a moment to notice the broken collective
            # A node that died, before or while we wait, damages the gang: reserve it again at
            # once. Its survivors are stuck in a collective with a peer that never answers (a
            # partition sends no reset), so waiting for them only delays the restart (measured:
            # the dead node was declared 0.2 s after the failed poll; the wait ran its 2 s).
            if not group.reusable():
                return None
            polls = group.poll(timeout_s=0.5)
            self._absorb({r: p for r, p in enumerate(polls) if isinstance(p, dict)})
            ended = {r for r, p in enumerate(polls)
                     if isinstance(p, dict) and p["state"] in ("error", "finished", "stopped")}
            alive = {r for r, p in enumerate(polls) if isinstance(p, dict)}
            silent = any(p is None for p in polls)   # no answer in time: a loaded machine; ask again
            if (ended == alive and not silent) or time.monotonic() > deadline:
                return ended
            time.sleep(0.05)

    def _restart_in_place(self, group: Any) -> Any:
        """Reuse the gang and the warm processes of the survivors; None (group released) when
        that fails, so that the caller starts from scratch."""
        keep, self._keep = self._keep, set()
        try:
            group.restart_in_place(keep, self.spec.failure.start_timeout_s, self._spec_for(),
                                   should_stop=self._stop_while_starting)
        except _group.StartInterrupted:
            group.shutdown()
            raise
        except Exception as exc:
            logger.warning("in-place restart of %s failed (%s); starting a new gang",
                           self.spec.name, exc)
            group.shutdown()
            return None
        return group

    def _spec_for(self) -> Callable[[_group.RankSlot], dict[str, Any]]:
        """Per-rank start spec, resuming from the latest committed checkpoint."""
        spec, storage = self.spec, self.spec.storage
        latest = storage.latest()  # the storage, not what was reported, is the source of truth
        if latest is not None:
            self.checkpoint = storage.uri_of(latest)
        data_states = storage.data_state(latest) if latest is not None else None

        def spec_for(slot: _group.RankSlot) -> dict[str, Any]:
            return {"fn": spec.fn, "config": spec.config, "storage": storage,
                    "checkpoint_step": latest, "start_step": latest or 0,
                    "datasets": spec.datasets, "data_states": data_states,
                    "shard_factory": spec.shard_factory, "restarts": self.restarts,
                    "collective_timeout_s": spec.failure.collective_timeout_s,
                    "rendezvous_timeout_s": spec.failure.rendezvous_timeout_s,
                    "probe": spec.probe}
        return spec_for

    def _start_group(self, resize_to: int | None) -> Any:
        spec = self.spec
        spec_for = self._spec_for()
        deadline = time.monotonic() + spec.failure.start_timeout_s
        while True:
            avoid = self._avoid_nodes()
            size = resize_to or self.scaling.initial(self._fit(avoid=avoid)).workers
            assert size is not None
            left = max(0.5, deadline - time.monotonic())
            # An elastic job tries a larger gang briefly, then re-measures what fits (a node may
            # have died since the last look); so does a gang kept off an unreachable node (it may
            # be declared dead, or answer again, meanwhile).
            probe = min(left, 3.0) if size > spec.min_workers or avoid else left
            try:
                return self.group_class.start(
                    job_name=spec.name, resources=spec.resources, size=size,
                    strategy=spec.placement, timeout_s=left, spec_for=spec_for,
                    reserve_timeout_s=probe, should_stop=self._stop_while_starting,
                    standby=self.standby, avoid_nodes=avoid)
            except (errors.InfeasibleError, errors.PlacementTimeoutError):
                if (size <= spec.min_workers and not avoid) or time.monotonic() >= deadline:
                    raise
                resize_to = None
                time.sleep(0.2)

    def _fit(self, held: int = 0, avoid: tuple[str, ...] = ()) -> int:
        """How many workers the cluster could hold now: ``held`` of ours plus what is free
        (outside ``avoid``)."""
        bundle = self.spec.resources.to_bundle()
        free = {v.node_id: dict(v.free) for v in state.nodes() if v.node_id not in avoid}
        n = 0
        while held + n < self.spec.max_workers and packing.assign(
                [bundle] * (n + 1), free, "SPREAD") is not None:
            n += 1
        return held + n

    def _supervise(self, group: Any) -> Outcome:
        size, timeout = len(group), self.spec.failure.progress_timeout_s
        stopping: protocol.StopRequest | None = None
        stop_deadline, resize_to, last_lease = 0.0, None, 0.0
        silent_since: dict[int, float] = {}
        begun = False   # some rank entered train_fn in this attempt (or reported): work to save
        while True:
            polls = group.poll(timeout_s=2.0)
            now = time.monotonic()
            answered = {r: p for r, p in enumerate(polls) if isinstance(p, dict)}
            begun = begun or any(p["state"] not in ("starting", "idle") or p["reports"]
                                 for p in answered.values())
            new_ckpt = self._absorb(answered)  # first: reports made before a death still count
            for rank, p in enumerate(polls):
                if isinstance(p, BaseException):
                    return self._system(group, rank, f"worker died: {type(p).__name__}: "
                                                    f"{str(p).splitlines()[0][:200]}")
            lost = self._lost_ranks()
            if lost:
                return self._unreachable(group, lost)
            failed = sorted(r for r, p in answered.items() if p["state"] == "error")
            if failed:
                return self._classify(group, {r: answered[r] for r in failed})
            states = [answered[r]["state"] if r in answered else "?" for r in range(size)]
            if all(s == "finished" for s in states):
                return Outcome("succeeded")
            # A gang still in set-up (process start, imports, rendezvous) has nothing a checkpoint
            # would save: stop it now rather than after its first checkpoint or the grace period
            # (a preemptor waits for these GPUs; measured: victims caught in a slow start-up held
            # them for the whole 30 s grace).
            if stopping is not None and (states[0] == "stopped" or now > stop_deadline
                                         or not begun):
                if resize_to is not None:
                    return Outcome("resize", resize_to=resize_to)
                return Outcome("stopped", stop=stopping)
            hung = self._hung(answered, silent_since, size, now, timeout)
            if hung is not None:
                return Outcome("failure", fp.Failure(fp.FailureKind.HANG, hung, group.node_of(hung),
                                                     f"rank {hung} made no progress in {timeout:g} s"))
            if stopping is None:
                if now - last_lease >= self.lease_poll_s:
                    last_lease = now
                    stopping = self._stop_due(size)
                if stopping is None and new_ckpt and self.scaling.elastic:
                    decision = self.scaling.on_checkpoint(
                        size, self._fit(held=size, avoid=tuple(self._suspects)))
                    if decision.workers is not None:
                        resize_to = decision.workers
                        stopping = protocol.StopRequest("resize", grace_s=timeout or 300.0)
                if stopping is not None:
                    stop_deadline = now + stopping.grace_s
                    group.request_stop("checkpoint" if stopping.checkpoint else "now")
                    self._transition(State.STOPPING, reason=stopping.reason, step=self.step)
            time.sleep(self.poll_interval_s)

    def _absorb(self, answered: dict[int, dict[str, Any]]) -> bool:
        """Take reports (rank 0) and log lines; True when a new checkpoint was committed."""
        new_ckpt = False
        readings = [p["utilization"] for p in answered.values() if p.get("utilization") is not None]
        if readings:     # the workers' own probe (NVML or the configured one); None: unknown
            self.utilization = sum(readings) / len(readings)
        for rank in sorted(answered):
            self.lines.extend(answered[rank]["lines"])
        for step, row, committed, ts in answered.get(0, {}).get("reports", ()):
            self.ray_metrics.report(step, ts)
            self.history.append(row)
            self.metrics, self.step = row, step
            if committed:
                self.checkpoint, new_ckpt = committed, True
                loss = row.get("loss")      # the dashboard's loss curve reads it from the event log
                extra = {"loss": float(loss)} if isinstance(loss, (int, float)) else {}
                _events.emit(self.spec.name, "checkpoint", step=step, path=committed, **extra)
        if answered.get(0, {}).get("reports") and self.on_update is not None:
            self.on_update(self)
        return new_ckpt

    def _hung(self, answered: dict[int, dict[str, Any]], silent_since: dict[int, float], size: int,
              now: float, timeout: float | None) -> int | None:
        if timeout is None:
            return None
        for rank in range(size):
            p = answered.get(rank)
            if p is None:  # not even answering polls: frozen with the GIL held
                if now - silent_since.setdefault(rank, now) > timeout:
                    return rank
                continue
            silent_since.pop(rank, None)
            if p["state"] in ("starting", "running") and p["since_progress_s"] > timeout:
                return rank
        return None

    def _stop_due(self, size: int) -> protocol.StopRequest | None:
        with self._lock:
            if self._external_stop is not None:
                return self._external_stop
        stop = self.lease.poll(protocol.Usage(bundles_in_use=size, restarts=self.restarts,
                                              step=self.step,
                                              accelerator_utilization=self.utilization))
        if stop is not None:
            return stop
        limit = self.spec.max_runtime_s
        if limit is not None and time.monotonic() - self.started > limit:
            return protocol.StopRequest("max_runtime", message=f"ran past max_runtime_s={limit:g}")
        return None

    def _system(self, group: Any, rank: int, reason: str) -> Outcome:
        return Outcome("failure", fp.Failure(fp.FailureKind.SYSTEM, rank, group.node_of(rank), reason))

    def _classify(self, group: Any, failed: dict[int, dict[str, Any]]) -> Outcome:
        """A rank raised: a user error, unless it is the echo of a peer that died."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # give a dead peer's actor death time to surface
            polls = group.poll(timeout_s=1.0)
            self._absorb({r: p for r, p in enumerate(polls) if isinstance(p, dict)})
            for rank, p in enumerate(polls):
                if isinstance(p, BaseException):
                    return self._system(group, rank, f"worker died: {type(p).__name__}")
            time.sleep(0.1)
        user = {r: p for r, p in failed.items() if not p["error"]["peer"]}
        if not user:
            rank, p = next(iter(failed.items()))
            return self._system(group, rank, f"collective failed: {p['error']['message'][:300]}")
        rank, p = next(iter(user.items()))
        err = p["error"]
        return Outcome("failure", fp.Failure(fp.FailureKind.USER, rank, group.node_of(rank),
                                             f"{err['type']}: {err['message']}"), error=err)

    def _error_for(self, outcome: Outcome, why: str) -> errors.TrainingError:
        failure = outcome.failure
        assert failure is not None
        node = (failure.node_id or "?")[:12]
        if failure.kind is fp.FailureKind.USER and outcome.error is not None:
            err = outcome.error
            return errors.TrainingFailedError(
                f"train_fn raised {err['type']}: {err['message']} on rank {failure.rank} (node "
                f"{node}) of job {self.spec.name!r}; not retried ({why}).\n"
                f"Remote traceback (rank {failure.rank}):\n{err['traceback']}",
                rank=failure.rank, node_id=failure.node_id, traceback=err["traceback"],
                exc_type=err["type"], job=self.spec.name)
        return errors.WorkerGroupError(
            f"job {self.spec.name!r} failed: {failure.kind.value} failure on rank {failure.rank} "
            f"(node {node}): {failure.reason}; {why}. Raise FailureConfig(max_restarts=...) or "
            "FailureConfig(progress_timeout_s=...) if this is expected.",
            rank=failure.rank, node_id=failure.node_id, kind=failure.kind.value,
            reason=failure.reason, restarts=self.restarts, job=self.spec.name)
