"""Scheduling benchmark: one generated trace (10,000 jobs, 4,096 GPUs = 512 nodes x 8, A100 + H100,
6 teams) simulated under ainative, fifo and kueue in the same run, alternated, >= 3 repetitions;
plus the policy decision time with 5,000 pending jobs on the same cluster.

    flock /tmp/ainative-bench.lock .venv/bin/python benchmarks/scheduling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

from ainative.policy.admission import Job
from ainative.policy.engine import Engine, PolicyConfig
from ainative.policy.gpuindex import GpuIndex
from ainative.sim import cluster as cluster_file
from ainative.sim import simulate, trace

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "examples" / "sim" / "cluster_4096.yaml"
POLICIES = ("ainative", "fifo", "kueue")


def decision_latency(pending: int, passes: int, seed: int = 0) -> dict[str, float]:
    """Fill the cluster, queue ``pending`` jobs, then time full passes after single job ends."""
    spec = cluster_file.load(CLUSTER)
    index = GpuIndex(spec.nodes)
    eng = Engine(spec.queues, index, PolicyConfig())
    rnd = random.Random(seed)
    rows = trace.generate(pending + 20000, total_gpus=4096, seed=seed)
    now = 0.0
    for r in rows[:6000]:
        eng.submit(Job(r.job_id, r.team, r.num_gpus, r.gpu_type, r.priority, r.preemptible, now,
                       r.duration_s), now)
    eng.schedule(now)
    more = iter(rows[6000:])

    def top_up() -> None:        # keep exactly ``pending`` jobs waiting before every timed pass
        while len(eng.jobs) - len(eng.running) < pending:
            r = next(more)
            eng.submit(Job(r.job_id, r.team, r.num_gpus, r.gpu_type, r.priority, r.preemptible, now,
                           r.duration_s), now)

    top_up()
    eng.schedule(now)
    eng.latencies_s.clear()
    eng.cpu_s.clear()
    waiting = []
    for _ in range(passes):
        now += 10.0
        top_up()
        eng.finish(rnd.choice(list(eng.running)), now)
        waiting.append(len(eng.jobs) - len(eng.running))
        eng.schedule(now)
    lat = sorted(x * 1000 for x in eng.latencies_s)
    cpu = sorted(x * 1000 for x in eng.cpu_s)
    p99 = min(len(lat) - 1, int(0.99 * len(lat)))
    return {"pending_min": min(waiting), "pending_max": max(waiting), "passes": passes,
            "p50_ms": lat[len(lat) // 2], "p99_ms": lat[p99], "max_ms": lat[-1],
            "cpu_p50_ms": cpu[len(cpu) // 2], "cpu_p99_ms": cpu[p99], "cpu_max_ms": cpu[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 jobs instead of 10,000")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--load", type=float, default=3.0, help="offered work / capacity over the arrival span")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n = args.jobs or (2000 if args.quick else 10_000)
    load_before = os.getloadavg()[0]
    rows = trace.generate(n, total_gpus=4096, seed=args.seed, load=args.load)
    runs: dict[str, list[dict]] = {p: [] for p in POLICIES}
    walls: dict[str, list[float]] = {p: [] for p in POLICIES}
    for rep in range(args.reps):
        for p in (POLICIES if rep % 2 == 0 else tuple(reversed(POLICIES))):   # alternate the order
            t0 = time.perf_counter()
            report = simulate(rows, CLUSTER, p).to_dict()
            walls[p].append(time.perf_counter() - t0)
            runs[p].append(report)
            print(f"rep {rep} {p:>8}: {walls[p][-1]:.1f} s wall, avg JCT {report['avg_jct_s']:.0f} s",
                  flush=True)
    lat = decision_latency(pending=5000, passes=60 if args.quick else 200)
    load_after = os.getloadavg()[0]
    summary = {}
    for p in POLICIES:
        r = runs[p][0]    # the simulation is deterministic: every repetition gives the same figures
        assert all(x["avg_jct_s"] == r["avg_jct_s"] for x in runs[p])
        summary[p] = {k: v for k, v in r.items() if k not in ("teams", "rejected")}
        summary[p]["teams"] = r["teams"]
        summary[p]["wall_s_median"] = statistics.median(walls[p])
    ours, fifo, kueue = summary["ainative"], summary["fifo"], summary["kueue"]
    ratios = {"jct_vs_fifo": ours["avg_jct_s"] / fifo["avg_jct_s"],
              "jct_vs_kueue": ours["avg_jct_s"] / kueue["avg_jct_s"]}
    targets = {"jct_vs_fifo<=0.6": ratios["jct_vs_fifo"] <= 0.6,
               "jct_vs_kueue<=0.8": ratios["jct_vs_kueue"] <= 0.8,
               "utilization>=both": ours["gpu_utilization"] >= max(fifo["gpu_utilization"],
                                                                    kueue["gpu_utilization"]) - 1e-9,
               "jain>=0.9": ours["jain_fairness"] >= 0.9,
               "simulation<60s": ours["wall_s_median"] < 60,
               "decision_p99<10ms@5000": lat["p99_ms"] < 10,
               "decision_cpu_p99<10ms@5000": lat["cpu_p99_ms"] < 10}
    print(f"\n{'figure':<28}" + "".join(f"{p:>14}" for p in POLICIES))
    for k in ("avg_jct_s", "p50_jct_s", "p99_jct_s", "avg_wait_s", "max_wait_s", "gpu_utilization",
              "makespan_s", "jain_fairness", "preemptions", "unscheduled_jobs", "fragmentation",
              "max_wait_over_duration", "p99_wait_over_duration", "gpu_utilization_contended",
              "decision_latency_p50_ms", "decision_latency_p99_ms", "wall_s_median"):
        print(f"{k:<28}" + "".join(f"{summary[p][k]:>14.4g}" for p in POLICIES))
    print(f"\nratios: {json.dumps({k: round(v, 3) for k, v in ratios.items()})}")
    print(f"decision time with {lat['pending_min']}-{lat['pending_max']} pending: "
          f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms wall; "
          f"CPU time p50 {lat['cpu_p50_ms']:.2f} ms, p99 {lat['cpu_p99_ms']:.2f} ms")
    print(f"targets: {json.dumps(targets)}")
    print(f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}")
    import ray
    import torch

    out = {"benchmark": "scheduling", "jobs": n, "gpus": 4096, "nodes": 512, "teams": 6,
           "load": args.load,
           "seed": args.seed, "reps": args.reps, "policies": summary, "ratios": ratios,
           "decision_latency_5000_pending": lat, "targets_met": targets,
           "machine": {"cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE")
                       * os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "gpu": "none",
                       "python": platform.python_version(), "ray": ray.__version__,
                       "torch": torch.__version__},
           "loadavg_1min_before": load_before, "loadavg_1min_after": load_after,
           "command": "flock /tmp/ainative-bench.lock .venv/bin/python benchmarks/scheduling.py"
                      + (" --quick" if args.quick else "")}
    dest = ROOT / "benchmarks" / "results" / ("scheduling_quick.json" if args.quick else "scheduling.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
