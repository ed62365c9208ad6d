"""The batchable serving scenario's latency floor: the model alone, no process or network hop.

``benchmarks/serve_autoscaling.py --scenario batchable`` sends a request every 10 ms (100 req/s)
to a model whose batch of n takes 50 + 1*n ms on one device. This computes, for 1 to 4 devices
(replicas), the p50 and p99 of arrival -> answer when requests wait in one queue and

  greedy     a free device takes everything waiting (up to the batch size) at once;
  staggered  the same, but no batch starts within ``gap`` ms of the previous start on any device
             (the best gap of a sweep), so that the devices' batches interleave.

An event-driven simulation; each send time is late by up to 1 ms (uniform, 5 seeds, means
reported), as a real client's are, so that no arrival ties exactly with a batch start; the first
10 % of requests (the start-up) are left out. One device gives T = 50 + T/10 ms = 55.6 ms
batches and a p99 of about 2T: a request waits for the batch running when it arrives, then for
its own. It writes ``benchmarks/results/batch_floor.json``; no Ray, no timing: a computation
beside ``serve_autoscaling.py``'s measurements, not a benchmark of ours against a peer.

    .venv/bin/python benchmarks/batch_floor.py
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

INTERVAL_MS, FIXED_MS, PER_ITEM_MS, MAX_BATCH = 10.0, 50.0, 1.0, 16
REQUESTS = 6000
JITTER_MS = 1.0  # each send time late by up to this much (uniform): no exact ties
SEEDS = range(5)
GAPS_MS = (10.0, 15.0, 20.0, 25.0, 26.0, 28.0, 30.0)


def simulate(devices: int, gap_ms: float, seed: int) -> tuple[float, float]:
    """(p50, p99) in ms of arrival -> answer with ``devices`` devices and one shared queue."""
    rng = random.Random(seed)
    arrivals = [i * INTERVAL_MS + rng.uniform(0.0, JITTER_MS) for i in range(REQUESTS)]
    free_at = [0.0] * devices
    last_start = float("-inf")
    queue: list[float] = []
    latencies: list[float] = []
    nxt, now = 0, 0.0
    while nxt < REQUESTS or queue:
        while nxt < REQUESTS and arrivals[nxt] <= now + 1e-9:
            queue.append(arrivals[nxt])
            nxt += 1
        for d in range(devices):
            if free_at[d] <= now + 1e-9 and queue and now - last_start >= gap_ms - 1e-9:
                batch, queue = queue[:MAX_BATCH], queue[MAX_BATCH:]
                done = now + FIXED_MS + PER_ITEM_MS * len(batch)
                free_at[d], last_start = done, now
                latencies += [done - at for at in batch]
        # the next moment anything can change: an arrival, a device freeing, the gap passing
        events = [t for t in free_at if t > now + 1e-9]
        if nxt < REQUESTS:
            events.append(arrivals[nxt])
        if last_start + gap_ms > now + 1e-9:
            events.append(last_start + gap_ms)
        if not events:
            break
        now = min(events)
    settled = sorted(latencies[len(latencies) // 10:])
    return (settled[len(settled) // 2], settled[int(len(settled) * 0.99) - 1])


def averaged(devices: int, gap_ms: float) -> tuple[float, float]:
    """Mean (p50, p99) over SEEDS."""
    runs = [simulate(devices, gap_ms, seed) for seed in SEEDS]
    return (statistics.mean(r[0] for r in runs), statistics.mean(r[1] for r in runs))


def main() -> None:
    result: dict[str, object] = {
        "benchmark": "batch_floor", "interval_ms": INTERVAL_MS, "fixed_ms": FIXED_MS,
        "per_item_ms": PER_ITEM_MS, "max_batch": MAX_BATCH, "requests": REQUESTS,
        "jitter_ms": JITTER_MS, "seeds": list(SEEDS), "gaps_ms": GAPS_MS}
    floors: dict[str, dict[str, float]] = {}
    print(f"{'devices':>7} {'greedy p50':>10} {'p99':>6} {'staggered p50':>13} {'p99':>6} {'gap':>5}")
    for devices in (1, 2, 3, 4):
        g50, g99 = averaged(devices, 0.0)
        best = min(((averaged(devices, gap), gap) for gap in GAPS_MS), key=lambda x: x[0][1])
        (s50, s99), gap = best
        floors[str(devices)] = {
            "greedy_p50_ms": g50, "greedy_p99_ms": g99,
            "staggered_p50_ms": s50, "staggered_p99_ms": s99, "staggered_gap_ms": gap}
        print(f"{devices:7d} {g50:10.1f} {g99:6.1f} {s50:13.1f} {s99:6.1f} {gap:5.0f}")
    out = Path(__file__).parent / "results" / "batch_floor.json"
    out.write_text(json.dumps({**result, "devices": floors}, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
