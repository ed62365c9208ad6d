"""The HTTP/handle front of an endpoint: size and JSON checks, status codes, one retry.

::

    HTTP POST /route ──> Serve proxy ──> Ingress.__call__ ─┐  413 too big · 400 bad JSON
    EndpointHandle.predict ──────────> Ingress.predict ────┤
                                                           v
                          model handle .remote(payload, t_arrival) ──> ModelReplica
                          replica died mid-request: retry once when idempotent, else 503

It holds no model and asks for no CPU, so it adds one cheap hop and gives the endpoint what
Serve's proxy alone cannot: a retry of in-flight requests when a replica crashes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import ray
from ray import exceptions as ray_exceptions

Result = tuple[str, Any]
HTTP_STATUS = {"ok": 200, "reject": 400, "too_large": 413, "error": 500, "unavailable": 503,
               "timeout": 504}
_DIED = (ray_exceptions.RayActorError, ray_exceptions.ActorUnavailableError)


class Ingress:
    """The body of the ingress deployment (decorated with ``serve.deployment`` at deploy time)."""

    def __init__(self, model: Any, spec: dict[str, Any]) -> None:
        self._model = model
        self._idempotent: bool = spec["idempotent"]
        self._max_bytes: int = spec["max_request_bytes"]
        self._timeout_s: float = spec["request_timeout_s"]
        self._store = ray.get_actor(spec["store_name"], namespace=spec["namespace"])
        self._counters = {"retries": 0, "http_4xx": 0, "http_5xx": 0}
        self._last_push = 0.0

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        status, value = await self._http(request)
        code = HTTP_STATUS[status]
        if code >= 500:
            self._counters["http_5xx"] += 1
        elif code >= 400:
            self._counters["http_4xx"] += 1
        self._maybe_push()
        body = {"result": value} if status == "ok" else {"error": value, "status": status}
        return JSONResponse(body, status_code=code)

    async def _http(self, request: Any) -> Result:
        if request.method != "POST":
            return ("reject", f"use POST with a JSON body, not {request.method}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            return ("too_large", f"request body of {declared} bytes exceeds max_request_bytes="
                                 f"{self._max_bytes}; send less or raise Endpoint(max_request_bytes=)")
        body = await request.body()
        if len(body) > self._max_bytes:
            return ("too_large", f"request body of {len(body)} bytes exceeds max_request_bytes="
                                 f"{self._max_bytes}")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            return ("reject", f"malformed JSON: {err}")
        return await self._predict(payload)

    async def predict(self, payload: Any) -> Result:
        """One request through the model; the Python handle path calls this directly."""
        result = await self._predict(payload)
        self._maybe_push()
        return result

    async def _predict(self, payload: Any) -> Result:
        t_arrival = time.time()
        for attempt in (1, 2):
            try:
                result: Result = await asyncio.wait_for(
                    self._model.remote(payload, t_arrival), self._timeout_s)
                return result
            except asyncio.TimeoutError:
                return ("timeout", f"no result within request_timeout_s={self._timeout_s}")
            except _DIED as err:
                if attempt == 1 and self._idempotent:
                    self._counters["retries"] += 1
                    continue
                hint = "" if self._idempotent else " (not retried: Endpoint(idempotent=False))"
                return ("unavailable", f"the replica serving this request died{hint}: "
                                       f"{type(err).__name__}")
        return ("unavailable", "unreachable")

    def _maybe_push(self) -> None:
        now = time.monotonic()
        if now - self._last_push >= 0.5:
            self._last_push = now
            self._store.report_ingress.remote(dict(self._counters))

    def counters(self) -> dict[str, int]:
        self._maybe_push()
        return dict(self._counters)
