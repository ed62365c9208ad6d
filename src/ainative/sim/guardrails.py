"""Replay a trace through the scheduling engine with and without cost guardrails and count spend
and wasted GPU-hours. No Ray: the engine (``policy.engine``) and the guardrails
(``policy.cost.hook``) are the very code the live scheduler runs; only time is simulated.

::

    events (heap): submit ─┐           ┌─ natural end (the job's own outcome)
                           ├─> Engine.schedule(now) ─> started / stopped (guardrails)
    guard wake-up ─────────┘           └─> GuardrailsHook.next_wakeup(): the next cap, max
                                           runtime, idle window or usage change -> a wake-up event

A job's GPU time is wasted when its ``kind`` is not "healthy" (it fails, crash-loops, hangs or sits
idle): the public traces count waste this way, so guardrails can only shorten it, not relabel it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ainative.policy.cost import guardrails as g
from ainative.policy import pricing
from ainative.policy.admission import Job
from ainative.policy.cost.hook import GuardrailsHook
from ainative.sim import loop


@dataclasses.dataclass(frozen=True, slots=True)
class SimJob:
    """One trace job with what the guardrails see and how it really behaves."""

    job_id: str
    team: str
    submit_s: float
    run_s: float
    """How long it holds its GPUs if nobody stops it."""
    gpus: float
    gpu_type: str
    kind: str = "healthy"
    """"healthy", or waste: "fail_fast", "crash_loop", "hung", "idle"."""
    outcome: str = "succeeded"
    """How it ends when it runs its course: "succeeded", "failed", "cancelled"."""
    utilization: Any = 0.9
    """A float or ((offset_s, value), ...) steps from the start."""
    restart_offsets_s: tuple[float, ...] = ()
    expected_duration_s: float | None = None
    max_runtime_s: float | None = None
    idle: pricing.IdlePolicy | None = None


@dataclasses.dataclass(slots=True)
class JobResult:
    job_id: str
    team: str
    kind: str
    gpus: float
    submit_s: float
    start_s: float | None = None
    end_s: float | None = None
    outcome: str = "pending"

    @property
    def gpu_hours(self) -> float:
        if self.start_s is None or self.end_s is None:
            return 0.0
        return self.gpus * (self.end_s - self.start_s) / 3600.0


@dataclasses.dataclass(slots=True)
class SimResult:
    jobs: dict[str, JobResult]
    spend_usd: dict[str, float]
    events: list[tuple[float, str, g.Decision]]

    def wasted_gpu_hours(self) -> float:
        return sum(j.gpu_hours for j in self.jobs.values() if j.kind != "healthy")

    def total_gpu_hours(self) -> float:
        return sum(j.gpu_hours for j in self.jobs.values())

    def healthy_jct_s(self) -> dict[str, float]:
        return {j.job_id: j.end_s - j.submit_s for j in self.jobs.values()
                if j.kind == "healthy" and j.outcome == "succeeded" and j.end_s is not None}


def simulate(jobs: Sequence[SimJob], nodes: Sequence[tuple[str, str, float]], queues: Sequence[Any],
             prices: pricing.PriceTable, *, guarded: bool, config: g.GuardrailConfig | None = None,
             policy: Any = None) -> SimResult:
    """Run ``jobs`` on ``nodes``; ``guarded`` installs the guardrails hook (queue budgets from the
    queues, per-job limits from the jobs). Spend is priced the same way in both runs."""
    from ainative.policy.engine import Engine
    from ainative.policy.gpuindex import GpuIndex

    hook = GuardrailsHook.from_queues(queues, prices, config=config) if guarded else None
    engine = Engine(queues, GpuIndex(nodes), policy, hook)
    results = {j.job_id: JobResult(j.job_id, j.team, j.kind, j.gpus, j.submit_s) for j in jobs}
    by_id = {j.job_id: j for j in jobs}
    replay = _CostReplay(engine, by_id, results, hook)
    replay.submissions((j.submit_s, j.job_id) for j in jobs)
    replay.run()
    spend: dict[str, float] = {}
    for r in results.values():
        price = prices.gpu_hour_price(by_id[r.job_id].gpu_type)
        spend[r.team] = spend.get(r.team, 0.0) + price * r.gpu_hours
    return SimResult(jobs=results, spend_usd=spend, events=hook.events if hook is not None else [])


class _CostReplay(loop.Replay):
    max_passes = 2           # a second pass starts what the guardrails' stops freed
    incremental = False

    def __init__(self, engine: Any, by_id: dict[str, SimJob], results: dict[str, JobResult],
                 hook: GuardrailsHook | None) -> None:
        super().__init__(engine)
        self.by_id, self.results, self.hook = by_id, results, hook

    def submit(self, job_id: str, now: float) -> bool:
        self.engine.submit(_job(self.by_id[job_id], now), now)
        return True

    def run_time(self, job: Job) -> float:
        return self.by_id[job.job_id].run_s

    def outcome(self, job_id: str) -> str:
        return self.by_id[job_id].outcome

    def on_start(self, job: Job, now: float) -> None:
        self.results[job.job_id].start_s = now

    def on_end(self, job: Job, now: float) -> None:
        self.results[job.job_id].end_s = now
        self.results[job.job_id].outcome = self.by_id[job.job_id].outcome

    def on_stop(self, job: Job, stop: Any, now: float) -> None:
        self.results[job.job_id].end_s = now
        self.results[job.job_id].outcome = f"stopped: {stop.reason}"

    def on_instant(self, now: float, instants: int) -> float | None:
        return None if self.hook is None else self.hook.next_wakeup(list(self.engine.running.values()), now)


def _job(sim: SimJob, now: float) -> Job:
    meta: dict[str, Any] = {"utilization": sim.utilization, "restart_offsets_s": sim.restart_offsets_s,
                            "expected_duration_s": sim.expected_duration_s,
                            "max_runtime_s": sim.max_runtime_s, "idle": sim.idle, "team": sim.team}
    # the engine's backfill plans with the duration a user would declare, not the true run time
    declared = sim.expected_duration_s if sim.expected_duration_s is not None else sim.run_s
    return Job(sim.job_id, sim.team, sim.gpus, sim.gpu_type, 0, True, now, declared, metadata=meta)


def over_budget(result: SimResult, budgets: Mapping[str, pricing.Budget]) -> dict[str, float]:
    """Teams whose simulated spend exceeds their (lifetime, USD) budget, by how much."""
    return {team: result.spend_usd.get(team, 0.0) - b.usd for team, b in budgets.items()
            if b.usd is not None and result.spend_usd.get(team, 0.0) > b.usd + 1e-6}
