"""The queueing term of the autoscaling policy and the edge's load shedding, replayed on signal
traces (arrival rate, service time) without Ray: ramp, step, spike, slow decay, noise."""

from __future__ import annotations

import math
import random
import types

import pytest

import ainative as ai
from ainative.policy import autoscaling as pol
from ainative.serve import _autoscale
from tests.unit import serve_paths

TICK = 0.1
SERVICE_MS = 20.0  # an unbatchable model: 20 ms of device time a request


def config(**kwargs):
    base = dict(min_replicas=1, max_replicas=8, target_concurrency=4, upscale_delay_s=0.5,
                downscale_delay_s=10, target_utilization=0.7, scale_lead_s=3.0)
    return ai.AutoscalingConfig(**{**base, **kwargs})


def need_now(rate, rho=0.7):
    return max(1, math.ceil(rate * SERVICE_MS / 1000 / rho - 1e-9))


def replay(cfg, rates, *, target=1, load_s=0.0, ongoing=None):
    """Run ``decide`` once per tick on the arrival rate ``rates[i]`` (service time fixed, ongoing
    requests ``ongoing[i]`` or what the rate keeps busy); new replicas take ``load_s`` to load.
    Returns the target after each tick."""
    state, targets, loading = pol.State(), [], []
    for i, rate in enumerate(rates):
        now = i * TICK
        loading = [t for t in loading if t > now]
        busy = ongoing[i] if ongoing is not None else rate * SERVICE_MS / 1000
        d = pol.decide(cfg, pol.Signals(running=target - len(loading), target=target, ongoing=busy,
                                        arrival_rps=rate, service_ms=SERVICE_MS), state, now)
        state = d.state
        if d.replicas > target:
            loading += [now + load_s] * (d.replicas - target)
        elif d.replicas < target:
            loading = loading[: max(0, len(loading) - (target - d.replicas))]
        target = d.replicas
        targets.append(target)
    return targets


def ticks(seconds):
    return int(round(seconds / TICK))


def test_queueing_need_is_rate_times_service_over_utilisation():
    cfg = config()
    sig = pol.Signals(running=1, target=1, ongoing=0, arrival_rps=100, service_ms=20)
    assert pol.queueing_need(cfg, sig) == 3          # 100/s x 20 ms = 2 busy replicas / 0.7
    assert pol.queueing_need(config(target_utilization=0.5), sig) == 4
    assert pol.queueing_need(config(target_utilization=None), sig) == 0
    assert pol.queueing_need(cfg, pol.Signals(running=1, target=1, ongoing=0)) == 0  # no data
    # A rising trend projects scale_lead_s ahead, at most +50 % of the rate; a small one is noise.
    assert pol.projected_rate(cfg, 100, trend=10) == 130
    assert pol.projected_rate(cfg, 100, trend=100) == 150
    assert pol.projected_rate(cfg, 100, trend=5) == 100
    assert pol.projected_rate(cfg, 100, trend=-50) == 100


def test_step_scales_on_arrivals_before_any_backlog():
    # 10/s -> 100/s at t=2 s; ongoing stays at 1 (no queue yet): the concurrency term alone would
    # never move, the queueing term asks for what 100/s needs after upscale_delay_s.
    rates = [10.0] * ticks(2) + [100.0] * ticks(20)
    targets = replay(config(), rates, ongoing=[1.0] * len(rates))
    assert set(targets[: ticks(2)]) == {1}
    assert targets[ticks(2) + 4] == 1                    # the step must hold 0.5 s first
    assert targets[ticks(2) + 5] >= need_now(100) == 3   # then at once to what the rate needs
    assert max(targets) <= math.ceil(1.5 * 100 * SERVICE_MS / 1000 / 0.7)  # capped projection
    # An overshoot comes back down to the hysteresis band (scale down only when the rate fits
    # one replica fewer at (1 - hysteresis) x target_utilization).
    assert need_now(100) <= targets[-1] <= need_now(100, rho=0.7 * 0.8)


def test_ramp_is_anticipated_and_never_lags():
    # 10/s -> 100/s over 30 s: the trend (3/s/s x 3 s lead) asks for replicas ahead of the rate,
    # and at no tick past the up delay is the target below what the rate provably needs (its
    # lower noise bound) nor the replicas busier than 80 %.
    rates = [10.0] * ticks(4) + [10 + 3 * i * TICK for i in range(ticks(30))] + [100.0] * ticks(10)
    targets = replay(config(), rates)
    for i, (rate, target) in enumerate(zip(rates, targets)):
        lagging = [need_now(pol.rate_lower_bound(r)) for r in rates[max(0, i - ticks(0.6)): i + 1]]
        assert target >= min(lagging), (i * TICK, rate, target)
        assert rates[max(0, i - ticks(0.6))] * SERVICE_MS / 1000 / target <= 0.8, (i * TICK, target)
    # 2 replicas are needed from 35/s (t = 4 + 8.3 s); the trend asked for them earlier.
    first_two = targets.index(2) * TICK
    assert first_two < 4 + (35 - 10) / 3, first_two
    assert targets[-1] == need_now(100) == 3


def test_loading_replicas_do_not_stop_the_rate_term():
    # A ramp while replicas take 5 s to load: the backlog terms hold, the rate term still asks.
    rates = [10.0 + 5 * i * TICK for i in range(ticks(20))]            # 10/s -> 110/s
    targets = replay(config(), rates, load_s=5.0, ongoing=[50.0] * len(rates))
    assert targets[-1] >= need_now(100)
    assert max(targets) <= 8


def test_short_spike_does_not_scale_and_long_one_does():
    cfg = config()
    spike = [10.0] * ticks(5) + [200.0] * 3 + [10.0] * ticks(15)        # 0.3 s < upscale delay
    assert set(replay(cfg, spike, ongoing=[1.0] * len(spike))) == {1}
    held = [10.0] * ticks(5) + [200.0] * ticks(2) + [10.0] * ticks(30)
    targets = replay(cfg, held, ongoing=[1.0] * len(held))
    assert max(targets) >= need_now(200) == 6
    assert targets[ticks(5) + ticks(2) + ticks(9)] == max(targets)      # down waits 10 s
    assert targets[-1] < max(targets)                                   # then shrinks


def test_slow_decay_steps_down_monotonically_and_keeps_capacity():
    # 120/s decaying to 5/s over 60 s: never below what the rate needs, never back up (no
    # flapping), ends at the floor.
    rates = [120.0 - 115.0 * i / ticks(60) for i in range(ticks(60))] + [5.0] * ticks(40)
    targets = replay(config(), rates, target=need_now(120))
    assert targets[0] == need_now(120) == 4
    assert all(b <= a for a, b in zip(targets, targets[1:])), targets
    for rate, target in zip(rates, targets):
        assert target >= need_now(rate)
    assert targets[-1] == 1


def test_noisy_steady_arrivals_do_not_flap():
    rng = random.Random(3)
    # 60/s (needs 2 at 0.7) with the noise of a 1 s Poisson count (sd ~ sqrt(60)), each sample
    # held for 0.4 s (Serve records a replica's metrics that often).
    rates = [r for _ in range(ticks(120) // 4) for r in [60.0 + rng.gauss(0, 60 ** 0.5)] * 4]
    targets = replay(config(), rates, target=2)
    assert set(targets) == {2}, sorted(set(targets))


def test_config_validates_the_new_knobs():
    for kwargs, field in [(dict(target_utilization=0), "target_utilization"),
                          (dict(target_utilization=1.5), "target_utilization"),
                          (dict(scale_lead_s=-1), "scale_lead_s"),
                          (dict(shed_over_slo=1), "shed_over_slo"),
                          (dict(shed_over_slo=True), "shed_over_slo")]:
        with pytest.raises(ai.ConfigError) as info:
            ai.AutoscalingConfig(**kwargs)
        assert info.value.field == field and field in str(info.value)
    assert ai.AutoscalingConfig(latency_slo_ms=200, shed_over_slo=True).shed_over_slo
    assert ai.AutoscalingConfig(target_utilization=None).target_utilization is None


def test_service_time_fit():
    # Unbatched: the mean duration.
    assert pol.service_ms([(1, 20.0), (1, 22.0)], 1) == pytest.approx(21.0)
    # Batched, cost 50 + 1 ms a request, seen at several sizes: the per-request cost at 16.
    batches = [(n, 50.0 + n) for n in (1, 2, 4, 8, 3)]
    assert pol.service_ms(batches, 16) == pytest.approx(66.0 / 16)
    # One size only (light steady load): the fixed cost is assumed to dominate.
    assert pol.service_ms([(1, 51.0)] * 5, 16) == pytest.approx(51.0 / 16)
    # A purely linear model (no fixed cost) stays linear; a negative intercept is clamped.
    assert pol.service_ms([(n, 10.0 * n) for n in (1, 2, 4)], 8) == pytest.approx(10.0)
    assert pol.service_ms([(1, 1.0), (4, 40.0)], 8) > 0
    assert pol.service_ms([], 8) is None


def test_shed_when_the_work_ahead_outlasts_the_slo():
    assert pol.shed(200, in_flight=1, measured_rps=1, capacity_rps=1) is None       # nothing ahead
    assert pol.shed(200, in_flight=10, measured_rps=0, capacity_rps=0) is None      # no evidence
    assert pol.shed(200, in_flight=10, measured_rps=0, capacity_rps=100) is None    # 100 ms <= 200
    verdict = pol.shed(200, in_flight=60, measured_rps=0, capacity_rps=20)          # 3 s ahead
    assert verdict is not None and verdict.predicted_ms == pytest.approx(3000)
    assert verdict.retry_after_s == 3
    assert pol.shed(200, in_flight=10_000, measured_rps=1, capacity_rps=1).retry_after_s == 60
    # Completions faster than the reported capacity: the measured rate is the better estimate.
    assert pol.shed(200, in_flight=10, measured_rps=100, capacity_rps=20) is None


def test_no_shedding_on_measured_completions_before_a_capacity_is_reported():
    # busy fresh-clone run (2026-12-03): a new endpoint answering 8 req/s of 30 ms each shed a
    # request 0.6 s after its first answers; the completions then (a few, over a 2 s window)
    # were the demand, not the capacity, and predicted 3 in flight to take over 300 ms.
    assert pol.shed(300, in_flight=3, measured_rps=2.5, capacity_rps=0) is None
    assert pol.shed(300, in_flight=3, measured_rps=2.5, capacity_rps=33) is None
    assert pol.shed(300, in_flight=30, measured_rps=2.5, capacity_rps=33) is not None


def _ctx(running, target, ongoing, metrics, raw=None):
    return types.SimpleNamespace(
        deployment_name="m", current_num_replicas=running, target_num_replicas=target,
        total_num_requests=ongoing, aggregated_metrics=metrics, raw_metrics=raw)


def test_adapter_reads_arrival_rate_and_service_time():
    sig = _autoscale.signals_from_context(_ctx(2, 2, 1, {
        "latency_ms": {"r1": 30.0}, "arrival_rps": {"r1": 90.0, "r2": 100.0},
        "service_ms": {"r1": 20.0, "r2": 0.0, "r3": 30.0}}), 0.0)
    assert sig.arrival_rps == 100.0 and sig.service_ms == 25.0
    policy = _autoscale.EndpointPolicy(**config(upscale_delay_s=0).to_dict())
    replicas, _ = policy(_ctx(1, 1, 1, {"arrival_rps": {"r1": 100.0},
                                        "service_ms": {"r1": 20.0}}))
    assert replicas == 3
    # The newest raw sample wins over the look-back mean (a step is seen a second sooner).
    point = types.SimpleNamespace
    raw = {"arrival_rps": {"r1": [point(timestamp=1.0, value=10.0), point(timestamp=2.0, value=95.0),
                                  point(timestamp=1.5, value=40.0)], "r2": []}}
    sig = _autoscale.signals_from_context(_ctx(1, 1, 1, {"arrival_rps": {"r1": 48.0}}, raw), 0.0)
    assert sig.arrival_rps == 95.0
    old = _autoscale.signals_from_context(_ctx(1, 1, 0, {"latency_ms": {"r1": 5.0}}), 0.0)
    assert old.arrival_rps is None and old.service_ms is None


class _SerialModel:
    """A model answer (tests/unit/serve_paths.py): one request at a time, ``ms`` each."""

    def __init__(self, ms):
        import asyncio

        self.ms, self.lock, self.calls, self.answered = ms, asyncio.Lock(), 0, 0

    async def __call__(self, payload):
        import asyncio

        async with self.lock:
            self.calls += 1
            await asyncio.sleep(self.ms / 1000)
            self.answered += 1
            return ("ok", payload)


def _shedding_front(path, model, capacity_rps, slo_ms=100.0, shed=True):
    return serve_paths.front(path, model, capacity_rps=capacity_rps, max_request_bytes=1024,
                             request_timeout_s=10.0, latency_slo_ms=slo_ms, shed_over_slo=shed)


@pytest.mark.parametrize("path", serve_paths.PATHS)
def test_the_edge_sheds_what_cannot_make_the_slo_and_answers_the_rest(path):
    import asyncio
    import json
    import time

    from ainative.serve import _edge

    model = _SerialModel(ms=50)  # 20 requests/s, the capacity the store (or replica) reports
    edge = _shedding_front(path, model, capacity_rps=20.0).edge

    async def scenario():
        # No measured throughput or capacity yet: nothing is shed (no evidence).
        first = await asyncio.gather(*(edge.admit(i, time.monotonic() + 10) for i in range(3)))
        assert [s for s, _ in first] == ["ok"] * 3
        await asyncio.sleep(0.01)                # the capacity read started above lands
        t0 = time.monotonic()
        burst = await asyncio.gather(*(edge.admit(i, time.monotonic() + 10) for i in range(30)))
        return burst, time.monotonic() - t0

    burst, _ = asyncio.run(scenario())
    statuses = [s for s, _ in burst]
    served, shed = statuses.count("ok"), statuses.count("shed")
    # 100 ms at 20/s: the request with itself and one ahead makes it, the third would wait 150 ms.
    assert served == 2 and shed == 28 and edge.counters["shed"] == 28
    assert model.calls == 3 + 2                   # shed requests never reached the model
    reason = next(v for s, v in burst if s == "shed")
    assert "latency_slo_ms=100" in reason and "retry after 1 s" in reason
    response = edge.respond("shed", reason)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert json.loads(response.body)["status"] == "shed"
    assert edge.counters["http_5xx"] == 0 and _edge.HTTP_STATUS["shed"] == 503


@pytest.mark.parametrize("path", serve_paths.PATHS)
def test_without_shedding_the_edge_queues_everything(path):
    import asyncio
    import time

    edge = _shedding_front(path, _SerialModel(ms=5), capacity_rps=200.0, shed=False).edge

    async def scenario():
        return await asyncio.gather(*(edge.admit(i, time.monotonic() + 10) for i in range(30)))

    assert {s for s, _ in asyncio.run(scenario())} == {"ok"}
    assert edge.counters["shed"] == 0
    assert edge.flow.arrived(time.monotonic()) >= 30       # arrivals are counted either way


def test_flow_counts_rates_over_their_windows_and_forgets():
    from ainative.serve import _edge

    flow = _edge.Flow()
    for i in range(50):
        rate = flow.arrived(100.0 + i * 0.02)            # 50/s for one second
        flow.answered(100.0 + i * 0.02)
    assert rate == pytest.approx(50, abs=1)
    assert flow.throughput(101.0) == pytest.approx(25, abs=1)  # 50 answers over a 2 s window
    assert flow.arrived(105.0) == 1                      # the old arrivals left the window
    flow.answered(110.0)
    assert len(flow._answers) == 1                       # answers do not pile up unread
