"""reserve(): infeasible vs timed out, bad input before any resource, release on every path."""

import pytest
from ray.util import placement_group_table

import ainative as ai
from ainative import errors
from ainative.scheduling import placement
from tests.support import clusters

H100 = ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100"))


def live_pgs():
    return [p for p in placement_group_table().values() if p["state"] != "REMOVED"]


def test_gang_reserved_and_released(ray_local, no_leaks):
    with ai.scheduling.reserve([H100, H100], "PACK", timeout_s=30) as gang:
        assert len(gang) == 2 and gang.pg_state() == "CREATED"
        nodes = gang.bundle_nodes()
        assert len(nodes) == 2 and all(nodes)
        assert gang.dead_bundles() == [] and gang.is_healthy()
        assert ray_local.resources().accelerators["H100"].free == 2
    assert gang.released and live_pgs() == []


def test_infeasible_fails_at_once_naming_what_is_missing(ray_local, no_leaks):
    with pytest.raises(errors.InfeasibleError) as info:
        ai.scheduling.reserve([H100] * 5, timeout_s=600)
    assert "H100: needs 5 GPU(s), the cluster has 4" in str(info.value)
    with pytest.raises(errors.InfeasibleError, match="A100"):
        ai.scheduling.reserve([ai.Resources(accelerator=ai.Accelerator("A100"))])
    assert live_pgs() == []


def test_feasible_but_busy_times_out_and_releases(ray_local, no_leaks):
    with ai.scheduling.reserve([H100] * 3, timeout_s=30):
        with pytest.raises(errors.PlacementTimeoutError) as info:
            ai.scheduling.reserve([H100] * 2, timeout_s=1)
        msg = str(info.value)
        assert "did not fit within 1 s" in msg and "1/4 GPU" in msg
        assert len(live_pgs()) == 1  # only the outer gang
    assert live_pgs() == []


def test_placement_group_removed_when_waiting_is_interrupted(ray_local, no_leaks, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(placement, "_wait_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ai.scheduling.reserve([H100])
    assert live_pgs() == []


@pytest.mark.parametrize("bundles,strategy,timeout_s,field", [
    ([], "PACK", 5, "bundles"),
    ([H100], "DIAGONAL", 5, "strategy"),
    ([H100], "PACK", 0, "timeout_s"),
    ([{"GPU": 1}], "PACK", 5, "bundles"),
])
def test_bad_input_before_any_resource(ray_local, bundles, strategy, timeout_s, field):
    before = len(placement_group_table())
    with pytest.raises(errors.ConfigError) as info:
        ai.scheduling.reserve(bundles, strategy, timeout_s=timeout_s)
    assert info.value.field == field
    assert len(placement_group_table()) == before


def test_actor_runs_inside_its_bundle_with_visible_devices(ray_local, no_leaks):
    import ray

    @ray.remote
    class Probe:
        def where(self):
            import os
            return ray.get_runtime_context().get_node_id(), os.environ.get("CUDA_VISIBLE_DEVICES")

    with ai.scheduling.reserve([H100, H100], "PACK", timeout_s=30) as gang:
        actors = [Probe.options(**gang.actor_options(i)).remote() for i in range(2)]
        seen = ray.get([a.where.remote() for a in actors])
        assert [s[0] for s in seen] == gang.bundle_nodes()
        devices = {s[1] for s in seen}
        assert len(devices) == 2 and all(d and d.isdigit() for d in devices)
        for a in actors:
            ray.kill(a)


def test_fixture_cluster_is_shared():
    assert clusters.local_ray() is clusters.local_ray()
