"""The production-shaped trace generator: its knobs move what they name; the cluster it pairs with."""

from __future__ import annotations

import statistics

import pytest

from ainative import errors
from ainative.sim import cluster as cluster_file
from ainative.sim import trace


def _share(rows, pred) -> float:
    return sum(1 for r in rows if pred(r)) / len(rows)


def test_defaults_follow_the_public_trace():
    rows = trace.generate_production(4000, total_gpus=1024, seed=2)
    assert len(rows) == 4000 and rows == trace.generate_production(4000, total_gpus=1024, seed=2)
    assert 0.40 < _share(rows, lambda r: r.num_gpus < 1) < 0.48
    assert 0.003 < _share(rows, lambda r: r.num_gpus > 1) < 0.03
    assert 0.28 < _share(rows, lambda r: r.gpu_type is not None) < 0.38
    d = sorted(r.duration_s for r in rows)
    assert 250 < d[len(d) // 2] < 1200 and d[-1] <= 7 * 86400
    assert all(b.submit_time_s >= a.submit_time_s for a, b in zip(rows, rows[1:]))
    assert {r.gpu_type for r in rows if r.gpu_type} <= {k[0] for k in trace.NODE_KINDS}


def test_knobs():
    base = dict(total_gpus=1024, seed=5)
    none = trace.generate_production(2000, shape=trace.ProductionShape(fraction_share=0.0), **base)
    assert _share(none, lambda r: r.num_gpus < 1) == 0
    gangs = trace.generate_production(2000, shape=trace.ProductionShape(gang_share=0.3), **base)
    assert 0.25 < _share(gangs, lambda r: r.num_gpus > 1) < 0.35
    capped = trace.generate_production(2000, shape=trace.ProductionShape(duration_cap_s=3600), **base)
    assert max(r.duration_s for r in capped) <= 3600
    poisson = trace.generate_production(2000, shape=trace.ProductionShape(burst_mean=1), **base)
    bursty = trace.generate_production(2000, shape=trace.ProductionShape(burst_mean=20), **base)
    assert len({r.submit_time_s for r in bursty}) < len({r.submit_time_s for r in poisson}) / 4
    flat = trace.generate_production(4000, shape=trace.ProductionShape(team_skew=0), teams=4, **base)
    skewed = trace.generate_production(4000, shape=trace.ProductionShape(team_skew=2), teams=4, **base)
    count = lambda rows: sorted(sum(1 for r in rows if r.team == t) for t in {r.team for r in rows})  # noqa: E731
    assert count(flat)[-1] < 2 * count(flat)[0] and count(skewed)[-1] > 5 * count(skewed)[0]
    half = trace.generate_production(2000, load=0.5, **base)
    full = trace.generate_production(2000, load=1.0, **base)
    assert half[-1].submit_time_s > 1.5 * full[-1].submit_time_s         # same work, twice the span


def test_bad_knobs_are_config_errors():
    for kw in ({"fraction_share": 1.5}, {"fraction_share": 0.8, "gang_share": 0.3}, {"burst_mean": 0.5},
               {"duration_median_s": 0}, {"fraction_sizes": ((1.0, 1.5),)}):
        with pytest.raises(errors.ConfigError):
            trace.ProductionShape(**kw)
    with pytest.raises(errors.ConfigError):
        trace.generate_production(0)


def test_production_cluster_has_the_twelve_node_kinds():
    doc = trace.production_cluster(6212)
    spec = cluster_file.parse(doc)
    kinds = {(g["gpu_type"], g["gpus_per_node"]) for g in doc["node_groups"]}
    assert len(kinds) == 12 and {per for _, per in kinds} == {1, 2, 4, 8}
    assert {g["cpus"] for g in doc["node_groups"] if g["gpu_type"] == "P100" and g["gpus_per_node"] == 2} == {16, 64}
    assert abs(sum(spec.capacity().values()) - 6212) / 6212 < 0.03
    assert statistics.mean(g["gpus_per_node"] for g in doc["node_groups"]) > 1
