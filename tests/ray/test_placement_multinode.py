"""Gangs on a 3-node cluster with logical GPUs of named types: STRICT_SPREAD, types, node death."""

import pytest

import ainative as ai
from ainative import errors
from tests.support.clusters import NodeSpec


@pytest.fixture(scope="module")
def three_nodes():
    from tests.support import clusters

    cluster = clusters.logical_gpu_cluster([NodeSpec(gpus=2, accelerator_type="H100"),
                                            NodeSpec(gpus=2, accelerator_type="H100"),
                                            NodeSpec(gpus=2, accelerator_type="A100")])
    yield cluster
    clusters.shutdown_current()


def test_summary_groups_gpus_by_type(three_nodes):
    s = ai.connect().resources()
    assert {k: (v.total, v.nodes) for k, v in s.accelerators.items()} == {"A100": (2, 1), "H100": (4, 2)}
    assert len(s.nodes) == 4


def test_strict_spread_puts_each_bundle_on_its_own_node(three_nodes, no_leaks):
    gpu = ai.Resources(cpus=1, accelerator=ai.Accelerator("H100"))
    with ai.scheduling.reserve([gpu, gpu], "STRICT_SPREAD", timeout_s=30) as gang:
        assert len(set(gang.bundle_nodes())) == 2
    with pytest.raises(errors.InfeasibleError, match="STRICT_SPREAD"):
        ai.scheduling.reserve([gpu] * 3, "STRICT_SPREAD")


def test_type_routing(three_nodes, no_leaks):
    a100 = ai.Resources(cpus=1, accelerator=ai.Accelerator("nvidia-a100"))
    with ai.scheduling.reserve([a100, a100], "PACK", timeout_s=30) as gang:
        a100_nodes = {n.node_id for n in ai.connect().nodes() if n.accelerator_type == "A100"}
        assert set(gang.bundle_nodes()) == a100_nodes


def test_reserve_keeps_bundles_off_avoided_nodes(three_nodes, no_leaks):
    """avoid_nodes (a node the liveness probes lost, not yet dead for Ray): no bundle lands there;
    with every fitting node avoided the gang does not fit."""
    gpu = ai.Resources(cpus=1, accelerator=ai.Accelerator("H100"))
    h100 = sorted(n.node_id for n in ai.connect().nodes() if n.accelerator_type == "H100")
    for avoided in h100:
        with ai.scheduling.reserve([gpu, gpu], "PACK", timeout_s=30, avoid_nodes=[avoided]) as gang:
            assert set(gang.bundle_nodes()) == set(h100) - {avoided}
    with pytest.raises(errors.PlacementTimeoutError):
        ai.scheduling.reserve([gpu], "PACK", timeout_s=2, avoid_nodes=h100)


def test_gang_sees_its_node_die(three_nodes):
    gpu = ai.Resources(cpus=1, accelerator=ai.Accelerator("H100"))
    gang = ai.scheduling.reserve([gpu, gpu], "STRICT_SPREAD", timeout_s=30)
    try:
        victim_id = gang.bundle_nodes()[1]
        victim = next(w for w in three_nodes.workers if w.node_id == victim_id)
        three_nodes.remove_node(victim)
        three_nodes.wait_node_dead(victim_id)
        assert gang.dead_bundles() == [1]
        assert not gang.is_healthy()
    finally:
        gang.release()
