"""The live scheduler shares one GPU between two fractional jobs when its placement scorer says so
(FGD completes a GPU), and spreads them when the scorer says so (worst-fit); per-GPU books."""

from __future__ import annotations

import pytest

import ainative
from ainative import scheduling
from ainative.policy.engine import PolicyConfig
from ainative.scheduling import protocol
from tests.support import clusters

HALF = ainative.Resources(cpus=0.25, accelerator=ainative.Accelerator("H100", count=0.5))


@pytest.fixture(scope="module")
def cluster():
    c = clusters.logical_gpu_cluster([clusters.NodeSpec(gpus=2, cpus=2), clusters.NodeSpec(gpus=2, cpus=2)])
    try:
        yield c
    finally:
        scheduling.shutdown()
        clusters.shutdown_current()


def _two_halves(placement: str) -> dict:
    scheduling.configure([ainative.Queue("a", quota={"H100": 4})], fresh=True,
                         policy=PolicyConfig(placement=placement))
    adm = protocol.admission_for("a")
    leases = [adm.admit(protocol.JobRequest(name=f"h{k}", kind="gang", bundles=(HALF,), queue="a"),
                        timeout_s=30) for k in range(2)]
    status = scheduling.status()
    for lease in leases:
        lease.release("succeeded")
    return status


def test_fgd_puts_two_halves_on_one_gpu(cluster):
    status = _two_halves("fgd")
    assert status["placement"] == "fgd"
    nodes = {p[0][0] for p in status["placements"].values()}
    assert len(status["placements"]) == 2 and len(nodes) == 1, status["placements"]
    (node,) = nodes
    assert sorted(status["gpus_free"][node]) == [0.0, 1.0]      # one GPU full, the other whole


def test_worst_fit_spreads_them(cluster):
    status = _two_halves("worst-fit")
    nodes = {p[0][0] for p in status["placements"].values()}
    assert len(nodes) == 2, status["placements"]
    assert all(sorted(g) == [0.5, 1.0] for g in status["gpus_free"].values() if sum(g) < 2)
