"""Serve a small torch classifier with adaptive batching and SLO-driven autoscaling.

    python examples/serve_classifier.py
    ray job submit --working-dir . -- python examples/serve_classifier.py

Deploys the endpoint, sends a bounded burst of HTTP requests to 127.0.0.1 and one Python call,
prints the endpoint's metrics and deletes it. Takes ~15 s on a laptop-class CPU.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import requests

import ainative as ai


def classifier():
    """The model factory: runs once per replica, so weights load once, not per request."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3),
                               torch.nn.Softmax(dim=-1))


def main() -> None:
    ai.connect()  # joins RAY_ADDRESS under `ray job submit`, else starts a local Ray
    endpoint = ai.Endpoint(
        classifier, name="iris", route="/iris",
        resources=ai.Resources(cpus=0.5),
        batching=ai.BatchingConfig(max_batch_size=16, max_wait_ms=5),
        autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=2, target_concurrency=8,
                                         latency_slo_ms=100),
    )
    t0 = time.monotonic()
    handle = endpoint.deploy()
    print(f"deployed {handle.url} in {time.monotonic() - t0:.1f}s")
    try:
        flower = [5.1, 3.5, 1.4, 0.2]
        print("predict:", [round(p, 3) for p in handle.predict(flower)])

        def post(i: int) -> int:
            features = [flower[0] + i % 3, flower[1], flower[2] + i % 5, flower[3]]
            return requests.post(handle.url, json=features, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:  # a bounded burst: 200 requests, 8 at a time
            codes = list(pool.map(post, range(200)))
        print(f"HTTP: {codes.count(200)}/{len(codes)} answered 200")
        bad = requests.post(handle.url, data=b"{oops", timeout=10)
        print(f"malformed JSON -> {bad.status_code}: {bad.json()['error'][:40]}...")
        time.sleep(1.0)  # replicas report every 0.5 s
        m = handle.metrics()
        print(json.dumps({"qps": round(m.qps, 1), "p50_ms": m.p50_ms, "p99_ms": m.p99_ms,
                          "batch_sizes": m.batch_sizes, "replicas_running": m.replicas_running,
                          "replica_seconds": round(m.replica_seconds, 1)}, default=str))
    finally:
        handle.delete()
        print("deleted")


if __name__ == "__main__":
    main()
