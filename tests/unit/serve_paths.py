"""The endpoint's two fronts, built without Ray for unit tests: the ingress deployment (the edge
calls the model deployment's handle) and the one-hop replica (the edge calls its own replica).
Both wrap the same ``answer``, an async callable ``payload -> (status, value)`` with ``calls``."""

from __future__ import annotations

import types
from typing import Any

PATHS = ("ingress", "fast")


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "e", "idempotent": True, "max_request_bytes": 64,
                            "request_timeout_s": 5.0, "auth_digest": None,
                            "latency_slo_ms": None, "shed_over_slo": False}
    base.update(overrides)
    return base


class Store:
    """The metrics store's two calls an edge makes: capacity (ingress) and counter pushes."""

    def __init__(self, capacity_rps: float = 0.0) -> None:
        self.pushed: list[tuple[dict[str, Any], str]] = []

        async def capacity() -> float:
            return capacity_rps
        self.capacity = types.SimpleNamespace(remote=capacity)
        self.report_edge = types.SimpleNamespace(
            remote=lambda counters, source: self.pushed.append((counters, source)))


class _Handle:
    """The model deployment's handle as the ingress calls it."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def remote(self, payload: Any, t_arrival: float, demand_rps: float | None = None) -> Any:
        return self.answer(payload)


class _Replica:
    """The ``ModelReplica`` a one-hop replica wraps: its call, store, id and service time (0
    until a request completed, as a fresh replica reports)."""

    def __init__(self, answer: Any, store: Store, service_ms: float) -> None:
        self.answer, self.store, self.replica_id = answer, store, "r1"
        self._service_ms = service_ms

    async def __call__(self, payload: Any, t_arrival: float) -> Any:
        return await self.answer(payload)

    def service_ms(self) -> float:
        return self._service_ms if getattr(self.answer, "answered", 1) else 0.0

    async def record_autoscaling_stats(self) -> dict[str, float]:
        return {"arrival_rps": 0.0, "service_ms": self._service_ms}

    def check_health(self) -> None:
        pass


def front(path: str, answer: Any, *, capacity_rps: float = 0.0, **overrides: Any) -> Any:
    """The ingress or the one-hop replica around ``answer``; its edge is ``.edge``. On the
    one-hop path the replica's capacity is ``capacity_rps`` (as 1000 / service ms), on the
    ingress path the metrics store reports it."""
    from ainative.serve import _fastpath, _ingress

    if path == "ingress":
        return _ingress.Ingress(_Handle(answer), spec(**overrides), store=Store(capacity_rps))
    service_ms = 1000.0 / capacity_rps if capacity_rps else 0.0
    return _fastpath.FastReplica(spec(**overrides),
                                 replica=_Replica(answer, Store(), service_ms))
