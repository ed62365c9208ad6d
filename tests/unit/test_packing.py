from ainative.policy import packing

H100 = "accelerator_type:H100"
A100 = "accelerator_type:A100"


def node(gpus, kind=H100, cpus=8):
    return {"CPU": float(cpus), "GPU": float(gpus), kind: 1.0}


def gpu_bundle(gpus=1, kind=H100, cpus=1):
    return {"CPU": float(cpus), "GPU": float(gpus), kind: 0.001}


def test_pack_prefers_one_node():
    nodes = {"a": node(8), "b": node(8)}
    placed = packing.assign([gpu_bundle()] * 8, nodes, "PACK")
    assert placed is not None and len(set(placed)) == 1


def test_pack_falls_back_to_several_nodes():
    nodes = {"a": node(2), "b": node(2)}
    placed = packing.assign([gpu_bundle()] * 4, nodes, "PACK")
    assert sorted(placed) == ["a", "a", "b", "b"]


def test_strict_pack_needs_one_node():
    nodes = {"a": node(2), "b": node(2)}
    assert packing.assign([gpu_bundle()] * 3, nodes, "STRICT_PACK") is None
    assert "STRICT_PACK needs one node" in packing.shortfall([gpu_bundle()] * 3, nodes, "STRICT_PACK")


def test_strict_spread_uses_distinct_nodes():
    nodes = {"a": node(2), "b": node(2), "c": node(2)}
    placed = packing.assign([gpu_bundle()] * 3, nodes, "STRICT_SPREAD")
    assert sorted(placed) == ["a", "b", "c"]
    assert packing.assign([gpu_bundle()] * 4, nodes, "STRICT_SPREAD") is None


def test_strict_spread_matching_is_not_greedy():
    # bundle 0 fits anywhere, bundle 1 only on "big": a greedy pass putting 0 on "big" would fail.
    nodes = {"big": node(4), "small": node(1)}
    placed = packing.assign([gpu_bundle(1), gpu_bundle(4)], nodes, "STRICT_SPREAD")
    assert placed == ["small", "big"]


def test_spread_uses_distinct_nodes_when_it_can():
    nodes = {"a": node(4), "b": node(4)}
    placed = packing.assign([gpu_bundle()] * 2, nodes, "SPREAD")
    assert len(set(placed)) == 2


def test_type_routing_and_typed_shortfall():
    nodes = {"a": node(2, H100), "b": node(8, A100)}
    assert packing.assign([gpu_bundle(1, H100)] * 4, nodes, "PACK") is None
    why = packing.shortfall([gpu_bundle(1, H100)] * 4, nodes, "PACK")
    assert "H100: needs 4 GPU(s), the cluster has 2" in why


def test_bin_packing_backtracks():
    # first-fit decreasing alone is fine here, but fragments must still be combined correctly
    nodes = {"a": {"CPU": 3.0}, "b": {"CPU": 3.0}}
    bundles = [{"CPU": 2.0}, {"CPU": 2.0}, {"CPU": 1.0}, {"CPU": 1.0}]
    placed = packing.assign(bundles, nodes, "PACK")
    assert placed is not None
    load = {"a": 0.0, "b": 0.0}
    for b, n in zip(bundles, placed):
        load[n] += b["CPU"]
    assert load == {"a": 3.0, "b": 3.0}


def test_fractional_gpus_share_a_node():
    nodes = {"a": node(1)}
    assert packing.assign([gpu_bundle(0.5, cpus=0.5)] * 2, nodes, "PACK") == ["a", "a"]
    assert packing.assign([gpu_bundle(0.5, cpus=0.5)] * 3, nodes, "PACK") is None


def test_empty_gang_is_trivially_placed():
    assert packing.assign([], {"a": node(1)}, "PACK") == []
