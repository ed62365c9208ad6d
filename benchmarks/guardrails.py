"""Cost guardrails on a generated trace: the scheduling engine with vs without guardrails.

The trace is generated so that ~30% of GPU time belongs to jobs that fail, crash-loop, hang or sit
idle (the public traces: Philly 39%, Helios 39%, Acme 66% for failed/cancelled jobs alone). Both
runs use the same engine (``ainative.policy.engine``), the same cluster and the same trace; the
guarded run installs ``GuardrailsHook`` (queue budgets, max runtime, idle reclaim, crash loop).

Targets: wasted GPU-hours cut >= 50%; healthy jobs' average JCT worse by <= 5%; spend never above
any budget. Runs alternate (without, with) per seed; medians over seeds.

    flock /tmp/ainative-bench.lock .venv/bin/python benchmarks/guardrails.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from ainative.sim import guardrails as sim
from ainative.policy.cost import guardrails as g
from ainative.policy.pricing import Budget, IdlePolicy, PriceTable
from ainative.policy.queues import Queue

H = 3600.0
PRICES = PriceTable({"H100": 4.00, "A100": 1.80}, cpu_core_hour_usd=0.0)
NODES = [(f"h{i}", "H100", 8.0) for i in range(6)] + [(f"a{i}", "A100", 8.0) for i in range(4)]
TEAMS = ("team-a", "team-b", "team-c")
IDLE = IdlePolicy(window_s=1800, threshold=0.05)
CONFIG = g.GuardrailConfig(crash_loop_restarts=3, crash_loop_window_s=1800, overrun_factor=3.0)
# share of jobs by kind, tuned so that ~30% of GPU time is waste (printed per seed)
KINDS = (("healthy", 0.84), ("fail_fast", 0.08), ("crash_loop", 0.03), ("hung", 0.02), ("idle", 0.03))


def _job(rng: random.Random, k: int, submit: float) -> sim.SimJob:
    kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
    team = rng.choice(TEAMS)
    gpus = float(rng.choices([1, 2, 4, 8], [0.4, 0.25, 0.2, 0.15])[0])
    gpu_type = rng.choice(["H100", "A100"])
    base = dict(job_id=f"j{k}", team=team, submit_s=submit, gpus=gpus, gpu_type=gpu_type, idle=IDLE)
    if kind == "healthy":
        run = min(24 * H, max(600.0, rng.lognormvariate(math.log(1.5 * H), 0.9)))
        expected = run * rng.uniform(0.9, 1.25)
        return sim.SimJob(**base, run_s=run, expected_duration_s=expected, max_runtime_s=2 * expected,
                          utilization=rng.uniform(0.6, 0.95))
    if kind == "fail_fast":
        return sim.SimJob(**base, kind=kind, outcome="failed", run_s=rng.uniform(120, 900),
                          utilization=0.8)
    if kind == "crash_loop":   # restarts every few minutes until someone notices
        every = rng.uniform(180, 600)
        run = rng.uniform(2 * H, 10 * H)
        return sim.SimJob(**base, kind=kind, outcome="failed", run_s=run, utilization=0.5,
                          restart_offsets_s=tuple(every * i for i in range(1, int(run / every) + 1)))
    if kind == "hung":         # a collective hangs; half spin at 100% (NCCL), half drop to 0%
        expected = rng.uniform(1 * H, 3 * H)
        hang = expected * rng.uniform(0.3, 0.9)
        after = 1.0 if rng.random() < 0.5 else 0.0
        return sim.SimJob(**base, kind=kind, outcome="cancelled", run_s=rng.uniform(8 * H, 24 * H),
                          expected_duration_s=expected, max_runtime_s=2 * expected,
                          utilization=((0.0, 0.85), (hang, after)))
    busy = rng.uniform(0.5 * H, 2 * H)   # interactive: works, then holds GPUs idle until cancelled
    return sim.SimJob(**base, kind="idle", outcome="cancelled", run_s=busy + rng.uniform(3 * H, 10 * H),
                      utilization=((0.0, 0.7), (busy, 0.0)))


def trace(seed: int, days: float, load: float) -> list[sim.SimJob]:
    """Poisson arrivals sized so that offered GPU load is ``load`` x the cluster."""
    rng = random.Random(seed)
    probe_rng = random.Random(seed + 1000)
    probe = [_job(probe_rng, i, 0.0) for i in range(4000)]
    mean_gpu_s = statistics.fmean(j.gpus * j.run_s for j in probe) / 2   # two GPU types
    capacity = sum(n[2] for n in NODES) / 2
    rate = load * capacity / mean_gpu_s
    jobs, t, k = [], 0.0, 0
    while t < days * 86400:
        t += rng.expovariate(rate)
        jobs.append(_job(rng, k, t))
        k += 1
    return jobs


def budgets_for(jobs: list[sim.SimJob]) -> dict[str, Budget]:
    """team-a and team-b get 1.25 x their healthy work's price; team-c has no budget."""
    healthy: dict[str, float] = {}
    for j in jobs:
        if j.kind == "healthy":
            price = PRICES.gpu_hour_price(j.gpu_type)
            healthy[j.team] = healthy.get(j.team, 0.0) + price * j.gpus * j.run_s / H
    return {t: Budget(usd=round(1.25 * healthy[t], 2), warn_at=0.8) for t in ("team-a", "team-b")}


def one(jobs: list[sim.SimJob], budgets: dict[str, Budget], guarded: bool) -> dict[str, float]:
    queues = [Queue(t, quota={"H100": 16, "A100": 11}, budget=budgets.get(t)) for t in TEAMS]
    t0 = time.perf_counter()
    result = sim.simulate(jobs, NODES, queues, PRICES, guarded=guarded, config=CONFIG)
    wall = time.perf_counter() - t0
    jct = result.healthy_jct_s()
    over = sim.over_budget(result, budgets)
    healthy_stopped = sum(1 for r in result.jobs.values()
                          if r.kind == "healthy" and r.outcome.startswith("stopped"))
    return {"wall_s": wall, "wasted_gpu_h": result.wasted_gpu_hours(),
            "total_gpu_h": result.total_gpu_hours(),
            "healthy_done": len(jct), "healthy_stopped": healthy_stopped,
            "healthy_held": sum(1 for r in result.jobs.values() if r.kind == "healthy" and r.start_s is None),
            "over_budget_usd": sum(over.values()), "teams_over_budget": len(over),
            "spend_usd": sum(result.spend_usd.values()), "_jct": jct}  # type: ignore[dict-item]


def compare(seed: int, days: float) -> dict[str, object]:
    jobs = trace(seed, days, load=0.9)
    budgets = budgets_for(jobs)
    free = one(jobs, budgets, guarded=False)
    guarded = one(jobs, budgets, guarded=True)
    jct_free, jct_guard = free.pop("_jct"), guarded.pop("_jct")
    both = sorted(set(jct_free) & set(jct_guard))   # type: ignore[arg-type]
    mean_free = statistics.fmean(jct_free[j] for j in both)   # type: ignore[index]
    mean_guard = statistics.fmean(jct_guard[j] for j in both)   # type: ignore[index]
    waste_share = free["wasted_gpu_h"] / free["total_gpu_h"]
    row = {"seed": seed, "jobs": len(jobs), "waste_share_without": waste_share,
           "without": free, "with": guarded, "healthy_compared": len(both),
           "healthy_jct_h_without": mean_free / H, "healthy_jct_h_with": mean_guard / H,
           "jct_change": mean_guard / mean_free - 1.0,
           "waste_cut": 1.0 - guarded["wasted_gpu_h"] / free["wasted_gpu_h"],
           "budgets_usd": {t: b.usd for t, b in budgets.items()}}
    print(f"seed {seed}: {len(jobs)} jobs, waste share {waste_share:.1%}; wasted GPU-h "
          f"{free['wasted_gpu_h']:.0f} -> {guarded['wasted_gpu_h']:.0f} (cut {row['waste_cut']:.1%}); "
          f"healthy JCT {mean_free / H:.2f} h -> {mean_guard / H:.2f} h ({row['jct_change']:+.1%}, "
          f"{len(both)} jobs); over budget USD {free['over_budget_usd']:.0f} -> "
          f"{guarded['over_budget_usd']:.2f}; healthy stopped {guarded['healthy_stopped']}, held "
          f"{guarded['healthy_held']}; sim {free['wall_s']:.2f} s / {guarded['wall_s']:.2f} s", flush=True)
    return row


def machine() -> dict[str, object]:
    import importlib.metadata as md

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cores": os.cpu_count(), "memory_gib": round(mem, 1), "gpu": "none",
            "python": platform.python_version(), "ainative": md.version("ainative"),
            "ray": md.version("ray"), "peer": "the same engine without guardrails (no spend cap, TTL, "
                                              "idle or crash-loop guard, as in Kueue/Volcano today)",
            "platform": platform.platform()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 simulated days x 3 seeds instead of 7 x 5")
    parser.add_argument("--out", default=None,
                        help="JSON path (default results/guardrails.json, or guardrails_quick.json)")
    args = parser.parse_args(argv)
    if args.out is None:
        name = "guardrails_quick.json" if args.quick else "guardrails.json"
        args.out = str(Path(__file__).parent / "results" / name)
    days, seeds = (2.0, [1, 2, 3]) if args.quick else (7.0, [1, 2, 3, 4, 5])
    load_before = os.getloadavg()[0]
    rows = [compare(seed, days) for seed in seeds]
    load_after = os.getloadavg()[0]
    med = {k: statistics.median(float(r[k]) for r in rows)   # type: ignore[arg-type]
           for k in ("waste_share_without", "waste_cut", "jct_change")}
    worst_over = max(float(r["with"]["over_budget_usd"]) for r in rows)   # type: ignore[index]
    targets = {"waste_cut_ge_50pct": med["waste_cut"] >= 0.5, "jct_worse_le_5pct": med["jct_change"] <= 0.05,
               "never_over_budget": worst_over <= 1e-6}
    print(f"median over {len(seeds)} seeds ({days:g} simulated days each, {len(NODES) * 8} GPUs): waste "
          f"share {med['waste_share_without']:.1%}, wasted GPU-hours cut {med['waste_cut']:.1%}, healthy "
          f"JCT change {med['jct_change']:+.1%}, worst spend over budget with guardrails ${worst_over:.2f}")
    print("targets:", targets)
    out = {"benchmark": "guardrails", "quick": args.quick, "days": days, "seeds": seeds,
           "gpus": len(NODES) * 8,
           "machine": machine(), "loadavg_1m_before": load_before, "loadavg_1m_after": load_after,
           "medians": med, "worst_over_budget_usd_with": worst_over, "targets_met": targets, "runs": rows,
           "command": "flock /tmp/ainative-bench.lock .venv/bin/python benchmarks/guardrails.py"
                      + (" --quick" if args.quick else "")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
