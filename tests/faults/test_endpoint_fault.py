"""An Endpoint with one replica on a node that is partitioned under steady HTTP load (worker nodes
in network namespaces: ``tests/faults/netns.py``).

Two 1-GPU replicas, one per namespace node (the head has no GPU); the ingress runs on the head.
The victim's requests in flight
hang until Ray declares the node dead, then fail with the replica's death and are retried once by
the ingress (the endpoint is idempotent). Asserted: at most the requests that can be in flight
fail (one per load thread), none of those sent once the node is declared dead (plus a short
settle for Serve's routers to drop the replica), and the endpoint keeps answering on the
surviving replica."""

from __future__ import annotations

import time

import pytest
import ainative as ai
from ainative.serve import _runtime
from tests.faults import netns
from tests.faults.httpload import ClosedLoopLoad

pytestmark = [pytest.mark.faults, pytest.mark.slow]

H100 = {ai.Accelerator("H100").resource_name: 1.0}
THREADS = 4
SETTLE_S = 3.0   # after the node is declared dead, for every router to hear the replica is gone


def double():
    def model(x):
        time.sleep(0.01)
        return x * 2
    return model


def _replica_nodes(name: str) -> dict[str, str]:
    """Replica actor name -> node id, for both deployments of the endpoint."""
    import ray

    out = {}
    for actor_name in _runtime.replica_actor_names(name):
        handle = ray.get_actor(actor_name, namespace="serve")
        out[actor_name] = ray.get(handle.__ray_call__.remote(
            lambda self: ray.get_runtime_context().get_node_id()), timeout=30)
    return out


@pytest.mark.timeout(180)
def test_endpoint_replica_on_a_partitioned_node_fails_only_its_inflight_requests(netns_cluster):
    import ray

    cluster = netns_cluster
    nodes = [cluster.add_node(cpus=1, gpus=1, resources=H100) for _ in range(2)]
    by_id = {cluster.wait_alive(n): n for n in nodes}
    ep = ai.Endpoint(double, name="pfault",
                     resources=ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100")),
                     autoscaling=ai.AutoscalingConfig(min_replicas=2, max_replicas=2))
    h = ep.deploy(timeout_s=150)
    load = None
    try:
        where = _replica_nodes("pfault")
        models = {a: n for a, n in where.items() if "pfault-model" in a}
        ingress_node = next(n for a, n in where.items() if "pfault-ingress" in a)
        assert set(models.values()) == set(by_id), where      # one replica per namespace node
        # the ingress (one replica) on the head with the proxy, so no worker's partition takes it
        assert ingress_node == ray.get_runtime_context().get_node_id(), where
        victim_id = sorted(models.values())[0]
        victim = by_id[victim_id]
        load = ClosedLoopLoad(h.url, THREADS)
        netns.wait_until("steady load on both replicas", lambda: load.count() >= 100, timeout_s=60)
        assert load.count(ok=False) == 0
        t0 = time.monotonic()
        cluster.partition(victim)
        detect_s = cluster.wait_dead(victim_id, timeout_s=30)
        t_dead = t0 + detect_s
        netns.wait_until("load served after the node died",
                         lambda: load.count(since=t_dead + SETTLE_S) >= 100, timeout_s=90)
        rows = load.finish()
    finally:
        if load is not None:
            load.stop.set()
        h.delete()
    failed = [(round(s - t0, 2), round(e - t0, 2), c) for s, e, c in rows if c != 200]
    hung = max(e - s for s, e, c in rows if s <= t0 <= e) if any(s <= t0 <= e for s, e, _ in rows) \
        else 0.0
    after = [c for s, _, c in rows if s >= t_dead + SETTLE_S]
    print(f"\n[faults] endpoint: {len(rows)} requests, {len(failed)} failed {failed}; node dead "
          f"{detect_s:.2f} s after the partition; longest request across it {hung:.2f} s; "
          f"{len(after)} sent from {SETTLE_S:g} s after the node was declared dead, all 200: "
          f"{set(after) == {200}}")
    assert len(failed) <= THREADS, failed        # only what was in flight can fail
    assert all(s <= t_dead + SETTLE_S for s, _, _ in failed), failed
    assert len(after) >= 100 and set(after) == {200}
