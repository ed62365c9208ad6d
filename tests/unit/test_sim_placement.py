"""Placement scorers on hand-built nodes, FGD's measure, and the saturation measurement (golden)."""

from __future__ import annotations

import pytest

from ainative import errors
from ainative.policy import fragmentation as frag
from ainative.policy.engine import PolicyConfig
from ainative.policy.gpuindex import GpuIndex
from ainative.sim import saturation

MIX = frag.RequestMix({0.5: 1, 1.0: 1})


def test_fragment_by_hand():
    assert frag.fragment([1.0, 0.5], 0.75) == 0.5            # the half GPU cannot hold 0.75
    assert frag.fragment([1.0, 0.5], 0.5) == 0.0
    assert frag.fragment([0.5, 0.25], 0.75) == 0.75          # fits nowhere: all free is fragment
    assert frag.fragment([1.0, 1.0, 0.5], 2) == 0.5          # two whole GPUs; the half is stranded
    assert frag.fragment([1.0, 0.5, 0.0], 2) == 1.5
    assert frag.node_fragmentation([1.0, 0.5], MIX) == pytest.approx(0.25)


def test_fgd_completes_a_gpu_rather_than_strand_a_fraction():
    node = [0.5, 1.0]
    complete = frag.score("fgd", node, 0.5, (0,), MIX)       # -> [0, 1]: nothing stranded
    strand = frag.score("fgd", node, 0.5, (1,), MIX)         # -> [0.5, 0.5]: no whole GPU left
    assert complete < strand
    assert complete[0] == pytest.approx(-0.25) and strand[0] == pytest.approx(0.25)
    assert frag.best("fgd", node, 0.5, MIX)[1] == (0,)
    assert frag.best("best-fit", node, 0.5)[1] == (0,)
    assert frag.best("worst-fit", node, 0.5)[1] == (1,)
    assert frag.best("fgd", [0.25, 0.25], 0.5, MIX) is None  # a fraction must fit inside one GPU


def test_index_places_fractions_per_gpu():
    for placement, want in (("fgd", 0), ("best-fit", 0), ("packed", 0), ("worst-fit", 1)):
        index = GpuIndex([("n0", "H100", 2), ("n1", "H100", 2)], placement, MIX)
        index.take([(0, 0.5)])
        got = index.place(0.5, "H100")
        assert got == ("H100", [(want, 0.5)]), placement
    index = GpuIndex([("n0", "H100", 2)], "fgd", MIX)
    for _ in range(2):
        index.take(index.place(0.5, "H100")[1])
    assert index.whole == [1] and index.node_gpus(0) == [1.0, 0.0]   # two halves share one GPU
    index.release([(0, 0.5)])
    index.release([(0, 0.5)])
    assert index.whole == [2] and index.free == [2.0] and not index.split["H100"]


def test_a_fraction_finds_room_on_any_split_gpu():
    # 100 one-GPU nodes, 99 left with 0.1 free and the last with 0.5: a 0.5 request must go on the
    # last node whatever the placement (a sample of the first 64 split nodes refused it, which
    # stranded hundreds of GPUs in the FGD measurement)
    for placement in frag.PLACEMENTS:
        index = GpuIndex([(f"n{i}", "T4", 1) for i in range(100)], placement, MIX)
        for i in range(99):
            index.take([(i, 0.9)])
        index.take([(99, 0.5)])
        assert index.place(0.5, "T4") == ("T4", [(99, 0.5)]), placement
        assert index.place(0.6, "T4") is None
        index.take([(99, 0.5)])
        assert index.place(0.1, "T4") is not None and index.place(0.2, "T4") is None
        index.release([(99, 0.5)])
        assert index.place(0.5, "T4") == ("T4", [(99, 0.5)]), placement


def test_a_wide_gang_spans_smaller_free_nodes_of_its_type():
    # T4 nodes of 4 and 2 GPUs: an 8-GPU gang takes the free 4-GPU node and two free 2-GPU nodes
    # (before, only 4-GPU nodes counted, so it waited for a second one)
    index = GpuIndex([("a", "T4", 4), ("b", "T4", 2), ("c", "T4", 2), ("d", "T4", 2)], "fgd", MIX)
    index.take([(3, 0.5)])                                  # d is not free
    got = index.place(8, "T4")
    assert got is not None and sorted(got[1]) == [(0, 4.0), (1, 2.0), (2, 2.0)]
    index.take(got[1])
    assert index.place(1, "T4") is not None and index.place(2, "T4") is None
    index.release(got[1])
    # the reservation estimate counts whole free nodes of any size: d frees at t=5
    assert index.shadow(10, "T4", iter([(5.0, [(3, 0.5)])])) == (5.0, frozenset({0, 1, 2, 3}))
    assert index.shadow(12, "T4", iter([(5.0, [(3, 0.5)])])) is None
    # a 4-GPU gang goes on one node when one holds it, else on two whole free 2-GPU nodes
    assert index.place(4, "T4") == ("T4", [(0, 4)])
    index.take([(0, 1.0)])
    got = index.place(4, "T4")
    assert got is not None and sorted(got[1]) == [(1, 2.0), (2, 2.0)]
    index.take([(0, 2.0)])
    assert index.place(3, "T4") is None          # no node has 3 free, and 2 + 2 do not cover 3


def test_three_quarters_do_not_fit_in_two_scattered_halves():
    index = GpuIndex([("n0", "H100", 2)], "worst-fit", MIX)
    index.take(index.place(0.5, "H100")[1])
    index.take(index.place(0.5, "H100")[1])                 # worst-fit: one half on each GPU
    assert index.node_gpus(0) == [0.5, 0.5] and index.free == [1.0]
    assert index.place(0.75, "H100") is None and index.place(1.0, "H100") is None


def test_saturation_golden():
    # 2 nodes x 2 GPUs; requests 0.5, 0.5, 2, 1, 1. Worst-fit puts the halves on different nodes,
    # so the 2-GPU request fits nowhere: 2 placed, 3 GPUs unallocated. FGD (and best-fit) put both
    # halves on one GPU: 0.5, 0.5, 2, 1 placed, the last 1 finds nothing: 0 unallocated.
    nodes = [("n0", "H100", 2.0), ("n1", "H100", 2.0)]
    reqs = [(0.5, None), (0.5, None), (2.0, None), (1.0, None), (1.0, None)]
    mix = frag.RequestMix.of(g for g, _ in reqs)            # 0.5: 0.4, 1: 0.4, 2: 0.2
    worst = saturation.fill(nodes, reqs, "worst-fit", mix)
    assert (worst.placed, worst.unallocated_gpus) == (2, 3.0)
    # each node [1.0, 0.5]: 0.4 x 0 + 0.4 x 0.5 + 0.2 x 1.5 = 0.5 fragmented
    assert worst.fragmented_gpus == pytest.approx(1.0) and worst.fragmentation_rate == pytest.approx(1 / 3)
    for placement in ("fgd", "best-fit", "packed"):
        got = saturation.fill(nodes, reqs, placement, mix)
        assert (got.placed, got.unallocated_gpus, got.fragmented_gpus) == (4, 0.0, 0.0), placement


def test_saturation_curve_golden():
    # the paper's replay past capacity: requests that do not fit are skipped; unallocated GPUs are
    # read as arrivals reach 50%, 100% and 125% of the 4 GPUs
    nodes = [("n0", "H100", 2.0), ("n1", "H100", 2.0)]
    reqs = [(0.5, None), (0.5, None), (2.0, None), (1.0, None), (1.0, None), (1.0, None)]
    mix = frag.RequestMix.of(g for g, _ in reqs)
    fgd = saturation.curve(nodes, reqs, "fgd", mix, levels=(0.5, 1.0, 1.25))
    assert fgd.unallocated == (1.0, 0.0, 0.0) and fgd.placed == {0.5: 2, 2.0: 1, 1.0: 1}
    worst = saturation.curve(nodes, reqs, "worst-fit", mix, levels=(0.5, 1.0, 1.25))
    assert worst.unallocated == (3.0, 2.0, 1.0) and worst.placed == {0.5: 2, 1.0: 2}
    assert worst.free_parts == {"<0.1": 0.0, "0.1-0.25": 0.0, "0.25-1": 1.0, "1": 0.0}


def test_placement_is_validated():
    with pytest.raises(errors.ConfigError, match="placement"):
        PolicyConfig(placement="random")
    with pytest.raises(errors.ConfigError, match="placement"):
        GpuIndex([("n0", "H100", 2)], "tightest")
    assert set(frag.PLACEMENTS) == set(("packed", "best-fit", "worst-fit", "fgd"))
