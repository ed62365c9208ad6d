"""Ray Serve custom autoscaling policy: the adapter between Serve's context and our arithmetic.

Serve instantiates :class:`EndpointPolicy` once per deployment inside its controller (with the
``AutoscalingConfig`` as ``policy_kwargs``) and calls it every control-loop tick. All decisions
are made by :func:`ainative.policy.autoscaling.decide`; Serve's own delays are set to 0 so that
only ours apply.

Under admission (a scheduler or cost guard installed when the endpoint was deployed) the decision
is capped at the replicas admitted so far: each tick sends ``(wanted, running)`` to the endpoint's
``CapacityBoard`` and reads back the cap without blocking Serve's control loop (the reply of the
previous tick is used; see ``serve/_capacity.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from typing import Any

from ainative.policy import autoscaling as policy

logger = logging.getLogger("ray.serve")


class EndpointPolicy:
    """Called as ``policy(ctx) -> (replicas, policy_state)`` by the Serve controller."""

    def __init__(self, **config: Any) -> None:
        board = config.pop("ainative_board", None)
        self.cap: int | None = config.pop("ainative_cap", None)
        self._board_name: str | None = board
        self._board: Any = None
        self._reply: Any = None
        self.config = policy.AutoscalingConfig(**config)
        self.state = policy.State()
        self.last_busy = time.monotonic()
        self.last_decision: policy.Decision | None = None
        self.wish = WishHold(self.config.downscale_delay_s)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        signals = signals_from_context(ctx, now - self.last_busy)
        if signals.ongoing > 0:
            self.last_busy = now
            signals = dataclasses.replace(signals, idle_s=0.0)
        decision = policy.decide(self.config, signals, self.state, now)
        self.state = decision.state
        replicas, reason = decision.replicas, decision.reason
        if self._board_name is not None:
            cap = self._exchange(self.wish.update(now, replicas, self.cap), signals.running)
            if cap is not None and replicas > cap:
                replicas, reason = cap, f"capped at {cap} admitted replica(s) ({reason})"
        if replicas != signals.target:
            logger.info("ainative autoscaling %s: %d -> %d (%s; %s)", ctx.deployment_name,
                        signals.target, replicas, reason, signals)
        self.last_decision = decision
        return replicas, {"ainative_reason": reason}

    def _exchange(self, want: int, running: int) -> int | None:
        """Send this tick's wish; return the latest cap the board answered (never blocks)."""
        import ray

        assert self._board_name is not None
        try:
            if self._board is None:
                self._board = ray.get_actor(self._board_name, namespace="ainative")
            if self._reply is not None and self._reply.done():
                self.cap = int(self._reply.result())
                self._reply = None
            if self._reply is None:
                self._reply = self._board.exchange.remote(want, running).future()
        except Exception as exc:  # board restarting or gone: keep the last cap
            logger.debug("ainative capacity board %s: %s", self._board_name, exc)
            self._board, self._reply = None, None
        return self.cap


class WishHold:
    """The replicas asked of admission: the decision, but a wish above the admitted cap is held
    for ``downscale_delay_s``. Serve's target is the capped count, so the policy's own downscale
    delay never applies to the part above the cap; without this the wish flapped (2, 1, 2 within
    a second as arrival estimates moved) and each flap admitted an extra replica, preempting a
    training job, only to release it a tick later. Wishes at or below the cap pass unchanged:
    the policy already delays those."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._above: deque[tuple[float, int]] = deque()

    def update(self, now: float, decision: int, cap: int | None) -> int:
        if cap is not None and decision > cap:
            self._above.append((now, decision))
        while self._above and now - self._above[0][0] > self.hold_s:
            self._above.popleft()
        return max([decision, *(w for _, w in self._above)])


def signals_from_context(ctx: Any, idle_s: float) -> policy.Signals:
    """Serve's AutoscalingContext -> Signals. Latency is the worst replica's window percentile
    (only running replicas report, so loading ones never dilute it). The arrival rate is the
    ingress's count that every replica relays, its latest sample (Serve's look-back mean would
    lag a step by a second more; the largest over replicas: the freshest); on the one-hop path
    (no ingress) each replica counts only its own arrivals (``arrival_share_rps``) and the rate
    is their sum. The service time is the mean of the replicas that measured one."""
    metrics = ctx.aggregated_metrics or {}
    latencies = [v for v in (metrics.get("latency_ms") or {}).values() if v and v > 0]
    relayed, shares = _metric(ctx, "arrival_rps"), _metric(ctx, "arrival_share_rps")
    arrivals = [max(relayed, default=0.0), sum(shares)] if relayed or shares else []
    services = [v for v in (metrics.get("service_ms") or {}).values() if v and v > 0]
    ongoing = float(ctx.total_num_requests or 0.0)
    return policy.Signals(running=int(ctx.current_num_replicas),
                          target=int(ctx.target_num_replicas), ongoing=ongoing,
                          latency_ms=max(latencies) if latencies else None, idle_s=idle_s,
                          arrival_rps=max(arrivals) if arrivals else None,
                          service_ms=sum(services) / len(services) if services else None)


def _metric(ctx: Any, name: str) -> list[float]:
    """Each running replica's newest sample of ``name`` (Serve's look-back mean without raw
    data)."""
    found = _latest(ctx, name)
    if found:
        return found
    metrics = ctx.aggregated_metrics or {}
    return [float(v) for v in (metrics.get(name) or {}).values() if v is not None]


def _latest(ctx: Any, name: str) -> list[float]:
    """The newest sample of a custom metric from each running replica (empty without raw data)."""
    try:
        raw = ctx.raw_metrics or {}
    except Exception:  # an older Serve without raw metrics: the aggregated mean will do
        return []
    out = []
    for series in (raw.get(name) or {}).values():
        if series:
            out.append(float(max(series, key=lambda point: point.timestamp).value))
    return out
