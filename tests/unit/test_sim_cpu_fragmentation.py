"""FGD over GPUs and CPUs: a node whose CPUs are taken strands its free GPUs; the scorer and the
saturation measurement count it (hand-built nodes, answers computed by hand)."""

from __future__ import annotations

import pytest

from ainative import errors
from ainative.policy import fragmentation as frag
from ainative.sim import cluster as cluster_file
from ainative.sim import saturation, trace

SCALE = (24.0, 2.0)


def test_a_node_without_cpus_strands_all_its_free_gpu():
    node = ("G2", (1.0, 1.0), 4.0)
    assert frag.fragment_of(node, frag.Demand(1.0, 8.0)) == 2.0           # lacks CPU
    assert frag.fragment_of(node, frag.Demand(1.0, 4.0)) == 0.0           # fits
    assert frag.fragment_of(node, frag.Demand(0.5, 1.0, ("T4",))) == 2.0  # wrong GPU model
    assert frag.fragment_of(("G2", (1.0, 0.25), 16.0), frag.Demand(0.5, 1.0)) == 0.25
    assert frag.options_of(node, frag.Demand(1.0, 8.0)) == []
    assert frag.options_of(node, frag.Demand(0.0, 2.0)) == [()]            # CPU-only task


def test_exhausting_a_nodes_cpus_scores_worse_than_leaving_them():
    # Two 2-GPU nodes; the mix is one task kind, 1 GPU + 12 cores. Placing it on the 12-core node
    # leaves one GPU no task can use (no CPU left): FGD scores +1. On the 24-core node the other
    # GPU keeps 12 cores: 0. Best fit (least left, CPU and GPU weighted) takes the 12-core node.
    task = frag.Demand(1.0, 12.0)
    mix = frag.TaskMix([task])
    tight, roomy = ("G2", (1.0, 1.0), 12.0), ("G2", (1.0, 1.0), 24.0)
    strand = frag.score_of("fgd", tight, task, (0,), mix, SCALE)
    keep = frag.score_of("fgd", roomy, task, (0,), mix, SCALE)
    assert strand[0] == pytest.approx(1.0) and keep[0] == pytest.approx(0.0) and keep < strand
    assert frag.best_of("best-fit", tight, task, mix, SCALE)[0] < frag.best_of("best-fit", roomy, task, mix, SCALE)[0]
    # the paper's best fit: 0.5 x free CPU / 24 + 0.5 x free GPU / 2 after placement
    assert frag.score_of("best-fit", roomy, task, (0,), mix, SCALE)[0] == pytest.approx(0.5 * 12 / 24 + 0.25)


def test_mix_leaves_out_cpu_only_tasks_and_keeps_the_popular():
    mix = frag.TaskMix([frag.Demand(0.0, 8.0), frag.Demand(1.0, 4.0), frag.Demand(1.0, 4.0),
                        frag.Demand(0.5, 2.0)], top=1)
    assert mix.classes == ((frag.Demand(1.0, 4.0), 1.0),)
    assert mix.node_fragmentation(("G2", (1.0, 0.5), 3.0)) == pytest.approx(1.5)


def test_cpu_curve_golden():
    # n0: 2 GPUs, 16 cores; n1: 2 GPUs, 8 cores. Tasks (0.5 GPU, 2 cores), (0.5, 12), (0.5, 8).
    # Best fit puts the first on n1 (least left: 0.5 x 6/16 + 0.5 x 1.5/2 = 0.5625 < 0.8125 on n0);
    # then (0.5, 12) goes to n0 (14 -> 2 cores) and (0.5, 8) fits nowhere: 2 placed, 3.0 GPUs free.
    # FGD puts the first on n0: on n1 it would leave 6 cores, too few for two of the three kinds
    # (+1/3 fragmentation); so n1 keeps its 8 cores for (0.5, 8): 3 placed, 2.5 GPUs free.
    nodes = [("n0", "G2", 2.0), ("n1", "G2", 2.0)]
    reqs = [frag.Demand(0.5, 2.0), frag.Demand(0.5, 12.0), frag.Demand(0.5, 8.0)]
    mix = frag.TaskMix(reqs)
    best = saturation.cpu_curve(nodes, [16.0, 8.0], reqs, "best-fit", mix, levels=(0.375,))
    fgd = saturation.cpu_curve(nodes, [16.0, 8.0], reqs, "fgd", mix, levels=(0.375,))
    assert (best.placed, best.skipped, best.unallocated) == (2, 1, (3.0,))
    assert (fgd.placed, fgd.skipped, fgd.unallocated) == (3, 0, (2.5,))
    assert best.first_failure_unallocated == 3.0 and fgd.first_failure_unallocated is None
    assert best.free_cpus == pytest.approx(24 - 14) and fgd.free_cpus == pytest.approx(24 - 22)
    with pytest.raises(errors.ConfigError, match="CPU cores of every node"):
        saturation.NodeBook(nodes, [16.0], "fgd", mix)


def test_production_requests_and_cluster_carry_cpus():
    reqs = trace.production_requests(4000, seed=3)
    assert reqs == trace.production_requests(4000, seed=3)
    cpu_only = [r for r in reqs if r[0] == 0]
    assert 0.10 < len(cpu_only) / len(reqs) < 0.17 and all(r[1] > 0 for r in reqs)
    ones = [c for g, c, _ in reqs if g == 1.0]
    assert 9 < sum(ones) / len(ones) < 13                       # openb: 11.1 cores with one GPU
    assert all(m is None for _, _, m in reqs)
    assert any(m for _, _, m in trace.production_requests(2000, seed=3, typed=True))
    spec = cluster_file.parse(trace.production_cluster(6212))
    assert len(spec.cpus) == len(spec.nodes) and 100_000 < sum(spec.cpus) < 115_000   # openb: 107,018
    rows = trace.generate_production(500, total_gpus=256, seed=1)
    assert all(r.cpus > 0 for r in rows)
    with pytest.raises(errors.SpecError, match="cpus"):
        cluster_file.parse({"node_groups": [{"count": 1, "gpus_per_node": 8, "gpu_type": "H100", "cpus": -1}]})


def test_trace_csv_keeps_cpus(tmp_path):
    rows = trace.generate_production(50, total_gpus=64, seed=4)
    trace.write(rows, tmp_path / "p.csv")
    assert trace.read(tmp_path / "p.csv") == rows
    plain = trace.generate(20, total_gpus=64, seed=4)
    trace.write(plain, tmp_path / "s.csv")
    assert "cpus" not in (tmp_path / "s.csv").read_text().splitlines()[0]


def test_the_live_placer_keeps_a_nodes_cpus_for_the_mix():
    # The live scheduler's placer, two 2-GPU H100 nodes with 40 and 36 cores. The mix seen so far:
    # 1 GPU + 32 cores. A 0.5-GPU, 6-core bundle on node b would leave it 30 cores, too few for the
    # mix: both of its GPUs stranded. fgd puts it on a, which keeps 34; best-fit (the paper's, on
    # the cores and GPUs left) takes the tighter b by design. Ranked by GPUs alone (the GPUs are
    # alike) fgd took b too.
    from ainative.policy.admission import Job
    from ainative.scheduling._placer import BundlePlacer

    tag = {"accelerator_type:H100": 0.001}
    nodes = {"a": {"GPU": 2.0, "CPU": 40.0, "accelerator_type:H100": 1.0},
             "b": {"GPU": 2.0, "CPU": 36.0, "accelerator_type:H100": 1.0}}
    small = Job("small", "q", 0.5, "H100", 0, False, 0.0, None, ({"GPU": 0.5, "CPU": 6.0, **tag},))
    for placement, expected in (("fgd", "a"), ("best-fit", "b")):
        placer = BundlePlacer(nodes, placement)
        for node in ("a", "b"):                       # the mix: two 1-GPU, 32-core requests
            seen = [(node, 1.0, {"GPU": 1.0, "CPU": 32.0, **tag})]
            placer.take(seen)
            placer.release(seen)
        got = placer.place_job(small, "H100")
        assert got is not None and got[0][0] == expected, (placement, got)
    mix = BundlePlacer(nodes, "fgd")
    mix.take([("a", 1.0, {"GPU": 1.0, "CPU": 32.0, **tag})])
    assert mix.gpus.tasks == {frag.Demand(1.0, 32.0, ("H100",)): 1.0}
    mix.reset(nodes, {}, ())                          # a rebuild from the live cluster keeps the mix
    assert mix.gpus.tasks == {frag.Demand(1.0, 32.0, ("H100",)): 1.0}
