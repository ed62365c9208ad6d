"""The workers of one attempt: one actor per bundle of a gang, ranked by node, started in parallel.

::

    reserve gang ─> bundle -> node ─> ranks (grouped by node: node_rank, local_rank)
         │                                   │
         └─> N actors created at once ─> info() x N (node, IP, GPU ids, rank 0's free port)
                                              └─> start(spec) x N ─> train threads rendezvous
    controller ── poll() x N every ~0.1 s ──> reports (rank 0), states, log lines, progress age

With ``FailureConfig(standby_workers=k)`` the controller keeps k warm spare processes on each node
of the running gang (``Standbys``: torch imported, no resources). A later gang adopts a spare on a
bundle's node instead of creating an actor, so a restart skips process start and ``import torch``;
the bundle's resources stay reserved by the placement group, and its GPU ids come from a short task
in the bundle (what a fresh actor would have been given).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from ainative import resources as res
from ainative.scheduling import placement
from ainative.train import _dist, _worker

logger = logging.getLogger(__name__)


class StartInterrupted(Exception):
    """``should_stop`` answered True while the gang's workers were still starting."""


@dataclasses.dataclass(frozen=True, slots=True)
class RankSlot:
    """Where one rank lives: its bundle, node and position on that node."""

    rank: int
    bundle: int
    node_id: str
    node_rank: int
    local_rank: int
    local_world_size: int


def assign_ranks(bundle_nodes: list[str]) -> list[RankSlot]:
    """Ranks grouped by node (nodes in order of their first bundle), so that ranks on one node are
    contiguous and ``local_rank``/``node_rank`` match torchrun's convention."""
    order: list[str] = []
    for node in bundle_nodes:
        if node not in order:
            order.append(node)
    slots: list[RankSlot] = []
    for node_rank, node in enumerate(order):
        bundles = [i for i, n in enumerate(bundle_nodes) if n == node]
        for local_rank, bundle in enumerate(bundles):
            slots.append(RankSlot(len(slots), bundle, node, node_rank, local_rank, len(bundles)))
    return slots


def visible_devices(slots: list[RankSlot], gpu_ids: list[list[str]]) -> list[tuple[str | None, int | None]]:
    """Per rank: CUDA_VISIBLE_DEVICES (every GPU of the job on that node, so NCCL can use P2P) and
    the index of the rank's own GPU in that list."""
    per_node: dict[str, list[str]] = {}
    for slot, ids in zip(slots, gpu_ids, strict=True):
        per_node.setdefault(slot.node_id, []).extend(ids)
    out: list[tuple[str | None, int | None]] = []
    for slot, ids in zip(slots, gpu_ids, strict=True):
        if not ids:
            out.append((None, None))
            continue
        node_ids = sorted(set(per_node[slot.node_id]), key=lambda g: (len(g), g))
        out.append((",".join(node_ids), node_ids.index(ids[0])))
    return out


def _get(refs: list[Any], timeout_s: float, should_stop: Callable[[], bool] | None) -> list[Any]:
    """``ray.get(refs, timeout=timeout_s)`` that asks ``should_stop`` every 0.5 s meanwhile."""
    import ray

    deadline = time.monotonic() + timeout_s
    while should_stop is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=min(0.5, left))
        if len(ready) == len(refs):
            break
        if should_stop():
            raise StartInterrupted()
    return list(ray.get(refs, timeout=max(0.0, deadline - time.monotonic())))


_REMOTE: list[Any] = []


def _remote_class() -> Any:
    # One Ray actor class per process: re-wrapping would re-export the class on every restart.
    if not _REMOTE:
        import ray

        _REMOTE.extend((ray.remote(_worker.TrainWorker), ray.remote(_bundle_gpu_ids)))
    return _REMOTE[0]


def _gpu_ids_task() -> Any:
    """The task that reads a bundle's GPU ids (exported once per process, like the actor)."""
    _remote_class()
    return _REMOTE[1]


def _bundle_gpu_ids() -> list[str]:
    import ray

    return [str(g) for g in ray.get_gpu_ids()]


class Standbys:
    """Warm spare worker processes of one job: ``per_node`` on each node it runs on. A spare is a
    TrainWorker actor named ``ainative-standby-<job>-<id>`` with no resources (pinned to its
    node), importing torch from the moment it starts; ``take`` hands one over to a new gang,
    ``replenish`` tops the nodes up again."""

    def __init__(self, job_name: str, cpus: float, per_node: int) -> None:
        self.job_name, self.cpus, self.per_node = job_name, cpus, per_node
        self._by_node: dict[str, list[Any]] = {}

    def take(self, node_id: str) -> Any | None:
        spares = self._by_node.get(node_id)
        return spares.pop() if spares else None

    def replenish(self, nodes: list[str]) -> None:
        """``per_node`` spares on each of ``nodes`` (started in the background); spares on other
        nodes (the job left them, or they died) are killed."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        wanted = list(dict.fromkeys(nodes))
        for node in [n for n in self._by_node if n not in wanted]:
            _kill(self._by_node.pop(node))
        for node in wanted:
            spares = self._by_node.setdefault(node, [])
            while len(spares) < self.per_node:
                strategy = NodeAffinitySchedulingStrategy(node, soft=False)
                spares.append(_remote_class().options(
                    num_cpus=0, max_restarts=0, scheduling_strategy=strategy,
                    name=f"ainative-standby-{self.job_name}-{uuid.uuid4().hex[:8]}").remote(
                        self.job_name, -1, self.cpus))

    def shutdown(self) -> None:
        for spares in self._by_node.values():
            _kill(spares)
        self._by_node = {}


def _kill(actors: list[Any]) -> None:
    import ray

    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception as exc:
            logger.debug("kill of a train worker failed: %s", exc)


class WorkerGroup:
    """A gang and its actors. ``start`` releases everything it took when it fails."""

    def __init__(self, gang: placement.Gang, actors: list[Any], slots: list[RankSlot]) -> None:
        self.gang, self.actors, self.slots = gang, actors, slots
        self.job_name, self.cpus = "", 1.0
        self.standby: Standbys | None = None
        self.adopted: set[int] = set()        # ranks whose actor is an adopted standby
        self.taken_now: set[int] = set()      # ranks that adopted a spare in the latest start
        self.infos: list[dict[str, Any]] = []
        self._acks: dict[str, int] = {}      # actor id -> seq of the last poll reply received
        self.unreachable: set[str] = set()    # nodes the controller's liveness probes lost
        self.give_up: Callable[[], bool] | None = None   # ends a poll early (a rank was lost)

    def __len__(self) -> int:
        return len(self.actors)

    @classmethod
    def start(cls, *, job_name: str, resources: res.Resources, size: int, strategy: str,
              timeout_s: float, spec_for: Callable[[RankSlot], dict[str, Any]],
              reserve_timeout_s: float | None = None,
              should_stop: Callable[[], bool] | None = None,
              standby: Standbys | None = None, avoid_nodes: tuple[str, ...] = ()) -> WorkerGroup:
        """Reserve the gang and start its workers; ``should_stop`` is asked about twice a second
        while they start (process start and imports take seconds on a busy node) and ends the
        start with StartInterrupted, everything released. No bundle lands on ``avoid_nodes``."""
        gang = placement.reserve([resources] * size, strategy,
                                 timeout_s=reserve_timeout_s or timeout_s,
                                 name=f"ainative-train-{job_name}-{uuid.uuid4().hex[:6]}",
                                 avoid_nodes=avoid_nodes)
        group = cls(gang, [], [])
        group.standby = standby
        try:
            group._launch(job_name, resources, timeout_s, spec_for, should_stop)
        except BaseException:
            group.shutdown()
            raise
        return group

    def _launch(self, job_name: str, resources: res.Resources, timeout_s: float,
                spec_for: Callable[[RankSlot], dict[str, Any]],
                should_stop: Callable[[], bool] | None) -> None:
        self.job_name, self.cpus = job_name, float(resources.cpus)
        self.taken_now = set()
        self.slots = assign_ranks(self.gang.bundle_nodes())
        self.actors = [self._new_actor(slot) for slot in self.slots]
        self._rendezvous(timeout_s, spec_for, should_stop)

    def _new_actor(self, slot: RankSlot) -> Any:
        """A warm standby on the slot's node when there is one, else a new actor in its bundle."""
        spare = self.standby.take(slot.node_id) if self.standby is not None else None
        if spare is not None:
            self.adopted.add(slot.rank)
            self.taken_now.add(slot.rank)
            return spare
        self.adopted.discard(slot.rank)
        return self._fresh_actor(slot)

    def _fresh_actor(self, slot: RankSlot) -> Any:
        opts = self.gang.actor_options(slot.bundle)
        return _remote_class().options(**opts, max_restarts=0).remote(
            self.job_name, slot.rank, self.cpus)

    def _infos(self, timeout_s: float, should_stop: Callable[[], bool] | None) -> list[dict[str, Any]]:
        """``info()`` of every rank. An adopted standby that died (say, its memory was reclaimed)
        is replaced by a new actor in its bundle; an adopted rank whose bundle has GPUs gets the
        bundle's GPU ids from a short task placed in it."""
        import ray

        refs = [a.info.remote(s.rank == 0, s.rank) for a, s in zip(self.actors, self.slots,
                                                                     strict=True)]
        gpu_refs: dict[int, Any] = {}
        for rank in sorted(self.adopted):
            opts = self.gang.actor_options(self.slots[rank].bundle)
            if opts.get("num_gpus"):
                gpu_refs[rank] = _gpu_ids_task().options(**opts).remote()
        try:
            infos = _get(refs, timeout_s, should_stop)
        except ray.exceptions.RayActorError:
            infos = []
            for rank, ref in enumerate(refs):
                try:
                    infos.append(ray.get(ref, timeout=timeout_s))
                except ray.exceptions.RayActorError:
                    if rank not in self.adopted:
                        raise
                    logger.info("standby for rank %d of %s is gone; starting a new worker",
                                rank, self.job_name)
                    self.adopted.discard(rank)
                    self.taken_now.discard(rank)
                    self.actors[rank] = self._fresh_actor(self.slots[rank])
                    gpu_refs.pop(rank, None)
                    infos.append(ray.get(self.actors[rank].info.remote(rank == 0, rank),
                                         timeout=timeout_s))
        for rank, ref in gpu_refs.items():
            infos[rank] = dict(infos[rank], gpu_ids=ray.get(ref, timeout=timeout_s))
        return infos

    def restart_in_place(self, keep: set[int], timeout_s: float,
                         spec_for: Callable[[RankSlot], dict[str, Any]],
                         should_stop: Callable[[], bool] | None = None) -> None:
        """Restart every rank on the same gang: ranks in ``keep`` (alive, train thread ended) reuse
        their warm process (torch already imported); the others get a new actor in their bundle."""
        import ray

        self.taken_now = set()
        for slot in self.slots:
            if slot.rank not in keep:
                try:
                    ray.kill(self.actors[slot.rank], no_restart=True)
                except Exception as exc:
                    logger.debug("kill of a train worker failed: %s", exc)
                self.actors[slot.rank] = self._new_actor(slot)
        self._rendezvous(timeout_s, spec_for, should_stop)

    def _rendezvous(self, timeout_s: float, spec_for: Callable[[RankSlot], dict[str, Any]],
                    should_stop: Callable[[], bool] | None = None) -> None:
        import ray

        self.infos = self._infos(timeout_s, should_stop)
        ips = [i["ip"] for i in self.infos]
        master = _dist.choose_master(ips[0], ips)
        devices = visible_devices(self.slots, [i["gpu_ids"] for i in self.infos])
        refs = []
        for actor, slot, info, (cvd, index) in zip(self.actors, self.slots, self.infos, devices,
                                                   strict=True):
            spec = spec_for(slot)
            spec.update(master_addr=master, master_port=self.infos[0]["port"], world_size=len(self),
                        node_rank=slot.node_rank, local_rank=slot.local_rank,
                        local_world_size=slot.local_world_size, node_id=slot.node_id,
                        gpu_ids=info["gpu_ids"], cuda_visible_devices=cvd, gpu_index=index)
            refs.append(actor.start.remote(spec))
        ray.get(refs, timeout=timeout_s)

    def poll(self, timeout_s: float) -> list[dict[str, Any] | BaseException | None]:
        """One poll per rank: its answer, the error if its actor died, or None if it did not answer
        within ``timeout_s`` (a process frozen while holding the GIL)."""
        import ray

        keys = [a._actor_id.hex() for a in self.actors]
        refs = [a.poll.remote(self._acks.get(key, 0)) for a, key in zip(self.actors, keys)]
        deadline = time.monotonic() + timeout_s
        while True:   # in slices, so that a rank the liveness probes lost ends the wait
            left = deadline - time.monotonic()
            ready, _ = ray.wait(refs, num_returns=len(refs),
                                timeout=max(0.0, min(left, 0.1) if self.give_up else left))
            if len(ready) == len(refs) or left <= 0 or (self.give_up and self.give_up()):
                break
        done = set(ready)
        out: list[dict[str, Any] | BaseException | None] = []
        for ref, key in zip(refs, keys):
            if ref not in done:     # its reports stay with the rank until a reply gets through
                out.append(None)
                continue
            try:
                answer = ray.get(ref)
            except Exception as exc:  # RayActorError and friends: the process or node is gone
                out.append(exc)
                continue
            self._acks[key] = int(answer.get("seq", 0))
            out.append(answer)
        return out

    def request_stop(self, mode: str) -> None:
        for actor in self.actors:
            actor.request_stop.remote(mode)

    def reusable(self) -> bool:
        """The gang is intact (no bundle's node died or went unreachable), so an in-place restart
        can use it."""
        return bool(self.actors) and not self.gang.released and not self.unreachable and \
            not self.gang.dead_bundles()

    def node_of(self, rank: int) -> str:
        return self.slots[rank].node_id if rank < len(self.slots) else ""

    def shutdown(self) -> None:
        """Kill every actor and release the gang (idempotent, never raises)."""
        _kill(self.actors)
        self.actors = []
        self.gang.release()
