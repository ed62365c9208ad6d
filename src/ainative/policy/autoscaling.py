"""Replica-count decisions for an inference endpoint: pure arithmetic, no Ray.

Ray Serve's custom-policy hook (``ainative.serve._autoscale``) turns its autoscaling context into
:class:`Signals` and calls :func:`decide` every control-loop tick; unit tests replay recorded
signal traces through the same function.

::

    ongoing requests ──> need_concurrency = ceil(ongoing / target_concurrency)
    tail latency     ──> need_latency     = running * latency / (slo * aim)   (only near the SLO)
                         raw = clamp(max(...), floor, max_replicas)
    up:   raw > target, no replica still loading, condition held upscale_delay_s   -> raw
    down: ongoing fits target-1 replicas with a hysteresis band, latency calm,
          condition held downscale_delay_s                                       -> at most halve
    zero: no request for scale_to_zero_after_s (when set)                         -> 0
"""

from __future__ import annotations

import dataclasses
import math

from ainative import errors
from ainative.config import require_int, require_positive, require_range

# Latency above this share of the SLO asks for more replicas; below CALM it allows scale-down.
HOT = 0.8
CALM = 0.5
# Scale so that latency lands at this share of the SLO (proportional control).
AIM = 0.6


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

    def __post_init__(self) -> None:
        owner = "AutoscalingConfig"
        require_int(owner, "min_replicas", self.min_replicas, minimum=0)
        require_int(owner, "max_replicas", self.max_replicas, minimum=1)
        if self.min_replicas > self.max_replicas:
            raise errors.ConfigError(
                f"AutoscalingConfig.min_replicas ({self.min_replicas}) must be <= max_replicas "
                f"({self.max_replicas}); raise max_replicas or lower min_replicas",
                field="min_replicas", value=self.min_replicas)
        require_positive(owner, "target_concurrency", self.target_concurrency)
        require_positive(owner, "latency_slo_ms", self.latency_slo_ms, allow_none=True)
        require_range(owner, "slo_percentile", self.slo_percentile, 0, 100, low_open=True)
        require_positive(owner, "scale_to_zero_after_s", self.scale_to_zero_after_s,
                         allow_none=True)
        if self.initial_replicas is not None:
            require_int(owner, "initial_replicas", self.initial_replicas,
                        minimum=self.min_replicas, maximum=self.max_replicas)
        require_positive(owner, "upscale_delay_s", self.upscale_delay_s, allow_zero=True)
        require_positive(owner, "downscale_delay_s", self.downscale_delay_s, allow_zero=True)
        require_range(owner, "hysteresis", self.hysteresis, 0.0, 1.0, high_open=True)
        require_range(owner, "metrics_interval_s", self.metrics_interval_s, 0.05, 60.0)

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


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    """What the policy remembers between ticks."""

    up_since: float | None = None
    down_since: float | None = None


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


def decide(config: AutoscalingConfig, s: Signals, state: State, now: float) -> Decision:
    """The replica count to ask for at time ``now`` (seconds, any monotonic clock)."""
    if (config.scale_to_zero_after_s is not None and s.ongoing <= 0
            and s.idle_s >= config.scale_to_zero_after_s):
        return Decision(0, f"idle {s.idle_s:.1f}s >= scale_to_zero_after_s", State())
    floor = max(config.min_replicas, 1 if s.ongoing > 0 else config.min_replicas)
    by_c, by_l = needed(config, s)
    raw = min(config.max_replicas, max(floor, by_c, by_l))
    starting = max(0, s.target - s.running)
    if raw > s.target:
        if starting:
            # Loading replicas are not capacity yet, and the load we see is what the running
            # ones could not absorb: asking again now would double-count the same backlog.
            return Decision(s.target, f"hold: {starting} replica(s) still loading", State())
        since = state.up_since if state.up_since is not None else now
        if s.target == 0 or now - since + 1e-9 >= config.upscale_delay_s:
            # From zero every request is waiting on a cold start: no reason to wait longer.
            return Decision(raw, f"up: concurrency needs {by_c}, latency needs {by_l}", State())
        return Decision(s.target, "up pending", State(up_since=since))
    down_to = _down_target(config, s, floor, by_l)
    if down_to < s.target and not starting:
        since = state.down_since if state.down_since is not None else now
        if now - since + 1e-9 >= config.downscale_delay_s:
            return Decision(down_to, f"down: ongoing {s.ongoing:g} fits {down_to}", State())
        return Decision(s.target, "down pending", State(down_since=since))
    if s.target < floor:
        return Decision(floor, "up to floor", State())
    return Decision(s.target, "steady", State())


def _down_target(config: AutoscalingConfig, s: Signals, floor: int, by_latency: int) -> int:
    """How far down the load allows, with the hysteresis band and at most halving per step."""
    per_replica = config.target_concurrency * (1.0 - config.hysteresis)
    fits = math.ceil(max(0.0, s.ongoing) / per_replica - 1e-9)
    half = s.target // 2
    return max(floor, fits, by_latency, half)
