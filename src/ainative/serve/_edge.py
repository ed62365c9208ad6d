"""The endpoint's edge: every check and answer between a request and its model call, in one place.

::

    HTTP request ──> Edge.http ─┐  405 not POST · 401 no/bad token
                                │  413 body streamed past the limit · 408 body too slow
                                │  400 bad JSON or Content-Length
    handle (payload, token) ────┤  Edge.predict: 401 no/bad token
                                │  arrival counted (rate over 1 s: the autoscaler's input)
                                │  shed_over_slo: 503 + Retry-After when the work ahead / capacity
                                │                  keeps this request past the SLO
                                v
            call(payload, t_arrival, arrival_rps) ──> result    (504 at the request's deadline)
                                │
    Edge.respond(status, value) ┘  JSON body, status code, Allow / WWW-Authenticate / Retry-After /
                                   X-Error-Id; a result JSON cannot hold (NaN, a set) becomes 500

Two deployments own an Edge: the ingress (``_ingress.Ingress``: ``call`` is the model
deployment's handle, with a retry when a replica dies) and, on the one-hop path
(``Endpoint(fast_path=True)``), the model replica itself (``_fastpath.FastReplica``: ``call`` is
the replica's own batcher). The edge counts what it answered (4xx, 5xx, shed) and pushes the
counters to the endpoint's metrics store, keyed by ``source`` so several edges add up.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ainative.policy import autoscaling as scaling_policy
from ainative.serve import auth

Result = tuple[str, Any]
ModelCall = Callable[[Any, float, float], Awaitable[Result]]
HTTP_STATUS = {"ok": 200, "reject": 400, "unauthorized": 401, "method": 405,
               "client_timeout": 408, "too_large": 413, "error": 500, "unavailable": 503,
               "shed": 503, "timeout": 504}
_ERROR_ID = re.compile(r"error id ([0-9a-f]{12})")
_RETRY_AFTER = re.compile(r"retry after (\d+) s")
# Arrivals are counted over RATE_WINDOW_S (the rate the autoscaler reads), answers over
# THROUGHPUT_WINDOW_S; a capacity read from the metrics store is refreshed this often.
RATE_WINDOW_S = scaling_policy.RATE_WINDOW_S
THROUGHPUT_WINDOW_S = 2.0
CAPACITY_REFRESH_S = 0.5
PUSH_EVERY_S = 0.5
# Serve's replica log (the logger Serve documents for deployments): ids link answers to lines.
log = logging.getLogger("ray.serve")


class Edge:
    """The checks and answers of one endpoint's front, whichever deployment runs them.

    ``call`` runs the model for one request; ``local_capacity`` (requests/s this process can
    complete) replaces the metrics store's endpoint-wide capacity when the edge sees only its own
    replica's requests (the one-hop path)."""

    def __init__(self, spec: dict[str, Any], store: Any, call: ModelCall, *, source: str,
                 local_capacity: Callable[[], float] | None = None) -> None:
        self._call = call
        self._store = store
        self._source = source
        self._local_capacity = local_capacity
        self._max_bytes: int = spec["max_request_bytes"]
        self._timeout_s: float = spec["request_timeout_s"]
        self._auth_digest: str | None = spec.get("auth_digest")
        self._slo_ms: float | None = spec.get("latency_slo_ms")
        self._shed_over_slo = bool(spec.get("shed_over_slo")) and self._slo_ms is not None
        self.counters = {"retries": 0, "http_4xx": 0, "http_5xx": 0, "shed": 0}
        self.flow = Flow()
        self._last_push = 0.0

    # ---- HTTP -----------------------------------------------------------------------------
    async def http(self, request: Any) -> Any:
        """One HTTP request -> a Starlette response (never raises, never leaks a traceback)."""
        deadline = time.monotonic() + self._timeout_s
        try:
            status, value = await self._http(request, deadline)
        except Exception:  # a bug or a hostile input we did not foresee: logged, never echoed
            status, value = "error", logged_error("the endpoint failed on this request")
        return self.respond(status, value)

    async def _http(self, request: Any, deadline: float) -> Result:
        if request.method != "POST":
            return ("method", f"use POST with a JSON body, not {request.method}")
        if not auth.check(self._auth_digest, auth.bearer_token(request.headers.get("authorization"))):
            return ("unauthorized", "missing or wrong token; send 'Authorization: Bearer <token>'")
        body = await self._read_body(request, deadline)
        if isinstance(body, tuple):
            return body
        try:
            payload = json.loads(body)
        except RecursionError:
            return ("reject", "malformed JSON: nested too deeply")
        except (ValueError, UnicodeDecodeError) as err:
            return ("reject", f"malformed JSON: {err}")
        return await self.admit(payload, deadline)

    async def _read_body(self, request: Any, deadline: float) -> bytes | Result:
        """The body, streamed: stops at ``max_request_bytes + 1`` (413) or at the deadline (408),
        so neither a huge chunked upload nor a slow client makes it buffer without bound."""
        from starlette.requests import ClientDisconnect

        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return ("reject", f"Content-Length must be a byte count, got {declared[:40]!r}")
            if int(declared) > self._max_bytes:
                return self._too_large(f"{int(declared)} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            # One timer for the whole body (not a task per chunk: this is every request's path).
            async with within(deadline):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self._max_bytes:
                        return self._too_large(f"more than {self._max_bytes} bytes")
                    chunks.append(chunk)
        except asyncio.TimeoutError:
            return ("client_timeout", f"the request body did not arrive within "
                                      f"request_timeout_s={self._timeout_s:g}")
        except ClientDisconnect:
            return ("reject", "the client disconnected before sending the whole body")
        return b"".join(chunks)

    def _too_large(self, what: str) -> Result:
        return ("too_large", f"request body of {what} exceeds max_request_bytes={self._max_bytes}"
                             "; send less or raise Endpoint(max_request_bytes=)")

    def respond(self, status: str, value: Any) -> Any:
        """``(status, value)`` -> the HTTP response, counted."""
        from starlette.responses import Response

        code = HTTP_STATUS[status]
        body: dict[str, Any] = {"result": value} if status == "ok" else \
            {"error": value, "status": status}
        if code >= 500:
            found = _ERROR_ID.search(str(value))
            body["error_id"] = found.group(1) if found else _new_id()
        try:
            content = json.dumps(body, allow_nan=False, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError) as err:
            status, code = "error", 500
            message = logged_error(f"the model's result cannot be encoded as JSON "
                                   f"({type(err).__name__}: {err}); return JSON values only "
                                   "(no NaN or infinity, lists rather than sets)", err=err)
            body = {"error": message, "status": status,
                    "error_id": _ERROR_ID.search(message).group(1)}  # type: ignore[union-attr]
            content = json.dumps(body)
        self._count(code, status)
        headers = {"Allow": "POST"} if code == 405 else {}
        if code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="ainative"'
        retry = _RETRY_AFTER.search(str(value)) if status == "shed" else None
        if retry is not None:
            headers["Retry-After"] = retry.group(1)
        if "error_id" in body:
            headers["X-Error-Id"] = body["error_id"]
        return Response(content.encode("utf-8"), status_code=code, headers=headers,
                        media_type="application/json")

    # ---- the handle path and the model call -----------------------------------------------
    async def predict(self, payload: Any, token: str | None = None) -> Result:
        """One request from ``EndpointHandle.predict`` (no HTTP): the token, then ``admit``."""
        if not auth.check(self._auth_digest, token):
            result: Result = ("unauthorized", "missing or wrong token; set the environment "
                                              "variable named by the endpoint's TokenAuth")
        else:
            try:
                result = await self.admit(payload, time.monotonic() + self._timeout_s)
            except Exception:
                result = ("error", logged_error("the endpoint failed on this request"))
        self._count(HTTP_STATUS[result[0]], result[0])
        return result

    async def admit(self, payload: Any, deadline: float) -> Result:
        """Count the arrival, shed it if it cannot make the SLO, else call the model by
        ``deadline`` (504 past it)."""
        t_arrival = time.time()
        demand = self.flow.arrived(time.monotonic())
        if self._shed_over_slo:
            verdict = self._shed_verdict()
            if verdict is not None:
                self.counters["shed"] += 1
                return ("shed", f"predicted latency {verdict.predicted_ms:.0f} ms exceeds "
                                f"latency_slo_ms={self._slo_ms:g} with the replicas serving now; "
                                f"shed at the edge, retry after {verdict.retry_after_s} s")
        self.flow.in_flight += 1
        try:
            async with within(deadline):
                result = await self._call(payload, t_arrival, demand)
        except asyncio.TimeoutError:
            return ("timeout", logged_error(
                f"no result within request_timeout_s={self._timeout_s:g}", level=logging.WARNING))
        finally:
            self.flow.in_flight -= 1
        if result[0] != "unavailable":
            self.flow.answered(time.monotonic())
        return result

    def _shed_verdict(self) -> scaling_policy.Shed | None:
        """Shed when the requests ahead, drained at the larger of the measured throughput and
        the replicas' reported capacity, keep this one past the SLO (never before a capacity
        is reported)."""
        assert self._slo_ms is not None
        now = time.monotonic()
        if self._local_capacity is not None:
            self.flow.capacity_rps = self._local_capacity()
        elif now - self.flow.capacity_at >= CAPACITY_REFRESH_S and self.flow.pulling is None:
            self.flow.capacity_at = now
            self.flow.pulling = asyncio.ensure_future(self._pull_capacity())
        return scaling_policy.shed(self._slo_ms, self.flow.in_flight + 1, self.flow.throughput(now),
                                   self.flow.capacity_rps)

    async def _pull_capacity(self) -> None:
        try:
            self.flow.capacity_rps = float(await self._store.capacity.remote())
        except Exception as exc:  # the store is being replaced: keep the last reading
            log.debug("ainative edge: capacity not read: %s", exc)
        finally:
            self.flow.pulling = None

    # ---- counters ---------------------------------------------------------------------------
    def _count(self, code: int, status: str = "") -> None:
        if status == "shed":
            pass  # counted as shed when decided: load shedding is not a server failure
        elif code >= 500:
            self.counters["http_5xx"] += 1
        elif code >= 400:
            self.counters["http_4xx"] += 1
        self.maybe_push()

    def maybe_push(self) -> None:
        now = time.monotonic()
        if now - self._last_push >= PUSH_EVERY_S:
            self._last_push = now
            self._store.report_edge.remote(dict(self.counters), self._source)


class Flow:
    """What passes through an edge: arrivals (their rate feeds the autoscaler), answers
    (their rate is the throughput shedding trusts), requests in flight, replica capacity."""

    def __init__(self) -> None:
        self._arrivals: collections.deque[float] = collections.deque()
        self._answers: collections.deque[float] = collections.deque()
        self.in_flight = 0
        self.capacity_rps = 0.0
        self.capacity_at = float("-inf")
        self.pulling: asyncio.Future[None] | None = None

    def arrived(self, now: float) -> float:
        """Count one arrival; return the arrival rate over the last RATE_WINDOW_S."""
        self._arrivals.append(now)
        return self.arrival_rate(now)

    def arrival_rate(self, now: float) -> float:
        """Arrivals over the last RATE_WINDOW_S, per second (0 once none is that recent)."""
        while self._arrivals and self._arrivals[0] < now - RATE_WINDOW_S:
            self._arrivals.popleft()
        return len(self._arrivals) / RATE_WINDOW_S

    def answered(self, now: float) -> None:
        self._answers.append(now)
        self._forget(now)

    def throughput(self, now: float) -> float:
        self._forget(now)
        return len(self._answers) / THROUGHPUT_WINDOW_S

    def _forget(self, now: float) -> None:
        while self._answers and self._answers[0] < now - THROUGHPUT_WINDOW_S:
            self._answers.popleft()


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def logged_error(message: str, *, level: int = logging.ERROR, err: BaseException | None = None) -> str:
    """Log ``message`` (with the current traceback, if any) under a fresh error id; return the
    message for the client: the same words and the id, never the traceback."""
    error_id = _new_id()
    exc_info = err if err is not None else (level >= logging.ERROR and sys.exc_info()[0] is not None)
    log.log(level, "ainative edge error id %s: %s", error_id, message, exc_info=exc_info)
    return f"{message} (error id {error_id})"


def within(deadline: float) -> Any:
    """``async with within(deadline):`` raises ``asyncio.TimeoutError`` at ``deadline`` (a
    ``time.monotonic()`` instant), cancelling what it waits on. Python 3.11's
    ``asyncio.timeout_at`` is one timer; 3.10 gets an equivalent that cancels this task."""
    loop = asyncio.get_running_loop()
    when = loop.time() + (deadline - time.monotonic())
    timeout_at = getattr(asyncio, "timeout_at", None)
    if timeout_at is not None:
        return timeout_at(when)
    return _Within(loop, when)


class _Within:
    """Python 3.10's stand-in for ``asyncio.timeout_at``: cancel the task at ``when`` and turn
    that cancellation into ``asyncio.TimeoutError``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._loop, self._when = loop, when
        self._fired = False
        self._handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None

        def fire() -> None:
            self._fired = True
            task.cancel()
        self._handle = self._loop.call_at(self._when, fire)

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        assert self._handle is not None
        self._handle.cancel()
        if self._fired and kind is asyncio.CancelledError:
            raise asyncio.TimeoutError
        return False
