"""The end-to-end demo behind `make demo`: an embedded local Ray with logical GPUs.

Stage 1 (foundation): connect, print the resource table, reserve a 2-bundle gang on logical H100s,
run a real torch.distributed (gloo) all-reduce across the two gang members, release everything.
"""

from __future__ import annotations

import time
from typing import Any

from ainative import resources as res
from ainative.cluster import local
from ainative.scheduling import placement


def _allreduce_actor() -> Any:
    import ray

    @ray.remote
    class AllReduceMember:
        def address(self) -> tuple[str, int]:
            from ainative.train import _dist

            return _dist.node_ip(), _dist.free_port()

        def node_ip(self) -> str:
            from ainative.train import _dist

            return _dist.node_ip()

        def allreduce(self, rank: int, world: int, addr: str, port: int) -> dict[str, Any]:
            import os

            import torch
            import torch.distributed as dist

            from ainative.train import _dist

            _dist.init_process_group(rank=rank, world_size=world, master_addr=addr,
                                     master_port=port, backend="gloo", timeout_s=30)
            t = torch.tensor([float(rank + 1)])
            dist.all_reduce(t)
            _dist.destroy_process_group()
            return {"rank": rank, "sum": float(t.item()),
                    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}

    return AllReduceMember


def gang_allreduce(gang: placement.Gang) -> list[dict[str, Any]]:
    """Start one actor per bundle, all-reduce rank+1 over gloo; return each rank's view."""
    import ray

    cls = _allreduce_actor()
    actors = [cls.options(**gang.actor_options(i)).remote() for i in range(len(gang))]
    try:
        ip0, port = ray.get(actors[0].address.remote())
        ips = ray.get([a.node_ip.remote() for a in actors])
        from ainative.train import _dist

        master = _dist.choose_master(ip0, ips)
        return ray.get([a.allreduce.remote(r, len(actors), master, port)
                        for r, a in enumerate(actors)], timeout=120)
    finally:
        for a in actors:
            ray.kill(a)


def _wait_gpus_free(cluster: local.Cluster, timeout_s: float = 10.0) -> None:
    # Ray returns a killed actor's resources asynchronously.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(a.free >= a.total for a in cluster.resources().accelerators.values()):
            return
        time.sleep(0.1)


def run(*, gpus: int = 2, accelerator_type: str = "H100", out: Any = print) -> dict[str, Any]:
    t0 = time.monotonic()
    cluster = local.connect(num_cpus=max(2, gpus), num_gpus=gpus, accelerator_type=accelerator_type,
                            include_dashboard=False)
    summary: dict[str, Any] = {}
    try:
        out("== cluster ==")
        out(cluster.resources().table())
        worker = res.Resources(cpus=1, accelerator=res.Accelerator(accelerator_type, count=1))
        out(f"\n== gang: 2 x {worker.describe()} (PACK) ==")
        with placement.reserve([worker, worker], "PACK", timeout_s=60) as gang:
            out(f"reserved {gang.name} on node(s) {sorted({n[:8] for n in gang.bundle_nodes()})}")
            results = gang_allreduce(gang)
            for r in results:
                out(f"rank {r['rank']}: all_reduce(sum of rank+1) = {r['sum']:g} "
                    f"(CUDA_VISIBLE_DEVICES={r['cuda_visible_devices']!r})")
            summary["allreduce"] = [r["sum"] for r in results]
        _wait_gpus_free(cluster)
        out("released the gang; free GPUs: " + ", ".join(
            f"{a.type} {a.free:g}/{a.total:g}" for a in cluster.resources().accelerators.values()))
    finally:
        cluster.shutdown()
    summary["seconds"] = round(time.monotonic() - t0, 1)
    out(f"\ndemo finished in {summary['seconds']} s")
    return summary
