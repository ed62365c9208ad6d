"""What a simulation measured: the recorder that integrates over time, and the report."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ainative.policy.admission import Job
from ainative.policy.engine import Engine
from ainative.policy.fairshare import jain
from ainative.policy.gpuindex import GpuIndex
from ainative.sim.trace import TraceJob

KEYS = ("avg_jct_s", "p50_jct_s", "p99_jct_s", "avg_wait_s", "max_wait_s", "gpu_utilization",
        "makespan_s", "jain_fairness", "preemptions", "unscheduled_jobs", "fragmentation",
        "decision_latency_p50_ms", "decision_latency_p99_ms")


def _pct(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))]


@dataclasses.dataclass(slots=True)
class Report:
    """The figures of one run; ``to_dict()`` has the documented keys plus ``teams``."""

    policy: str
    figures: dict[str, float]
    teams: dict[str, dict[str, float]]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, **self.figures, "teams": self.teams, **self.extra}

    def table(self) -> str:
        lines = [f"policy: {self.policy}"]
        lines += [f"  {k:<26} {self.figures[k]:>14.4g}" for k in KEYS]
        lines += [f"  {k:<26} {v}" for k, v in self.extra.items() if not isinstance(v, (list, dict))]
        lines.append(f"  {'team':<10} {'jobs':>6} {'avg_jct_s':>11} {'avg_wait_s':>11} {'gpu_h':>10} "
                     f"{'share':>7}")
        for name, t in sorted(self.teams.items()):
            lines.append(f"  {name:<10} {t['jobs']:>6.0f} {t['avg_jct_s']:>11.0f} {t['avg_wait_s']:>11.0f} "
                         f"{t['gpu_hours']:>10.1f} {t['normalised_share']:>7.3f}")
        return "\n".join(lines)


class Recorder:
    """Integrates utilisation, fair-share entitlement and fragmentation between events."""

    def __init__(self, engine: Engine, index: GpuIndex, weights: Mapping[str, float]) -> None:
        self.engine, self.index, self.weights = engine, index, dict(weights)
        self.capacity = sum(index.total.values())
        self.now = self.first = math.inf
        self.busy_gpu_s = 0.0
        self.busy_contended_s = self.contended_s = 0.0
        self.pending_gpus: dict[str, float] = {}
        self.run_gpus: dict[str, float] = {}
        self.pending_jobs = 0
        self.pending_sizes: dict[str | None, dict[float, int]] = {}   # type (None: any) -> size -> jobs
        self.held_s: dict[str, float] = {}
        self.entitled_s: dict[str, float] = {}
        self.frag_ratio, self.frag_s, self.frag_time = 0.0, 0.0, 0.0
        self.jct: dict[str, list[float]] = {}
        self.wait: dict[str, list[float]] = {}
        self.wait_ratio: list[float] = []
        self.wait_share: list[float] = []
        self.gpu_s: dict[str, float] = {}
        self.preemptions = self.stops = 0
        self.rejections: list[str] = []
        self.last_end = 0.0

    def advance(self, now: float) -> None:
        if self.now == math.inf:
            self.now = self.first = now
            return
        dt = now - self.now
        if dt <= 0:
            return
        held = self.run_gpus      # placed GPUs (kueue charges quota before placement: not busy)
        self.busy_gpu_s += sum(held.values()) * dt
        if self.pending_jobs > 0:
            demand = {q: held.get(q, 0.0) + self.pending_gpus.get(q, 0.0) for q in self.weights}
            for q, ent in _water_fill(demand, self.weights, self.capacity).items():
                if ent > 0:
                    self.entitled_s[q] = self.entitled_s.get(q, 0.0) + ent * dt
                    self.held_s[q] = self.held_s.get(q, 0.0) + held.get(q, 0.0) * dt
            self.busy_contended_s += sum(held.values()) * dt
            self.contended_s += dt
            self.frag_s += self.frag_ratio * dt
            self.frag_time += dt
        self.now = now

    def submitted(self, job: Job) -> None:
        self.pending_gpus[job.queue] = self.pending_gpus.get(job.queue, 0.0) + job.gpus
        self.pending_jobs += 1
        sizes = self.pending_sizes.setdefault(job.gpu_type, {})
        sizes[job.gpus] = sizes.get(job.gpus, 0) + 1

    def started(self, job: Job) -> None:
        self.run_gpus[job.queue] = self.run_gpus.get(job.queue, 0.0) + job.gpus
        self.pending_gpus[job.queue] -= job.gpus
        self.pending_jobs -= 1
        # A job started, taken as a victim and started again in one pass is counted back in by
        # ``preempted`` after its two starts: counts may dip below zero for that moment.
        sizes = self.pending_sizes.setdefault(job.gpu_type, {})
        sizes[job.gpus] = sizes.get(job.gpus, 0) - 1
        if not sizes[job.gpus]:
            del sizes[job.gpus]

    def preempted(self, job: Job) -> None:
        self.run_gpus[job.queue] -= job.gpus
        self.preemptions += 1
        self.submitted(job)

    def stopped(self, job: Job, now: float) -> None:
        self.run_gpus[job.queue] -= job.gpus
        self.stops += 1

    def finished(self, job: Job, now: float) -> None:
        self.run_gpus[job.queue] -= job.gpus
        d0 = float(job.metadata["duration0"])
        jct = now - job.submit_s
        self.jct.setdefault(job.queue, []).append(jct)
        self.wait.setdefault(job.queue, []).append(max(0.0, jct - d0))
        self.wait_ratio.append(max(0.0, jct - d0) / max(d0, 600.0))
        self.wait_share.append(max(0.0, jct - d0) / jct if jct > 0 else 0.0)
        self.gpu_s[job.queue] = self.gpu_s.get(job.queue, 0.0) + job.gpus * d0
        self.last_end = max(self.last_end, now)

    def rejected(self, tj: TraceJob, why: str) -> None:
        self.rejections.append(why)

    def sample_fragmentation(self) -> None:
        # The smallest waiting request of each type, from counts kept as jobs come and go (a
        # scan of the pending jobs here cost more than the whole policy at 100,000 jobs).
        need: dict[str, float] = {}
        def least_of(sizes: dict[float, int] | None) -> float:
            return min((g for g, n in (sizes or {}).items() if n > 0), default=math.inf)

        anytype = least_of(self.pending_sizes.get(None))
        for t in self.index.gpu_types():
            least = min(least_of(self.pending_sizes.get(t)), anytype)
            if least < math.inf:
                need[t] = least
        free = self.index.free_gpus()
        self.frag_ratio = self.index.unusable_free(need) / free if free > 0 and need else 0.0

    def report(self, left: list[Job]) -> Report:
        jct = [x for v in self.jct.values() for x in v]
        wait = [x for v in self.wait.values() for x in v]
        makespan = max(0.0, self.last_end - self.first) if jct else 0.0
        shares = {q: self.held_s[q] / self.entitled_s[q] for q in self.entitled_s if self.entitled_s[q] > 0}
        lat = [x * 1000 for x in self.engine.latencies_s]
        figures = {
            "avg_jct_s": sum(jct) / len(jct) if jct else 0.0, "p50_jct_s": _pct(jct, 50),
            "p99_jct_s": _pct(jct, 99), "avg_wait_s": sum(wait) / len(wait) if wait else 0.0,
            "max_wait_s": max(wait, default=0.0),
            "gpu_utilization": self.busy_gpu_s / (self.capacity * makespan) if makespan else 0.0,
            "makespan_s": makespan, "jain_fairness": jain([min(s, 1.0) for s in shares.values()]),
            "preemptions": float(self.preemptions),
            "unscheduled_jobs": float(len(left) + len(self.rejections)),
            "fragmentation": self.frag_s / self.frag_time if self.frag_time else 0.0,
            "decision_latency_p50_ms": _pct(lat, 50), "decision_latency_p99_ms": _pct(lat, 99)}
        teams = {q: {"jobs": float(len(v)), "avg_jct_s": sum(v) / len(v),
                     "avg_wait_s": sum(self.wait[q]) / len(self.wait[q]), "max_wait_s": max(self.wait[q]),
                     "gpu_hours": self.gpu_s.get(q, 0.0) / 3600, "normalised_share": shares.get(q, 1.0)}
                 for q, v in self.jct.items()}
        contended = self.capacity * self.contended_s
        extra = {"placement": self.engine.cfg.placement,
                 "gpu_utilization_contended": self.busy_contended_s / contended if contended else 0.0,
                 "completed_jobs": len(jct), "max_wait_over_duration": max(self.wait_ratio, default=0.0),
                 "p99_wait_over_duration": _pct(self.wait_ratio, 99), "decisions": len(lat),
                 "avg_wait_share": sum(self.wait_share) / len(self.wait_share) if self.wait_share else 0.0,
                 "rejected": self.rejections[:20]}
        return Report(self.engine.cfg.policy, figures, teams, extra)


def _water_fill(demand: Mapping[str, float], weights: Mapping[str, float],
                capacity: float) -> dict[str, float]:
    """Max-min weighted fair allocation of ``capacity`` to ``demand``: the entitlement."""
    out = dict.fromkeys(demand, 0.0)
    active = {q for q, d in demand.items() if d > 1e-9}
    left = capacity
    while active and left > 1e-9:
        wsum = sum(weights[q] for q in active)
        done = {q for q in active if demand[q] - out[q] <= left * weights[q] / wsum + 1e-9}
        if not done:
            for q in active:
                out[q] += left * weights[q] / wsum
            break
        for q in done:
            left -= demand[q] - out[q]
            out[q] = demand[q]
        active -= done
    return out
