"""Replica-count decisions for an inference endpoint: pure arithmetic, no Ray.

Ray Serve's custom-policy hook (``ainative.serve._autoscale``) turns its autoscaling context into
:class:`Signals` and calls :func:`decide` every control-loop tick; unit tests replay recorded
signal traces through the same function.

::

    arrival rate λ (up: its lower noise bound), its trend, service time S (per request, at the
    best batch a replica makes)
                     ──> need_queueing    = ceil(λ(now + scale_lead_s) * S / target_utilization)
    ongoing requests ──> need_concurrency = ceil(ongoing / target_concurrency)
    tail latency     ──> need_latency     = running * latency / (slo * aim)   (only near the SLO)
                         raw = clamp(max(...), floor, max_replicas)
    up:   raw > target, condition held upscale_delay_s                          -> raw
          (while a replica still loads only the queueing term may ask for more: arrivals are
          not backlog, so they cannot double-count what the loading replica will absorb)
    down: ongoing fits target-1 replicas with a hysteresis band, latency calm,
          condition held downscale_delay_s                                       -> at most halve
    zero: no request for scale_to_zero_after_s (when set)                         -> 0
"""

from __future__ import annotations

import dataclasses
import math

from ainative import errors
from ainative.config import MAX_DURATION_S, MAX_WORKERS, require_int, require_positive, require_range

# Latency above this share of the SLO asks for more replicas; below CALM it allows scale-down.
HOT = 0.8
CALM = 0.5
# Scale so that latency lands at this share of the SLO (proportional control).
AIM = 0.6
# The arrival-rate trend is a slope over at least this long (shorter slopes are noise), smoothed.
# Its projection counts only past a dead band (a rise of less than 20 % within scale_lead_s is
# noise, not a ramp) and adds at most half the current rate (a step seen through the metrics'
# look-back window looks like a steep ramp; extrapolating it would overshoot).
TREND_MIN_DT_S = 2.0
TREND_SMOOTHING = 0.5
TREND_DEADBAND = 0.2
TREND_CAP = 0.5
# The arrival rate is a count over RATE_WINDOW_S (the ingress's window): scale up on its lower
# one-sigma bound (Poisson: sqrt(count)), so that the noise of a steady load does not add a replica
# every time a sample runs high; scale down on the rate itself.
RATE_WINDOW_S = 1.0
RATE_NOISE_SIGMAS = 1.0


# Spelled out (not config.config_dataclass) so that mypy sees a dataclass.
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class AutoscalingConfig:
    """How many replicas an endpoint runs, driven by concurrency and a latency SLO."""

    min_replicas: int = 1
    """Fewest replicas while the endpoint has traffic (0 allows scale to zero at once)."""
    max_replicas: int = 4
    """Most replicas; each takes the endpoint's Resources."""
    target_concurrency: float = 4.0
    """Ongoing (queued + running) requests one replica should hold; batching wants > 1."""
    latency_slo_ms: float | None = None
    """Latency objective in ms at ``slo_percentile``; None scales on concurrency alone."""
    slo_percentile: float = 99.0
    """Which percentile the SLO is about (e.g. 99 for p99)."""
    scale_to_zero_after_s: float | None = None
    """Stop every replica after this many seconds without a request; None never does."""
    initial_replicas: int | None = None
    """Replicas started by deploy(); None starts ``max(min_replicas, 1)``."""
    upscale_delay_s: float = 0.5
    """How long a scale-up signal must hold before acting (fast up)."""
    downscale_delay_s: float = 10.0
    """How long a scale-down signal must hold before acting (slow down, no flapping)."""
    hysteresis: float = 0.2
    """Scale down only when load fits one replica fewer with this much headroom (0.2 = 20 %)."""
    metrics_interval_s: float = 0.5
    """How often replicas and handles report load to the controller."""
    target_utilization: float | None = 0.7
    """Share of the replicas' measured capacity the queueing estimate plans for: replicas needed
    = arrival rate x service time / this. Lower leaves more headroom for bursts; None turns the
    queueing term off (concurrency and latency alone)."""
    scale_lead_s: float = 3.0
    """How far ahead a rising arrival rate is projected (about a replica's cold start), so that
    capacity is asked for before the queue builds; 0 plans for the current rate only."""
    shed_over_slo: bool = False
    """Answer 503 with Retry-After at once when a request's predicted latency (the work ahead of
    it over the measured throughput) exceeds latency_slo_ms, instead of letting it wait; counted
    as ``shed``. Needs latency_slo_ms."""

    def __post_init__(self) -> None:
        owner = "AutoscalingConfig"
        require_int(owner, "min_replicas", self.min_replicas, minimum=0, maximum=MAX_WORKERS)
        require_int(owner, "max_replicas", self.max_replicas, minimum=1, maximum=MAX_WORKERS)
        if self.min_replicas > self.max_replicas:
            raise errors.ConfigError(
                f"AutoscalingConfig.min_replicas ({self.min_replicas}) must be <= max_replicas "
                f"({self.max_replicas}); raise max_replicas or lower min_replicas",
                field="min_replicas", value=self.min_replicas)
        # finite: a NaN here makes decide() raise every tick and the endpoint never scales
        require_positive(owner, "target_concurrency", self.target_concurrency, maximum=1e6)
        require_positive(owner, "latency_slo_ms", self.latency_slo_ms, allow_none=True,
                         maximum=MAX_DURATION_S * 1000)
        require_range(owner, "slo_percentile", self.slo_percentile, 0, 100, low_open=True)
        require_positive(owner, "scale_to_zero_after_s", self.scale_to_zero_after_s,
                         allow_none=True, maximum=MAX_DURATION_S)
        if self.initial_replicas is not None:
            require_int(owner, "initial_replicas", self.initial_replicas,
                        minimum=self.min_replicas, maximum=self.max_replicas)
        require_positive(owner, "upscale_delay_s", self.upscale_delay_s, allow_zero=True,
                         maximum=MAX_DURATION_S)
        require_positive(owner, "downscale_delay_s", self.downscale_delay_s, allow_zero=True,
                         maximum=MAX_DURATION_S)
        require_range(owner, "hysteresis", self.hysteresis, 0.0, 1.0, high_open=True)
        require_range(owner, "metrics_interval_s", self.metrics_interval_s, 0.05, 60.0)
        if self.target_utilization is not None:
            require_range(owner, "target_utilization", self.target_utilization, 0.0, 1.0,
                          low_open=True)
        require_positive(owner, "scale_lead_s", self.scale_lead_s, allow_zero=True, maximum=600.0)
        if not isinstance(self.shed_over_slo, bool):
            raise errors.ConfigError(
                f"AutoscalingConfig.shed_over_slo must be True or False, got {self.shed_over_slo!r}",
                field="shed_over_slo", value=self.shed_over_slo)
        if self.shed_over_slo and self.latency_slo_ms is None:
            raise errors.ConfigError(
                "AutoscalingConfig.shed_over_slo=True needs latency_slo_ms (the deadline a request "
                "is shed against); set latency_slo_ms or leave shed_over_slo False",
                field="shed_over_slo", value=True)

    def to_dict(self) -> dict[str, float | int | None]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True, slots=True)
class Signals:
    """What the controller observed at one tick."""

    running: int
    """Replicas that have loaded their model and serve."""
    target: int
    """Replicas currently asked for (running + still loading)."""
    ongoing: float
    """Requests queued or running across the endpoint."""
    latency_ms: float | None = None
    """Observed latency at the SLO percentile over the look-back window (None: no data)."""
    idle_s: float = 0.0
    """Seconds since the endpoint last had an ongoing request."""
    arrival_rps: float | None = None
    """Requests arriving per second at the endpoint (None: not reported)."""
    service_ms: float | None = None
    """Device time one request costs a replica, at the best batch it makes (None: no data)."""


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    """What the policy remembers between ticks."""

    up_since: float | None = None
    down_since: float | None = None
    rate: float | None = None
    """The arrival rate when the trend was last updated, and when (``rate_at``)."""
    rate_at: float | None = None
    trend: float = 0.0
    """Smoothed slope of the arrival rate, requests/s per second."""


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    reason: str
    state: State


def needed(config: AutoscalingConfig, s: Signals) -> tuple[int, int]:
    """(replicas the concurrency needs, replicas the latency SLO needs)."""
    by_concurrency = math.ceil(max(0.0, s.ongoing) / config.target_concurrency - 1e-9)
    by_latency = 0
    slo = config.latency_slo_ms
    if slo is not None and s.latency_ms is not None and s.running > 0:
        if s.latency_ms > HOT * slo:
            by_latency = math.ceil(s.running * s.latency_ms / (AIM * slo))
        elif s.latency_ms > CALM * slo:
            by_latency = s.running  # near the SLO: hold what we have
    return by_concurrency, by_latency


def queueing_need(config: AutoscalingConfig, s: Signals, trend: float = 0.0,
                  utilization: float | None = None) -> int:
    """Replicas the arrival rate needs: ``projected_rate(λ, trend) * S / utilization``
    (``utilization`` defaults to ``target_utilization``); 0 without both signals or the term."""
    rho = utilization if utilization is not None else config.target_utilization
    if rho is None or s.arrival_rps is None or s.service_ms is None or s.service_ms <= 0:
        return 0
    return math.ceil(projected_rate(config, s.arrival_rps, trend) * s.service_ms / 1000.0 / rho
                     - 1e-9)


def rate_lower_bound(rate: float | None) -> float | None:
    """The rate minus RATE_NOISE_SIGMAS standard deviations of a Poisson count over
    RATE_WINDOW_S: what the sample proves, not what noise suggests."""
    if rate is None:
        return None
    count = max(0.0, rate) * RATE_WINDOW_S
    return max(0.0, count - RATE_NOISE_SIGMAS * math.sqrt(count)) / RATE_WINDOW_S


def projected_rate(config: AutoscalingConfig, rate: float, trend: float) -> float:
    """The arrival rate ``scale_lead_s`` ahead: a rising trend past the dead band, capped."""
    rate = max(0.0, rate)
    rise = max(0.0, trend) * config.scale_lead_s
    if rise < TREND_DEADBAND * rate:
        return rate
    return rate + min(rise, TREND_CAP * rate)


def track_rate(state: State, s: Signals, now: float) -> State:
    """``state`` with the arrival-rate trend updated (a slope over >= TREND_MIN_DT_S, smoothed)
    and the up/down timers cleared (``decide`` sets the one that runs)."""
    if s.arrival_rps is None:
        return State()
    if state.rate is None or state.rate_at is None:
        return State(rate=s.arrival_rps, rate_at=now)
    dt = now - state.rate_at
    if dt < TREND_MIN_DT_S:
        return State(rate=state.rate, rate_at=state.rate_at, trend=state.trend)
    slope = (s.arrival_rps - state.rate) / dt
    trend = TREND_SMOOTHING * state.trend + (1.0 - TREND_SMOOTHING) * slope
    return State(rate=s.arrival_rps, rate_at=now, trend=trend)


def decide(config: AutoscalingConfig, s: Signals, state: State, now: float) -> Decision:
    """The replica count to ask for at time ``now`` (seconds, any monotonic clock)."""
    memo = track_rate(state, s, now)
    if (config.scale_to_zero_after_s is not None and s.ongoing <= 0
            and s.idle_s >= config.scale_to_zero_after_s):
        return Decision(0, f"idle {s.idle_s:.1f}s >= scale_to_zero_after_s", memo)
    floor = max(config.min_replicas, 1 if s.ongoing > 0 else config.min_replicas)
    by_c, by_l = needed(config, s)
    by_q = queueing_need(config, dataclasses.replace(s, arrival_rps=rate_lower_bound(s.arrival_rps)),
                         memo.trend)
    starting = max(0, s.target - s.running)
    # Loading replicas are not capacity yet, and the backlog we see is what the running ones
    # could not absorb: while one loads only the arrival rate (not a backlog) may ask for more.
    raw = min(config.max_replicas, max(floor, by_q) if starting else max(floor, by_c, by_l, by_q))
    if raw > s.target:
        since = state.up_since if state.up_since is not None else now
        if s.target == 0 or now - since + 1e-9 >= config.upscale_delay_s:
            # From zero every request is waiting on a cold start: no reason to wait longer.
            return Decision(raw, f"up: queueing needs {by_q}, concurrency {by_c}, "
                                 f"latency {by_l}", memo)
        return Decision(s.target, "up pending", dataclasses.replace(memo, up_since=since))
    if starting:
        return Decision(s.target, f"hold: {starting} replica(s) still loading", memo)
    down_to = _down_target(config, s, floor, by_l, memo.trend)
    if down_to < s.target:
        since = state.down_since if state.down_since is not None else now
        if now - since + 1e-9 >= config.downscale_delay_s:
            return Decision(down_to, f"down: load fits {down_to}", memo)
        return Decision(s.target, "down pending", dataclasses.replace(memo, down_since=since))
    if s.target < floor:
        return Decision(floor, "up to floor", memo)
    return Decision(s.target, "steady", memo)


def _down_target(config: AutoscalingConfig, s: Signals, floor: int, by_latency: int,
                 trend: float) -> int:
    """How far down the load allows, with the hysteresis band and at most halving per step."""
    per_replica = config.target_concurrency * (1.0 - config.hysteresis)
    fits = math.ceil(max(0.0, s.ongoing) / per_replica - 1e-9)
    rho = config.target_utilization
    by_q = 0 if rho is None else queueing_need(config, s, trend, rho * (1.0 - config.hysteresis))
    half = s.target // 2
    return max(floor, fits, by_latency, by_q, half)


def service_ms(batches: list[tuple[int, float]], max_batch_size: int) -> float | None:
    """Device time per request at the best batch a replica makes, from recent ``(batch size,
    duration ms)`` samples: a least-squares fit of ``duration = a + b * size`` evaluated at
    ``max_batch_size`` and divided by it. With one batch size only (a steady light load) the fit
    is underdetermined: a batched model is then assumed to cost the same for a full batch (the
    fixed cost dominates, as on an accelerator; the concurrency and latency terms correct an
    optimistic guess), an unbatched one costs the mean duration."""
    if not batches:
        return None
    sizes = [float(n) for n, _ in batches]
    durations = [d for _, d in batches]
    mean_n, mean_d = sum(sizes) / len(sizes), sum(durations) / len(durations)
    var = sum((n - mean_n) ** 2 for n in sizes)
    if max_batch_size <= 1 or var <= 1e-9:
        return mean_d / (mean_n if max_batch_size <= 1 else max_batch_size)
    slope = sum((n - mean_n) * (d - mean_d) for n, d in zip(sizes, durations)) / var
    slope = max(0.0, slope)
    fixed = mean_d - slope * mean_n
    if fixed < 0:
        fixed, slope = 0.0, mean_d / mean_n
    return (fixed + slope * max_batch_size) / max_batch_size


@dataclasses.dataclass(frozen=True, slots=True)
class Shed:
    """Why a request is refused at the edge: its predicted latency and when to retry."""

    predicted_ms: float
    retry_after_s: int


def shed(slo_ms: float, in_flight: int, measured_rps: float, capacity_rps: float, *,
         min_in_flight: int = 2) -> Shed | None:
    """Load shedding at the edge: a new request is done when the ``in_flight`` requests (itself
    included) have drained at the larger of ``measured_rps`` (completions per second measured
    lately) and ``capacity_rps`` (the replicas' reported capacity, from their service times).
    When that wait alone exceeds the SLO the request cannot make its deadline with the capacity
    serving now (replicas still starting take seconds, longer than such an SLO), so it is refused
    at once. Until the replicas have reported a capacity nothing is shed: the completions measured
    then are what the clients asked for, not what the replicas can do (a new endpoint at a quarter
    of its capacity shed a request on them under load), and a cold start has no evidence at all."""
    if in_flight < min_in_flight or capacity_rps <= 0:
        return None
    predicted_ms = in_flight / max(measured_rps, capacity_rps) * 1000.0
    if predicted_ms <= slo_ms:
        return None
    return Shed(predicted_ms, max(1, min(60, math.ceil((predicted_ms - slo_ms) / 1000.0))))


def max_ongoing_requests(max_batch_size: int, target_concurrency: float) -> int:
    """Requests in flight one replica accepts (Serve's ``max_ongoing_requests``): enough to fill
    its batches; past that Serve's router holds requests back (and the edge counts them)."""
    return max(4 * max_batch_size, math.ceil(4 * target_concurrency), 16)


def serve_autoscaling_config(config: AutoscalingConfig, policy_function: object, *,
                             policy_kwargs: dict[str, object] | None = None,
                             initial_replicas: int | None = None) -> dict[str, object]:
    """Ray Serve's ``autoscaling_config`` running our policy (``policy_function``: the class, or
    its import path where Serve imports it, as in a RayService), with every Serve delay at 0 because
    the policy applies its own. One builder for local endpoints and RayServices."""
    low = 0 if config.scale_to_zero_after_s is not None else config.min_replicas
    initial = initial_replicas if initial_replicas is not None else (
        config.initial_replicas if config.initial_replicas is not None else max(config.min_replicas, 1))
    return {
        "min_replicas": low, "max_replicas": config.max_replicas, "initial_replicas": initial,
        "target_ongoing_requests": config.target_concurrency,
        "metrics_interval_s": config.metrics_interval_s,
        "look_back_period_s": max(2.0, 4 * config.metrics_interval_s),
        "upscale_delay_s": 0.0, "downscale_delay_s": 0.0,
        "policy": {"policy_function": policy_function,
                   "policy_kwargs": policy_kwargs if policy_kwargs is not None else config.to_dict()},
    }
