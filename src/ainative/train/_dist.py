"""torch.distributed set-up inside Ray workers: rendezvous address, backend, timeouts.

Rank 0 picks a free port on its node; when every rank runs on the same machine the rendezvous
uses 127.0.0.1 and gloo is pinned to the loopback interface, so no traffic leaves the host.
torch is imported only here, inside workers.
"""

from __future__ import annotations

import datetime
import os
import socket
from typing import Any


def node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def choose_master(rank0_ip: str, all_ips: list[str]) -> str:
    """The rendezvous host: loopback when all ranks share rank 0's machine, else rank 0's IP."""
    return "127.0.0.1" if all(ip == rank0_ip for ip in all_ips) else rank0_ip


def interface_for(ip: str) -> str | None:
    """The network interface that holds ``ip`` on this host, or None."""
    import psutil

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == ip for a in addrs):
            return str(name)
    return None


def pick_backend(has_gpu: bool) -> str:
    return "nccl" if has_gpu else "gloo"


def init_process_group(*, rank: int, world_size: int, master_addr: str, master_port: int,
                       backend: str = "gloo", timeout_s: float = 60.0,
                       rendezvous_timeout_s: float | None = None) -> None:
    """Join the process group; a dead peer turns into an error after ``timeout_s``, not a hang.

    The join itself (the TCP store, gloo's full-mesh connect, NCCL's id exchange) is bounded by
    ``rendezvous_timeout_s`` when that is shorter: a join that broke is retried sooner than a
    collective may take. Seen on a saturated 2-core machine: gloo's connect failed on one rank
    ("Connection closed by peer") and both ranks then waited on the store for the whole
    collective timeout."""
    import torch.distributed as dist

    if master_addr == "127.0.0.1" and backend == "gloo":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    elif backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ:
        # Without it gloo binds to what the hostname resolves to, often 127.0.0.1 in containers
        # (and on nodes in their own network namespace): peers on other hosts then cannot connect.
        iface = interface_for(node_ip())
        if iface:
            os.environ["GLOO_SOCKET_IFNAME"] = iface
    os.environ["MASTER_ADDR"] = master_addr
    os.environ["MASTER_PORT"] = str(master_port)
    os.environ["RANK"] = str(rank)
    os.environ["WORLD_SIZE"] = str(world_size)
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        import torch

        kwargs["device_id"] = torch.device("cuda", torch.cuda.current_device())
    join_s = timeout_s if rendezvous_timeout_s is None else min(timeout_s, rendezvous_timeout_s)
    dist.init_process_group(backend=backend, init_method=f"tcp://{master_addr}:{master_port}",
                            rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=join_s), **kwargs)
    if join_s != timeout_s:     # collectives get their own, longer, timeout
        from torch.distributed.distributed_c10d import _set_pg_timeout

        _set_pg_timeout(datetime.timedelta(seconds=timeout_s))


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
