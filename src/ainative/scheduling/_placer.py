"""The placer of the live scheduler: Ray bundles on the cluster's nodes, via ``policy.packing``.

Free capacity is the scheduler's own account (node totals less the gangs it admitted), so a
decision never races the placement groups being created for jobs admitted a moment ago.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ainative import resources as res
from ainative.policy import fragmentation, packing

Placement = list[tuple[str, float, dict[str, float]]]    # (node id, GPUs, bundle)


def job_gpu_type(bundles: Iterable[Mapping[str, float]]) -> str | None:
    for b in bundles:
        for k in b:
            if k.startswith(res.ACCELERATOR_PREFIX):
                return k[len(res.ACCELERATOR_PREFIX):].upper()
    return None


class BundlePlacer:
    def __init__(self, totals: Mapping[str, Mapping[str, float]], placement: str = "packed") -> None:
        self.placement = placement
        # per-GPU free fractions and the scorer that ranks nodes (policy.fragmentation)
        self.gpus = fragmentation.GpuLedger({}, placement)
        self.total: dict[str, float] = {}
        self.per_node: dict[str, int] = {}
        self.external: dict[str, float] = {}      # node -> GPUs held by what was not admitted
        self.reset(totals, {}, ())

    def reset(self, totals: Mapping[str, Mapping[str, float]], external: Mapping[str, float],
              held: Iterable[Placement]) -> None:
        """Rebuild from the live cluster: alive nodes' totals, GPUs held outside the scheduler, and
        the placements of the jobs it admitted (bundles on nodes that are gone are dropped)."""
        self.totals = {n: dict(t) for n, t in totals.items()}
        self.free = {n: dict(t) for n, t in totals.items()}
        self.node_type = {n: (res.accelerator_type_of(t) or "").upper() for n, t in totals.items()}
        self.external = {n: float(g) for n, g in external.items() if n in self.free and g > 0}
        # the per-GPU books are rebuilt too; the request mix seen so far is kept
        self.gpus = fragmentation.GpuLedger({n: t.get("GPU", 0.0) for n, t in totals.items()},
                                            self.placement, self.gpus.mix, tasks=self.gpus.tasks,
                                            cpus={n: t.get("CPU", 0.0) for n, t in totals.items()})
        for n, gpus in self.external.items():
            self.free[n]["GPU"] = self.free[n].get("GPU", 0.0) - gpus
            self.gpus.take(n, gpus, self.totals[n].get("GPU", 0.0), observe=False)
        for placement in held:
            self._book([p for p in placement if p[0] in self.free], observe=False)
        total: dict[str, float] = {}
        per_node: dict[str, int] = {}
        for n, t in self.totals.items():
            kind = self.node_type[n]
            if kind and t.get("GPU", 0) > 0:
                total[kind] = total.get(kind, 0.0) + t["GPU"]
                per_node[kind] = max(per_node.get(kind, 0), int(t["GPU"]))
        self.total.clear()         # in place: the engine's fair-share tracker holds these dicts
        self.total.update(total)
        self.per_node.clear()
        self.per_node.update(per_node)

    def external_by_type(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for n, gpus in self.external.items():
            kind = self.node_type.get(n) or "untyped"
            out[kind] = out.get(kind, 0.0) + gpus
        return out

    @property
    def free_total(self) -> dict[str, float]:
        out = dict.fromkeys(self.total, 0.0)
        for n, f in self.free.items():
            if self.node_type[n] in out:
                out[self.node_type[n]] += f.get("GPU", 0.0)
        return out

    def gpu_types(self) -> list[str]:
        return sorted(self.total)

    def _nodes(self, t: str, avoid: frozenset[Any],
               caps: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
        return {n: c for n, c in caps.items() if n not in avoid and (not t or self.node_type[n] == t)}

    def place_job(self, job: Any, t: str, avoid: frozenset[Any] = frozenset()) -> Placement | None:
        return self._assign(job, t, avoid, self.free)

    def _assign(self, job: Any, t: str, avoid: frozenset[Any],
                caps: Mapping[str, Mapping[str, float]]) -> Placement | None:
        nodes = self._nodes(t if job.gpus > 0 else "", avoid, caps)
        rank = self._rank if caps is self.free else None
        got = packing.assign(list(job.bundles), nodes, job.strategy, rank)
        if got is None:
            return None
        return [(n, float(b.get("GPU", 0.0)), dict(b)) for n, b in zip(got, job.bundles)]

    def _rank(self, node: str, need: Mapping[str, float]) -> Any:
        # the node's free CPU cores and the bundle's: best-fit and fgd weigh them (fragmentation)
        return self.gpus.rank(node, need.get("GPU", 0.0), self.totals.get(node, {}).get("GPU", 0.0),
                              free_cpus=self.free.get(node, {}).get("CPU", 0.0),
                              cpus=need.get("CPU", 0.0), model=self.node_type.get(node, ""),
                              wants=job_gpu_type([need]) or "")

    def take(self, placement: Placement) -> None:
        self._book(placement, observe=True)

    def _book(self, placement: Placement, *, observe: bool) -> None:
        for n, g, b in placement:
            if n not in self.free:           # a node that died since the job was placed
                continue
            self.gpus.take(n, g, self.totals.get(n, {}).get("GPU", 0.0), observe=observe,
                           cpus=b.get("CPU", 0.0), wants=job_gpu_type([b]) or "")
            for k, v in b.items():
                self.free[n][k] = self.free[n].get(k, 0.0) - v

    def release(self, placement: Placement) -> None:
        for n, g, b in placement:
            if n in self.free:
                self.gpus.release(n, g)
                for k, v in b.items():
                    self.free[n][k] = self.free[n].get(k, 0.0) + v

    def node_free(self, node: str) -> float:
        return self.free.get(node, {}).get("GPU", 0.0)

    def never_fits(self, job: Any) -> str | None:
        if job.gpu_type and job.gpu_type not in self.total:
            return f"the cluster has no {job.gpu_type} GPUs (it has: {', '.join(self.gpu_types()) or 'none'})"
        nodes = self._nodes(job.gpu_type or "", frozenset(), self.totals)
        if packing.assign(list(job.bundles), nodes, job.strategy) is None:
            return packing.shortfall(list(job.bundles), nodes, job.strategy)
        return None

    def shadow_job(self, job: Any, t: str,
                   releases: Iterable[tuple[float, Placement]]) -> tuple[float, frozenset[Any]] | None:
        caps = {n: dict(f) for n, f in self.free.items()}
        for end, placement in releases:
            for n, _, b in placement:
                for k, v in b.items():
                    caps[n][k] = caps[n].get(k, 0.0) + v
            got = self._assign(job, t, frozenset(), caps)
            if got is not None:
                return end, frozenset(n for n, _, _ in got)
        return None

    def free_histogram(self, t: str) -> str:
        parts = [f"{n[:8]}: {self.free[n].get('GPU', 0.0):g}/{self.totals[n].get('GPU', 0.0):g} GPU free, "
                 f"{self.free[n].get('CPU', 0.0):g} CPU" for n in sorted(self.free) if self.node_type[n] == t]
        return "; ".join(parts) or "no nodes"
