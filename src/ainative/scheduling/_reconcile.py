"""The live scheduler's view of what Ray is actually doing, refreshed about once a second.

::

    snapshot()  ── ray.nodes() + available resources per node + placement_group_table()
                   (+ the live Serve replica actors, when an endpoint is admitted) ──> Snapshot
    attribute(snapshot, running jobs)
        ├─ each CREATED placement group holding GPUs is matched to a running admitted job
        │  (by name first, then by shape): the job's placement becomes the group's real nodes
        ├─ each Serve replica actor of an admitted endpoint (``SERVE_REPLICA::<endpoint>#...``,
        │  GPUs, no placement group) is matched to a bundle of that endpoint's leases (a bundle
        │  keeps a replica on its own node first): the lease's placement follows where Serve
        │  really started its replicas, which is not where the scheduler planned them (Serve
        │  places replicas as plain actors); a bundle with no replica yet keeps its plan
        └─ what Ray reports in use on a node, less the matched groups and replicas and the plans
           of admitted jobs with nothing matched yet, is "external": held by something the
           scheduler did not admit (a replica beyond its endpoint's leases is external too)

``attribute`` is pure (unit-tested without Ray); ``snapshot`` is the only part that talks to Ray
and costs three GCS round trips (five with endpoints: the live and starting actors).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any

_EPS = 1e-6


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    """A placement group holding resources now (state CREATED or RESCHEDULING)."""

    pg_id: str
    name: str
    bundles: tuple[Mapping[str, float], ...]
    nodes: tuple[str, ...]             # node id of each bundle ("" when not placed)

    @property
    def gpus(self) -> float:
        return sum(float(b.get("GPU", 0.0)) for b in self.bundles)


@dataclasses.dataclass(frozen=True, slots=True)
class Replica:
    """A Serve replica actor holding GPUs outside any placement group, on a node."""

    name: str                          # SERVE_REPLICA::<app>#<deployment>#<id>
    node: str
    gpus: float

    def endpoint(self) -> str:
        """The Serve application (ainative: the endpoint's name) the replica belongs to."""
        return self.name[len(REPLICA_PREFIX):].split("#", 1)[0]


REPLICA_PREFIX = "SERVE_REPLICA::"


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    totals: Mapping[str, Mapping[str, float]]          # alive nodes -> total resources
    gpus_in_use: Mapping[str, float]                   # alive nodes -> GPUs Ray counts as taken
    groups: tuple[Group, ...]
    took_s: float
    replicas: tuple[Replica, ...] = ()


@dataclasses.dataclass(slots=True)
class Attribution:
    placements: dict[str, list[tuple[str, float, dict[str, float]]]]   # job id -> real placement
    external: dict[str, float]                                          # node -> GPUs not ours
    matched: dict[str, str]                                             # job id -> pg id


def snapshot(replicas: bool = False) -> Snapshot:
    """Read Ray's node table, free resources and placement groups (needs a Ray connection);
    with ``replicas``, also the Serve replica actors that hold GPUs."""
    import ray
    from ray._private import state as ray_state
    from ray.util import placement_group_table

    from ainative.cluster import state

    t0 = time.perf_counter()
    totals: dict[str, dict[str, float]] = {}
    for node in ray.nodes():
        if node.get("Alive"):
            totals[node["NodeID"]] = state._public(node.get("Resources", {}))
    free = ray_state.available_resources_per_node()
    in_use = {n: max(0.0, t.get("GPU", 0.0) - float(free.get(n, {}).get("GPU", 0.0)))
              for n, t in totals.items()}
    groups = []
    for pg_id, info in placement_group_table().items():
        if info.get("state") not in ("CREATED", "RESCHEDULING"):
            continue
        bundles = info.get("bundles") or {}
        order = sorted(bundles)
        where = info.get("bundles_to_node_id") or {}
        groups.append(Group(str(pg_id), str(info.get("name") or ""),
                            tuple({k: float(v) for k, v in bundles[i].items()} for i in order),
                            tuple(str(where.get(i, "")) for i in order)))
    found = _serve_replicas(set(totals)) if replicas else ()
    return Snapshot(totals, in_use, tuple(groups), time.perf_counter() - t0, found)


def _serve_replicas(alive: set[str]) -> tuple[Replica, ...]:
    """Serve replica actors holding GPUs without a placement group, starting or alive. Read
    from the GCS actor table filtered by state (two round trips), parsed here for the actor's
    required resources and node, which the public dict form of the table leaves out."""
    from ray._private import state as ray_state
    from ray.core.generated import gcs_pb2

    accessor = ray_state.state._connect_and_get_accessor()
    found = []
    for state_name in ("ALIVE", "PENDING_CREATION"):
        for raw in accessor.get_actor_table(None, state_name):
            actor = gcs_pb2.ActorTableData.FromString(raw)  # type: ignore[attr-defined]
            gpus = float(actor.required_resources.get("GPU", 0.0))
            pg = actor.placement_group_id          # a nil id is empty or all 0xff bytes
            if not actor.name.startswith(REPLICA_PREFIX) or gpus <= _EPS \
                    or pg.strip(b"\xff"):
                continue
            node = (actor.node_id or actor.address.node_id).hex()
            if node in alive:          # not placed yet: it holds nothing, its lease keeps the plan
                found.append(Replica(actor.name, node, gpus))
    return tuple(sorted(found, key=lambda r: r.name))


def attribute(snap: Snapshot, running: Iterable[Any]) -> Attribution:
    """Match placement groups to running jobs and compute per-node external GPUs.

    ``running``: objects with ``job_id``, ``gpus``, ``bundles``, ``placement`` and
    ``metadata['name']`` (``policy.admission.Job``)."""
    jobs = [j for j in running if j.gpus > _EPS]
    free_groups = [g for g in snap.groups if g.gpus > _EPS and all(g.nodes)]
    matched: dict[str, str] = {}
    placements: dict[str, list[tuple[str, float, dict[str, float]]]] = {}

    def claim(job: Any, group: Group) -> None:
        matched[job.job_id] = group.pg_id
        placements[job.job_id] = [(n, float(b.get("GPU", 0.0)), dict(b))
                                  for n, b in zip(group.nodes, job.bundles)]
        free_groups.remove(group)

    grouped = [j for j in jobs if j.metadata.get("kind") != "endpoint"]   # replicas: no groups
    for job in grouped:                                # by name: the job id or the job's name
        names = (job.job_id, str(job.metadata.get("name") or "\0"))
        for group in free_groups:
            if _same_shape(job, group) and any(n and n in group.name for n in names):
                claim(job, group)
                break
    for job in sorted((j for j in grouped if j.job_id not in matched),
                      key=lambda j: j.start_s or 0.0):  # then by shape, oldest job first
        for group in free_groups:
            if _same_shape(job, group):
                claim(job, group)
                break
    _attribute_replicas(snap.replicas, [j for j in jobs if j.job_id not in matched], placements)
    ours: dict[str, float] = {}
    for job in jobs:
        for node, gpus, _ in placements.get(job.job_id) or (job.placement or ()):
            ours[node] = ours.get(node, 0.0) + gpus
    external = {}
    for node, used in snap.gpus_in_use.items():
        extra = used - ours.get(node, 0.0)
        if extra > _EPS:
            external[node] = round(extra, 6)
    return Attribution(placements, external, matched)


def _attribute_replicas(replicas: Iterable[Replica], jobs: list[Any],
                        placements: dict[str, list[tuple[str, float, dict[str, float]]]]) -> None:
    """Each endpoint lease's bundles take that endpoint's replicas: first a replica on the node
    the bundle is on now (a placement is stable while nothing moves), then any replica of the
    same size; the base lease (admitted first) before the extras. A bundle no replica is left
    for keeps where it was planned."""
    by_endpoint: dict[str, list[Replica]] = {}
    for r in replicas:
        by_endpoint.setdefault(r.endpoint(), []).append(r)
    leases: dict[str, list[Any]] = {}
    for job in jobs:
        ep = job.metadata.get("endpoint")
        if ep and ep in by_endpoint:
            leases.setdefault(str(ep), []).append(job)
    for ep, group in leases.items():
        left = list(by_endpoint[ep])
        group.sort(key=lambda j: (j.preemptible, j.start_s or 0.0, j.job_id))
        slots = [(job, i, b, (job.placement or [])[i][0] if i < len(job.placement or []) else "")
                 for job in group for i, b in enumerate(job.bundles)]
        got: dict[tuple[str, int], str] = {}
        for same_node in (True, False):
            for job, i, bundle, planned in slots:
                if (job.job_id, i) in got:
                    continue
                want = float(bundle.get("GPU", 0.0))
                hit = next((r for r in left if abs(r.gpus - want) <= _EPS
                            and (not same_node or r.node == planned)), None)
                if hit is not None:
                    left.remove(hit)
                    got[(job.job_id, i)] = hit.node
        for job in group:
            plan = list(job.placement or [])
            if not any((job.job_id, i) in got for i in range(len(job.bundles))):
                continue
            placements[job.job_id] = [
                (got.get((job.job_id, i)) or (plan[i][0] if i < len(plan) else ""),
                 float(b.get("GPU", 0.0)), dict(b)) for i, b in enumerate(job.bundles)]
            placements[job.job_id] = [p for p in placements[job.job_id] if p[0]]


def _same_shape(job: Any, group: Group) -> bool:
    return (len(group.bundles) == len(job.bundles)
            and abs(group.gpus - job.gpus) <= _EPS)


def measure(runs: int = 20) -> dict[str, float]:
    """Wall time of ``snapshot()`` in ms (mean, max) over ``runs`` calls: what one reconcile costs."""
    took = [snapshot().took_s for _ in range(runs)]
    return {"mean_ms": 1000 * sum(took) / len(took), "max_ms": 1000 * max(took), "runs": float(runs)}
