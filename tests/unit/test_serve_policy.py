"""The autoscaling and batching arithmetic, replayed on recorded metric traces (no Ray)."""

from __future__ import annotations

import random
import types

import pytest

import ainative as ai
from ainative.policy import autoscaling as pol
from ainative.policy import batching as bat
from ainative.serve import _autoscale

TICK = 0.1


def replay(config, trace, *, target=1, load_s=0.0):
    """Run ``decide`` over ``trace`` (ongoing, latency) per tick; new replicas take ``load_s`` to
    load. Returns the target after each tick."""
    state, targets, ready_at = pol.State(), [], []
    running = target
    for i, (ongoing, latency) in enumerate(trace):
        now = i * TICK
        ready_at = [t for t in ready_at if t > now]
        running = target - len(ready_at)
        d = pol.decide(config, pol.Signals(running=running, target=target, ongoing=ongoing,
                                           latency_ms=latency), state, now)
        state = d.state
        if d.replicas > target:
            ready_at += [now + load_s] * (d.replicas - target)
        elif d.replicas < target:
            ready_at = ready_at[: max(0, len(ready_at) - (target - d.replicas))]
        target = d.replicas
        targets.append(target)
    return targets


def changes(targets):
    return sum(1 for a, b in zip(targets, targets[1:]) if a != b)


def test_steady_noisy_load_does_not_flap():
    cfg = ai.AutoscalingConfig(min_replicas=1, max_replicas=8, target_concurrency=4,
                               latency_slo_ms=100, downscale_delay_s=5)
    rng = random.Random(7)
    # ~11 ongoing requests (needs 3 replicas) with +-15 % noise and latency near half the SLO.
    trace = [(11 * rng.uniform(0.85, 1.05), rng.uniform(40, 60)) for _ in range(1200)]
    targets = replay(cfg, trace, target=3)
    assert changes(targets) == 0, targets[:50]


def test_step_up_is_fast_and_down_is_slow():
    cfg = ai.AutoscalingConfig(min_replicas=1, max_replicas=8, target_concurrency=4,
                               upscale_delay_s=0.5, downscale_delay_s=5)
    trace = [(2.0, None)] * 20 + [(20.0, None)] * 100 + [(1.0, None)] * 400
    targets = replay(cfg, trace)
    assert targets[19] == 1
    assert targets[20 + 4] == 1          # the step must hold upscale_delay_s first
    assert targets[20 + 6] == 5          # then one decision to what the load needs
    down_start = 120
    assert targets[down_start + 45] == 5  # not before downscale_delay_s
    assert targets[down_start + 55] < 5   # then down...
    assert targets[down_start + 55] >= 2  # ...at most halving in one step
    assert targets[-1] == 1


def test_loading_replicas_are_not_capacity():
    cfg = ai.AutoscalingConfig(min_replicas=1, max_replicas=8, target_concurrency=2,
                               upscale_delay_s=0)
    # The backlog keeps growing while new replicas load (they serve nothing yet): a policy that
    # counted them as capacity, or re-read the growing backlog, would run away to max_replicas.
    trace = [(8.0 + i, None) for i in range(30)]
    targets = replay(cfg, trace, load_s=2.0)
    assert targets[0] == 4
    assert set(targets[: int(2.0 / TICK)]) == {4}


def test_latency_slo_asks_for_more_than_concurrency():
    cfg = ai.AutoscalingConfig(max_replicas=10, target_concurrency=8, latency_slo_ms=100,
                               upscale_delay_s=0)
    sig = pol.Signals(running=2, target=2, ongoing=4, latency_ms=150)
    assert pol.needed(cfg, sig) == (1, 5)
    assert pol.decide(cfg, sig, pol.State(), 0.0).replicas == 5
    # Near (but under) the SLO: hold, do not shrink.
    calm = pol.Signals(running=2, target=2, ongoing=1, latency_ms=70)
    d = pol.decide(cfg, calm, pol.State(down_since=-100.0), 0.0)
    assert d.replicas == 2


def test_scale_to_zero_after_idle_and_back():
    cfg = ai.AutoscalingConfig(min_replicas=1, max_replicas=4, scale_to_zero_after_s=10)
    idle = pol.Signals(running=1, target=1, ongoing=0, idle_s=9.9)
    assert pol.decide(cfg, idle, pol.State(), 0).replicas == 1
    idle = pol.Signals(running=1, target=1, ongoing=0, idle_s=10.0)
    assert pol.decide(cfg, idle, pol.State(), 0).replicas == 0
    wake = pol.Signals(running=0, target=0, ongoing=1)
    assert pol.decide(cfg, wake, pol.State(), 0).replicas == 1


@pytest.mark.parametrize("kwargs, field", [
    (dict(min_replicas=3, max_replicas=2), "min_replicas"),
    (dict(latency_slo_ms=0), "latency_slo_ms"),
    (dict(latency_slo_ms=-5), "latency_slo_ms"),
    (dict(target_concurrency=0), "target_concurrency"),
    (dict(slo_percentile=100.5), "slo_percentile"),
    (dict(hysteresis=1.0), "hysteresis"),
    (dict(initial_replicas=9, max_replicas=4), "initial_replicas"),
])
def test_autoscaling_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ai.ConfigError) as info:
        ai.AutoscalingConfig(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize("kwargs, field", [
    (dict(max_batch_size=0), "max_batch_size"),
    (dict(max_batch_size=2.5), "max_batch_size"),
    (dict(max_wait_ms=-1), "max_wait_ms"),
    (dict(shrink_from=1.0), "shrink_from"),
])
def test_batching_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ai.ConfigError) as info:
        ai.BatchingConfig(**kwargs)
    assert info.value.field == field


def test_batch_wait_shrinks_as_latency_nears_slo():
    cfg = ai.BatchingConfig(max_batch_size=8, max_wait_ms=10, shrink_from=0.5)
    assert bat.batch_wait_ms(cfg, None, 500) == 10
    assert bat.batch_wait_ms(cfg, 100, None) == 10
    assert bat.batch_wait_ms(cfg, 100, 40) == 10
    assert bat.batch_wait_ms(cfg, 100, 75) == pytest.approx(5)
    assert bat.batch_wait_ms(cfg, 100, 100) == 0
    waits = [bat.batch_wait_ms(cfg, 100, lat) for lat in range(0, 120, 5)]
    assert waits == sorted(waits, reverse=True)
    # Sparse arrivals (one every 50 ms, wait 10 ms): nobody will join the batch, do not wait.
    assert bat.batch_wait_ms(cfg, None, None, mean_gap_ms=50.0) == 0
    assert bat.batch_wait_ms(cfg, None, None, mean_gap_ms=2.0) == 10


def test_percentile_and_histograms():
    assert bat.percentile([], 99) is None
    values = list(range(1, 101))
    assert bat.percentile(values, 50) == 50
    assert bat.percentile(values, 99) == 99
    assert bat.percentile(values, 100) == 100
    assert bat.merge_histograms([{1: 2, 4: 1}, {4: 3, 8: 1}]) == {1: 2, 4: 4, 8: 1}


def _ctx(running, target, ongoing, latencies):
    return types.SimpleNamespace(
        deployment_name="m", current_num_replicas=running, target_num_replicas=target,
        total_num_requests=ongoing, aggregated_metrics={"latency_ms": latencies})


def test_serve_policy_adapter_reads_the_context():
    policy = _autoscale.EndpointPolicy(**ai.AutoscalingConfig(
        max_replicas=6, target_concurrency=2, latency_slo_ms=100, upscale_delay_s=0).to_dict())
    replicas, state = policy(_ctx(2, 2, 3, {"r1": 30.0, "r2": 170.0}))
    assert replicas == 6  # the worst replica's latency drives it: ceil(2 * 170 / 60)
    assert "up" in state["ainative_reason"]
    # Replicas that have not reported (0.0) do not dilute the signal.
    sig = _autoscale.signals_from_context(_ctx(2, 2, 0, {"r1": 0.0}), 0.0)
    assert sig.latency_ms is None


def test_a_wish_above_the_admitted_cap_is_held_for_the_downscale_delay():
    """Capped at 1 admitted replica, a decision that flaps 2, 1, 2, 1 asks admission for 2 the
    whole time (each flap would admit an extra, preempting someone, then release it); once the
    held wish is older than downscale_delay_s it lapses. Wishes within the cap pass unchanged."""
    hold = _autoscale.WishHold(hold_s=10.0)
    assert [hold.update(t, d, cap=1) for t, d in [(0.0, 2), (0.5, 1), (1.0, 2), (1.5, 1)]] == [2] * 4
    assert hold.update(11.0, 1, cap=1) == 2         # the wish of t=1.0 is 10 s old: still held
    assert hold.update(11.1, 1, cap=1) == 1         # lapsed
    fresh = _autoscale.WishHold(hold_s=10.0)
    assert [fresh.update(t, d, cap=3) for t, d in [(0.0, 3), (0.5, 1)]] == [3, 1]   # no cap in the way
    assert fresh.update(1.0, 2, cap=None) == 2      # no cap known yet: nothing held
