"""What one reconcile of the live scheduler costs: ``scheduling._reconcile.snapshot()`` (three GCS
reads: ray.nodes(), free resources per node, placement_group_table()) on a logical-GPU cluster of
``--nodes`` nodes with ``--groups`` live placement groups (and as many removed ones in the table).

    flock /tmp/ainative-ray.lock python benchmarks/reconcile_cost.py --nodes 3 --groups 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    import ray
    from ray.util import placement_group, remove_placement_group

    from ainative.scheduling import _reconcile
    from tests.support import clusters

    clusters.logical_gpu_cluster([clusters.NodeSpec(gpus=4, cpus=2)] * args.nodes)
    try:
        empty = _reconcile.measure(args.runs)
        pgs = [placement_group([{"GPU": 0.01, "CPU": 0.001}]) for _ in range(2 * args.groups)]
        ray.get([pg.ready() for pg in pgs], timeout=120)
        for pg in pgs[args.groups:]:
            remove_placement_group(pg)
        time.sleep(1.0)
        loaded = _reconcile.measure(args.runs)
        t0 = time.process_time()
        snap = _reconcile.snapshot()
        attribution = _reconcile.attribute(snap, [])
        cpu_ms = 1000 * (time.process_time() - t0)
        print(json.dumps({"nodes": args.nodes, "live_groups": args.groups,
                          "removed_groups": args.groups, "empty": empty, "with_groups": loaded,
                          "driver_cpu_ms_one_reconcile": round(cpu_ms, 3),
                          "external_nodes": len(attribution.external),
                          "loadavg": os.getloadavg()}, indent=1))
        for pg in pgs[:args.groups]:
            remove_placement_group(pg)
    finally:
        clusters.shutdown_current()


if __name__ == "__main__":
    main()
