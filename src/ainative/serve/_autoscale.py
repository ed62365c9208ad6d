"""Ray Serve custom autoscaling policy: the adapter between Serve's context and our arithmetic.

Serve instantiates :class:`EndpointPolicy` once per deployment inside its controller (with the
``AutoscalingConfig`` as ``policy_kwargs``) and calls it every control-loop tick. All decisions
are made by :func:`ainative.policy.autoscaling.decide`; Serve's own delays are set to 0 so that
only ours apply.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ainative.policy import autoscaling as policy

logger = logging.getLogger("ray.serve")


class EndpointPolicy:
    """Called as ``policy(ctx) -> (replicas, policy_state)`` by the Serve controller."""

    def __init__(self, **config: Any) -> None:
        self.config = policy.AutoscalingConfig(**config)
        self.state = policy.State()
        self.last_busy = time.monotonic()
        self.last_decision: policy.Decision | None = None

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        signals = signals_from_context(ctx, now - self.last_busy)
        if signals.ongoing > 0:
            self.last_busy = now
            signals = policy.Signals(running=signals.running, target=signals.target,
                                     ongoing=signals.ongoing, latency_ms=signals.latency_ms,
                                     idle_s=0.0)
        decision = policy.decide(self.config, signals, self.state, now)
        self.state = decision.state
        if decision.replicas != signals.target:
            logger.info("ainative autoscaling %s: %d -> %d (%s; %s)", ctx.deployment_name,
                        signals.target, decision.replicas, decision.reason, signals)
        self.last_decision = decision
        return decision.replicas, {"ainative_reason": decision.reason}


def signals_from_context(ctx: Any, idle_s: float) -> policy.Signals:
    """Serve's AutoscalingContext -> Signals. Latency is the worst replica's window percentile
    (only running replicas report, so loading ones never dilute it)."""
    metrics = ctx.aggregated_metrics or {}
    latencies = [v for v in (metrics.get("latency_ms") or {}).values() if v and v > 0]
    ongoing = float(ctx.total_num_requests or 0.0)
    return policy.Signals(running=int(ctx.current_num_replicas),
                          target=int(ctx.target_num_replicas), ongoing=ongoing,
                          latency_ms=max(latencies) if latencies else None, idle_s=idle_s)
