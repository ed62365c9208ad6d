"""The ingress deployment: the endpoint's edge (``_edge.Edge``) in front of the model replicas.

::

    HTTP POST /route ──> Serve proxy ──> Ingress.__call__ ──> Edge.http ─┐  checks, arrival count,
    EndpointHandle.predict(x, token) ──> Ingress.predict ──> Edge.predict ┤  shedding, 504 deadline
                                                                         v
             model handle .remote(payload, t_arrival, arrival_rps) ──> ModelReplica
                          replica died mid-request: retry once when idempotent, else 503

It holds no model and asks for no CPU, so it adds one cheap hop and gives the endpoint what
Serve's proxy alone cannot: a retry of in-flight requests when a replica crashes, and one count
of every arrival (including requests Serve's router still holds back). ``Endpoint(fast_path=True)``
drops this hop and runs the same ``Edge`` inside the replica (``_fastpath.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray import exceptions as ray_exceptions

from ainative.serve import _edge

Result = _edge.Result
_DIED = (ray_exceptions.RayActorError, ray_exceptions.ActorUnavailableError)


class Ingress:
    """The body of the ingress deployment (decorated with ``serve.deployment`` at deploy time).
    ``store`` (the endpoint's metrics store) is looked up by name unless given (tests)."""

    def __init__(self, model: Any, spec: dict[str, Any], store: Any = None) -> None:
        self._model = model
        self._idempotent: bool = spec["idempotent"]
        if store is None:
            store = ray.get_actor(spec["store_name"], namespace=spec["namespace"])
        self.edge = _edge.Edge(spec, store, self._call_model, source="ingress")

    async def __call__(self, request: Any) -> Any:
        return await self.edge.http(request)

    async def predict(self, payload: Any, token: str | None = None) -> Result:
        """One request through the model; the Python handle path calls this directly."""
        return await self.edge.predict(payload, token)

    async def _call_model(self, payload: Any, t_arrival: float, demand: float) -> Result:
        """The model deployment, retried once on another replica when the one serving the
        request died (idempotent endpoints only); the edge bounds the whole by the deadline."""
        for attempt in (1, 2):
            try:
                result: Result = await self._model.remote(payload, t_arrival, demand)
                return result
            except _DIED as err:
                if attempt == 1 and self._idempotent:
                    self.edge.counters["retries"] += 1
                    continue
                hint = "" if self._idempotent else " (not retried: Endpoint(idempotent=False))"
                return ("unavailable", _edge.logged_error(
                    f"the replica serving this request died{hint}: {type(err).__name__}",
                    level=logging.WARNING))
        return ("unavailable", "unreachable")
