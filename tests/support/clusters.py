"""Ray clusters for tests, shared across modules.

Ray allows one driver connection per process, so the test session holds at most one cluster at a
time: ``local_ray()`` reuses the embedded local Ray when it is already up and
``logical_gpu_cluster(...)`` starts a multi-node ``ray.cluster_utils.Cluster`` (shutting the
previous one down). Modules that use the same kind of cluster should sit in the same files so the
switch happens rarely. Nothing here uses a machine-wide ``ray stop``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from typing import Any

import ray

import ainative
from ainative.cluster import background, local

# Node death visible in ~1.5 s instead of ~15 s (RAY-ON-THIS-MACHINE.md).
FAST_FAILURE_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                       "health_check_initial_delay_ms": 0}
LOCAL_DEFAULTS: dict[str, Any] = dict(num_cpus=4, num_gpus=4, accelerator_type="H100",
                                      include_dashboard=False)

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Test clusters' workers at the test's own priority, as connect() does for a cluster it starts.
os.environ.setdefault(local.WORKER_NICENESS_ENV, "0")


@dataclasses.dataclass
class _Current:
    kind: str | None = None
    key: Any = None
    handle: Any = None


_CURRENT = _Current()


def shutdown_current() -> None:
    background.stop_all()        # as Cluster.shutdown does: no background Ray call in flight
    if _CURRENT.kind in ("multinode", "netns"):
        _CURRENT.handle.shutdown()
    elif ray.is_initialized():
        ray.shutdown()
    local._CURRENT = None
    _CURRENT.kind = _CURRENT.key = _CURRENT.handle = None


def local_ray(**overrides: Any) -> ainative.Cluster:
    """The embedded local Ray (4 logical CPUs, 4 logical H100s by default), reused when up."""
    key = tuple(sorted({**LOCAL_DEFAULTS, **overrides}.items()))
    if (_CURRENT.kind == "local" and _CURRENT.key == key and ray.is_initialized()
            and local._gcs_address() == _CURRENT.handle.address):  # still the Ray we started
        return _CURRENT.handle
    shutdown_current()
    cluster = ainative.connect(**dict(key))
    _CURRENT.kind, _CURRENT.key, _CURRENT.handle = "local", key, cluster
    return cluster


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    gpus: int = 2
    accelerator_type: str | None = "H100"
    cpus: int = 2
    object_store_bytes: int = 150 * 2**20
    custom: tuple[tuple[str, float], ...] = ()

    def node_args(self) -> dict[str, Any]:
        resources = dict(self.custom)
        if self.accelerator_type:
            resources[ainative.Accelerator(self.accelerator_type).resource_name] = 1.0
        return dict(num_cpus=self.cpus, num_gpus=self.gpus, resources=resources,
                    object_store_memory=self.object_store_bytes)


class LogicalGpuCluster:
    """A multi-node Ray cluster on this machine with logical GPUs of named types.

    The head node has CPUs only (it runs drivers' bookkeeping); workers are ``NodeSpec``s. Fault
    tests call ``remove_node`` (hard kill) and see the death in ~1.5 s.
    """

    def __init__(self, workers: Iterable[NodeSpec], head_cpus: int = 1) -> None:
        from ray.cluster_utils import Cluster

        self.cluster = _retry_start(lambda: Cluster(initialize_head=True, connect=False,
                                                    head_node_args={
            "num_cpus": head_cpus, "num_gpus": 0, "include_dashboard": False,
            "_system_config": FAST_FAILURE_CONFIG}))
        self.specs: dict[str, NodeSpec] = {}
        self.workers: list[Any] = []
        for spec in workers:
            self.add_node(spec, wait=False)
        self.cluster.wait_for_nodes()
        self.cluster.connect(namespace="ainative")
        local._CURRENT = local.Cluster(self.cluster.address, "ainative", owned=False)

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_node(self, spec: NodeSpec = NodeSpec(), *, wait: bool = True) -> Any:
        node = _retry_start(lambda: self.cluster.add_node(wait=wait, **spec.node_args()))
        self.specs[node.node_id] = spec
        self.workers.append(node)
        return node

    def remove_node(self, node: Any, *, graceful: bool = False) -> None:
        self.cluster.remove_node(node, allow_graceful=graceful)
        self.workers.remove(node)

    def wait_node_dead(self, node_id: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()):
                return
            time.sleep(0.1)
        raise TimeoutError(f"node {node_id} still alive after {timeout_s} s")

    def shutdown(self) -> None:
        background.stop_all()
        if ray.is_initialized():
            ray.shutdown()
        self.cluster.shutdown()


def _retry_start(start: Any, attempts: int = 3) -> Any:
    """Start a Ray node, again when its raylet misses Ray's fixed 30 s registration wait (two
    saturated cores); a failed try's half-started processes are stopped first, as
    ``ainative.connect`` does for the embedded Ray."""
    for attempt in range(1, attempts + 1):
        before = local._children()
        try:
            return start()
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise
            local._stop_new_children(before)
    raise AssertionError("unreachable")


def logical_gpu_cluster(workers: Iterable[NodeSpec], head_cpus: int = 1) -> LogicalGpuCluster:
    """Start a fresh multi-node cluster (the previous cluster of this session is shut down)."""
    shutdown_current()
    cluster = LogicalGpuCluster(list(workers), head_cpus=head_cpus)
    _CURRENT.kind, _CURRENT.key, _CURRENT.handle = "multinode", None, cluster
    return cluster


def adopt(kind: str, handle: Any) -> None:
    """Make ``handle`` (with a ``shutdown()`` that disconnects and stops it) this session's cluster;
    the caller ran ``shutdown_current()`` before it connected. Used by tests/faults."""
    _CURRENT.kind, _CURRENT.key, _CURRENT.handle = kind, None, handle


def held() -> dict[str, list[str]]:
    """What is held right now (see ``leaks``); a test takes this before it runs."""
    return _leaks_now(())


def leaks(*, before: dict[str, list[str]] | None = None, ignore_actor_classes: Iterable[str] = (),
          wait_s: float = 10.0) -> dict[str, list[str]]:
    """What is still held: placement groups not REMOVED, alive actors, and resources whose free
    amount is below the total (a custom resource or GPU not given back), minus what was already
    held ``before`` the test (a detached service another module started is not this test's leak).
    Polls up to ``wait_s`` because Ray frees resources asynchronously after a kill."""
    ignore = tuple(ignore_actor_classes)
    deadline = time.monotonic() + wait_s
    while True:
        found = _leaks_now(ignore)
        if before:
            found = {k: [x for x in v if x not in set(before.get(k, ()))] for k, v in found.items()}
        if not any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _leaks_now(ignore: tuple[str, ...]) -> dict[str, list[str]]:
    from ray._private import state as ray_state
    from ray.util import placement_group_table

    pgs = [f"{pid} {info.get('name')} {info['state']}" for pid, info in placement_group_table().items()
           if info["state"] != "REMOVED"]
    actors = [f"{a.get('ActorClassName', a.get('class_name'))} {aid}"
              for aid, a in ray_state.actors().items()
              if a.get("State") not in ("DEAD", 4) and not str(
                  a.get("ActorClassName", "")).startswith(ignore or ("\0",))]
    held = []
    total = ray_state.total_resources_per_node()
    free = ray_state.available_resources_per_node()
    for node_id, res in total.items():
        for key, amount in res.items():
            if key in ("CPU", "GPU") or key.startswith("accelerator_type:"):
                if free.get(node_id, {}).get(key, 0.0) + 1e-6 < amount:
                    held.append(f"{key} on {node_id[:8]}: {free.get(node_id, {}).get(key, 0.0)}/{amount}")
    return {"placement_groups": pgs, "actors": actors, "resources": held}


def two_team_scheduler(state_dir: str) -> Any:
    """Generator for a module fixture: 2 nodes x 2 logical H100s, and a scheduler with queues "a"
    and "b" (2 H100 each, one cohort, no protection window) whose state lives in ``state_dir``.
    Restores the environment and shuts everything down afterwards."""
    from ainative import scheduling
    from ainative.policy.engine import PolicyConfig

    previous = os.environ.get("AINATIVE_SCHEDULER_STATE_DIR")
    os.environ["AINATIVE_SCHEDULER_STATE_DIR"] = state_dir
    cluster = logical_gpu_cluster([NodeSpec(gpus=2, cpus=2), NodeSpec(gpus=2, cpus=2)])
    try:
        scheduling.configure([ainative.Queue("a", quota={"H100": 2}, cohort="r"),
                              ainative.Queue("b", quota={"H100": 2}, cohort="r")],
                             policy=PolicyConfig(min_runtime_s=0, preempt_retry_s=0), fresh=True)
        yield cluster
    finally:
        scheduling.shutdown()
        shutdown_current()
        if previous is None:
            os.environ.pop("AINATIVE_SCHEDULER_STATE_DIR", None)
        else:
            os.environ["AINATIVE_SCHEDULER_STATE_DIR"] = previous
