"""The one-hop path (``Endpoint(fast_path=True)``): the model replica is the application's ingress.

::

    HTTP POST /route ──> Serve proxy ──(its router picks a replica)──> FastReplica.__call__
    EndpointHandle.predict(x, token) ──────────────────────────────> FastReplica.predict
                                                                          │
                        the same _edge.Edge as the ingress deployment ────┤ 405 401 413 408 400
                        (one implementation), its arrival count per       │ shed 503 · 504 · 500
                        replica: arrival_share_rps, summed by the policy  v
                                                    ModelReplica.__call__ (batcher, device thread)

A sub-millisecond model behind the ingress pays two proxy-to-replica hops a request; here it pays
one. What only the ingress gives is lost: a request in flight on a replica that dies is not retried
(Serve's proxy answers it with its own 500, or the connection drops), and requests Serve's proxy
still holds back (every replica at ``max_ongoing_requests``) are neither counted as arrivals nor
shed until a replica takes them. ``docs/serving.md`` ("One hop for small models") says when to
choose it.
"""

from __future__ import annotations

import time
from typing import Any

from ainative.serve import _edge, _replica


class FastReplica:
    """The body of a one-hop endpoint's only deployment: a ``ModelReplica`` behind an ``Edge``.
    ``replica`` is built from ``spec`` unless given (tests pass a stand-in)."""

    def __init__(self, spec: dict[str, Any], replica: Any = None) -> None:
        self._replica = replica if replica is not None else _replica.ModelReplica(spec)
        self.edge = _edge.Edge(spec, self._replica.store, self._call_model,
                               source=f"replica-{self._replica.replica_id}",
                               local_capacity=self._capacity_rps)

    async def __call__(self, request: Any) -> Any:
        return await self.edge.http(request)

    async def predict(self, payload: Any, token: str | None = None) -> _edge.Result:
        return await self.edge.predict(payload, token)

    async def _call_model(self, payload: Any, t_arrival: float, demand: float) -> _edge.Result:
        # demand is this replica's share only: it goes out as arrival_share_rps, not relayed
        # as the endpoint-wide arrival_rps the ingress path sends.
        result: _edge.Result = await self._replica(payload, t_arrival)
        return result

    def _capacity_rps(self) -> float:
        """Requests/s this replica completes at its measured service time (0 before any)."""
        service_ms = self._replica.service_ms()
        return 1000.0 / service_ms if service_ms else 0.0

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """The replica's metrics plus this replica's share of the arrivals (the policy sums the
        shares: no single process sees every arrival on this path)."""
        stats: dict[str, float] = await self._replica.record_autoscaling_stats()
        stats["arrival_share_rps"] = self.edge.flow.arrival_rate(time.monotonic())
        self.edge.maybe_push()
        return stats

    def check_health(self) -> None:
        self._replica.check_health()
